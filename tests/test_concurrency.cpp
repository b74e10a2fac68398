// Concurrency (issue 6): 8 threads, each with its own context (their calls sharing the process's
// CPU workers), share read-only masks and input tensors made by another context and run forward
// and the bias builders at once; every result must be bitwise identical to a single-threaded run.
// Contexts start no thread of their own (issue 13). Part of alibi_tests, and built alone as
// alibi_concurrency_tests for ThreadSanitizer (.ci/sanitize).
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr int kThreads = 8;
constexpr int kIterations = 3;
constexpr int64_t kTotalQ = 40, kTotalK = 48, kHeads = 4, kKvHeads = 2, kDim = 16;
// Decode over keys the plan splits into several chunks each (the decode kernel merges a slice's
// chunks on whichever thread scores its last one).
constexpr int32_t kLongCuK[4] = {0, 1100, 1700, 2800};
constexpr int64_t kLongQ = 3, kLongK = kLongCuK[3];

Tensor upload(alibi_context_t ctx, alibi_dtype dtype, std::vector<int64_t> shape, const std::vector<uint8_t>& bytes) {
  alibi_tensor_t t = nullptr;
  EXPECT_EQ(alibi_tensor_create(ctx, dtype, int(shape.size()), shape.data(), &t), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  if (t && !bytes.empty()) EXPECT_EQ(alibi_tensor_copy_from_host(t, bytes.data(), bytes.size()), ALIBI_STATUS_SUCCESS);
  return Tensor(t);
}

std::vector<uint8_t> download(alibi_tensor_t t, size_t bytes) {
  std::vector<uint8_t> data(bytes);
  if (bytes > 0) EXPECT_EQ(alibi_tensor_copy_to_host(t, data.data(), bytes), ALIBI_STATUS_SUCCESS);
  return data;
}

std::vector<uint8_t> random_bytes(size_t count, alibi_dtype dtype, uint32_t seed) {
  const std::vector<float> values = test::random_floats(count, seed);
  std::vector<uint8_t> bytes(count * test::element_size(dtype));
  for (size_t i = 0; i < count; ++i) {
    if (dtype == ALIBI_DTYPE_F32) {
      std::memcpy(&bytes[4 * i], &values[i], 4);
    } else {
      const uint16_t h = test::float_to_bf16_bits(values[i]);
      std::memcpy(&bytes[2 * i], &h, 2);
    }
  }
  return bytes;
}

// The shared, read-only inputs: masks that take the tiled kernel (a 40-row sequence) and the
// decode one (slices of <= 8 rows), q/k/v in f32 and bf16, builder inputs.
struct Shared {
  Context owner = test::make_cpu_context();
  std::vector<Mask> masks;
  std::vector<alibi_dtype> dtypes{ALIBI_DTYPE_F32, ALIBI_DTYPE_BF16};
  std::vector<Tensor> q, k, v;  // per dtype
  Mask long_decode;
  Tensor long_q, long_k, long_v;  // f32
  std::vector<float> slopes{0.5f, 0.25f, 0.125f, 1e-3f};
  Tensor seqstarts, kvstarts, bloom_mask;

  Shared() {
    alibi_context_t ctx = owner.get();
    const int32_t cu_q[3] = {0, 8, 40}, cu_k[3] = {0, 16, 48};
    alibi_mask_t m = nullptr;
    EXPECT_EQ(alibi_mask_create_varlen(ctx, 2, cu_q, cu_k, 1, &m), ALIBI_STATUS_SUCCESS);
    masks.emplace_back(m);
    EXPECT_EQ(alibi_mask_create_sliding_window(ctx, 2, cu_q, cu_k, 7, 2, &m), ALIBI_STATUS_SUCCESS);
    masks.emplace_back(m);
    std::vector<int32_t> q_ranges, k_ranges, types;  // decode: 5 slices of 8 rows
    for (int s = 0; s < 5; ++s) {
      q_ranges.insert(q_ranges.end(), {8 * s, 8 * s + 8});
      k_ranges.insert(k_ranges.end(), {0, 20 + 5 * s});
      types.push_back(s % 4);
    }
    EXPECT_EQ(alibi_mask_create_ranges(ctx, 5, q_ranges.data(), k_ranges.data(), types.data(), kTotalQ, kTotalK, &m),
              ALIBI_STATUS_SUCCESS);
    std::vector<int32_t> positions(kTotalK);
    for (int64_t j = 0; j < kTotalK; ++j) positions[size_t(j)] = int32_t(j * 1000);
    EXPECT_EQ(alibi_mask_set_positions(m, nullptr, positions.data()), ALIBI_STATUS_SUCCESS);
    masks.emplace_back(m);
    for (size_t d = 0; d < dtypes.size(); ++d) {
      q.push_back(upload(ctx, dtypes[d], {kTotalQ, kHeads, kDim}, random_bytes(kTotalQ * kHeads * kDim, dtypes[d], 1 + d)));
      k.push_back(upload(ctx, dtypes[d], {kTotalK, kKvHeads, kDim}, random_bytes(kTotalK * kKvHeads * kDim, dtypes[d], 5 + d)));
      v.push_back(upload(ctx, dtypes[d], {kTotalK, kKvHeads, kDim}, random_bytes(kTotalK * kKvHeads * kDim, dtypes[d], 9 + d)));
    }
    const int32_t long_cu_q[4] = {0, 1, 2, 3};
    EXPECT_EQ(alibi_mask_create_varlen(ctx, 3, long_cu_q, kLongCuK, 1, &m), ALIBI_STATUS_SUCCESS);
    long_decode = Mask(m);
    long_q = upload(ctx, ALIBI_DTYPE_F32, {kLongQ, kHeads, kDim}, random_bytes(kLongQ * kHeads * kDim, ALIBI_DTYPE_F32, 13));
    long_k = upload(ctx, ALIBI_DTYPE_F32, {kLongK, kKvHeads, kDim}, random_bytes(kLongK * kKvHeads * kDim, ALIBI_DTYPE_F32, 14));
    long_v = upload(ctx, ALIBI_DTYPE_F32, {kLongK, kKvHeads, kDim}, random_bytes(kLongK * kKvHeads * kDim, ALIBI_DTYPE_F32, 15));
    const int64_t starts[3] = {0, 5, 12}, kv[3] = {0, 7, 15};
    std::vector<uint8_t> bytes(sizeof starts);
    std::memcpy(bytes.data(), starts, sizeof starts);
    seqstarts = upload(ctx, ALIBI_DTYPE_I64, {3}, bytes);
    std::memcpy(bytes.data(), kv, sizeof kv);
    kvstarts = upload(ctx, ALIBI_DTYPE_I64, {3}, bytes);
    const int32_t attention[12] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1};
    bytes.assign(sizeof attention, 0);
    std::memcpy(bytes.data(), attention, sizeof attention);
    bloom_mask = upload(ctx, ALIBI_DTYPE_I32, {2, 6}, bytes);
  }
};

