// Fuzz target: alibi_build_dynamic_batching_mask (OpenPPL) and alibi_build_bloom_bias (HF Bloom)
// with fuzzed offsets (i32/i64, negative, decreasing, huge), optional attn_mask, output shapes
// and dtypes, against SPEC section 2 computed here in f32. (alibi_build_bias is checked by the
// mask and forward targets.)
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "fuzz_common.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int fuzz_heads(Bytes& in, Expect& expect) {
  const uint8_t pick = in.u8();
  if (pick < 244) return int(in.in(1, 4));
  static const int wild[] = {0, -1, 65537, INT32_MAX, INT32_MIN, 1 << 20};
  expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "num_heads");
  return wild[pick % 6];
}

// An index tensor (i32 or i64) holding `values`, backed by `storage`.
void wrap_indices(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& values,
                  std::vector<uint8_t>& storage, fuzz::TensorHandle& t) {
  const size_t esize = fuzz::element_size(dtype);
  storage.assign(values.size() * esize + 8, 0);
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == ALIBI_DTYPE_I64) {
      std::memcpy(&storage[i * 8], &values[i], 8);
    } else if (dtype == ALIBI_DTYPE_I32) {
      const int32_t v = int32_t(values[i]);
      std::memcpy(&storage[i * 4], &v, 4);
    } else {
      const float v = float(values[i]);
      std::memcpy(&storage[i * 4], &v, 4);
    }
  }
  const int64_t shape[1] = {int64_t(values.size())};
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, dtype, 1, shape, nullptr, storage.data(), &t.t), "alibi_tensor_wrap");
}

alibi_dtype index_dtype(Bytes& in, Expect& expect, const char* what) {
  const uint8_t pick = in.u8();
  if (pick < 250) return pick % 2 ? ALIBI_DTYPE_I32 : ALIBI_DTYPE_I64;
  expect.add(ALIBI_STATUS_DTYPE_MISMATCH, what);
  return ALIBI_DTYPE_F32;
}

// B+1 offsets: small steps, now and then a wild one (negative, decreasing, huge).
std::vector<int64_t> offsets(Bytes& in, int count, alibi_dtype dtype, bool* valid) {
  std::vector<int64_t> v;
  int64_t previous = 0;
  for (int i = 0; i < count; ++i) {
    const int64_t step = in.in(0, 6);
    int64_t x = in.u8() < 244 ? (i == 0 ? step % 3 : previous > INT64_MAX - 6 ? previous : previous + step)
                              : in.i64_small_or_wild(-3, 30);
    if (dtype == ALIBI_DTYPE_I32) x = int32_t(x);  // what the tensor holds
    v.push_back(x);
    previous = x;
  }
  *valid = !v.empty() && v[0] >= 0;
  for (size_t i = 1; i < v.size(); ++i) *valid &= v[i] >= v[i - 1];
  return v;
}

