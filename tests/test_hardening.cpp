// Hardening (issue 6): numerical edges against the float64 reference on both CPU kernels, the
// documented limits (sizes whose counts overflow, allocations that fail, enum values from C),
// regression tests of the bugs the fuzzers found, and create/use/destroy loops for the leak
// checker. ctest reruns all of it with ALIBI_MAX_CPU_ISA=generic and =avx2 (every ISA build); the
// sanitizer job of .ci/sanitize runs it under ASan+UBSan+LSan. tests/README.md lists each kind
// of bad input and what the library answers.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "reference.h"
#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr float kInf = std::numeric_limits<float>::infinity();

// ------------------------------------------------------------------------------ the runner

// Which CPU kernel a case must take: the tiled one (a slice of more than 16 query rows) or the
// decode one (every slice at most 16 rows, none sharing rows).
enum class Kernel { kTiled, kDecode };

std::string kernel_name(Kernel k) { return k == Kernel::kTiled ? "tiled" : "decode"; }

Tensor make_tensor(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape,
                   const std::vector<float>& values) {
  alibi_tensor_t t = nullptr;
  EXPECT_EQ(alibi_tensor_create(ctx, dtype, int(shape.size()), shape.data(), &t), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  const std::vector<uint8_t> bytes = test::encode(values, dtype);
  if (t && !bytes.empty())
    EXPECT_EQ(alibi_tensor_copy_from_host(t, bytes.data(), bytes.size()), ALIBI_STATUS_SUCCESS);
  return Tensor(t);
}

std::vector<float> read_tensor(alibi_tensor_t t, alibi_dtype dtype, size_t count) {
  std::vector<uint8_t> bytes(count * test::element_bytes(dtype));
  if (count > 0)
    EXPECT_EQ(alibi_tensor_copy_to_host(t, bytes.data(), bytes.size()), ALIBI_STATUS_SUCCESS);
  return test::decode(bytes, dtype);
}

// One forward problem over a ranges mask (positions qpos = i, kpos = j unless given).
struct Case {
  int64_t total_q = 0, total_k = 0;
  int heads_q = 2, heads_kv = 1, head_dim = 8;
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  std::vector<ref::Slice> slices;
  std::vector<int32_t> q_positions, k_positions;  // empty: the mask's defaults
  std::vector<float> q, k, v;                     // representable in dtype
  std::vector<float> attn_bias;                   // (heads_q, total_q, total_k) or empty
  alibi_attention_params params = {};
  std::vector<float> user_slopes;                 // stored here, pointed to by params
};

Case new_case(int64_t total_q, int64_t total_k, int heads_q, int heads_kv, int head_dim,
              alibi_dtype dtype) {
  Case c;
  c.total_q = total_q, c.total_k = total_k;
  c.heads_q = heads_q, c.heads_kv = heads_kv, c.head_dim = head_dim;
  c.dtype = dtype;
  alibi_attention_params_init(&c.params);
  return c;
}

// Rows [0, total_q) x keys [0, total_k) of one type: one slice (tiled kernel when it has more
// than 16 rows) or row chunks of 4 over the same keys (decode kernel).
std::vector<ref::Slice> slices_for(Kernel kernel, int64_t total_q, int64_t total_k, int type) {
  if (kernel == Kernel::kTiled || total_q == 0) return {{0, total_q, 0, total_k, type}};
  std::vector<ref::Slice> slices;
  for (int64_t r = 0; r < total_q; r += 4) slices.push_back({r, std::min(total_q, r + 4), 0, total_k, type});
  return slices;
}

void fill(std::vector<float>& values, size_t count, uint32_t seed, float lo, float hi, alibi_dtype dtype) {
  values = test::random_floats(count, seed, lo, hi);
  for (float& x : values) x = test::round_to(x, dtype);
}

void fill_qkv(Case& c, uint32_t seed, float q_scale = 1.0f, float k_scale = 1.0f) {
  fill(c.q, size_t(c.total_q * c.heads_q * c.head_dim), seed, -q_scale, q_scale, c.dtype);
  fill(c.k, size_t(c.total_k * c.heads_kv * c.head_dim), seed + 1, -k_scale, k_scale, c.dtype);
  fill(c.v, size_t(c.total_k * c.heads_kv * c.head_dim), seed + 2, -1.0f, 1.0f, c.dtype);
}

struct Outcome {
  std::vector<float> out, lse;
  ref::Result want;
  ref::Problem problem;
};

// Runs the library and the reference; expects every out and lse within the error an f32
// computation can carry for these magnitudes, no NaN anywhere, and rows without a finite score
// at exactly out = 0, lse = -inf.
Outcome run_case(Case& c) {
  Outcome result;
  Context ctx = test::make_cpu_context();
  std::vector<int32_t> q_ranges, k_ranges, types;
  for (const ref::Slice& s : c.slices) {
    q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  alibi_mask_t raw_mask = nullptr;
  EXPECT_EQ(alibi_mask_create_ranges(ctx.get(), int(c.slices.size()), q_ranges.data(), k_ranges.data(),
                                     types.data(), c.total_q, c.total_k, &raw_mask),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  Mask mask(raw_mask);
  if (!mask) return result;
  ref::Positions positions = ref::stream_positions(c.total_q, c.total_k);
  if (!c.q_positions.empty() || !c.k_positions.empty()) {
    EXPECT_EQ(alibi_mask_set_positions(mask.get(), c.q_positions.empty() ? nullptr : c.q_positions.data(),
                                       c.k_positions.empty() ? nullptr : c.k_positions.data()),
              ALIBI_STATUS_SUCCESS);
    if (!c.q_positions.empty()) positions.q = c.q_positions;
    if (!c.k_positions.empty()) positions.k = c.k_positions;
  }
  if (!c.user_slopes.empty()) c.params.slopes = c.user_slopes.data();

  Tensor q = make_tensor(ctx.get(), c.dtype, {c.total_q, c.heads_q, c.head_dim}, c.q);
  Tensor k = make_tensor(ctx.get(), c.dtype, {c.total_k, c.heads_kv, c.head_dim}, c.k);
  Tensor v = make_tensor(ctx.get(), c.dtype, {c.total_k, c.heads_kv, c.head_dim}, c.v);
  const size_t out_count = size_t(c.total_q * c.heads_q * c.head_dim);
  Tensor out = make_tensor(ctx.get(), c.dtype, {c.total_q, c.heads_q, c.head_dim},
                           std::vector<float>(out_count, 777.0f));
  Tensor lse = make_tensor(ctx.get(), ALIBI_DTYPE_F32, {c.heads_q, c.total_q},
                           std::vector<float>(size_t(c.heads_q * c.total_q), 777.0f));
  Tensor bias;
  if (!c.attn_bias.empty()) {
    bias = make_tensor(ctx.get(), ALIBI_DTYPE_F32, {c.heads_q, c.total_q, c.total_k}, c.attn_bias);
    c.params.attn_bias = bias.get();
  }
  EXPECT_EQ(alibi_attention_forward(ctx.get(), q.get(), k.get(), v.get(), mask.get(), &c.params, out.get(), lse.get()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  c.params.attn_bias = nullptr;
  result.out = read_tensor(out.get(), c.dtype, out_count);
  result.lse = read_tensor(lse.get(), ALIBI_DTYPE_F32, size_t(c.heads_q * c.total_q));

  // The reference on the same inputs.
  ref::Problem& p = result.problem;
  p.total_q = c.total_q, p.total_k = c.total_k;
  p.heads_q = c.heads_q, p.heads_kv = c.heads_kv, p.head_dim = c.head_dim;
  p.q.assign(c.q.begin(), c.q.end());
  p.k.assign(c.k.begin(), c.k.end());
  p.v.assign(c.v.begin(), c.v.end());
  p.visible = ref::from_slices(c.total_q, c.total_k, c.slices);
  p.positions = positions;
  std::vector<float> slopes = c.user_slopes;
  if (slopes.empty()) {
    slopes.resize(size_t(c.heads_q));
    EXPECT_EQ(alibi_compute_slopes(c.heads_q, c.params.max_bias, slopes.data()), ALIBI_STATUS_SUCCESS);
  }
  p.slopes = ref::slopes_of_rows(slopes, c.total_q);
  p.scale = c.params.softmax_scale > 0 ? c.params.softmax_scale : float(1.0 / std::sqrt(double(c.head_dim)));
  p.softcap = c.params.softcap;
  if (!c.attn_bias.empty()) {
    p.bias_heads = c.heads_q;
    p.attn_bias.assign(c.attn_bias.begin(), c.attn_bias.end());
  }
  result.want = ref::attention(p);

  const int group = c.heads_q / c.heads_kv;
  const double unit = c.dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -11)
                      : c.dtype == ALIBI_DTYPE_BF16 ? std::ldexp(1.0, -8)
                                                    : std::ldexp(1.0, -24);
  int reported = 0;
  for (int h = 0; h < c.heads_q; ++h)
    for (int64_t i = 0; i < c.total_q; ++i) {
      // The f32 error of this row's scores, from their magnitudes.
      double error = 0.0, v_max = 0.0;
      for (int64_t j = 0; j < c.total_k; ++j) {
        if (!p.visible.at(i, j)) continue;
        double dot = 0.0;
        for (int d = 0; d < c.head_dim; ++d)
          dot += std::fabs(p.q[size_t((i * c.heads_q + h) * c.head_dim + d)] *
                           p.k[size_t((j * c.heads_kv + h / group) * c.head_dim + d)]);
        const double bias = std::fabs(double(slopes[size_t(h)]) *
                                      double(std::llabs(int64_t(positions.q[size_t(i)]) - positions.k[size_t(j)])));
        error = std::max(error, 4e-7 * ((c.head_dim + 4) * p.scale * dot + 2 * bias + 8 * p.softcap));
        for (int d = 0; d < c.head_dim; ++d)
          v_max = std::max(v_max, std::fabs(p.v[size_t((j * c.heads_kv + h / group) * c.head_dim + d)]));
      }
      const double lse_want = result.want.lse[size_t(h * c.total_q + i)];
      const float lse_got = result.lse[size_t(h * c.total_q + i)];
      EXPECT_FALSE(std::isnan(lse_got));
      if (std::isinf(lse_want)) {
        EXPECT_EQ(lse_got, -kInf) << "row " << i << " head " << h << " sees no finite score";
      } else if (!(std::fabs(lse_got - lse_want) <= error + 2e-6 * std::fabs(lse_want) + 1e-5) && reported++ < 5) {
        ADD_FAILURE() << "lse[" << h << ", " << i << "] = " << lse_got << ", reference " << lse_want;
      }
      for (int d = 0; d < c.head_dim; ++d) {
        const double want = result.want.out[size_t((i * c.heads_q + h) * c.head_dim + d)];
        const float got = result.out[size_t((i * c.heads_q + h) * c.head_dim + d)];
        EXPECT_TRUE(std::isfinite(got)) << "out[" << i << ", " << h << ", " << d << "] = " << got;
        const double tolerance = v_max * (2 * error + 2e-5) + unit * std::fabs(want) + 1e-30;
        if (std::isinf(lse_want)) {
          EXPECT_EQ(got, 0.0f);
        } else if (!(std::fabs(got - want) <= tolerance) && reported++ < 5) {
          ADD_FAILURE() << "out[" << i << ", " << h << ", " << d << "] = " << got << ", reference " << want
                        << " (tolerance " << tolerance << ")";
        }
      }
    }
  return result;
}

// ------------------------------------------------------------------------- numerical edges

class HardeningEdges : public ::testing::TestWithParam<std::tuple<Kernel, alibi_dtype>> {
 protected:
  Kernel kernel() const { return std::get<0>(GetParam()); }
  alibi_dtype dtype() const { return std::get<1>(GetParam()); }
};

// Logits of magnitude 1e4 (|scale q.k| up to ~1e4): no overflow in exp, no NaN or inf in out.
TEST_P(HardeningEdges, LogitsOfMagnitude1e4) {
  Case c = new_case(24, 40, 2, 1, 16, dtype());
  c.slices = slices_for(kernel(), 24, 40, ALIBI_MASK_CAUSAL);
  fill_qkv(c, 11, 25.0f, 25.0f);  // |q.k| up to 16 * 625 = 1e4
  c.params.softmax_scale = 1.0f;
  const Outcome r = run_case(c);
  double largest = 0;
  for (int64_t i = 0; i < c.total_q; ++i)
    for (int64_t j = 0; j < c.total_k; ++j) {
      if (!r.problem.visible.at(i, j)) continue;
      largest = std::max(largest, std::fabs(ref::score(r.problem, 0, i, j)));
    }
  EXPECT_GT(largest, 3e3) << "the case should reach logits of order 1e4";
}

// Logits of 1e4 where one key wins by a wide margin: out is that key's v.
TEST_P(HardeningEdges, LogitsOfMagnitude1e4PickTheWinner) {
  Case c = new_case(20, 16, 1, 1, 4, dtype());
  c.slices = slices_for(kernel(), 20, 16, ALIBI_MASK_FULL);
  fill_qkv(c, 12);
  for (int64_t i = 0; i < 20; ++i)
    for (int d = 0; d < 4; ++d) c.q[size_t(i * 4 + d)] = d == 0 ? 100.0f : 0.0f;
  for (int64_t j = 0; j < 16; ++j)
    for (int d = 0; d < 4; ++d) c.k[size_t(j * 4 + d)] = d == 0 ? (j == 5 ? 100.0f : 96.0f) : 0.0f;
  c.params.softmax_scale = 1.0f;
  c.params.max_bias = 0.0f;
  const Outcome r = run_case(c);
  for (int64_t i = 0; i < 20; ++i)
    for (int d = 0; d < 4; ++d) EXPECT_EQ(r.out[size_t(i * 4 + d)], c.v[size_t(5 * 4 + d)]);
}

// ALiBi positions 65,536 apart with half inputs: the bias is still the exact f32
// -slope * distance (never computed through f16 distances, whose ulp there is 32).
TEST_P(HardeningEdges, PositionsUpTo65536Apart) {
  Case c = new_case(20, 24, 2, 2, 8, dtype());
  c.slices = slices_for(kernel(), 20, 24, ALIBI_MASK_FULL);
  fill_qkv(c, 13);
  for (int64_t i = 0; i < 20; ++i) c.q_positions.push_back(int32_t(65536 + i));
  for (int64_t j = 0; j < 24; ++j) c.k_positions.push_back(int32_t(j * 2849 + (j % 3)));  // 0 .. 65530
  c.user_slopes = {1.0f / 4096, 1.0f / 65536};
  run_case(c);

  // build_bias shows the values themselves: bitwise -(slope * float(distance)).
  Context ctx = test::make_cpu_context();
  const int32_t qr[2] = {0, 1}, kr[2] = {0, 2}, type = ALIBI_MASK_FULL;
  alibi_mask_t raw = nullptr;
  ASSERT_OK(alibi_mask_create_ranges(ctx.get(), 1, qr, kr, &type, 1, 2, &raw));
  Mask mask(raw);
  const int32_t qpos = 65536 + 7, kpos[2] = {0, 65535};
  ASSERT_OK(alibi_mask_set_positions(mask.get(), &qpos, kpos));
  std::vector<float> out(4, 0.0f);
  const int64_t shape[3] = {2, 1, 2};
  alibi_tensor_t raw_out = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, shape, nullptr, out.data(), &raw_out));
  Tensor t(raw_out);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.slopes = c.user_slopes.data();
  ASSERT_OK(alibi_build_bias(ctx.get(), mask.get(), 2, &params, t.get()));
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < 2; ++j)
      EXPECT_EQ(out[size_t(h * 2 + j)], -(c.user_slopes[size_t(h)] * float(qpos - kpos[j])));
}

// Rows that see nothing: uncovered rows, inverse-causal rows past the keys, and rows whose every
// visible score is -inf through attn_bias: out = 0 and lse = -inf, never NaN.
TEST_P(HardeningEdges, AllMaskedRows) {
  Case c = new_case(24, 10, 2, 1, 8, dtype());
  // Rows 0..19 in an inverse-causal slice of 10 keys (rows 10..19 see nothing); 20..23 uncovered.
  c.slices = kernel() == Kernel::kTiled ? std::vector<ref::Slice>{{0, 20, 0, 10, ALIBI_MASK_INV_CAUSAL}}
                                        : std::vector<ref::Slice>{{0, 4, 0, 10, ALIBI_MASK_INV_CAUSAL},
                                                                  {4, 8, 0, 10, ALIBI_MASK_FULL}};
  fill_qkv(c, 14);
  c.attn_bias.assign(size_t(2 * 24 * 10), 0.0f);
  for (int h = 0; h < 2; ++h)
    for (int64_t j = 0; j < 10; ++j) c.attn_bias[size_t((h * 24 + 2) * 10 + j)] = -kInf;  // row 2: all -inf
  const Outcome r = run_case(c);
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(r.lse[size_t(h * 24 + 2)], -kInf);
    EXPECT_EQ(r.lse[size_t(h * 24 + 21)], -kInf);
    if (kernel() == Kernel::kTiled) EXPECT_EQ(r.lse[size_t(h * 24 + 12)], -kInf);
  }
}

