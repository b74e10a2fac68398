// alibi_attention_forward against the float64 reference (reference.h) on random inputs with fixed
// seeds. Outputs are poisoned before every call, so every element checked was written by it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "reference.h"
#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// -------------------------------------------------------------------------------------- dtypes

size_t dtype_size(alibi_dtype dtype) { return test::element_bytes(dtype); }

using test::decode;
using test::download;
using test::dtype_name;
using test::encode;
using test::HeadCounts;
using test::mask_type_name;
using test::numel;
using test::poisoned;
using test::random_positions;
using test::random_values;
using test::round_to;
using test::Sequences;
using test::sequences;
using test::to_double;
using test::upload;

// ------------------------------------------------------------------------------------- handles

// A strided view into a buffer on the context's device (test::DeviceBuffer): element
// (i0, i1, ...) at base + sum(i_d * strides[d]).
struct View {
  std::vector<int64_t> shape, strides;
  int64_t base;
};

Tensor wrap(alibi_context_t ctx, alibi_dtype dtype, const View& view, uint8_t* buffer) {
  alibi_tensor_t t = nullptr;
  SUCCEEDED(alibi_tensor_wrap(ctx, dtype, int(view.shape.size()), view.shape.data(),
                              view.strides.data(), buffer + view.base * dtype_size(dtype), &t));
  return Tensor(t);
}

// Element offsets of a view, in row-major logical order.
std::vector<int64_t> offsets_of(const View& view) {
  std::vector<int64_t> offsets{view.base};
  for (size_t d = 0; d < view.shape.size(); ++d) {
    std::vector<int64_t> next;
    for (int64_t o : offsets)
      for (int64_t i = 0; i < view.shape[d]; ++i) next.push_back(o + i * view.strides[d]);
    offsets = std::move(next);
  }
  return offsets;
}

std::vector<float> gather(const std::vector<float>& buffer, const View& view) {
  std::vector<float> values;
  for (int64_t o : offsets_of(view)) values.push_back(buffer[size_t(o)]);
  return values;
}

// Cells of buffer outside the view that no longer hold poison.
int count_changed_outside(const std::vector<float>& buffer, const View& view, float poison) {
  std::vector<bool> inside(buffer.size(), false);
  for (int64_t o : offsets_of(view)) inside[size_t(o)] = true;
  int changed = 0;
  for (size_t i = 0; i < buffer.size(); ++i) changed += !inside[i] && buffer[i] != poison;
  return changed;
}

// --------------------------------------------------------------------------------------- masks

Mask ranges_mask(alibi_context_t ctx, const std::vector<ref::Slice>& slices, int64_t total_q,
                 int64_t total_k) {
  std::vector<int32_t> q_ranges, k_ranges, types;
  for (const ref::Slice& s : slices) {
    q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_ranges(ctx, int(slices.size()), q_ranges.data(), k_ranges.data(),
                                     types.data(), total_q, total_k, &mask));
  return Mask(mask);
}

Mask varlen_mask(alibi_context_t ctx, const Sequences& seqs, bool causal) {
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_varlen(ctx, seqs.batch(), seqs.cu_q.data(), seqs.cu_k.data(),
                                     causal ? 1 : 0, &mask));
  return Mask(mask);
}

Mask window_mask(alibi_context_t ctx, const Sequences& seqs, int left, int right) {
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_sliding_window(ctx, seqs.batch(), seqs.cu_q.data(), seqs.cu_k.data(),
                                             left, right, &mask));
  return Mask(mask);
}

// The visible set a mask stores, read back through alibi_mask_get_slices.
ref::Visibility stored_visibility(alibi_mask_t mask, int64_t total_q, int64_t total_k) {
  int n = 0;
  SUCCEEDED(alibi_mask_get_num_slices(mask, &n));
  std::vector<int32_t> q_ranges(2 * size_t(n)), k_ranges(2 * size_t(n));
  std::vector<int32_t> types(static_cast<size_t>(n));
  SUCCEEDED(alibi_mask_get_slices(mask, q_ranges.data(), k_ranges.data(), types.data()));
  std::vector<ref::Slice> slices;
  for (size_t s = 0; s < size_t(n); ++s) {
    const ref::Slice slice{q_ranges[2 * s], q_ranges[2 * s + 1], k_ranges[2 * s],
                           k_ranges[2 * s + 1], types[s]};
    const bool in_bounds = 0 <= slice.q_begin && slice.q_begin <= slice.q_end &&
                           slice.q_end <= total_q && 0 <= slice.k_begin &&
                           slice.k_begin <= slice.k_end && slice.k_end <= total_k &&
                           0 <= slice.type && slice.type <= 3;
    if (in_bounds)
      slices.push_back(slice);
    else
      ADD_FAILURE() << "stored slice " << s << " is out of bounds or of an unknown type";
  }
  return ref::from_slices(total_q, total_k, slices);
}

void expect_same_cells(const ref::Visibility& got, const ref::Visibility& want) {
  ASSERT_EQ(got.cells.size(), want.cells.size());
  int differing = 0;
  std::string first;
  for (int64_t i = 0; i < want.total_q; ++i)
    for (int64_t j = 0; j < want.total_k; ++j)
      if (got.at(i, j) != want.at(i, j) && differing++ == 0)
        first = "(" + std::to_string(i) + ", " + std::to_string(j) +
                ") visible=" + std::to_string(got.at(i, j)) + ", want " +
                std::to_string(want.at(i, j));
  EXPECT_EQ(differing, 0) << "first differing cell " << first;
}

// ------------------------------------------------------------------------------------- forward

struct Shape {
  int64_t total_q, total_k;
  int heads_q, heads_kv, head_dim;
};

// Host inputs (total, heads, head_dim), every value exactly representable in dtype.
struct Inputs {
  Shape shape;
  alibi_dtype dtype;
  std::vector<float> q, k, v;
};

Inputs random_inputs(const Shape& s, alibi_dtype dtype, uint32_t seed) {
  Inputs in{s, dtype, {}, {}, {}};
  in.q = random_values(size_t(s.total_q * s.heads_q * s.head_dim), dtype, seed);
  in.k = random_values(size_t(s.total_k * s.heads_kv * s.head_dim), dtype, seed + 1);
  in.v = random_values(size_t(s.total_k * s.heads_kv * s.head_dim), dtype, seed + 2);
  return in;
}

