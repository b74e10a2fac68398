// The bias builders against float64 references written here: alibi_build_bias, OpenPPL's
// dynamic_batching.ALiBiMask and HF Bloom's build_alibi_tensor.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "test_util.h"

namespace {

using test::Context;
using test::make_sliding_window;
using test::make_varlen;
using test::Mask;
using test::Tensor;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr alibi_dtype kFloatDtypes[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};

size_t element_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 4;
  }
}

void encode(double value, alibi_dtype dtype, uint8_t* p) {
  const float f = float(value);
  uint16_t half = 0;
  int32_t i32 = int32_t(value);
  int64_t i64 = int64_t(value);
  switch (dtype) {
    case ALIBI_DTYPE_F32: std::memcpy(p, &f, 4); return;
    case ALIBI_DTYPE_F16:
      half = test::float_to_f16_bits(f);
      std::memcpy(p, &half, 2);
      return;
    case ALIBI_DTYPE_BF16:
      half = test::float_to_bf16_bits(f);
      std::memcpy(p, &half, 2);
      return;
    case ALIBI_DTYPE_I32: std::memcpy(p, &i32, 4); return;
    case ALIBI_DTYPE_I64: std::memcpy(p, &i64, 8); return;
  }
}

double decode(const uint8_t* p, alibi_dtype dtype) {
  float f = 0;
  uint16_t half = 0;
  int32_t i32 = 0;
  int64_t i64 = 0;
  switch (dtype) {
    case ALIBI_DTYPE_F32: std::memcpy(&f, p, 4); return f;
    case ALIBI_DTYPE_F16: std::memcpy(&half, p, 2); return test::f16_bits_to_float(half);
    case ALIBI_DTYPE_BF16: std::memcpy(&half, p, 2); return test::bf16_bits_to_float(half);
    case ALIBI_DTYPE_I32: std::memcpy(&i32, p, 4); return i32;
    case ALIBI_DTYPE_I64: std::memcpy(&i64, p, 8); return double(i64);
  }
  return std::nan("");
}

