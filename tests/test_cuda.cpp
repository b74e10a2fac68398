// The CUDA backend beyond what the device-parameterized suites check: why CUDA is unavailable
// (runs everywhere), and on a GPU the fused kernel against the cuBLAS path and the reference,
// determinism, the context's stream, strided device copies, masks shared by contexts, and how
// CUDA failures are reported (the CUDA backward, both paths included, is tested in
// test_backward.cpp). Without a GPU the GPU tests are skipped, naming the reason.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <future>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "reference.h"
#include "test_util.h"

#ifdef ALIBI_TESTS_WITH_CUDA_RUNTIME
#include <cuda_runtime.h>
#endif

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;

// ------------------------------------------------------------------------------- availability

TEST(CudaAvailability, UnavailableCudaSaysWhy) {
  if (alibi_device_count(ALIBI_DEVICE_CUDA) > 0) GTEST_SKIP() << "a CUDA device is available";
  alibi_context_t ctx = nullptr;
  EXPECT_EQ(alibi_context_create(ALIBI_DEVICE_CUDA, 0, &ctx), ALIBI_STATUS_BACKEND_UNAVAILABLE);
  EXPECT_EQ(ctx, nullptr);
  const std::string message = alibi_last_error_message();
  bool says_why = false;
  for (const char* why : {"no CUDA backend library", "no CUDA driver", "no CUDA device",
                          "the CUDA driver supports", "CUDA is not usable"})
    says_why = says_why || message.find(why) != std::string::npos;
  EXPECT_TRUE(says_why) << message;
  ASSERT_EQ(alibi_context_create(ALIBI_DEVICE_AUTO, 0, &ctx), ALIBI_STATUS_SUCCESS);
  alibi_device device = ALIBI_DEVICE_AUTO;
  EXPECT_EQ(alibi_context_get_device(ctx, &device), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(device, ALIBI_DEVICE_CPU);
  alibi_context_destroy(ctx);
}

// ------------------------------------------------------------------------------------ helpers

using test::download;
using test::dtype_name;
using test::ForcedPath;
using test::upload;

// An attention problem: inputs exact in dtype, a mask and what the reference needs.
struct Problem {
  alibi_dtype dtype = kF16;
  int64_t total_q = 0, total_k = 0;
  int heads_q = 4, heads_kv = 2, head_dim = 64;
  std::vector<float> q, k, v;
  std::vector<ref::Slice> slices;  // ranges masks: empty for varlen/window masks
  ref::Visibility visible;
  ref::Positions positions;
};

struct Outputs {
  std::vector<float> out, lse;
};

void fill_inputs(Problem& p, uint32_t seed) {
  auto values = [&](int64_t tokens, int heads, uint32_t s) {
    return test::random_values(size_t(tokens * heads * p.head_dim), p.dtype, s);
  };
  p.q = values(p.total_q, p.heads_q, seed);
  p.k = values(p.total_k, p.heads_kv, seed + 1);
  p.v = values(p.total_k, p.heads_kv, seed + 2);
}

// One forward call (status returned); out and lse are filled when it succeeds.
alibi_status forward(alibi_context_t ctx, const Problem& p, alibi_mask_t mask,
                     const alibi_attention_params* params, Outputs* result) {
  const int64_t d = p.head_dim;
  Tensor q = upload(ctx, p.dtype, {p.total_q, p.heads_q, d}, p.q);
  Tensor k = upload(ctx, p.dtype, {p.total_k, p.heads_kv, d}, p.k);
  Tensor v = upload(ctx, p.dtype, {p.total_k, p.heads_kv, d}, p.v);
  const size_t out_count = size_t(p.total_q * p.heads_q * d),
               lse_count = size_t(p.heads_q * p.total_q);
  Tensor out = test::poisoned(ctx, p.dtype, {p.total_q, p.heads_q, d});
  Tensor lse = test::poisoned(ctx, kF32, {p.heads_q, p.total_q});
  const alibi_status status =
      alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask, params, out.get(), lse.get());
  if (status == ALIBI_STATUS_SUCCESS)
    *result = {download(out.get(), p.dtype, out_count), download(lse.get(), kF32, lse_count)};
  return status;
}

