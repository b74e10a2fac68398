// Fuzz target: alibi_attention_forward on small problems (and alibi_build_bias on the same mask
// and params) against the float64 reference of tests/reference.h.
//
// Every input builds a valid mask (varlen, ranges or sliding window, default or fuzzed
// positions), q/k/v of f32/f16/bf16 holding exactly representable values whose magnitudes reach
// logits of ~1e5, GQA, packed strides, and params (scale, softcap, max_bias, user or per-sequence
// slopes, tensor-parallel offsets, attn_bias with -inf cells). Sizes are bounded (<= 64 queries,
// <= 72 keys, <= 6 heads, head_dim <= 24) but reach both CPU kernels: the decode kernel (every
// slice <= 16 rows) and the tiled one, with key splits. Now and then one argument is made invalid
// instead, and the call must fail with the status the header documents.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "attention_inputs.h"
#include "reference.h"
#include "reference_check.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;
using fuzz::float_dtype;
using fuzz::kPoison;
using fuzz::MaskCase;
using fuzz::Operand;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The sequence of a query row of a sequence mask (-1 outside every sequence).
int sequence_of(const MaskCase& m, int64_t row) {
  for (int b = 0; b < m.batch; ++b)
    if (row >= m.cu_q[size_t(b)] && row < m.cu_q[size_t(b) + 1]) return b;
  return -1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  // Mostly one thread: waking a second one costs more than a small problem (the thread-count
  // independence of results is checked on 1 input in 16).
  const int threads = in.u8() % 16 == 15 ? 2 : 1;
  alibi_context_t ctx = fuzz::cpu_context(threads);
  MaskCase m;
  fuzz::make_mask(in, ctx, m, fuzz::MaskKinds::kWithoutSharedRows);

  const alibi_dtype dtype = float_dtype(in);
  const int heads_kv = int(in.in(1, 2)), group = int(in.in(1, 3)), heads = heads_kv * group;
  const int dim = in.u8() < 224 ? int(in.in(1, 8)) : int(in.in(1, 24));
  const int q_shift = int(in.in(-4, 7)), k_shift = int(in.in(-4, 7)), v_shift = int(in.in(-2, 4));
  const bool packed = in.flag();
  Operand q, k, v, out;
  const int64_t head_pad = packed ? in.in(0, 3) : 0, row_pad = packed ? in.in(0, 5) : 0;
  q.layout(dtype, m.total_q, heads, dim, head_pad, row_pad);
  k.layout(dtype, m.total_k, heads_kv, dim, head_pad, row_pad);
  v.layout(dtype, m.total_k, heads_kv, dim, head_pad, row_pad);
  out.layout(dtype, m.total_q, heads, dim, head_pad, row_pad);
  for (int64_t t = 0; t < m.total_q; ++t)
    for (int h = 0; h < heads; ++h)
      for (int d = 0; d < dim; ++d) q.set(t, h, d, fuzz::exact_value(in, q_shift));
  for (int64_t t = 0; t < m.total_k; ++t)
    for (int h = 0; h < heads_kv; ++h)
      for (int d = 0; d < dim; ++d) {
        k.set(t, h, d, fuzz::exact_value(in, k_shift));
        v.set(t, h, d, fuzz::exact_value(in, v_shift));
      }
  const std::vector<uint8_t> out_before = out.storage;  // poisoned

  // Params.
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  Expect expect;
  static const float scales[] = {0.0f, 0.0f, 0.0f, -1.0f, 1e-3f, 0.125f, 1.0f, 4.0f, 100.0f, NAN, INFINITY};
  params.softmax_scale = scales[in.u8() % 11];
  if (!std::isfinite(params.softmax_scale)) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "scale");
  const uint8_t softcap = in.u8();
  static const float softcaps[] = {0.5f, 5.0f, 30.0f, 1e4f, -1.0f, NAN};
  params.softcap = softcap < 192 ? 0.0f : softcaps[softcap % 6];
  if (!(params.softcap >= 0)) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "softcap");
  static const float max_biases[] = {8.0f, 8.0f, 0.0f, 1.0f, 16.0f, 64.0f, -1.0f, INFINITY};
  params.max_bias = max_biases[in.u8() % 8];
  if (!(params.max_bias >= 0) || std::isinf(params.max_bias)) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "max_bias");
  const uint8_t slope_mode = in.u8() % 8;
  static const float slope_table[] = {0.0f, 1e-3f, 0.0625f, 0.5f, 1.0f, 1e4f};
  std::vector<float> user_slopes;
  if (slope_mode == 1 || slope_mode == 2) {
    const int per = slope_mode == 2 ? std::max(m.batch, 1) : 1;
    for (int i = 0; i < per * heads; ++i) user_slopes.push_back(slope_table[in.u8() % 6]);
    if (in.u8() == 255 && (slope_mode == 1 || m.batch > 0)) user_slopes[0] = -1.0f, expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "slope");
    params.slopes = user_slopes.data();
    params.slopes_per_batch = slope_mode == 2;
    if (slope_mode == 2 && !m.sequences) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "per batch on ranges");
  } else if (slope_mode == 3) {
    params.slopes_per_batch = 1;  // without slopes
    expect.add(ALIBI_STATUS_NULL_POINTER, "per batch without slopes");
    if (!m.sequences) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "per batch on ranges");
  }
  if (in.u8() % 4 == 0) {  // a tensor-parallel shard
    params.total_heads = heads + int(in.in(0, 5));
    params.head_offset = int(in.in(0, params.total_heads - heads));
    if (in.u8() == 255) params.head_offset = params.total_heads, expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "head_offset");
  }
  params.deterministic = in.flag();
  // attn_bias: none, broadcast over heads, or per head; any float dtype; some -inf cells.
  const uint8_t bias_mode = in.u8() % 4;
  int bias_heads = bias_mode == 1 ? 1 : bias_mode == 2 ? heads : 0;
  std::vector<uint8_t> bias_storage;
  fuzz::TensorHandle bias;
  std::vector<double> bias_values;
  alibi_dtype bias_dtype = float_dtype(in);
  if (bias_heads > 0) {
    const int64_t count = bias_heads * m.total_q * m.total_k;
    bias_storage.assign(size_t(std::max<int64_t>(count, 1)) * fuzz::element_size(bias_dtype), 0);
    const int shift = int(in.in(-3, 5));
    for (int64_t i = 0; i < count; ++i) {
      float x = fuzz::exact_value(in, shift);
      if (x == -2.0f * std::ldexp(1.0f, shift)) x = kNegInf;  // k = -128: a masked cell
      fuzz::store(bias_storage.data(), i, bias_dtype, x);
      bias_values.push_back(fuzz::load(bias_storage.data(), i, bias_dtype));
    }
    const int64_t shape[3] = {bias_heads, m.total_q, m.total_k};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, bias_dtype, 3, shape, nullptr, bias_storage.data(), &bias.t),
                          "alibi_tensor_wrap");
    params.attn_bias = bias.t;
  }

  // lse: none, (H, Tq) contiguous or transposed.
  const uint8_t lse_mode = in.u8() % 3;
  std::vector<float> lse_storage(size_t(heads * m.total_q) + 1, kPoison);
  fuzz::TensorHandle lse;
  if (lse_mode > 0) {
    const int64_t shape[2] = {heads, m.total_q};
    const int64_t transposed[2] = {1, heads};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, shape, lse_mode == 2 ? transposed : nullptr,
                                            lse_storage.data(), &lse.t),
                          "alibi_tensor_wrap");
  }

  // Now and then one invalid argument.
  const uint8_t corrupt = in.u8();
  const int which = corrupt < 224 ? 0 : 1 + corrupt % 12;
  alibi_dtype q_dtype = dtype, k_dtype = dtype, out_dtype = dtype;
  int64_t q_shape[3] = {m.total_q, heads, dim}, k_shape[3] = {m.total_k, heads_kv, dim};
  int64_t out_shape[3] = {m.total_q, heads, dim}, q_strides[3] = {q.strides[0], q.strides[1], 1};
  int q_ndim = 3;
  bool null_q = false, null_mask = false, null_ctx = false;
  switch (which) {
    case 1: k_dtype = dtype == ALIBI_DTYPE_F32 ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32;
            expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "corruption 1"); break;
    case 2: out_shape[2] = dim + 1; expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "corruption 2"); break;
    case 3: if (heads % (heads_kv + 1) != 0) k_shape[1] = heads_kv + 1, expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "corruption 3");
            break;
    case 4: q_shape[0] = m.total_q + 1, out_shape[0] = m.total_q + 1; expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "corruption 4"); break;
    case 5: params.struct_size -= 8; expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "corruption 5"); break;
    case 6: if (dim >= 4) q_strides[2] = 2, q_shape[2] = dim / 2, out_shape[2] = dim / 2, k_shape[2] = dim / 2,
                           expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "corruption 6");
            break;
    case 7: null_q = true; expect.add(ALIBI_STATUS_NULL_POINTER, "corruption 7"); break;
    case 8: null_mask = true; expect.add(ALIBI_STATUS_NULL_POINTER, "corruption 8"); break;
    case 9: null_ctx = true; expect.add(ALIBI_STATUS_NULL_POINTER, "corruption 9"); break;
    case 10: q_dtype = k_dtype = out_dtype = ALIBI_DTYPE_I32; expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "corruption 10"); break;
    case 11: q_ndim = 2; expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "corruption 11"); break;
    case 12: params.head_offset = -1; expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "corruption 12"); break;
  }
  const int64_t v_strides[3] = {v.strides[0], v.strides[1], 1};
  const int64_t k_strides[3] = {k.strides[0], k.strides[1], 1};
  const int64_t out_strides[3] = {out.strides[0], out.strides[1], q_strides[2]};
  fuzz::TensorHandle tq, tk, tv, tout;
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, q_dtype, q_ndim, q_shape, q_strides, q.storage.data(), &tq.t), "alibi_tensor_wrap");
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, k_dtype, 3, k_shape, k_strides, k.storage.data(), &tk.t), "alibi_tensor_wrap");
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, k_dtype, 3, k_shape, v_strides, v.storage.data(), &tv.t),
                        "alibi_tensor_wrap");
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, out_dtype, 3, out_shape, out_strides, out.storage.data(), &tout.t),
                        "alibi_tensor_wrap");
  const alibi_status status =
      alibi_attention_forward(null_ctx ? nullptr : ctx, null_q ? nullptr : tq.t, tk.t, tv.t,
                              null_mask ? nullptr : m.handle.m, &params, tout.t, lse.t);
  expect.check(status, "alibi_attention_forward");
  if (!expect.ok()) {
    FUZZ_REQUIRE(out.storage == out_before, "a failed forward wrote to out");
    return 0;
  }

  // The float64 reference on the same (exactly representable) inputs.
  ref::Problem p;
  p.total_q = m.total_q, p.total_k = m.total_k;
  p.heads_q = heads, p.heads_kv = heads_kv, p.head_dim = dim;
  for (int64_t t = 0; t < m.total_q; ++t)
    for (int h = 0; h < heads; ++h)
      for (int d = 0; d < dim; ++d) p.q.push_back(q.get(t, h, d));
  for (int64_t t = 0; t < m.total_k; ++t)
    for (int h = 0; h < heads_kv; ++h)
      for (int d = 0; d < dim; ++d) p.k.push_back(k.get(t, h, d)), p.v.push_back(v.get(t, h, d));
  p.visible = m.visible;
  p.positions = m.positions;
  const float scale = params.softmax_scale > 0 ? params.softmax_scale : float(1.0 / std::sqrt(double(dim)));
  p.scale = scale;
  p.softcap = params.softcap;
  p.bias_heads = bias_heads;
  p.attn_bias = bias_values;
  std::vector<float> head_slopes(static_cast<size_t>(heads));
  if (!params.slopes) {
    const int total_heads = params.total_heads ? params.total_heads : heads;
    fuzz::check_status_ok(alibi_compute_slopes_tp(total_heads, params.head_offset, heads, params.max_bias,
                                                  head_slopes.data()),
                          "alibi_compute_slopes_tp");
  }
  p.slopes.assign(size_t(heads * m.total_q), 0.0f);
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < m.total_q; ++i) {
      float slope = head_slopes[size_t(h)];
      if (params.slopes && params.slopes_per_batch) {
        const int b = sequence_of(m, i);
        slope = b < 0 ? 0.0f : user_slopes[size_t(b * heads + h)];
      } else if (params.slopes) {
        slope = user_slopes[size_t(h)];
      }
      p.slopes[size_t(h * m.total_q + i)] = slope;
    }
  const std::string threads_used = std::to_string(threads) + " threads";
  fuzz::check_forward_results(
      p,
      {[&](int64_t i, int h, int d) { return out.get(i, h, d); },
       lse.t ? std::function<float(int, int64_t)>([&](int h, int64_t i) {
         return lse_storage[size_t(lse_mode == 2 ? i * heads + h : h * m.total_q + i)];
       })
             : nullptr},
      dtype, threads_used.c_str());
  // Padding between rows and heads is never written: out's buffer equals the poisoned one with
  // just the elements replaced.
  std::vector<uint8_t> expected_buffer = out_before;
  const size_t esize = fuzz::element_size(dtype);
  for (int64_t t = 0; t < m.total_q; ++t)
    for (int h = 0; h < heads; ++h)
      for (int d = 0; d < dim; ++d) {
        const size_t at = size_t(out.offset(t, h, d)) * esize;
        std::memcpy(&expected_buffer[at], &out.storage[at], esize);
      }
  FUZZ_REQUIRE(expected_buffer == out.storage, "forward wrote outside out's elements");

  // The same call on the other thread count gives the same bits.
  if (in.u8() % 16 == 0) {
    const std::vector<uint8_t> first = out.storage;
    const std::vector<float> first_lse = lse_storage;
    fuzz::check_status_ok(alibi_attention_forward(fuzz::cpu_context(3 - threads), tq.t, tk.t, tv.t, m.handle.m,
                                                  &params, tout.t, lse.t),
                          "alibi_attention_forward");
    FUZZ_REQUIRE(first == out.storage && std::memcmp(first_lse.data(), lse_storage.data(),
                                                     lse_storage.size() * sizeof(float)) == 0,
                 "1 and 2 threads give different bits");
  }

  // build_bias on the same mask and params: exactly bias + attn_bias where visible, else -inf.
  if (m.total_q * m.total_k * heads <= 2048) {
    std::vector<float> built(size_t(heads * m.total_q * m.total_k) + 1, kPoison);
    const int64_t shape[3] = {heads, m.total_q, m.total_k};
    fuzz::TensorHandle tb;
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, nullptr, built.data(), &tb.t),
                          "alibi_tensor_wrap");
    fuzz::check_status_ok(alibi_build_bias(ctx, m.handle.m, heads, &params, tb.t), "alibi_build_bias");
    for (int h = 0; h < heads; ++h)
      for (int64_t i = 0; i < m.total_q; ++i)
        for (int64_t j = 0; j < m.total_k; ++j) {
          float w = kNegInf;
          if (m.visible.at(i, j)) {
            const int64_t distance = std::llabs(int64_t(p.positions.q[size_t(i)]) - p.positions.k[size_t(j)]);
            w = -(p.slopes[size_t(h * m.total_q + i)] * float(distance));
            if (bias_heads) w += float(bias_values[size_t(((bias_heads == 1 ? 0 : h) * m.total_q + i) * m.total_k + j)]);
          }
          const float got = built[size_t((h * m.total_q + i) * m.total_k + j)];
          FUZZ_REQUIRE(got == w || (std::isnan(got) && std::isnan(w)), "build_bias[%d, %lld, %lld] = %g, expected %g",
                       h, (long long)i, (long long)j, got, w);
        }
  }
  return 0;
}
