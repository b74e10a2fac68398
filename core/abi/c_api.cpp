// The C ABI: libalibi's extern "C" definitions (the other extern "C" function of the project is
// the CUDA library's alibi_backend_entry). Each call runs its body under `guarded`.
#include <algorithm>
#include <cstring>
#include <string>

#include "alibi/alibi.h"
#include "alibi/alibi_dist.h"
#include "core/abi/ops.h"
#include "core/abi/params.h"
#include "core/dist/dist.h"

namespace {

thread_local std::string last_error;

// Runs the body of an ABI function: an exception becomes the status returned and this
// thread's last-error message, "<function>: <what failed>".
template <class Body>
alibi_status guarded(const char* function, Body&& body) {
  last_error.clear();
  alibi::BackendError error;
  const alibi_status status = alibi::guarded(&error, body);
  if (status != ALIBI_STATUS_SUCCESS) last_error = std::string(function) + ": " + error.message;
  return status;
}

// Enum arguments come from C, where they may hold any int. Loading a value outside the C++
// enum's range is undefined behaviour, so they are read as the int they hold and checked
// before being used as enums.
template <class Enum>
int raw_value(const Enum& value) {
  static_assert(sizeof(Enum) == sizeof(int), "C enums are int-sized");
  int raw;
  std::memcpy(&raw, &value, sizeof raw);
  return raw;
}

alibi_device checked_device(const alibi_device& device) {
  const int raw = raw_value(device);
  if (raw != ALIBI_DEVICE_AUTO && raw != ALIBI_DEVICE_CPU && raw != ALIBI_DEVICE_CUDA)
    alibi::fail(ALIBI_STATUS_INVALID_ARGUMENT, "device = %d is not an alibi_device", raw);
  return alibi_device(raw);
}

alibi_dtype checked_dtype(const alibi_dtype& dtype) {
  const int raw = raw_value(dtype);
  if (raw < ALIBI_DTYPE_F32 || raw > ALIBI_DTYPE_I64)
    alibi::fail(ALIBI_STATUS_INVALID_ARGUMENT, "dtype = %d is not an alibi_dtype", raw);
  return alibi_dtype(raw);
}

// Handle out-parameters read NULL unless the call succeeds.
template <class T>
void clear(T** out) {
  if (out) *out = nullptr;
}

}  // namespace

using alibi::require;

extern "C" {

unsigned alibi_version_number(void) { return ALIBI_VERSION_NUMBER; }
const char* alibi_version_string(void) { return ALIBI_VERSION_STRING; }

const char* alibi_status_string(alibi_status status) {
  switch (raw_value(status)) {
    case ALIBI_STATUS_SUCCESS: return "success";
    case ALIBI_STATUS_INVALID_ARGUMENT: return "invalid argument";
    case ALIBI_STATUS_NULL_POINTER: return "null pointer";
    case ALIBI_STATUS_SHAPE_MISMATCH: return "shape mismatch";
    case ALIBI_STATUS_DTYPE_MISMATCH: return "dtype mismatch";
    case ALIBI_STATUS_UNSUPPORTED: return "unsupported";
    case ALIBI_STATUS_BACKEND_UNAVAILABLE: return "backend unavailable";
    case ALIBI_STATUS_OUT_OF_MEMORY: return "out of memory";
    case ALIBI_STATUS_DEVICE_ERROR: return "device error";
    case ALIBI_STATUS_INTERNAL: return "internal error";
    case ALIBI_STATUS_COMMUNICATION_ERROR: return "communication error";
  }
  return "unknown status";
}

const char* alibi_last_error_message(void) { return last_error.c_str(); }

size_t alibi_last_error_copy(char* buf, size_t capacity) {
  if (buf && capacity > 0) {
    size_t n = last_error.size() < capacity - 1 ? last_error.size() : capacity - 1;
    std::memcpy(buf, last_error.data(), n);
    buf[n] = '\0';
  }
  return last_error.size();
}

int alibi_device_count(alibi_device kind) {
  const int raw = raw_value(kind);
  if (raw != ALIBI_DEVICE_AUTO && raw != ALIBI_DEVICE_CPU && raw != ALIBI_DEVICE_CUDA) return 0;
  return alibi::device_count(alibi_device(raw));
}

alibi_status alibi_context_create(alibi_device device, int device_index, alibi_context_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::context_create(checked_device(device), device_index);
  });
}

