// Errors inside the CUDA backend. CUDA_CHECK / CUBLAS_CHECK (and the backend's own checks)
// throw a BackendError; guarded() catches it at the backend boundary and returns its Status, so
// no exception ever crosses into libalibi (the backend is a dlopen'ed library).
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <utility>

#include "core/abi/error.h"

namespace alibi::cuda {

class BackendError {
 public:
  explicit BackendError(Status status) : status_(std::move(status)) {}
  const Status& status() const { return status_; }

 private:
  Status status_;
};

inline std::string failure_site(const char* call, const char* file, int line) {
  const char* slash = std::strrchr(file, '/');
  return std::string(call) + " (" + (slash ? slash + 1 : file) + ":" + std::to_string(line) + ")";
}

[[noreturn]] inline void throw_cuda_error(cudaError_t error, const char* call, const char* file,
                                          int line) {
  const alibi_status code =
      error == cudaErrorMemoryAllocation ? ALIBI_STATUS_OUT_OF_MEMORY : ALIBI_STATUS_DEVICE_ERROR;
  throw BackendError({code, "CUDA error: " + std::string(cudaGetErrorString(error)) + " (" +
                                cudaGetErrorName(error) + ") in " +
                                failure_site(call, file, line)});
}

[[noreturn]] inline void throw_cublas_error(cublasStatus_t status, const char* call,
                                            const char* file, int line) {
  const alibi_status code =
      status == CUBLAS_STATUS_ALLOC_FAILED ? ALIBI_STATUS_OUT_OF_MEMORY : ALIBI_STATUS_DEVICE_ERROR;
  throw BackendError({code, "cuBLAS error: " + std::string(cublasGetStatusString(status)) + " in " +
                                failure_site(call, file, line)});
}

#define CUDA_CHECK(call)                                                             \
  do {                                                                               \
    const cudaError_t cuda_check_error_ = (call);                                    \
    if (cuda_check_error_ != cudaSuccess)                                            \
      ::alibi::cuda::throw_cuda_error(cuda_check_error_, #call, __FILE__, __LINE__); \
  } while (0)

#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    const cublasStatus_t cublas_check_status_ = (call);                                   \
    if (cublas_check_status_ != CUBLAS_STATUS_SUCCESS)                                    \
      ::alibi::cuda::throw_cublas_error(cublas_check_status_, #call, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// Runs fn and returns its outcome as a Status; nothing escapes.
template <class Fn>
Status guarded(Fn&& fn) noexcept {
  try {
    fn();
    return Status::success();
  } catch (const BackendError& error) {
    return error.status();
  } catch (const std::bad_alloc&) {
    return {ALIBI_STATUS_OUT_OF_MEMORY, "out of host memory"};
  } catch (const std::exception& e) {
    return {ALIBI_STATUS_INTERNAL, e.what()};
  } catch (...) {
    return {ALIBI_STATUS_INTERNAL, "unknown exception in the CUDA backend"};
  }
}

}  // namespace alibi::cuda
