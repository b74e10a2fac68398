// The CPU backend: host memory, a per-context thread pool, and the kernels of cpu/.
#include <cstdlib>
#include <cstring>
#include <new>
#include <thread>

#include "cpu/kernels.h"

namespace alibi::cpu {

namespace {

// Calls fn(host_index, tensor_offset) for every element in row-major order. Offsets only ever
// take the values of elements (never one stride past a dim's last index), so they stay within
// what tensor validation checked fits in int64, whatever the stride of a size-1 dim.
template <class Fn>
void for_each_element(const TensorView& t, Fn&& fn) {
  int64_t numel = t.numel();
  int64_t index[ALIBI_MAX_DIMS] = {};
  int64_t offset = 0;
  for (int64_t i = 0; i < numel; ++i) {
    fn(i, offset);
    for (int d = t.ndim - 1; d >= 0; --d) {
      if (++index[d] < t.shape[d]) {
        offset += t.strides[d];
        break;
      }
      offset -= (index[d] - 1) * t.strides[d];
      index[d] = 0;
    }
  }
}

void copy_strided(const TensorView& t, char* host, bool to_host) {
  const size_t size = dtype_size(t.dtype);
  char* data = static_cast<char*>(t.data);
  for_each_element(t, [&](int64_t i, int64_t offset) {
    char* element = data + offset * int64_t(size);
    if (to_host)
      std::memcpy(host + i * int64_t(size), element, size);
    else
      std::memcpy(element, host + i * int64_t(size), size);
  });
}

int default_threads() {
  unsigned cores = std::thread::hardware_concurrency();
  return cores > 0 ? int(cores) : 1;
}

// Runs a kernel, turning its exceptions into a Status.
template <class Fn>
Status run(Fn&& fn) {
  try {
    fn();
    return Status::success();
  } catch (const std::bad_alloc&) {
    return {ALIBI_STATUS_OUT_OF_MEMORY, "out of host memory"};
  } catch (const std::exception& e) {
    return {ALIBI_STATUS_INTERNAL, e.what()};
  }
}

class CpuContext final : public DeviceContext {
 public:
  // The pool is (re)built on the next call that needs it, so setting a count costs nothing.
  Status set_num_threads(int num_threads) override {
    const int threads = num_threads > 0 ? num_threads : default_threads();
    if (pool_ && pool_->size() != threads) pool_.reset();
    threads_ = threads;
    return Status::success();
  }
  Status set_stream(void* stream) override {
    if (stream) return {ALIBI_STATUS_UNSUPPORTED, "cuda_stream is not NULL but this is a CPU context"};
    return Status::success();
  }
  Status synchronize() override { return Status::success(); }
  Status allocate(size_t bytes, void** out) override {
    size_t rounded = (bytes + 63) / 64 * 64;
    *out = rounded >= bytes ? std::aligned_alloc(64, rounded) : nullptr;
    if (!*out) return {ALIBI_STATUS_OUT_OF_MEMORY, "cannot allocate " + std::to_string(bytes) + " bytes"};
    return Status::success();
  }
  void deallocate(void* data) override { std::free(data); }
  Status copy_from_host(const TensorView& dst, const void* src) override {
    copy_strided(dst, static_cast<char*>(const_cast<void*>(src)), false);
    return Status::success();
  }
  Status copy_to_host(const TensorView& src, void* dst) override {
    copy_strided(src, static_cast<char*>(dst), true);
    return Status::success();
  }
  Status upload_mask(const MaskPlan&, std::shared_ptr<DeviceMask>* out) override {
    out->reset();
    return Status::success();
  }
  Status attention_forward(const ForwardArgs& args) override {
    return run([&] { cpu::attention_forward(args, pool()); });
  }
  Status build_bias(const BiasArgs& args) override { return run([&] { cpu::build_bias(args); }); }
  Status build_dynamic_batching_mask(const DynamicBatchingArgs& args) override {
    return run([&] { cpu::build_dynamic_batching_mask(args); });
  }
  Status build_bloom_bias(const BloomArgs& args) override {
    return run([&] { cpu::build_bloom_bias(args); });
  }

 private:
  ThreadPool& pool() {
    if (!pool_) pool_ = std::make_unique<ThreadPool>(threads_);
    return *pool_;
  }
  int threads_ = default_threads();
  std::unique_ptr<ThreadPool> pool_;
};

class CpuBackend final : public Backend {
 public:
  int device_count() override { return 1; }
  Status create_context(int, std::shared_ptr<DeviceContext>* out) override {
    *out = std::make_shared<CpuContext>();
    return Status::success();
  }
};

}  // namespace

}  // namespace alibi::cpu

namespace alibi {

Backend& cpu_backend() {
  static cpu::CpuBackend backend;
  return backend;
}

}  // namespace alibi