Outputs forward_ok(alibi_context_t ctx, const Problem& p, alibi_mask_t mask,
                   const alibi_attention_params* params = nullptr) {
  Outputs result;
  EXPECT_EQ(forward(ctx, p, mask, params, &result), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return result;
}

ref::Result reference(const Problem& p) {
  ref::Problem r;
  r.total_q = p.total_q;
  r.total_k = p.total_k;
  r.heads_q = p.heads_q;
  r.heads_kv = p.heads_kv;
  r.head_dim = p.head_dim;
  r.q.assign(p.q.begin(), p.q.end());
  r.k.assign(p.k.begin(), p.k.end());
  r.v.assign(p.v.begin(), p.v.end());
  r.visible = p.visible;
  r.positions = p.positions;
  r.slopes = ref::slopes_of_rows(ref::formula_slopes(p.heads_q, 8.0f), p.total_q);
  r.scale = 1.0 / std::sqrt(double(p.head_dim));
  return ref::attention(r);
}

// test_attention.cpp's bound: f32 accumulation, the output rounded once to dtype.
double tolerance(double want, alibi_dtype dtype) {
  const double rounding = dtype == kF16    ? std::ldexp(1.0, -10)
                          : dtype == kBF16 ? std::ldexp(1.0, -7)
                                           : 0.0;
  return 2e-5 + (1e-5 + rounding) * std::fabs(want);
}

// Counts elements outside the bound (empty rows must be exactly 0 with lse -inf).
void expect_close(const Outputs& got, const std::vector<double>& want_out,
                  const std::vector<double>& want_lse, alibi_dtype dtype, const std::string& what) {
  ASSERT_EQ(got.out.size(), want_out.size()) << what;
  ASSERT_EQ(got.lse.size(), want_lse.size()) << what;
  int bad = 0;
  std::string first;
  auto check = [&](double x, double want, alibi_dtype type, const char* name, size_t index) {
    const bool ok = std::isinf(want) ? x == want : std::fabs(x - want) <= tolerance(want, type);
    if (!ok && bad++ == 0)
      first = std::string(name) + "[" + std::to_string(index) + "] = " + std::to_string(x) +
              ", want " + std::to_string(want);
  };
  for (size_t i = 0; i < want_out.size(); ++i) check(got.out[i], want_out[i], dtype, "out", i);
  for (size_t i = 0; i < want_lse.size(); ++i) check(got.lse[i], want_lse[i], kF32, "lse", i);
  EXPECT_EQ(bad, 0) << what << ": first " << first;
}

void expect_matches(const Outputs& got, const ref::Result& want, alibi_dtype dtype,
                    const std::string& what) {
  expect_close(got, want.out, want.lse, dtype, what);
}

void expect_bitwise_equal(const Outputs& a, const Outputs& b) {
  ASSERT_EQ(a.out.size(), b.out.size());
  ASSERT_EQ(a.lse.size(), b.lse.size());
  EXPECT_EQ(std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)), 0);
  EXPECT_EQ(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)), 0);
}

// ------------------------------------------------------------------------------------ masks

enum MaskKind { kVarlenCausal, kSharedRows, kSlidingWindow };

const char* mask_kind_name(int kind) {
  static const char* const kNames[] = {"varlen_causal", "shared_rows", "sliding_window"};
  return kNames[kind];
}

// Sequences longer than a 64-row tile, Lq > Lk and Lq < Lk.
const std::vector<int32_t> kCuQ{0, 70, 75, 205};
const std::vector<int32_t> kCuK{0, 70, 205, 269};