TEST_P(HardeningEdges, SingleKey) {
  Case c = new_case(20, 1, 3, 1, 8, dtype());
  c.slices = slices_for(kernel(), 20, 1, ALIBI_MASK_FULL);
  fill_qkv(c, 15);
  const Outcome r = run_case(c);
  for (int64_t i = 0; i < 20; ++i)
    for (int h = 0; h < 3; ++h)
      for (int d = 0; d < 8; ++d) EXPECT_EQ(r.out[size_t((i * 3 + h) * 8 + d)], c.v[size_t(d)]);
}

TEST_P(HardeningEdges, HeadDimOne) {
  Case c = new_case(20, 30, 4, 2, 1, dtype());
  c.slices = slices_for(kernel(), 20, 30, ALIBI_MASK_CAUSAL);
  fill_qkv(c, 16, 3.0f, 3.0f);
  run_case(c);
}

// Slope 0 (max_bias 0, or user slopes of 0): plain softmax attention.
TEST_P(HardeningEdges, ZeroSlopesArePlainAttention) {
  Case c = new_case(20, 24, 2, 1, 8, dtype());
  c.slices = slices_for(kernel(), 20, 24, ALIBI_MASK_CAUSAL);
  fill_qkv(c, 17);
  c.params.max_bias = 0.0f;
  const Outcome formula = run_case(c);
  Case user = c;
  user.params.max_bias = 8.0f;
  user.user_slopes = {0.0f, 0.0f};
  const Outcome zero = run_case(user);
  EXPECT_EQ(formula.out, zero.out);
  EXPECT_EQ(formula.lse, zero.lse);
}