void alibi_context_destroy(alibi_context_t ctx) { delete ctx; }

alibi_status alibi_context_get_device(alibi_context_t ctx, alibi_device* out) {
  return guarded(__func__, [&] { *require(out, "out") = require(ctx, "ctx")->kind; });
}

alibi_status alibi_context_set_num_threads(alibi_context_t ctx, int num_threads) {
  return guarded(__func__, [&] {
    require(ctx, "ctx");
    if (num_threads < 0 || num_threads > 1024)
      alibi::fail(ALIBI_STATUS_INVALID_ARGUMENT, "num_threads = %d is outside [0, 1024]",
                  num_threads);
    ctx->device->call(&alibi::BackendOps::set_num_threads, num_threads);
  });
}

alibi_status alibi_context_set_stream(alibi_context_t ctx, void* cuda_stream) {
  return guarded(__func__, [&] { require(ctx, "ctx")->device->call(&alibi::BackendOps::set_stream, cuda_stream); });
}

alibi_status alibi_context_synchronize(alibi_context_t ctx) {
  return guarded(__func__, [&] { require(ctx, "ctx")->device->call(&alibi::BackendOps::synchronize); });
}

alibi_status alibi_tensor_create(alibi_context_t ctx, alibi_dtype dtype, int ndim,
                                 const int64_t* shape, alibi_tensor_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    require(ctx, "ctx");
    *out = alibi::tensor_create(ctx, checked_dtype(dtype), ndim, shape);
  });
}

alibi_status alibi_tensor_wrap(alibi_context_t ctx, alibi_dtype dtype, int ndim,
                               const int64_t* shape, const int64_t* strides, void* data,
                               alibi_tensor_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    require(ctx, "ctx");
    *out = alibi::tensor_wrap(ctx, checked_dtype(dtype), ndim, shape, strides, data);
  });
}

alibi_status alibi_tensor_copy_from_host(alibi_tensor_t t, const void* src, size_t bytes) {
  return guarded(__func__, [&] { alibi::tensor_copy_from_host(t, src, bytes); });
}

alibi_status alibi_tensor_copy_to_host(alibi_tensor_t t, void* dst, size_t bytes) {
  return guarded(__func__, [&] { alibi::tensor_copy_to_host(t, dst, bytes); });
}

void alibi_tensor_destroy(alibi_tensor_t t) { delete t; }

alibi_status alibi_tensor_get_dtype(alibi_tensor_t t, alibi_dtype* out) {
  return guarded(__func__, [&] { *require(out, "out") = require(t, "t")->view.dtype; });
}

alibi_status alibi_tensor_get_ndim(alibi_tensor_t t, int* out) {
  return guarded(__func__, [&] { *require(out, "out") = require(t, "t")->view.ndim; });
}

alibi_status alibi_tensor_get_shape(alibi_tensor_t t, int capacity, int64_t* out) {
  return guarded(__func__, [&] {
    require(t, "t");  // before t->view is formed: argument order is unspecified
    alibi::tensor_get_dims(t, t->view.shape, capacity, out);
  });
}

alibi_status alibi_tensor_get_strides(alibi_tensor_t t, int capacity, int64_t* out) {
  return guarded(__func__, [&] {
    require(t, "t");  // before t->view is formed: argument order is unspecified
    alibi::tensor_get_dims(t, t->view.strides, capacity, out);
  });
}