// The out and lse of a forward of total_q rows, appended to `results`.
void append_forward(alibi_context_t ctx, const Tensor& q, const Tensor& k, const Tensor& v, const Mask& mask,
                    const alibi_attention_params& params, int64_t total_q, alibi_dtype dtype,
                    std::vector<std::vector<uint8_t>>& results) {
  const size_t out_bytes = size_t(total_q * kHeads * kDim) * test::element_size(dtype);
  Tensor out = upload(ctx, dtype, {total_q, kHeads, kDim}, {});
  Tensor lse = upload(ctx, ALIBI_DTYPE_F32, {kHeads, total_q}, {});
  EXPECT_EQ(alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask.get(), &params, out.get(), lse.get()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  results.push_back(download(out.get(), out_bytes));
  results.push_back(download(lse.get(), size_t(kHeads * total_q) * 4));
}

// Every result of one context: out and lse of each (mask, dtype) and of the long decode, and
// the three builders.
std::vector<std::vector<uint8_t>> run_all(alibi_context_t ctx, const Shared& shared) {
  std::vector<std::vector<uint8_t>> results;
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  for (size_t m = 0; m < shared.masks.size(); ++m)
    for (size_t d = 0; d < shared.dtypes.size(); ++d) {
      params.slopes = m == 1 ? shared.slopes.data() : nullptr;
      params.deterministic = int(m % 2);
      append_forward(ctx, shared.q[d], shared.k[d], shared.v[d], shared.masks[m], params, kTotalQ, shared.dtypes[d],
                     results);
    }
  params.slopes = nullptr;
  params.deterministic = 0;
  append_forward(ctx, shared.long_q, shared.long_k, shared.long_v, shared.long_decode, params, kLongQ,
                 ALIBI_DTYPE_F32, results);
  for (const Mask& mask : shared.masks) {
    Tensor bias = upload(ctx, ALIBI_DTYPE_F32, {kHeads, kTotalQ, kTotalK}, {});
    EXPECT_EQ(alibi_build_bias(ctx, mask.get(), int(kHeads), &params, bias.get()), ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    results.push_back(download(bias.get(), size_t(kHeads * kTotalQ * kTotalK) * 4));
  }
  Tensor dynamic = upload(ctx, ALIBI_DTYPE_F16, {kHeads, 12, 16}, {});
  EXPECT_EQ(alibi_build_dynamic_batching_mask(ctx, shared.seqstarts.get(), shared.kvstarts.get(), nullptr,
                                              int(kHeads), dynamic.get()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  results.push_back(download(dynamic.get(), size_t(kHeads * 12 * 16) * 2));
  Tensor bloom = upload(ctx, ALIBI_DTYPE_BF16, {2 * kHeads, 1, 6}, {});
  EXPECT_EQ(alibi_build_bloom_bias(ctx, shared.bloom_mask.get(), int(kHeads), bloom.get()), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  results.push_back(download(bloom.get(), size_t(2 * kHeads * 6) * 2));
  return results;
}

TEST(Concurrency, EightContextsShareMasksAndInputsAndMatchOneThreadBitwise) {
  const Shared shared;
  Context single = test::make_cpu_context();
  ASSERT_OK(alibi_context_set_num_threads(single.get(), 1));
  const std::vector<std::vector<uint8_t>> expected = run_all(single.get(), shared);

  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      alibi_context_t ctx = nullptr;
      if (alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx) != ALIBI_STATUS_SUCCESS ||
          alibi_context_set_num_threads(ctx, 1 + t % 3) != ALIBI_STATUS_SUCCESS) {
        errors[size_t(t)] = alibi_last_error_message();
        ++failures;
        alibi_context_destroy(ctx);
        return;
      }
      for (int i = 0; i < kIterations; ++i) {
        const std::vector<std::vector<uint8_t>> got = run_all(ctx, shared);
        for (size_t r = 0; r < expected.size(); ++r)
          if (r >= got.size() || got[r] != expected[r]) ++mismatches;
        // A failed call on this thread sets only this thread's message.
        alibi_tensor_t none = nullptr;
        if (alibi_tensor_create(ctx, ALIBI_DTYPE_F32, -1, nullptr, &none) != ALIBI_STATUS_INVALID_ARGUMENT ||
            std::string(alibi_last_error_message()).find("ndim = -1") == std::string::npos)
          ++failures;
      }
      alibi_context_destroy(ctx);
    });
  for (std::thread& thread : threads) thread.join();
  for (const std::string& error : errors) EXPECT_EQ(error, "");
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(mismatches.load(), 0) << "results differ from the single-threaded run";
  EXPECT_STREQ(alibi_last_error_message(), "");  // the threads' errors stayed on their threads
}

// Contexts created and destroyed on many threads at once, each running a small forward.
TEST(Concurrency, ContextsCreatedAndDestroyedConcurrently) {
  const Shared shared;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        alibi_context_t ctx = nullptr;
        if (alibi_context_create(ALIBI_DEVICE_AUTO, 0, &ctx) != ALIBI_STATUS_SUCCESS) {
          ++failures;
          continue;
        }
        alibi_device device;
        if (alibi_context_get_device(ctx, &device) != ALIBI_STATUS_SUCCESS) ++failures;
        if (device == ALIBI_DEVICE_CPU) {
          alibi_context_set_num_threads(ctx, 2);
          alibi_tensor_t out = nullptr;
          const int64_t shape[3] = {kTotalQ, kHeads, kDim};
          if (alibi_tensor_create(ctx, ALIBI_DTYPE_F32, 3, shape, &out) != ALIBI_STATUS_SUCCESS ||
              alibi_attention_forward(ctx, shared.q[0].get(), shared.k[0].get(), shared.v[0].get(),
                                      shared.masks[size_t((t + i) % 3)].get(), nullptr, out, nullptr) !=
                  ALIBI_STATUS_SUCCESS)
            ++failures;
          alibi_tensor_destroy(out);
        }
        alibi_context_destroy(ctx);
      }
    });
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

