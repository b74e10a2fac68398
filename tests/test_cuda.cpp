// The CUDA backend beyond what the device-parameterized suites check: why CUDA is unavailable
// (runs everywhere), and on a GPU the fused kernel against the cuBLAS path and the reference,
// determinism, the context's stream, strided device copies, masks shared by contexts, and how
// CUDA failures are reported. Without a GPU the GPU tests are skipped, naming the reason.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <future>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "backward_reference.h"
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
using test::round_to;
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

ref::Problem reference_problem(const Problem& p) {
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
  return r;
}

ref::Result reference(const Problem& p) { return ref::attention(reference_problem(p)); }

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

enum MaskKind { kVarlenCausal, kSharedRows, kSlidingWindow, kVarlenWithEmpty };

const char* mask_kind_name(int kind) {
  static const char* const kNames[] = {"varlen_causal", "shared_rows", "sliding_window",
                                       "varlen_with_empty"};
  return kNames[kind];
}

// Sequences longer than a 64-row tile, Lq > Lk and Lq < Lk.
const std::vector<int32_t> kCuQ{0, 70, 75, 205};
const std::vector<int32_t> kCuK{0, 70, 205, 269};
// The same with sequences without queries, without keys, and without either between them.
const std::vector<int32_t> kEmptyCuQ{0, 70, 70, 75, 80, 210, 210};
const std::vector<int32_t> kEmptyCuK{0, 70, 90, 225, 225, 289, 289};

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
    const std::vector<int32_t>& cu_q = kind == kVarlenWithEmpty ? kEmptyCuQ : kCuQ;
    const std::vector<int32_t>& cu_k = kind == kVarlenWithEmpty ? kEmptyCuK : kCuK;
    const int batch = int(cu_q.size()) - 1;
    p.total_q = cu_q.back();
    p.total_k = cu_k.back();
    if (kind == kSlidingWindow) {
      status = alibi_mask_create_sliding_window(ctx, batch, cu_q.data(), cu_k.data(), 40, 7, &mask);
      p.visible = ref::sliding_window(cu_q, cu_k, 40, 7);
    } else {
      status = alibi_mask_create_varlen(ctx, batch, cu_q.data(), cu_k.data(), 1, &mask);
      p.visible = ref::from_slices(p.total_q, p.total_k, ref::varlen_slices(cu_q, cu_k, true));
    }
    p.positions = ref::varlen_positions(cu_q, cu_k);
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

// ------------------------------------------------------------------------------------ backward

// What a backward call asks for: each gradient's dtype (nullopt: NULL, not computed).
struct GradientRequest {
  std::optional<alibi_dtype> dq, dk, dv;
  bool dslopes = true;
};

GradientRequest all_gradients(alibi_dtype dtype) { return {dtype, dtype, dtype, true}; }

// Gradients read back (empty when not asked for).
struct Gradients {
  std::vector<float> dq, dk, dv, dslopes;
};

// A forward problem with what its backward adds: dout, and the params' softcap, scale and
// per-sequence slopes (of the sequences cu_q) when given.
struct BackwardProblem {
  Problem p;
  std::vector<float> dout;
  float softcap = 0.0f, scale = 0.0f;
  std::vector<float> sequence_slopes;  // (B, Hq); empty: formula slopes
  std::vector<int32_t> cu_q;
  Tensor attn_bias;  // (Hq, Tq, Tk) f32, optional
  std::vector<float> attn_bias_values;

  alibi_attention_params params() const {
    alibi_attention_params result;
    alibi_attention_params_init(&result);
    result.softcap = softcap;
    result.softmax_scale = scale;
    result.attn_bias = attn_bias.get();
    if (!sequence_slopes.empty()) {
      result.slopes = sequence_slopes.data();
      result.slopes_per_batch = 1;
    }
    return result;
  }

  int64_t dslopes_rows() const { return cu_q.empty() ? 1 : int64_t(cu_q.size()) - 1; }

  ref::Problem reference() const {
    ref::Problem r = reference_problem(p);
    r.softcap = softcap;
    if (scale > 0) r.scale = scale;
    if (!sequence_slopes.empty())
      r.slopes = ref::slopes_of_sequences(sequence_slopes, p.heads_q, cu_q);
    if (attn_bias) {
      r.bias_heads = p.heads_q;
      r.attn_bias.assign(attn_bias_values.begin(), attn_bias_values.end());
    }
    return r;
  }
};

