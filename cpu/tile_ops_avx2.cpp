// Tile operations with AVX2, FMA and F16C intrinsics. Only functions marked ALIBI_AVX2 use
// them, so the rest of the library stays runnable on any x86-64 CPU.
#include <cpuid.h>
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/kernel/half.h"
#include "cpu/tile_ops.h"

#define ALIBI_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace alibi::cpu {

namespace {

constexpr int kRowsPerKernel = 6;
constexpr int kTokensPerDot = 8;

// e^x for 8 lanes (Cephes-style polynomial after reducing by ln 2, ~1 ulp); x below
// -87.3 (including -inf) gives exactly 0.
ALIBI_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 underflow = _mm256_cmp_ps(x, _mm256_set1_ps(-87.33f), _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.33f)), _mm256_set1_ps(88.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i exponent = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(y, _mm256_castsi256_ps(exponent)));
}

ALIBI_AVX2 inline __m256 tanh8(__m256 x) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 e = exp8(_mm256_mul_ps(_mm256_set1_ps(-2.0f), _mm256_andnot_ps(sign, x)));
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 magnitude = _mm256_div_ps(_mm256_sub_ps(one, e), _mm256_add_ps(one, e));
  return _mm256_or_ps(magnitude, _mm256_and_ps(sign, x));
}

// Lane i is set when i < count (count in 0..8).
ALIBI_AVX2 inline __m256i lane_mask(int64_t count) {
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(count)), lanes);
}

// C (M x 16) (+)= A (M x k) B (k x 16): the register-blocked inner kernel.
template <int M>
ALIBI_AVX2 void kernel_16(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                          int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  __m256 acc[M][2];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) {
    const __m256 scale = c_scale ? _mm256_broadcast_ss(c_scale + i) : _mm256_setzero_ps();
    acc[i][0] = c_scale ? _mm256_mul_ps(scale, _mm256_loadu_ps(c + i * ldc)) : scale;
    acc[i][1] = c_scale ? _mm256_mul_ps(scale, _mm256_loadu_ps(c + i * ldc + 8)) : scale;
  }
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_loadu_ps(b + p * ldb);
    const __m256 b1 = _mm256_loadu_ps(b + p * ldb + 8);
    const float* ap = a + p * a_col;
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i) {
      const __m256 av = _mm256_broadcast_ss(ap + i * a_row);
      acc[i][0] = _mm256_fmadd_ps(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_ps(av, b1, acc[i][1]);
    }
  }
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) {
    _mm256_storeu_ps(c + i * ldc, acc[i][0]);
    _mm256_storeu_ps(c + i * ldc + 8, acc[i][1]);
  }
}

// C (M x width) (+)= A (M x k) B (k x width) for a last panel of width 1..8.
template <int M>
ALIBI_AVX2 void kernel_8(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                         int64_t ldb, float* c, int64_t ldc, const float* c_scale, int64_t width) {
  const __m256i mask = lane_mask(width);
  __m256 acc[M];
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i)
    acc[i] = c_scale ? _mm256_mul_ps(_mm256_broadcast_ss(c_scale + i), _mm256_maskload_ps(c + i * ldc, mask))
                     : _mm256_setzero_ps();
  for (int64_t p = 0; p < k; ++p) {
    const __m256 b0 = _mm256_maskload_ps(b + p * ldb, mask);
    const float* ap = a + p * a_col;
#pragma GCC unroll 6
    for (int i = 0; i < M; ++i)
      acc[i] = _mm256_fmadd_ps(_mm256_broadcast_ss(ap + i * a_row), b0, acc[i]);
  }
#pragma GCC unroll 6
  for (int i = 0; i < M; ++i) _mm256_maskstore_ps(c + i * ldc, mask, acc[i]);
}

template <int M>
ALIBI_AVX2 void row_panel(int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                          const float* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) kernel_16<M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale);
  for (; j < n; j += 8)
    kernel_8<M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale, std::min<int64_t>(8, n - j));
}