// A (possibly strided) tensor on the context's device, wrapping a flat allocation that a host
// buffer the test owns mirrors, so the test sees exactly which bytes a call wrote, gaps between
// strided elements included. set() and fill_poison() write the host buffer, push() copies it to
// the device, pull() copies the device back. Elements are addressed by their row-major index.
class HostTensor {
 public:
  HostTensor(alibi_context_t ctx, alibi_dtype dtype, std::vector<int64_t> shape,
             std::vector<int64_t> strides = {})
      : dtype_(dtype),
        shape_(std::move(shape)),
        strides_(strides.empty() ? row_major_strides(shape_) : std::move(strides)),
        bytes_(buffer_elements() * element_size(dtype_), 0),
        storage_(ctx, dtype_, element_size(dtype_), bytes_) {
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(alibi_tensor_wrap(ctx, dtype_, int(shape_.size()), shape_.data(), strides_.data(),
                                storage_.data(), &t),
              ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    tensor_.reset(t);
  }

  void push() { storage_.write(bytes_); }
  void pull() { bytes_ = storage_.read(); }

  alibi_tensor_t get() const { return tensor_.get(); }
  alibi_dtype dtype() const { return dtype_; }
  int64_t numel() const {
    int64_t n = 1;
    for (int64_t s : shape_) n *= s;
    return n;
  }
  void set(int64_t flat, double value) { encode(value, dtype_, bytes_.data() + offset(flat)); }
  double at(int64_t flat) const { return decode(bytes_.data() + offset(flat), dtype_); }
  std::vector<double> values() const {
    std::vector<double> all(static_cast<size_t>(numel()));
    for (int64_t e = 0; e < numel(); ++e) all[size_t(e)] = at(e);
    return all;
  }

  // Writes kPoison into every element slot of the buffer, gaps between strided elements included.
  void fill_poison() {
    for (size_t slot = 0; slot < buffer_elements(); ++slot)
      encode(test::kPoison, dtype_, slot_ptr(slot));
    push();
  }
  void expect_gaps_hold_poison() const {
    std::vector<bool> addressed(buffer_elements(), false);
    for (int64_t e = 0; e < numel(); ++e) addressed[offset(e) / element_size(dtype_)] = true;
    std::vector<uint8_t> poison(element_size(dtype_));
    encode(test::kPoison, dtype_, poison.data());
    for (size_t slot = 0; slot < addressed.size(); ++slot) {
      if (addressed[slot]) continue;
      EXPECT_EQ(std::memcmp(bytes_.data() + slot * poison.size(), poison.data(), poison.size()), 0)
          << "gap slot " << slot << " was written";
    }
  }

 private:
  static std::vector<int64_t> row_major_strides(const std::vector<int64_t>& shape) {
    std::vector<int64_t> strides(shape.size());
    int64_t stride = 1;
    for (size_t d = shape.size(); d-- > 0;) {
      strides[d] = stride;
      stride *= shape[d];
    }
    return strides;
  }
  size_t buffer_elements() const {
    if (numel() == 0) return 0;
    int64_t last = 0;
    for (size_t d = 0; d < shape_.size(); ++d) last += (shape_[d] - 1) * strides_[d];
    return size_t(last + 1);
  }
  size_t offset(int64_t flat) const {
    int64_t element = 0;
    for (size_t d = shape_.size(); d-- > 0;) {
      element += (flat % shape_[d]) * strides_[d];
      flat /= shape_[d];
    }
    return size_t(element) * element_size(dtype_);
  }
  uint8_t* slot_ptr(size_t slot) { return bytes_.data() + slot * element_size(dtype_); }

  alibi_dtype dtype_;
  std::vector<int64_t> shape_, strides_;
  std::vector<uint8_t> bytes_;
  test::DeviceBuffer storage_;
  Tensor tensor_;
};

HostTensor host_tensor_from(alibi_context_t ctx, alibi_dtype dtype, std::vector<int64_t> shape,
                            const std::vector<double>& values) {
  HostTensor t(ctx, dtype, std::move(shape));
  for (size_t e = 0; e < values.size(); ++e) t.set(int64_t(e), values[e]);
  t.push();
  return t;
}

// Room for rounding of a value computed in float32 and stored in `dtype`.
double tolerance(alibi_dtype dtype, double expected) {
  switch (dtype) {
    case ALIBI_DTYPE_F16: return 1e-3 * std::fabs(expected) + 1e-4;
    case ALIBI_DTYPE_BF16: return 4e-3 * std::fabs(expected) + 1e-4;
    default: return 1e-6 * std::fabs(expected) + 1e-5;
  }
}

bool matches(double got, double expected, alibi_dtype dtype) {
  if (std::isinf(expected)) return got == expected;
  return std::fabs(got - expected) <= tolerance(dtype, expected);  // false for NaN and poison
}

// Every element of out against the reference; reports the first few mismatches.
void expect_values(const HostTensor& out, const std::vector<double>& expected) {
  ASSERT_EQ(size_t(out.numel()), expected.size());
  int mismatches = 0;
  for (size_t e = 0; e < expected.size(); ++e) {
    const double got = out.at(int64_t(e));
    if (matches(got, expected[e], out.dtype())) continue;
    if (++mismatches <= 5)
      ADD_FAILURE() << "element " << e << ": got " << got << ", expected " << expected[e];
  }
  EXPECT_EQ(mismatches, 0) << "of " << expected.size() << " elements";
}

// ------------------------------------------------------------------------------------------
// References

// SPEC's slope formula in double; max_bias 0 means no ALiBi (zero slopes).
double reference_slope(int head, int num_heads, double max_bias) {
  if (max_bias == 0.0) return 0.0;
  int c = 1;
  while (c * 2 <= num_heads) c *= 2;
  const double m0 = std::pow(2.0, -max_bias / c), m1 = std::pow(2.0, -max_bias / (2.0 * c));
  return head < c ? std::pow(m0, head + 1) : std::pow(m1, 2 * (head - c) + 1);
}

struct SlopeReference {
  std::vector<double> values;
  int heads = 0;
  bool per_sequence = false;
  double at(int sequence, int head) const {
    return values[size_t(per_sequence ? sequence * heads + head : head)];
  }
};

SlopeReference formula_slopes(int heads, double max_bias, int total_heads = 0,
                              int head_offset = 0) {
  if (total_heads == 0) total_heads = heads;
  SlopeReference s{{}, heads, false};
  for (int h = 0; h < heads; ++h)
    s.values.push_back(reference_slope(head_offset + h, total_heads, max_bias));
  return s;
}

SlopeReference given_slopes(const std::vector<float>& slopes, int heads, bool per_sequence) {
  return SlopeReference{std::vector<double>(slopes.begin(), slopes.end()), heads, per_sequence};
}

// An additive (heads|1, rows, cols) tensor as the library reads it.
struct AdditiveReference {
  std::vector<double> values;
  int64_t heads = 1;
  double at(int64_t h, int64_t cell, int64_t cells) const {
    return values[size_t((heads == 1 ? 0 : h) * cells + cell)];
  }
};

// SPEC's table: is local cell (r, c) of an sq x sk slice of this type visible?
bool slice_sees(int type, int64_t r, int64_t c, int64_t sq, int64_t sk) {
  const bool causal_ok = c <= r + (sk - sq);
  const bool inverse_ok = c >= r;
  switch (type) {
    case ALIBI_MASK_FULL: return true;
    case ALIBI_MASK_CAUSAL: return causal_ok;
    case ALIBI_MASK_INV_CAUSAL: return inverse_ok;
    case ALIBI_MASK_BI_CAUSAL: return causal_ok && inverse_ok;
    default: return false;
  }
}

// What a mask shows: per cell the sequence (row of per-batch slopes) that sees it or -1, and
// every token's position.
struct MaskReference {
  int64_t total_q = 0, total_k = 0;
  std::vector<int> owner;
  std::vector<int32_t> qpos, kpos;
  MaskReference(int64_t tq, int64_t tk)
      : total_q(tq),
        total_k(tk),
        owner(size_t(tq * tk), -1),
        qpos(size_t(tq), 0),
        kpos(size_t(tk), 0) {}
  int& cell(int64_t i, int64_t j) { return owner[size_t(i * total_k + j)]; }
};

// Bottom-right aligned positions of a varlen batch; tokens before cu[0] keep 0.
MaskReference varlen_positions(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k) {
  MaskReference r(cu_q.back(), cu_k.back());
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int32_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
    for (int32_t i = 0; i < lq; ++i) r.qpos[size_t(cu_q[b] + i)] = i + (lk - lq);
    for (int32_t j = 0; j < lk; ++j) r.kpos[size_t(cu_k[b] + j)] = j;
  }
  return r;
}