// out (total_q, heads_q, head_dim) decoded to float, lse (heads_q, total_q).
struct Outputs {
  std::vector<float> out, lse;
};

// Runs alibi_attention_forward on contiguous tensors; out and lse are poisoned first.
// Empty Outputs when the call fails.
Outputs forward(alibi_context_t ctx, const Inputs& in, alibi_mask_t mask,
                const alibi_attention_params* params) {
  const Shape& s = in.shape;
  const std::vector<int64_t> q_shape{s.total_q, s.heads_q, s.head_dim};
  const std::vector<int64_t> kv_shape{s.total_k, s.heads_kv, s.head_dim};
  Tensor q = upload(ctx, in.dtype, q_shape, in.q);
  Tensor k = upload(ctx, in.dtype, kv_shape, in.k);
  Tensor v = upload(ctx, in.dtype, kv_shape, in.v);
  Tensor out = poisoned(ctx, in.dtype, q_shape);
  Tensor lse = poisoned(ctx, kF32, {s.heads_q, s.total_q});
  if (!SUCCEEDED(alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask, params, out.get(),
                                         lse.get())))
    return {};
  return {download(out.get(), in.dtype, numel(q_shape)),
          download(lse.get(), kF32, s.heads_q * s.total_q)};
}

// The reference with the defaults: formula slopes (max_bias 8), scale 1/sqrt(head_dim).
ref::Problem reference_problem(const Inputs& in, ref::Visibility visible,
                               ref::Positions positions) {
  const Shape& s = in.shape;
  ref::Problem p;
  p.total_q = s.total_q;
  p.total_k = s.total_k;
  p.heads_q = s.heads_q;
  p.heads_kv = s.heads_kv;
  p.head_dim = s.head_dim;
  p.q = to_double(in.q);
  p.k = to_double(in.k);
  p.v = to_double(in.v);
  p.visible = std::move(visible);
  p.positions = std::move(positions);
  p.slopes = ref::slopes_of_rows(ref::formula_slopes(s.heads_q, 8.0f), s.total_q);
  p.scale = 1.0 / std::sqrt(double(s.head_dim));
  return p;
}

ref::Problem varlen_problem(const Inputs& in, const Sequences& seqs, bool causal) {
  return reference_problem(in,
                           ref::from_slices(seqs.total_q(), seqs.total_k(),
                                            ref::varlen_slices(seqs.cu_q, seqs.cu_k, causal)),
                           ref::varlen_positions(seqs.cu_q, seqs.cu_k));
}

ref::Problem ranges_problem(const Inputs& in, const std::vector<ref::Slice>& slices) {
  const Shape& s = in.shape;
  return reference_problem(in, ref::from_slices(s.total_q, s.total_k, slices),
                           ref::stream_positions(s.total_q, s.total_k));
}

// f32: inputs are exact, accumulation is float32. Scores here stay below ~40 in magnitude, so
// their float rounding is < 4e-6 absolute, i.e. < 4e-6 relative on each softmax weight; sums of
// <= 600 terms add ~1e-6 relative. out is a convex combination of |v| <= 1, so 2e-5 absolute plus
// 1e-5 relative leaves a margin of over 5x for out and lse (every f32 case here also passes with a
// bound 10x tighter). f16/bf16 outputs are rounded once (the header), which adds at most half a
// unit in the last place: we allow a full unit, 2^-10 (f16) or 2^-7 (bf16).
double tolerance(double want, alibi_dtype dtype) {
  const double rounding = dtype == kF16    ? std::ldexp(1.0, -10)
                          : dtype == kBF16 ? std::ldexp(1.0, -7)
                                           : 0.0;
  return 2e-5 + (1e-5 + rounding) * std::fabs(want);
}

class Mismatches {
 public:
  void add(const std::string& what, int h, int64_t i, int d, double got, double want) {
    if (count_++ < 10)
      report_ += what + " head " + std::to_string(h) + " row " + std::to_string(i) +
                 (d >= 0 ? " dim " + std::to_string(d) : "") + ": got " + std::to_string(got) +
                 ", want " + std::to_string(want) + "\n";
  }
  int count() const { return count_; }
  const std::string& report() const { return report_; }

 private:
  int count_ = 0;
  std::string report_;
};

// A row the reference leaves empty must be exactly +0.0 (bitwise) with lse -inf.
void check_row(const Outputs& got, const ref::Result& want, const Shape& s, alibi_dtype dtype,
               int h, int64_t i, Mismatches& bad) {
  const double want_lse = want.lse[size_t(h * s.total_q + i)];
  const float got_lse = got.lse[size_t(h * s.total_q + i)];
  const bool empty = want_lse == -std::numeric_limits<double>::infinity();
  const bool lse_ok =
      empty ? got_lse == kNegInf : std::fabs(got_lse - want_lse) <= tolerance(want_lse, kF32);
  if (!lse_ok) bad.add("lse", h, i, -1, got_lse, want_lse);
  for (int d = 0; d < s.head_dim; ++d) {
    const size_t idx = size_t((i * s.heads_q + h) * s.head_dim + d);
    const float x = got.out[idx];
    const bool ok = empty ? test::float_to_bits(x) == 0u
                          : std::fabs(x - want.out[idx]) <= tolerance(want.out[idx], dtype);
    if (!ok) bad.add(empty ? "out (empty row)" : "out", h, i, d, x, want.out[idx]);
  }
}

void expect_matches(const Outputs& got, const ref::Result& want, const Shape& s,
                    alibi_dtype dtype) {
  ASSERT_EQ(got.out.size(), want.out.size()) << "no output";
  ASSERT_EQ(got.lse.size(), want.lse.size()) << "no lse";
  Mismatches bad;
  for (int h = 0; h < s.heads_q; ++h)
    for (int64_t i = 0; i < s.total_q; ++i) check_row(got, want, s, dtype, h, i, bad);
  EXPECT_EQ(bad.count(), 0) << bad.report();
}

void check_forward(alibi_context_t ctx, const Inputs& in, alibi_mask_t mask,
                   const alibi_attention_params* params, const ref::Problem& problem) {
  expect_matches(forward(ctx, in, mask, params), ref::attention(problem), in.shape, in.dtype);
}

