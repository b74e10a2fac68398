// The operations behind the C ABI. Each validates every argument before any backend work and
// throws alibi::Error (function name excluded: the C shim adds it).
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/abi/objects.h"
#include "core/abi/params.h"

namespace alibi {

// Contexts (backend_registry.cpp)
int device_count(alibi_device kind);
alibi_context_s* context_create(alibi_device device, int device_index);

// Tensors (tensor.cpp)
alibi_tensor_s* tensor_create(alibi_context_s* ctx, alibi_dtype dtype, int ndim,
                              const int64_t* shape);
alibi_tensor_s* tensor_wrap(alibi_context_s* ctx, alibi_dtype dtype, int ndim,
                            const int64_t* shape, const int64_t* strides, void* data);
void tensor_copy_from_host(alibi_tensor_s* t, const void* src, size_t bytes);
void tensor_copy_to_host(alibi_tensor_s* t, void* dst, size_t bytes);
void tensor_get_dims(const alibi_tensor_s* t, const int64_t* dims, int capacity, int64_t* out);

// Masks (mask.cpp)
alibi_mask_s* mask_create_varlen(alibi_context_s* ctx, int batch, const int32_t* cu_q,
                                 const int32_t* cu_k, int causal);
alibi_mask_s* mask_create_ranges(alibi_context_s* ctx, int num_slices, const int32_t* q_ranges,
                                 const int32_t* k_ranges, const int32_t* types, int64_t total_q,
                                 int64_t total_k);
alibi_mask_s* mask_create_sliding_window(alibi_context_s* ctx, int batch, const int32_t* cu_q,
                                         const int32_t* cu_k, int left, int right);
void mask_set_positions(alibi_mask_s* mask, const int32_t* q_positions,
                        const int32_t* k_positions);
void mask_get_slices(const alibi_mask_s* mask, int32_t* q_ranges, int32_t* k_ranges,
                     int32_t* types);
// Plans a mask's rows and keys for a backend's shape, and its positions (once its slices are made).
void plan_slices(MaskPlan& plan, const PlanShape& shape);
// The plan of batch sequences with bottom-right aligned positions and no slices yet.
MaskPlan sequence_plan(int batch, const int32_t* cu_q, const int32_t* cu_k);
// The slices of one sequence's sliding window (alibi_mask_create_sliding_window).
void append_window_slices(MaskPlan& plan, int sequence, int32_t q0, int32_t sq, int32_t k0,
                          int32_t sk, int left, int right);

// Paged attention (paged.cpp)
void attention_forward_paged(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k_cache,
                             alibi_tensor_s* v_cache, alibi_tensor_s* block_table,
                             alibi_tensor_s* cu_seqlens_q, alibi_tensor_s* seqlens_k, int causal,
                             int window_left, const alibi_attention_params* params,
                             alibi_tensor_s* out, alibi_tensor_s* lse);

// Slopes (params.cpp)
void compute_slopes(int total_heads, int head_offset, int num_heads, float max_bias, float* out);

// Attention and builders (attention.cpp, backward.cpp, merge.cpp, builders.cpp)

// A forward call's arguments, validated and resolved: what the backend gets. args.slopes points
// into resolved, the tensors' views into the caller's objects.
struct ForwardCall {
  ResolvedParams resolved;
  ForwardArgs args;
};
// A backend's forward arguments from validated tensors (k, v: packed or paged caches) and
// resolved params (slopes point into `resolved`); the mask is the caller's to set.
ForwardArgs forward_args(const alibi_tensor_s& q, const alibi_tensor_s& k, const alibi_tensor_s& v,
                         const alibi_tensor_s& out, const alibi_tensor_s* lse, const ResolvedParams& resolved);
// Every check of alibi_attention_forward (lse optional), nothing run.
ForwardCall validate_forward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                             alibi_tensor_s* v, alibi_mask_s* mask,
                             const alibi_attention_params* params, alibi_tensor_s* out,
                             alibi_tensor_s* lse);
void attention_forward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                       alibi_tensor_s* v, alibi_mask_s* mask,
                       const alibi_attention_params* params, alibi_tensor_s* out,
                       alibi_tensor_s* lse);
// A backward call's arguments, validated and resolved (args.forward.slopes points into resolved).
struct BackwardCall {
  ResolvedParams resolved;
  BackwardArgs args;
};
// Every check of alibi_attention_backward, nothing run.
BackwardCall validate_backward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                               alibi_tensor_s* v, alibi_mask_s* mask,
                               const alibi_attention_params* params, alibi_tensor_s* out,
                               alibi_tensor_s* lse, alibi_tensor_s* dout, alibi_tensor_s* dq,
                               alibi_tensor_s* dk, alibi_tensor_s* dv, alibi_tensor_s* dslopes);
void attention_backward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                        alibi_tensor_s* v, alibi_mask_s* mask,
                        const alibi_attention_params* params, alibi_tensor_s* out,
                        alibi_tensor_s* lse, alibi_tensor_s* dout, alibi_tensor_s* dq,
                        alibi_tensor_s* dk, alibi_tensor_s* dv, alibi_tensor_s* dslopes);
void attention_merge(alibi_context_s* ctx, alibi_tensor_s* out_a, alibi_tensor_s* lse_a,
                     alibi_tensor_s* out_b, alibi_tensor_s* lse_b, alibi_tensor_s* out,
                     alibi_tensor_s* lse);
void build_bias(alibi_context_s* ctx, alibi_mask_s* mask, int num_heads,
                const alibi_attention_params* params, alibi_tensor_s* out);
void build_dynamic_batching_mask(alibi_context_s* ctx, alibi_tensor_s* seqstarts,
                                 alibi_tensor_s* kvstarts, alibi_tensor_s* attn_mask,
                                 int num_heads, alibi_tensor_s* out);
void build_bloom_bias(alibi_context_s* ctx, alibi_tensor_s* attention_mask, int num_heads,
                      alibi_tensor_s* out);

// Shared argument checks (validate.cpp)
template <class T>
T* require(T* pointer, const char* name) {
  if (!pointer) fail(ALIBI_STATUS_NULL_POINTER, "%s is NULL", name);
  return pointer;
}
void require_same_device(const alibi_context_s& ctx, alibi_device kind, int index,
                         const char* name);
void require_ndim(const TensorView& t, int ndim, const char* name, const char* layout);
void require_dim(const TensorView& t, int dim, int64_t expected, const char* name,
                 const char* expected_what);
void require_float_dtype(const TensorView& t, const char* name);
// The last dim has stride 1 (or a single element).
void require_contiguous_last_dim(const TensorView& t, const char* name);
// q (tokens, Hq, D): 1..65536 heads of dim 1..65536.
void require_head_limits(const TensorView& q);
// An lse tensor: (heads, tokens) f32 on the context's device. The names say what fixes the
// sizes, for the messages.
struct LseShape {
  int64_t heads, tokens;
  const char* layout;  // e.g. "(Hq, total_q)"
  const char* heads_are;
  const char* tokens_are;
};
void require_lse(const alibi_context_s& ctx, const alibi_tensor_s& lse, const char* name,
                 const LseShape& shape);
const char* dtype_name(alibi_dtype dtype);

}  // namespace alibi