alibi_status alibi_tensor_get_data(alibi_tensor_t t, void** out) {
  return guarded(__func__, [&] { *require(out, "out") = require(t, "t")->view.data; });
}

alibi_status alibi_mask_create_varlen(alibi_context_t ctx, int batch, const int32_t* cu_seqlens_q,
                                      const int32_t* cu_seqlens_k, int causal,
                                      alibi_mask_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::mask_create_varlen(ctx, batch, cu_seqlens_q, cu_seqlens_k, causal);
  });
}

alibi_status alibi_mask_create_ranges(alibi_context_t ctx, int num_slices, const int32_t* q_ranges,
                                      const int32_t* k_ranges, const int32_t* types,
                                      int64_t total_q, int64_t total_k, alibi_mask_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::mask_create_ranges(ctx, num_slices, q_ranges, k_ranges, types, total_q,
                                     total_k);
  });
}

alibi_status alibi_mask_create_sliding_window(alibi_context_t ctx, int batch,
                                              const int32_t* cu_seqlens_q,
                                              const int32_t* cu_seqlens_k, int window_left,
                                              int window_right, alibi_mask_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::mask_create_sliding_window(ctx, batch, cu_seqlens_q, cu_seqlens_k,
                                             window_left, window_right);
  });
}

alibi_status alibi_mask_set_positions(alibi_mask_t mask, const int32_t* q_positions,
                                      const int32_t* k_positions) {
  return guarded(__func__, [&] { alibi::mask_set_positions(mask, q_positions, k_positions); });
}

alibi_status alibi_mask_get_num_slices(alibi_mask_t mask, int* out) {
  return guarded(__func__, [&] {
    *require(out, "out") = int(require(mask, "mask")->plan.slices.size());
  });
}

alibi_status alibi_mask_get_totals(alibi_mask_t mask, int64_t* total_q, int64_t* total_k) {
  return guarded(__func__, [&] {
    const alibi::MaskPlan& plan = require(mask, "mask")->plan;
    if (total_q) *total_q = plan.total_q;
    if (total_k) *total_k = plan.total_k;
  });
}

alibi_status alibi_mask_get_slices(alibi_mask_t mask, int32_t* q_ranges, int32_t* k_ranges,
                                   int32_t* types) {
  return guarded(__func__, [&] { alibi::mask_get_slices(mask, q_ranges, k_ranges, types); });
}

void alibi_mask_destroy(alibi_mask_t mask) { delete mask; }

void alibi_attention_params_init_v2(alibi_attention_params* params, size_t size) {
  if (!params) return;
  alibi_attention_params defaults = alibi::default_params();
  defaults.struct_size = size;
  const size_t known = std::min(size, sizeof defaults);
  std::memcpy(params, &defaults, known);
  std::memset(reinterpret_cast<char*>(params) + known, 0, size - known);
}

// In parentheses: the header's macro of the same name passes the caller's size.
void(alibi_attention_params_init)(alibi_attention_params* params) {
  alibi_attention_params_init_v2(params, alibi::kFirstParamsSize);
}

alibi_status alibi_attention_forward(alibi_context_t ctx, alibi_tensor_t q, alibi_tensor_t k,
                                     alibi_tensor_t v, alibi_mask_t mask,
                                     const alibi_attention_params* params, alibi_tensor_t out,
                                     alibi_tensor_t lse) {
  return guarded(__func__, [&] {
    alibi::attention_forward(ctx, q, k, v, mask, params, out, lse);
  });
}

alibi_status alibi_attention_backward(alibi_context_t ctx, alibi_tensor_t q, alibi_tensor_t k,
                                      alibi_tensor_t v, alibi_mask_t mask,
                                      const alibi_attention_params* params, alibi_tensor_t out,
                                      alibi_tensor_t lse, alibi_tensor_t dout, alibi_tensor_t dq,
                                      alibi_tensor_t dk, alibi_tensor_t dv,
                                      alibi_tensor_t dslopes) {
  return guarded(__func__, [&] {
    alibi::attention_backward(ctx, q, k, v, mask, params, out, lse, dout, dq, dk, dv, dslopes);
  });
}

