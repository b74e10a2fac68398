// The vector layer of cpu/tile_ops_simd.h for AVX-512 (F, BW, DQ, VL): 16 f32 lanes, masks in
// mask registers. Every function carries its own target, so this header may be included anywhere.
#pragma once

#include <immintrin.h>

#include <cstdint>

#define ALIBI_AVX512_INLINE \
  __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c"), always_inline)) static inline

namespace alibi::cpu {

struct Avx512 {
  using F = __m512;
  using I = __m512i;
  using Mask = __mmask16;
  static constexpr int kLanes = 16;
  // The GEMM's register block: 6 rows x 4 vectors (64 columns) of accumulators and 4 vectors of
  // B take 28 of the 32 registers; chosen over 4, 5, 7 x 4 and 8, 10, 12, 14 x 2 by measuring
  // (cpu/README.md).
  static constexpr int kGemmRows = 6, kGemmVectors = 4;

  ALIBI_AVX512_INLINE F zero() { return _mm512_setzero_ps(); }
  ALIBI_AVX512_INLINE F set(float x) { return _mm512_set1_ps(x); }
  ALIBI_AVX512_INLINE I set(int32_t x) { return _mm512_set1_epi32(x); }
  ALIBI_AVX512_INLINE F broadcast(const float* p) { return _mm512_set1_ps(*p); }
  ALIBI_AVX512_INLINE F load(const float* p) { return _mm512_loadu_ps(p); }
  ALIBI_AVX512_INLINE I load(const int32_t* p) { return _mm512_loadu_si512(p); }
  ALIBI_AVX512_INLINE void store(float* p, F x) { _mm512_storeu_ps(p, x); }
  // Lane i is set when i < count (count in 0..16).
  ALIBI_AVX512_INLINE Mask first(int64_t count) { return Mask((1u << count) - 1u); }
  // Lanes outside m read as 0 and are not written (nor touched: no fault beyond them).
  ALIBI_AVX512_INLINE F load(const float* p, Mask m) { return _mm512_maskz_loadu_ps(m, p); }
  ALIBI_AVX512_INLINE void store(float* p, Mask m, F x) { _mm512_mask_storeu_ps(p, m, x); }
  ALIBI_AVX512_INLINE I load(const int32_t* p, Mask m) { return _mm512_maskz_loadu_epi32(m, p); }

