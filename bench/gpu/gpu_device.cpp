#include "gpu_device.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>

namespace gpubench {

namespace {

// A prime number of words: the doubled pattern never lines up with a row of head_dim words.
constexpr size_t kPatternWords = 1048573;

class Event {
 public:
  Event() { cuda_check(cudaEventCreate(&event_), "cudaEventCreate"); }
  ~Event() { cudaEventDestroy(event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

struct DeviceFree {
  void operator()(void* data) const { cudaFree(data); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;

DeviceBuffer device_buffer(size_t bytes) {
  void* data = nullptr;
  cuda_check(cudaMalloc(&data, bytes), "cudaMalloc");
  return DeviceBuffer(data);
}

// A 64-bit LCG (Knuth's MMIX constants).
std::vector<uint16_t> uniform_bf16_words(size_t count, uint64_t seed) {
  std::vector<uint16_t> words(count);
  uint64_t state = seed;
  for (uint16_t& word : words) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    word = to_bf16(float(double(state >> 40) / double(1ull << 24) * 2.0 - 1.0));
  }
  return words;
}

std::string version_text(int version) {
  return std::to_string(version / 1000) + "." + std::to_string(version % 1000 / 10);
}

}  // namespace

void cuda_check(cudaError_t error, const char* call) {
  if (error == cudaSuccess) return;
  cudaGetLastError();  // clears a non-sticky error, so later cases start clean
  throw Failure(std::string(call) + ": " + cudaGetErrorString(error),
                error == cudaErrorMemoryAllocation);
}

Stream::Stream() {
  cuda_check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreate");
}

Stream::~Stream() { cudaStreamDestroy(stream_); }

std::vector<double> back_to_back_ms(cudaStream_t stream, const std::function<void()>& call,
                                    int reps) {
  std::vector<Event> events(size_t(reps) + 1);
  cuda_check(cudaEventRecord(events[0].get(), stream), "cudaEventRecord");
  for (int r = 0; r < reps; ++r) {
    call();
    cuda_check(cudaEventRecord(events[r + 1].get(), stream), "cudaEventRecord");
  }
  cuda_check(cudaEventSynchronize(events[reps].get()), "cudaEventSynchronize");
  std::vector<double> ms;
  for (int r = 0; r < reps; ++r) {
    float elapsed = 0.0f;
    cuda_check(cudaEventElapsedTime(&elapsed, events[r].get(), events[r + 1].get()),
               "cudaEventElapsedTime");
    ms.push_back(elapsed);
  }
  return ms;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

void fill_uniform_bf16(void* device_data, size_t count, uint64_t seed, cudaStream_t stream) {
  auto* words = static_cast<uint16_t*>(device_data);
  const size_t first = std::min(count, kPatternWords);
  const std::vector<uint16_t> pattern = uniform_bf16_words(first, seed);
  cuda_check(cudaMemcpyAsync(words, pattern.data(), first * 2, cudaMemcpyHostToDevice, stream),
             "cudaMemcpyAsync (host to device)");
  for (size_t filled = first; filled < count;) {
    const size_t chunk = std::min(filled, count - filled);
    cuda_check(cudaMemcpyAsync(words + filled, words, chunk * 2, cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync (device to device)");
    filled += chunk;
  }
  cuda_check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
}

CopyCeiling measure_copy(cudaStream_t stream, size_t bytes, int warmup_calls, int reps) {
  const DeviceBuffer from = device_buffer(bytes), to = device_buffer(bytes);
  cuda_check(cudaMemsetAsync(from.get(), 0, bytes, stream), "cudaMemsetAsync");
  const auto copy = [&] {
    cuda_check(cudaMemcpyAsync(to.get(), from.get(), bytes, cudaMemcpyDeviceToDevice, stream),
               "cudaMemcpyAsync (device to device)");
  };
  back_to_back_ms(stream, copy, warmup_calls);
  const double ms = median(back_to_back_ms(stream, copy, reps));
  return {bytes, reps, ms, 2.0 * double(bytes) / (ms * 1e-3) * 1e-9};
}

std::string device_description(int device) {
  cudaDeviceProp properties{};
  cuda_check(cudaGetDeviceProperties(&properties, device), "cudaGetDeviceProperties");
  int driver = 0, runtime = 0;
  cuda_check(cudaDriverGetVersion(&driver), "cudaDriverGetVersion");
  cuda_check(cudaRuntimeGetVersion(&runtime), "cudaRuntimeGetVersion");
  char memory[32];
  std::snprintf(memory, sizeof memory, "%.1f GiB", double(properties.totalGlobalMem) / (1 << 30));
  return std::string(properties.name) + ", sm_" + std::to_string(properties.major) +
         std::to_string(properties.minor) + ", " + std::to_string(properties.multiProcessorCount) +
         " SMs, " + memory + ", driver " + version_text(driver) + ", runtime " +
         version_text(runtime);
}

}  // namespace gpubench
