// The benchmarks' random inputs: uniform in [-1, 1), stored as f32, bf16 or f16.
#pragma once

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "alibi/alibi.h"
#include "bf16.h"

namespace bench_common {

inline size_t element_bytes(alibi_dtype dtype) { return dtype == ALIBI_DTYPE_F32 ? 4 : 2; }

inline std::vector<unsigned char> random_values(int64_t count, alibi_dtype dtype, uint32_t seed) {
  std::mt19937 engine(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  const size_t width = element_bytes(dtype);
  std::vector<unsigned char> bytes(size_t(count) * width);
  for (int64_t i = 0; i < count; ++i) {
    const float value = uniform(engine);
    const uint16_t half = dtype == ALIBI_DTYPE_F16 ? to_f16(value) : to_bf16(value);
    std::memcpy(&bytes[size_t(i) * width], width == 4 ? static_cast<const void*>(&value) : &half, width);
  }
  return bytes;
}

}  // namespace bench_common