  ALIBI_AVX512_INLINE F add(F a, F b) { return _mm512_add_ps(a, b); }
  ALIBI_AVX512_INLINE F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  ALIBI_AVX512_INLINE F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  ALIBI_AVX512_INLINE F div(F a, F b) { return _mm512_div_ps(a, b); }
  ALIBI_AVX512_INLINE F min(F a, F b) { return _mm512_min_ps(a, b); }
  ALIBI_AVX512_INLINE F max(F a, F b) { return _mm512_max_ps(a, b); }
  ALIBI_AVX512_INLINE F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }    // a b + c
  ALIBI_AVX512_INLINE F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a b
  ALIBI_AVX512_INLINE F round(F x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  ALIBI_AVX512_INLINE F negate(F x) { return _mm512_xor_ps(_mm512_set1_ps(-0.0f), x); }
  ALIBI_AVX512_INLINE F abs(F x) { return _mm512_andnot_ps(_mm512_set1_ps(-0.0f), x); }
  // |magnitude| with the sign of x (magnitude's sign bit clear).
  ALIBI_AVX512_INLINE F with_sign_of(F magnitude, F x) {
    return _mm512_or_ps(magnitude, _mm512_and_ps(_mm512_set1_ps(-0.0f), x));
  }
  // y 2^n for integral n in [-126, 127], n held as a float (one vscalefps).
  ALIBI_AVX512_INLINE F times_pow2(F y, F n) { return _mm512_scalef_ps(y, n); }

  ALIBI_AVX512_INLINE I sub(I a, I b) { return _mm512_sub_epi32(a, b); }
  ALIBI_AVX512_INLINE I abs(I x) { return _mm512_abs_epi32(x); }
  ALIBI_AVX512_INLINE F to_float(I x) { return _mm512_cvtepi32_ps(x); }

  ALIBI_AVX512_INLINE Mask less(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
  ALIBI_AVX512_INLINE Mask equal(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ); }
  ALIBI_AVX512_INLINE Mask not_equal(F a, F b) { return _mm512_cmp_ps_mask(a, b, _CMP_NEQ_UQ); }
  ALIBI_AVX512_INLINE Mask greater(I a, I b) { return _mm512_cmpgt_epi32_mask(a, b); }
  ALIBI_AVX512_INLINE Mask both(Mask a, Mask b) { return _kand_mask16(a, b); }
  ALIBI_AVX512_INLINE Mask but_not(Mask a, Mask b) { return _kandn_mask16(b, a); }  // a and not b
  ALIBI_AVX512_INLINE F keep(Mask m, F x) { return _mm512_maskz_mov_ps(m, x); }     // 0 outside m
  ALIBI_AVX512_INLINE F drop(Mask m, F x) { return _mm512_maskz_mov_ps(_knot_mask16(m), x); }  // 0 inside m
  ALIBI_AVX512_INLINE F select(Mask m, F if_set, F if_clear) { return _mm512_mask_blend_ps(m, if_clear, if_set); }

  // 16 f16 or bf16 values widened to f32.
  ALIBI_AVX512_INLINE F widen_f16(__m256i halves) { return _mm512_cvtph_ps(halves); }
  ALIBI_AVX512_INLINE F widen_bf16(__m256i halves) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
  }
  ALIBI_AVX512_INLINE F widen_f16(const uint16_t* p) { return widen_f16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  ALIBI_AVX512_INLINE F widen_bf16(const uint16_t* p) { return widen_bf16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))); }
  // The first count (0..15) values at p, zeros after them.
  ALIBI_AVX512_INLINE F widen_f16(const uint16_t* p, int64_t count) { return widen_f16(_mm256_maskz_loadu_epi16(first(count), p)); }
  ALIBI_AVX512_INLINE F widen_bf16(const uint16_t* p, int64_t count) { return widen_bf16(_mm256_maskz_loadu_epi16(first(count), p)); }

  // 16 values rounded to f16 or bf16, bitwise float_to_f16 and float_to_bf16 (a NaN becomes the
  // quiet NaN those give: vcvtps2ph would keep part of its payload).
  ALIBI_AVX512_INLINE void store_f16(uint16_t* p, F x) {
    const __m512 quiet_nan = _mm512_or_ps(_mm512_and_ps(x, _mm512_set1_ps(-0.0f)),
                                          _mm512_castsi512_ps(_mm512_set1_epi32(0x7fc00000)));
    x = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), x, quiet_nan);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  ALIBI_AVX512_INLINE void store_bf16(uint16_t* p, F x) {
    const __m512i u = _mm512_castps_si512(x), high = _mm512_srli_epi32(u, 16);
    const __m512i bias = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(high, _mm512_set1_epi32(1)));
    const __m512i rounded = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
    const __m512i quiet_nan = _mm512_or_si512(high, _mm512_set1_epi32(0x40));
    const __m512i bits = _mm512_mask_blend_epi32(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), rounded, quiet_nan);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(bits));
  }

  // sums[j] = the sum of v[j]'s lanes, j < 8: each folded to 8 lanes, then added pairwise across.
  ALIBI_AVX512_INLINE void sum_each_of_8(const F* v, float* sums) {
    __m256 folded[8];
    for (int j = 0; j < 8; ++j) folded[j] = _mm256_add_ps(_mm512_castps512_ps256(v[j]), _mm512_extractf32x8_ps(v[j], 1));
    const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(folded[0], folded[1]), _mm256_hadd_ps(folded[2], folded[3]));
    const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(folded[4], folded[5]), _mm256_hadd_ps(folded[6], folded[7]));
    _mm256_storeu_ps(sums, _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20),
                                         _mm256_permute2f128_ps(low, high, 0x31)));
  }

  // Lane j = the sum of v[j]'s lanes, j < 16, added in sum_each_of_8's order (lane k + lane k + 8,
  // then adjacent pairs), all 16 in registers: each level adds the pairs of two vectors.
  ALIBI_AVX512_INLINE F sum_each_of_lanes(const F* v) {
    F folded[8], pairs[4], quads[2];
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j)
      folded[j] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0x44),
                                _mm512_shuffle_f32x4(v[2 * j], v[2 * j + 1], 0xee));
#pragma GCC unroll 4
    for (int j = 0; j < 4; ++j) pairs[j] = add_adjacent(folded[2 * j], folded[2 * j + 1]);
#pragma GCC unroll 2
    for (int j = 0; j < 2; ++j) quads[j] = add_adjacent(pairs[2 * j], pairs[2 * j + 1]);
    return add_adjacent(quads[0], quads[1]);
  }
  // Lane i = (a, b)[2i] + (a, b)[2i + 1] of the 32 lanes of a then b.
  ALIBI_AVX512_INLINE F add_adjacent(F a, F b) {
    const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    return _mm512_add_ps(_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odd, b));
  }
};

}  // namespace alibi::cpu

#undef ALIBI_AVX512_INLINE