MaskReference varlen_reference(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k,
                               bool causal) {
  MaskReference r = varlen_positions(cu_q, cu_k);
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int64_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
    for (int64_t row = 0; row < lq; ++row) {
      for (int64_t col = 0; col < lk; ++col) {
        if (!causal || col <= row + (lk - lq)) r.cell(cu_q[b] + row, cu_k[b] + col) = int(b);
      }
    }
  }
  return r;
}

MaskReference sliding_window_reference(const std::vector<int32_t>& cu_q,
                                       const std::vector<int32_t>& cu_k, int left, int right) {
  MaskReference r = varlen_positions(cu_q, cu_k);
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int64_t sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b], m = std::min(sq, sk);
    for (int64_t row = sq - m; row < sq; ++row) {
      const int64_t p = row - (sq - m) + (sk - m);
      for (int64_t c = 0; c < sk; ++c) {
        if ((left < 0 || c >= p - left) && (right < 0 || c <= p + right))
          r.cell(cu_q[b] + row, cu_k[b] + c) = int(b);
      }
    }
  }
  return r;
}

struct RangeSlices {
  std::vector<int32_t> q, k, types;  // q, k: [n][2]
  int count() const { return int(types.size()); }
};

MaskReference ranges_reference(const RangeSlices& s, int64_t total_q, int64_t total_k) {
  MaskReference r(total_q, total_k);
  for (int64_t i = 0; i < total_q; ++i) r.qpos[size_t(i)] = int32_t(i);
  for (int64_t j = 0; j < total_k; ++j) r.kpos[size_t(j)] = int32_t(j);
  for (int n = 0; n < s.count(); ++n) {
    const int64_t qs = s.q[2 * n], qe = s.q[2 * n + 1], ks = s.k[2 * n], ke = s.k[2 * n + 1];
    for (int64_t i = qs; i < qe; ++i) {
      for (int64_t j = ks; j < ke; ++j) {
        if (slice_sees(s.types[n], i - qs, j - ks, qe - qs, ke - ks)) r.cell(i, j) = 0;
      }
    }
  }
  return r;
}

// out[h, i, j] of alibi_build_bias: -slope * |qpos - kpos| (+ attn_bias) where visible, else -inf.
std::vector<double> expected_bias(const MaskReference& mask, const SlopeReference& slopes,
                                  const AdditiveReference* attn_bias = nullptr) {
  const int64_t cells = mask.total_q * mask.total_k;
  std::vector<double> out(size_t(slopes.heads * cells), kNegInf);
  for (int h = 0; h < slopes.heads; ++h) {
    for (int64_t cell = 0; cell < cells; ++cell) {
      const int owner = mask.owner[size_t(cell)];
      if (owner < 0) continue;
      const double distance = std::fabs(double(mask.qpos[size_t(cell / mask.total_k)]) -
                                        double(mask.kpos[size_t(cell % mask.total_k)]));
      double value = -slopes.at(owner, h) * distance;
      if (attn_bias) value += attn_bias->at(h, cell, cells);
      out[size_t(h * cells + cell)] = value;
    }
  }
  return out;
}

// ------------------------------------------------------------------------------------------
// Masks and calls

Mask make_ranges(alibi_context_t ctx, const RangeSlices& s, int64_t total_q, int64_t total_k) {
  return test::make_ranges(ctx, s.q, s.k, s.types, total_q, total_k);
}

std::vector<int32_t> random_offsets(std::mt19937& rng, int batch, int max_length) {
  std::uniform_int_distribution<int> length(0, max_length);
  std::vector<int32_t> cu{0};
  for (int b = 0; b < batch; ++b) cu.push_back(cu.back() + length(rng));
  return cu;
}

// Sorted cut points 0 = c0 <= c1 <= ... <= total.
std::vector<int32_t> random_cuts(std::mt19937& rng, int total, int pieces) {
  std::vector<int32_t> cuts{0, int32_t(total)};
  for (int p = 1; p < pieces; ++p)
    cuts.push_back(std::uniform_int_distribution<int32_t>(0, total)(rng));
  std::sort(cuts.begin(), cuts.end());
  return cuts;
}

