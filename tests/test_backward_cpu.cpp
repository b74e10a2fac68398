// The CPU backward kernel (cpu/backward_cpu.cpp), its two-pass and its fused (8+ kv heads)
// paths: gradients bitwise identical whatever the thread count (1..4) and from run to run, over
// varlen, ranges (rows shared by slices), sliding-window masks, per-sequence slopes, softcap, attn_bias, GQA/MQA, f32/f16/bf16 inputs and gradients in
// the input dtype or f32; NULL gradients skip work without changing the others; and every case
// close to a plain float64 backward written below. ctest runs this file again with the portable
// tile operations (prefix generic_isa.), so the AVX2 and generic builds are both held to the
// same reference and tolerance, hence to each other.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "reference.h"
#include "test_util.h"

namespace {

using test::Mask;
using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;

enum class MaskKind { kVarlen, kRanges, kWindow };

struct Case {
  std::string name;
  alibi_dtype dtype, gradient_dtype;
  int heads_q, heads_kv, head_dim;
  MaskKind kind;
  std::vector<int32_t> cu_q, cu_k;  // varlen and window masks
  bool causal;
  int left, right;                  // window
  std::vector<ref::Slice> slices;   // ranges masks
  int64_t total_q, total_k;
  bool per_sequence_slopes, attn_bias, random_positions;
  float softcap;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

// The gradients of one call, as floats.
struct Gradients {
  std::vector<float> dq, dk, dv, dslopes;
};

// Which gradients a call asks for.
struct Wanted {
  bool dq = true, dk = true, dv = true, dslopes = true;
};

using test::download;
using test::numel;
using test::poisoned;
using test::random_values;
using test::upload;

int num_sequences(const Case& c) { return int(c.cu_q.size()) - 1; }

// Inputs of a case, each value exactly representable in its dtype.
struct Inputs {
  std::vector<float> q, k, v, dout, attn_bias, slopes;
  std::vector<int32_t> q_positions, k_positions;
};

Inputs make_inputs(const Case& c) {
  Inputs in;
  const size_t nq = size_t(c.total_q * c.heads_q * c.head_dim), nk = size_t(c.total_k * c.heads_kv * c.head_dim);
  in.q = random_values(nq, c.dtype, 1);
  in.k = random_values(nk, c.dtype, 2);
  in.v = random_values(nk, c.dtype, 3);
  in.dout = random_values(nq, c.dtype, 4);
  if (c.attn_bias) in.attn_bias = random_values(size_t(c.heads_q * c.total_q * c.total_k), kF32, 5, -1.0f, 1.0f);
  if (c.per_sequence_slopes) in.slopes = test::random_floats(size_t(num_sequences(c) * c.heads_q), 6, 0.0f, 0.3f);
  if (c.random_positions) {
    std::mt19937 random(7);
    std::uniform_int_distribution<int32_t> position(-40, 400);
    for (int64_t i = 0; i < c.total_q; ++i) in.q_positions.push_back(position(random));
    for (int64_t j = 0; j < c.total_k; ++j) in.k_positions.push_back(position(random));
  }
  return in;
}

Mask make_mask(alibi_context_t ctx, const Case& c, const Inputs& in) {
  alibi_mask_t mask = nullptr;
  if (c.kind == MaskKind::kVarlen) {
    EXPECT_EQ(alibi_mask_create_varlen(ctx, num_sequences(c), c.cu_q.data(), c.cu_k.data(), c.causal, &mask),
              ALIBI_STATUS_SUCCESS);
  } else if (c.kind == MaskKind::kWindow) {
    EXPECT_EQ(alibi_mask_create_sliding_window(ctx, num_sequences(c), c.cu_q.data(), c.cu_k.data(), c.left,
                                               c.right, &mask),
              ALIBI_STATUS_SUCCESS);
  } else {
    std::vector<int32_t> q_ranges, k_ranges, types;
    for (const ref::Slice& s : c.slices) {
      q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
      k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
      types.push_back(s.type);
    }
    EXPECT_EQ(alibi_mask_create_ranges(ctx, int(c.slices.size()), q_ranges.data(), k_ranges.data(), types.data(),
                                       c.total_q, c.total_k, &mask),
              ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
  }
  if (c.random_positions)
    EXPECT_EQ(alibi_mask_set_positions(mask, in.q_positions.data(), in.k_positions.data()), ALIBI_STATUS_SUCCESS);
  return Mask(mask);
}

// Forward, then backward on a context with `threads` threads.
Gradients run(const Case& c, const Inputs& in, int threads, const Wanted& wanted = {}) {
  test::Context ctx = test::make_cpu_context();
  EXPECT_EQ(alibi_context_set_num_threads(ctx.get(), threads), ALIBI_STATUS_SUCCESS);
  alibi_context_t x = ctx.get();
  const Mask mask = make_mask(x, c, in);
  const std::vector<int64_t> q_shape{c.total_q, c.heads_q, c.head_dim}, k_shape{c.total_k, c.heads_kv, c.head_dim};
  const Tensor q = upload(x, c.dtype, q_shape, in.q), k = upload(x, c.dtype, k_shape, in.k),
               v = upload(x, c.dtype, k_shape, in.v), dout = upload(x, c.dtype, q_shape, in.dout);
  const Tensor out = poisoned(x, c.dtype, q_shape), lse = poisoned(x, kF32, {c.heads_q, c.total_q});
  Tensor bias;
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.softcap = c.softcap;
  if (c.attn_bias) {
    bias = upload(x, kF32, {c.heads_q, c.total_q, c.total_k}, in.attn_bias);
    params.attn_bias = bias.get();
  }
  if (c.per_sequence_slopes) {
    params.slopes = in.slopes.data();
    params.slopes_per_batch = 1;
  }
  EXPECT_EQ(alibi_attention_forward(x, q.get(), k.get(), v.get(), mask.get(), &params, out.get(), lse.get()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  const std::vector<int64_t> slope_shape =
      c.per_sequence_slopes ? std::vector<int64_t>{num_sequences(c), c.heads_q} : std::vector<int64_t>{c.heads_q};
  const Tensor dq = poisoned(x, c.gradient_dtype, q_shape), dk = poisoned(x, c.gradient_dtype, k_shape),
               dv = poisoned(x, c.gradient_dtype, k_shape), dslopes = poisoned(x, kF32, slope_shape);
  EXPECT_EQ(alibi_attention_backward(x, q.get(), k.get(), v.get(), mask.get(), &params, out.get(), lse.get(),
                                     dout.get(), wanted.dq ? dq.get() : nullptr, wanted.dk ? dk.get() : nullptr,
                                     wanted.dv ? dv.get() : nullptr, wanted.dslopes ? dslopes.get() : nullptr),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return {download(dq.get(), c.gradient_dtype, numel(q_shape)), download(dk.get(), c.gradient_dtype, numel(k_shape)),
          download(dv.get(), c.gradient_dtype, numel(k_shape)), download(dslopes.get(), kF32, numel(slope_shape))};
}

// ---------------------------------------------------------------------- float64 reference

ref::Problem problem_of(const Case& c, const Inputs& in) {
  ref::Problem p;
  p.total_q = c.total_q;
  p.total_k = c.total_k;
  p.heads_q = c.heads_q;
  p.heads_kv = c.heads_kv;
  p.head_dim = c.head_dim;
  p.q.assign(in.q.begin(), in.q.end());
  p.k.assign(in.k.begin(), in.k.end());
  p.v.assign(in.v.begin(), in.v.end());
  if (c.kind == MaskKind::kRanges) {
    p.visible = ref::from_slices(c.total_q, c.total_k, c.slices);
    p.positions = ref::stream_positions(c.total_q, c.total_k);
  } else {
    p.visible = c.kind == MaskKind::kWindow ? ref::sliding_window(c.cu_q, c.cu_k, c.left, c.right)
                                            : ref::from_slices(c.total_q, c.total_k,
                                                               ref::varlen_slices(c.cu_q, c.cu_k, c.causal));
    p.positions = ref::varlen_positions(c.cu_q, c.cu_k);
  }
  if (c.random_positions) p.positions = {in.q_positions, in.k_positions};
  p.slopes = c.per_sequence_slopes ? ref::slopes_of_sequences(in.slopes, c.heads_q, c.cu_q)
                                   : ref::slopes_of_rows(ref::formula_slopes(c.heads_q, 8.0f), c.total_q);
  p.scale = 1.0 / std::sqrt(double(c.head_dim));
  p.softcap = c.softcap;
  if (c.attn_bias) {
    p.bias_heads = c.heads_q;
    p.attn_bias.assign(in.attn_bias.begin(), in.attn_bias.end());
  }
  return p;
}

// SPEC section 4 cell by cell; dslopes per row ([h * total_q + i]: the row's slope's gradient).
struct ReferenceGradients {
  std::vector<double> dq, dk, dv, dslope_rows;
};

ReferenceGradients reference_backward(const ref::Problem& p, const std::vector<float>& dout) {
  const ref::Result fwd = ref::attention(p);
  const int64_t dim = p.head_dim, group = p.heads_q / p.heads_kv;
  ReferenceGradients g{std::vector<double>(p.q.size()), std::vector<double>(p.k.size()),
                       std::vector<double>(p.k.size()), std::vector<double>(size_t(p.heads_q * p.total_q))};
  auto at = [dim](int64_t token, int64_t heads, int64_t head) { return size_t((token * heads + head) * dim); };
  for (int h = 0; h < p.heads_q; ++h)
    for (int64_t i = 0; i < p.total_q; ++i) {
      const double lse = fwd.lse[size_t(h * p.total_q + i)];
      if (std::isinf(lse)) continue;
      const size_t qi = at(i, p.heads_q, h);
      double row_dot = 0.0;
      for (int64_t d = 0; d < dim; ++d) row_dot += double(dout[qi + size_t(d)]) * fwd.out[qi + size_t(d)];
      for (int64_t j = 0; j < p.total_k; ++j) {
        if (!p.visible.at(i, j)) continue;
        const size_t kj = at(j, p.heads_kv, h / group);
        const double prob = std::exp(ref::score(p, h, i, j) - lse);
        double dp = 0.0, x = 0.0;
        for (int64_t d = 0; d < dim; ++d) {
          dp += double(dout[qi + size_t(d)]) * p.v[kj + size_t(d)];
          x += p.q[qi + size_t(d)] * p.k[kj + size_t(d)];
        }
        x *= p.scale;
        const double ds = prob * (dp - row_dot);
        const double t = p.softcap > 0 ? std::tanh(x / p.softcap) : 0.0;
        const double dx = ds * (1.0 - t * t);
        for (int64_t d = 0; d < dim; ++d) {
          g.dv[kj + size_t(d)] += prob * dout[qi + size_t(d)];
          g.dq[qi + size_t(d)] += p.scale * dx * p.k[kj + size_t(d)];
          g.dk[kj + size_t(d)] += p.scale * dx * p.q[qi + size_t(d)];
        }
        g.dslope_rows[size_t(h * p.total_q + i)] -=
            ds * double(std::llabs(int64_t(p.positions.q[size_t(i)]) - p.positions.k[size_t(j)]));
      }
    }
  return g;
}

// The per-row slope gradients summed per slope: per head, or per (sequence, head).
std::vector<double> slope_gradients(const Case& c, const ReferenceGradients& g) {
  const int groups = c.per_sequence_slopes ? num_sequences(c) : 1;
  std::vector<double> total(size_t(groups * c.heads_q), 0.0);
  for (int h = 0; h < c.heads_q; ++h)
    for (int64_t i = 0; i < c.total_q; ++i) {
      int b = 0;
      if (c.per_sequence_slopes) {
        while (b + 1 < num_sequences(c) && i >= c.cu_q[size_t(b + 1)]) ++b;
        if (i >= c.cu_q.back() || i < c.cu_q[0]) continue;
      }
      total[size_t(b * c.heads_q + h)] += g.dslope_rows[size_t(h * c.total_q + i)];
    }
  return total;
}

// |got - want| <= tolerance * max |want| (at least 1), element by element.
void expect_close(const std::vector<float>& got, const std::vector<double>& want, double tolerance,
                  const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name;
  double largest = 1.0;
  for (double w : want) largest = std::max(largest, std::fabs(w));
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - want[i]) <= tolerance * largest) && reported++ < 5)
      ADD_FAILURE() << name << "[" << i << "] = " << got[i] << ", want " << want[i] << " (largest " << largest << ")";
}

void expect_bitwise_equal(const std::vector<float>& a, const std::vector<float>& b, const std::string& name) {
  ASSERT_EQ(a.size(), b.size()) << name;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << name << " differs bitwise";
}

void expect_bitwise_equal(const Gradients& a, const Gradients& b) {
  expect_bitwise_equal(a.dq, b.dq, "dq");
  expect_bitwise_equal(a.dk, b.dk, "dk");
  expect_bitwise_equal(a.dv, b.dv, "dv");
  expect_bitwise_equal(a.dslopes, b.dslopes, "dslopes");
}

// ------------------------------------------------------------------------------------ cases

Case varlen_case(std::string name, alibi_dtype dtype, alibi_dtype gradient_dtype) {
  // Odd lengths, a one-token sequence, rows > keys and keys > rows.
  Case c{std::move(name), dtype, gradient_dtype, 4, 2, 40, MaskKind::kVarlen, {0, 37, 38, 138, 213},
         {0, 50, 51, 151, 240}, true, 0, 0, {}, 213, 240, false, false, false, 0.0f};
  return c;
}

std::vector<Case> cases() {
  std::vector<Case> all{varlen_case("varlen_causal_f32", kF32, kF32),
                        varlen_case("varlen_causal_bf16", kBF16, kBF16),
                        varlen_case("varlen_causal_bf16_f32_gradients", kBF16, kF32)};
  // Rows shared by several slices of all four types; softcap and attn_bias.
  Case ranges{"ranges_shared_rows_softcap_attn_bias", kF32, kF32, 3, 3, 33, MaskKind::kRanges, {}, {}, false, 0, 0,
              {{0, 100, 0, 60, ref::kCausal}, {0, 100, 60, 130, ref::kFull}, {40, 150, 130, 170, ref::kInvCausal},
               {100, 150, 0, 50, ref::kBiCausal}, {120, 150, 50, 50, ref::kFull}},
              150, 170, false, true, false, 5.0f};
  // A sliding window with per-sequence slopes, f16.
  Case window{"window_per_sequence_slopes_f16", kF16, kF16, 2, 1, 64, MaskKind::kWindow, {0, 70, 70, 200},
              {0, 90, 95, 200}, false, 20, 5, {}, 200, 200, true, false, false, 0.0f};
  // MQA over more than one row tile and many key blocks, explicit positions; a sequence of
  // queries without keys, an empty sequence.
  Case mqa{"mqa_full_positions", kBF16, kF32, 4, 1, 16, MaskKind::kVarlen, {0, 10, 10, 310, 330},
           {0, 0, 0, 280, 300}, false, 0, 0, {}, 330, 300, false, false, true, 0.0f};
  // Eight kv heads or more take the fused schedule (one item per kv head, dK and dV over all
  // its keys): GQA with per-sequence slopes, ranges with shared rows, varlen.
  Case fused_gqa{"fused_gqa_window_per_sequence_slopes_bf16", kBF16, kF32, 16, 8, 24, MaskKind::kWindow,
                 {0, 70, 70, 300}, {0, 90, 95, 300}, false, 40, 3, {}, 300, 300, true, false, false, 0.0f};
  Case fused_ranges = ranges;
  fused_ranges.name = "fused_ranges_shared_rows_softcap_attn_bias";
  fused_ranges.heads_q = fused_ranges.heads_kv = 8;
  Case fused_varlen = varlen_case("fused_varlen_causal_f32", kF32, kF32);
  fused_varlen.heads_q = 16;
  fused_varlen.heads_kv = 8;
  all.insert(all.end(), {ranges, window, mqa, fused_gqa, fused_ranges, fused_varlen});
  return all;
}

// Tolerance of a case against the float64 reference, relative to the largest gradient: f32
// accumulation; half inputs add the rounding of out (which enters Di) and of the gradients.
double tolerance(const Case& c) {
  if (c.dtype == kF32) return 2e-5;
  return c.gradient_dtype == kF32 ? 1e-2 : 2e-2;
}

class BackwardCpu : public ::testing::TestWithParam<Case> {};

TEST_P(BackwardCpu, MatchesFloat64Reference) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c);
  const Gradients got = run(c, in, 2);
  const ReferenceGradients want = reference_backward(problem_of(c, in), in.dout);
  expect_close(got.dq, want.dq, tolerance(c), "dq");
  expect_close(got.dk, want.dk, tolerance(c), "dk");
  expect_close(got.dv, want.dv, tolerance(c), "dv");
  expect_close(got.dslopes, slope_gradients(c, want), tolerance(c), "dslopes");
}

TEST_P(BackwardCpu, BitwiseIdenticalForOneToFourThreadsAndRunToRun) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c);
  const Gradients single = run(c, in, 1);
  for (int threads : {2, 3, 4, 4}) {
    SCOPED_TRACE(std::to_string(threads) + " threads");
    expect_bitwise_equal(run(c, in, threads), single);
  }
}

// NULL gradients are skipped; the ones asked for are exactly those of a full call.
TEST_P(BackwardCpu, EachGradientAloneEqualsTheFullCall) {
  const Case& c = GetParam();
  const Inputs in = make_inputs(c);
  const Gradients all = run(c, in, 3);
  expect_bitwise_equal(run(c, in, 3, {true, false, false, false}).dq, all.dq, "dq alone");
  expect_bitwise_equal(run(c, in, 3, {false, true, false, false}).dk, all.dk, "dk alone");
  expect_bitwise_equal(run(c, in, 3, {false, false, true, false}).dv, all.dv, "dv alone");
  expect_bitwise_equal(run(c, in, 3, {false, false, false, true}).dslopes, all.dslopes, "dslopes alone");
  const Gradients none = run(c, in, 3, {false, false, false, false});
  for (float x : none.dq)
    ASSERT_EQ(x, test::round_to(test::kPoison, c.gradient_dtype)) << "dq written though NULL was passed";
}

INSTANTIATE_TEST_SUITE_P(Cases, BackwardCpu, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

}  // namespace
