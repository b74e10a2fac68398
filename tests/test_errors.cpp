// Bad input at every entry point: the documented status, a message naming the function, the
// argument and the bad value, handle out-parameters set to NULL, outputs left bitwise untouched.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "error_check.h"
#include "test_util.h"

namespace {

using test::Context;
using test::make_cpu_context;
using test::Mask;
using test::Tensor;

using test::contains_identifier;
using test::expect_error;

using test::byte_count;
using test::element_size;

template <typename Handle>
Handle garbage_handle() {
  return reinterpret_cast<Handle>(uintptr_t(0xdeadbeef));
}

using test::PoisonedOutput;

// Fixture of the tensor-writing calls: every poisoned output it made must stay untouched.
class OutputFixture : public ::testing::Test {
 protected:
  void SetUp() override { ctx_ = make_cpu_context(); }

  Tensor zeros(alibi_dtype dtype, const std::vector<int64_t>& shape) {
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(alibi_tensor_create(ctx_.get(), dtype, int(shape.size()), shape.data(), &t),
              ALIBI_STATUS_SUCCESS);
    const std::vector<uint8_t> bytes(byte_count(dtype, shape), 0);
    EXPECT_EQ(alibi_tensor_copy_from_host(t, bytes.data(), bytes.size()), ALIBI_STATUS_SUCCESS);
    return Tensor(t);
  }
  alibi_tensor_t poisoned(alibi_dtype dtype, const std::vector<int64_t>& shape) {
    outputs_.push_back(std::make_unique<PoisonedOutput>(ctx_.get(), dtype, shape));
    return outputs_.back()->get();
  }
  void expect_outputs_untouched() const {
    for (size_t n = 0; n < outputs_.size(); ++n)
      EXPECT_TRUE(outputs_[n]->untouched()) << "output " << n << " was written";
  }
  Mask varlen(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k) {
    alibi_mask_t m = nullptr;
    EXPECT_EQ(
        alibi_mask_create_varlen(ctx_.get(), int(cu_q.size()) - 1, cu_q.data(), cu_k.data(), 1, &m),
        ALIBI_STATUS_SUCCESS);
    return Mask(m);
  }
  Mask full_ranges(int32_t total_q, int32_t total_k) {
    const int32_t q[2] = {0, total_q}, k[2] = {0, total_k}, types[1] = {ALIBI_MASK_FULL};
    alibi_mask_t m = nullptr;
    EXPECT_EQ(alibi_mask_create_ranges(ctx_.get(), 1, q, k, types, total_q, total_k, &m),
              ALIBI_STATUS_SUCCESS);
    return Mask(m);
  }

