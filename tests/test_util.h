// Helpers shared by the GoogleTest files: RAII handles, random data, f16/bf16 bits.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "alibi/alibi.h"

namespace test {

#define ASSERT_OK(call)                                                                      \
  do {                                                                                       \
    alibi_status status_ = (call);                                                           \
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

// ------------------------------------------------------------------------------------ devices

inline const char* device_name(alibi_device device) {
  return device == ALIBI_DEVICE_CUDA ? "CUDA" : device == ALIBI_DEVICE_CPU ? "CPU" : "AUTO";
}

// Why no context can be made on the device here ("" when one can); asked once per device.
inline std::string unavailable_reason(alibi_device device) {
  static std::mutex mutex;
  static std::map<alibi_device, std::string> reasons;
  std::lock_guard<std::mutex> lock(mutex);
  auto known = reasons.find(device);
  if (known != reasons.end()) return known->second;
  alibi_context_t ctx = nullptr;
  std::string why;
  if (alibi_context_create(device, 0, &ctx) == ALIBI_STATUS_SUCCESS)
    alibi_context_destroy(ctx);
  else
    why = alibi_last_error_message();
  return reasons[device] = why;
}

inline Context make_context(alibi_device device) {
  alibi_context_t ctx = nullptr;
  EXPECT_EQ(alibi_context_create(device, 0, &ctx), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Context(ctx);
}

// Sets ALIBI_CUDA_PATH (which the CUDA backend reads on every call) for a scope.
class ForcedPath {
 public:
  explicit ForcedPath(const char* path) { setenv("ALIBI_CUDA_PATH", path, 1); }
  ~ForcedPath() { unsetenv("ALIBI_CUDA_PATH"); }
  ForcedPath(const ForcedPath&) = delete;
  ForcedPath& operator=(const ForcedPath&) = delete;
};

// The devices of device-parameterized suites: CUDA cases are skipped, by name and with the
// reason, where there is no GPU (or no CUDA backend).
inline const auto kDevices = ::testing::Values(ALIBI_DEVICE_CPU, ALIBI_DEVICE_CUDA);

// A fixture with a context ctx_ on its device: the parameter itself, or the first element of a
// tuple parameter.
template <class Param = alibi_device>
class DeviceTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    const std::string why = unavailable_reason(device());
    if (!why.empty()) GTEST_SKIP() << "no " << device_name(device()) << " device: " << why;
    ctx_ = make_context(device());
  }

  alibi_device device() const {
    if constexpr (std::is_same_v<Param, alibi_device>)
      return this->GetParam();
    else
      return std::get<0>(this->GetParam());
  }

  Context ctx_;
};

// Names of DeviceTest<alibi_device> cases.
inline std::string name_by_device(const ::testing::TestParamInfo<alibi_device>& info) {
  return device_name(info.param);
}

// Names of DeviceTest<std::tuple<alibi_device, Param>> cases: the device, then name(param).
template <class Param, class Name>
auto device_case_name(Name name) {
  return [name](const ::testing::TestParamInfo<std::tuple<alibi_device, Param>>& info) {
    return std::string(device_name(std::get<0>(info.param))) + "_" + name(std::get<1>(info.param));
  };
}

// Host bytes copied into a flat tensor on the context's device, so that tests can wrap strided
// views into it (at element offsets from data) whatever the device, and read it all back.
class DeviceBuffer {
 public:
  DeviceBuffer(alibi_context_t ctx, alibi_dtype dtype, size_t element_bytes,
               const std::vector<uint8_t>& bytes)
      : bytes_(bytes.size()) {
    const int64_t elements = int64_t(bytes.size() / element_bytes);
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(alibi_tensor_create(ctx, dtype, 1, &elements, &t), ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    storage_.reset(t);
    if (!t || bytes.empty()) return;
    write(bytes);
    void* data = nullptr;
    EXPECT_EQ(alibi_tensor_get_data(t, &data), ALIBI_STATUS_SUCCESS);
    data_ = static_cast<uint8_t*>(data);
  }

  uint8_t* data() const { return data_; }

  void write(const std::vector<uint8_t>& bytes) const {
    if (storage_ && !bytes.empty())
      EXPECT_EQ(alibi_tensor_copy_from_host(storage_.get(), bytes.data(), bytes.size()),
                ALIBI_STATUS_SUCCESS)
          << alibi_last_error_message();
  }

  std::vector<uint8_t> read() const {
    std::vector<uint8_t> bytes(bytes_);
    if (storage_ && !bytes.empty())
      EXPECT_EQ(alibi_tensor_copy_to_host(storage_.get(), bytes.data(), bytes.size()),
                ALIBI_STATUS_SUCCESS)
          << alibi_last_error_message();
    return bytes;
  }

 private:
  size_t bytes_;
  Tensor storage_;
  uint8_t* data_ = nullptr;
};

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
    if (f16_bits_to_float(mid) < a)
      lo = uint16_t(mid + 1);
    else
      hi = mid;
  }
  if (lo > 0) {
    double above = f16_bits_to_float(lo), below = f16_bits_to_float(uint16_t(lo - 1));
    if (a - below < above - a || (a - below == above - a && ((lo - 1) & 1) == 0)) --lo;
  }
  return sign | lo;
}