// Library results used as the expectation for another library run.
ref::Result as_result(const Outputs& o) { return {to_double(o.out), to_double(o.lse)}; }

void expect_bitwise_equal(const Outputs& got, const Outputs& want) {
  ASSERT_EQ(got.out.size(), want.out.size());
  ASSERT_EQ(got.lse.size(), want.lse.size());
  EXPECT_EQ(test::bitwise_differences(got.out, want.out), 0) << "out: elements not bitwise identical";
  EXPECT_EQ(test::bitwise_differences(got.lse, want.lse), 0) << "lse: elements not bitwise identical";
}

alibi_attention_params default_params() {
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  return params;
}

// Every suite runs on each device of test::kDevices (CUDA cases skip where there is no GPU).
class AttentionFixture : public test::DeviceTest<> {};

template <class Param>
class AttentionParamFixture : public test::DeviceTest<std::tuple<alibi_device, Param>> {
 public:
  using CaseParam = Param;

 protected:
  const Param& param() const { return std::get<1>(this->GetParam()); }
};

const auto kAllDtypes = ::testing::Values(kF32, kF16, kBF16);

// ---------------------------------------------------------------------------------- mask types

using LengthPair = std::pair<int, int>;

class AttentionMaskTypeTest
    : public AttentionParamFixture<std::tuple<alibi_dtype, int, LengthPair>> {};

// One slice of each type, Sq < Sk, Sq == Sk and Sq > Sk, inside a larger stream whose rows
// outside the slice see nothing.
TEST_P(AttentionMaskTypeTest, SliceInsideStreamMatchesReference) {
  const auto [dtype, type, lengths] = param();
  const auto [sq, sk] = lengths;
  const std::vector<ref::Slice> slices{{2, 2 + sq, 3, 3 + sk, type}};
  const Inputs in =
      random_inputs({sq + 5, sk + 4, 4, 2, 32}, dtype, uint32_t(sq * 131 + sk * 7 + type));
  Mask mask = ranges_mask(ctx_.get(), slices, in.shape.total_q, in.shape.total_k);
  check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
}

std::string mask_type_case_name(const AttentionMaskTypeTest::CaseParam& param) {
  const auto& [dtype, type, lengths] = param;
  return dtype_name(dtype) + "_" + mask_type_name(type) + "_" + std::to_string(lengths.first) +
         "x" + std::to_string(lengths.second);
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionMaskTypeTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(kAllDtypes, ::testing::Values(0, 1, 2, 3),
                                          ::testing::Values(LengthPair{7, 19}, LengthPair{16, 16},
                                                            LengthPair{23, 9}))),
    test::device_case_name<AttentionMaskTypeTest::CaseParam>(mask_type_case_name));

// -------------------------------------------------------------------------------- ranges masks

class AttentionRanges : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionRanges, test::kDevices, test::name_by_device);

TEST_P(AttentionRanges, NoSlicesGivesZeroOutputAndNegInfLse) {
  const Inputs in = random_inputs({6, 9, 2, 1, 16}, kF32, 11);
  Mask mask = ranges_mask(ctx_.get(), {}, 6, 9);
  check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, {}));
}

// Empty ranges, causal Sq > Sk (leading rows see nothing), bi-causal Sq > Sk (sees nothing at
// all), inverse causal Sq > Sk (trailing rows see nothing) and rows no slice covers.
TEST_P(AttentionRanges, EmptyRangesAndRowsWithoutKeys) {
  const std::vector<ref::Slice> slices{
      {2, 2, 0, 7, ref::kFull},       {0, 5, 3, 3, ref::kCausal},
      {0, 3, 0, 3, ref::kCausal},     {3, 12, 4, 8, ref::kCausal},
      {3, 12, 8, 11, ref::kBiCausal}, {12, 18, 11, 14, ref::kInvCausal}};
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Inputs in = random_inputs({20, 14, 3, 3, 16}, dtype, 12);
    Mask mask = ranges_mask(ctx_.get(), slices, 20, 14);
    check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
  }
}

// Slices sharing query rows merge by LSE: two key pieces equal one slice over their union.
TEST_P(AttentionRanges, RowSplitIntoKeyPiecesEqualsUnion) {
  const std::vector<ref::Slice> pieces{{0, 12, 9, 17, ref::kFull}, {0, 12, 0, 9, ref::kFull}};
  const std::vector<ref::Slice> unioned{{0, 12, 0, 17, ref::kFull}};
  const Inputs in = random_inputs({12, 17, 4, 2, 32}, kF32, 13);
  Mask split_mask = ranges_mask(ctx_.get(), pieces, 12, 17);
  Mask union_mask = ranges_mask(ctx_.get(), unioned, 12, 17);
  const Outputs split = forward(ctx_.get(), in, split_mask.get(), nullptr);
  const Outputs whole = forward(ctx_.get(), in, union_mask.get(), nullptr);
  const ref::Result want = ref::attention(ranges_problem(in, unioned));
  expect_matches(split, want, in.shape, kF32);
  expect_matches(whole, want, in.shape, kF32);
  expect_matches(split, as_result(whole), in.shape, kF32);
}

