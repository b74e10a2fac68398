// f32 <-> bf16 and f32 <-> f16 for the benchmarks' inputs and outputs (round to nearest even;
// inputs are finite).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace bench_common {

inline uint16_t to_bf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  bits += 0x7fffu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

inline float from_bf16(uint16_t value) {
  const uint32_t bits = uint32_t(value) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof result);
  return result;
}

// IEEE binary16; magnitudes from 65520 on become infinity.
inline uint16_t to_f16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  const uint16_t sign = uint16_t((bits >> 16) & 0x8000u);
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x477ff000u) return uint16_t(sign | 0x7c00u);
  // Below 2^-14: a multiple of 2^-24 (rounding up to 2^-14 gives its encoding, 0x400).
  if (magnitude < 0x38800000u)
    return uint16_t(sign | uint16_t(std::nearbyint(std::fabs(value) * 0x1p24f)));
  const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
  return uint16_t(sign | ((rounded - (112u << 23)) >> 13));
}

// Exact: every binary16 value is an f32 value.
inline float from_f16(uint16_t value) {
  const float sign = (value & 0x8000u) ? -1.0f : 1.0f;
  const uint32_t exponent = (value >> 10) & 0x1fu, mantissa = value & 0x3ffu;
  if (exponent == 0) return sign * std::ldexp(float(mantissa), -24);
  if (exponent == 31) return sign * (mantissa ? NAN : INFINITY);
  const uint32_t bits = ((exponent + 112u) << 23) | (mantissa << 13);
  float magnitude;
  std::memcpy(&magnitude, &bits, sizeof magnitude);
  return sign * magnitude;
}

}  // namespace bench_common