void dynamic_batching(Bytes& in, alibi_context_t ctx) {
  Expect expect;
  const int heads = fuzz_heads(in, expect);
  const alibi_dtype seq_dtype = index_dtype(in, expect, "seqstarts dtype");
  const alibi_dtype kv_dtype = index_dtype(in, expect, "kvstarts dtype");
  const int batch = int(in.in(0, 4));
  const bool count_mismatch = in.u8() > 250;
  bool seq_valid, kv_valid;
  const std::vector<int64_t> seq = offsets(in, batch + 1, seq_dtype, &seq_valid);
  const std::vector<int64_t> kv = offsets(in, batch + 1 + (count_mismatch ? 1 : 0), kv_dtype, &kv_valid);
  if (!seq_valid || !kv_valid) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "offsets");
  if (count_mismatch) expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "offset counts");
  const int64_t sq = seq.back(), sk = kv.back();

  // out (H, Sq, W), W >= Sk; small on purpose when the offsets are huge (SHAPE_MISMATCH).
  const uint8_t out_pick = in.u8();
  const alibi_dtype out_dtype = out_pick < 250 ? (out_pick % 2 ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32) : ALIBI_DTYPE_BF16;
  if (out_dtype == ALIBI_DTYPE_BF16) expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "out dtype");
  const int64_t out_heads = std::clamp<int64_t>(heads, 1, 4) + (in.u8() > 252 ? 1 : 0);
  int64_t out_rows = std::clamp<int64_t>(sq, 0, 40) + (in.u8() > 252 ? 1 : 0);
  int64_t width = std::clamp<int64_t>(sk, 0, 40) + in.in(0, 3) - (in.u8() > 252 ? 4 : 0);
  width = std::max<int64_t>(width, 0);
  if (out_heads != heads || out_rows != sq || width < sk) expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "out shape");
  const int64_t row_pad = in.in(0, 2);
  const int64_t out_shape[3] = {out_heads, out_rows, width};
  const int64_t out_strides[3] = {out_rows * (width + row_pad), width + row_pad, 1};
  std::vector<uint8_t> out_storage(size_t(out_heads * out_rows * (width + row_pad) + 1) * 4, 0xAB);
  const std::vector<uint8_t> before = out_storage;

  // attn_mask: none, (Sq, Sk) or (H, Sq, Sk), f32 or f16.
  const uint8_t mask_mode = in.u8() % 3;
  const uint8_t mask_pick = in.u8();
  const alibi_dtype mask_dtype = mask_pick < 250 ? (mask_pick % 2 ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32) : ALIBI_DTYPE_BF16;
  std::vector<uint8_t> mask_storage;
  std::vector<float> mask_values;
  fuzz::TensorHandle mask;
  const int64_t mask_heads = mask_mode == 2 ? out_heads : 1;
  const int64_t mask_rows = std::clamp<int64_t>(sq, 0, 40), mask_cols = std::clamp<int64_t>(sk, 0, 40);
  if (mask_mode > 0) {
    if (mask_dtype == ALIBI_DTYPE_BF16) expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "attn_mask dtype");
    if (mask_rows != sq || mask_cols != sk || (mask_mode == 2 && mask_heads != heads)) expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "attn_mask shape");
    const int64_t count = mask_heads * mask_rows * mask_cols;
    mask_storage.assign(size_t(count + 1) * 4, 0);
    const int shift = int(in.in(-3, 4));
    for (int64_t i = 0; i < count; ++i) {
      float x = fuzz::exact_value(in, shift);
      if (x == -2.0f * std::ldexp(1.0f, shift)) x = kNegInf;
      fuzz::store(mask_storage.data(), i, mask_dtype, x);
      mask_values.push_back(fuzz::load(mask_storage.data(), i, mask_dtype));
    }
    const int64_t shape3[3] = {mask_heads, mask_rows, mask_cols};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, mask_dtype, mask_mode == 2 ? 3 : 2, mask_mode == 2 ? shape3 : shape3 + 1,
                                            nullptr, mask_storage.data(), &mask.t),
                          "alibi_tensor_wrap");
  }

  std::vector<uint8_t> seq_storage, kv_storage;
  fuzz::TensorHandle seq_t, kv_t, out_t;
  wrap_indices(ctx, seq_dtype, seq, seq_storage, seq_t);
  wrap_indices(ctx, kv_dtype, kv, kv_storage, kv_t);
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, out_dtype, 3, out_shape, out_strides, out_storage.data(), &out_t.t),
                        "alibi_tensor_wrap");
  expect.check(alibi_build_dynamic_batching_mask(ctx, seq_t.t, kv_t.t, mask.t, heads, out_t.t),
               "alibi_build_dynamic_batching_mask");
  if (!expect.ok()) {
    FUZZ_REQUIRE(out_storage == before, "a failed alibi_build_dynamic_batching_mask wrote to out");
    return;
  }
  std::vector<float> slopes(static_cast<size_t>(heads));
  fuzz::check_status_ok(alibi_compute_slopes(heads, 8.0f, slopes.data()), "alibi_compute_slopes");
  for (int h = 0; h < heads; ++h)
    for (int64_t r = 0; r < sq; ++r) {
      int b = -1;
      for (int i = 0; i < batch; ++i)
        if (r >= seq[size_t(i)] && r < seq[size_t(i) + 1]) b = i;
      for (int64_t c = 0; c < width; ++c) {
        float want = 0.0f;
        if (b >= 0 && c >= kv[size_t(b)] && c < kv[size_t(b) + 1]) {
          const int64_t rows = seq[size_t(b) + 1] - seq[size_t(b)], keys = kv[size_t(b) + 1] - kv[size_t(b)];
          const int64_t d = (c - kv[size_t(b)]) - (r - seq[size_t(b)]) - (keys - rows);
          want = d <= 0 ? slopes[size_t(h)] * float(d) : kNegInf;
        }
        if (mask.t && c < sk)
          want += mask_values[size_t(((mask_mode == 2 ? h : 0) * mask_rows + r) * mask_cols + c)];
        const float got = fuzz::load(out_storage.data(), h * out_strides[0] + r * out_strides[1] + c, out_dtype);
        FUZZ_REQUIRE(fuzz::stored_equal(got, want, out_dtype), "dynamic batching out[%d, %lld, %lld] = %g, expected %g",
                     h, (long long)r, (long long)c, got, want);
      }
      for (int64_t c = width; c < width + row_pad; ++c)
        FUZZ_REQUIRE(std::memcmp(&out_storage[size_t(h * out_strides[0] + r * out_strides[1] + c) * fuzz::element_size(out_dtype)],
                                 &before[0], fuzz::element_size(out_dtype)) == 0,
                     "dynamic batching wrote into row padding");
    }
}