ALIBI_AVX2 void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row,
                     int64_t a_col, const float* b, int64_t ldb, float* c, int64_t ldc,
                     const float* c_scale) {
  for (int64_t i = 0; i < m; i += kRowsPerKernel) {
    const float* ai = a + i * a_row;
    float* ci = c + i * ldc;
    const float* scale_i = c_scale ? c_scale + i : nullptr;
    switch (std::min<int64_t>(kRowsPerKernel, m - i)) {
      case 6: row_panel<6>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
      case 5: row_panel<5>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
      case 4: row_panel<4>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
      case 3: row_panel<3>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
      case 2: row_panel<2>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
      default: row_panel<1>(n, k, ai, a_row, a_col, b, ldb, ci, ldc, scale_i); break;
    }
  }
}

// Pass 1 for 8 queries: final scores written back; returns their max over the block's keys.
ALIBI_AVX2 __m256 finish_scores8(const ScoreBlock& b, int64_t c0, __m256i valid) {
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256 slope = _mm256_set1_ps(b.slope);
  const __m256 cap = _mm256_set1_ps(b.softcap), inverse_cap = _mm256_set1_ps(1.0f / b.softcap);
  const __m256i qpos = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.query_pos + c0));
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.visible_lo + c0));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.visible_hi + c0));
  __m256 block_max = neg_inf;
  for (int64_t j = 0; j < b.keys; ++j) {
    float* row = b.scores + j * b.ld + c0;
    __m256 s = _mm256_loadu_ps(row);
    if (b.softcap > 0) s = _mm256_mul_ps(cap, tanh8(_mm256_mul_ps(s, inverse_cap)));
    const __m256i distance = _mm256_abs_epi32(_mm256_sub_epi32(qpos, _mm256_set1_epi32(b.key_pos[j])));
    s = _mm256_add_ps(s, _mm256_xor_ps(sign, _mm256_mul_ps(slope, _mm256_cvtepi32_ps(distance))));
    if (b.attn_bias) s = _mm256_add_ps(s, _mm256_loadu_ps(b.attn_bias + j * b.ld + c0));
    if (b.needs_mask) {
      const __m256i key = _mm256_set1_epi32(b.first_key + int32_t(j));
      const __m256i visible = _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, key),
                                                  _mm256_cmpgt_epi32(hi, key));
      s = _mm256_blendv_ps(neg_inf, s, _mm256_castsi256_ps(_mm256_and_si256(visible, valid)));
    }
    _mm256_storeu_ps(row, s);
    block_max = _mm256_max_ps(block_max, s);
  }
  return block_max;
}

ALIBI_AVX2 void softmax8(const ScoreBlock& b, int64_t c0) {
  const __m256i valid = lane_mask(b.queries - c0);
  const __m256 neg_inf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 block_max = finish_scores8(b, c0, valid);
  const __m256 old_max = _mm256_maskload_ps(b.row_max + c0, valid);
  const __m256 new_max = _mm256_max_ps(old_max, block_max);
  // Lanes that have seen nothing but -inf shift by 0, so their probabilities are exactly 0.
  const __m256 shift = _mm256_andnot_ps(_mm256_cmp_ps(new_max, neg_inf, _CMP_EQ_OQ), new_max);
  __m256 sum = _mm256_setzero_ps();
  for (int64_t j = 0; j < b.keys; ++j) {
    float* row = b.scores + j * b.ld + c0;
    const __m256 p = exp8(_mm256_sub_ps(_mm256_loadu_ps(row), shift));
    _mm256_storeu_ps(row, p);
    sum = _mm256_add_ps(sum, p);
  }
  const __m256 correction = exp8(_mm256_sub_ps(old_max, shift));
  const __m256 old_sum = _mm256_maskload_ps(b.row_sum + c0, valid);
  _mm256_maskstore_ps(b.row_max + c0, valid, new_max);
  _mm256_maskstore_ps(b.row_sum + c0, valid, _mm256_fmadd_ps(old_sum, correction, sum));
  _mm256_maskstore_ps(b.correction + c0, valid, correction);
}

ALIBI_AVX2 void softmax_block(const ScoreBlock& b) {
  for (int64_t c0 = 0; c0 < b.queries; c0 += 8) softmax8(b, c0);
}

