// The vector layer of cpu/tile_ops_simd.h for AVX2 + FMA + F16C: 8 f32 lanes, masks as lanes of
// all ones. Every function carries its own target, so this header may be included anywhere.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#define ALIBI_AVX2_INLINE __attribute__((target("avx2,fma,f16c"), always_inline)) static inline

namespace alibi::cpu {

struct Avx2 {
  using F = __m256;
  using I = __m256i;
  using Mask = __m256;
  static constexpr int kLanes = 8;
  // The GEMM's register block: 6 rows x 2 vectors of accumulators, 2 vectors of B and a
  // broadcast take 15 of the 16 registers.
  static constexpr int kGemmRows = 6, kGemmVectors = 2;

  ALIBI_AVX2_INLINE F zero() { return _mm256_setzero_ps(); }
  ALIBI_AVX2_INLINE F set(float x) { return _mm256_set1_ps(x); }
  ALIBI_AVX2_INLINE I set(int32_t x) { return _mm256_set1_epi32(x); }
  ALIBI_AVX2_INLINE F broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  ALIBI_AVX2_INLINE F load(const float* p) { return _mm256_loadu_ps(p); }
  ALIBI_AVX2_INLINE I load(const int32_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  ALIBI_AVX2_INLINE void store(float* p, F x) { _mm256_storeu_ps(p, x); }
  // Lane i is set when i < count (count in 0..8).
  ALIBI_AVX2_INLINE Mask first(int64_t count) {
    const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(int32_t(count)), lanes));
  }
  // Lanes outside m read as 0 and are not written.
  ALIBI_AVX2_INLINE F load(const float* p, Mask m) { return _mm256_maskload_ps(p, _mm256_castps_si256(m)); }
  ALIBI_AVX2_INLINE void store(float* p, Mask m, F x) { _mm256_maskstore_ps(p, _mm256_castps_si256(m), x); }

  ALIBI_AVX2_INLINE F add(F a, F b) { return _mm256_add_ps(a, b); }
  ALIBI_AVX2_INLINE F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  ALIBI_AVX2_INLINE F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  ALIBI_AVX2_INLINE F div(F a, F b) { return _mm256_div_ps(a, b); }
  ALIBI_AVX2_INLINE F min(F a, F b) { return _mm256_min_ps(a, b); }
  ALIBI_AVX2_INLINE F max(F a, F b) { return _mm256_max_ps(a, b); }
  ALIBI_AVX2_INLINE F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }    // a b + c
  ALIBI_AVX2_INLINE F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a b
  ALIBI_AVX2_INLINE F round(F x) { return _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
  ALIBI_AVX2_INLINE F negate(F x) { return _mm256_xor_ps(_mm256_set1_ps(-0.0f), x); }
  ALIBI_AVX2_INLINE F abs(F x) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x); }
  // |magnitude| with the sign of x (magnitude's sign bit clear).
  ALIBI_AVX2_INLINE F with_sign_of(F magnitude, F x) {
    return _mm256_or_ps(magnitude, _mm256_and_ps(_mm256_set1_ps(-0.0f), x));
  }
  // y 2^n for integral n in [-126, 127], n held as a float.
  ALIBI_AVX2_INLINE F times_pow2(F y, F n) {
    return mul(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)));
  }

  ALIBI_AVX2_INLINE I sub(I a, I b) { return _mm256_sub_epi32(a, b); }
  ALIBI_AVX2_INLINE I abs(I x) { return _mm256_abs_epi32(x); }
  ALIBI_AVX2_INLINE F to_float(I x) { return _mm256_cvtepi32_ps(x); }

  ALIBI_AVX2_INLINE Mask less(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  ALIBI_AVX2_INLINE Mask equal(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  ALIBI_AVX2_INLINE Mask not_equal(F a, F b) { return _mm256_cmp_ps(a, b, _CMP_NEQ_UQ); }
  ALIBI_AVX2_INLINE Mask greater(I a, I b) { return _mm256_castsi256_ps(_mm256_cmpgt_epi32(a, b)); }
  ALIBI_AVX2_INLINE Mask both(Mask a, Mask b) { return _mm256_and_ps(a, b); }
  ALIBI_AVX2_INLINE Mask but_not(Mask a, Mask b) { return _mm256_andnot_ps(b, a); }  // a and not b
  ALIBI_AVX2_INLINE F keep(Mask m, F x) { return _mm256_and_ps(m, x); }            // 0 outside m
  ALIBI_AVX2_INLINE F drop(Mask m, F x) { return _mm256_andnot_ps(m, x); }         // 0 inside m
  ALIBI_AVX2_INLINE F select(Mask m, F if_set, F if_clear) { return _mm256_blendv_ps(if_clear, if_set, m); }

  // 8 f16 or bf16 values widened to f32.
  ALIBI_AVX2_INLINE F widen_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  ALIBI_AVX2_INLINE F widen_bf16(const uint16_t* p) {
    const __m128i halves = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
  }
  // The first count (0..7) values at p, zeros after them.
  ALIBI_AVX2_INLINE F widen_f16(const uint16_t* p, int64_t count) {
    uint16_t halves[kLanes] = {};
    std::memcpy(halves, p, size_t(count) * sizeof(uint16_t));
    return widen_f16(halves);
  }
  ALIBI_AVX2_INLINE F widen_bf16(const uint16_t* p, int64_t count) {
    uint16_t halves[kLanes] = {};
    std::memcpy(halves, p, size_t(count) * sizeof(uint16_t));
    return widen_bf16(halves);
  }

  // 8 values rounded to f16 or bf16, bitwise float_to_f16 and float_to_bf16 (a NaN becomes the
  // quiet NaN those give: vcvtps2ph would keep part of its payload).
  ALIBI_AVX2_INLINE void store_f16(uint16_t* p, F x) {
    const __m256 quiet_nan = _mm256_or_ps(_mm256_and_ps(x, _mm256_set1_ps(-0.0f)),
                                          _mm256_castsi256_ps(_mm256_set1_epi32(0x7fc00000)));
    x = _mm256_blendv_ps(x, quiet_nan, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  }
  ALIBI_AVX2_INLINE void store_bf16(uint16_t* p, F x) {
    const __m256i u = _mm256_castps_si256(x), high = _mm256_srli_epi32(u, 16);
    const __m256i bias = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(high, _mm256_set1_epi32(1)));
    const __m256i rounded = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
    const __m256i quiet_nan = _mm256_or_si256(high, _mm256_set1_epi32(0x40));
    const __m256i bits = _mm256_blendv_epi8(rounded, quiet_nan, _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q)));
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);  // both halves' 4
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
  }

  // Lane j = the sum of v[j]'s lanes, j < 8.
  ALIBI_AVX2_INLINE F sum_each_of_lanes(const F* v) {
    const __m256 low = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 high = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(low, high, 0x20), _mm256_permute2f128_ps(low, high, 0x31));
  }
  // sums[j] = the sum of v[j]'s lanes, j < 8.
  ALIBI_AVX2_INLINE void sum_each_of_8(const F* v, float* sums) { _mm256_storeu_ps(sums, sum_each_of_lanes(v)); }
};

}  // namespace alibi::cpu

#undef ALIBI_AVX2_INLINE