alibi_status alibi_attention_forward_paged(alibi_context_t ctx, alibi_tensor_t q,
                                           alibi_tensor_t k_cache, alibi_tensor_t v_cache,
                                           alibi_tensor_t block_table, alibi_tensor_t cu_seqlens_q,
                                           alibi_tensor_t seqlens_k, int causal, int window_left,
                                           const alibi_attention_params* params,
                                           alibi_tensor_t out, alibi_tensor_t lse) {
  return guarded(__func__, [&] {
    alibi::attention_forward_paged(ctx, q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k,
                                   causal, window_left, params, out, lse);
  });
}

alibi_status alibi_attention_merge(alibi_context_t ctx, alibi_tensor_t out_a, alibi_tensor_t lse_a,
                                   alibi_tensor_t out_b, alibi_tensor_t lse_b, alibi_tensor_t out,
                                   alibi_tensor_t lse) {
  return guarded(__func__, [&] {
    alibi::attention_merge(ctx, out_a, lse_a, out_b, lse_b, out, lse);
  });
}

alibi_status alibi_compute_slopes(int num_heads, float max_bias, float* out) {
  return guarded(__func__, [&] {
    if (num_heads < 0)
      alibi::fail(ALIBI_STATUS_INVALID_ARGUMENT, "num_heads = %d is negative", num_heads);
    alibi::compute_slopes(num_heads, 0, num_heads, max_bias, out);
  });
}

alibi_status alibi_compute_slopes_tp(int total_heads, int head_offset, int num_heads,
                                     float max_bias, float* out) {
  return guarded(__func__, [&] {
    alibi::compute_slopes(total_heads, head_offset, num_heads, max_bias, out);
  });
}

alibi_status alibi_build_bias(alibi_context_t ctx, alibi_mask_t mask, int num_heads,
                              const alibi_attention_params* params, alibi_tensor_t out) {
  return guarded(__func__, [&] { alibi::build_bias(ctx, mask, num_heads, params, out); });
}

alibi_status alibi_build_dynamic_batching_mask(alibi_context_t ctx, alibi_tensor_t seqstarts,
                                               alibi_tensor_t kvstarts, alibi_tensor_t attn_mask,
                                               int num_heads, alibi_tensor_t out) {
  return guarded(__func__, [&] {
    alibi::build_dynamic_batching_mask(ctx, seqstarts, kvstarts, attn_mask, num_heads, out);
  });
}

alibi_status alibi_build_bloom_bias(alibi_context_t ctx, alibi_tensor_t attention_mask,
                                    int num_heads, alibi_tensor_t out) {
  return guarded(__func__, [&] {
    alibi::build_bloom_bias(ctx, attention_mask, num_heads, out);
  });
}

// Context parallelism (alibi_dist.h)

alibi_status alibi_comm_create(const alibi_comm_ops* ops, void* user, int rank, int size,
                               alibi_comm_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::dist::comm_create(ops, user, rank, size);
  });
}

alibi_status alibi_comm_get_rank(alibi_comm_t comm, int* out) {
  return guarded(__func__, [&] { *require(out, "out") = require(comm, "comm")->rank; });
}

alibi_status alibi_comm_get_size(alibi_comm_t comm, int* out) {
  return guarded(__func__, [&] { *require(out, "out") = require(comm, "comm")->size; });
}

void alibi_comm_destroy(alibi_comm_t comm) { alibi::dist::comm_destroy(comm); }

alibi_status alibi_dist_compute_pad_size(int64_t total_seqlen, int cp_size, int chunk_size,
                                         int64_t* out) {
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::dist::compute_pad_size(total_seqlen, cp_size, chunk_size);
  });
}

