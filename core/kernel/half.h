// IEEE binary16 and bfloat16 <-> float32, round-to-nearest-even, and elements of f32, f16 or
// bf16 arrays read and written as f32; host and device.
#pragma once

#include <cstdint>
#include <cstring>

#include "alibi/alibi.h"
#include "core/kernel/host_device.h"

namespace alibi {

ALIBI_HD uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

ALIBI_HD float bits_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

ALIBI_HD float bf16_to_float(uint16_t h) { return bits_float(uint32_t(h) << 16); }

ALIBI_HD uint16_t float_to_bf16(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

ALIBI_HD float f16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1fu;
  uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bits_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  // Subnormal: mantissa * 2^-24, exact in float.
  float magnitude = float(mantissa) * 5.9604644775390625e-8f;
  return sign ? -magnitude : magnitude;
}

ALIBI_HD uint16_t float_to_f16(float f) {
  uint32_t u = float_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u);   // NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to infinity
  if (abs < 0x38800000u) {
    // Result is subnormal (or zero): round abs / 2^-24 to an integer, ties to even.
    float scaled = bits_float(abs) * 16777216.0f;  // exact: a power-of-two scale
    uint32_t whole = uint32_t(scaled);
    float rest = scaled - float(whole);
    if (rest > 0.5f || (rest == 0.5f && (whole & 1u))) ++whole;
    return uint16_t(sign | whole);
  }
  uint32_t rounded = abs + 0xfffu + ((abs >> 13) & 1u);
  return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

// Element `offset` of an array of f32, f16 or bf16, as f32.
ALIBI_HD float load_element(alibi_dtype dtype, const void* data, int64_t offset) {
  switch (dtype) {
    case ALIBI_DTYPE_F16: return f16_to_float(static_cast<const uint16_t*>(data)[offset]);
    case ALIBI_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(data)[offset]);
    default: return static_cast<const float*>(data)[offset];
  }
}

// Stores value, rounded to the array's dtype (f32, f16 or bf16), at element `offset`.
ALIBI_HD void store_element(alibi_dtype dtype, void* data, int64_t offset, float value) {
  switch (dtype) {
    case ALIBI_DTYPE_F16: static_cast<uint16_t*>(data)[offset] = float_to_f16(value); break;
    case ALIBI_DTYPE_BF16: static_cast<uint16_t*>(data)[offset] = float_to_bf16(value); break;
    default: static_cast<float*>(data)[offset] = value; break;
  }
}

}  // namespace alibi