// Several slices of different types share rows, listed out of key order.
TEST_P(AttentionRanges, SharedRowsWithMixedTypes) {
  const std::vector<ref::Slice> slices{{5, 15, 20, 30, ref::kInvCausal},
                                       {0, 20, 10, 20, ref::kCausal},
                                       {0, 20, 0, 10, ref::kFull},
                                       {15, 24, 20, 35, ref::kBiCausal}};
  for (alibi_dtype dtype : {kF32, kF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Inputs in = random_inputs({26, 35, 6, 3, 24}, dtype, 14);
    Mask mask = ranges_mask(ctx_.get(), slices, 26, 35);
    check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
  }
}

// ------------------------------------------------------------------------------ sliding window

// Sq > Sk, empty q, Sq < Sk, Sq == Sk, empty k, a single query.
const Sequences kWindowSeqs =
    sequences({{9, 5}, {0, 7}, {5, 14}, {19, 7}, {12, 12}, {4, 0}, {1, 27}});

class AttentionSlidingWindowTest
    : public AttentionParamFixture<std::tuple<LengthPair, alibi_dtype>> {};

TEST_P(AttentionSlidingWindowTest, MatchesDefinition) {
  const auto [window, dtype] = param();
  const auto [left, right] = window;
  const Sequences& seqs = kWindowSeqs;
  Mask mask = window_mask(ctx_.get(), seqs, left, right);
  const ref::Visibility want = ref::sliding_window(seqs.cu_q, seqs.cu_k, left, right);
  expect_same_cells(stored_visibility(mask.get(), seqs.total_q(), seqs.total_k()), want);
  int num_slices = 0;
  ASSERT_OK(alibi_mask_get_num_slices(mask.get(), &num_slices));
  EXPECT_LE(num_slices, 3 * seqs.batch());
  const Inputs in = random_inputs({seqs.total_q(), seqs.total_k(), 6, 2, 16}, dtype,
                                  uint32_t(100 + left * 7 + right));
  check_forward(ctx_.get(), in, mask.get(), nullptr,
                reference_problem(in, want, ref::varlen_positions(seqs.cu_q, seqs.cu_k)));
}

std::string window_case_name(const AttentionSlidingWindowTest::CaseParam& param) {
  const auto& [window, dtype] = param;
  auto side = [](int w) { return w < 0 ? std::string("inf") : std::to_string(w); };
  return "left_" + side(window.first) + "_right_" + side(window.second) + "_" + dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionSlidingWindowTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(LengthPair{-1, -1}, LengthPair{-1, 0},
                                                            LengthPair{-1, 3}, LengthPair{0, -1},
                                                            LengthPair{2, -1}, LengthPair{0, 0},
                                                            LengthPair{3, 2}, LengthPair{5, 0},
                                                            LengthPair{0, 4}, LengthPair{40, 40}),
                                          ::testing::Values(kF32, kBF16))),
    test::device_case_name<AttentionSlidingWindowTest::CaseParam>(window_case_name));

class AttentionSlidingWindow : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionSlidingWindow, test::kDevices, test::name_by_device);

TEST_P(AttentionSlidingWindow, UnboundedLeftZeroRightEqualsCausalVarlen) {
  const Sequences& seqs = kWindowSeqs;
  Mask window = window_mask(ctx_.get(), seqs, -1, 0);
  Mask causal = varlen_mask(ctx_.get(), seqs, true);
  expect_same_cells(stored_visibility(window.get(), seqs.total_q(), seqs.total_k()),
                    stored_visibility(causal.get(), seqs.total_q(), seqs.total_k()));
  const Inputs in = random_inputs({seqs.total_q(), seqs.total_k(), 4, 4, 16}, kF32, 15);
  const Outputs from_window = forward(ctx_.get(), in, window.get(), nullptr);
  const Outputs from_causal = forward(ctx_.get(), in, causal.get(), nullptr);
  expect_matches(from_window, ref::attention(varlen_problem(in, seqs, true)), in.shape, kF32);
  expect_matches(from_window, as_result(from_causal), in.shape, kF32);
}

// -------------------------------------------------------------------------------------- varlen

// Equal lengths, empty sequences of every kind, Lq > Lk, Lq < Lk.
const Sequences kVarlenSeqs =
    sequences({{5, 5}, {0, 0}, {9, 4}, {3, 11}, {0, 6}, {6, 0}, {17, 17}, {1, 1}, {2, 30}});

class AttentionVarlenTest : public AttentionParamFixture<std::tuple<bool, alibi_dtype>> {};

TEST_P(AttentionVarlenTest, BottomRightPositionsMatchReference) {
  const auto [causal, dtype] = param();
  const Sequences& seqs = kVarlenSeqs;
  const Inputs in =
      random_inputs({seqs.total_q(), seqs.total_k(), 4, 4, 24}, dtype, causal ? 16 : 17);
  Mask mask = varlen_mask(ctx_.get(), seqs, causal);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, causal));
}

std::string varlen_case_name(const AttentionVarlenTest::CaseParam& param) {
  return std::string(std::get<0>(param) ? "causal_" : "full_") + dtype_name(std::get<1>(param));
}

INSTANTIATE_TEST_SUITE_P(All, AttentionVarlenTest,
                         ::testing::Combine(test::kDevices,
                                            ::testing::Combine(::testing::Bool(), kAllDtypes)),
                         test::device_case_name<AttentionVarlenTest::CaseParam>(varlen_case_name));

class AttentionVarlen : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionVarlen, test::kDevices, test::name_by_device);

// The header: tokens before cu_seqlens[0] get position 0 and see nothing.
TEST_P(AttentionVarlen, TokensBeforeFirstSequenceSeeNothing) {
  Sequences seqs;
  seqs.cu_q = {2, 7, 12};
  seqs.cu_k = {3, 8, 15};
  const Inputs in = random_inputs({12, 15, 2, 2, 16}, kF32, 18);
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, true));
}

// ----------------------------------------------------------------------------------- positions

class AttentionPositions : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionPositions, test::kDevices, test::name_by_device);

TEST_P(AttentionPositions, RandomPositionsOnVarlenMask) {
  const Sequences seqs = sequences({{11, 11}, {7, 19}, {13, 5}});
  const Inputs in = random_inputs({seqs.total_q(), seqs.total_k(), 4, 2, 16}, kF32, 19);
  const ref::Positions positions{random_positions(size_t(seqs.total_q()), 20, -20, 43),
                                 random_positions(size_t(seqs.total_k()), 21, -20, 43)};
  Mask mask = varlen_mask(ctx_.get(), seqs, false);
  ASSERT_OK(alibi_mask_set_positions(mask.get(), positions.q.data(), positions.k.data()));
  ref::Problem problem = varlen_problem(in, seqs, false);
  problem.positions = positions;
  check_forward(ctx_.get(), in, mask.get(), nullptr, problem);
}

TEST_P(AttentionPositions, RandomPositionsOnRangesMask) {
  const std::vector<ref::Slice> slices{{0, 10, 0, 10, ref::kCausal}, {10, 25, 0, 30, ref::kFull}};
  const Inputs in = random_inputs({25, 30, 3, 3, 16}, kBF16, 22);
  const ref::Positions positions{random_positions(25, 23, 0, 47), random_positions(30, 24, 0, 47)};
  Mask mask = ranges_mask(ctx_.get(), slices, 25, 30);
  ASSERT_OK(alibi_mask_set_positions(mask.get(), positions.q.data(), positions.k.data()));
  ref::Problem problem = ranges_problem(in, slices);
  problem.positions = positions;
  check_forward(ctx_.get(), in, mask.get(), nullptr, problem);
}