// Slope 1e4: a key one position further costs 1e4, so each row attends to its nearest key.
TEST_P(HardeningEdges, HugeSlopesKeepOnlyTheNearestKey) {
  Case c = new_case(20, 12, 2, 1, 8, dtype());
  c.slices = slices_for(kernel(), 20, 12, ALIBI_MASK_FULL);
  fill_qkv(c, 18);
  c.user_slopes = {1e4f, 1e4f};
  const Outcome r = run_case(c);
  for (int64_t i = 0; i < 20; ++i) {
    const int64_t nearest = std::min<int64_t>(i, 11);  // qpos = i, kpos = j
    for (int h = 0; h < 2; ++h)
      for (int d = 0; d < 8; ++d)
        EXPECT_EQ(r.out[size_t((i * 2 + h) * 8 + d)], c.v[size_t(nearest * 8 + d)]) << i << " " << h << " " << d;
  }
}

// Softcap with logits of 1e4: scores are squashed into (-softcap, softcap), finite, no NaN.
TEST_P(HardeningEdges, SoftcapWithLargeLogits) {
  Case c = new_case(24, 32, 2, 2, 16, dtype());
  c.slices = slices_for(kernel(), 24, 32, ALIBI_MASK_CAUSAL);
  fill_qkv(c, 19, 25.0f, 25.0f);
  c.params.softmax_scale = 1.0f;
  c.params.softcap = 30.0f;
  run_case(c);
}

