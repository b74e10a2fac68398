/*
 * The common SWIG layer of the Java, C# and Go bindings (one per language: bindings/<lang>/alibi.i
 * includes this file; the %include "local.i" below finds that language's typemaps through its -I).
 *
 * It wraps include/alibi/alibi.h as it is: the raw API. Handles become the language's
 * pointer-sized integer (Java long, C# IntPtr, Go uintptr), host arrays its arrays or slices.
 * Each local.i has one typemap for alibi_status: a failed call throws AlibiException (Java, C#)
 * or returns an *alibi.Error (Go), with the status and the message of alibi_binding_error_message()
 * read in the C wrapper right after the call. The idiomatic classes of each language
 * (bindings/<lang>/) are written over these calls.
 */
%module alibi

%{
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alibi/alibi.h"

#if defined(_MSC_VER)
#  define ALIBI_BINDING_THREAD_LOCAL __declspec(thread)
#else
#  define ALIBI_BINDING_THREAD_LOCAL _Thread_local
#endif

/*
 * Failures that the helpers of this file find themselves. The library's last error is the
 * library's own to set, so they keep their message here, pending until the status typemap of
 * the same call reads it.
 */
static ALIBI_BINDING_THREAD_LOCAL struct {
  int pending;
  char text[512];
} alibi_binding_error;

static alibi_status alibi_binding_fail(alibi_status status, const char* format, ...) {
  va_list args;
  va_start(args, format);
  vsnprintf(alibi_binding_error.text, sizeof alibi_binding_error.text, format, args);
  va_end(args);
  alibi_binding_error.pending = 1;
  return status;
}

/* The message of the call that just failed on this thread: a helper's own, else the library's. */
static const char* alibi_binding_error_message(void) {
  if (!alibi_binding_error.pending) return alibi_last_error_message();
  alibi_binding_error.pending = 0;
  return alibi_binding_error.text;
}
%}

%include <stdint.i>
/* 64-bit everywhere (Java and C# map a C long to 32 bits). */
%apply long long { int64_t };

%rename(Status) alibi_status;
%rename(DType) alibi_dtype;
%rename(Device) alibi_device;
%rename(MaskType) alibi_mask_type;

/* The binding layers read alibi_last_error_message(); the copy form needs a C buffer. */
%ignore alibi_last_error_copy;
/* Slopes are set with set_slopes, which copies them into memory the struct owns. */
%ignore alibi_attention_params::slopes;
%immutable alibi_attention_params::struct_size;

%include "local.i"

%include "alibi/alibi.h"

%extend alibi_attention_params {
  /* The defaults of alibi_attention_params_init. */
  alibi_attention_params() {
    alibi_attention_params* p = (alibi_attention_params*)calloc(1, sizeof *p);
    if (p) alibi_attention_params_init(p);
    return p;
  }
  ~alibi_attention_params() {
    free((void*)$self->slopes);
    free($self);
  }
  /* Copies count slopes (count 0: back to the formula). */
  alibi_status set_slopes(const float* slopes, int count) {
    float* copy = NULL;
    if (count < 0)
      return alibi_binding_fail(ALIBI_STATUS_INVALID_ARGUMENT,
                                "alibi_attention_params_set_slopes: count = %d is negative", count);
    if (count > 0 && !slopes)
      return alibi_binding_fail(ALIBI_STATUS_NULL_POINTER,
                                "alibi_attention_params_set_slopes: slopes is NULL, count = %d", count);
    if (count > 0) {
      copy = (float*)malloc((size_t)count * sizeof *copy);
      if (!copy)
        return alibi_binding_fail(ALIBI_STATUS_OUT_OF_MEMORY,
                                  "alibi_attention_params_set_slopes: cannot allocate %d slopes", count);
      memcpy(copy, slopes, (size_t)count * sizeof *copy);
    }
    free((void*)$self->slopes);
    $self->slopes = copy;
    return ALIBI_STATUS_SUCCESS;
  }
}

/*
 * Attention forward, backward and merge over caller arrays, each passed with its element count
 * (the pair typemaps (const CTYPE* ARRAY, size_t COUNT) and (CTYPE* ARRAY, size_t COUNT) of each
 * local.i) and wrapped, not copied, for this call only. Their lengths give the token counts; the
 * helpers check what only they can (NULL arrays, lengths that are not whole rows), and the
 * library reports the rest, naming the argument whose rows disagree.
 */
