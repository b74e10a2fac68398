// libalibi_nccl: alibi_comm_ops over an NCCL communicator (include/alibi/alibi_nccl.h). It uses
// libalibi's public API only, so it cannot see the context's stream: every collective
// synchronizes the context, runs NCCL on a stream of its own and waits for that stream.
#include <cuda_runtime.h>

#include <cstdio>
#include <memory>
#include <new>
#include <string>

#include "alibi/alibi_nccl.h"
#include "core/dist/adapter_message.h"

namespace {

using alibi::adapter::last_error;
using alibi::adapter::record;

// What `user` points to: the caller's communicator and context, and the adapter's stream.
struct NcclComm {
  ncclComm_t comm = nullptr;
  alibi_context_t ctx = nullptr;
  cudaStream_t stream = nullptr;
  int size = 0;

  NcclComm() = default;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;
  ~NcclComm() {
    if (stream) cudaStreamDestroy(stream);
  }
};

int nccl_failed(const char* where, const char* call, ncclResult_t result) {
  record(where, "%s returned %d (%s)", call, int(result), ncclGetErrorString(result));
  return int(result);
}

// Waits for the context's work, so that the send buffers hold what it wrote.
int synchronize_context(const char* where, alibi_context_t ctx) {
  const alibi_status status = alibi_context_synchronize(ctx);
  if (status == ALIBI_STATUS_SUCCESS) return 0;
  record(where, "alibi_context_synchronize(cuda_ctx) returned %s: %s",
         alibi_status_string(status), alibi_last_error_message());
  return ALIBI_NCCL_CONTEXT_FAILED;
}

// Waits for the adapter's stream, then asks NCCL whether the communicator failed meanwhile.
int finish(const char* where, const NcclComm& c) {
  if (const cudaError_t error = cudaStreamSynchronize(c.stream); error != cudaSuccess) {
    record(where, "cudaStreamSynchronize returned %d (%s)", int(error), cudaGetErrorString(error));
    return ALIBI_NCCL_CUDA_FAILED;
  }
  ncclResult_t async = ncclSuccess;
  const ncclResult_t result = ncclCommGetAsyncError(c.comm, &async);
  if (result != ncclSuccess) return nccl_failed(where, "ncclCommGetAsyncError", result);
  return async == ncclSuccess ? 0 : nccl_failed(where, "the communicator (asynchronously)", async);
}

// False (recorded) when one of the size values is negative.
bool non_negative(const char* name, const int64_t* values, int size) {
  for (int r = 0; r < size; ++r)
    if (values[r] < 0) {
      record("alltoallv", "%s[%d] = %lld is negative", name, r, static_cast<long long>(values[r]));
      return false;
    }
  return true;
}

// One send and one receive per peer with a nonzero count, in one NCCL group.
ncclResult_t exchange(const NcclComm& c, const char* send, const int64_t* send_counts,
                      const int64_t* send_displs, char* recv, const int64_t* recv_counts,
                      const int64_t* recv_displs) {
  ncclResult_t result = ncclGroupStart();
  for (int r = 0; r < c.size && result == ncclSuccess; ++r) {
    if (send_counts[r] > 0)
      result = ncclSend(send + send_displs[r], size_t(send_counts[r]), ncclChar, r, c.comm,
                        c.stream);
    if (result == ncclSuccess && recv_counts[r] > 0)
      result = ncclRecv(recv + recv_displs[r], size_t(recv_counts[r]), ncclChar, r, c.comm,
                        c.stream);
  }
  const ncclResult_t ended = ncclGroupEnd();  // always, to close the group
  return result != ncclSuccess ? result : ended;
}

int nccl_alltoallv(void* user, const void* send, const int64_t* send_counts,
                   const int64_t* send_displs, void* recv, const int64_t* recv_counts,
                   const int64_t* recv_displs) {
  last_error.clear();
  const NcclComm& c = *static_cast<const NcclComm*>(user);
  if (!non_negative("send_counts", send_counts, c.size) ||
      !non_negative("send_displs", send_displs, c.size) ||
      !non_negative("recv_counts", recv_counts, c.size) ||
      !non_negative("recv_displs", recv_displs, c.size))
    return ALIBI_NCCL_NEGATIVE_COUNT;
  if (const int failed = synchronize_context("alltoallv", c.ctx)) return failed;
  const ncclResult_t result =
      exchange(c, static_cast<const char*>(send), send_counts, send_displs,
               static_cast<char*>(recv), recv_counts, recv_displs);
  if (result != ncclSuccess) return nccl_failed("alltoallv", "ncclSend/ncclRecv group", result);
  return finish("alltoallv", c);
}

int nccl_allgather(void* user, const void* send, void* recv, int64_t bytes_per_rank) {
  last_error.clear();
  const NcclComm& c = *static_cast<const NcclComm*>(user);
  if (bytes_per_rank < 0) {
    record("allgather", "bytes_per_rank = %lld is negative", static_cast<long long>(bytes_per_rank));
    return ALIBI_NCCL_NEGATIVE_COUNT;
  }
  if (const int failed = synchronize_context("allgather", c.ctx)) return failed;
  const ncclResult_t result =
      ncclAllGather(send, recv, size_t(bytes_per_rank), ncclChar, c.comm, c.stream);
  if (result != ncclSuccess) return nccl_failed("allgather", "ncclAllGather", result);
  return finish("allgather", c);
}

void nccl_release(void* user) { delete static_cast<NcclComm*>(user); }

constexpr const char* kCreate = "alibi_comm_create_nccl";

alibi_status check_arguments(ncclComm_t comm, alibi_context_t cuda_ctx) {
  if (!comm) {
    record(kCreate, "comm is NULL");
    return ALIBI_STATUS_NULL_POINTER;
  }
  if (!cuda_ctx) {
    record(kCreate, "cuda_ctx is NULL");
    return ALIBI_STATUS_NULL_POINTER;
  }
  alibi_device device = ALIBI_DEVICE_CPU;
  if (const alibi_status status = alibi_context_get_device(cuda_ctx, &device);
      status != ALIBI_STATUS_SUCCESS) {
    record(kCreate, "%s", alibi_last_error_message());
    return status;
  }
  if (device != ALIBI_DEVICE_CUDA) {
    record(kCreate, "cuda_ctx is a context of device %d, not ALIBI_DEVICE_CUDA (%d)", int(device),
           int(ALIBI_DEVICE_CUDA));
    return ALIBI_STATUS_INVALID_ARGUMENT;
  }
  return ALIBI_STATUS_SUCCESS;
}

// False (recorded) when an NCCL call of alibi_comm_create_nccl failed.
bool succeeded(ncclResult_t result, const char* call) {
  if (result == ncclSuccess) return true;
  nccl_failed(kCreate, call, result);
  return false;
}

// The adapter's stream, on comm's GPU (the current device is restored).
alibi_status create_stream(ncclComm_t comm, NcclComm* made) {
  int device = 0, previous = 0;
  if (!succeeded(ncclCommCuDevice(comm, &device), "ncclCommCuDevice"))
    return ALIBI_STATUS_COMMUNICATION_ERROR;
  cudaError_t error = cudaGetDevice(&previous);
  if (error == cudaSuccess) error = cudaSetDevice(device);
  if (error == cudaSuccess) {
    error = cudaStreamCreateWithFlags(&made->stream, cudaStreamNonBlocking);
    const cudaError_t restored = cudaSetDevice(previous);
    if (error == cudaSuccess) error = restored;
  }
  if (error == cudaSuccess) return ALIBI_STATUS_SUCCESS;
  record(kCreate, "creating a stream on GPU %d: %s", device, cudaGetErrorString(error));
  return ALIBI_STATUS_COMMUNICATION_ERROR;
}

alibi_status make(ncclComm_t comm, alibi_context_t cuda_ctx, alibi_comm_t* out) {
  auto made = std::make_unique<NcclComm>();
  made->comm = comm;
  made->ctx = cuda_ctx;
  int rank = 0;
  if (!succeeded(ncclCommUserRank(comm, &rank), "ncclCommUserRank") ||
      !succeeded(ncclCommCount(comm, &made->size), "ncclCommCount"))
    return ALIBI_STATUS_COMMUNICATION_ERROR;
  if (const alibi_status status = create_stream(comm, made.get()); status != ALIBI_STATUS_SUCCESS)
    return status;
  alibi_comm_ops ops{};
  ops.struct_size = sizeof ops;
  ops.alltoallv = nccl_alltoallv;
  ops.allgather = nccl_allgather;
  ops.release = nccl_release;
  const alibi_status status = alibi_comm_create(&ops, made.get(), rank, made->size, out);
  if (status != ALIBI_STATUS_SUCCESS) {
    record(kCreate, "%s", alibi_last_error_message());
    return status;
  }
  made.release();  // the communicator owns it now
  return status;
}

}  // namespace

extern "C" alibi_status alibi_comm_create_nccl(ncclComm_t comm, alibi_context_t cuda_ctx,
                                               alibi_comm_t* out) {
  last_error.clear();
  if (!out) {
    record(kCreate, "out is NULL");
    return ALIBI_STATUS_NULL_POINTER;
  }
  *out = nullptr;
  if (const alibi_status status = check_arguments(comm, cuda_ctx); status != ALIBI_STATUS_SUCCESS)
    return status;
  try {
    return make(comm, cuda_ctx, out);
  } catch (const std::bad_alloc&) {
    record(kCreate, "cannot allocate the communicator's state");
    return ALIBI_STATUS_OUT_OF_MEMORY;
  }
}

extern "C" const char* alibi_nccl_last_error_message(void) { return last_error.c_str(); }