// NULL for one side keeps that side's current positions (defaults first, then the last set).
TEST_P(AttentionPositions, NullKeepsThatSide) {
  const Sequences seqs = sequences({{9, 14}, {12, 12}});
  const Inputs in = random_inputs({seqs.total_q(), seqs.total_k(), 2, 1, 16}, kF32, 25);
  const std::vector<int32_t> q_positions = random_positions(size_t(seqs.total_q()), 26, 0, 40);
  const std::vector<int32_t> k_positions = random_positions(size_t(seqs.total_k()), 27, 0, 40);
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  ref::Problem problem = varlen_problem(in, seqs, true);

  ASSERT_OK(alibi_mask_set_positions(mask.get(), nullptr, k_positions.data()));
  problem.positions.k = k_positions;
  check_forward(ctx_.get(), in, mask.get(), nullptr, problem);

  ASSERT_OK(alibi_mask_set_positions(mask.get(), q_positions.data(), nullptr));
  problem.positions.q = q_positions;
  check_forward(ctx_.get(), in, mask.get(), nullptr, problem);
}

// ----------------------------------------------------------------------------------------- GQA

class AttentionGqaTest : public AttentionParamFixture<std::tuple<HeadCounts, alibi_dtype>> {};

TEST_P(AttentionGqaTest, QueryHeadReadsItsGroupsKvHead) {
  const auto [heads, dtype] = param();
  const Sequences seqs = sequences({{13, 13}, {7, 20}, {10, 3}});
  const Inputs in = random_inputs({seqs.total_q(), seqs.total_k(), heads.first, heads.second, 16},
                                  dtype, uint32_t(heads.first * 10 + heads.second));
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, true));
}

std::string gqa_case_name(const AttentionGqaTest::CaseParam& param) {
  const auto& [heads, dtype] = param;
  return "hq" + std::to_string(heads.first) + "_hkv" + std::to_string(heads.second) + "_" +
         dtype_name(dtype);
}

// Ratios 1, 2, 4 and 8, with head counts that are not powers of 2.
INSTANTIATE_TEST_SUITE_P(
    All, AttentionGqaTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(HeadCounts{5, 5}, HeadCounts{1, 1},
                                                            HeadCounts{6, 3}, HeadCounts{4, 2},
                                                            HeadCounts{12, 3}, HeadCounts{8, 1},
                                                            HeadCounts{24, 3}),
                                          ::testing::Values(kF32, kF16))),
    test::device_case_name<AttentionGqaTest::CaseParam>(gqa_case_name));

// ------------------------------------------------------------------------------------ head_dim

class AttentionHeadDimTest : public AttentionParamFixture<std::tuple<int, alibi_dtype>> {};

TEST_P(AttentionHeadDimTest, MatchesReference) {
  const auto [head_dim, dtype] = param();
  const Sequences seqs = sequences({{21, 21}, {6, 30}});
  const Inputs in =
      random_inputs({seqs.total_q(), seqs.total_k(), 2, 1, head_dim}, dtype, uint32_t(head_dim));
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, true));
}

std::string head_dim_case_name(const AttentionHeadDimTest::CaseParam& param) {
  return "d" + std::to_string(std::get<0>(param)) + "_" + dtype_name(std::get<1>(param));
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionHeadDimTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(8, 16, 37, 64, 80, 96, 128, 256),
                                          kAllDtypes)),
    test::device_case_name<AttentionHeadDimTest::CaseParam>(head_dim_case_name));

// -------------------------------------------------------------------------------------- params

class AttentionParams : public AttentionFixture {
 protected:
  void SetUp() override {
    AttentionFixture::SetUp();
    if (!IsSkipped()) causal_ = varlen_mask(ctx_.get(), seqs_, true);
  }

  const Sequences seqs_ = sequences({{15, 15}, {4, 22}, {9, 6}});
  Mask causal_;

  Inputs inputs(int heads_q, int heads_kv, alibi_dtype dtype, uint32_t seed) const {
    return random_inputs({seqs_.total_q(), seqs_.total_k(), heads_q, heads_kv, 32}, dtype, seed);
  }
};
INSTANTIATE_TEST_SUITE_P(Device, AttentionParams, test::kDevices, test::name_by_device);

TEST_P(AttentionParams, ExplicitSoftmaxScale) {
  const Inputs in = inputs(4, 2, kF32, 30);
  alibi_attention_params params = default_params();
  params.softmax_scale = 0.37f;
  ref::Problem problem = varlen_problem(in, seqs_, true);
  problem.scale = 0.37f;
  check_forward(ctx_.get(), in, causal_.get(), &params, problem);
}

// Softcap applies to the scaled score before the biases; scale 1 makes it bite.
TEST_P(AttentionParams, Softcap) {
  for (alibi_dtype dtype : {kF32, kBF16}) {
    for (float scale : {1.0f, 0.0f}) {
      SCOPED_TRACE(dtype_name(dtype) + " scale " + std::to_string(scale));
      const Inputs in = inputs(4, 4, dtype, 31);
      alibi_attention_params params = default_params();
      params.softmax_scale = scale;
      params.softcap = 2.5f;
      ref::Problem problem = varlen_problem(in, seqs_, true);
      if (scale > 0) problem.scale = scale;
      problem.softcap = 2.5f;
      check_forward(ctx_.get(), in, causal_.get(), &params, problem);
    }
  }
}

// max_bias 0 turns ALiBi off; 6 heads exercise the non-power-of-2 interleave.
TEST_P(AttentionParams, MaxBiasVariants) {
  for (float max_bias : {0.0f, 1.0f, 4.0f, 8.0f, 16.0f}) {
    SCOPED_TRACE("max_bias " + std::to_string(max_bias));
    const Inputs in = inputs(6, 3, kF32, 32);
    alibi_attention_params params = default_params();
    params.max_bias = max_bias;
    ref::Problem problem = varlen_problem(in, seqs_, true);
    problem.slopes = ref::slopes_of_rows(ref::formula_slopes(6, max_bias), seqs_.total_q());
    check_forward(ctx_.get(), in, causal_.get(), &params, problem);
  }
}

