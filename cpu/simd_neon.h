// The vector layer of cpu/tile_ops_simd.h for aarch64 Advanced SIMD (NEON): 4 f32 lanes, masks as
// lanes of all ones. NEON and the f16 conversions are in aarch64's baseline: no target attribute.
// Each lane does what a lane of simd_avx2.h does, in the same order (fused where x86 fuses, x86's
// min and max), so the tables agree but for sums across lanes.
#pragma once

#include <arm_neon.h>

#include <cstdint>
#include <cstring>

#define ALIBI_NEON_INLINE __attribute__((always_inline)) static inline

namespace alibi::cpu {

struct Neon {
  using F = float32x4_t;
  using I = int32x4_t;
  using Mask = uint32x4_t;
  static constexpr int kLanes = 4;
  // The GEMM's register block: 5 rows x 4 vectors (16 columns) of accumulators, 4 vectors of B
  // and 5 of A take 29 of the 32 registers (gcc loads every row's A before the FMAs; 6 x 4
  // spilled two accumulators). Not measured: no ARM machine yet.
  static constexpr int kGemmRows = 5, kGemmVectors = 4;

  ALIBI_NEON_INLINE F zero() { return vdupq_n_f32(0.0f); }
  ALIBI_NEON_INLINE F set(float x) { return vdupq_n_f32(x); }
  ALIBI_NEON_INLINE I set(int32_t x) { return vdupq_n_s32(x); }
  ALIBI_NEON_INLINE F broadcast(const float* p) { return vld1q_dup_f32(p); }
  ALIBI_NEON_INLINE F load(const float* p) { return vld1q_f32(p); }
  ALIBI_NEON_INLINE I load(const int32_t* p) { return vld1q_s32(p); }
  ALIBI_NEON_INLINE void store(float* p, F x) { vst1q_f32(p, x); }
  // Lane i is set when i < count (count in 0..4).
  ALIBI_NEON_INLINE Mask first(int64_t count) {
    const int32_t lanes[kLanes] = {0, 1, 2, 3};
    return vcltq_s32(vld1q_s32(lanes), vdupq_n_s32(int32_t(count)));
  }
  // Lanes outside m read as 0 and are not written (nor touched): NEON has no masked loads and
  // stores, so lane by lane through a copy.
  ALIBI_NEON_INLINE F load(const float* p, Mask m) {
    float lanes[kLanes] = {};
    for (int i = 0; i < kLanes; ++i)
      if (m[i]) lanes[i] = p[i];
    return vld1q_f32(lanes);
  }
  ALIBI_NEON_INLINE void store(float* p, Mask m, F x) {
    for (int i = 0; i < kLanes; ++i)
      if (m[i]) p[i] = x[i];
  }