// Host values as a tensor of dtype stores them and back (f16/bf16: round to nearest even).
inline size_t element_bytes(alibi_dtype dtype) { return dtype == ALIBI_DTYPE_F32 ? 4 : 2; }

inline uint16_t to_half_bits(float x, alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F16 ? float_to_f16_bits(x) : float_to_bf16_bits(x);
}
inline float from_half_bits(uint16_t bits, alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F16 ? f16_bits_to_float(bits) : bf16_bits_to_float(bits);
}

// The value x has after a round trip through dtype.
inline float round_to(float x, alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? x : from_half_bits(to_half_bits(x, dtype), dtype);
}

inline std::vector<uint8_t> encode(const std::vector<float>& values, alibi_dtype dtype) {
  std::vector<uint8_t> bytes(values.size() * element_bytes(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == ALIBI_DTYPE_F32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t bits = to_half_bits(values[i], dtype);
      std::memcpy(&bytes[2 * i], &bits, 2);
    }
  }
  return bytes;
}

inline std::vector<float> decode(const std::vector<uint8_t>& bytes, alibi_dtype dtype) {
  std::vector<float> values(bytes.size() / element_bytes(dtype));
  for (size_t i = 0; i < values.size(); ++i) {
    if (dtype == ALIBI_DTYPE_F32) {
      std::memcpy(&values[i], &bytes[4 * i], 4);
    } else {
      uint16_t bits;
      std::memcpy(&bits, &bytes[2 * i], 2);
      values[i] = from_half_bits(bits, dtype);
    }
  }
  return values;
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

inline size_t element_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F16:
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I64: return 8;
    default: return 4;
  }
}

inline size_t byte_count(alibi_dtype dtype, const std::vector<int64_t>& shape) {
  size_t count = element_size(dtype);
  for (int64_t s : shape) count *= size_t(s);
  return count;
}