// User slopes replace the formula; with them total_heads/head_offset are unused.
TEST_P(AttentionParams, UserSlopes) {
  std::vector<float> slopes = test::random_floats(5, 33, 0.0f, 1.0f);
  slopes[2] = 0.0f;
  const Inputs in = inputs(5, 5, kF32, 34);
  ref::Problem problem = varlen_problem(in, seqs_, true);
  problem.slopes = ref::slopes_of_rows(slopes, seqs_.total_q());
  alibi_attention_params params = default_params();
  params.slopes = slopes.data();
  check_forward(ctx_.get(), in, causal_.get(), &params, problem);
  params.total_heads = 12;
  params.head_offset = 3;
  check_forward(ctx_.get(), in, causal_.get(), &params, problem);
}

// slopes_per_batch: sequence b, head h uses slopes[b * H + h].
TEST_P(AttentionParams, PerBatchSlopesOnVarlenAndWindowMasks) {
  const int heads = 4;
  const std::vector<float> slopes =
      test::random_floats(size_t(seqs_.batch() * heads), 35, 0.0f, 1.0f);
  const Inputs in = inputs(heads, 2, kF32, 36);
  alibi_attention_params params = default_params();
  params.slopes = slopes.data();
  params.slopes_per_batch = 1;
  ref::Problem problem = varlen_problem(in, seqs_, true);
  problem.slopes = ref::slopes_of_sequences(slopes, heads, seqs_.cu_q);
  check_forward(ctx_.get(), in, causal_.get(), &params, problem);

  Mask window = window_mask(ctx_.get(), seqs_, 3, 1);
  problem.visible = ref::sliding_window(seqs_.cu_q, seqs_.cu_k, 3, 1);
  check_forward(ctx_.get(), in, window.get(), &params, problem);
}

// Heads [offset, offset + count) of every (total, heads, dim) array.
std::vector<float> select_heads(const std::vector<float>& x, int heads, int dim, int offset,
                                int count) {
  std::vector<float> part;
  for (size_t row = 0; row < x.size(); row += size_t(heads * dim))
    part.insert(part.end(), x.begin() + long(row + size_t(offset * dim)),
                x.begin() + long(row + size_t((offset + count) * dim)));
  return part;
}

// A shard's lse rows are heads [offset, offset + count) of the (H, total_q) array.
std::vector<float> select_lse(const std::vector<float>& lse, int64_t total_q, int offset,
                              int count) {
  return {lse.begin() + long(offset * total_q), lse.begin() + long((offset + count) * total_q)};
}

// Tensor parallelism: each 3-head shard of a 12-head model (shard [6, 9) straddles the
// power-of-2 boundary at 8) equals those heads of the full model's run.
TEST_P(AttentionParams, TensorParallelShardsMatchFullModel) {
  const int total_heads = 12, shard_heads = 3, dim = 32;
  const Inputs full = inputs(total_heads, total_heads, kF32, 37);
  const Outputs full_out = forward(ctx_.get(), full, causal_.get(), nullptr);
  expect_matches(full_out, ref::attention(varlen_problem(full, seqs_, true)), full.shape, kF32);
  const std::vector<float> all_slopes = ref::formula_slopes(total_heads, 8.0f);
  for (int offset = 0; offset < total_heads; offset += shard_heads) {
    SCOPED_TRACE("head_offset " + std::to_string(offset));
    Inputs shard = full;
    shard.shape.heads_q = shard.shape.heads_kv = shard_heads;
    shard.q = select_heads(full.q, total_heads, dim, offset, shard_heads);
    shard.k = select_heads(full.k, total_heads, dim, offset, shard_heads);
    shard.v = select_heads(full.v, total_heads, dim, offset, shard_heads);
    alibi_attention_params params = default_params();
    params.total_heads = total_heads;
    params.head_offset = offset;
    const Outputs got = forward(ctx_.get(), shard, causal_.get(), &params);
    ref::Problem problem = varlen_problem(shard, seqs_, true);
    const std::vector<float> shard_slopes(all_slopes.begin() + offset,
                                          all_slopes.begin() + offset + shard_heads);
    problem.slopes = ref::slopes_of_rows(shard_slopes, seqs_.total_q());
    expect_matches(got, ref::attention(problem), shard.shape, kF32);
    const Outputs full_heads{select_heads(full_out.out, total_heads, dim, offset, shard_heads),
                             select_lse(full_out.lse, seqs_.total_q(), offset, shard_heads)};
    expect_matches(got, as_result(full_heads), shard.shape, kF32);
  }
}

// ----------------------------------------------------------------------------------- attn_bias

// Random additive bias rounded to dtype; row 4 is -inf everywhere (out 0, lse -inf) and every
// 7th cell is -inf.
std::vector<float> random_attn_bias(int heads, int64_t total_q, int64_t total_k,
                                    alibi_dtype dtype) {
  std::vector<float> bias =
      random_values(size_t(heads * total_q * total_k), dtype, 40, -2.0f, 2.0f);
  for (size_t cell = 0; cell < bias.size(); ++cell) {
    const int64_t row = int64_t(cell / size_t(total_k)) % total_q;
    if (row == 4 || cell % 7 == 0) bias[cell] = kNegInf;
  }
  return bias;
}

class AttentionAttnBiasTest
    : public AttentionParamFixture<std::tuple<bool, alibi_dtype, alibi_dtype>> {};

TEST_P(AttentionAttnBiasTest, AddedToScores) {
  const auto [per_head, bias_dtype, dtype] = param();
  const Sequences seqs = sequences({{13, 13}, {6, 20}});
  const Shape shape{seqs.total_q(), seqs.total_k(), 4, 2, 16};
  const int bias_heads = per_head ? shape.heads_q : 1;
  const Inputs in = random_inputs(shape, dtype, 41);
  const std::vector<float> bias =
      random_attn_bias(bias_heads, shape.total_q, shape.total_k, bias_dtype);
  Tensor bias_tensor =
      upload(ctx_.get(), bias_dtype, {bias_heads, shape.total_q, shape.total_k}, bias);
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  alibi_attention_params params = default_params();
  params.attn_bias = bias_tensor.get();
  ref::Problem problem = varlen_problem(in, seqs, true);
  problem.bias_heads = bias_heads;
  problem.attn_bias = to_double(bias);
  check_forward(ctx_.get(), in, mask.get(), &params, problem);
}