// total_q = 0, total_k = 0, or both.
TEST_P(HardeningEdges, EmptyTotals) {
  for (const auto& [tq, tk] : std::vector<std::pair<int64_t, int64_t>>{{0, 12}, {20, 0}, {0, 0}}) {
    Case c = new_case(tq, tk, 2, 1, 8, dtype());
    c.slices = slices_for(kernel(), tq, tk, ALIBI_MASK_FULL);
    fill_qkv(c, 20);
    const Outcome r = run_case(c);
    for (float x : r.out) EXPECT_EQ(x, 0.0f);
    for (float x : r.lse) EXPECT_EQ(x, -kInf);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Kernels, HardeningEdges,
    ::testing::Combine(::testing::Values(Kernel::kTiled, Kernel::kDecode),
                       ::testing::Values(ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16)),
    [](const ::testing::TestParamInfo<std::tuple<Kernel, alibi_dtype>>& info) {
      const alibi_dtype d = std::get<1>(info.param);
      return kernel_name(std::get<0>(info.param)) + "_" +
             (d == ALIBI_DTYPE_F32 ? "f32" : d == ALIBI_DTYPE_F16 ? "f16" : "bf16");
    });

// ----------------------------------------------------------------------------------- limits

// The call failed with `status` and a message naming the function and containing `fragment`.
void expect_failure(alibi_status got, alibi_status status, const char* function, const char* fragment) {
  EXPECT_EQ(got, status) << alibi_status_string(got) << ": " << alibi_last_error_message();
  const std::string message = alibi_last_error_message();
  EXPECT_EQ(message.rfind(std::string(function) + ": ", 0), 0u) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << message;
}

constexpr int64_t kHuge = int64_t(1) << 62;  // elements: 2^62 * 4 bytes overflow

TEST(HardeningLimits, ElementAndByteCountsThatOverflow64Bits) {
  Context ctx = test::make_cpu_context();
  alibi_tensor_t t = nullptr;
  const int64_t elements[2] = {kHuge, 4};  // 2^64 elements
  expect_failure(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 2, elements, &t),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_create", "overflow");
  EXPECT_EQ(t, nullptr);
  const int64_t bytes[1] = {kHuge};  // 2^62 elements of 4 bytes
  expect_failure(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 1, bytes, &t),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_create", "overflow");
  // A zero size does not hide the others: contiguous strides would overflow.
  const int64_t empty[3] = {0, int64_t(1) << 40, int64_t(1) << 40};
  expect_failure(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 3, empty, &t),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_create", "overflow");
  char buffer[64];
  expect_failure(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, empty, nullptr, buffer, &t),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_wrap", "overflow");
  // Strides whose byte offsets overflow (the element offsets alone fit).
  const int64_t shape[2] = {3, 2}, strides[2] = {int64_t(1) << 61, 1};
  expect_failure(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 2, shape, strides, buffer, &t),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_wrap", "strides[0]");
  EXPECT_EQ(t, nullptr);
}

TEST(HardeningLimits, AllocationFailureIsOutOfMemory) {
  // 2^60 bytes fit every count but no allocator (under ASan: allocator_may_return_null=1).
  Context ctx = test::make_cpu_context();
  alibi_tensor_t t = nullptr;
  const int64_t shape[1] = {int64_t(1) << 58};
  expect_failure(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 1, shape, &t), ALIBI_STATUS_OUT_OF_MEMORY,
                 "alibi_tensor_create", "allocate");
  EXPECT_EQ(t, nullptr);
}