// Non-overlapping slices of random types: a random subset of the cells of a random grid of
// q-chunks x k-chunks (chunks may be empty).
RangeSlices random_ranges(std::mt19937& rng, int total_q, int total_k) {
  const auto q_cuts = random_cuts(rng, total_q, 4), k_cuts = random_cuts(rng, total_k, 4);
  RangeSlices s;
  for (size_t a = 0; a + 1 < q_cuts.size(); ++a) {
    for (size_t b = 0; b + 1 < k_cuts.size(); ++b) {
      if (rng() % 3 == 0) continue;
      s.q.insert(s.q.end(), {q_cuts[a], q_cuts[a + 1]});
      s.k.insert(s.k.end(), {k_cuts[b], k_cuts[b + 1]});
      s.types.push_back(int32_t(rng() % 4));
    }
  }
  return s;
}

// Poisons out, builds the bias and checks every element (and that strided gaps stay untouched).
void expect_build_bias(alibi_context_t ctx, alibi_mask_t mask, const alibi_attention_params* params,
                       HostTensor& out, const std::vector<double>& expected, int heads) {
  out.fill_poison();
  ASSERT_OK(alibi_build_bias(ctx, mask, heads, params, out.get()));
  EXPECT_STREQ(alibi_last_error_message(), "");
  out.pull();
  expect_values(out, expected);
  out.expect_gaps_hold_poison();
}

// Every suite runs on each device of test::kDevices (CUDA cases skip where there is no GPU).
class BuilderBias : public test::DeviceTest<> {};
class BuilderDynamicBatching : public test::DeviceTest<> {};
class BuilderBloom : public test::DeviceTest<> {};
INSTANTIATE_TEST_SUITE_P(Device, BuilderBias, test::kDevices, test::name_by_device);
INSTANTIATE_TEST_SUITE_P(Device, BuilderDynamicBatching, test::kDevices, test::name_by_device);
INSTANTIATE_TEST_SUITE_P(Device, BuilderBloom, test::kDevices, test::name_by_device);

// ------------------------------------------------------------------------------------------
// alibi_build_bias

TEST_P(BuilderBias, VarlenForEveryOutputDtype) {
  // prefix (Lq < Lk), decode, Lq > Lk (causal: leading rows see nothing), no keys.
  const std::vector<int32_t> cu_q{0, 3, 4, 9, 11}, cu_k{0, 5, 9, 12, 12};
  const int heads = 5;
  for (bool causal : {false, true}) {
    Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, causal);
    const auto expected =
        expected_bias(varlen_reference(cu_q, cu_k, causal), formula_slopes(heads, 8));
    for (alibi_dtype dtype : kFloatDtypes) {
      SCOPED_TRACE("causal " + std::to_string(causal) + " dtype " + std::to_string(dtype));
      HostTensor out(ctx_.get(), dtype, {heads, 11, 12});
      expect_build_bias(ctx_.get(), mask.get(), nullptr, out, expected, heads);
    }
  }
}

TEST_P(BuilderBias, VarlenTokensBeforeTheFirstOffsetSeeNothing) {
  const std::vector<int32_t> cu_q{2, 5, 9}, cu_k{1, 4, 10};
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {2, 9, 10});
  expect_build_bias(ctx_.get(), mask.get(), nullptr, out,
                    expected_bias(varlen_reference(cu_q, cu_k, true), formula_slopes(2, 8)), 2);
}

TEST_P(BuilderBias, RandomRangesMasks) {
  std::mt19937 rng(17);
  for (int trial = 0; trial < 30; ++trial) {
    const int total_q = int(rng() % 20), total_k = int(rng() % 20), heads = 1 + int(rng() % 6);
    const RangeSlices slices = random_ranges(rng, total_q, total_k);
    Mask mask = make_ranges(ctx_.get(), slices, total_q, total_k);
    const alibi_dtype dtype = kFloatDtypes[trial % 3];
    SCOPED_TRACE("trial " + std::to_string(trial));
    HostTensor out(ctx_.get(), dtype, {heads, total_q, total_k});
    expect_build_bias(
        ctx_.get(), mask.get(), nullptr, out,
        expected_bias(ranges_reference(slices, total_q, total_k), formula_slopes(heads, 8)), heads);
    if (HasFailure()) return;
  }
}

TEST_P(BuilderBias, RandomSlidingWindowMasks) {
  std::mt19937 rng(23);
  std::uniform_int_distribution<int> window(-1, 6);
  for (int trial = 0; trial < 30; ++trial) {
    const int batch = 1 + int(rng() % 3), left = window(rng), right = window(rng);
    const auto cu_q = random_offsets(rng, batch, 8), cu_k = random_offsets(rng, batch, 8);
    Mask mask = make_sliding_window(ctx_.get(), cu_q, cu_k, left, right);
    SCOPED_TRACE("trial " + std::to_string(trial) + " window (" + std::to_string(left) + ", " +
                 std::to_string(right) + ")");
    HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {3, cu_q.back(), cu_k.back()});
    expect_build_bias(
        ctx_.get(), mask.get(), nullptr, out,
        expected_bias(sliding_window_reference(cu_q, cu_k, left, right), formula_slopes(3, 8)), 3);
    if (HasFailure()) return;
  }
}