std::string attn_bias_case_name(const AttentionAttnBiasTest::CaseParam& param) {
  const auto& [per_head, bias_dtype, dtype] = param;
  return std::string(per_head ? "per_head" : "broadcast") + "_bias_" + dtype_name(bias_dtype) +
         "_q_" + dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionAttnBiasTest,
    ::testing::Combine(test::kDevices, ::testing::Combine(::testing::Bool(), kAllDtypes,
                                                          ::testing::Values(kF32, kBF16))),
    test::device_case_name<AttentionAttnBiasTest::CaseParam>(attn_bias_case_name));

class AttentionAttnBias : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionAttnBias, test::kDevices, test::name_by_device);

// attn_bias may have any strides: here head stride 0 (one plane for every head) and the plane
// stored column-major.
TEST_P(AttentionAttnBias, StridedBias) {
  const Sequences seqs = sequences({{10, 10}, {8, 17}});
  const Shape shape{seqs.total_q(), seqs.total_k(), 3, 3, 16};
  const int64_t tq = shape.total_q, tk = shape.total_k;
  const Inputs in = random_inputs(shape, kF32, 42);
  std::vector<float> plane = random_values(size_t(tq * tk), kF32, 43, -2.0f, 2.0f);
  const test::DeviceBuffer buffer(ctx_.get(), kF32, 4, encode(plane, kF32));
  const View view{{shape.heads_q, tq, tk}, {0, 1, tq}, 0};
  Tensor bias = wrap(ctx_.get(), kF32, view, buffer.data());
  Mask mask = varlen_mask(ctx_.get(), seqs, false);
  alibi_attention_params params = default_params();
  params.attn_bias = bias.get();
  ref::Problem problem = varlen_problem(in, seqs, false);
  problem.bias_heads = shape.heads_q;
  problem.attn_bias = to_double(gather(plane, view));
  check_forward(ctx_.get(), in, mask.get(), &params, problem);
}

// ------------------------------------------------------------------------------------- layouts

class AttentionPackedQkvTest : public AttentionParamFixture<std::tuple<alibi_dtype, HeadCounts>> {};

// q, k, v are views into one packed (T, Hq + 2 Hkv, D) buffer; out and lse are strided with
// padding that must stay poisoned.
TEST_P(AttentionPackedQkvTest, StridedViewsMatchReference) {
  const auto [dtype, heads] = param();
  const auto [hq, hkv] = heads;
  const int64_t tokens = 37, dim = 32, width = hq + 2 * hkv;
  std::vector<uint8_t> packed =
      encode(random_values(size_t(tokens * width * dim), dtype, 50), dtype);
  const std::vector<float> packed_values = decode(packed, dtype);
  const std::vector<int64_t> qkv_strides{width * dim, dim, 1};
  const View q_view{{tokens, hq, dim}, qkv_strides, 0};
  const View k_view{{tokens, hkv, dim}, qkv_strides, hq * dim};
  const View v_view{{tokens, hkv, dim}, qkv_strides, (hq + hkv) * dim};
  const View out_view{{tokens, hq, dim}, {hq * (dim + 4) + 16, dim + 4, 1}, 0};
  const View lse_view{{hq, tokens}, {1, hq + 1}, 0};
  const std::vector<float> poison_out(size_t(tokens * out_view.strides[0]), test::kPoison);
  const std::vector<float> poison_lse(size_t(tokens * (hq + 1)), test::kPoison);
  const test::DeviceBuffer qkv_buffer(ctx_.get(), dtype, dtype_size(dtype), packed);
  const test::DeviceBuffer out_buffer(ctx_.get(), dtype, dtype_size(dtype),
                                      encode(poison_out, dtype));
  const test::DeviceBuffer lse_buffer(ctx_.get(), kF32, 4, encode(poison_lse, kF32));

  Tensor q = wrap(ctx_.get(), dtype, q_view, qkv_buffer.data());
  Tensor k = wrap(ctx_.get(), dtype, k_view, qkv_buffer.data());
  Tensor v = wrap(ctx_.get(), dtype, v_view, qkv_buffer.data());
  Tensor out = wrap(ctx_.get(), dtype, out_view, out_buffer.data());
  Tensor lse = wrap(ctx_.get(), kF32, lse_view, lse_buffer.data());
  const Sequences seqs = sequences({{20, 20}, {17, 17}});
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  ASSERT_OK(alibi_attention_forward(ctx_.get(), q.get(), k.get(), v.get(), mask.get(), nullptr,
                                    out.get(), lse.get()));

  const Inputs in{{tokens, tokens, hq, hkv, int(dim)},
                  dtype,
                  gather(packed_values, q_view),
                  gather(packed_values, k_view),
                  gather(packed_values, v_view)};
  const std::vector<float> out_values = decode(out_buffer.read(), dtype);
  const std::vector<float> lse_values = decode(lse_buffer.read(), kF32);
  expect_matches({gather(out_values, out_view), gather(lse_values, lse_view)},
                 ref::attention(varlen_problem(in, seqs, true)), in.shape, dtype);
  EXPECT_EQ(count_changed_outside(out_values, out_view, round_to(test::kPoison, dtype)), 0);
  EXPECT_EQ(count_changed_outside(lse_values, lse_view, test::kPoison), 0);
}

std::string packed_case_name(const AttentionPackedQkvTest::CaseParam& param) {
  const auto& [dtype, heads] = param;
  return dtype_name(dtype) + "_hq" + std::to_string(heads.first) + "_hkv" +
         std::to_string(heads.second);
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionPackedQkvTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(kAllDtypes,
                                          ::testing::Values(HeadCounts{4, 4}, HeadCounts{6, 2}))),
    test::device_case_name<AttentionPackedQkvTest::CaseParam>(packed_case_name));

class AttentionLayout : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionLayout, test::kDevices, test::name_by_device);