TEST(HardeningLimits, MaskTotalsAreInt32) {
  Context ctx = test::make_cpu_context();
  alibi_mask_t m = nullptr;
  expect_failure(alibi_mask_create_ranges(ctx.get(), 0, nullptr, nullptr, nullptr, int64_t(INT32_MAX) + 1, 0, &m),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_mask_create_ranges", "total_q");
  const int32_t q_range[2] = {0, INT32_MAX}, k_range[2] = {INT32_MIN, 0}, type = 0;
  expect_failure(alibi_mask_create_ranges(ctx.get(), 1, q_range, k_range, &type, INT32_MAX, 4, &m),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_mask_create_ranges", "k_ranges[0]");
  const int32_t cu_q[2] = {0, INT32_MAX}, cu_k[2] = {INT32_MAX, 0};
  expect_failure(alibi_mask_create_varlen(ctx.get(), 1, cu_q, cu_k, 1, &m), ALIBI_STATUS_INVALID_ARGUMENT,
                 "alibi_mask_create_varlen", "cu_seqlens_k");
  EXPECT_EQ(m, nullptr);
}

// Zero-stride views let a tensor claim any number of heads or any head_dim without memory.
TEST(HardeningLimits, HeadsAndHeadDimBeyondTheSupportedRange) {
  Context ctx = test::make_cpu_context();
  const int32_t cu[2] = {0, 1};
  alibi_mask_t raw_mask = nullptr;
  ASSERT_OK(alibi_mask_create_varlen(ctx.get(), 1, cu, cu, 1, &raw_mask));
  Mask mask(raw_mask);
  float storage[8] = {};
  for (const auto& [heads, dim] : std::vector<std::pair<int64_t, int64_t>>{
           {65537, 1}, {int64_t(1) << 31, 1}, {(int64_t(1) << 32) + 1, 1}, {1, 65537}, {1, int64_t(1) << 40}}) {
    const int64_t shape[3] = {1, heads, dim}, strides[3] = {0, 0, dim > 1 ? 1 : 0};
    alibi_tensor_t raw = nullptr;
    // head_dim > 1 needs a contiguous last dim: those views only work with strides (0, 0, 1)
    // over memory this test does not have, which is fine: forward rejects them first.
    ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, shape, strides, storage, &raw));
    Tensor t(raw);
    expect_failure(alibi_attention_forward(ctx.get(), t.get(), t.get(), t.get(), mask.get(), nullptr, t.get(), nullptr),
                   ALIBI_STATUS_INVALID_ARGUMENT, "alibi_attention_forward", "supported");
  }
  // The builders' num_heads has the same bound.
  float out[1];
  const int64_t shape[3] = {1, 1, 1};
  alibi_tensor_t raw_out = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, shape, nullptr, out, &raw_out));
  Tensor t(raw_out);
  expect_failure(alibi_build_bias(ctx.get(), mask.get(), 65537, nullptr, t.get()), ALIBI_STATUS_INVALID_ARGUMENT,
                 "alibi_build_bias", "num_heads");
  expect_failure(alibi_build_bias(ctx.get(), mask.get(), INT32_MAX, nullptr, t.get()), ALIBI_STATUS_INVALID_ARGUMENT,
                 "alibi_build_bias", "num_heads");
}