ALIBI_AVX2 void widen(alibi_dtype dtype, const uint16_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256 f = dtype == ALIBI_DTYPE_F16
                         ? _mm256_cvtph_ps(h)
                         : _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    _mm256_storeu_ps(dst + i, f);
  }
  for (; i < count; ++i)
    dst[i] = dtype == ALIBI_DTYPE_F16 ? f16_to_float(src[i]) : bf16_to_float(src[i]);
}

// Lane i of the result is the sum of v[i]'s lanes.
ALIBI_AVX2 inline __m256 sum8(const __m256* v) {
  const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
  const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
}

// Decode reads k and v in their own dtype and widens in registers.
template <alibi_dtype kDtype>
using ElementOf = std::conditional_t<kDtype == ALIBI_DTYPE_F32, float, uint16_t>;

template <alibi_dtype kDtype>
ALIBI_AVX2 inline __m256 load8(const ElementOf<kDtype>* p) {
  if constexpr (kDtype == ALIBI_DTYPE_F32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (kDtype == ALIBI_DTYPE_F16) return _mm256_cvtph_ps(halves);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
  }
}

// The first `count` (1..7) values at p, zeros after them.
template <alibi_dtype kDtype>
ALIBI_AVX2 inline __m256 load_first(const ElementOf<kDtype>* p, int64_t count) {
  if constexpr (kDtype == ALIBI_DTYPE_F32) {
    return _mm256_maskload_ps(p, lane_mask(count));
  } else {
    uint16_t halves[8] = {};
    std::memcpy(halves, p, size_t(count) * sizeof(uint16_t));
    return load8<kDtype>(halves);
  }
}

// Lane j: q . k[j] over dim, one FMA chain per token, each q vector loaded once for all 8.
template <alibi_dtype kDtype>
ALIBI_AVX2 inline __m256 dot_8_tokens(const float* q, const ElementOf<kDtype>* const* k, int64_t dim) {
  __m256 acc[kTokensPerDot];
  for (__m256& a : acc) a = _mm256_setzero_ps();
  int64_t d = 0;
  for (; d + 8 <= dim; d += 8) {
    const __m256 query = _mm256_loadu_ps(q + d);
#pragma GCC unroll 8
    for (int j = 0; j < kTokensPerDot; ++j) acc[j] = _mm256_fmadd_ps(query, load8<kDtype>(k[j] + d), acc[j]);
  }
  if (d < dim) {
    const __m256 query = _mm256_maskload_ps(q + d, lane_mask(dim - d));
#pragma GCC unroll 8
    for (int j = 0; j < kTokensPerDot; ++j)
      acc[j] = _mm256_fmadd_ps(query, load_first<kDtype>(k[j] + d, dim - d), acc[j]);
  }
  return sum8(acc);
}

// Head by head, 8 tokens at a time (a short last group repeats its last token).
template <alibi_dtype kDtype>
ALIBI_AVX2 void score_tokens_of(const float* q, const TokenRun& k, const HeadLayout& layout, float* scores) {
  for (int64_t h = 0; h < layout.heads; ++h) {
    const auto* head = static_cast<const ElementOf<kDtype>*>(k.data) + (h / layout.group) * k.head_stride;
    for (int64_t j0 = 0; j0 < k.count; j0 += kTokensPerDot) {
      const int64_t count = std::min<int64_t>(kTokensPerDot, k.count - j0);
      const ElementOf<kDtype>* tokens[kTokensPerDot];
      for (int64_t j = 0; j < kTokensPerDot; ++j) tokens[j] = head + (j0 + std::min(j, count - 1)) * k.token_stride;
      alignas(32) float dots[kTokensPerDot];
      _mm256_store_ps(dots, dot_8_tokens<kDtype>(q + h * layout.dim, tokens, layout.dim));
      for (int64_t j = 0; j < count; ++j) scores[(j0 + j) * layout.heads + h] = dots[j];
    }
  }
}

ALIBI_AVX2 void score_tokens(const float* q, const TokenRun& k, const HeadLayout& layout, float* scores) {
  switch (k.dtype) {
    case ALIBI_DTYPE_F16: return score_tokens_of<ALIBI_DTYPE_F16>(q, k, layout, scores);
    case ALIBI_DTYPE_BF16: return score_tokens_of<ALIBI_DTYPE_BF16>(q, k, layout, scores);
    default: return score_tokens_of<ALIBI_DTYPE_F32>(q, k, layout, scores);
  }
}