// Passing no lse changes nothing about out.
TEST_P(AttentionLayout, LseIsOptional) {
  const Sequences seqs = sequences({{19, 19}, {5, 33}});
  const Shape s{seqs.total_q(), seqs.total_k(), 4, 2, 32};
  const Inputs in = random_inputs(s, kF32, 51);
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  const Outputs with_lse = forward(ctx_.get(), in, mask.get(), nullptr);
  Tensor q = upload(ctx_.get(), kF32, {s.total_q, s.heads_q, s.head_dim}, in.q);
  Tensor k = upload(ctx_.get(), kF32, {s.total_k, s.heads_kv, s.head_dim}, in.k);
  Tensor v = upload(ctx_.get(), kF32, {s.total_k, s.heads_kv, s.head_dim}, in.v);
  Tensor out = poisoned(ctx_.get(), kF32, {s.total_q, s.heads_q, s.head_dim});
  ASSERT_OK(alibi_attention_forward(ctx_.get(), q.get(), k.get(), v.get(), mask.get(), nullptr,
                                    out.get(), nullptr));
  const Outputs without_lse{download(out.get(), kF32, s.total_q * s.heads_q * s.head_dim),
                            with_lse.lse};
  expect_bitwise_equal(without_lse, with_lse);
  expect_matches(with_lse, ref::attention(varlen_problem(in, seqs, true)), s, kF32);
}

// ------------------------------------------------------------------------------------- threads

class AttentionThreads : public AttentionFixture {
 protected:
  void SetUp() override {
    AttentionFixture::SetUp();
    if (!IsSkipped()) mask_ = varlen_mask(ctx_.get(), seqs_, true);
  }

  // Medium shapes so that work is split between threads.
  const Sequences seqs_ = sequences({{129, 129}, {64, 300}, {1, 77}, {40, 13}});
  Mask mask_;

  Inputs inputs(alibi_dtype dtype) const {
    return random_inputs({seqs_.total_q(), seqs_.total_k(), 4, 2, 64}, dtype, 60);
  }
};
INSTANTIATE_TEST_SUITE_P(Device, AttentionThreads, test::kDevices, test::name_by_device);

TEST_P(AttentionThreads, ThreadCountsGiveBitwiseIdenticalResults) {
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Inputs in = inputs(dtype);
    ASSERT_OK(alibi_context_set_num_threads(ctx_.get(), 1));
    const Outputs single = forward(ctx_.get(), in, mask_.get(), nullptr);
    expect_matches(single, ref::attention(varlen_problem(in, seqs_, true)), in.shape, dtype);
    for (int threads : {2, 3, 4}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      ASSERT_OK(alibi_context_set_num_threads(ctx_.get(), threads));
      expect_bitwise_equal(forward(ctx_.get(), in, mask_.get(), nullptr), single);
    }
  }
}

TEST_P(AttentionThreads, DeterministicRunsAreBitwiseIdentical) {
  const Inputs in = inputs(kF32);
  alibi_attention_params params = default_params();
  params.deterministic = 1;
  const Outputs first = forward(ctx_.get(), in, mask_.get(), &params);
  expect_matches(first, ref::attention(varlen_problem(in, seqs_, true)), in.shape, kF32);
  for (int run = 0; run < 2; ++run)
    expect_bitwise_equal(forward(ctx_.get(), in, mask_.get(), &params), first);
}

// --------------------------------------------------------------------------------- block edges

class AttentionBlockEdgeTest : public AttentionParamFixture<std::tuple<int, int, int>> {};

// Odd lengths around typical tile sizes, one slice over the whole stream.
TEST_P(AttentionBlockEdgeTest, MatchesReference) {
  const auto [tq, tk, type] = param();
  const std::vector<ref::Slice> slices{{0, tq, 0, tk, type}};
  const Inputs in = random_inputs({tq, tk, 2, 1, 32}, kF32, uint32_t(tq * 1000 + tk * 4 + type));
  Mask mask = ranges_mask(ctx_.get(), slices, tq, tk);
  check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
}

const auto kEdgeLengths = ::testing::Values(1, 2, 63, 64, 65, 127, 129, 300);

std::string block_edge_case_name(const AttentionBlockEdgeTest::CaseParam& param) {
  const auto& [tq, tk, type] = param;
  return std::to_string(tq) + "x" + std::to_string(tk) + "_" + mask_type_name(type);
}

INSTANTIATE_TEST_SUITE_P(
    All, AttentionBlockEdgeTest,
    ::testing::Combine(test::kDevices, ::testing::Combine(kEdgeLengths, kEdgeLengths,
                                                          ::testing::Values(0, 1, 2, 3))),
    test::device_case_name<AttentionBlockEdgeTest::CaseParam>(block_edge_case_name));

// ------------------------------------------------------------------------------- empty tensors

class AttentionEmptyTensors : public AttentionFixture {};
INSTANTIATE_TEST_SUITE_P(Device, AttentionEmptyTensors, test::kDevices, test::name_by_device);

TEST_P(AttentionEmptyTensors, ZeroQueries) {
  const std::vector<ref::Slice> slices{{0, 0, 0, 6, ref::kFull}};
  const Inputs in = random_inputs({0, 6, 2, 2, 16}, kF32, 70);
  Mask mask = ranges_mask(ctx_.get(), slices, 0, 6);
  check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
}

// Every row sees nothing: out 0, lse -inf.
TEST_P(AttentionEmptyTensors, ZeroKeys) {
  const std::vector<ref::Slice> slices{{0, 5, 0, 0, ref::kCausal}};
  for (alibi_dtype dtype : {kF32, kF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const Inputs in = random_inputs({5, 0, 2, 1, 16}, dtype, 71);
    Mask mask = ranges_mask(ctx_.get(), slices, 5, 0);
    check_forward(ctx_.get(), in, mask.get(), nullptr, ranges_problem(in, slices));
  }
}

TEST_P(AttentionEmptyTensors, VarlenWithoutKeys) {
  const Sequences seqs = sequences({{3, 0}, {0, 0}, {4, 0}});
  const Inputs in = random_inputs({seqs.total_q(), 0, 2, 2, 8}, kBF16, 72);
  Mask mask = varlen_mask(ctx_.get(), seqs, true);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, true));
}

TEST_P(AttentionEmptyTensors, EmptyBatch) {
  const Sequences seqs;  // batch 0: cu_seqlens {0}
  const Inputs in = random_inputs({0, 0, 2, 2, 16}, kF32, 73);
  Mask mask = varlen_mask(ctx_.get(), seqs, false);
  check_forward(ctx_.get(), in, mask.get(), nullptr, varlen_problem(in, seqs, false));
}

}  // namespace
