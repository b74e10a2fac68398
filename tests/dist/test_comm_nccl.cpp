// The NCCL adapter (alibi/alibi_nccl.h) in one process: bad input (no GPU needed), then, on a GPU,
// a one-rank communicator (ncclCommInitAll over device 0): its rank and size, and the bytes its
// alltoallv and allgather move in device memory. The GPU cases skip without a GPU, saying why.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "alibi/alibi_nccl.h"
#include "core/dist/dist.h"  // alibi_comm_s: the adapter's table, to call its collectives
#include "error_check.h"

namespace {

constexpr uint8_t kPoison = 0xA5;

void expect_adapter_error(alibi_status got, alibi_status want, const std::string& argument,
                          const std::string& value) {
  const std::string message = alibi_nccl_last_error_message();
  EXPECT_EQ(got, want) << alibi_status_string(got) << "; " << message;
  EXPECT_TRUE(test::contains_identifier(message, "alibi_comm_create_nccl")) << message;
  EXPECT_TRUE(test::names_argument(message, argument)) << "no " << argument << " in: " << message;
  EXPECT_TRUE(test::shows_value(message, value)) << "no " << value << " in: " << message;
}

alibi_comm_t garbage_comm() { return reinterpret_cast<alibi_comm_t>(uintptr_t(0xdeadbeef)); }

TEST(NcclAdapter, BadInputWithoutAGpu) {
  alibi_context_t cpu = nullptr;
  ASSERT_EQ(alibi_context_create(ALIBI_DEVICE_CPU, 0, &cpu), ALIBI_STATUS_SUCCESS);
  // Never dereferenced: the arguments are checked before the communicator is used.
  const ncclComm_t some_comm = reinterpret_cast<ncclComm_t>(uintptr_t(0xdeadbeef));
  alibi_comm_t out = garbage_comm();
  expect_adapter_error(alibi_comm_create_nccl(nullptr, cpu, &out), ALIBI_STATUS_NULL_POINTER,
                       "comm", "NULL");
  EXPECT_EQ(out, nullptr);
  out = garbage_comm();
  expect_adapter_error(alibi_comm_create_nccl(some_comm, nullptr, &out),
                       ALIBI_STATUS_NULL_POINTER, "cuda_ctx", "NULL");
  EXPECT_EQ(out, nullptr);
  expect_adapter_error(alibi_comm_create_nccl(some_comm, cpu, nullptr), ALIBI_STATUS_NULL_POINTER,
                       "out", "NULL");
  out = garbage_comm();
  expect_adapter_error(alibi_comm_create_nccl(some_comm, cpu, &out),
                       ALIBI_STATUS_INVALID_ARGUMENT, "cuda_ctx", "ALIBI_DEVICE_CUDA");
  EXPECT_EQ(out, nullptr);
  alibi_context_destroy(cpu);
}

// A one-rank NCCL communicator and a CUDA context on device 0; skips without them.
class NcclOneRank : public ::testing::Test {
 protected:
  void SetUp() override {
    int devices = 0;
    const cudaError_t error = cudaGetDeviceCount(&devices);
    if (error != cudaSuccess || devices == 0)
      GTEST_SKIP() << "no CUDA device (cudaGetDeviceCount: " << cudaGetErrorString(error) << ", "
                   << devices << " devices): the NCCL adapter's collectives need a GPU";
    const int device = 0;
    ASSERT_EQ(ncclCommInitAll(&nccl_, 1, &device), ncclSuccess);
    ASSERT_EQ(alibi_context_create(ALIBI_DEVICE_CUDA, 0, &ctx_), ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    ASSERT_EQ(alibi_comm_create_nccl(nccl_, ctx_, &comm_), ALIBI_STATUS_SUCCESS)
        << alibi_nccl_last_error_message();
  }
  void TearDown() override {
    alibi_comm_destroy(comm_);
    alibi_context_destroy(ctx_);
    if (nccl_) ncclCommDestroy(nccl_);
    for (void* p : device_buffers_) cudaFree(p);
  }

  // Device memory holding `bytes`.
  uint8_t* on_device(const std::vector<uint8_t>& bytes) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, bytes.size() + 1), cudaSuccess);
    device_buffers_.push_back(p);
    EXPECT_EQ(cudaMemcpy(p, bytes.data(), bytes.size(), cudaMemcpyHostToDevice), cudaSuccess);
    return static_cast<uint8_t*>(p);
  }
  static std::vector<uint8_t> to_host(const uint8_t* p, size_t n) {
    std::vector<uint8_t> bytes(n);
    EXPECT_EQ(cudaMemcpy(bytes.data(), p, n, cudaMemcpyDeviceToHost), cudaSuccess);
    return bytes;
  }

  ncclComm_t nccl_ = nullptr;
  alibi_context_t ctx_ = nullptr;
  alibi_comm_t comm_ = nullptr;
  std::vector<void*> device_buffers_;
};

TEST_F(NcclOneRank, RankAndSize) {
  int rank = -1, size = -1;
  ASSERT_EQ(alibi_comm_get_rank(comm_, &rank), ALIBI_STATUS_SUCCESS);
  ASSERT_EQ(alibi_comm_get_size(comm_, &size), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(rank, 0);
  EXPECT_EQ(size, 1);
}

TEST_F(NcclOneRank, AlltoallvAndAllgatherMoveExactlyTheBytes) {
  for (int64_t count : {int64_t(0), int64_t(1), int64_t(4097), int64_t(1 << 20)}) {
    SCOPED_TRACE(count);
    std::vector<uint8_t> send(static_cast<size_t>(count + 5));
    for (size_t i = 0; i < send.size(); ++i) send[i] = uint8_t(i * 7 + i / 251);
    const int64_t send_displ = 5, recv_displ = 3, tail = 6;
    const std::vector<uint8_t> poison(size_t(recv_displ + count + tail), kPoison);
    uint8_t* d_send = on_device(send);
    uint8_t* d_recv = on_device(poison);
    ASSERT_EQ(comm_->ops.alltoallv(comm_->user, d_send, &count, &send_displ, d_recv, &count,
                                   &recv_displ),
              0)
        << alibi_nccl_last_error_message();
    std::vector<uint8_t> expected = poison;
    std::copy(send.begin() + send_displ, send.begin() + send_displ + count,
              expected.begin() + recv_displ);
    EXPECT_TRUE(to_host(d_recv, expected.size()) == expected);

    uint8_t* g_recv = on_device(poison);
    ASSERT_EQ(comm_->ops.allgather(comm_->user, d_send, g_recv, count), 0)
        << alibi_nccl_last_error_message();
    expected = poison;
    std::copy(send.begin(), send.begin() + count, expected.begin());
    EXPECT_TRUE(to_host(g_recv, expected.size()) == expected);
  }
}

TEST_F(NcclOneRank, NegativeCountsAreRefused) {
  const int64_t negative = -1, zero = 0;
  EXPECT_EQ(comm_->ops.alltoallv(comm_->user, nullptr, &negative, &zero, nullptr, &zero, &zero),
            ALIBI_NCCL_NEGATIVE_COUNT);
  EXPECT_TRUE(test::contains_identifier(alibi_nccl_last_error_message(), "send_counts"));
  EXPECT_EQ(comm_->ops.allgather(comm_->user, nullptr, nullptr, -2), ALIBI_NCCL_NEGATIVE_COUNT);
  EXPECT_TRUE(test::shows_value(alibi_nccl_last_error_message(), "-2"));
}

}  // namespace
