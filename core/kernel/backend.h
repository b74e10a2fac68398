// The interface every backend implements: a table of C functions (BackendOps) over plain
// structs. core/abi reaches devices only through it. The CPU backend is compiled into libalibi;
// the CUDA backend is the separately built libalibi_cuda, whose only export,
// alibi_backend_entry, returns its table (core/abi/backend_registry.cpp). Nothing that crosses
// the table is a C++ library object: failures come back as an alibi_status plus a BackendError.
//
// A backend writes each operation as a method of its context class that throws alibi::Error
// (core/kernel/status.h); backend_table<Context>() makes the table of them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "alibi/alibi.h"
#include "core/kernel/host_device.h"
#include "core/kernel/mask_plan.h"
#include "core/kernel/status.h"

namespace alibi {

// Bumped whenever this file changes in a way a separately built backend would notice.
constexpr int kBackendAbiVersion = 5;

ALIBI_HD size_t dtype_size(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F32: return 4;
    case ALIBI_DTYPE_F16: return 2;
    case ALIBI_DTYPE_BF16: return 2;
    case ALIBI_DTYPE_I32: return 4;
    case ALIBI_DTYPE_I64: return 8;
  }
  return 0;
}

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

// Slopes: num_heads floats, or num_sequences * num_heads when per_sequence. The forward and
// bias builders get them in host memory; a backend may copy the table to its device.
struct SlopeTable {
  const float* values = nullptr;
  bool per_sequence = false;
  int num_heads = 0;
  ALIBI_HD float at(int sequence, int head) const {
    return per_sequence ? values[int64_t(sequence) * num_heads + head] : values[head];
  }
};

struct ForwardArgs {
  TensorView q, k, v, out;                // (Tq, Hq, D), (Tk, Hkv, D) x2, (Tq, Hq, D)
  const TensorView* lse = nullptr;        // (Hq, Tq) f32, optional
  const TensorView* attn_bias = nullptr;  // (Hq|1, Tq, Tk), optional
  const MaskView* mask = nullptr;         // host arrays
  const void* device_mask = nullptr;      // what the backend's mask_upload made of it
  float scale = 1.0f;
  float softcap = 0.0f;
  SlopeTable slopes;
  bool deterministic = false;
};

// alibi_attention_forward_paged: forward.k and forward.v are caches (num_blocks, block_size, Hkv,
// D), and forward.mask is planned over a virtual packed key stream in which sequence b's keys
// are [key_begin[b], key_begin[b + 1]). Key t of sequence b is row t % block_size of block
// block_table[b * table_row_stride + (t / block_size) * table_column_stride]. The tables are in
// host memory, validated; forward.device_mask is null.
struct PagedForwardArgs {
  ForwardArgs forward;
  const int32_t* block_table = nullptr;
  int64_t table_row_stride = 0, table_column_stride = 0;
  const int32_t* key_begin = nullptr;  // B + 1 entries
};

// The gradients of one forward call (alibi_attention_backward). forward.lse is required; each
// gradient is optional (null: not computed) and overwritten.
struct BackwardArgs {
  ForwardArgs forward;                   // the forward call's arguments, out and lse included
  TensorView dout;                       // (Tq, Hq, D), q's dtype
  const TensorView* dq = nullptr;        // (Tq, Hq, D), q's dtype or f32
  const TensorView* dk = nullptr;        // (Tk, Hkv, D), q's dtype or f32
  const TensorView* dv = nullptr;        // (Tk, Hkv, D), q's dtype or f32
  const TensorView* dslopes = nullptr;   // (Hq) or, per sequence, (num_sequences, Hq) f32
};

// out = merge of (out_a, lse_a) and (out_b, lse_b); out may be out_a or out_b, lse lse_a or lse_b.
struct MergeArgs {
  TensorView out_a, lse_a, out_b, lse_b;  // (T, H, D), (H, T) f32
  TensorView out;                         // (T, H, D)
  const TensorView* lse = nullptr;        // (H, T) f32, optional
};