std::vector<int32_t> random_positions(std::mt19937& rng, int64_t count) {
  std::uniform_int_distribution<int32_t> position(-20, 40);
  std::vector<int32_t> positions(static_cast<size_t>(count));
  for (auto& p : positions) p = position(rng);
  return positions;
}

TEST_P(BuilderBias, ExplicitPositionsReplaceTheDefaults) {
  std::mt19937 rng(29);
  const std::vector<int32_t> cu_q{0, 4, 9}, cu_k{0, 6, 13};
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  MaskReference reference = varlen_reference(cu_q, cu_k, true);
  reference.qpos = random_positions(rng, 9);
  reference.kpos = random_positions(rng, 13);
  ASSERT_OK(alibi_mask_set_positions(mask.get(), reference.qpos.data(), reference.kpos.data()));
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {4, 9, 13});
  expect_build_bias(ctx_.get(), mask.get(), nullptr, out,
                    expected_bias(reference, formula_slopes(4, 8)), 4);

  reference.kpos = random_positions(rng, 13);  // a NULL side keeps its positions
  ASSERT_OK(alibi_mask_set_positions(mask.get(), nullptr, reference.kpos.data()));
  expect_build_bias(ctx_.get(), mask.get(), nullptr, out,
                    expected_bias(reference, formula_slopes(4, 8)), 4);
}

TEST_P(BuilderBias, ExplicitPositionsOnARangesMask) {
  std::mt19937 rng(31);
  const RangeSlices slices{{0, 5, 5, 10, 2, 7}, {0, 5, 0, 10, 10, 12}, {1, 3, 0}};
  Mask mask = make_ranges(ctx_.get(), slices, 10, 12);
  MaskReference reference = ranges_reference(slices, 10, 12);
  reference.qpos = random_positions(rng, 10);
  ASSERT_OK(alibi_mask_set_positions(mask.get(), reference.qpos.data(), nullptr));
  HostTensor out(ctx_.get(), ALIBI_DTYPE_BF16, {2, 10, 12});
  expect_build_bias(ctx_.get(), mask.get(), nullptr, out,
                    expected_bias(reference, formula_slopes(2, 8)), 2);
}

TEST_P(BuilderBias, PerBatchSlopesForVarlenAndSlidingWindow) {
  const std::vector<int32_t> cu_q{0, 3, 8, 9}, cu_k{0, 5, 10, 14};
  const int heads = 3;
  const auto raw = test::random_floats(3 * heads, 37, 0.0f, 1.0f);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.slopes = raw.data();
  params.slopes_per_batch = 1;
  const SlopeReference slopes = given_slopes(raw, heads, true);

  Mask varlen = make_varlen(ctx_.get(), cu_q, cu_k, true);
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {heads, 9, 14});
  expect_build_bias(ctx_.get(), varlen.get(), &params, out,
                    expected_bias(varlen_reference(cu_q, cu_k, true), slopes), heads);
  Mask window = make_sliding_window(ctx_.get(), cu_q, cu_k, 2, 1);
  expect_build_bias(ctx_.get(), window.get(), &params, out,
                    expected_bias(sliding_window_reference(cu_q, cu_k, 2, 1), slopes), heads);
}

TEST_P(BuilderBias, UserSlopesReplaceTheFormulaAndIgnoreShardFields) {
  const std::vector<int32_t> cu_q{0, 4}, cu_k{0, 7};
  const std::vector<float> raw{0.0f, 0.3f, 1.75f};
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.slopes = raw.data();
  params.total_heads = 8;
  params.head_offset = 5;
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, false);
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F16, {3, 4, 7});
  expect_build_bias(ctx_.get(), mask.get(), &params, out,
                    expected_bias(varlen_reference(cu_q, cu_k, false), given_slopes(raw, 3, false)),
                    3);
}

TEST_P(BuilderBias, TensorParallelShardsUseGlobalHeadSlopes) {
  const std::vector<int32_t> cu_q{0, 5}, cu_k{0, 9};
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  struct Shard {
    int total, offset, heads;
  };
  for (Shard shard : {Shard{12, 4, 4}, Shard{20, 16, 4}, Shard{24, 0, 3}, Shard{40, 33, 7}}) {
    SCOPED_TRACE("total " + std::to_string(shard.total) + " offset " +
                 std::to_string(shard.offset));
    alibi_attention_params params;
    alibi_attention_params_init(&params);
    params.total_heads = shard.total;
    params.head_offset = shard.offset;
    HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {shard.heads, 5, 9});
    expect_build_bias(ctx_.get(), mask.get(), &params, out,
                      expected_bias(varlen_reference(cu_q, cu_k, true),
                                    formula_slopes(shard.heads, 8, shard.total, shard.offset)),
                      shard.heads);
  }
}