void fill_backward_inputs(BackwardProblem& b, uint32_t seed) {
  fill_inputs(b.p, seed);
  b.dout = test::random_values(b.p.q.size(), b.p.dtype, seed + 3);
}

// Per-sequence slopes for the sequences of cu_q, multiples of 2^-8 in (0, 1].
void set_sequence_slopes(BackwardProblem& b, const std::vector<int32_t>& cu_q) {
  b.cu_q = cu_q;
  b.sequence_slopes.clear();
  for (size_t n = 0; n < (cu_q.size() - 1) * size_t(b.p.heads_q); ++n)
    b.sequence_slopes.push_back(float((n * 37 % 256) + 1) / 256.0f);
}

// The forward's results as a forward call returns them (out rounded to q's dtype, lse to f32),
// from the float64 reference: the backward's inputs, and those of its reference.
struct GivenForward {
  std::vector<float> out, lse;
};

GivenForward given_forward(const BackwardProblem& b) {
  const ref::Result exact = ref::attention(b.reference());
  GivenForward given;
  for (double x : exact.out) given.out.push_back(round_to(float(x), b.p.dtype));
  for (double x : exact.lse) given.lse.push_back(float(x));
  return given;
}

// A gradient tensor of the request, every element poisoned; null when not asked for.
Tensor poisoned_gradient(alibi_context_t ctx, std::optional<alibi_dtype> dtype,
                         const std::vector<int64_t>& shape) {
  if (!dtype) return Tensor();
  int64_t count = 1;
  for (int64_t n : shape) count *= n;
  return upload(ctx, *dtype, shape, std::vector<float>(size_t(count), test::kPoison));
}

std::vector<float> download_gradient(const Tensor& t, std::optional<alibi_dtype> dtype,
                                     size_t count) {
  return t ? download(t.get(), *dtype, count) : std::vector<float>();
}

// One alibi_attention_backward call (status returned); the gradients are read back when it
// succeeds.
alibi_status backward(alibi_context_t ctx, const BackwardProblem& b, const GivenForward& given,
                      alibi_mask_t mask, const GradientRequest& r, Gradients* result) {
  const Problem& p = b.p;
  const int64_t d = p.head_dim;
  const std::vector<int64_t> q_shape{p.total_q, p.heads_q, d}, kv_shape{p.total_k, p.heads_kv, d};
  Tensor q = upload(ctx, p.dtype, q_shape, p.q);
  Tensor k = upload(ctx, p.dtype, kv_shape, p.k);
  Tensor v = upload(ctx, p.dtype, kv_shape, p.v);
  Tensor out = upload(ctx, p.dtype, q_shape, given.out);
  Tensor lse = upload(ctx, kF32, {p.heads_q, p.total_q}, given.lse);
  Tensor dout = upload(ctx, p.dtype, q_shape, b.dout);
  Tensor dq = poisoned_gradient(ctx, r.dq, q_shape);
  Tensor dk = poisoned_gradient(ctx, r.dk, kv_shape);
  Tensor dv = poisoned_gradient(ctx, r.dv, kv_shape);
  const std::vector<int64_t> slope_shape =
      b.cu_q.empty() ? std::vector<int64_t>{p.heads_q}
                     : std::vector<int64_t>{b.dslopes_rows(), p.heads_q};
  Tensor dslopes = poisoned_gradient(ctx, r.dslopes ? std::optional(kF32) : std::nullopt,
                                     slope_shape);
  const alibi_attention_params params = b.params();
  const alibi_status status = alibi_attention_backward(
      ctx, q.get(), k.get(), v.get(), mask, &params, out.get(), lse.get(), dout.get(), dq.get(),
      dk.get(), dv.get(), dslopes.get());
  if (status != ALIBI_STATUS_SUCCESS) return status;
  const size_t q_count = size_t(p.total_q * p.heads_q * d), kv_count = size_t(p.total_k * p.heads_kv * d);
  *result = {download_gradient(dq, r.dq, q_count), download_gradient(dk, r.dk, kv_count),
             download_gradient(dv, r.dv, kv_count),
             download_gradient(dslopes, r.dslopes ? std::optional(kF32) : std::nullopt,
                               size_t(b.dslopes_rows() * p.heads_q))};
  return status;
}