// Several slices of every type share rows, out of key order.
const std::vector<ref::Slice> kSharedSlices{{5, 85, 120, 200, ref::kInvCausal},
                                            {0, 100, 60, 120, ref::kCausal},
                                            {0, 100, 0, 60, ref::kFull},
                                            {85, 140, 120, 210, ref::kBiCausal}};

Mask make_mask(alibi_context_t ctx, int kind, Problem& p) {
  alibi_mask_t mask = nullptr;
  alibi_status status = ALIBI_STATUS_SUCCESS;
  if (kind == kSharedRows) {
    p.total_q = 150;
    p.total_k = 215;
    p.slices = kSharedSlices;
    std::vector<int32_t> q_ranges, k_ranges, types;
    for (const ref::Slice& s : p.slices) {
      q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
      k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
      types.push_back(s.type);
    }
    status = alibi_mask_create_ranges(ctx, int(p.slices.size()), q_ranges.data(), k_ranges.data(),
                                      types.data(), p.total_q, p.total_k, &mask);
    p.visible = ref::from_slices(p.total_q, p.total_k, p.slices);
    p.positions = ref::stream_positions(p.total_q, p.total_k);
  } else {
    const int batch = int(kCuQ.size()) - 1;
    p.total_q = kCuQ.back();
    p.total_k = kCuK.back();
    if (kind == kVarlenCausal) {
      status = alibi_mask_create_varlen(ctx, batch, kCuQ.data(), kCuK.data(), 1, &mask);
      p.visible = ref::from_slices(p.total_q, p.total_k, ref::varlen_slices(kCuQ, kCuK, true));
    } else {
      status = alibi_mask_create_sliding_window(ctx, batch, kCuQ.data(), kCuK.data(), 40, 7, &mask);
      p.visible = ref::sliding_window(kCuQ, kCuK, 40, 7);
    }
    p.positions = ref::varlen_positions(kCuQ, kCuK);
  }
  EXPECT_EQ(status, ALIBI_STATUS_SUCCESS) << alibi_last_error_message();
  return Mask(mask);
}

// -------------------------------------------------------------------------------- GPU tests

class CudaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string why = test::unavailable_reason(ALIBI_DEVICE_CUDA);
    if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
    ctx_ = test::make_context(ALIBI_DEVICE_CUDA);
  }
  Context ctx_;
};

class CudaPathsTest : public CudaTest,
                      public ::testing::WithParamInterface<std::tuple<alibi_dtype, int, int>> {};

// Both paths against the reference and against each other: f16/bf16, head dims of each fused
// tile shape (and zero-padded ones), masks with long sequences, shared rows and windows.
TEST_P(CudaPathsTest, FusedAndCublasMatchTheReferenceAndEachOther) {
  const auto [dtype, head_dim, kind] = GetParam();
  Problem p;
  p.dtype = dtype;
  p.head_dim = head_dim;
  Mask mask = make_mask(ctx_.get(), kind, p);
  fill_inputs(p, uint32_t(head_dim * 10 + kind));
  const ref::Result want = reference(p);
  Outputs fused, cublas;
  {
    ForcedPath path("fused");
    fused = forward_ok(ctx_.get(), p, mask.get());
  }
  {
    ForcedPath path("cublas");
    cublas = forward_ok(ctx_.get(), p, mask.get());
  }
  expect_matches(fused, want, dtype, "fused");
  expect_matches(cublas, want, dtype, "cublas");
  const std::vector<double> cublas_out(cublas.out.begin(), cublas.out.end());
  const std::vector<double> cublas_lse(cublas.lse.begin(), cublas.lse.end());
  expect_close(fused, cublas_out, cublas_lse, dtype, "fused vs cublas");
}

INSTANTIATE_TEST_SUITE_P(
    All, CudaPathsTest,
    ::testing::Combine(::testing::Values(kF16, kBF16), ::testing::Values(40, 64, 96, 128, 256),
                       ::testing::Values(kVarlenCausal, kSharedRows, kSlidingWindow)),
    [](const ::testing::TestParamInfo<CudaPathsTest::ParamType>& info) {
      return dtype_name(std::get<0>(info.param)) + "_d" + std::to_string(std::get<1>(info.param)) +
             "_" + mask_kind_name(std::get<2>(info.param));
    });