TEST_P(BuilderBias, OtherMaxBiasValues) {
  const std::vector<int32_t> cu_q{0, 6, 10}, cu_k{0, 6, 12};
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  for (float max_bias : {0.0f, 1.0f, 4.0f, 13.5f}) {
    SCOPED_TRACE("max_bias " + std::to_string(max_bias));
    alibi_attention_params params;
    alibi_attention_params_init(&params);
    params.max_bias = max_bias;
    HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {6, 10, 12});
    expect_build_bias(
        ctx_.get(), mask.get(), &params, out,
        expected_bias(varlen_reference(cu_q, cu_k, true), formula_slopes(6, max_bias)), 6);
  }
}

// Fills t with random values in [-2, 2] and returns them as the library will read them.
AdditiveReference fill_random(HostTensor& t, int64_t heads, uint32_t seed) {
  const auto raw = test::random_floats(size_t(t.numel()), seed, -2.0f, 2.0f);
  for (int64_t e = 0; e < t.numel(); ++e) t.set(e, raw[size_t(e)]);
  t.push();
  return AdditiveReference{t.values(), heads};
}

TEST_P(BuilderBias, AttnBiasIsAddedWhereVisible) {
  const std::vector<int32_t> cu_q{0, 4, 7}, cu_k{0, 5, 11};
  const int heads = 3;
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  const MaskReference reference = varlen_reference(cu_q, cu_k, true);
  struct Case {
    alibi_dtype bias_dtype;
    std::vector<int64_t> shape, strides;
    alibi_dtype out_dtype;
  };
  const std::vector<Case> cases{
      {ALIBI_DTYPE_F32, {heads, 7, 11}, {}, ALIBI_DTYPE_F32},
      {ALIBI_DTYPE_F16, {1, 7, 11}, {}, ALIBI_DTYPE_F32},
      {ALIBI_DTYPE_BF16, {heads, 7, 11}, {0, 11, 1}, ALIBI_DTYPE_F32},  // broadcast by stride 0
      {ALIBI_DTYPE_F32, {heads, 7, 11}, {1, heads * 11, heads}, ALIBI_DTYPE_F16},  // head-last
      {ALIBI_DTYPE_F32, {1, 7, 11}, {}, ALIBI_DTYPE_BF16}};
  uint32_t seed = 41;
  for (const Case& c : cases) {
    SCOPED_TRACE("attn_bias dtype " + std::to_string(c.bias_dtype) + " heads " +
                 std::to_string(c.shape[0]));
    HostTensor attn_bias(ctx_.get(), c.bias_dtype, c.shape, c.strides);
    const AdditiveReference additive = fill_random(attn_bias, c.shape[0], seed++);
    alibi_attention_params params;
    alibi_attention_params_init(&params);
    params.attn_bias = attn_bias.get();
    HostTensor out(ctx_.get(), c.out_dtype, {heads, 7, 11});
    expect_build_bias(ctx_.get(), mask.get(), &params, out,
                      expected_bias(reference, formula_slopes(heads, 8), &additive), heads);
  }
}

TEST_P(BuilderBias, NoAlibiLeavesOnlyTheAttnBias) {
  const std::vector<int32_t> cu_q{0, 5}, cu_k{0, 5};
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  HostTensor attn_bias(ctx_.get(), ALIBI_DTYPE_F32, {2, 5, 5});
  const AdditiveReference additive = fill_random(attn_bias, 2, 43);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.max_bias = 0.0f;
  params.attn_bias = attn_bias.get();
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {2, 5, 5});
  expect_build_bias(
      ctx_.get(), mask.get(), &params, out,
      expected_bias(varlen_reference(cu_q, cu_k, true), formula_slopes(2, 0), &additive), 2);
}

TEST_P(BuilderBias, StridedOutputLeavesGapsUntouched) {
  const std::vector<int32_t> cu_q{0, 3, 8}, cu_k{0, 4, 10};
  const int heads = 4, total_q = 8, total_k = 10;
  Mask mask = make_varlen(ctx_.get(), cu_q, cu_k, true);
  const auto expected = expected_bias(varlen_reference(cu_q, cu_k, true), formula_slopes(heads, 8));
  for (alibi_dtype dtype : kFloatDtypes) {
    SCOPED_TRACE(dtype);
    // Head-last layout with two spare columns per row.
    HostTensor out(ctx_.get(), dtype, {heads, total_q, total_k}, {1, heads * (total_k + 2), heads});
    expect_build_bias(ctx_.get(), mask.get(), nullptr, out, expected, heads);
  }
}

// ------------------------------------------------------------------------------------------
// alibi_build_dynamic_batching_mask

struct DynamicBatch {
  std::vector<int64_t> seqstarts{0}, kvstarts{0};
  int64_t total_q() const { return seqstarts.back(); }
  int64_t total_k() const { return kvstarts.back(); }
  void add(int64_t queries, int64_t keys) {
    seqstarts.push_back(total_q() + queries);
    kvstarts.push_back(total_k() + keys);
  }
};