// An output tensor over host memory filled with a byte pattern, to prove a call wrote nothing.
class PoisonedOutput {
 public:
  static constexpr uint8_t kPattern = 0x7f;
  PoisonedOutput(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape) {
    bytes_.assign(byte_count(dtype, shape), kPattern);
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(
        alibi_tensor_wrap(ctx, dtype, int(shape.size()), shape.data(), nullptr, bytes_.data(), &t),
        ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    tensor_.reset(t);
  }
  alibi_tensor_t get() const { return tensor_.get(); }
  bool untouched() const {
    return std::all_of(bytes_.begin(), bytes_.end(), [](uint8_t b) { return b == kPattern; });
  }

 private:
  std::vector<uint8_t> bytes_;
  Tensor tensor_;
};

// Uniform random values, each exactly representable in dtype.
inline std::vector<float> random_values(size_t n, alibi_dtype dtype, uint32_t seed, float lo = -1.f,
                                        float hi = 1.f) {
  std::vector<float> values = random_floats(n, seed, lo, hi);
  for (float& x : values) x = round_to(x, dtype);
  return values;
}

inline std::vector<int32_t> random_positions(size_t n, uint32_t seed, int32_t lo, int32_t hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> dist(lo, hi);
  std::vector<int32_t> positions(n);
  for (int32_t& p : positions) p = dist(rng);
  return positions;
}

// cu_seqlens of a packed batch.
struct Sequences {
  std::vector<int32_t> cu_q{0}, cu_k{0};
  int batch() const { return int(cu_q.size()) - 1; }
  int64_t total_q() const { return cu_q.back(); }
  int64_t total_k() const { return cu_k.back(); }
};

// From (Lq, Lk) per sequence.
inline Sequences sequences(const std::vector<std::pair<int32_t, int32_t>>& lengths) {
  Sequences seqs;
  for (const auto& [lq, lk] : lengths) {
    seqs.cu_q.push_back(seqs.cu_q.back() + lq);
    seqs.cu_k.push_back(seqs.cu_k.back() + lk);
  }
  return seqs;
}

// ------------------------------------------------------------------------- names of test cases

// Masks; a failed creation fails the test (and gives a null mask).
inline Mask make_varlen(alibi_context_t ctx, const std::vector<int32_t>& cu_q,
                        const std::vector<int32_t>& cu_k, bool causal) {
  alibi_mask_t m = nullptr;
  EXPECT_EQ(
      alibi_mask_create_varlen(ctx, int(cu_q.size()) - 1, cu_q.data(), cu_k.data(), causal, &m),
      ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Mask(m);
}

inline Mask make_sliding_window(alibi_context_t ctx, const std::vector<int32_t>& cu_q,
                                const std::vector<int32_t>& cu_k, int left, int right) {
  alibi_mask_t m = nullptr;
  EXPECT_EQ(alibi_mask_create_sliding_window(ctx, int(cu_q.size()) - 1, cu_q.data(), cu_k.data(),
                                             left, right, &m),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Mask(m);
}

// q_ranges and k_ranges: [begin, end) pairs, one per slice, as alibi_mask_create_ranges takes them.
inline Mask make_ranges(alibi_context_t ctx, const std::vector<int32_t>& q_ranges,
                        const std::vector<int32_t>& k_ranges, const std::vector<int32_t>& types,
                        int64_t total_q, int64_t total_k) {
  alibi_mask_t m = nullptr;
  EXPECT_EQ(alibi_mask_create_ranges(ctx, int(types.size()), q_ranges.data(), k_ranges.data(),
                                     types.data(), total_q, total_k, &m),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Mask(m);
}

inline std::string dtype_name(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? "f32" : dtype == ALIBI_DTYPE_F16 ? "f16" : "bf16";
}

inline std::string mask_type_name(int type) {
  static const char* const kNames[] = {"full", "causal", "invcausal", "bicausal"};
  return kNames[type];
}

using HeadCounts = std::pair<int, int>;  // (Hq, Hkv)

inline std::string heads_name(const HeadCounts& heads) {
  return "hq" + std::to_string(heads.first) + "_hkv" + std::to_string(heads.second);
}

// ------------------------------------------------------------------------ tensors through the ABI

// Whether a call succeeded; a failure is reported with the call's text and the library's message.
inline bool succeeded(alibi_status status, const char* call) {
  if (status == ALIBI_STATUS_SUCCESS) return true;
  ADD_FAILURE() << call << ": " << alibi_status_string(status) << ": "
                << alibi_last_error_message();
  return false;
}
#define SUCCEEDED(call) ::test::succeeded((call), #call)

inline int64_t numel(const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  return n;
}

inline Tensor create_tensor(alibi_context_t ctx, alibi_dtype dtype,
                            const std::vector<int64_t>& shape) {
  alibi_tensor_t t = nullptr;
  SUCCEEDED(alibi_tensor_create(ctx, dtype, int(shape.size()), shape.data(), &t));
  return Tensor(t);
}

inline Tensor upload(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape,
                     const std::vector<float>& values) {
  Tensor t = create_tensor(ctx, dtype, shape);
  const std::vector<uint8_t> bytes = encode(values, dtype);
  if (t && !bytes.empty())
    SUCCEEDED(alibi_tensor_copy_from_host(t.get(), bytes.data(), bytes.size()));
  return t;
}

// A tensor whose every element is kPoison.
inline Tensor poisoned(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape) {
  return upload(ctx, dtype, shape, std::vector<float>(size_t(numel(shape)), kPoison));
}

inline std::vector<float> download(alibi_tensor_t t, alibi_dtype dtype, int64_t n) {
  std::vector<uint8_t> bytes(size_t(n) * element_bytes(dtype));
  if (!bytes.empty()) SUCCEEDED(alibi_tensor_copy_to_host(t, bytes.data(), bytes.size()));
  return decode(bytes, dtype);
}

inline std::vector<double> to_double(const std::vector<float>& v) { return {v.begin(), v.end()}; }

// How many elements of two equally long arrays differ in their bits.
inline int bitwise_differences(const std::vector<float>& a, const std::vector<float>& b) {
  int differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += float_to_bits(a[i]) != float_to_bits(b[i]);
  return differing;
}

}  // namespace test