%apply (const float* ARRAY, size_t COUNT) {
  (const float* q, size_t q_count), (const float* k, size_t k_count),
  (const float* v, size_t v_count), (const float* out_a, size_t out_a_count),
  (const float* lse_a, size_t lse_a_count), (const float* out_b, size_t out_b_count),
  (const float* lse_b, size_t lse_b_count) };
%apply (float* ARRAY, size_t COUNT) { (float* out, size_t out_count), (float* lse, size_t lse_count) };
%apply (const uint16_t* ARRAY, size_t COUNT) {
  (const uint16_t* q, size_t q_count), (const uint16_t* k, size_t k_count),
  (const uint16_t* v, size_t v_count), (const uint16_t* out_a, size_t out_a_count),
  (const uint16_t* out_b, size_t out_b_count) };
%apply (uint16_t* ARRAY, size_t COUNT) { (uint16_t* out, size_t out_count) };
/* The backward's inputs out, lse and dout, and its gradients. */
%apply (const float* ARRAY, size_t COUNT) {
  (const float* out, size_t out_count), (const float* lse, size_t lse_count),
  (const float* dout, size_t dout_count) };
%apply (float* ARRAY, size_t COUNT) {
  (float* dq, size_t dq_count), (float* dk, size_t dk_count), (float* dv, size_t dv_count),
  (float* dslopes, size_t dslopes_count) };
%apply (const uint16_t* ARRAY, size_t COUNT) {
  (const uint16_t* out, size_t out_count), (const uint16_t* dout, size_t dout_count) };
%apply (uint16_t* ARRAY, size_t COUNT) {
  (uint16_t* dq, size_t dq_count), (uint16_t* dk, size_t dk_count),
  (uint16_t* dv, size_t dv_count) };

/* The paged forward's caches (like q's data) and its int32 tables. */
%apply (const float* ARRAY, size_t COUNT) {
  (const float* k_cache, size_t k_cache_count), (const float* v_cache, size_t v_cache_count) };
%apply (const uint16_t* ARRAY, size_t COUNT) {
  (const uint16_t* k_cache, size_t k_cache_count),
  (const uint16_t* v_cache, size_t v_cache_count) };
%apply (const int32_t* ARRAY, size_t COUNT) {
  (const int32_t* block_table, size_t block_table_count),
  (const int32_t* cu_seqlens_q, size_t cu_seqlens_q_count),
  (const int32_t* seqlens_k, size_t seqlens_k_count) };