TEST(HardeningLimits, BuilderSizesThatOverflow) {
  Context ctx = test::make_cpu_context();
  // A (2^59, 0) attention mask has no element, but B * H overflows int64.
  const int64_t mask_shape[2] = {int64_t(1) << 59, 0};
  alibi_tensor_t raw_mask = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_I32, 2, mask_shape, nullptr, nullptr, &raw_mask));
  Tensor mask(raw_mask);
  const int64_t out_shape[3] = {0, 1, 0};
  alibi_tensor_t raw_out = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, out_shape, nullptr, nullptr, &raw_out));
  Tensor out(raw_out);
  expect_failure(alibi_build_bloom_bias(ctx.get(), mask.get(), 65536, out.get()), ALIBI_STATUS_INVALID_ARGUMENT,
                 "alibi_build_bloom_bias", "overflows");
  // seqstarts with more than INT32_MAX entries (a zero-stride view).
  int64_t zero = 0;
  const int64_t starts_shape[1] = {int64_t(1) << 31}, starts_stride[1] = {0};
  alibi_tensor_t raw_starts = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_I64, 1, starts_shape, starts_stride, &zero, &raw_starts));
  Tensor starts(raw_starts);
  float cell = 0;
  const int64_t dyn_shape[3] = {1, 0, 0};
  alibi_tensor_t raw_dyn = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, dyn_shape, nullptr, &cell, &raw_dyn));
  Tensor dyn(raw_dyn);
  expect_failure(alibi_build_dynamic_batching_mask(ctx.get(), starts.get(), starts.get(), nullptr, 1, dyn.get()),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_build_dynamic_batching_mask", "INT32_MAX");
}