void bloom(Bytes& in, alibi_context_t ctx) {
  Expect expect;
  const int heads = fuzz_heads(in, expect);
  const alibi_dtype dtype = index_dtype(in, expect, "attention_mask dtype");
  const int64_t batch = in.in(0, 3), length = in.in(0, 12);
  const bool wild = in.u8() > 240;
  std::vector<int64_t> values;
  for (int64_t i = 0; i < batch * length; ++i) {
    int64_t x = wild ? in.i64_small_or_wild(-2, 3) : int64_t(in.u8() & 1);
    if (dtype == ALIBI_DTYPE_I32) x = int32_t(x);
    values.push_back(x);
  }
  std::vector<uint8_t> mask_storage;
  fuzz::TensorHandle mask;
  wrap_indices(ctx, dtype, values, mask_storage, mask);  // 1-d; rewrapped as (B, S) below
  fuzz::TensorHandle mask2d;
  void* data = nullptr;
  fuzz::check_status_ok(alibi_tensor_get_data(mask.t, &data), "alibi_tensor_get_data");
  const int64_t mask_shape[2] = {batch, length};
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, dtype, 2, mask_shape, nullptr, data, &mask2d.t), "alibi_tensor_wrap");

  const uint8_t out_pick = in.u8();
  static const alibi_dtype out_types[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};
  const alibi_dtype out_dtype = out_pick < 252 ? out_types[out_pick % 3] : ALIBI_DTYPE_I32;
  if (out_dtype == ALIBI_DTYPE_I32) expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "out dtype");
  int64_t rows = batch * std::clamp(heads, 1, 4), middle = 1, cols = length;
  const uint8_t shape_pick = in.u8();
  if (shape_pick == 255) rows += 1;
  if (shape_pick == 254) middle = 2;
  if (shape_pick == 253) cols += 1;
  if (rows != batch * int64_t(heads) || middle != 1 || cols != length) expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "out shape");
  std::vector<uint8_t> out_storage(size_t(rows * middle * cols + 1) * 4, 0xCD);
  const std::vector<uint8_t> before = out_storage;
  const int64_t out_shape[3] = {rows, middle, cols};
  fuzz::TensorHandle out;
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, out_dtype, 3, out_shape, nullptr, out_storage.data(), &out.t),
                        "alibi_tensor_wrap");
  expect.check(alibi_build_bloom_bias(ctx, mask2d.t, heads, out.t), "alibi_build_bloom_bias");
  if (!expect.ok()) {
    FUZZ_REQUIRE(out_storage == before, "a failed alibi_build_bloom_bias wrote to out");
    return;
  }
  std::vector<float> slopes(static_cast<size_t>(heads));
  fuzz::check_status_ok(alibi_compute_slopes(heads, 8.0f, slopes.data()), "alibi_compute_slopes");
  for (int64_t b = 0; b < batch; ++b) {
    // pos = (cumsum(mask) - 1) * mask, in wrapping 64-bit arithmetic (as torch's int64 cumsum).
    uint64_t cumulative = 0;
    for (int64_t s = 0; s < length; ++s) {
      const int64_t keep = values[size_t(b * length + s)];
      cumulative += uint64_t(keep);
      const int64_t pos = int64_t((cumulative - 1) * uint64_t(keep));
      for (int h = 0; h < heads; ++h) {
        const float want = slopes[size_t(h)] * float(pos);
        const float got = fuzz::load(out_storage.data(), (b * heads + h) * length + s, out_dtype);
        FUZZ_REQUIRE(fuzz::stored_equal(got, want, out_dtype), "bloom out[%lld, 0, %lld] = %g, expected %g",
                     (long long)(b * heads + h), (long long)s, got, want);
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  alibi_context_t ctx = fuzz::cpu_context(1);
  if (in.u8() % 2)
    dynamic_batching(in, ctx);
  else
    bloom(in, ctx);
  return 0;
}