struct BiasArgs {
  const MaskView* mask = nullptr;
  const void* device_mask = nullptr;
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

// A backend. `context` is the backend's own per-context state (a thread pool; a CUDA stream,
// cuBLAS handle and memory pool); `device_mask` its own copy of a mask (or null). Functions that
// can fail return a status and fill *error.
struct BackendOps {
  int abi_version;
  PlanShape plan_shape;  // how masks used with this backend are planned
  int (*device_count)();
  // Why device_count() is 0 (no driver, no device, ...); only asked when it is.
  void (*unavailable_reason)(BackendError* why);
  alibi_status (*context_create)(int device_index, void** context, BackendError* error);
  void (*context_destroy)(void* context);
  alibi_status (*set_num_threads)(void* context, int num_threads, BackendError* error);
  alibi_status (*set_stream)(void* context, void* stream, BackendError* error);
  alibi_status (*synchronize)(void* context, BackendError* error);
  alibi_status (*allocate)(void* context, size_t bytes, void** data, BackendError* error);
  void (*deallocate)(void* context, void* data);
  // Copies between a strided tensor and a contiguous row-major host buffer.
  alibi_status (*copy_from_host)(void* context, const TensorView* dst, const void* src,
                                 BackendError* error);
  alibi_status (*copy_to_host)(void* context, const TensorView* src, void* dst,
                               BackendError* error);
  // The backend's copy of a mask, made once per mask (and again when its positions change).
  alibi_status (*mask_upload)(void* context, const MaskView* mask, void** device_mask,
                              BackendError* error);
  void (*mask_release)(void* device_mask);
  alibi_status (*attention_forward)(void* context, const ForwardArgs* args, BackendError* error);
  alibi_status (*attention_merge)(void* context, const MergeArgs* args, BackendError* error);
  alibi_status (*build_bias)(void* context, const BiasArgs* args, BackendError* error);
  alibi_status (*build_dynamic_batching_mask)(void* context, const DynamicBatchingArgs* args,
                                              BackendError* error);
  alibi_status (*build_bloom_bias)(void* context, const BloomArgs* args, BackendError* error);
  alibi_status (*attention_backward)(void* context, const BackwardArgs* args, BackendError* error);
  alibi_status (*attention_forward_paged)(void* context, const PagedForwardArgs* args,
                                         BackendError* error);
};

// The table entry of a context method: calls it on the context, exceptions become the status.
template <auto Method>
struct BackendEntry;

template <class Context, class... Args, void (Context::*Method)(Args...)>
struct BackendEntry<Method> {
  static alibi_status call(void* context, Args... args, BackendError* error) {
    return guarded(error, [&] { (static_cast<Context*>(context)->*Method)(args...); });
  }
};

// The table of a backend whose contexts are Context objects: Context has a method for each
// operation (throwing alibi::Error on failure) and the static members kPlanShape,
// device_count(), unavailable_reason() (a std::string), create(device_index) and
// release_mask(device_mask).
template <class Context>
BackendOps backend_table() {
  BackendOps ops{};
  ops.abi_version = kBackendAbiVersion;
  ops.plan_shape = Context::kPlanShape;
  ops.device_count = &Context::device_count;
  ops.unavailable_reason = [](BackendError* why) {
    set_message(why, Context::unavailable_reason().c_str());
  };
  ops.context_create = [](int device_index, void** context, BackendError* error) {
    return guarded(error, [&] { *context = Context::create(device_index); });
  };
  ops.context_destroy = [](void* context) { delete static_cast<Context*>(context); };
  ops.set_num_threads = BackendEntry<&Context::set_num_threads>::call;
  ops.set_stream = BackendEntry<&Context::set_stream>::call;
  ops.synchronize = BackendEntry<&Context::synchronize>::call;
  ops.allocate = BackendEntry<&Context::allocate>::call;
  ops.deallocate = [](void* context, void* data) { static_cast<Context*>(context)->deallocate(data); };
  ops.copy_from_host = BackendEntry<&Context::copy_from_host>::call;
  ops.copy_to_host = BackendEntry<&Context::copy_to_host>::call;
  ops.mask_upload = BackendEntry<&Context::mask_upload>::call;
  ops.mask_release = &Context::release_mask;
  ops.attention_forward = BackendEntry<&Context::attention_forward>::call;
  ops.attention_merge = BackendEntry<&Context::attention_merge>::call;
  ops.build_bias = BackendEntry<&Context::build_bias>::call;
  ops.build_dynamic_batching_mask = BackendEntry<&Context::build_dynamic_batching_mask>::call;
  ops.build_bloom_bias = BackendEntry<&Context::build_bloom_bias>::call;
  ops.attention_backward = BackendEntry<&Context::attention_backward>::call;
  ops.attention_forward_paged = BackendEntry<&Context::attention_forward_paged>::call;
  return ops;
}

// The CPU backend, compiled into libalibi itself.
const BackendOps& cpu_backend();

}  // namespace alibi

// Entry point a separately built backend library exports: its table, or null when abi_version
// is not the one it was built for.
extern "C" typedef const alibi::BackendOps* (*alibi_backend_entry_fn)(int abi_version);
