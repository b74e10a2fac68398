// Errors inside the CUDA backend. CUDA_CHECK / CUBLAS_CHECK (and the backend's own checks)
// throw alibi::Error; the backend table's entries (BackendEntry, core/kernel/backend.h) catch it
// and return its status and message, so no exception ever crosses into libalibi.
//
// A failed CUDA runtime call leaves its error pending until cudaGetLastError reads it, and the
// next launch check would then report it again. Every failure is therefore cleared where it is
// raised (non-sticky errors; a sticky one persists whatever is done).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstring>
#include <string>

#include "core/kernel/status.h"

namespace alibi::cuda {

inline std::string failure_site(const char* call, const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(call) + " (" + (slash ? slash + 1 : file) + ":" + std::to_string(line) + ")";
}

// The error of a failed runtime call, read and cleared.
inline cudaError_t clear_error(cudaError_t error) {
  if (error != cudaSuccess) cudaGetLastError();
  return error;
}

[[noreturn]] inline void throw_cuda_error(cudaError_t error, const char* call, const char* file,
                                          int line) {
  clear_error(error);
  const alibi_status code =
      error == cudaErrorMemoryAllocation ? ALIBI_STATUS_OUT_OF_MEMORY : ALIBI_STATUS_DEVICE_ERROR;
  throw Error(code, "CUDA error: " + std::string(cudaGetErrorString(error)) + " (" +
                        cudaGetErrorName(error) + ") in " + failure_site(call, file, line));
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
  const alibi_status code =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ALIBI_STATUS_OUT_OF_MEMORY : ALIBI_STATUS_DEVICE_ERROR;
  throw Error(code, "cuBLAS error: " + std::string(cublasGetStatusString(status)) + " in " +
                        failure_site(call, file, line));
}

// Macros, so that the message quotes the failed call as written.
#define ALIBI_CHECK_STATUS_(call, Status, success, thrower)   \
  do {                                                        \
    const Status alibi_check_status_ = (call);                \
    if (alibi_check_status_ != (success))                     \
      thrower(alibi_check_status_, #call, __FILE__, __LINE__); \
  } while (0)

#define CUDA_CHECK(call) \
  ALIBI_CHECK_STATUS_(call, cudaError_t, cudaSuccess, ::alibi::cuda::throw_cuda_error)
#define CUBLAS_CHECK(call) \
  ALIBI_CHECK_STATUS_(call, cublasStatus_t, CUBLAS_STATUS_SUCCESS, ::alibi::cuda::throw_cublas_error)

// After a kernel launch: reports a bad launch configuration.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

}  // namespace alibi::cuda