// out[0, 8 * V) = scale * out + sum over j of p[j * p_stride] * v[j * token_stride + ...], in
// registers throughout.
template <alibi_dtype kDtype, int V>
ALIBI_AVX2 inline void accumulate_vectors(const float* p, int64_t p_stride, const ElementOf<kDtype>* v,
                                          int64_t token_stride, int64_t count, __m256 scale, float* out) {
  __m256 acc[V];
#pragma GCC unroll 8
  for (int i = 0; i < V; ++i) acc[i] = _mm256_mul_ps(scale, _mm256_loadu_ps(out + 8 * i));
  for (int64_t j = 0; j < count; ++j) {
    const __m256 weight = _mm256_broadcast_ss(p + j * p_stride);
    const ElementOf<kDtype>* row = v + j * token_stride;
#pragma GCC unroll 8
    for (int i = 0; i < V; ++i) acc[i] = _mm256_fmadd_ps(weight, load8<kDtype>(row + 8 * i), acc[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < V; ++i) _mm256_storeu_ps(out + 8 * i, acc[i]);
}

template <alibi_dtype kDtype>
ALIBI_AVX2 void accumulate_tail(const float* p, int64_t p_stride, const ElementOf<kDtype>* v, int64_t token_stride,
                                int64_t count, __m256 scale, float* out, int64_t width) {
  const __m256i mask = lane_mask(width);
  __m256 acc = _mm256_mul_ps(scale, _mm256_maskload_ps(out, mask));
  for (int64_t j = 0; j < count; ++j)
    acc = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j * p_stride), load_first<kDtype>(v + j * token_stride, width), acc);
  _mm256_maskstore_ps(out, mask, acc);
}

// Head by head, up to 64 values of a head's accumulator in registers across the whole run.
template <alibi_dtype kDtype>
ALIBI_AVX2 void accumulate_tokens_of(const float* p, const TokenRun& v, const HeadLayout& layout,
                                     const float* correction, float* acc) {
  const int64_t dim = layout.dim, stride = v.token_stride, count = v.count, n = layout.heads;
  for (int64_t h = 0; h < layout.heads; ++h) {
    const auto* head = static_cast<const ElementOf<kDtype>*>(v.data) + (h / layout.group) * v.head_stride;
    const __m256 scale = _mm256_broadcast_ss(correction + h);
    float* out = acc + h * dim;
    int64_t d = 0;
    for (; d + 64 <= dim; d += 64) accumulate_vectors<kDtype, 8>(p + h, n, head + d, stride, count, scale, out + d);
    for (; d + 32 <= dim; d += 32) accumulate_vectors<kDtype, 4>(p + h, n, head + d, stride, count, scale, out + d);
    for (; d + 8 <= dim; d += 8) accumulate_vectors<kDtype, 1>(p + h, n, head + d, stride, count, scale, out + d);
    if (d < dim) accumulate_tail<kDtype>(p + h, n, head + d, stride, count, scale, out + d, dim - d);
  }
}

ALIBI_AVX2 void accumulate_tokens(const float* p, const TokenRun& v, const HeadLayout& layout,
                                  const float* correction, float* acc) {
  switch (v.dtype) {
    case ALIBI_DTYPE_F16: return accumulate_tokens_of<ALIBI_DTYPE_F16>(p, v, layout, correction, acc);
    case ALIBI_DTYPE_BF16: return accumulate_tokens_of<ALIBI_DTYPE_BF16>(p, v, layout, correction, acc);
    default: return accumulate_tokens_of<ALIBI_DTYPE_F32>(p, v, layout, correction, acc);
  }
}

ALIBI_AVX2 void exp_in_place(float* x, int64_t count) {
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) _mm256_storeu_ps(x + i, exp8(_mm256_loadu_ps(x + i)));
  if (i == count) return;
  const __m256i mask = lane_mask(count - i);
  _mm256_maskstore_ps(x + i, mask, exp8(_mm256_maskload_ps(x + i, mask)));
}