// Prefill (L == K), decode (L == 1), chunked prefill over a cache (L < K) and empty blocks.
DynamicBatch random_dynamic_batch(std::mt19937& rng, int batch) {
  DynamicBatch d;
  for (int b = 0; b < batch; ++b) {
    const int64_t length = 1 + int64_t(rng() % 8);
    switch (rng() % 4) {
      case 0: d.add(length, length); break;
      case 1: d.add(1, length + int64_t(rng() % 5)); break;
      case 2: d.add(length, length + int64_t(rng() % 6)); break;
      default: d.add(0, int64_t(rng() % 3)); break;
    }
  }
  return d;
}

// OpenPPL's reference: slope * d inside a block (d <= 0, else -inf), 0 elsewhere and in padding;
// attn_mask added over the first Sk columns.
std::vector<double> dynamic_batching_reference(const DynamicBatch& d, int heads, int64_t width,
                                               const AdditiveReference* attn_mask = nullptr) {
  const int64_t sq = d.total_q(), sk = d.total_k();
  std::vector<double> out(size_t(heads * sq * width), 0.0);
  for (int h = 0; h < heads; ++h) {
    const double slope = reference_slope(h, heads, 8.0);
    for (size_t b = 0; b + 1 < d.seqstarts.size(); ++b) {
      const int64_t rows = d.seqstarts[b + 1] - d.seqstarts[b],
                    cols = d.kvstarts[b + 1] - d.kvstarts[b];
      for (int64_t i = 0; i < rows; ++i) {
        for (int64_t j = 0; j < cols; ++j) {
          const int64_t distance = j - i - (cols - rows);
          out[size_t((h * sq + d.seqstarts[b] + i) * width + d.kvstarts[b] + j)] =
              distance <= 0 ? slope * double(distance) : kNegInf;
        }
      }
    }
    if (!attn_mask) continue;
    for (int64_t i = 0; i < sq; ++i) {
      for (int64_t j = 0; j < sk; ++j)
        out[size_t((h * sq + i) * width + j)] += attn_mask->at(h, i * sk + j, sq * sk);
    }
  }
  return out;
}

HostTensor offsets_tensor(alibi_context_t ctx, alibi_dtype dtype,
                          const std::vector<int64_t>& offsets) {
  return host_tensor_from(ctx, dtype, {int64_t(offsets.size())},
                          std::vector<double>(offsets.begin(), offsets.end()));
}

void expect_dynamic_batching(alibi_context_t ctx, const DynamicBatch& d, alibi_dtype offsets_dtype,
                             const HostTensor* attn_mask, int heads, HostTensor& out,
                             const std::vector<double>& expected) {
  HostTensor seqstarts = offsets_tensor(ctx, offsets_dtype, d.seqstarts);
  HostTensor kvstarts = offsets_tensor(ctx, offsets_dtype, d.kvstarts);
  out.fill_poison();
  ASSERT_OK(alibi_build_dynamic_batching_mask(ctx, seqstarts.get(), kvstarts.get(),
                                              attn_mask ? attn_mask->get() : nullptr, heads,
                                              out.get()));
  EXPECT_STREQ(alibi_last_error_message(), "");
  out.pull();
  expect_values(out, expected);
}

TEST_P(BuilderDynamicBatching, WorkedDecodeValue) {
  DynamicBatch d;
  d.add(1, 4);
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {3, 1, 4});
  expect_dynamic_batching(ctx_.get(), d, ALIBI_DTYPE_I64, nullptr, 3, out,
                          dynamic_batching_reference(d, 3, 4));
  const std::vector<double> head2{out.at(8), out.at(9), out.at(10), out.at(11)};
  EXPECT_EQ(head2, (std::vector<double>{-0.75, -0.5, -0.25, 0.0}));
}

TEST_P(BuilderDynamicBatching, RandomPrefillAndDecodeBlocksWithPadding) {
  std::mt19937 rng(53);
  for (int trial = 0; trial < 24; ++trial) {
    const DynamicBatch d = random_dynamic_batch(rng, 1 + trial % 5);
    const int heads = 1 + int(rng() % 12);
    const int64_t width = d.total_k() + int64_t(trial % 3) * 3;  // padding columns when > Sk
    const alibi_dtype out_dtype = trial % 2 ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32;
    const alibi_dtype offsets_dtype = trial % 4 < 2 ? ALIBI_DTYPE_I64 : ALIBI_DTYPE_I32;
    SCOPED_TRACE("trial " + std::to_string(trial));
    HostTensor out(ctx_.get(), out_dtype, {heads, d.total_q(), width});
    expect_dynamic_batching(ctx_.get(), d, offsets_dtype, nullptr, heads, out,
                            dynamic_batching_reference(d, heads, width));
    if (HasFailure()) return;
  }
}