  Context ctx_;
  std::vector<std::unique_ptr<PoisonedOutput>> outputs_;
};

// ------------------------------------------------------------------------------------------
// Messages

TEST(ErrorMessage, SuccessClearsTheMessage) {
  Context ctx = make_cpu_context();
  EXPECT_EQ(alibi_context_set_num_threads(ctx.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT);
  EXPECT_STRNE(alibi_last_error_message(), "");
  ASSERT_OK(alibi_context_set_num_threads(ctx.get(), 2));
  EXPECT_STREQ(alibi_last_error_message(), "");
  EXPECT_EQ(alibi_compute_slopes(-4, 8.0f, nullptr), ALIBI_STATUS_INVALID_ARGUMENT);
  float slope = 0;
  ASSERT_OK(alibi_compute_slopes(1, 8.0f, &slope));
  EXPECT_STREQ(alibi_last_error_message(), "");
}

TEST(ErrorMessage, CopyTruncatesAndReportsTheFullLength) {
  Context ctx = make_cpu_context();
  EXPECT_EQ(alibi_context_set_num_threads(ctx.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT);
  const std::string full = alibi_last_error_message();
  ASSERT_GT(full.size(), 5u);
  char small[6];
  EXPECT_EQ(alibi_last_error_copy(small, sizeof small), full.size());
  EXPECT_EQ(std::string(small), full.substr(0, 5));
  EXPECT_EQ(alibi_last_error_copy(nullptr, 0), full.size());
  std::vector<char> large(full.size() + 10, 'x');
  EXPECT_EQ(alibi_last_error_copy(large.data(), large.size()), full.size());
  EXPECT_EQ(std::string(large.data()), full);
}

TEST(ErrorMessage, MessagesArePerThread) {
  Context ctx = make_cpu_context();
  EXPECT_EQ(alibi_context_set_num_threads(ctx.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT);
  std::string other_before, other_after;
  std::thread other([&] {
    other_before = alibi_last_error_message();
    float slope = 0;
    alibi_compute_slopes(1, -1.0f, &slope);
    other_after = alibi_last_error_message();
  });
  other.join();
  EXPECT_EQ(other_before, "");
  EXPECT_TRUE(contains_identifier(other_after, "alibi_compute_slopes")) << other_after;
  EXPECT_TRUE(contains_identifier(alibi_last_error_message(), "alibi_context_set_num_threads"))
      << alibi_last_error_message();
}

// ------------------------------------------------------------------------------------------
// Contexts

TEST(ErrorContext, CudaWithoutBackendIsUnavailable) {
  if (alibi_device_count(ALIBI_DEVICE_CUDA) > 0) GTEST_SKIP() << "a CUDA device is available";
  alibi_context_t ctx = garbage_handle<alibi_context_t>();
  EXPECT_FAILS(alibi_context_create(ALIBI_DEVICE_CUDA, 0, &ctx), ALIBI_STATUS_BACKEND_UNAVAILABLE,
               "alibi_context_create", "device", "cuda");
  EXPECT_EQ(ctx, nullptr);
  // The message says why: more than just the function and the device.
  EXPECT_GT(std::string(alibi_last_error_message()).size(),
            std::string("alibi_context_create: device = CUDA").size());
}

TEST(ErrorContext, CreateRejectsBadDevicesAndIndices) {
  alibi_context_t ctx = garbage_handle<alibi_context_t>();
  EXPECT_FAILS(alibi_context_create(ALIBI_DEVICE_CPU, 1, &ctx), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_context_create", "device_index", "1");
  EXPECT_EQ(ctx, nullptr);
  ctx = garbage_handle<alibi_context_t>();
  EXPECT_FAILS(alibi_context_create(ALIBI_DEVICE_CPU, -1, &ctx), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_context_create", "device_index", "-1");
  EXPECT_EQ(ctx, nullptr);
  ctx = garbage_handle<alibi_context_t>();
  EXPECT_FAILS(alibi_context_create(alibi_device(3), 0, &ctx), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_context_create", "device", "3");
  EXPECT_EQ(ctx, nullptr);
  EXPECT_FAILS(alibi_context_create(ALIBI_DEVICE_CPU, 0, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_create", "out", "null");
}

TEST(ErrorContext, CallsOnANullContext) {
  alibi_device device = ALIBI_DEVICE_AUTO;
  EXPECT_FAILS(alibi_context_get_device(nullptr, &device), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_get_device", "ctx|context", "null");
  EXPECT_FAILS(alibi_context_set_num_threads(nullptr, 2), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_set_num_threads", "ctx|context", "null");
  EXPECT_FAILS(alibi_context_set_stream(nullptr, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_set_stream", "ctx|context", "null");
  EXPECT_FAILS(alibi_context_synchronize(nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_synchronize", "ctx|context", "null");
}

TEST(ErrorContext, GetDeviceNeedsAnOutput) {
  Context ctx = make_cpu_context();
  EXPECT_FAILS(alibi_context_get_device(ctx.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_context_get_device", "out", "null");
}

TEST(ErrorContext, NumThreadsOutsideZeroTo1024) {
  Context ctx = make_cpu_context();
  EXPECT_FAILS(alibi_context_set_num_threads(ctx.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_context_set_num_threads", "num_threads", "-1");
  EXPECT_FAILS(alibi_context_set_num_threads(ctx.get(), 1025), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_context_set_num_threads", "num_threads", "1025");
}

// ------------------------------------------------------------------------------------------
// Tensors

TEST(ErrorTensor, CreateRejectsNullPointers) {
  Context ctx = make_cpu_context();
  const int64_t shape[2] = {2, 3};
  alibi_tensor_t t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_create(nullptr, ALIBI_DTYPE_F32, 2, shape, &t),
               ALIBI_STATUS_NULL_POINTER, "alibi_tensor_create", "ctx|context", "null");
  EXPECT_EQ(t, nullptr);
  t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 2, nullptr, &t),
               ALIBI_STATUS_NULL_POINTER, "alibi_tensor_create", "shape", "null");
  EXPECT_EQ(t, nullptr);
  EXPECT_FAILS(alibi_tensor_create(ctx.get(), ALIBI_DTYPE_F32, 2, shape, nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_tensor_create", "out", "null");
}

// Expects alibi_tensor_create to fail with INVALID_ARGUMENT and to NULL its handle.
void expect_create_invalid(alibi_dtype dtype, const std::vector<int64_t>& shape, int ndim,
                           const char* argument, const char* value) {
  Context ctx = make_cpu_context();
  alibi_tensor_t t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_create(ctx.get(), dtype, ndim, shape.data(), &t),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_create", argument, value);
  EXPECT_EQ(t, nullptr);
}

TEST(ErrorTensor, CreateRejectsBadDtypeNdimAndSizes) {
  const std::vector<int64_t> nine(9, 1);
  expect_create_invalid(alibi_dtype(7), {2, 3}, 2, "dtype", "7");
  expect_create_invalid(ALIBI_DTYPE_F32, nine, ALIBI_MAX_DIMS + 1, "ndim", "9");
  expect_create_invalid(ALIBI_DTYPE_F32, {2, 3}, -1, "ndim", "-1");
  expect_create_invalid(ALIBI_DTYPE_F32, {3, -1}, 2, "shape", "-1");
}

TEST(ErrorTensor, CreateRejectsByteCountsThatOverflow) {
  // numel overflows int64; numel fits but numel * 4 bytes overflows 64 bits.
  expect_create_invalid(ALIBI_DTYPE_F32, {int64_t(1) << 40, int64_t(1) << 40}, 2,
                        "shape|bytes|size|numel", "1099511627776");
  expect_create_invalid(ALIBI_DTYPE_F32, {int64_t(1) << 31, int64_t(1) << 31}, 2,
                        "shape|bytes|size|numel", "2147483648");
}

TEST(ErrorTensor, WrapRejectsNegativeStridesAndMissingData) {
  Context ctx = make_cpu_context();
  std::vector<float> buffer(16);
  const int64_t shape[2] = {3, 4}, strides[2] = {4, -2};
  alibi_tensor_t t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 2, shape, strides, buffer.data(), &t),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_wrap", "strides", "-2");
  EXPECT_EQ(t, nullptr);
  t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_wrap(ctx.get(), ALIBI_DTYPE_F32, 2, shape, nullptr, nullptr, &t),
               ALIBI_STATUS_NULL_POINTER, "alibi_tensor_wrap", "data", "null");
  EXPECT_EQ(t, nullptr);
  t = garbage_handle<alibi_tensor_t>();
  EXPECT_FAILS(alibi_tensor_wrap(ctx.get(), alibi_dtype(6), 2, shape, nullptr, buffer.data(), &t),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_wrap", "dtype", "6");
  EXPECT_EQ(t, nullptr);
}

class ErrorTensorCopy : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = make_cpu_context();
    alibi_tensor_t t = nullptr;
    const int64_t shape[2] = {2, 3};
    ASSERT_OK(alibi_tensor_create(ctx_.get(), ALIBI_DTYPE_F32, 2, shape, &t));
    tensor_.reset(t);
  }
  Context ctx_;
  Tensor tensor_;  // 2 x 3 f32: 24 bytes
};

TEST_F(ErrorTensorCopy, WrongByteCounts) {
  std::vector<float> host(8, test::kPoison);
  EXPECT_FAILS(alibi_tensor_copy_from_host(tensor_.get(), host.data(), 20),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_copy_from_host", "bytes", "20");
  EXPECT_FAILS(alibi_tensor_copy_to_host(tensor_.get(), host.data(), 28),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_tensor_copy_to_host", "bytes", "28");
  for (float x : host) EXPECT_EQ(x, test::kPoison) << "a failed copy wrote to dst";
}

TEST_F(ErrorTensorCopy, NullPointers) {
  float host[6] = {};
  EXPECT_FAILS(alibi_tensor_copy_from_host(tensor_.get(), nullptr, 24), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_copy_from_host", "src", "null");
  EXPECT_FAILS(alibi_tensor_copy_to_host(tensor_.get(), nullptr, 24), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_copy_to_host", "dst", "null");
  EXPECT_FAILS(alibi_tensor_copy_from_host(nullptr, host, 24), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_copy_from_host", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_copy_to_host(nullptr, host, 24), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_copy_to_host", "t|tensor", "null");
}

TEST_F(ErrorTensorCopy, GettersWithTooLittleCapacityWriteNothing) {
  int64_t out[2] = {-5, -5};
  EXPECT_FAILS(alibi_tensor_get_shape(tensor_.get(), 1, out), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_tensor_get_shape", "capacity", "1");
  EXPECT_EQ(out[0], -5);
  EXPECT_FAILS(alibi_tensor_get_strides(tensor_.get(), 0, out), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_tensor_get_strides", "capacity", "0");
  EXPECT_EQ(out[0], -5);
}

TEST_F(ErrorTensorCopy, GettersRejectNullPointers) {
  alibi_dtype dtype;
  int ndim;
  int64_t dims[2];
  void* data;
  EXPECT_FAILS(alibi_tensor_get_dtype(nullptr, &dtype), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_dtype", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_get_ndim(nullptr, &ndim), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_ndim", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_get_shape(nullptr, 2, dims), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_shape", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_get_strides(nullptr, 2, dims), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_strides", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_get_data(nullptr, &data), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_data", "t|tensor", "null");
  EXPECT_FAILS(alibi_tensor_get_dtype(tensor_.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_dtype", "out", "null");
  EXPECT_FAILS(alibi_tensor_get_ndim(tensor_.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_ndim", "out", "null");
  EXPECT_FAILS(alibi_tensor_get_shape(tensor_.get(), 2, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_shape", "out", "null");
  EXPECT_FAILS(alibi_tensor_get_strides(tensor_.get(), 2, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_strides", "out", "null");
  EXPECT_FAILS(alibi_tensor_get_data(tensor_.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_tensor_get_data", "out", "null");
}

// ------------------------------------------------------------------------------------------
// Masks

// Varlen and sliding-window masks share their cu_seqlens checks.
using CreateFromOffsets = alibi_status (*)(alibi_context_t, int, const int32_t*, const int32_t*,
                                           alibi_mask_t*);

alibi_status create_varlen(alibi_context_t ctx, int batch, const int32_t* cu_q, const int32_t* cu_k,
                           alibi_mask_t* out) {
  return alibi_mask_create_varlen(ctx, batch, cu_q, cu_k, 1, out);
}
alibi_status create_sliding_window(alibi_context_t ctx, int batch, const int32_t* cu_q,
                                   const int32_t* cu_k, alibi_mask_t* out) {
  return alibi_mask_create_sliding_window(ctx, batch, cu_q, cu_k, 2, 0, out);
}

struct OffsetsCase {
  int batch;
  std::vector<int32_t> cu_q, cu_k;
  const char* argument;
  const char* value;
};

void expect_offsets_rejected(CreateFromOffsets create, const char* function, const OffsetsCase& c) {
  Context ctx = make_cpu_context();
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  SCOPED_TRACE(std::string(c.argument) + " " + c.value);
  expect_error(create(ctx.get(), c.batch, c.cu_q.data(), c.cu_k.data(), &mask),
               ALIBI_STATUS_INVALID_ARGUMENT, function, c.argument, {c.value});
  EXPECT_EQ(mask, nullptr);
}

const std::vector<OffsetsCase>& bad_offsets() {
  static const std::vector<OffsetsCase> cases{{-1, {0}, {0}, "batch", "-1"},
                                              {2, {0, -3, 4}, {0, 2, 4}, "cu_seqlens_q", "-3"},
                                              {2, {-3, 0, 4}, {0, 2, 4}, "cu_seqlens_q", "-3"},
                                              {2, {0, 9, 6}, {0, 2, 4}, "cu_seqlens_q", "6"},
                                              {2, {0, 2, 4}, {0, -7, 4}, "cu_seqlens_k", "-7"},
                                              {3, {0, 2, 4, 6}, {0, 8, 5, 9}, "cu_seqlens_k", "5"}};
  return cases;
}

TEST(ErrorMask, VarlenRejectsBadOffsets) {
  for (const auto& c : bad_offsets())
    expect_offsets_rejected(create_varlen, "alibi_mask_create_varlen", c);
}

TEST(ErrorMask, SlidingWindowRejectsBadOffsets) {
  for (const auto& c : bad_offsets())
    expect_offsets_rejected(create_sliding_window, "alibi_mask_create_sliding_window", c);
}

void expect_offsets_null_pointers(CreateFromOffsets create, const char* function) {
  Context ctx = make_cpu_context();
  const int32_t cu[3] = {0, 2, 4};
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(create(nullptr, 2, cu, cu, &mask), ALIBI_STATUS_NULL_POINTER, function,
               "ctx|context", "null");
  EXPECT_EQ(mask, nullptr);
  mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(create(ctx.get(), 2, nullptr, cu, &mask), ALIBI_STATUS_NULL_POINTER, function,
               "cu_seqlens_q", "null");
  EXPECT_EQ(mask, nullptr);
  mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(create(ctx.get(), 2, cu, nullptr, &mask), ALIBI_STATUS_NULL_POINTER, function,
               "cu_seqlens_k", "null");
  EXPECT_EQ(mask, nullptr);
  EXPECT_FAILS(create(ctx.get(), 2, cu, cu, nullptr), ALIBI_STATUS_NULL_POINTER, function, "out",
               "null");
}

TEST(ErrorMask, VarlenRejectsNullPointers) {
  expect_offsets_null_pointers(create_varlen, "alibi_mask_create_varlen");
}

TEST(ErrorMask, SlidingWindowRejectsNullPointers) {
  expect_offsets_null_pointers(create_sliding_window, "alibi_mask_create_sliding_window");
}

TEST(ErrorMask, SlidingWindowRejectsWindowsBelowMinusOne) {
  Context ctx = make_cpu_context();
  const int32_t cu[3] = {0, 2, 4};
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(alibi_mask_create_sliding_window(ctx.get(), 2, cu, cu, -2, 0, &mask),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_mask_create_sliding_window", "window_left",
               "-2");
  EXPECT_EQ(mask, nullptr);
  mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(alibi_mask_create_sliding_window(ctx.get(), 2, cu, cu, 3, -5, &mask),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_mask_create_sliding_window", "window_right",
               "-5");
  EXPECT_EQ(mask, nullptr);
}

struct RangesCase {
  std::vector<int32_t> q, k, types;
  int64_t total_q, total_k;
};

// Creates (and destroys) a ranges mask; on failure the handle must come back NULL.
alibi_status create_ranges(alibi_context_t ctx, const RangesCase& c) {
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  const alibi_status status =
      alibi_mask_create_ranges(ctx, int(c.types.size()), c.q.data(), c.k.data(), c.types.data(),
                               c.total_q, c.total_k, &mask);
  if (status != ALIBI_STATUS_SUCCESS) {
    EXPECT_EQ(mask, nullptr);
    return status;
  }
  alibi_mask_destroy(mask);
  return status;
}

TEST(ErrorMask, RangesRejectOutOfBoundsAndReversedRanges) {
  Context ctx = make_cpu_context();
  const char* function = "alibi_mask_create_ranges";
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 11}, {0, 4}, {0}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "q_ranges", "11");
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 4}, {0, 9}, {0}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "k_ranges", "9");
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 4}, {-4, 3}, {0}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "k_ranges", "-4");
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 2, 6, 3}, {0, 4, 0, 4}, {0, 1}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "q_ranges", "6");
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 4}, {7, 5}, {2}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "k_ranges", "7");
}

TEST(ErrorMask, RangesRejectTypeCodesOutside0To3) {
  Context ctx = make_cpu_context();
  const char* function = "alibi_mask_create_ranges";
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 4, 4, 8}, {0, 4, 0, 4}, {3, 4}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "types", "4");
  EXPECT_FAILS(create_ranges(ctx.get(), {{0, 4}, {0, 4}, {-1}, 10, 8}),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "types", "-1");
}

TEST(ErrorMask, RangesRejectBadCountsAndTotals) {
  Context ctx = make_cpu_context();
  const int32_t q[2] = {0, 1}, k[2] = {0, 1}, types[1] = {0};
  const char* function = "alibi_mask_create_ranges";
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), -1, q, k, types, 4, 4, &mask),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "num_slices", "-1");
  EXPECT_EQ(mask, nullptr);
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), 1, q, k, types, -6, 4, &mask),
               ALIBI_STATUS_INVALID_ARGUMENT, function, "total_q", "-6");
  EXPECT_FAILS(
      alibi_mask_create_ranges(ctx.get(), 1, q, k, types, 4, int64_t(INT32_MAX) + 1, &mask),
      ALIBI_STATUS_INVALID_ARGUMENT, function, "total_k", "2147483648");
}

TEST(ErrorMask, RangesRejectNullPointers) {
  Context ctx = make_cpu_context();
  const int32_t q[2] = {0, 1}, k[2] = {0, 1}, types[1] = {0};
  const char* function = "alibi_mask_create_ranges";
  alibi_mask_t mask = garbage_handle<alibi_mask_t>();
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), 1, nullptr, k, types, 4, 4, &mask),
               ALIBI_STATUS_NULL_POINTER, function, "q_ranges", "null");
  EXPECT_EQ(mask, nullptr);
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), 1, q, nullptr, types, 4, 4, &mask),
               ALIBI_STATUS_NULL_POINTER, function, "k_ranges", "null");
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), 1, q, k, nullptr, 4, 4, &mask),
               ALIBI_STATUS_NULL_POINTER, function, "types", "null");
  EXPECT_FAILS(alibi_mask_create_ranges(nullptr, 1, q, k, types, 4, 4, &mask),
               ALIBI_STATUS_NULL_POINTER, function, "ctx|context", "null");
  EXPECT_FAILS(alibi_mask_create_ranges(ctx.get(), 1, q, k, types, 4, 4, nullptr),
               ALIBI_STATUS_NULL_POINTER, function, "out", "null");
}

TEST(ErrorMask, RangesRejectOverlappingRectangles) {
  Context ctx = make_cpu_context();
  const char* function = "alibi_mask_create_ranges";
  const char* argument = "q_ranges|k_ranges|slice|slices|ranges";
  // identical, partially overlapping, one inside the other, crossing
  for (const RangesCase& c :
       {RangesCase{{0, 4, 0, 4}, {0, 4, 0, 4}, {0, 1}, 10, 10},
        RangesCase{{0, 5, 3, 8}, {0, 5, 4, 9}, {1, 2}, 10, 10},
        RangesCase{{0, 8, 2, 4, 9, 10}, {0, 8, 3, 5, 0, 1}, {0, 3, 0}, 10, 10},
        RangesCase{{0, 10, 4, 5}, {4, 5, 0, 10}, {0, 0}, 10, 10}}) {
    EXPECT_FAILS(create_ranges(ctx.get(), c), ALIBI_STATUS_INVALID_ARGUMENT, function, argument);
  }
}

TEST(ErrorMask, RangesAcceptTouchingRectanglesAndEmptyRanges) {
  Context ctx = make_cpu_context();
  // Sharing an edge in q, an edge in k, a corner; an empty range inside another slice.
  for (const RangesCase& c :
       {RangesCase{{0, 5, 5, 8}, {0, 5, 0, 5}, {0, 1}, 10, 10},
        RangesCase{{0, 5, 0, 5}, {0, 5, 5, 9}, {2, 3}, 10, 10},
        RangesCase{{0, 5, 5, 8}, {0, 5, 5, 9}, {1, 1}, 10, 10},
        RangesCase{{0, 8, 2, 2, 3, 6}, {0, 8, 0, 5, 4, 4}, {0, 1, 2}, 10, 10}}) {
    EXPECT_EQ(create_ranges(ctx.get(), c), ALIBI_STATUS_SUCCESS) << alibi_last_error_message();
  }
}

TEST(ErrorMask, QueriesAndPositionsRejectNullPointers) {
  Context ctx = make_cpu_context();
  const int32_t cu[2] = {0, 3};
  alibi_mask_t raw = nullptr;
  ASSERT_OK(alibi_mask_create_varlen(ctx.get(), 1, cu, cu, 1, &raw));
  Mask mask(raw);
  const int32_t positions[3] = {0, 1, 2};
  int count = -1;
  int32_t ranges[2];
  EXPECT_FAILS(alibi_mask_set_positions(mask.get(), nullptr, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_set_positions", "q_positions|k_positions", "null");
  EXPECT_FAILS(alibi_mask_set_positions(nullptr, positions, positions), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_set_positions", "mask", "null");
  EXPECT_FAILS(alibi_mask_get_num_slices(nullptr, &count), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_get_num_slices", "mask", "null");
  EXPECT_EQ(count, -1);
  EXPECT_FAILS(alibi_mask_get_num_slices(mask.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_get_num_slices", "out", "null");
  EXPECT_FAILS(alibi_mask_get_slices(nullptr, ranges, ranges, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_get_slices", "mask", "null");
  int64_t total = -1;
  EXPECT_FAILS(alibi_mask_get_totals(nullptr, &total, &total), ALIBI_STATUS_NULL_POINTER,
               "alibi_mask_get_totals", "mask", "null");
  EXPECT_EQ(total, -1);
}

// ------------------------------------------------------------------------------------------
// Slopes

TEST(ErrorSlopes, ComputeSlopesRejectsBadArguments) {
  std::vector<float> out(4, test::kPoison);
  const char* function = "alibi_compute_slopes";
  EXPECT_FAILS(alibi_compute_slopes(-1, 8.0f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT, function,
               "num_heads", "-1");
  EXPECT_FAILS(alibi_compute_slopes(4, -1.5f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT, function,
               "max_bias", "-1.5");
  EXPECT_FAILS(alibi_compute_slopes(4, std::nanf(""), out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "max_bias", "nan");
  EXPECT_FAILS(alibi_compute_slopes(4, 8.0f, nullptr), ALIBI_STATUS_NULL_POINTER, function, "out",
               "null");
  for (float x : out) EXPECT_EQ(x, test::kPoison) << "a failed call wrote its output";
}

TEST(ErrorSlopes, TensorParallelSlopesRejectBadShards) {
  std::vector<float> out(4, test::kPoison);
  const char* function = "alibi_compute_slopes_tp";
  EXPECT_FAILS(alibi_compute_slopes_tp(8, -1, 2, 8.0f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "head_offset", "-1");
  EXPECT_FAILS(alibi_compute_slopes_tp(8, 6, 3, 8.0f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "head_offset|num_heads|total_heads", "6");
  EXPECT_FAILS(alibi_compute_slopes_tp(-2, 0, 1, 8.0f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "total_heads", "-2");
  EXPECT_FAILS(alibi_compute_slopes_tp(8, 0, -3, 8.0f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "num_heads", "-3");
  EXPECT_FAILS(alibi_compute_slopes_tp(8, 0, 2, -0.5f, out.data()), ALIBI_STATUS_INVALID_ARGUMENT,
               function, "max_bias", "-0.5");
  EXPECT_FAILS(alibi_compute_slopes_tp(8, 0, 2, 8.0f, nullptr), ALIBI_STATUS_NULL_POINTER, function,
               "out", "null");
  for (float x : out) EXPECT_EQ(x, test::kPoison) << "a failed call wrote its output";
}

// ------------------------------------------------------------------------------------------
// Attention forward: q (5, 4, 8), k and v (7, 2, 8), out (5, 4, 8), lse (4, 5), varlen causal mask.

class ErrorForward : public OutputFixture {
 protected:
  struct Args {
    alibi_context_t ctx;
    alibi_tensor_t q, k, v;
    alibi_mask_t mask;
    const alibi_attention_params* params;
    alibi_tensor_t out, lse;
  };

  void SetUp() override {
    OutputFixture::SetUp();
    q_ = zeros(ALIBI_DTYPE_F32, {5, 4, 8});
    k_ = zeros(ALIBI_DTYPE_F32, {7, 2, 8});
    v_ = zeros(ALIBI_DTYPE_F32, {7, 2, 8});
    mask_ = varlen({0, 2, 5}, {0, 3, 7});
    alibi_attention_params_init(&params_);
    args_ = {ctx_.get(),
             q_.get(),
             k_.get(),
             v_.get(),
             mask_.get(),
             &params_,
             poisoned(ALIBI_DTYPE_F32, {5, 4, 8}),
             poisoned(ALIBI_DTYPE_F32, {4, 5})};
  }

  static alibi_status forward(const Args& a) {
    return alibi_attention_forward(a.ctx, a.q, a.k, a.v, a.mask, a.params, a.out, a.lse);
  }

  void expect_fails(const Args& a, alibi_status want, const char* argument,
                    std::vector<std::string> values = {}) {
    SCOPED_TRACE(std::string("argument ") + argument);
    expect_error(forward(a), want, "alibi_attention_forward", argument, values);
    expect_outputs_untouched();
  }

  // Valid arguments with one field replaced.
  template <typename Field, typename Value>
  Args with(Field Args::*field, Value value) const {
    Args a = args_;
    a.*field = value;
    return a;
  }

  Tensor q_, k_, v_;
  Mask mask_;
  alibi_attention_params params_;
  Args args_;
};

TEST_F(ErrorForward, ValidArgumentsSucceedAndClearTheMessage) {
  EXPECT_EQ(alibi_context_set_num_threads(ctx_.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT);
  ASSERT_OK(forward(args_));
  EXPECT_STREQ(alibi_last_error_message(), "");
  ASSERT_OK(forward(with(&Args::params, nullptr)));
  ASSERT_OK(forward(with(&Args::lse, nullptr)));
}

TEST_F(ErrorForward, NullRequiredPointers) {
  expect_fails(with(&Args::ctx, nullptr), ALIBI_STATUS_NULL_POINTER, "ctx|context", {"null"});
  expect_fails(with(&Args::q, nullptr), ALIBI_STATUS_NULL_POINTER, "q", {"null"});
  expect_fails(with(&Args::k, nullptr), ALIBI_STATUS_NULL_POINTER, "k", {"null"});
  expect_fails(with(&Args::v, nullptr), ALIBI_STATUS_NULL_POINTER, "v", {"null"});
  expect_fails(with(&Args::mask, nullptr), ALIBI_STATUS_NULL_POINTER, "mask", {"null"});
  expect_fails(with(&Args::out, nullptr), ALIBI_STATUS_NULL_POINTER, "out", {"null"});
}

TEST_F(ErrorForward, WrongNdim) {
  Tensor q2 = zeros(ALIBI_DTYPE_F32, {5, 32});
  Tensor k4 = zeros(ALIBI_DTYPE_F32, {7, 2, 8, 1});
  expect_fails(with(&Args::q, q2.get()), ALIBI_STATUS_SHAPE_MISMATCH, "q", {"2"});
  expect_fails(with(&Args::k, k4.get()), ALIBI_STATUS_SHAPE_MISMATCH, "k", {"4"});
  expect_fails(with(&Args::out, poisoned(ALIBI_DTYPE_F32, {20, 8})), ALIBI_STATUS_SHAPE_MISMATCH,
               "out", {"2"});
  expect_fails(with(&Args::lse, poisoned(ALIBI_DTYPE_F32, {20})), ALIBI_STATUS_SHAPE_MISMATCH,
               "lse", {"1"});
}

TEST_F(ErrorForward, SizesThatDisagree) {
  Tensor k_head_dim = zeros(ALIBI_DTYPE_F32, {7, 2, 6});
  Tensor v_head_dim = zeros(ALIBI_DTYPE_F32, {7, 2, 6});
  Tensor v_rows = zeros(ALIBI_DTYPE_F32, {9, 2, 8});
  expect_fails(with(&Args::k, k_head_dim.get()), ALIBI_STATUS_SHAPE_MISMATCH, "k", {"6"});
  expect_fails(with(&Args::v, v_head_dim.get()), ALIBI_STATUS_SHAPE_MISMATCH, "v", {"6"});
  expect_fails(with(&Args::v, v_rows.get()), ALIBI_STATUS_SHAPE_MISMATCH, "v", {"9"});
  expect_fails(with(&Args::out, poisoned(ALIBI_DTYPE_F32, {5, 4, 9})), ALIBI_STATUS_SHAPE_MISMATCH,
               "out", {"9"});
  expect_fails(with(&Args::out, poisoned(ALIBI_DTYPE_F32, {5, 3, 8})), ALIBI_STATUS_SHAPE_MISMATCH,
               "out", {"3"});
  expect_fails(with(&Args::lse, poisoned(ALIBI_DTYPE_F32, {5, 4})), ALIBI_STATUS_SHAPE_MISMATCH,
               "lse");
}

TEST_F(ErrorForward, QueryHeadsNotAMultipleOfKvHeads) {
  Tensor k3 = zeros(ALIBI_DTYPE_F32, {7, 3, 8});
  Tensor v3 = zeros(ALIBI_DTYPE_F32, {7, 3, 8});
  Args a = args_;
  a.k = k3.get();
  a.v = v3.get();
  expect_fails(a, ALIBI_STATUS_SHAPE_MISMATCH, "k|q|v|Hkv|Hq|num_heads", {"3"});
}

TEST_F(ErrorForward, TotalsThatDisagreeWithTheMask) {
  Tensor q6 = zeros(ALIBI_DTYPE_F32, {6, 4, 8});
  Args a = args_;
  a.q = q6.get();
  a.out = poisoned(ALIBI_DTYPE_F32, {6, 4, 8});
  a.lse = poisoned(ALIBI_DTYPE_F32, {4, 6});
  expect_fails(a, ALIBI_STATUS_SHAPE_MISMATCH, "q|mask|total_q", {"6", "5"});

  Tensor k8 = zeros(ALIBI_DTYPE_F32, {8, 2, 8});
  Tensor v8 = zeros(ALIBI_DTYPE_F32, {8, 2, 8});
  a = args_;
  a.k = k8.get();
  a.v = v8.get();
  expect_fails(a, ALIBI_STATUS_SHAPE_MISMATCH, "k|mask|total_k", {"8", "7"});
}

TEST_F(ErrorForward, DtypesThatDisagreeOrAreNotAccepted) {
  Tensor q_half = zeros(ALIBI_DTYPE_F16, {5, 4, 8});
  Tensor k_half = zeros(ALIBI_DTYPE_F16, {7, 2, 8});
  expect_fails(with(&Args::q, q_half.get()), ALIBI_STATUS_DTYPE_MISMATCH, "q|k|v");
  expect_fails(with(&Args::k, k_half.get()), ALIBI_STATUS_DTYPE_MISMATCH, "k|q");
  expect_fails(with(&Args::out, poisoned(ALIBI_DTYPE_BF16, {5, 4, 8})), ALIBI_STATUS_DTYPE_MISMATCH,
               "out");
  expect_fails(with(&Args::lse, poisoned(ALIBI_DTYPE_F16, {4, 5})), ALIBI_STATUS_DTYPE_MISMATCH,
               "lse");

  Tensor qi = zeros(ALIBI_DTYPE_I32, {5, 4, 8});
  Tensor ki = zeros(ALIBI_DTYPE_I32, {7, 2, 8});
  Tensor vi = zeros(ALIBI_DTYPE_I32, {7, 2, 8});
  Args ints{ctx_.get(),
            qi.get(),
            ki.get(),
            vi.get(),
            mask_.get(),
            &params_,
            poisoned(ALIBI_DTYPE_I32, {5, 4, 8}),
            args_.lse};
  expect_fails(ints, ALIBI_STATUS_DTYPE_MISMATCH, "q");
}

TEST_F(ErrorForward, BadAttnBias) {
  Tensor wrong_columns = zeros(ALIBI_DTYPE_F32, {4, 5, 6});
  Tensor wrong_heads = zeros(ALIBI_DTYPE_F32, {2, 5, 7});
  Tensor wrong_ndim = zeros(ALIBI_DTYPE_F32, {5, 7});
  Tensor wrong_dtype = zeros(ALIBI_DTYPE_I32, {4, 5, 7});
  for (alibi_tensor_t bias :
       {wrong_columns.get(), wrong_heads.get(), wrong_ndim.get(), wrong_dtype.get()}) {
    params_.attn_bias = bias;
    const bool dtype_case = bias == wrong_dtype.get();
    expect_fails(args_, dtype_case ? ALIBI_STATUS_DTYPE_MISMATCH : ALIBI_STATUS_SHAPE_MISMATCH,
                 "attn_bias");
  }
}

TEST_F(ErrorForward, ParamsOutsideTheirDomain) {
  const std::string ours = std::to_string(sizeof(alibi_attention_params));
  params_.struct_size = 12;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "struct_size", {"= 12", ours + " bytes"});
  params_.struct_size = sizeof(alibi_attention_params) + 8;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "struct_size",
               {"= " + std::to_string(sizeof(alibi_attention_params) + 8), ours + " bytes", "newer"});
  alibi_attention_params_init(&params_);
  params_.max_bias = -0.5f;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "max_bias", {"-0.5"});
  alibi_attention_params_init(&params_);
  params_.softmax_scale = std::nanf("");
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "softmax_scale", {"nan"});
  alibi_attention_params_init(&params_);
  params_.softcap = -1.5f;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "softcap", {"-1.5"});
}

TEST_F(ErrorForward, BadSlopes) {
  const std::vector<float> negative{0.5f, -0.25f, 0.125f, 0.0625f};
  params_.slopes = negative.data();
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "slopes", {"-0.25"});

  const std::vector<float> plenty(64, 0.5f);
  Mask ranges = full_ranges(5, 7);
  alibi_attention_params_init(&params_);
  params_.slopes = plenty.data();
  params_.slopes_per_batch = 1;
  expect_fails(with(&Args::mask, ranges.get()), ALIBI_STATUS_INVALID_ARGUMENT, "slopes_per_batch");
}

TEST_F(ErrorForward, BadTensorParallelShard) {
  params_.total_heads = 6;
  params_.head_offset = 3;  // heads 3..6 of 6
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "head_offset|total_heads", {"3", "6"});
  params_.total_heads = 8;
  params_.head_offset = -2;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "head_offset", {"-2"});
  params_.total_heads = -4;
  params_.head_offset = 0;
  expect_fails(args_, ALIBI_STATUS_INVALID_ARGUMENT, "total_heads", {"-4"});
}

// ------------------------------------------------------------------------------------------
// alibi_build_bias: varlen mask of 5 x 7 tokens, out (4, 5, 7) f32.

class ErrorBuildBias : public OutputFixture {
 protected:
  void SetUp() override {
    OutputFixture::SetUp();
    mask_ = varlen({0, 2, 5}, {0, 3, 7});
    out_ = poisoned(ALIBI_DTYPE_F32, {4, 5, 7});
    alibi_attention_params_init(&params_);
  }
  void expect_fails(alibi_status got, alibi_status want, const char* argument,
                    std::vector<std::string> values = {}) {
    SCOPED_TRACE(std::string("argument ") + argument);
    expect_error(got, want, "alibi_build_bias", argument, values);
    expect_outputs_untouched();
  }
  alibi_status build(alibi_tensor_t out, int heads = 4) {
    return alibi_build_bias(ctx_.get(), mask_.get(), heads, &params_, out);
  }

  Mask mask_;
  alibi_tensor_t out_ = nullptr;
  alibi_attention_params params_;
};

TEST_F(ErrorBuildBias, NullPointersAndBadHeadCount) {
  expect_fails(alibi_build_bias(nullptr, mask_.get(), 4, &params_, out_), ALIBI_STATUS_NULL_POINTER,
               "ctx|context", {"null"});
  expect_fails(alibi_build_bias(ctx_.get(), nullptr, 4, &params_, out_), ALIBI_STATUS_NULL_POINTER,
               "mask", {"null"});
  expect_fails(build(nullptr), ALIBI_STATUS_NULL_POINTER, "out", {"null"});
  expect_fails(build(out_, -1), ALIBI_STATUS_INVALID_ARGUMENT, "num_heads", {"-1"});
}

TEST_F(ErrorBuildBias, OutputShapeAndDtype) {
  expect_fails(build(out_, 3), ALIBI_STATUS_SHAPE_MISMATCH, "out|num_heads", {"4", "3"});
  expect_fails(build(poisoned(ALIBI_DTYPE_F32, {4, 5, 8})), ALIBI_STATUS_SHAPE_MISMATCH, "out",
               {"8"});
  expect_fails(build(poisoned(ALIBI_DTYPE_F32, {4, 6, 7})), ALIBI_STATUS_SHAPE_MISMATCH, "out",
               {"6"});
  expect_fails(build(poisoned(ALIBI_DTYPE_F32, {20, 7})), ALIBI_STATUS_SHAPE_MISMATCH, "out",
               {"2"});
  expect_fails(build(poisoned(ALIBI_DTYPE_I32, {4, 5, 7})), ALIBI_STATUS_DTYPE_MISMATCH, "out");
}

TEST_F(ErrorBuildBias, BadAttnBias) {
  Tensor wrong_columns = zeros(ALIBI_DTYPE_F32, {4, 5, 6});
  Tensor wrong_dtype = zeros(ALIBI_DTYPE_I64, {4, 5, 7});
  params_.attn_bias = wrong_columns.get();
  expect_fails(build(out_), ALIBI_STATUS_SHAPE_MISMATCH, "attn_bias", {"6"});
  params_.attn_bias = wrong_dtype.get();
  expect_fails(build(out_), ALIBI_STATUS_DTYPE_MISMATCH, "attn_bias");
}

TEST_F(ErrorBuildBias, BadParams) {
  params_.struct_size = 0;
  expect_fails(build(out_), ALIBI_STATUS_INVALID_ARGUMENT, "struct_size", {"0"});
  alibi_attention_params_init(&params_);
  params_.max_bias = -2.5f;
  expect_fails(build(out_), ALIBI_STATUS_INVALID_ARGUMENT, "max_bias", {"-2.5"});
  alibi_attention_params_init(&params_);
  const std::vector<float> negative{0.5f, 0.25f, -0.75f, 0.0f};
  params_.slopes = negative.data();
  expect_fails(build(out_), ALIBI_STATUS_INVALID_ARGUMENT, "slopes", {"-0.75"});
  alibi_attention_params_init(&params_);
  params_.total_heads = 5;
  params_.head_offset = 2;
  expect_fails(build(out_), ALIBI_STATUS_INVALID_ARGUMENT, "head_offset|total_heads", {"2", "5"});
}

TEST_F(ErrorBuildBias, PerBatchSlopesNeedASequenceMask) {
  const std::vector<float> plenty(64, 0.5f);
  Mask ranges = full_ranges(5, 7);
  params_.slopes = plenty.data();
  params_.slopes_per_batch = 1;
  expect_fails(alibi_build_bias(ctx_.get(), ranges.get(), 4, &params_, out_),
               ALIBI_STATUS_INVALID_ARGUMENT, "slopes_per_batch");
}

// ------------------------------------------------------------------------------------------
// alibi_build_dynamic_batching_mask: seqstarts {0, 2, 5}, kvstarts {0, 4, 9}, out (3, 5, 10) f32.

class ErrorDynamicBatching : public OutputFixture {
 protected:
  void SetUp() override {
    OutputFixture::SetUp();
    seqstarts_ = offsets(ALIBI_DTYPE_I64, {0, 2, 5});
    kvstarts_ = offsets(ALIBI_DTYPE_I64, {0, 4, 9});
    out_ = poisoned(ALIBI_DTYPE_F32, {3, 5, 10});
  }
  Tensor offsets(alibi_dtype dtype, const std::vector<int64_t>& values) {
    alibi_tensor_t t = nullptr;
    const int64_t shape[1] = {int64_t(values.size())};
    EXPECT_EQ(alibi_tensor_create(ctx_.get(), dtype, 1, shape, &t), ALIBI_STATUS_SUCCESS);
    if (dtype == ALIBI_DTYPE_I64) {
      EXPECT_EQ(alibi_tensor_copy_from_host(t, values.data(), values.size() * 8),
                ALIBI_STATUS_SUCCESS);
    } else {
      const std::vector<int32_t> narrow(values.begin(), values.end());
      EXPECT_EQ(alibi_tensor_copy_from_host(t, narrow.data(), narrow.size() * 4),
                ALIBI_STATUS_SUCCESS);
    }
    return Tensor(t);
  }
  alibi_status build(alibi_tensor_t seqstarts, alibi_tensor_t kvstarts, alibi_tensor_t attn_mask,
                     int heads, alibi_tensor_t out) {
    return alibi_build_dynamic_batching_mask(ctx_.get(), seqstarts, kvstarts, attn_mask, heads,
                                             out);
  }
  void expect_fails(alibi_status got, alibi_status want, const char* argument,
                    std::vector<std::string> values = {}) {
    SCOPED_TRACE(std::string("argument ") + argument);
    expect_error(got, want, "alibi_build_dynamic_batching_mask", argument, values);
    expect_outputs_untouched();
  }

  Tensor seqstarts_, kvstarts_;
  alibi_tensor_t out_ = nullptr;
};

TEST_F(ErrorDynamicBatching, ValidArgumentsSucceed) {
  ASSERT_OK(build(seqstarts_.get(), kvstarts_.get(), nullptr, 3, out_));
}

TEST_F(ErrorDynamicBatching, NullPointersAndBadHeadCount) {
  auto s = seqstarts_.get(), k = kvstarts_.get();
  expect_fails(alibi_build_dynamic_batching_mask(nullptr, s, k, nullptr, 3, out_),
               ALIBI_STATUS_NULL_POINTER, "ctx|context", {"null"});
  expect_fails(build(nullptr, k, nullptr, 3, out_), ALIBI_STATUS_NULL_POINTER, "seqstarts",
               {"null"});
  expect_fails(build(s, nullptr, nullptr, 3, out_), ALIBI_STATUS_NULL_POINTER, "kvstarts",
               {"null"});
  expect_fails(build(s, k, nullptr, 3, nullptr), ALIBI_STATUS_NULL_POINTER, "out", {"null"});
  expect_fails(build(s, k, nullptr, -1, out_), ALIBI_STATUS_INVALID_ARGUMENT, "num_heads", {"-1"});
}

TEST_F(ErrorDynamicBatching, OffsetsOutsideTheirDomain) {
  Tensor decreasing = offsets(ALIBI_DTYPE_I64, {0, 6, 5});
  Tensor negative = offsets(ALIBI_DTYPE_I64, {-2, 4, 9});
  expect_fails(build(decreasing.get(), kvstarts_.get(), nullptr, 3, out_),
               ALIBI_STATUS_INVALID_ARGUMENT, "seqstarts", {"5"});
  expect_fails(build(seqstarts_.get(), negative.get(), nullptr, 3, out_),
               ALIBI_STATUS_INVALID_ARGUMENT, "kvstarts", {"-2"});
}

TEST_F(ErrorDynamicBatching, OffsetsWithWrongShapeOrDtype) {
  Tensor longer = offsets(ALIBI_DTYPE_I64, {0, 2, 3, 9});
  Tensor as_float = zeros(ALIBI_DTYPE_F32, {3});
  Tensor two_d = zeros(ALIBI_DTYPE_I64, {3, 1});
  expect_fails(build(seqstarts_.get(), longer.get(), nullptr, 3, out_), ALIBI_STATUS_SHAPE_MISMATCH,
               "kvstarts|seqstarts", {"4"});
  expect_fails(build(as_float.get(), kvstarts_.get(), nullptr, 3, out_),
               ALIBI_STATUS_DTYPE_MISMATCH, "seqstarts");
  expect_fails(build(two_d.get(), kvstarts_.get(), nullptr, 3, out_), ALIBI_STATUS_SHAPE_MISMATCH,
               "seqstarts");
}

TEST_F(ErrorDynamicBatching, OutputShapeAndDtype) {
  auto s = seqstarts_.get(), k = kvstarts_.get();
  expect_fails(build(s, k, nullptr, 2, out_), ALIBI_STATUS_SHAPE_MISMATCH, "out|num_heads",
               {"3", "2"});
  expect_fails(build(s, k, nullptr, 3, poisoned(ALIBI_DTYPE_F32, {3, 5, 8})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"8"});
  expect_fails(build(s, k, nullptr, 3, poisoned(ALIBI_DTYPE_F32, {3, 6, 10})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"6"});
  expect_fails(build(s, k, nullptr, 3, poisoned(ALIBI_DTYPE_F32, {15, 10})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"2"});
  expect_fails(build(s, k, nullptr, 3, poisoned(ALIBI_DTYPE_BF16, {3, 5, 10})),
               ALIBI_STATUS_DTYPE_MISMATCH, "out");
}

TEST_F(ErrorDynamicBatching, BadAttnMask) {
  auto s = seqstarts_.get(), k = kvstarts_.get();
  Tensor wrong_columns = zeros(ALIBI_DTYPE_F32, {5, 8});
  Tensor wrong_heads = zeros(ALIBI_DTYPE_F32, {2, 5, 9});
  Tensor wrong_dtype = zeros(ALIBI_DTYPE_BF16, {5, 9});
  expect_fails(build(s, k, wrong_columns.get(), 3, out_), ALIBI_STATUS_SHAPE_MISMATCH, "attn_mask",
               {"8"});
  expect_fails(build(s, k, wrong_heads.get(), 3, out_), ALIBI_STATUS_SHAPE_MISMATCH, "attn_mask",
               {"2"});
  expect_fails(build(s, k, wrong_dtype.get(), 3, out_), ALIBI_STATUS_DTYPE_MISMATCH, "attn_mask");
}

// ------------------------------------------------------------------------------------------
// alibi_build_bloom_bias: attention_mask (2, 5) int64, 4 heads, out (8, 1, 5) f32.

class ErrorBloom : public OutputFixture {
 protected:
  void SetUp() override {
    OutputFixture::SetUp();
    mask_ = zeros(ALIBI_DTYPE_I64, {2, 5});
    out_ = poisoned(ALIBI_DTYPE_F32, {8, 1, 5});
  }
  void expect_fails(alibi_status got, alibi_status want, const char* argument,
                    std::vector<std::string> values = {}) {
    SCOPED_TRACE(std::string("argument ") + argument);
    expect_error(got, want, "alibi_build_bloom_bias", argument, values);
    expect_outputs_untouched();
  }
  alibi_status build(alibi_tensor_t mask, int heads, alibi_tensor_t out) {
    return alibi_build_bloom_bias(ctx_.get(), mask, heads, out);
  }

  Tensor mask_;
  alibi_tensor_t out_ = nullptr;
};

TEST_F(ErrorBloom, ValidArgumentsSucceed) { ASSERT_OK(build(mask_.get(), 4, out_)); }

TEST_F(ErrorBloom, NullPointersAndBadHeadCount) {
  expect_fails(alibi_build_bloom_bias(nullptr, mask_.get(), 4, out_), ALIBI_STATUS_NULL_POINTER,
               "ctx|context", {"null"});
  expect_fails(build(nullptr, 4, out_), ALIBI_STATUS_NULL_POINTER, "attention_mask", {"null"});
  expect_fails(build(mask_.get(), 4, nullptr), ALIBI_STATUS_NULL_POINTER, "out", {"null"});
  expect_fails(build(mask_.get(), -1, out_), ALIBI_STATUS_INVALID_ARGUMENT, "num_heads", {"-1"});
}

TEST_F(ErrorBloom, AttentionMaskShapeAndDtype) {
  Tensor as_float = zeros(ALIBI_DTYPE_F32, {2, 5});
  Tensor one_d = zeros(ALIBI_DTYPE_I64, {10});
  Tensor three_d = zeros(ALIBI_DTYPE_I32, {2, 5, 1});
  expect_fails(build(as_float.get(), 4, out_), ALIBI_STATUS_DTYPE_MISMATCH, "attention_mask");
  expect_fails(build(one_d.get(), 4, out_), ALIBI_STATUS_SHAPE_MISMATCH, "attention_mask", {"1"});
  expect_fails(build(three_d.get(), 4, out_), ALIBI_STATUS_SHAPE_MISMATCH, "attention_mask", {"3"});
}

TEST_F(ErrorBloom, OutputShapeAndDtype) {
  expect_fails(build(mask_.get(), 3, out_), ALIBI_STATUS_SHAPE_MISMATCH, "out|num_heads", {"8"});
  expect_fails(build(mask_.get(), 4, poisoned(ALIBI_DTYPE_F32, {8, 2, 5})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"2"});
  expect_fails(build(mask_.get(), 4, poisoned(ALIBI_DTYPE_F32, {8, 1, 6})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"6"});
  expect_fails(build(mask_.get(), 4, poisoned(ALIBI_DTYPE_F32, {8, 5})),
               ALIBI_STATUS_SHAPE_MISMATCH, "out", {"2"});
  expect_fails(build(mask_.get(), 4, poisoned(ALIBI_DTYPE_I32, {8, 1, 5})),
               ALIBI_STATUS_DTYPE_MISMATCH, "out");
}

}  // namespace