alibi_status alibi_dist_plan_create(alibi_mask_t mask, int cp_size, int chunk_size,
                                    alibi_dist_plan_t* out) {
  clear(out);
  return guarded(__func__, [&] {
    require(out, "out");
    *out = alibi::dist::plan_create(require(mask, "mask"), cp_size, chunk_size);
  });
}

alibi_status alibi_dist_plan_get_num_local_tokens(alibi_dist_plan_t plan, int64_t* out) {
  return guarded(__func__, [&] {
    *require(out, "out") = require(plan, "plan")->plan.local_tokens();
  });
}

alibi_status alibi_dist_plan_get_info(alibi_dist_plan_t plan, int* cp_size, int* chunk_size,
                                      int64_t* padded_total) {
  return guarded(__func__, [&] {
    const alibi::dist::Plan& p = require(plan, "plan")->plan;
    if (cp_size) *cp_size = p.cp_size;
    if (chunk_size) *chunk_size = p.chunk_size;
    if (padded_total) *padded_total = p.padded;
  });
}

alibi_status alibi_dist_plan_get_chunks(alibi_dist_plan_t plan, int rank, int32_t* chunk_ids) {
  return guarded(__func__, [&] {
    alibi::dist::plan_get_chunks(require(plan, "plan"), rank, require(chunk_ids, "chunk_ids"));
  });
}

alibi_status alibi_dist_plan_get_position_ids(alibi_dist_plan_t plan, int rank, int64_t* out) {
  return guarded(__func__, [&] {
    alibi::dist::plan_get_position_ids(require(plan, "plan"), rank, require(out, "out"));
  });
}

alibi_status alibi_dist_plan_get_workloads(alibi_dist_plan_t plan, int64_t* out) {
  return guarded(__func__, [&] {
    alibi::dist::plan_get_workloads(require(plan, "plan"), require(out, "out"));
  });
}

void alibi_dist_plan_destroy(alibi_dist_plan_t plan) { delete plan; }

alibi_status alibi_dist_dispatch(alibi_context_t ctx, alibi_dist_plan_t plan, int rank,
                                 alibi_tensor_t global_x, alibi_tensor_t local_x) {
  return guarded(__func__, [&] { alibi::dist::dispatch(ctx, plan, rank, global_x, local_x); });
}

alibi_status alibi_dist_undispatch(alibi_context_t ctx, alibi_comm_t comm, alibi_dist_plan_t plan,
                                   alibi_tensor_t local_x, alibi_tensor_t global_x) {
  return guarded(__func__, [&] { alibi::dist::undispatch(ctx, comm, plan, local_x, global_x); });
}

alibi_status alibi_dist_attention_forward(alibi_context_t ctx, alibi_comm_t comm,
                                          alibi_dist_plan_t plan, alibi_tensor_t q,
                                          alibi_tensor_t k, alibi_tensor_t v,
                                          const alibi_attention_params* params,
                                          alibi_tensor_t out, alibi_tensor_t lse) {
  return guarded(__func__, [&] {
    alibi::dist::attention_forward(ctx, comm, plan, q, k, v, params, out, lse);
  });
}

alibi_status alibi_dist_attention_backward(alibi_context_t ctx, alibi_comm_t comm,
                                           alibi_dist_plan_t plan, alibi_tensor_t q,
                                           alibi_tensor_t k, alibi_tensor_t v,
                                           const alibi_attention_params* params,
                                           alibi_tensor_t out, alibi_tensor_t lse,
                                           alibi_tensor_t dout, alibi_tensor_t dq,
                                           alibi_tensor_t dk, alibi_tensor_t dv,
                                           alibi_tensor_t dslopes) {
  return guarded(__func__, [&] {
    alibi::dist::attention_backward(ctx, comm, plan, q, k, v, params, out, lse, dout, dq, dk, dv,
                                    dslopes);
  });
}

}  // extern "C"
