// Helpers shared by the GoogleTest files: RAII handles, random data, f16/bf16 bits.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "alibi/alibi.h"

namespace test {

#define ASSERT_OK(call)                                                              \
  do {                                                                               \
    alibi_status status_ = (call);                                                   \
    ASSERT_EQ(status_, ALIBI_STATUS_SUCCESS) << #call << ": " << alibi_last_error_message(); \
  } while (0)

struct ContextDeleter {
  void operator()(alibi_context_s* c) const { alibi_context_destroy(c); }
};
struct TensorDeleter {
  void operator()(alibi_tensor_s* t) const { alibi_tensor_destroy(t); }
};
struct MaskDeleter {
  void operator()(alibi_mask_s* m) const { alibi_mask_destroy(m); }
};
using Context = std::unique_ptr<alibi_context_s, ContextDeleter>;
using Tensor = std::unique_ptr<alibi_tensor_s, TensorDeleter>;
using Mask = std::unique_ptr<alibi_mask_s, MaskDeleter>;

inline Context make_cpu_context() {
  alibi_context_t ctx = nullptr;
  EXPECT_EQ(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), ALIBI_STATUS_SUCCESS);
  return Context(ctx);
}

// Bit-exact reference conversions (round to nearest even), independent of the library's.
inline float bits_to_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bf16_bits_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u = float_to_bits(f);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float f16_bits_to_float(uint16_t h) {
  int exponent = (h >> 10) & 0x1f;
  int mantissa = h & 0x3ff;
  double magnitude = exponent == 0    ? std::ldexp(double(mantissa), -24)
                     : exponent == 31 ? (mantissa ? NAN : INFINITY)
                                      : std::ldexp(double(mantissa + 1024), exponent - 25);
  return float((h & 0x8000) ? -magnitude : magnitude);
}
// Nearest f16 to a finite float by search over the monotone encoding (slow, test-only, exact).
inline uint16_t float_to_f16_bits(float f) {
  uint16_t sign = std::signbit(f) ? 0x8000 : 0;
  double a = std::fabs(double(f));
  if (a >= 65520.0) return sign | 0x7c00;
  uint16_t lo = 0, hi = 0x7bff;
  while (lo < hi) {  // smallest code whose value >= a
    uint16_t mid = uint16_t((lo + hi) / 2);
    if (f16_bits_to_float(mid) < a) lo = uint16_t(mid + 1); else hi = mid;
  }
  if (lo > 0) {
    double above = f16_bits_to_float(lo), below = f16_bits_to_float(uint16_t(lo - 1));
    if (a - below < above - a || (a - below == above - a && ((lo - 1) & 1) == 0)) --lo;
  }
  return sign | lo;
}

// Values a test writes into outputs before a call, to prove every element was written.
constexpr float kPoison = 1234567.0f;

inline std::vector<float> random_floats(size_t n, uint32_t seed, float lo = -1.f, float hi = 1.f) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

}  // namespace test