// The cuBLAS path cuts long key ranges into pieces (fewer keys per piece with more heads): its
// results must not depend on where the cuts fall.
TEST_F(CudaTest, CublasPathMergesKeyPieces) {
  Problem p;
  p.dtype = kF32;
  p.heads_q = p.heads_kv = 512;
  p.head_dim = 8;
  const std::vector<int32_t> cu_q{0, 40, 64}, cu_k{0, 1500, 2100};
  p.total_q = cu_q.back();
  p.total_k = cu_k.back();
  alibi_mask_t raw = nullptr;
  ASSERT_EQ(alibi_mask_create_varlen(ctx_.get(), 2, cu_q.data(), cu_k.data(), 1, &raw),
            ALIBI_STATUS_SUCCESS);
  Mask mask(raw);
  p.visible = ref::from_slices(p.total_q, p.total_k, ref::varlen_slices(cu_q, cu_k, true));
  p.positions = ref::varlen_positions(cu_q, cu_k);
  fill_inputs(p, 7);
  ForcedPath path("cublas");
  expect_matches(forward_ok(ctx_.get(), p, mask.get()), reference(p), kF32, "cublas");
}

TEST_F(CudaTest, ForcedFusedPathRejectsWhatItDoesNotTake) {
  Problem p;
  Mask mask = make_mask(ctx_.get(), kVarlenCausal, p);
  Outputs unused;
  ForcedPath path("fused");
  p.dtype = kF32;
  fill_inputs(p, 1);
  EXPECT_EQ(forward(ctx_.get(), p, mask.get(), nullptr, &unused), ALIBI_STATUS_UNSUPPORTED);
  EXPECT_NE(std::string(alibi_last_error_message()).find("f32"), std::string::npos);
  p.dtype = kF16;
  p.head_dim = 320;
  fill_inputs(p, 2);
  EXPECT_EQ(forward(ctx_.get(), p, mask.get(), nullptr, &unused), ALIBI_STATUS_UNSUPPORTED);
  ForcedPath bogus("fastest");
  EXPECT_EQ(forward(ctx_.get(), p, mask.get(), nullptr, &unused), ALIBI_STATUS_INVALID_ARGUMENT);
}

// head_dim above the fused kernel's 256 takes the cuBLAS path by default.
TEST_F(CudaTest, LargeHeadDimUsesTheCublasPath) {
  Problem p;
  p.dtype = kBF16;
  p.head_dim = 320;
  Mask mask = make_mask(ctx_.get(), kSharedRows, p);
  fill_inputs(p, 3);
  expect_matches(forward_ok(ctx_.get(), p, mask.get()), reference(p), kBF16, "d320");
}

TEST_F(CudaTest, DeterministicRunsAreBitwiseIdenticalOnBothPaths) {
  for (const char* which : {"fused", "cublas"}) {
    SCOPED_TRACE(which);
    ForcedPath path(which);
    Problem p;
    p.dtype = kBF16;
    p.head_dim = 128;
    Mask mask = make_mask(ctx_.get(), kSharedRows, p);
    fill_inputs(p, 4);
    alibi_attention_params params;
    alibi_attention_params_init(&params);
    params.deterministic = 1;
    const Outputs first = forward_ok(ctx_.get(), p, mask.get(), &params);
    for (int run = 0; run < 3; ++run)
      expect_bitwise_equal(forward_ok(ctx_.get(), p, mask.get(), &params), first);
  }
}

// A mask made with one context is used by another context of the same device, after its own
// context is gone.
TEST_F(CudaTest, MasksServeEveryContextOfTheirDevice) {
  Problem p;
  Mask mask;
  {
    Context maker = test::make_context(ALIBI_DEVICE_CUDA);
    mask = make_mask(maker.get(), kSlidingWindow, p);
  }
  fill_inputs(p, 5);
  expect_matches(forward_ok(ctx_.get(), p, mask.get()), reference(p), p.dtype, "other context");
}