// The threads of this process, from /proc/self/status (-1 where it cannot be read).
int process_threads() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

// Contexts never destroyed while others are made (a binding's forgotten close): creating one starts
// no thread, and their calls share the process's workers, at most the largest count asked less one.
TEST(Concurrency, ContextsStartNoThreadsAndShareTheProcessWorkers) {
  const Shared shared;
  const int before = process_threads();
  if (before < 0) GTEST_SKIP() << "/proc/self/status is not readable here";
  constexpr int kContexts = 64, kNumThreads = 3;
  std::vector<Context> idle, used;
  for (int c = 0; c < kContexts; ++c) idle.push_back(test::make_cpu_context());
  // At most: a thread an earlier test joined may still be leaving the count (seen under qemu-user).
  EXPECT_LE(process_threads(), before) << kContexts << " contexts were created";
  for (int c = 0; c < kContexts; ++c) {
    used.push_back(test::make_cpu_context());
    ASSERT_OK(alibi_context_set_num_threads(used.back().get(), kNumThreads));
    Tensor out = upload(used.back().get(), ALIBI_DTYPE_F32, {kTotalQ, kHeads, kDim}, {});
    ASSERT_OK(alibi_attention_forward(used.back().get(), shared.q[0].get(), shared.k[0].get(),
                                      shared.v[0].get(), shared.masks[0].get(), nullptr, out.get(), nullptr));
  }
  EXPECT_LE(process_threads(), before + kNumThreads - 1)
      << kContexts << " contexts of " << kNumThreads << " threads each ran a forward";
}

}  // namespace