  ALIBI_NEON_INLINE F add(F a, F b) { return vaddq_f32(a, b); }
  ALIBI_NEON_INLINE F sub(F a, F b) { return vsubq_f32(a, b); }
  ALIBI_NEON_INLINE F mul(F a, F b) { return vmulq_f32(a, b); }
  ALIBI_NEON_INLINE F div(F a, F b) { return vdivq_f32(a, b); }
  // x86's minps and maxps, not fmin and fmax: b when either is NaN (or both are zeros).
  ALIBI_NEON_INLINE F min(F a, F b) { return vbslq_f32(vcltq_f32(a, b), a, b); }
  ALIBI_NEON_INLINE F max(F a, F b) { return vbslq_f32(vcgtq_f32(a, b), a, b); }
  ALIBI_NEON_INLINE F fmadd(F a, F b, F c) { return vfmaq_f32(c, a, b); }   // a b + c
  ALIBI_NEON_INLINE F fnmadd(F a, F b, F c) { return vfmsq_f32(c, a, b); }  // c - a b
  ALIBI_NEON_INLINE F round(F x) { return vrndnq_f32(x); }  // to nearest, ties to even
  ALIBI_NEON_INLINE F negate(F x) { return vnegq_f32(x); }
  ALIBI_NEON_INLINE F abs(F x) { return vabsq_f32(x); }
  // |magnitude| with the sign of x (magnitude's sign bit clear).
  ALIBI_NEON_INLINE F with_sign_of(F magnitude, F x) {
    const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
    return vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(magnitude), sign));
  }
  // y 2^n for integral n in [-126, 127], n held as a float.
  ALIBI_NEON_INLINE F times_pow2(F y, F n) {
    return mul(y, vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtnq_s32_f32(n), vdupq_n_s32(127)), 23)));
  }

  ALIBI_NEON_INLINE I sub(I a, I b) { return vsubq_s32(a, b); }
  ALIBI_NEON_INLINE I abs(I x) { return vabsq_s32(x); }
  ALIBI_NEON_INLINE F to_float(I x) { return vcvtq_f32_s32(x); }

  ALIBI_NEON_INLINE Mask less(F a, F b) { return vcltq_f32(a, b); }
  ALIBI_NEON_INLINE Mask equal(F a, F b) { return vceqq_f32(a, b); }
  ALIBI_NEON_INLINE Mask not_equal(F a, F b) { return vmvnq_u32(vceqq_f32(a, b)); }  // true on NaN
  ALIBI_NEON_INLINE Mask greater(I a, I b) { return vcgtq_s32(a, b); }
  ALIBI_NEON_INLINE Mask both(Mask a, Mask b) { return vandq_u32(a, b); }
  ALIBI_NEON_INLINE Mask but_not(Mask a, Mask b) { return vbicq_u32(a, b); }  // a and not b
  ALIBI_NEON_INLINE F keep(Mask m, F x) { return vreinterpretq_f32_u32(vandq_u32(m, vreinterpretq_u32_f32(x))); }  // 0 outside m
  ALIBI_NEON_INLINE F drop(Mask m, F x) { return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(x), m)); }  // 0 inside m
  ALIBI_NEON_INLINE F select(Mask m, F if_set, F if_clear) { return vbslq_f32(m, if_set, if_clear); }

  // 4 f16 or bf16 values widened to f32.
  ALIBI_NEON_INLINE F widen_f16(const uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  ALIBI_NEON_INLINE F widen_bf16(const uint16_t* p) { return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16)); }
  // The first count (0..3) values at p, zeros after them.
  ALIBI_NEON_INLINE F widen_f16(const uint16_t* p, int64_t count) {
    uint16_t halves[kLanes] = {};
    std::memcpy(halves, p, size_t(count) * sizeof(uint16_t));
    return widen_f16(halves);
  }
  ALIBI_NEON_INLINE F widen_bf16(const uint16_t* p, int64_t count) {
    uint16_t halves[kLanes] = {};
    std::memcpy(halves, p, size_t(count) * sizeof(uint16_t));
    return widen_bf16(halves);
  }

  // 4 values rounded to f16 or bf16, bitwise float_to_f16 and float_to_bf16 (a NaN becomes the
  // quiet NaN those give).
  ALIBI_NEON_INLINE void store_f16(uint16_t* p, F x) {
    const uint32x4_t u = vreinterpretq_u32_f32(x);
    const uint32x4_t quiet_nan = vorrq_u32(vandq_u32(u, vdupq_n_u32(0x80000000u)), vdupq_n_u32(0x7fc00000u));
    x = vbslq_f32(vceqq_f32(x, x), x, vreinterpretq_f32_u32(quiet_nan));
    vst1_u16(p, vreinterpret_u16_f16(vcvt_f16_f32(x)));
  }
  ALIBI_NEON_INLINE void store_bf16(uint16_t* p, F x) {
    const uint32x4_t u = vreinterpretq_u32_f32(x), high = vshrq_n_u32(u, 16);
    const uint32x4_t bias = vaddq_u32(vdupq_n_u32(0x7fffu), vandq_u32(high, vdupq_n_u32(1u)));
    const uint32x4_t rounded = vshrq_n_u32(vaddq_u32(u, bias), 16);
    const uint32x4_t quiet_nan = vorrq_u32(high, vdupq_n_u32(0x40u));
    vst1_u16(p, vmovn_u32(vbslq_u32(vceqq_f32(x, x), rounded, quiet_nan)));
  }

  // Lane j = the sum of v[j]'s lanes, j < 4: pairwise adds.
  ALIBI_NEON_INLINE F sum_each_of_lanes(const F* v) {
    return vpaddq_f32(vpaddq_f32(v[0], v[1]), vpaddq_f32(v[2], v[3]));
  }
  // sums[j] = the sum of v[j]'s lanes, j < 8, 4 vectors at a time.
  ALIBI_NEON_INLINE void sum_each_of_8(const F* v, float* sums) {
    vst1q_f32(sums, sum_each_of_lanes(v));
    vst1q_f32(sums + 4, sum_each_of_lanes(v + 4));
  }
};

}  // namespace alibi::cpu

#undef ALIBI_NEON_INLINE