// Lanes of 8 queries whose cells take part: real queries whose lse is not -inf (rows that
// saw no key contribute nothing).
ALIBI_AVX2 inline __m256 contributing_lanes(const GradientBlock& b, int64_t c0) {
  const __m256 lse = _mm256_loadu_ps(b.lse + c0);
  const __m256 finite = _mm256_cmp_ps(lse, _mm256_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_NEQ_UQ);
  return _mm256_and_ps(finite, _mm256_castsi256_ps(lane_mask(b.queries - c0)));
}

// gradient_block for 8 queries: returns their per-lane sums of slope terms.
ALIBI_AVX2 __m256 gradient8(const GradientBlock& b, int64_t c0) {
  const __m256 sign = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 slope = _mm256_set1_ps(b.slope);
  const __m256 cap = _mm256_set1_ps(b.softcap), inverse_cap = _mm256_set1_ps(1.0f / b.softcap);
  const __m256i qpos = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.query_pos + c0));
  const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.visible_lo + c0));
  const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.visible_hi + c0));
  const __m256 lse = _mm256_loadu_ps(b.lse + c0), row_dot = _mm256_loadu_ps(b.row_dot + c0);
  const __m256 lanes = contributing_lanes(b, c0);
  __m256 slope_sum = _mm256_setzero_ps();
  for (int64_t j = 0; j < b.keys; ++j) {
    float* p_row = b.scores + j * b.ld + c0;
    float* d_row = b.dscores + j * b.ld + c0;
    const __m256 x = _mm256_loadu_ps(p_row);
    __m256 s = x, tanh_x = x;
    if (b.softcap > 0) {
      tanh_x = tanh8(_mm256_mul_ps(x, inverse_cap));
      s = _mm256_mul_ps(cap, tanh_x);
    }
    const __m256 distance = _mm256_cvtepi32_ps(
        _mm256_abs_epi32(_mm256_sub_epi32(qpos, _mm256_set1_epi32(b.key_pos[j]))));
    s = _mm256_add_ps(s, _mm256_xor_ps(sign, _mm256_mul_ps(slope, distance)));  // as the forward: no FMA
    if (b.attn_bias) s = _mm256_add_ps(s, _mm256_loadu_ps(b.attn_bias + j * b.ld + c0));
    __m256 keep = lanes;
    if (b.needs_mask) {
      const __m256i key = _mm256_set1_epi32(b.first_key + int32_t(j));
      const __m256i visible = _mm256_andnot_si256(_mm256_cmpgt_epi32(lo, key), _mm256_cmpgt_epi32(hi, key));
      keep = _mm256_and_ps(keep, _mm256_castsi256_ps(visible));
    }
    const __m256 p = _mm256_and_ps(keep, exp8(_mm256_sub_ps(s, lse)));
    const __m256 ds = _mm256_and_ps(keep, _mm256_mul_ps(p, _mm256_sub_ps(_mm256_loadu_ps(d_row), row_dot)));
    const __m256 dx = b.softcap > 0 ? _mm256_mul_ps(ds, _mm256_fnmadd_ps(tanh_x, tanh_x, one)) : ds;
    _mm256_storeu_ps(p_row, p);
    _mm256_storeu_ps(d_row, dx);
    slope_sum = _mm256_add_ps(slope_sum, _mm256_mul_ps(ds, _mm256_xor_ps(sign, distance)));
  }
  return slope_sum;
}

ALIBI_AVX2 float gradient_block(const GradientBlock& b) {
  __m256 slope_sum = _mm256_setzero_ps();
  for (int64_t c0 = 0; c0 < b.queries; c0 += 8) slope_sum = _mm256_add_ps(slope_sum, gradient8(b, c0));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, slope_sum);
  float total = 0.0f;
  for (float lane : lanes) total += lane;
  return total;
}

// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

}  // namespace

const TileOps* avx2_tile_ops() {
  static const TileOps ops{"avx2", gemm, softmax_block, widen, score_tokens, accumulate_tokens,
                           exp_in_place, gradient_block};
  const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                         cpu_has_f16c();
  return supported ? &ops : nullptr;
}

}  // namespace alibi::cpu
