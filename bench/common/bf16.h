// f32 <-> bf16 for the benchmarks' inputs and outputs (round to nearest even; inputs are finite).
#pragma once

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

}  // namespace bench_common