TEST_F(CudaTest, ContextReportsCuda) {
  alibi_device device = ALIBI_DEVICE_AUTO;
  ASSERT_OK(alibi_context_get_device(ctx_.get(), &device));
  EXPECT_EQ(device, ALIBI_DEVICE_CUDA);
  EXPECT_GE(alibi_device_count(ALIBI_DEVICE_CUDA), 1);
  EXPECT_EQ(alibi_device_count(ALIBI_DEVICE_AUTO), alibi_device_count(ALIBI_DEVICE_CUDA));
  ASSERT_OK(alibi_context_set_num_threads(ctx_.get(), 3));  // accepted and ignored
  ASSERT_OK(alibi_context_synchronize(ctx_.get()));
}

// Copies through strided views of device memory touch exactly the view's elements.
TEST_F(CudaTest, StridedCopiesHonourStrides) {
  for (alibi_dtype dtype : {kF32, kBF16, ALIBI_DTYPE_I64}) {
    SCOPED_TRACE(int(dtype));
    const size_t size = dtype == ALIBI_DTYPE_I64 ? 8 : dtype == kF32 ? 4 : 2;
    std::vector<uint8_t> background(24 * size, 0xAB);
    test::DeviceBuffer buffer(ctx_.get(), dtype, size, background);
    const int64_t shape[2] = {2, 3}, strides[2] = {12, 2};  // elements 0, 2, 4, 12, 14, 16
    alibi_tensor_t raw = nullptr;
    ASSERT_OK(alibi_tensor_wrap(ctx_.get(), dtype, 2, shape, strides, buffer.data(), &raw));
    Tensor view(raw);
    std::vector<uint8_t> values(6 * size);
    for (size_t i = 0; i < values.size(); ++i) values[i] = uint8_t(i + 1);
    ASSERT_OK(alibi_tensor_copy_from_host(view.get(), values.data(), values.size()));
    std::vector<uint8_t> expected = background;
    const int places[6] = {0, 2, 4, 12, 14, 16};
    for (int e = 0; e < 6; ++e)
      std::memcpy(&expected[size_t(places[e]) * size], &values[size_t(e) * size], size);
    EXPECT_EQ(buffer.read(), expected);
    std::vector<uint8_t> back(values.size());
    ASSERT_OK(alibi_tensor_copy_to_host(view.get(), back.data(), back.size()));
    EXPECT_EQ(back, values);
  }
}

// A CUDA failure comes back as a status with CUDA's own words; here cudaMalloc's (the one
// failure a test can cause without harming the device).
TEST_F(CudaTest, CudaFailuresCarryTheCudaMessage) {
  const int64_t shape[1] = {int64_t(1) << 50};
  alibi_tensor_t t = nullptr;
  EXPECT_EQ(alibi_tensor_create(ctx_.get(), ALIBI_DTYPE_F32, 1, shape, &t),
            ALIBI_STATUS_OUT_OF_MEMORY);
  EXPECT_EQ(t, nullptr);
  const std::string message = alibi_last_error_message();
  EXPECT_NE(message.find("CUDA error: out of memory"), std::string::npos) << message;
  EXPECT_NE(message.find("cudaMalloc"), std::string::npos) << message;
  // The context still works.
  Problem p;
  Mask mask = make_mask(ctx_.get(), kVarlenCausal, p);
  fill_inputs(p, 6);
  expect_matches(forward_ok(ctx_.get(), p, mask.get()), reference(p), p.dtype, "after OOM");
}