%{
/* An array argument of the array helpers: its name in messages, its data and element count. */
typedef struct {
  const char* name;
  const void* data;
  size_t count;
} alibi_binding_array;

/* The most sizes of an operand: a paged cache's (num_blocks, block_size, heads_kv, head_dim). */
#define ALIBI_BINDING_MAX_NDIM 4

/*
 * An array as the tensor it is wrapped as: ndim <= ALIBI_BINDING_MAX_NDIM sizes, named in
 * messages; at most one size is -1, given by the array's length. An optional array may be NULL.
 */
typedef struct {
  alibi_binding_array array;
  alibi_dtype dtype;
  int ndim;
  int64_t sizes[ALIBI_BINDING_MAX_NDIM];
  const char* names[ALIBI_BINDING_MAX_NDIM];
  int optional;
} alibi_binding_operand;

/* The product of the known sizes, e.g. "the mask's total_k 14 x heads_kv 2 x head_dim 32" in
 * text; 0 when it overflows. */
static uint64_t alibi_binding_known_product(const alibi_binding_operand* op, char* text,
                                            size_t capacity) {
  uint64_t product = 1;
  size_t used = 0;
  int d;
  text[0] = '\0';
  for (d = 0; d < op->ndim; ++d) {
    if (op->sizes[d] < 0) continue;
    if (op->sizes[d] > 0 && product > UINT64_MAX / (uint64_t)op->sizes[d]) return 0;
    product *= (uint64_t)op->sizes[d];
    if (used < capacity)
      used += (size_t)snprintf(text + used, capacity - used, "%s%s %lld", used ? " x " : "",
                               op->names[d], (long long)op->sizes[d]);
  }
  return product;
}

/*
 * The array's length must be the sizes' product, or (one size -1) a multiple of the others'. A
 * known size 0 (a table of no sequences: an empty batch, which the library accepts) asks for an
 * empty array and makes the unknown size 0.
 */
static alibi_status alibi_binding_wrap(const char* function, alibi_context_t ctx,
                                       const alibi_binding_operand* op, alibi_tensor_t* out) {
  char sizes_text[200];
  int64_t shape[ALIBI_BINDING_MAX_NDIM];
  int d, unknown = -1, zero = 0;
  uint64_t product;
  if (!op->array.data)
    return alibi_binding_fail(ALIBI_STATUS_NULL_POINTER, "%s: %s is NULL", function,
                              op->array.name);
  product = alibi_binding_known_product(op, sizes_text, sizeof sizes_text);
  for (d = 0; d < op->ndim; ++d) {
    shape[d] = op->sizes[d];
    if (op->sizes[d] < 0) unknown = d;
    if (op->sizes[d] == 0) zero = 1;
  }
  if ((unknown < 0 || zero) && op->array.count != product)
    return alibi_binding_fail(ALIBI_STATUS_SHAPE_MISMATCH,
                              "%s: %s has %zu elements, expected %llu = %s", function,
                              op->array.name, op->array.count, (unsigned long long)product,
                              sizes_text);
  if (unknown >= 0 && !zero && (product == 0 || op->array.count % product != 0))
    return alibi_binding_fail(ALIBI_STATUS_SHAPE_MISMATCH,
                              "%s: %s has %zu elements, not a multiple of %llu = %s", function,
                              op->array.name, op->array.count, (unsigned long long)product,
                              sizes_text);
  if (unknown >= 0) shape[unknown] = zero ? 0 : (int64_t)(op->array.count / product);
  return alibi_tensor_wrap(ctx, op->dtype, op->ndim, shape, NULL, (void*)op->array.data, out);
}

/* The earlier operand wrapped exactly as operand i (the same array passed twice), or -1. */
static int alibi_binding_same_as_earlier(const alibi_binding_operand* ops, int i) {
  int j;
  for (j = 0; j < i; ++j)
    if (ops[j].array.data && ops[j].array.data == ops[i].array.data &&
        ops[j].array.count == ops[i].array.count && ops[j].dtype == ops[i].dtype &&
        ops[j].ndim == ops[i].ndim && !memcmp(ops[j].sizes, ops[i].sizes, sizeof ops[i].sizes))
      return j;
  return -1;
}

/*
 * Wraps the operands in order up to the first failure (tensors[i] NULL for an absent optional
 * one). One array passed for two arguments is one tensor, so an in-place call passes the library
 * the very same tensor, as its contract asks.
 */
static alibi_status alibi_binding_wrap_all(const char* function, alibi_context_t ctx,
                                           const alibi_binding_operand* ops, int n,
                                           alibi_tensor_t* tensors) {
  alibi_status s = ALIBI_STATUS_SUCCESS;
  int i;
  for (i = 0; i < n && s == ALIBI_STATUS_SUCCESS; ++i) {
    const int same = alibi_binding_same_as_earlier(ops, i);
    if (same >= 0) tensors[i] = tensors[same];
    else if (ops[i].array.data || !ops[i].optional)
      s = alibi_binding_wrap(function, ctx, &ops[i], &tensors[i]);
  }
  return s;
}

/* Destroys each tensor of wrap_all once. */
static void alibi_binding_destroy_all(const alibi_binding_operand* ops, int n,
                                      alibi_tensor_t* tensors) {
  int i;
  for (i = 0; i < n; ++i)
    if (alibi_binding_same_as_earlier(ops, i) < 0) alibi_tensor_destroy(tensors[i]);
}

static alibi_status alibi_binding_require_16_bit(const char* function, alibi_dtype dtype) {
  if (dtype == ALIBI_DTYPE_F16 || dtype == ALIBI_DTYPE_BF16) return ALIBI_STATUS_SUCCESS;
  return alibi_binding_fail(ALIBI_STATUS_DTYPE_MISMATCH,
                            "%s: dtype = %d is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
                            function, (int)dtype);
}

/* What the forward and backward helpers check array lengths against: the mask's totals and the
 * caller's heads and head_dim. */
typedef struct {
  int64_t total_q, total_k;
  int heads_q, heads_kv, head_dim;
} alibi_binding_layout;

/* heads_q, heads_kv and head_dim >= 1 and a mask, whose totals complete the layout. */
static alibi_status alibi_binding_get_layout(const char* function, int heads_q, int heads_kv,
                                             int head_dim, alibi_mask_t mask,
                                             alibi_binding_layout* layout) {
  if (heads_q < 1 || heads_kv < 1 || head_dim < 1)
    return alibi_binding_fail(ALIBI_STATUS_INVALID_ARGUMENT,
                              "%s: heads_q = %d, heads_kv = %d, head_dim = %d; each must be >= 1",
                              function, heads_q, heads_kv, head_dim);
  if (!mask) return alibi_binding_fail(ALIBI_STATUS_NULL_POINTER, "%s: mask is NULL", function);
  layout->heads_q = heads_q;
  layout->heads_kv = heads_kv;
  layout->head_dim = head_dim;
  return alibi_mask_get_totals(mask, &layout->total_q, &layout->total_k);
}

/* An array shaped like q: (the mask's total_q, heads_q, head_dim) of dtype. */
static alibi_binding_operand alibi_binding_like_q(alibi_binding_array array, alibi_dtype dtype,
                                                  const alibi_binding_layout* l, int optional) {
  const alibi_binding_operand op = {array, dtype, 3, {l->total_q, l->heads_q, l->head_dim},
                                    {"the mask's total_q", "heads_q", "head_dim"}, optional};
  return op;
}

/* An array shaped like k: (the mask's total_k, heads_kv, head_dim) of dtype. */
static alibi_binding_operand alibi_binding_like_k(alibi_binding_array array, alibi_dtype dtype,
                                                  const alibi_binding_layout* l, int optional) {
  const alibi_binding_operand op = {array, dtype, 3, {l->total_k, l->heads_kv, l->head_dim},
                                    {"the mask's total_k", "heads_kv", "head_dim"}, optional};
  return op;
}

/* A log-sum-exp array: (heads_q, the mask's total_q) f32. */
static alibi_binding_operand alibi_binding_like_lse(alibi_binding_array array,
                                                    const alibi_binding_layout* l, int optional) {
  const alibi_binding_operand op = {array, ALIBI_DTYPE_F32, 2, {l->heads_q, l->total_q},
                                    {"heads_q", "the mask's total_q"}, optional};
  return op;
}

/* dslopes (optional, f32): (heads_q), or (sequences, heads_q) with per-sequence slopes, whose
 * count the library checks against the mask's sequences. */
static alibi_binding_operand alibi_binding_like_dslopes(alibi_binding_array array,
                                                        const alibi_binding_layout* l,
                                                        int per_sequence) {
  const alibi_binding_operand per_head = {array, ALIBI_DTYPE_F32, 1, {l->heads_q}, {"heads_q"}, 1};
  const alibi_binding_operand per_sequence_and_head = {
      array, ALIBI_DTYPE_F32, 2, {-1, l->heads_q}, {"sequences", "heads_q"}, 1};
  return per_sequence ? per_sequence_and_head : per_head;
}

/* q and out (total_q, heads_q, head_dim), k and v (total_k, heads_kv, head_dim), lse NULL or
 * (heads_q, total_q) f32, where total_q and total_k are the mask's: each array's length is checked
 * against them, so a message names the array that is wrong. */
static alibi_status alibi_binding_forward(const char* function, alibi_context_t ctx,
                                          alibi_dtype dtype, int heads_q, int heads_kv,
                                          int head_dim, alibi_binding_array q,
                                          alibi_binding_array k, alibi_binding_array v,
                                          alibi_mask_t mask, const alibi_attention_params* params,
                                          alibi_binding_array out, alibi_binding_array lse) {
  alibi_binding_layout l;
  alibi_tensor_t t[5] = {NULL};
  alibi_status s = alibi_binding_get_layout(function, heads_q, heads_kv, head_dim, mask, &l);
  if (s == ALIBI_STATUS_SUCCESS) {
    const alibi_binding_operand ops[5] = {
        alibi_binding_like_q(q, dtype, &l, 0), alibi_binding_like_k(k, dtype, &l, 0),
        alibi_binding_like_k(v, dtype, &l, 0), alibi_binding_like_q(out, dtype, &l, 0),
        alibi_binding_like_lse(lse, &l, 1)};
    s = alibi_binding_wrap_all(function, ctx, ops, 5, t);
    if (s == ALIBI_STATUS_SUCCESS)
      s = alibi_attention_forward(ctx, t[0], t[1], t[2], mask, params, t[3], t[4]);
    alibi_binding_destroy_all(ops, 5, t);
  }
  return s;
}

/* The forward's arrays and the gradients of a backward call (all but lse, dout: optional). */
typedef struct {
  alibi_binding_array q, k, v, out, lse, dout, dq, dk, dv, dslopes;
} alibi_binding_backward_arrays;

/* As alibi_binding_forward, with lse required, plus dout (like out) and the optional gradients:
 * dq like q, dk and dv like k, all in dtype, and dslopes. */
static alibi_status alibi_binding_backward(const char* function, alibi_context_t ctx,
                                           alibi_dtype dtype, int heads_q, int heads_kv,
                                           int head_dim, alibi_mask_t mask,
                                           const alibi_attention_params* params,
                                           alibi_binding_backward_arrays a) {
  alibi_binding_layout l;
  alibi_tensor_t t[10] = {NULL};
  alibi_status s = alibi_binding_get_layout(function, heads_q, heads_kv, head_dim, mask, &l);
  if (s == ALIBI_STATUS_SUCCESS) {
    const alibi_binding_operand ops[10] = {
        alibi_binding_like_q(a.q, dtype, &l, 0),    alibi_binding_like_k(a.k, dtype, &l, 0),
        alibi_binding_like_k(a.v, dtype, &l, 0),    alibi_binding_like_q(a.out, dtype, &l, 0),
        alibi_binding_like_lse(a.lse, &l, 0),       alibi_binding_like_q(a.dout, dtype, &l, 0),
        alibi_binding_like_q(a.dq, dtype, &l, 1),   alibi_binding_like_k(a.dk, dtype, &l, 1),
        alibi_binding_like_k(a.dv, dtype, &l, 1),
        alibi_binding_like_dslopes(a.dslopes, &l, params && params->slopes_per_batch)};
    s = alibi_binding_wrap_all(function, ctx, ops, 10, t);
    if (s == ALIBI_STATUS_SUCCESS)
      s = alibi_attention_backward(ctx, t[0], t[1], t[2], mask, params, t[3], t[4], t[5], t[6],
                                   t[7], t[8], t[9]);
    alibi_binding_destroy_all(ops, 10, t);
  }
  return s;
}

/* out_a, out_b and out (tokens, heads, head_dim); lse_a, lse_b and lse (heads, tokens) f32, lse
 * may be NULL. */
static alibi_status alibi_binding_merge(const char* function, alibi_context_t ctx,
                                        alibi_dtype dtype, int heads, int head_dim,
                                        alibi_binding_array out_a, alibi_binding_array lse_a,
                                        alibi_binding_array out_b, alibi_binding_array lse_b,
                                        alibi_binding_array out, alibi_binding_array lse) {
  const alibi_binding_operand ops[6] = {
      {out_a, dtype, 3, {-1, heads, head_dim}, {"tokens", "heads", "head_dim"}, 0},
      {lse_a, ALIBI_DTYPE_F32, 2, {heads, -1}, {"heads", "tokens"}, 0},
      {out_b, dtype, 3, {-1, heads, head_dim}, {"tokens", "heads", "head_dim"}, 0},
      {lse_b, ALIBI_DTYPE_F32, 2, {heads, -1}, {"heads", "tokens"}, 0},
      {out, dtype, 3, {-1, heads, head_dim}, {"tokens", "heads", "head_dim"}, 0},
      {lse, ALIBI_DTYPE_F32, 2, {heads, -1}, {"heads", "tokens"}, 1}};
  alibi_tensor_t t[6] = {NULL};
  alibi_status s;
  if (heads < 1 || head_dim < 1)
    return alibi_binding_fail(ALIBI_STATUS_INVALID_ARGUMENT,
                              "%s: heads = %d, head_dim = %d; each must be >= 1", function, heads,
                              head_dim);
  s = alibi_binding_wrap_all(function, ctx, ops, 6, t);
  if (s == ALIBI_STATUS_SUCCESS)
    s = alibi_attention_merge(ctx, t[0], t[1], t[2], t[3], t[4], t[5]);
  alibi_binding_destroy_all(ops, 6, t);
  return s;
}

/* The arrays of a paged forward call. */
typedef struct {
  alibi_binding_array q, k_cache, v_cache, block_table, cu_seqlens_q, seqlens_k, out, lse;
} alibi_binding_paged_arrays;

/* The sizes a paged call's arrays are checked against, besides the tables' sequences. */
typedef struct {
  int heads_q, heads_kv, head_dim, block_size;
} alibi_binding_paged_layout;

/* The operands of a paged call, in this order, with sequences = seqlens_k's length: q
 * (total_q, heads_q, head_dim), k_cache and v_cache (num_blocks, block_size, heads_kv, head_dim),
 * seqlens_k, block_table (sequences, max_blocks), cu_seqlens_q (sequences + 1), out like q, lse
 * NULL or (heads_q, total_q) f32. The library checks total_q against cu_seqlens_q. */
static void alibi_binding_paged_operands(alibi_dtype dtype, const alibi_binding_paged_layout* l,
                                         const alibi_binding_paged_arrays* a,
                                         alibi_binding_operand ops[8]) {
  const int64_t sequences = (int64_t)a->seqlens_k.count;
  const alibi_binding_operand q = {a->q, dtype, 3, {-1, l->heads_q, l->head_dim},
                                   {"total_q", "heads_q", "head_dim"}, 0};
  const alibi_binding_operand cache = {
      a->k_cache, dtype, 4, {-1, l->block_size, l->heads_kv, l->head_dim},
      {"num_blocks", "block_size", "heads_kv", "head_dim"}, 0};
  const alibi_binding_operand table = {a->block_table, ALIBI_DTYPE_I32, 2, {sequences, -1},
                                       {"seqlens_k's length", "max_blocks"}, 0};
  const alibi_binding_operand cu_seqlens_q = {a->cu_seqlens_q, ALIBI_DTYPE_I32, 1,
                                              {sequences + 1}, {"seqlens_k's length + 1 ="}, 0};
  const alibi_binding_operand seqlens_k = {a->seqlens_k, ALIBI_DTYPE_I32, 1, {-1},
                                           {"sequences"}, 0};
  const alibi_binding_operand lse = {a->lse, ALIBI_DTYPE_F32, 2, {l->heads_q, -1},
                                     {"heads_q", "total_q"}, 1};
  ops[0] = q;
  ops[1] = ops[2] = cache;
  ops[2].array = a->v_cache;
  ops[3] = seqlens_k;  /* before the tables sized by it: a missing one is named as such */
  ops[4] = table;
  ops[5] = cu_seqlens_q;
  ops[6] = q;
  ops[6].array = a->out;
  ops[7] = lse;
}

/* Wraps a paged call's arrays (alibi_binding_paged_operands) and runs
 * alibi_attention_forward_paged over them. */
static alibi_status alibi_binding_forward_paged(const char* function, alibi_context_t ctx,
                                                alibi_dtype dtype, alibi_binding_paged_layout l,
                                                alibi_binding_paged_arrays a, int causal,
                                                int window_left,
                                                const alibi_attention_params* params) {
  alibi_binding_operand ops[8];
  alibi_tensor_t t[8] = {NULL};
  alibi_status s;
  if (l.heads_q < 1 || l.heads_kv < 1 || l.head_dim < 1 || l.block_size < 1)
    return alibi_binding_fail(ALIBI_STATUS_INVALID_ARGUMENT,
                              "%s: heads_q = %d, heads_kv = %d, head_dim = %d, block_size = %d; "
                              "each must be >= 1",
                              function, l.heads_q, l.heads_kv, l.head_dim, l.block_size);
  alibi_binding_paged_operands(dtype, &l, &a, ops);
  s = alibi_binding_wrap_all(function, ctx, ops, 8, t);
  if (s == ALIBI_STATUS_SUCCESS)
    s = alibi_attention_forward_paged(ctx, t[0], t[1], t[2], t[4], t[5], t[3], causal,
                                      window_left, params, t[6], t[7]);
  alibi_binding_destroy_all(ops, 8, t);
  return s;
}
%}

