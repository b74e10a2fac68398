// Shared by the libFuzzer targets of fuzz/: a reader of the fuzzer's bytes, the contract checks
// every target applies to a call's answer, exact f16/bf16 encodings and the tolerances of
// comparisons with the float64 reference (tests/reference.h).
//
// The contract (include/alibi/alibi.h): a call either succeeds, with alibi_last_error_message()
// == "", or returns one of the statuses its arguments call for, with a message that starts with
// the function's name. Every target predicts which: a prediction that disagrees with the library,
// a result that disagrees with the reference, or a sanitizer report is a crash.
#pragma once

#include <cmath>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <vector>

#include "alibi/alibi.h"

namespace fuzz {

[[noreturn]] inline void die(const char* format, ...) __attribute__((format(printf, 1, 2)));
inline void die(const char* format, ...) {
  va_list args;
  va_start(args, format);
  std::fprintf(stderr, "\n*** contract violation: ");
  std::vfprintf(stderr, format, args);
  std::fprintf(stderr, "\n    last error message: \"%s\"\n", alibi_last_error_message());
  va_end(args);
  std::abort();
}

// die() with the message unless cond holds.
#define FUZZ_REQUIRE(cond, ...)              \
  do {                                       \
    if (!(cond)) ::fuzz::die(__VA_ARGS__);   \
  } while (0)

// The fuzzer's bytes, consumed front to back; zeros once they run out.
class Bytes {
 public:
  Bytes(const uint8_t* data, size_t size) : p_(data), n_(size) {}
  uint8_t u8() {
    if (n_ == 0) return 0;
    --n_;
    return *p_++;
  }
  uint16_t u16() { return uint16_t(u8() | (u8() << 8)); }
  uint32_t u32() { return uint32_t(u16()) | (uint32_t(u16()) << 16); }
  uint64_t u64() { return uint64_t(u32()) | (uint64_t(u32()) << 32); }
  bool flag() { return u8() & 1; }
  // An integer in [lo, hi].
  int64_t in(int64_t lo, int64_t hi) {
    const uint64_t span = uint64_t(hi - lo) + 1;
    const uint64_t raw = span <= 256 ? u8() : span <= 65536 ? u16() : u32();
    return lo + int64_t(raw % span);
  }
  // Mostly small values in [lo, hi]; now and then one of the edges of int32.
  int32_t i32_small_or_wild(int32_t lo, int32_t hi) {
    const uint8_t pick = u8();
    if (pick < 232) return int32_t(in(lo, hi));
    static const int32_t wild[] = {-1, std::numeric_limits<int32_t>::min(),
                                   std::numeric_limits<int32_t>::max(), 1 << 30, -(1 << 30),
                                   65536, -65536, std::numeric_limits<int32_t>::max() - 1};
    if (pick < 248) return wild[pick % (sizeof wild / sizeof wild[0])];
    return int32_t(u32());
  }
  int64_t i64_small_or_wild(int64_t lo, int64_t hi) {
    const uint8_t pick = u8();
    if (pick < 224) return in(lo, hi);
    static const int64_t wild[] = {-1,
                                   std::numeric_limits<int64_t>::min(),
                                   std::numeric_limits<int64_t>::max(),
                                   int64_t(1) << 31,
                                   int64_t(1) << 32,
                                   int64_t(1) << 40,
                                   int64_t(1) << 62,
                                   (int64_t(1) << 62) + 1,
                                   std::numeric_limits<int32_t>::max(),
                                   int64_t(3037000500),  // ~sqrt(2^63)
                                   -(int64_t(1) << 40)};
    if (pick < 248) return wild[pick % (sizeof wild / sizeof wild[0])];
    return int64_t(u64());
  }
  size_t left() const { return n_; }