TEST_P(BuilderDynamicBatching, AttnMaskIsAddedOverTheFirstSkColumns) {
  std::mt19937 rng(59);
  const DynamicBatch d = random_dynamic_batch(rng, 4);
  const int heads = 5;
  const int64_t width = d.total_k() + 4;
  for (alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16}) {
    for (bool per_head : {false, true}) {
      SCOPED_TRACE("dtype " + std::to_string(dtype) + " per_head " + std::to_string(per_head));
      std::vector<int64_t> mask_shape{d.total_q(), d.total_k()};
      if (per_head) mask_shape.insert(mask_shape.begin(), heads);
      HostTensor attn_mask(ctx_.get(), dtype, mask_shape);
      const AdditiveReference additive = fill_random(attn_mask, per_head ? heads : 1, 61u + dtype);
      HostTensor out(ctx_.get(), dtype, {heads, d.total_q(), width});
      expect_dynamic_batching(ctx_.get(), d, ALIBI_DTYPE_I64, &attn_mask, heads, out,
                              dynamic_batching_reference(d, heads, width, &additive));
    }
  }
}

// ------------------------------------------------------------------------------------------
// alibi_build_bloom_bias

// HF Bloom: pos = (cumsum(mask) - 1) * mask; out[b*H + h, 0, s] = slope[h] * pos[b, s].
std::vector<double> bloom_reference(const std::vector<int64_t>& mask, int64_t batch, int64_t length,
                                    int heads) {
  std::vector<double> out(size_t(batch * heads * length));
  for (int64_t b = 0; b < batch; ++b) {
    int64_t running = 0;
    for (int64_t s = 0; s < length; ++s) {
      const int64_t m = mask[size_t(b * length + s)];
      running += m;
      const double position = double((running - 1) * m);
      for (int h = 0; h < heads; ++h)
        out[size_t((b * heads + h) * length + s)] = reference_slope(h, heads, 8.0) * position;
    }
  }
  return out;
}

void expect_bloom(alibi_context_t ctx, const std::vector<int64_t>& mask, int64_t batch,
                  int64_t length, alibi_dtype mask_dtype, int heads, alibi_dtype out_dtype) {
  HostTensor attention_mask = host_tensor_from(ctx, mask_dtype, {batch, length},
                                               std::vector<double>(mask.begin(), mask.end()));
  HostTensor out(ctx, out_dtype, {batch * heads, 1, length});
  out.fill_poison();
  ASSERT_OK(alibi_build_bloom_bias(ctx, attention_mask.get(), heads, out.get()));
  EXPECT_STREQ(alibi_last_error_message(), "");
  out.pull();
  expect_values(out, bloom_reference(mask, batch, length, heads));
}

TEST_P(BuilderBloom, LeftPaddedMaskStartsCountingAtTheFirstToken) {
  HostTensor attention_mask =
      host_tensor_from(ctx_.get(), ALIBI_DTYPE_I64, {1, 5}, {0, 0, 1, 1, 1});
  HostTensor out(ctx_.get(), ALIBI_DTYPE_F32, {1, 1, 5});
  out.fill_poison();
  ASSERT_OK(alibi_build_bloom_bias(ctx_.get(), attention_mask.get(), 1, out.get()));
  out.pull();
  EXPECT_EQ(out.values(), (std::vector<double>{0, 0, 0, 1.0 / 256, 2.0 / 256}));
}

TEST_P(BuilderBloom, PaddingPatternsForEveryDtype) {
  const std::vector<int64_t> mask{0, 0, 1, 1, 1, 1,   // left padded
                                  1, 1, 1, 1, 0, 0,   // right padded
                                  1, 1, 1, 1, 1, 1,   // all ones
                                  0, 0, 0, 0, 0, 0,   // all padding
                                  0, 1, 1, 0, 1, 0};  // holes
  for (alibi_dtype mask_dtype : {ALIBI_DTYPE_I32, ALIBI_DTYPE_I64}) {
    for (alibi_dtype out_dtype : kFloatDtypes) {
      SCOPED_TRACE("mask dtype " + std::to_string(mask_dtype) + " out dtype " +
                   std::to_string(out_dtype));
      expect_bloom(ctx_.get(), mask, 5, 6, mask_dtype, 4, out_dtype);
      expect_bloom(ctx_.get(), mask, 5, 6, mask_dtype, 12, out_dtype);
    }
  }
}

TEST_P(BuilderBloom, RandomLeftPaddedBatchesWithManyHeads) {
  std::mt19937 rng(67);
  const int64_t batch = 6, length = 37;
  std::vector<int64_t> mask(size_t(batch * length), 1);
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t padding = int64_t(rng() % length);
    std::fill(mask.begin() + b * length, mask.begin() + b * length + padding, 0);
  }
  for (int heads : {20, 32, 71}) {
    SCOPED_TRACE(heads);
    expect_bloom(ctx_.get(), mask, batch, length, ALIBI_DTYPE_I64, heads, ALIBI_DTYPE_F32);
  }
}

}  // namespace