// 65,536 query heads, the header's limit: one more than a launch grid's y axis holds, so the
// kernels run in two launches of heads. Both paths, with GQA and MQA-like grouping.
TEST_F(CudaTest, SixtyFiveThousandFiveHundredThirtySixHeads) {
  for (const alibi_dtype dtype : {kF16, kF32}) {
    Problem p;
    p.dtype = dtype;
    p.heads_q = 65536;
    p.heads_kv = 4096;
    p.head_dim = 8;
    const std::vector<int32_t> cu_q{0, 3}, cu_k{0, 5};
    alibi_mask_t raw = nullptr;
    ASSERT_OK(alibi_mask_create_varlen(ctx_.get(), 1, cu_q.data(), cu_k.data(), 1, &raw));
    Mask mask(raw);
    p.total_q = 3;
    p.total_k = 5;
    p.visible = ref::from_slices(p.total_q, p.total_k, ref::varlen_slices(cu_q, cu_k, true));
    p.positions = ref::varlen_positions(cu_q, cu_k);
    fill_inputs(p, 11);
    expect_matches(forward_ok(ctx_.get(), p, mask.get()), reference(p), dtype,
                   dtype_name(dtype) + " 65536 heads");
  }
}

// Every kernel, copy and cuBLAS call of a forward call goes to the context's stream: with that
// stream held by a host function, the call still returns (nothing waited for the stream) and
// its results appear once the stream is released.
TEST_F(CudaTest, WorkRunsOnTheContextStream) {
#ifndef ALIBI_TESTS_WITH_CUDA_RUNTIME
  GTEST_SKIP() << "the tests were built without the CUDA runtime";
#else
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_OK(alibi_context_set_stream(ctx_.get(), stream));
  for (const char* which : {"fused", "cublas"}) {
    SCOPED_TRACE(which);
    ForcedPath path(which);
    Problem p;
    Mask mask = make_mask(ctx_.get(), kSharedRows, p);
    fill_inputs(p, 8);
    const int64_t d = p.head_dim;
    Tensor q = upload(ctx_.get(), p.dtype, {p.total_q, p.heads_q, d}, p.q);
    Tensor k = upload(ctx_.get(), p.dtype, {p.total_k, p.heads_kv, d}, p.k);
    Tensor v = upload(ctx_.get(), p.dtype, {p.total_k, p.heads_kv, d}, p.v);
    const size_t count = size_t(p.total_q * p.heads_q * d);
    Tensor out = test::poisoned(ctx_.get(), p.dtype, {p.total_q, p.heads_q, d});
    auto call = [&] {
      return alibi_attention_forward(ctx_.get(), q.get(), k.get(), v.get(), mask.get(), nullptr,
                                     out.get(), nullptr);
    };
    ASSERT_OK(call());  // warm-up: first-use allocations happen here
    const std::vector<float> expected = download(out.get(), p.dtype, count);

    std::atomic<bool> release{false};
    ASSERT_EQ(cudaLaunchHostFunc(
                  stream,
                  [](void* flag) {
                    while (!static_cast<std::atomic<bool>*>(flag)->load())
                      std::this_thread::yield();
                  },
                  &release),
              cudaSuccess);
    std::future<alibi_status> status = std::async(std::launch::async, call);
    const bool returned = status.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
    const cudaError_t held = cudaStreamQuery(stream);
    cudaGetLastError();  // cudaErrorNotReady is not a failure: leave no trace of it
    release = true;
    EXPECT_TRUE(returned) << "alibi_attention_forward waited for its stream";
    EXPECT_EQ(status.get(), ALIBI_STATUS_SUCCESS);
    EXPECT_EQ(held, cudaErrorNotReady);
    ASSERT_OK(alibi_context_synchronize(ctx_.get()));
    EXPECT_EQ(cudaStreamQuery(stream), cudaSuccess);
    EXPECT_EQ(download(out.get(), p.dtype, count), expected);
  }
  ASSERT_OK(alibi_context_set_stream(ctx_.get(), nullptr));
  EXPECT_EQ(cudaStreamDestroy(stream), cudaSuccess);
#endif
}

}  // namespace