 private:
  const uint8_t* p_;
  size_t n_;
};

// What a call must answer: success when no status was added, else one of those added (the
// library reports the first problem it finds; a target may list every problem its input has).
struct Expect {
  std::vector<alibi_status> statuses;
  std::string why;  // the problems, for the report
  void add(alibi_status s, const char* problem = "") {
    statuses.push_back(s);
    why += std::string(why.empty() ? "" : "; ") + alibi_status_string(s) + (*problem ? ": " : "") + problem;
  }
  bool ok() const { return statuses.empty(); }
  void check(alibi_status got, const char* function) const {
    const char* message = alibi_last_error_message();
    if (ok()) {
      FUZZ_REQUIRE(got == ALIBI_STATUS_SUCCESS, "%s failed (%s) but its inputs are valid",
                   function, alibi_status_string(got));
      FUZZ_REQUIRE(message[0] == '\0', "%s succeeded but left the message \"%s\"", function,
                   message);
      return;
    }
    FUZZ_REQUIRE(got != ALIBI_STATUS_SUCCESS, "%s succeeded but the inputs are invalid (%s)", function,
                 why.c_str());
    bool listed = false;
    for (alibi_status s : statuses) listed |= s == got;
    FUZZ_REQUIRE(listed, "%s returned %s (%d), not one of the statuses its inputs call for (%s)",
                 function, alibi_status_string(got), int(got), why.c_str());
    const std::string prefix = std::string(function) + ": ";
    FUZZ_REQUIRE(std::strncmp(message, prefix.c_str(), prefix.size()) == 0 &&
                     std::strlen(message) > prefix.size(),
                 "%s failed with the message \"%s\", which does not start with \"%s\"", function,
                 message, prefix.c_str());
  }
};

// A call that must succeed.
inline void check_status_ok(alibi_status got, const char* function) { Expect{}.check(got, function); }

// ------------------------------------------------------------------------------ f16 / bf16

inline uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline float bf16_to_float(uint16_t h) { return from_bits(uint32_t(h) << 16); }
inline float f16_to_float(uint16_t h) {
  const int exponent = (h >> 10) & 0x1f, mantissa = h & 0x3ff;
  const double magnitude = exponent == 0    ? std::ldexp(double(mantissa), -24)
                           : exponent == 31 ? (mantissa ? NAN : INFINITY)
                                            : std::ldexp(double(mantissa + 1024), exponent - 25);
  return float((h & 0x8000) ? -magnitude : magnitude);
}
// Encodings of values the targets make exactly representable (k / 64 * 2^e, |k| <= 128).
inline uint16_t exact_bf16(float f) { return uint16_t(bits(f) >> 16); }
inline uint16_t exact_f16(float f) {
  const uint32_t u = bits(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  if ((u & 0x7fffffffu) == 0) return sign;
  if ((u & 0x7f800000u) == 0x7f800000u) return uint16_t(sign | 0x7c00u);  // inf
  const int exponent = int((u >> 23) & 0xff) - 127;
  return uint16_t(sign | uint16_t((exponent + 15) << 10) | uint16_t((u >> 13) & 0x3ffu));
}

// Values exactly representable in f16 and bf16: k / 64 * 2^shift, k in [-128, 127],
// shift in [-6, 8] (|value| <= 2^15 < f16's 65504).
inline float exact_value(Bytes& in, int shift) {
  return std::ldexp(float(int8_t(in.u8())) / 64.0f, shift);
}

inline size_t element_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 4;
  }
}

inline void store(void* data, int64_t index, alibi_dtype dtype, float value) {
  switch (dtype) {
    case ALIBI_DTYPE_F16: static_cast<uint16_t*>(data)[index] = exact_f16(value); break;
    case ALIBI_DTYPE_BF16: static_cast<uint16_t*>(data)[index] = exact_bf16(value); break;
    default: static_cast<float*>(data)[index] = value; break;
  }
}

inline float load(const void* data, int64_t index, alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16: return f16_to_float(static_cast<const uint16_t*>(data)[index]);
    case ALIBI_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(data)[index]);
    default: return static_cast<const float*>(data)[index];
  }
}

// Half of an ulp of the output dtype, relative: the rounding of a value stored as `dtype`.
inline double rounding(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -11)
         : dtype == ALIBI_DTYPE_BF16 ? std::ldexp(1.0, -8)
                                     : std::ldexp(1.0, -24);
}

// A value computed in f32 (want) and stored as `dtype` (got): equal up to that rounding;
// infinities and values past the dtype's range must agree in sign and be infinite.
inline bool stored_equal(float got, float want, alibi_dtype dtype) {
  if (std::isinf(want)) return got == want;
  const double limit = dtype == ALIBI_DTYPE_F16 ? 65520.0 : 3.4e38;
  if (std::fabs(double(want)) >= limit) return std::isinf(got) && std::signbit(got) == std::signbit(want);
  const double tiny = dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -25) : 1e-38;
  return std::fabs(double(got) - double(want)) <= rounding(dtype) * std::fabs(double(want)) + tiny;
}

// A static context per thread count: creating one (and its thread pool) per input would
// dominate the run time.
inline alibi_context_t cpu_context(int threads) {
  static alibi_context_t contexts[3] = {};
  alibi_context_t& ctx = contexts[threads];
  if (!ctx) {
    if (alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx) != ALIBI_STATUS_SUCCESS ||
        alibi_context_set_num_threads(ctx, threads) != ALIBI_STATUS_SUCCESS)
      die("cannot create a CPU context: %s", alibi_last_error_message());
  }
  return ctx;
}

// RAII for handles.
struct TensorHandle {
  alibi_tensor_t t = nullptr;
  ~TensorHandle() { alibi_tensor_destroy(t); }
};
struct MaskHandle {
  alibi_mask_t m = nullptr;
  ~MaskHandle() { alibi_mask_destroy(m); }
};

}  // namespace fuzz