%inline %{
/* f32 q, k, v and out. */
alibi_status alibi_binding_forward_f32(alibi_context_t ctx, int heads_q, int heads_kv, int head_dim,
                                       const float* q, size_t q_count, const float* k,
                                       size_t k_count, const float* v, size_t v_count,
                                       alibi_mask_t mask, const alibi_attention_params* params,
                                       float* out, size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_array aq = {"q", q, q_count}, ak = {"k", k, k_count}, av = {"v", v, v_count};
  const alibi_binding_array aout = {"out", out, out_count}, alse = {"lse", lse, lse_count};
  return alibi_binding_forward(__func__, ctx, ALIBI_DTYPE_F32, heads_q, heads_kv, head_dim, aq, ak,
                               av, mask, params, aout, alse);
}

/* f16 or bf16 q, k, v and out, as their 16-bit patterns. */
alibi_status alibi_binding_forward_u16(alibi_context_t ctx, alibi_dtype dtype, int heads_q,
                                       int heads_kv, int head_dim, const uint16_t* q,
                                       size_t q_count, const uint16_t* k, size_t k_count,
                                       const uint16_t* v, size_t v_count, alibi_mask_t mask,
                                       const alibi_attention_params* params, uint16_t* out,
                                       size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_array aq = {"q", q, q_count}, ak = {"k", k, k_count}, av = {"v", v, v_count};
  const alibi_binding_array aout = {"out", out, out_count}, alse = {"lse", lse, lse_count};
  const alibi_status s = alibi_binding_require_16_bit(__func__, dtype);
  if (s != ALIBI_STATUS_SUCCESS) return s;
  return alibi_binding_forward(__func__, ctx, dtype, heads_q, heads_kv, head_dim, aq, ak, av, mask,
                               params, aout, alse);
}

/* f32 out_a, out_b and out; out may be out_a or out_b, lse lse_a or lse_b (in place). */
alibi_status alibi_binding_merge_f32(alibi_context_t ctx, int heads, int head_dim,
                                     const float* out_a, size_t out_a_count, const float* lse_a,
                                     size_t lse_a_count, const float* out_b, size_t out_b_count,
                                     const float* lse_b, size_t lse_b_count, float* out,
                                     size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_array aout_a = {"out_a", out_a, out_a_count};
  const alibi_binding_array alse_a = {"lse_a", lse_a, lse_a_count};
  const alibi_binding_array aout_b = {"out_b", out_b, out_b_count};
  const alibi_binding_array alse_b = {"lse_b", lse_b, lse_b_count};
  const alibi_binding_array aout = {"out", out, out_count}, alse = {"lse", lse, lse_count};
  return alibi_binding_merge(__func__, ctx, ALIBI_DTYPE_F32, heads, head_dim, aout_a, alse_a,
                             aout_b, alse_b, aout, alse);
}

/* f16 or bf16 out_a, out_b and out, as their 16-bit patterns; lse_a, lse_b and lse f32. */
alibi_status alibi_binding_merge_u16(alibi_context_t ctx, alibi_dtype dtype, int heads,
                                     int head_dim, const uint16_t* out_a, size_t out_a_count,
                                     const float* lse_a, size_t lse_a_count,
                                     const uint16_t* out_b, size_t out_b_count,
                                     const float* lse_b, size_t lse_b_count, uint16_t* out,
                                     size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_array aout_a = {"out_a", out_a, out_a_count};
  const alibi_binding_array alse_a = {"lse_a", lse_a, lse_a_count};
  const alibi_binding_array aout_b = {"out_b", out_b, out_b_count};
  const alibi_binding_array alse_b = {"lse_b", lse_b, lse_b_count};
  const alibi_binding_array aout = {"out", out, out_count}, alse = {"lse", lse, lse_count};
  const alibi_status s = alibi_binding_require_16_bit(__func__, dtype);
  if (s != ALIBI_STATUS_SUCCESS) return s;
  return alibi_binding_merge(__func__, ctx, dtype, heads, head_dim, aout_a, alse_a, aout_b,
                             alse_b, aout, alse);
}

/*
 * Backward over f32 arrays: q, k, v, mask and params those of the forward, out and lse (required)
 * its results, dout the gradient of out; dq, dk, dv (f32) and dslopes NULL (count 0) when not
 * wanted. Each length is checked against the mask's totals.
 */
alibi_status alibi_binding_backward_f32(alibi_context_t ctx, int heads_q, int heads_kv,
                                        int head_dim, const float* q, size_t q_count,
                                        const float* k, size_t k_count, const float* v,
                                        size_t v_count, alibi_mask_t mask,
                                        const alibi_attention_params* params, const float* out,
                                        size_t out_count, const float* lse, size_t lse_count,
                                        const float* dout, size_t dout_count, float* dq,
                                        size_t dq_count, float* dk, size_t dk_count, float* dv,
                                        size_t dv_count, float* dslopes, size_t dslopes_count) {
  const alibi_binding_backward_arrays a = {
      {"q", q, q_count},       {"k", k, k_count},          {"v", v, v_count},
      {"out", out, out_count}, {"lse", lse, lse_count},    {"dout", dout, dout_count},
      {"dq", dq, dq_count},    {"dk", dk, dk_count},       {"dv", dv, dv_count},
      {"dslopes", dslopes, dslopes_count}};
  return alibi_binding_backward(__func__, ctx, ALIBI_DTYPE_F32, heads_q, heads_kv, head_dim, mask,
                                params, a);
}

/* As alibi_binding_backward_f32, for f16 or bf16 q, k, v, out, dout and dq, dk, dv (as their
 * 16-bit patterns); lse and dslopes f32. */
alibi_status alibi_binding_backward_u16(alibi_context_t ctx, alibi_dtype dtype, int heads_q,
                                        int heads_kv, int head_dim, const uint16_t* q,
                                        size_t q_count, const uint16_t* k, size_t k_count,
                                        const uint16_t* v, size_t v_count, alibi_mask_t mask,
                                        const alibi_attention_params* params,
                                        const uint16_t* out, size_t out_count, const float* lse,
                                        size_t lse_count, const uint16_t* dout, size_t dout_count,
                                        uint16_t* dq, size_t dq_count, uint16_t* dk,
                                        size_t dk_count, uint16_t* dv, size_t dv_count,
                                        float* dslopes, size_t dslopes_count) {
  const alibi_binding_backward_arrays a = {
      {"q", q, q_count},       {"k", k, k_count},          {"v", v, v_count},
      {"out", out, out_count}, {"lse", lse, lse_count},    {"dout", dout, dout_count},
      {"dq", dq, dq_count},    {"dk", dk, dk_count},       {"dv", dv, dv_count},
      {"dslopes", dslopes, dslopes_count}};
  const alibi_status s = alibi_binding_require_16_bit(__func__, dtype);
  if (s != ALIBI_STATUS_SUCCESS) return s;
  return alibi_binding_backward(__func__, ctx, dtype, heads_q, heads_kv, head_dim, mask, params,
                                a);
}

/*
 * Paged forward over f32 arrays (alibi_attention_forward_paged): q and out (total_q, heads_q,
 * head_dim), k_cache and v_cache (num_blocks, block_size, heads_kv, head_dim), block_table
 * (sequences, max_blocks), cu_seqlens_q (sequences + 1) and seqlens_k (sequences) int32, lse NULL
 * (count 0) or (heads_q, total_q); sequences is seqlens_k's length, 0 for an empty batch (q, out,
 * block_table and seqlens_k empty, cu_seqlens_q {0}), which succeeds as the library's call does.
 */
alibi_status alibi_binding_forward_paged_f32(alibi_context_t ctx, int heads_q, int heads_kv,
                                             int head_dim, int block_size, const float* q,
                                             size_t q_count, const float* k_cache,
                                             size_t k_cache_count, const float* v_cache,
                                             size_t v_cache_count, const int32_t* block_table,
                                             size_t block_table_count,
                                             const int32_t* cu_seqlens_q,
                                             size_t cu_seqlens_q_count, const int32_t* seqlens_k,
                                             size_t seqlens_k_count, int causal, int window_left,
                                             const alibi_attention_params* params, float* out,
                                             size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_paged_layout l = {heads_q, heads_kv, head_dim, block_size};
  const alibi_binding_paged_arrays a = {
      {"q", q, q_count},
      {"k_cache", k_cache, k_cache_count},
      {"v_cache", v_cache, v_cache_count},
      {"block_table", block_table, block_table_count},
      {"cu_seqlens_q", cu_seqlens_q, cu_seqlens_q_count},
      {"seqlens_k", seqlens_k, seqlens_k_count},
      {"out", out, out_count},
      {"lse", lse, lse_count}};
  return alibi_binding_forward_paged(__func__, ctx, ALIBI_DTYPE_F32, l, a, causal, window_left,
                                     params);
}

/* As alibi_binding_forward_paged_f32, for f16 or bf16 q, caches and out (as their 16-bit
 * patterns); lse f32. */
alibi_status alibi_binding_forward_paged_u16(alibi_context_t ctx, alibi_dtype dtype, int heads_q,
                                             int heads_kv, int head_dim, int block_size,
                                             const uint16_t* q, size_t q_count,
                                             const uint16_t* k_cache, size_t k_cache_count,
                                             const uint16_t* v_cache, size_t v_cache_count,
                                             const int32_t* block_table,
                                             size_t block_table_count,
                                             const int32_t* cu_seqlens_q,
                                             size_t cu_seqlens_q_count, const int32_t* seqlens_k,
                                             size_t seqlens_k_count, int causal, int window_left,
                                             const alibi_attention_params* params, uint16_t* out,
                                             size_t out_count, float* lse, size_t lse_count) {
  const alibi_binding_paged_layout l = {heads_q, heads_kv, head_dim, block_size};
  const alibi_binding_paged_arrays a = {
      {"q", q, q_count},
      {"k_cache", k_cache, k_cache_count},
      {"v_cache", v_cache, v_cache_count},
      {"block_table", block_table, block_table_count},
      {"cu_seqlens_q", cu_seqlens_q, cu_seqlens_q_count},
      {"seqlens_k", seqlens_k, seqlens_k_count},
      {"out", out, out_count},
      {"lse", lse, lse_count}};
  const alibi_status s = alibi_binding_require_16_bit(__func__, dtype);
  if (s != ALIBI_STATUS_SUCCESS) return s;
  return alibi_binding_forward_paged(__func__, ctx, dtype, l, a, causal, window_left, params);
}
%}
