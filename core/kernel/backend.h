// The interface every backend implements. core/ reaches devices only through it; the CUDA
// backend is a separate shared library exposing the same interface through
// alibi_backend_entry (see backend_registry.cpp), so calls return Status instead of throwing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "alibi/alibi.h"
#include "core/abi/error.h"
#include "core/kernel/mask_plan.h"

namespace alibi {

// Bumped whenever this file changes in a way a separately built backend would notice.
constexpr int kBackendAbiVersion = 2;

// A strided n-d array on some device; sizes and strides in elements.
struct TensorView {
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  int ndim = 0;
  int64_t shape[ALIBI_MAX_DIMS] = {};
  int64_t strides[ALIBI_MAX_DIMS] = {};
  void* data = nullptr;

  int64_t numel() const {
    int64_t n = 1;
    for (int d = 0; d < ndim; ++d) n *= shape[d];
    return n;
  }
};

size_t dtype_size(alibi_dtype dtype);

// A backend's own copy of a mask (e.g. in GPU memory). The CPU reads the MaskPlan directly.
class DeviceMask {
 public:
  virtual ~DeviceMask() = default;
};

// Slopes are host arrays: num_heads floats, or num_sequences * num_heads when per_sequence.
struct SlopeTable {
  const float* values = nullptr;
  bool per_sequence = false;
  int num_heads = 0;
  float at(int sequence, int head) const {
    return per_sequence ? values[int64_t(sequence) * num_heads + head] : values[head];
  }
};

struct ForwardArgs {
  TensorView q, k, v, out;             // (Tq, Hq, D), (Tk, Hkv, D) x2, (Tq, Hq, D)
  const TensorView* lse = nullptr;     // (Hq, Tq) f32, optional
  const TensorView* attn_bias = nullptr;  // (Hq|1, Tq, Tk), optional
  const MaskPlan* plan = nullptr;
  const DeviceMask* device_mask = nullptr;
  float scale = 1.0f;
  float softcap = 0.0f;
  SlopeTable slopes;
  bool deterministic = false;
};

struct BiasArgs {
  const MaskPlan* plan = nullptr;
  const DeviceMask* device_mask = nullptr;
  SlopeTable slopes;
  const TensorView* attn_bias = nullptr;
  TensorView out;  // (H, Tq, Tk)
};

struct DynamicBatchingArgs {
  const int64_t* seqstarts = nullptr;  // host copies, B + 1 entries, validated
  const int64_t* kvstarts = nullptr;
  int batch = 0;
  const TensorView* attn_mask = nullptr;  // (H, Sq, Sk) or (Sq, Sk), optional
  SlopeTable slopes;
  TensorView out;  // (H, Sq, W)
};

struct BloomArgs {
  TensorView attention_mask;  // (B, S) i32/i64
  SlopeTable slopes;
  TensorView out;  // (B*H, 1, S)
};

// Per-context state of a backend (a thread pool, a CUDA stream and cuBLAS handle, ...).
// Tensors and masks hold a reference so they may outlive the user's context handle.
class DeviceContext {
 public:
  virtual ~DeviceContext() = default;
  virtual Status set_num_threads(int num_threads) = 0;
  virtual Status set_stream(void* stream) = 0;
  virtual Status synchronize() = 0;
  virtual Status allocate(size_t bytes, void** out) = 0;
  virtual void deallocate(void* data) = 0;
  // Copies between a strided tensor and a contiguous row-major host buffer.
  virtual Status copy_from_host(const TensorView& dst, const void* src) = 0;
  virtual Status copy_to_host(const TensorView& src, void* dst) = 0;
  virtual Status upload_mask(const MaskPlan& plan, std::shared_ptr<DeviceMask>* out) = 0;
  virtual Status attention_forward(const ForwardArgs& args) = 0;
  virtual Status build_bias(const BiasArgs& args) = 0;
  virtual Status build_dynamic_batching_mask(const DynamicBatchingArgs& args) = 0;
  virtual Status build_bloom_bias(const BloomArgs& args) = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int device_count() = 0;
  // Why device_count() is 0 (e.g. no driver, no device); only asked when it is.
  virtual std::string unavailable_reason() { return "no device is visible"; }
  virtual Status create_context(int device_index, std::shared_ptr<DeviceContext>* out) = 0;
};

// The CPU backend, compiled into libalibi itself.
Backend& cpu_backend();

// The backend of a device kind (CPU or CUDA), or nullptr with the reason in *why.
Backend* find_backend(alibi_device kind, std::string* why);

}  // namespace alibi

// Entry point a separately built backend library exports.
extern "C" typedef alibi::Backend* (*alibi_backend_entry_fn)(int abi_version);
