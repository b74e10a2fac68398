// What the GPU benchmark does with the CUDA runtime directly: streams, event timing, filling
// device buffers, the device-to-device copy ceiling and the device's description.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/bf16.h"

namespace gpubench {

// A failed CUDA or libalibi call; out_of_memory when the failure was an allocation.
struct Failure : std::runtime_error {
  Failure(const std::string& message, bool out_of_memory)
      : std::runtime_error(message), out_of_memory(out_of_memory) {}
  bool out_of_memory;
};

void cuda_check(cudaError_t error, const char* call);

// A non-blocking stream of the current device.
class Stream {
 public:
  Stream();
  ~Stream();
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

// Milliseconds of each of `reps` calls of `call`, which must enqueue its work on `stream`. The
// calls are issued back to back with an event between each two, so the host's share of a call
// overlaps the previous call's kernels whenever the GPU is the slower of the two.
std::vector<double> back_to_back_ms(cudaStream_t stream, const std::function<void()>& call,
                                    int reps);

double median(std::vector<double> values);

// Fills `count` bf16 words of device memory with fixed-seed uniform values in [-1, 1): a random
// block is uploaded once and then doubled by device-to-device copies.
void fill_uniform_bf16(void* device_data, size_t count, uint64_t seed, cudaStream_t stream);

using bench_common::from_bf16;
using bench_common::to_bf16;

// A cudaMemcpyAsync between two device buffers of `bytes` each; counted as read plus write.
struct CopyCeiling {
  size_t bytes;
  int reps;
  double median_ms;
  double gb_per_s;
};
CopyCeiling measure_copy(cudaStream_t stream, size_t bytes, int warmup_calls, int reps);

// "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB, driver 12.8, runtime 13.0" for a device.
std::string device_description(int device);

}  // namespace gpubench
