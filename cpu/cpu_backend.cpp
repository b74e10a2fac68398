// The CPU backend's table: host memory, each context's share of the process's worker threads,
// and the kernels of cpu/.
#include <cstdlib>
#include <cstring>
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

class CpuContext {
 public:
  static constexpr PlanShape kPlanShape = cpu::kPlanShape;
  static int device_count() { return 1; }
  static std::string unavailable_reason() { return "the CPU is always there"; }
  static CpuContext* create(int) { return new CpuContext(); }
  // Kernels read the host mask itself: there is no copy to make or release.
  static void release_mask(void*) {}

  void set_num_threads(int num_threads) {
    pool_ = ThreadPool(num_threads > 0 ? num_threads : default_threads());
  }
  void set_stream(void* stream) {
    if (stream) fail(ALIBI_STATUS_UNSUPPORTED, "cuda_stream is not NULL but this is a CPU context");
  }
  void synchronize() {}
  void allocate(size_t bytes, void** out) {
    size_t rounded = (bytes + 63) / 64 * 64;
    *out = rounded >= bytes ? std::aligned_alloc(64, rounded) : nullptr;
    if (!*out) fail(ALIBI_STATUS_OUT_OF_MEMORY, "cannot allocate %zu bytes", bytes);
  }
  void deallocate(void* data) { std::free(data); }
  void copy_from_host(const TensorView* dst, const void* src) {
    copy_strided(*dst, static_cast<char*>(const_cast<void*>(src)), false);
  }
  void copy_to_host(const TensorView* src, void* dst) {
    copy_strided(*src, static_cast<char*>(dst), true);
  }
  void mask_upload(const MaskView*, void** device_mask) { *device_mask = nullptr; }
  void attention_forward(const ForwardArgs* args) { cpu::attention_forward(*args, pool_); }
  void attention_merge(const MergeArgs* args) { cpu::attention_merge(*args, pool_); }
  void attention_backward(const BackwardArgs* args) { cpu::attention_backward(*args, pool_); }
  void attention_forward_paged(const PagedForwardArgs* args) {
    cpu::attention_forward_paged(*args, pool_);
  }
  void build_bias(const BiasArgs* args) { cpu::build_bias(*args); }
  void build_dynamic_batching_mask(const DynamicBatchingArgs* args) {
    cpu::build_dynamic_batching_mask(*args);
  }
  void build_bloom_bias(const BloomArgs* args) { cpu::build_bloom_bias(*args); }

 private:
  ThreadPool pool_{default_threads()};
};

}  // namespace

}  // namespace alibi::cpu

namespace alibi {

const BackendOps& cpu_backend() {
  static const BackendOps table = backend_table<cpu::CpuContext>();
  return table;
}

}  // namespace alibi
