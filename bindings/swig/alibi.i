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
 * Attention forward over caller arrays, each passed with its element count (the pair typemaps
 * (const CTYPE* ARRAY, size_t COUNT) and (CTYPE* ARRAY, size_t COUNT) of each local.i) and wrapped,
 * not copied, for this call only: q and out (total_q, heads_q, head_dim), k and v (total_k,
 * heads_kv, head_dim), lse NULL or (heads_q, total_q) f32. Their lengths give total_q and total_k;
 * the helper checks what only it can (NULL arrays, lengths that are not whole rows), and
 * alibi_attention_forward reports the rest, naming the argument whose rows disagree.
 */
%apply (const float* ARRAY, size_t COUNT) {
  (const float* q, size_t q_count), (const float* k, size_t k_count), (const float* v, size_t v_count) };
%apply (float* ARRAY, size_t COUNT) { (float* out, size_t out_count), (float* lse, size_t lse_count) };
%apply (const uint16_t* ARRAY, size_t COUNT) {
  (const uint16_t* q, size_t q_count), (const uint16_t* k, size_t k_count),
  (const uint16_t* v, size_t v_count) };
%apply (uint16_t* ARRAY, size_t COUNT) { (uint16_t* out, size_t out_count) };

%{
/* An array argument of the forward helpers: its name in messages, its data and element count. */
typedef struct {
  const char* name;
  const void* data;
  size_t count;
} alibi_binding_array;

/*
 * Wraps an array as a tensor of ndim <= 3 sizes, the one size -1 given by its length: a length
 * that is not a multiple of the other sizes' product (named by per) fails here.
 */
static alibi_status alibi_binding_wrap(const char* function, alibi_context_t ctx, alibi_dtype dtype,
                                       alibi_binding_array array, int ndim, const int64_t* sizes,
                                       const char* per, alibi_tensor_t* out) {
  int64_t shape[3], product = 1;
  int d, unknown = 0;
  if (!array.data)
    return alibi_binding_fail(ALIBI_STATUS_NULL_POINTER, "%s: %s is NULL", function, array.name);
  for (d = 0; d < ndim; ++d) {
    shape[d] = sizes[d];
    if (sizes[d] < 0) unknown = d;
    else product *= sizes[d];
  }
  if (array.count % (uint64_t)product != 0)
    return alibi_binding_fail(ALIBI_STATUS_SHAPE_MISMATCH,
                              "%s: %s has %zu elements, not a multiple of %s = %lld", function,
                              array.name, array.count, per, (long long)product);
  shape[unknown] = (int64_t)(array.count / (uint64_t)product);
  return alibi_tensor_wrap(ctx, dtype, ndim, shape, NULL, (void*)array.data, out);
}

static alibi_status alibi_binding_forward(const char* function, alibi_context_t ctx,
                                          alibi_dtype dtype, int heads_q, int heads_kv,
                                          int head_dim, alibi_binding_array q,
                                          alibi_binding_array k, alibi_binding_array v,
                                          alibi_mask_t mask, const alibi_attention_params* params,
                                          alibi_binding_array out, alibi_binding_array lse) {
  const int64_t q_sizes[3] = {-1, heads_q, head_dim}, kv_sizes[3] = {-1, heads_kv, head_dim};
  const int64_t lse_sizes[2] = {heads_q, -1};
  alibi_tensor_t tq = NULL, tk = NULL, tv = NULL, tout = NULL, tlse = NULL;
  alibi_status s;
  if (heads_q < 1 || heads_kv < 1 || head_dim < 1)
    return alibi_binding_fail(ALIBI_STATUS_INVALID_ARGUMENT,
                              "%s: heads_q = %d, heads_kv = %d, head_dim = %d; each must be >= 1",
                              function, heads_q, heads_kv, head_dim);
  s = alibi_binding_wrap(function, ctx, dtype, q, 3, q_sizes, "heads_q * head_dim", &tq);
  if (s == ALIBI_STATUS_SUCCESS)
    s = alibi_binding_wrap(function, ctx, dtype, k, 3, kv_sizes, "heads_kv * head_dim", &tk);
  if (s == ALIBI_STATUS_SUCCESS)
    s = alibi_binding_wrap(function, ctx, dtype, v, 3, kv_sizes, "heads_kv * head_dim", &tv);
  if (s == ALIBI_STATUS_SUCCESS)
    s = alibi_binding_wrap(function, ctx, dtype, out, 3, q_sizes, "heads_q * head_dim", &tout);
  if (s == ALIBI_STATUS_SUCCESS && lse.data)
    s = alibi_binding_wrap(function, ctx, ALIBI_DTYPE_F32, lse, 2, lse_sizes, "heads_q", &tlse);
  if (s == ALIBI_STATUS_SUCCESS) s = alibi_attention_forward(ctx, tq, tk, tv, mask, params, tout, tlse);
  alibi_tensor_destroy(tq);
  alibi_tensor_destroy(tk);
  alibi_tensor_destroy(tv);
  alibi_tensor_destroy(tout);
  alibi_tensor_destroy(tlse);
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
  if (dtype != ALIBI_DTYPE_F16 && dtype != ALIBI_DTYPE_BF16)
    return alibi_binding_fail(ALIBI_STATUS_DTYPE_MISMATCH,
                              "%s: dtype = %d is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
                              __func__, (int)dtype);
  return alibi_binding_forward(__func__, ctx, dtype, heads_q, heads_kv, head_dim, aq, ak, av, mask,
                               params, aout, alse);
}
%}