// Enum arguments from C may hold any int: INVALID_ARGUMENT (or "unknown status", 0 devices),
// never undefined behaviour in the C++ core.
TEST(HardeningLimits, EnumValuesOutsideTheirRange) {
  int raw = -1;
  alibi_status status;
  alibi_dtype dtype;
  alibi_device device;
  std::memcpy(&status, &raw, sizeof raw);
  EXPECT_STREQ(alibi_status_string(status), "unknown status");
  raw = 1 << 20;
  std::memcpy(&device, &raw, sizeof raw);
  EXPECT_EQ(alibi_device_count(device), 0);
  alibi_context_t ctx = nullptr;
  expect_failure(alibi_context_create(device, 0, &ctx), ALIBI_STATUS_INVALID_ARGUMENT, "alibi_context_create",
                 "1048576");
  EXPECT_EQ(ctx, nullptr);
  Context good = test::make_cpu_context();
  for (int value : {-1, 5, 255, INT32_MIN, INT32_MAX}) {
    std::memcpy(&dtype, &value, sizeof value);
    const int64_t shape[1] = {4};
    alibi_tensor_t t = nullptr;
    expect_failure(alibi_tensor_create(good.get(), dtype, 1, shape, &t), ALIBI_STATUS_INVALID_ARGUMENT,
                   "alibi_tensor_create", "dtype");
    float buffer[4];
    expect_failure(alibi_tensor_wrap(good.get(), dtype, 1, shape, nullptr, buffer, &t), ALIBI_STATUS_INVALID_ARGUMENT,
                   "alibi_tensor_wrap", "dtype");
    EXPECT_EQ(t, nullptr);
  }
}

// ------------------------------------------------------------- regressions of fuzzer findings

// fuzz_tensor: copying a tensor with a huge stride on a size-1 dim stepped the offset one
// stride past the dim's last element: INT64_MAX past element 1 overflowed (signed overflow;
// UBSan in cpu/cpu_backend.cpp). Such strides are legal (and common for size-1 dims).
TEST(HardeningRegression, HugeStrideOnASizeOneDimCopies) {
  Context ctx = test::make_cpu_context();
  float data[3] = {1.0f, 2.0f, 3.0f};
  const int64_t shape[2] = {3, 1}, strides[2] = {1, std::numeric_limits<int64_t>::max()};
  alibi_tensor_t raw = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 2, shape, strides, data, &raw));
  Tensor t(raw);
  float back[3] = {};
  ASSERT_OK(alibi_tensor_copy_to_host(t.get(), back, sizeof back));
  EXPECT_EQ(std::vector<float>(back, back + 3), std::vector<float>(data, data + 3));
  const float in[3] = {4.0f, 5.0f, 6.0f};
  ASSERT_OK(alibi_tensor_copy_from_host(t.get(), in, sizeof in));
  EXPECT_EQ(std::vector<float>(data, data + 3), std::vector<float>(in, in + 3));
  // Same with the large stride innermost of two size-1 dims and a trailing dim.
  const int64_t shape3[3] = {1, 3, 1}, strides3[3] = {int64_t(1) << 58, 1, std::numeric_limits<int64_t>::max() / 2};
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, shape3, strides3, data, &raw));
  Tensor t3(raw);
  ASSERT_OK(alibi_tensor_copy_to_host(t3.get(), back, sizeof back));
  EXPECT_EQ(back[2], 6.0f);
}

// fuzz_builders: a Bloom attention mask of int64 values other than 0/1 overflowed the signed
// cumulative sum (cpu/builders_cpu.cpp). Values are used as given, in wrapping arithmetic.
TEST(HardeningRegression, BloomMaskValuesThatOverflowTheCumulativeSum) {
  Context ctx = test::make_cpu_context();
  const int64_t values[3] = {std::numeric_limits<int64_t>::max(), 1, -(int64_t(1) << 40)};
  const int64_t mask_shape[2] = {1, 3};
  alibi_tensor_t raw_mask = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_I64, 2, mask_shape, nullptr, const_cast<int64_t*>(values), &raw_mask));
  Tensor mask(raw_mask);
  float out[3] = {};
  const int64_t out_shape[3] = {1, 1, 3};
  alibi_tensor_t raw_out = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 3, out_shape, nullptr, out, &raw_out));
  Tensor t(raw_out);
  ASSERT_OK(alibi_build_bloom_bias(ctx.get(), mask.get(), 1, t.get()));
  float slope;
  ASSERT_OK(alibi_compute_slopes(1, 8.0f, &slope));
  uint64_t cumulative = 0;
  for (int s = 0; s < 3; ++s) {
    cumulative += uint64_t(values[s]);
    const int64_t pos = int64_t((cumulative - 1) * uint64_t(values[s]));
    EXPECT_EQ(out[s], slope * float(pos)) << s;
  }
}

// --------------------------------------------------------------- create / use / destroy loops

