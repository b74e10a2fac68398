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

%inline %{
/*
 * Attention forward over caller memory, wrapped (not copied) for this call only: q and out
 * (total_q, heads_q, head_dim) and k, v (total_k, heads_kv, head_dim) in dtype, lse NULL or
 * (heads_q, total_q) f32. The language layers check their arrays' lengths against these shapes.
 */
alibi_status alibi_binding_forward(alibi_context_t ctx, alibi_dtype dtype, int64_t total_q,
                                   int64_t total_k, int heads_q, int heads_kv, int head_dim,
                                   const void* q, const void* k, const void* v,
                                   alibi_mask_t mask, const alibi_attention_params* params,
                                   void* out, float* lse) {
  const int64_t q_shape[3] = {total_q, heads_q, head_dim};
  const int64_t kv_shape[3] = {total_k, heads_kv, head_dim};
  const int64_t lse_shape[2] = {heads_q, total_q};
  alibi_tensor_t tq = NULL, tk = NULL, tv = NULL, tout = NULL, tlse = NULL;
  alibi_status s = alibi_tensor_wrap(ctx, dtype, 3, q_shape, NULL, (void*)q, &tq);
  if (s == ALIBI_STATUS_SUCCESS) s = alibi_tensor_wrap(ctx, dtype, 3, kv_shape, NULL, (void*)k, &tk);
  if (s == ALIBI_STATUS_SUCCESS) s = alibi_tensor_wrap(ctx, dtype, 3, kv_shape, NULL, (void*)v, &tv);
  if (s == ALIBI_STATUS_SUCCESS) s = alibi_tensor_wrap(ctx, dtype, 3, q_shape, NULL, out, &tout);
  if (s == ALIBI_STATUS_SUCCESS && lse)
    s = alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse, &tlse);
  if (s == ALIBI_STATUS_SUCCESS) s = alibi_attention_forward(ctx, tq, tk, tv, mask, params, tout, tlse);
  alibi_tensor_destroy(tq);
  alibi_tensor_destroy(tk);
  alibi_tensor_destroy(tv);
  alibi_tensor_destroy(tout);
  alibi_tensor_destroy(tlse);
  return s;
}
%}