Gradients backward_ok(alibi_context_t ctx, const BackwardProblem& b, const GivenForward& given,
                      alibi_mask_t mask, const GradientRequest& r) {
  Gradients result;
  EXPECT_EQ(backward(ctx, b, given, mask, r, &result), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return result;
}

// The reference gradients and which elements get no contribution at all (rows whose lse is
// -inf, keys no such row sees, slopes of sequences without one): those must be exactly 0.
struct ExpectedGradients {
  ref::Gradients gradients;
  std::vector<bool> silent_dq, silent_dk, silent_dslopes;  // dv is silent where dk is
};

ExpectedGradients expected_gradients(const BackwardProblem& b, const GivenForward& given) {
  const ref::Problem r = b.reference();
  const std::vector<double> out(given.out.begin(), given.out.end()),
      lse(given.lse.begin(), given.lse.end()), dout(b.dout.begin(), b.dout.end());
  const size_t dim = size_t(r.head_dim);
  ExpectedGradients e{ref::backward(r, {out, lse}, dout, b.cu_q),
                      std::vector<bool>(size_t(r.total_q * r.heads_q) * dim, true),
                      std::vector<bool>(size_t(r.total_k * r.heads_kv) * dim, true),
                      std::vector<bool>(size_t(b.dslopes_rows() * r.heads_q), true)};
  for (int h = 0; h < r.heads_q; ++h)
    for (int64_t i = 0; i < r.total_q; ++i) {
      if (std::isinf(given.lse[size_t(h * r.total_q + i)])) continue;
      std::fill_n(e.silent_dq.begin() + long(size_t(i * r.heads_q + h) * dim), dim, false);
      e.silent_dslopes[size_t(ref::slope_index(r, b.cu_q, h, i))] = false;
      for (int64_t j = 0; j < r.total_k; ++j)
        if (r.visible.at(i, j))
          std::fill_n(e.silent_dk.begin() + long(size_t(j * r.heads_kv + ref::kv_head_of(r, h)) * dim),
                      dim, false);
    }
  return e;
}

// How far a path's gradient may be from the float64 one. magnitude: the reference's sum of the
// magnitudes of the terms. Both paths accumulate in f32 from exact inputs: f32 rounding in the
// scores, P, dP - Di and the sums, at most 64 f32 epsilons (2^-18) of the magnitude (the CPU's
// bound, test_backward.cpp). The fused path also feeds P and dX to its f16/bf16 tensor-core
// products as a high and a low part, about 22 (f16) or 16 (bf16) significant bits
// (flash_backward.cu): one more rounding of each term, allowed at twice that, 2^-21 or 2^-15 of
// the magnitude. A gradient stored in f16/bf16 is rounded once more: 2^-11 or 2^-8 of its value,
// and at least f16's subnormal spacing, 2^-24. Below all that, 2^-100 (P below f32's normal range
// may flush to 0), as test_backward.cpp allows.
struct Bound {
  alibi_dtype inputs;
  bool fused;
};

double split_roundoff(alibi_dtype inputs) {
  return inputs == kF16 ? std::ldexp(1.0, -21) : inputs == kBF16 ? std::ldexp(1.0, -15) : 0.0;
}

double unit_roundoff(alibi_dtype dtype) {
  return dtype == kF16 ? std::ldexp(1.0, -11) : dtype == kBF16 ? std::ldexp(1.0, -8) : 0.0;
}

double allowed_error(double want, double magnitude, alibi_dtype gradient_dtype, const Bound& bound) {
  const double terms = std::ldexp(1.0, -18) + (bound.fused ? split_roundoff(bound.inputs) : 0.0);
  const double smallest = gradient_dtype == kF16 ? std::ldexp(1.0, -24) : std::ldexp(1.0, -100);
  return terms * magnitude + unit_roundoff(gradient_dtype) * std::fabs(want) + smallest;
}

void expect_gradient_close(const std::vector<float>& got, const std::vector<double>& want,
                           const std::vector<double>& magnitude, const std::vector<bool>& silent,
                           alibi_dtype gradient_dtype, const Bound& bound, const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name << ": no result";
  int bad = 0;
  std::string report;
  for (size_t n = 0; n < want.size(); ++n) {
    const double allowed = allowed_error(want[n], magnitude[n], gradient_dtype, bound);
    const bool ok = silent[n] ? got[n] == 0.0f : std::fabs(got[n] - want[n]) <= allowed;
    if (!ok && bad++ < 8)
      report += name + "[" + std::to_string(n) + "]: got " + std::to_string(got[n]) + ", want " +
                std::to_string(want[n]) +
                (silent[n] ? " (no contribution)" : ", allowed " + std::to_string(allowed)) + "\n";
  }
  EXPECT_EQ(bad, 0) << name << " (" << dtype_name(gradient_dtype) << "):\n" << report;
}

void expect_gradients_match(const Gradients& got, const ExpectedGradients& want,
                            const GradientRequest& r, const Bound& bound, const std::string& what) {
  const ref::Gradients& g = want.gradients;
  EXPECT_EQ(got.dq.empty(), !r.dq) << what;
  EXPECT_EQ(got.dk.empty(), !r.dk) << what;
  EXPECT_EQ(got.dv.empty(), !r.dv) << what;
  if (r.dq) expect_gradient_close(got.dq, g.dq, g.dq_abs, want.silent_dq, *r.dq, bound, what + " dq");
  if (r.dk) expect_gradient_close(got.dk, g.dk, g.dk_abs, want.silent_dk, *r.dk, bound, what + " dk");
  if (r.dv) expect_gradient_close(got.dv, g.dv, g.dv_abs, want.silent_dk, *r.dv, bound, what + " dv");
  if (r.dslopes)
    expect_gradient_close(got.dslopes, g.dslopes, g.dslopes_abs, want.silent_dslopes, kF32, bound,
                          what + " dslopes");
}

// An f32 gradient rounded to dtype is the dtype gradient, bit for bit: each is the same f32 sum,
// rounded once (or not at all).
void expect_rounds_to(const std::vector<float>& f32, const std::vector<float>& rounded,
                      alibi_dtype dtype, const std::string& what) {
  ASSERT_EQ(f32.size(), rounded.size()) << what;
  int differing = 0;
  for (size_t n = 0; n < f32.size(); ++n)
    differing += test::float_to_bits(round_to(f32[n], dtype)) != test::float_to_bits(rounded[n]);
  EXPECT_EQ(differing, 0) << what << ": the f32 gradient does not round to the " << dtype_name(dtype)
                          << " one";
}

void expect_bitwise_equal(const Gradients& a, const Gradients& b, const std::string& what) {
  for (auto [x, y, name] : {std::tuple{&a.dq, &b.dq, "dq"}, std::tuple{&a.dk, &b.dk, "dk"},
                            std::tuple{&a.dv, &b.dv, "dv"},
                            std::tuple{&a.dslopes, &b.dslopes, "dslopes"}}) {
    ASSERT_EQ(x->size(), y->size()) << what << " " << name;
    EXPECT_EQ(std::memcmp(x->data(), y->data(), x->size() * sizeof(float)), 0)
        << what << " " << name << ": not bitwise identical";
  }
}

// A backward problem on one of make_mask's masks: GQA 4/2; per-sequence slopes on the varlen
// masks, softcap (with scale 1, so that it bites) on the ranges, positions set after creation
// (the device mask made again) on the sliding window.
BackwardProblem backward_problem(alibi_context_t ctx, alibi_dtype dtype, int head_dim, int kind,
                                 Mask* mask) {
  BackwardProblem b;
  b.p.dtype = dtype;
  b.p.head_dim = head_dim;
  *mask = make_mask(ctx, kind, b.p);
  if (kind == kVarlenCausal) set_sequence_slopes(b, kCuQ);
  if (kind == kVarlenWithEmpty) set_sequence_slopes(b, kEmptyCuQ);
  if (kind == kSharedRows) {
    b.softcap = 2.0f;
    b.scale = 1.0f;
  }
  if (kind == kSlidingWindow) {
    b.p.positions = {test::random_positions(size_t(b.p.total_q), 31, -300, 300),
                     test::random_positions(size_t(b.p.total_k), 32, -300, 300)};
    EXPECT_EQ(alibi_mask_set_positions(mask->get(), b.p.positions.q.data(),
                                       b.p.positions.k.data()),
              ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
  }
  fill_backward_inputs(b, uint32_t(head_dim * 10 + kind));
  return b;
}

class CudaBackwardPathsTest
    : public CudaTest,
      public ::testing::WithParamInterface<std::tuple<alibi_dtype, int, int>> {};

// Both paths against the float64 reference and against each other, every gradient poisoned
// first: all gradients in the input dtype; then dq and dv in f32 with dk and dslopes NULL, whose
// values must round to the first call's.
TEST_P(CudaBackwardPathsTest, FusedAndCublasMatchTheReferenceAndEachOther) {
  const auto [dtype, head_dim, kind] = GetParam();
  Mask mask;
  const BackwardProblem b = backward_problem(ctx_.get(), dtype, head_dim, kind, &mask);
  const GivenForward given = given_forward(b);
  const ExpectedGradients want = expected_gradients(b, given);
  const GradientRequest in_dtype = all_gradients(dtype);
  const GradientRequest in_f32{kF32, std::nullopt, kF32, false};
  Gradients results[2];
  for (const bool fused : {true, false}) {
    const std::string which = fused ? "fused" : "cublas";
    ForcedPath path(which.c_str());
    const Bound bound{dtype, fused};
    const Gradients all = backward_ok(ctx_.get(), b, given, mask.get(), in_dtype);
    expect_gradients_match(all, want, in_dtype, bound, which);
    const Gradients some = backward_ok(ctx_.get(), b, given, mask.get(), in_f32);
    expect_gradients_match(some, want, in_f32, bound, which + " f32");
    expect_rounds_to(some.dq, all.dq, dtype, which + " dq");
    expect_rounds_to(some.dv, all.dv, dtype, which + " dv");
    results[fused ? 0 : 1] = all;
  }
  // Each is within its bound of the reference, so they are within the sum of both bounds of each
  // other: the fused bound with the magnitudes doubled covers it.
  const Bound fused{dtype, true};
  const Gradients& cublas = results[1];
  auto as_double = [](const std::vector<float>& v) { return std::vector<double>(v.begin(), v.end()); };
  const ref::Gradients& g = want.gradients;
  auto twice = [](std::vector<double> v) {
    for (double& x : v) x *= 2.0;
    return v;
  };
  expect_gradient_close(results[0].dq, as_double(cublas.dq), twice(g.dq_abs), want.silent_dq, dtype,
                        fused, "fused vs cublas dq");
  expect_gradient_close(results[0].dk, as_double(cublas.dk), twice(g.dk_abs), want.silent_dk, dtype,
                        fused, "fused vs cublas dk");
  expect_gradient_close(results[0].dv, as_double(cublas.dv), twice(g.dv_abs), want.silent_dk, dtype,
                        fused, "fused vs cublas dv");
  expect_gradient_close(results[0].dslopes, as_double(cublas.dslopes), twice(g.dslopes_abs),
                        want.silent_dslopes, kF32, fused, "fused vs cublas dslopes");
}

INSTANTIATE_TEST_SUITE_P(
    All, CudaBackwardPathsTest,
    ::testing::Combine(::testing::Values(kF16, kBF16), ::testing::Values(64, 80, 128, 256),
                       ::testing::Values(kVarlenCausal, kSharedRows, kSlidingWindow,
                                         kVarlenWithEmpty)),
    [](const ::testing::TestParamInfo<CudaBackwardPathsTest::ParamType>& info) {
      return dtype_name(std::get<0>(info.param)) + "_d" + std::to_string(std::get<1>(info.param)) +
             "_" + mask_kind_name(std::get<2>(info.param));
    });

// What the fused kernel does not take runs on the cuBLAS path by default: f32 inputs with an
// attn_bias (-inf on every 5th cell), head_dim 320 in bf16.
TEST_F(CudaTest, BackwardOfWhatOnlyCublasTakes) {
  for (const auto [dtype, head_dim, with_bias] :
       {std::tuple{kF32, 48, true}, std::tuple{kBF16, 320, false}}) {
    SCOPED_TRACE(dtype_name(dtype) + " d" + std::to_string(head_dim));
    BackwardProblem b;
    b.p.dtype = dtype;
    b.p.head_dim = head_dim;
    Mask mask = make_mask(ctx_.get(), kSharedRows, b.p);
    fill_backward_inputs(b, 41);
    if (with_bias) {
      b.attn_bias_values = test::random_floats(size_t(b.p.heads_q * b.p.total_q * b.p.total_k), 42);
      for (size_t cell = 0; cell < b.attn_bias_values.size(); cell += 5)
        b.attn_bias_values[cell] = -std::numeric_limits<float>::infinity();
      b.attn_bias = upload(ctx_.get(), kF32, {b.p.heads_q, b.p.total_q, b.p.total_k},
                           b.attn_bias_values);
    }
    const GivenForward given = given_forward(b);
    const GradientRequest r = all_gradients(dtype);
    expect_gradients_match(backward_ok(ctx_.get(), b, given, mask.get(), r),
                           expected_gradients(b, given), r, {dtype, false}, "auto");
  }
}

TEST_F(CudaTest, ForcedFusedBackwardRejectsWhatItDoesNotTake) {
  BackwardProblem b;
  b.p.dtype = kF32;
  Mask mask = make_mask(ctx_.get(), kVarlenCausal, b.p);
  fill_backward_inputs(b, 51);
  Gradients unused;
  ForcedPath path("fused");
  const GivenForward f32_given = given_forward(b);
  EXPECT_EQ(backward(ctx_.get(), b, f32_given, mask.get(), all_gradients(kF32), &unused),
            ALIBI_STATUS_UNSUPPORTED);
  EXPECT_NE(std::string(alibi_last_error_message()).find("f32"), std::string::npos)
      << alibi_last_error_message();
  b.p.dtype = kF16;
  fill_backward_inputs(b, 52);
  b.attn_bias_values.assign(size_t(b.p.heads_q * b.p.total_q * b.p.total_k), 0.5f);
  b.attn_bias = upload(ctx_.get(), kF32, {b.p.heads_q, b.p.total_q, b.p.total_k},
                       b.attn_bias_values);
  const GivenForward f16_given = given_forward(b);
  EXPECT_EQ(backward(ctx_.get(), b, f16_given, mask.get(), all_gradients(kF16), &unused),
            ALIBI_STATUS_UNSUPPORTED);
  EXPECT_NE(std::string(alibi_last_error_message()).find("attn_bias"), std::string::npos)
      << alibi_last_error_message();
  ForcedPath bogus("fastest");
  EXPECT_EQ(backward(ctx_.get(), b, f16_given, mask.get(), all_gradients(kF16), &unused),
            ALIBI_STATUS_INVALID_ARGUMENT);
}

TEST_F(CudaTest, BackwardRunsAreBitwiseIdenticalOnBothPaths) {
  for (const char* which : {"fused", "cublas"}) {
    SCOPED_TRACE(which);
    ForcedPath path(which);
    Mask mask;
    BackwardProblem b = backward_problem(ctx_.get(), kBF16, 128, kSharedRows, &mask);
    const GivenForward given = given_forward(b);
    const Gradients first = backward_ok(ctx_.get(), b, given, mask.get(), all_gradients(kBF16));
    for (int run = 0; run < 2; ++run)
      expect_bitwise_equal(backward_ok(ctx_.get(), b, given, mask.get(), all_gradients(kBF16)),
                           first, "run " + std::to_string(run + 2));
  }
}

// Masks with no query rows or no keys at all: every wanted gradient is still written (0), and a
// call that wants none returns without touching anything.
TEST_F(CudaTest, BackwardWithoutRowsOrKeysWritesZeros) {
  for (const char* which : {"fused", "cublas"}) {
    ForcedPath path(which);
    for (const auto& [cu_q, cu_k] : {std::pair{std::vector<int32_t>{0, 0}, std::vector<int32_t>{0, 75}},
                                     std::pair{std::vector<int32_t>{0, 70}, std::vector<int32_t>{0, 0}}}) {
      SCOPED_TRACE(std::string(which) + " Tq " + std::to_string(cu_q.back()) + " Tk " +
                   std::to_string(cu_k.back()));
      BackwardProblem b;
      b.p.total_q = cu_q.back();
      b.p.total_k = cu_k.back();
      alibi_mask_t raw = nullptr;
      ASSERT_OK(alibi_mask_create_varlen(ctx_.get(), 1, cu_q.data(), cu_k.data(), 1, &raw));
      Mask mask(raw);
      b.p.visible = ref::from_slices(b.p.total_q, b.p.total_k, ref::varlen_slices(cu_q, cu_k, true));
      b.p.positions = ref::varlen_positions(cu_q, cu_k);
      fill_backward_inputs(b, 61);
      const GivenForward given = given_forward(b);
      const Gradients got = backward_ok(ctx_.get(), b, given, mask.get(), all_gradients(kF16));
      for (const std::vector<float>* gradient : {&got.dq, &got.dk, &got.dv, &got.dslopes})
        EXPECT_EQ(std::count(gradient->begin(), gradient->end(), 0.0f), long(gradient->size()));
      Gradients none;
      EXPECT_EQ(backward(ctx_.get(), b, given, mask.get(), {std::nullopt, std::nullopt, std::nullopt, false},
                         &none),
                ALIBI_STATUS_SUCCESS);
    }
  }
}

}  // namespace