// Every handle type made, used and destroyed many times, in both destruction orders; run under
// LeakSanitizer by .ci/sanitize (a leak fails the process at exit).
TEST(HardeningLeaks, CreateUseDestroyEveryHandleType) {
  const int32_t cu_q[3] = {0, 5, 12}, cu_k[3] = {0, 9, 20};
  const int32_t q_ranges[4] = {0, 6, 6, 12}, k_ranges[4] = {0, 20, 0, 10}, types[2] = {1, 2};
  for (int iteration = 0; iteration < 20; ++iteration) {
    alibi_context_t ctx = nullptr;
    ASSERT_OK(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
    ASSERT_OK(alibi_context_set_num_threads(ctx, 1 + iteration % 3));
    alibi_mask_t masks[3] = {};
    ASSERT_OK(alibi_mask_create_varlen(ctx, 2, cu_q, cu_k, 1, &masks[0]));
    ASSERT_OK(alibi_mask_create_ranges(ctx, 2, q_ranges, k_ranges, types, 12, 20, &masks[1]));
    ASSERT_OK(alibi_mask_create_sliding_window(ctx, 2, cu_q, cu_k, 3, 1, &masks[2]));
    std::vector<int32_t> positions(20);
    for (int j = 0; j < 20; ++j) positions[size_t(j)] = 1000 * j;
    ASSERT_OK(alibi_mask_set_positions(masks[1], positions.data(), positions.data()));
    const int64_t q_shape[3] = {12, 4, 8}, kv_shape[3] = {20, 2, 8}, lse_shape[2] = {4, 12};
    alibi_tensor_t q = nullptr, k = nullptr, v = nullptr, out = nullptr, lse = nullptr, bias = nullptr;
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_BF16, 3, q_shape, &q));
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_BF16, 3, kv_shape, &k));
    std::vector<uint16_t> v_data(20 * 2 * 8, 0x3f80);  // bf16 1.0
    ASSERT_OK(alibi_tensor_wrap(ctx, ALIBI_DTYPE_BF16, 3, kv_shape, nullptr, v_data.data(), &v));
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_BF16, 3, q_shape, &out));
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 2, lse_shape, &lse));
    std::vector<uint16_t> zeros(12 * 4 * 8, 0);
    ASSERT_OK(alibi_tensor_copy_from_host(q, zeros.data(), zeros.size() * 2));
    ASSERT_OK(alibi_tensor_copy_from_host(k, zeros.data(), 20 * 2 * 8 * 2));
    const int64_t bias_shape[3] = {4, 12, 20};
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 3, bias_shape, &bias));
    for (alibi_mask_t m : masks) {
      ASSERT_OK(alibi_attention_forward(ctx, q, k, v, m, nullptr, out, lse));
      ASSERT_OK(alibi_build_bias(ctx, m, 4, nullptr, bias));
    }
    // Failed calls allocate their messages too.
    EXPECT_NE(alibi_attention_forward(ctx, q, k, q, masks[0], nullptr, out, lse), ALIBI_STATUS_SUCCESS);
    EXPECT_NE(alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 1, &bias_shape[0], nullptr), ALIBI_STATUS_SUCCESS);
    // Builders.
    const int64_t starts[3] = {0, 3, 5}, starts_shape[1] = {3}, dyn_shape[3] = {2, 5, 7}, bloom_shape[2] = {2, 5};
    const int32_t bloom_mask[10] = {0, 1, 1, 1, 1, 1, 1, 0, 0, 1};
    alibi_tensor_t seq = nullptr, dyn = nullptr, bloom_in = nullptr, bloom_out = nullptr;
    ASSERT_OK(alibi_tensor_wrap(ctx, ALIBI_DTYPE_I64, 1, starts_shape, nullptr, const_cast<int64_t*>(starts), &seq));
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_F16, 3, dyn_shape, &dyn));
    ASSERT_OK(alibi_build_dynamic_batching_mask(ctx, seq, seq, nullptr, 2, dyn));
    ASSERT_OK(alibi_tensor_wrap(ctx, ALIBI_DTYPE_I32, 2, bloom_shape, nullptr, const_cast<int32_t*>(bloom_mask), &bloom_in));
    const int64_t bloom_out_shape[3] = {6, 1, 5};
    ASSERT_OK(alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 3, bloom_out_shape, &bloom_out));
    ASSERT_OK(alibi_build_bloom_bias(ctx, bloom_in, 3, bloom_out));
    // Half the iterations destroy the context first: the objects keep what they need alive.
    if (iteration % 2) alibi_context_destroy(ctx);
    for (alibi_tensor_t t : {q, k, v, out, lse, bias, seq, dyn, bloom_in, bloom_out}) alibi_tensor_destroy(t);
    for (alibi_mask_t m : masks) alibi_mask_destroy(m);
    if (iteration % 2 == 0) alibi_context_destroy(ctx);
  }
}

}  // namespace
