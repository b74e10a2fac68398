/*
 * libalibi: attention with linear biases (ALiBi) over packed variable-length batches.
 *
 * This header is the contract. Semantics (see also the project's SPEC):
 *
 *   slope[h]  for n heads, c = 2^floor(log2 n), m0 = 2^(-max_bias/c), m1 = 2^(-max_bias/(2c)):
 *             m0^(h+1) for h < c, else m1^(2(h-c)+1). Computed in double, rounded once to float.
 *   bias      bias(h,i,j) = -slope[h] * |qpos[i] - kpos[j]|, in float32 (distance as an exact
 *             integer, converted once to float).
 *   score     s = scale * (q_i . k_j); if softcap > 0, s = softcap * tanh(s / softcap);
 *             s += bias(h,i,j) + attn_bias(h,i,j); masked cells are -inf.
 *   output    out_i = sum_j softmax_j(s) v_j, lse_i = log(sum_j exp(s_ij)) (natural log, float32).
 *             A row that sees no key (or whose every score is -inf) has out = 0 and lse = -inf.
 *
 * Conventions:
 *   - Every fallible call returns alibi_status. Results come back through out-parameters; a
 *     handle out-parameter is set to NULL on failure, other out-parameters are left untouched.
 *   - A failed call never writes to an output tensor: every argument is validated first.
 *   - alibi_last_error_message() names the function, the argument and the bad value of the
 *     last failed call on this thread; it is "" after a call that succeeded.
 *   - alibi_*_destroy(NULL) is a harmless no-op.
 *   - A context is used by one thread at a time (use one context per thread). Masks and tensors
 *     may be shared read-only by any contexts of the same device, from several threads at once.
 *   - Tensors and masks keep what they need of their context alive: they may be destroyed
 *     before or after the context that created them.
 *   - Sizes are in elements; shapes are row-major; strides may be any non-negative values.
 *
 * Backends: the CPU backend is always present. CUDA is reported unavailable
 * (ALIBI_STATUS_BACKEND_UNAVAILABLE) by builds and machines without it. The CPU backend picks
 * its kernels for the CPU at run time (AVX2, AVX-512, NEON; the environment variable
 * ALIBI_MAX_CPU_ISA=generic|avx2|avx512|neon caps the choice). On x86-64 Linux CPUs with
 * AMX-BF16 (Intel, Sapphire Rapids on), the first bf16 product on the CPU asks Linux for the AMX
 * tile state (arch_prctl ARCH_REQ_XCOMP_PERM): granted to the whole process, it makes signal
 * frames about 8 KiB larger (mind small sigaltstack stacks); ALIBI_MAX_CPU_ISA=avx2 never asks.
 * Where Linux refuses, bf16 calls take the AVX-512 kernels.
 *
 * Supported ranges (outside them a call fails with INVALID_ARGUMENT and a message, never
 * undefined behaviour; a host or device allocation that fails gives OUT_OF_MEMORY):
 *   - Tensors: ndim 0..ALIBI_MAX_DIMS; sizes >= 0 whose byte count, with zero sizes counted as
 *     1, fits in int64 (so no element count, stride or offset overflows, even for an empty
 *     tensor); strides >= 0 with the byte offset just past the last element <= INT64_MAX.
 *   - Masks: tokens per mask (total_q, total_k) 0..INT32_MAX, since ranges and cu_seqlens are
 *     int32; at most INT32_MAX slices. Positions may be any int32: |qpos - kpos| (up to 2^32 - 1)
 *     is an exact integer, converted once to float for the bias. A mask holds 4 bytes per token.
 *   - Attention: 1..65536 query heads (and kv heads), head_dim 1..65536. Inputs whose scores
 *     overflow float32 (|scale * q.k| or |attn_bias| beyond ~3.4e38) give unspecified values.
 *   - Builders: num_heads 1..65536; at most INT32_MAX - 1 sequences; B * num_heads fits int64.
 *   - Enum arguments (dtype, device, status) may hold any int: values outside the enum are
 *     rejected (INVALID_ARGUMENT; "unknown status"; a device count of 0).
 * tests/README.md lists the bad inputs the tests and fuzzers try and what the library answers.
 */
#ifndef ALIBI_ALIBI_H
#define ALIBI_ALIBI_H

#include <stddef.h>
#include <stdint.h>

#include "alibi/alibi_version.h"

#if defined(_WIN32) && defined(ALIBI_SHARED)
#  if defined(ALIBI_BUILD)
#    define ALIBI_API __declspec(dllexport)
#  else
#    define ALIBI_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define ALIBI_API __attribute__((visibility("default")))
#else
#  define ALIBI_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/** Status codes. The numeric values are part of the ABI and never change. */
typedef enum {
  ALIBI_STATUS_SUCCESS = 0,
  ALIBI_STATUS_INVALID_ARGUMENT = 1,    /**< a value outside its domain */
  ALIBI_STATUS_NULL_POINTER = 2,        /**< a required pointer was NULL */
  ALIBI_STATUS_SHAPE_MISMATCH = 3,      /**< tensor ndim/sizes disagree with each other or the mask */
  ALIBI_STATUS_DTYPE_MISMATCH = 4,      /**< dtypes disagree or are not accepted */
  ALIBI_STATUS_UNSUPPORTED = 5,         /**< valid, but not supported by this backend */
  ALIBI_STATUS_BACKEND_UNAVAILABLE = 6, /**< the requested device is not available */
  ALIBI_STATUS_OUT_OF_MEMORY = 7,
  ALIBI_STATUS_DEVICE_ERROR = 8,
  ALIBI_STATUS_INTERNAL = 9,
  ALIBI_STATUS_COMMUNICATION_ERROR = 10 /**< a collective of alibi_comm_ops failed (alibi_dist.h) */
} alibi_status;

/** Element types. f16 is IEEE binary16, bf16 is bfloat16; both are stored as 16-bit words. */
typedef enum {
  ALIBI_DTYPE_F32 = 0,
  ALIBI_DTYPE_F16 = 1,
  ALIBI_DTYPE_BF16 = 2,
  ALIBI_DTYPE_I32 = 3,
  ALIBI_DTYPE_I64 = 4
} alibi_dtype;

/** Devices. AUTO picks CUDA when a GPU and the CUDA backend are available, else the CPU. */
typedef enum { ALIBI_DEVICE_AUTO = 0, ALIBI_DEVICE_CPU = 1, ALIBI_DEVICE_CUDA = 2 } alibi_device;

/** Slice types of a mask; local row r, local column c of a slice of size Sq x Sk. */
typedef enum {
  ALIBI_MASK_FULL = 0,       /**< always visible */
  ALIBI_MASK_CAUSAL = 1,     /**< c <= r + (Sk - Sq): causal, bottom-right aligned */
  ALIBI_MASK_INV_CAUSAL = 2, /**< c >= r: inverse causal, top-left aligned */
  ALIBI_MASK_BI_CAUSAL = 3   /**< both of the above */
} alibi_mask_type;

/** Largest ndim of a tensor. */
#define ALIBI_MAX_DIMS 8

typedef struct alibi_context_s* alibi_context_t;
typedef struct alibi_tensor_s* alibi_tensor_t;
typedef struct alibi_mask_s* alibi_mask_t;

/* ------------------------------------------------------------------------------------------ */
/* Version and errors                                                                          */

/** @return ALIBI_VERSION_NUMBER of the library actually linked (compare with the header's). */
ALIBI_API unsigned alibi_version_number(void);
/** @return ALIBI_VERSION_STRING of the library actually linked, e.g. "0.1.0". Static storage. */
ALIBI_API const char* alibi_version_string(void);
/** @return static text for a status, e.g. "invalid argument"; "unknown status" for other values. */
ALIBI_API const char* alibi_status_string(alibi_status status);
/**
 * @return the message of the last failed call on this thread ("function: argument = value ..."),
 *         or "" if the last call succeeded. Valid until the next alibi_* call on this thread.
 */
ALIBI_API const char* alibi_last_error_message(void);
/**
 * Copies the last error message into buf (always NUL-terminated when capacity > 0).
 * @return the full length of the message, excluding the NUL (like snprintf).
 */
ALIBI_API size_t alibi_last_error_copy(char* buf, size_t capacity);

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                    */

/**
 * @param kind  CPU: 1. CUDA: the number of visible GPUs, 0 without the CUDA backend, a driver or
 *              a GPU. AUTO: the count of the device AUTO resolves to. Other values: 0.
 */
ALIBI_API int alibi_device_count(alibi_device kind);
/**
 * Creates a context on a device.
 * @param device        CPU, CUDA or AUTO (CUDA when available, else CPU).
 * @param device_index  0 for the CPU; a GPU index in [0, alibi_device_count(CUDA)) for CUDA.
 * @param out           receives the context; NULL on failure.
 * @return BACKEND_UNAVAILABLE when CUDA is asked for and not available (the message says why),
 *         INVALID_ARGUMENT for an unknown device or an index out of range.
 */
ALIBI_API alibi_status alibi_context_create(alibi_device device, int device_index,
                                           alibi_context_t* out);
/** Destroys a context. NULL is a no-op. Tensors and masks made with it stay usable. */
ALIBI_API void alibi_context_destroy(alibi_context_t ctx);
/** @param out receives CPU or CUDA (never AUTO). */
ALIBI_API alibi_status alibi_context_get_device(alibi_context_t ctx, alibi_device* out);
/**
 * CPU: the number of threads that work on each of this context's calls, the calling thread
 * included; 0 = one per core (the default). Values above the core count are allowed (up to
 * 1024). The other threads come from one set of workers that all CPU contexts of the process
 * share: a context starts no thread of its own, the workers start on the first call that needs
 * them (as many as the largest count asked for, less one) and stay for the life of the process.
 * Idle workers sleep; a calling thread that has run out of work waits for the workers still on
 * its call by yielding its core for up to 200 us, then sleeps. CUDA contexts accept and ignore it.
 * @return INVALID_ARGUMENT for a negative value or one above 1024.
 */
ALIBI_API alibi_status alibi_context_set_num_threads(alibi_context_t ctx, int num_threads);
/**
 * CUDA: the cudaStream_t every later call of this context runs on (NULL = the default stream).
 * CPU: NULL is accepted as a no-op; any other value gives UNSUPPORTED.
 */
ALIBI_API alibi_status alibi_context_set_stream(alibi_context_t ctx, void* cuda_stream);
/** Waits until all work of this context is done. Calls on the CPU are synchronous. */
ALIBI_API alibi_status alibi_context_synchronize(alibi_context_t ctx);

/* ------------------------------------------------------------------------------------------ */
/* Tensors: n-d arrays on the context's device (host memory for the CPU)                       */

/**
 * Allocates an owned, uninitialised, contiguous row-major tensor (64-byte aligned).
 * @param ndim   0..ALIBI_MAX_DIMS; shape: ndim sizes >= 0 (host array, may be NULL when ndim 0).
 * @return INVALID_ARGUMENT for a bad dtype, ndim or size, or a byte count that overflows int64
 *         (zero sizes counted as 1); OUT_OF_MEMORY when the allocation fails.
 */
ALIBI_API alibi_status alibi_tensor_create(alibi_context_t ctx, alibi_dtype dtype, int ndim,
                                          const int64_t* shape, alibi_tensor_t* out);
/**
 * Wraps memory the caller owns (host memory for the CPU, device memory for CUDA). The memory
 * must outlive the tensor. Element (i0, i1, ...) lives at data + sum(i_d * strides[d]) elements.
 * @param strides  ndim non-negative strides in elements, or NULL for contiguous row-major. The
 *                 byte offset just past the last element must fit in int64 (any stride of a
 *                 size-1 dim is fine), else INVALID_ARGUMENT.
 * @param data     may be NULL only when the tensor has no element.
 */
ALIBI_API alibi_status alibi_tensor_wrap(alibi_context_t ctx, alibi_dtype dtype, int ndim,
                                        const int64_t* shape, const int64_t* strides, void* data,
                                        alibi_tensor_t* out);
/**
 * Copies a contiguous row-major host buffer into the tensor (honouring its strides).
 * @param bytes  must equal numel * element size, else INVALID_ARGUMENT.
 */
ALIBI_API alibi_status alibi_tensor_copy_from_host(alibi_tensor_t t, const void* src, size_t bytes);
/** Copies the tensor into a contiguous row-major host buffer of exactly numel * element size. */
ALIBI_API alibi_status alibi_tensor_copy_to_host(alibi_tensor_t t, void* dst, size_t bytes);
/** Destroys a tensor (and frees its memory if owned). NULL is a no-op. */
ALIBI_API void alibi_tensor_destroy(alibi_tensor_t t);
ALIBI_API alibi_status alibi_tensor_get_dtype(alibi_tensor_t t, alibi_dtype* out);
ALIBI_API alibi_status alibi_tensor_get_ndim(alibi_tensor_t t, int* out);
/** Writes ndim sizes; INVALID_ARGUMENT when capacity < ndim. */
ALIBI_API alibi_status alibi_tensor_get_shape(alibi_tensor_t t, int capacity, int64_t* out);
/** Writes ndim strides (in elements); INVALID_ARGUMENT when capacity < ndim. */
ALIBI_API alibi_status alibi_tensor_get_strides(alibi_tensor_t t, int capacity, int64_t* out);
/** @param out receives the data pointer (device memory for CUDA; NULL for an empty tensor). */
ALIBI_API alibi_status alibi_tensor_get_data(alibi_tensor_t t, void** out);

/* ------------------------------------------------------------------------------------------ */
/* Masks: which (query, key) cells are visible, plus the ALiBi position of every token.        */
/* Host arrays are copied; callers may free them after the call. A mask belongs to the device  */
/* of the context it was made with and may be used with any context of that device.            */

/**
 * One slice per sequence b: q_range [cu_q[b], cu_q[b+1]) x k_range [cu_k[b], cu_k[b+1]),
 * ALIBI_MASK_CAUSAL when causal != 0, else ALIBI_MASK_FULL. total_q = cu_q[batch],
 * total_k = cu_k[batch]. Positions are bottom-right aligned per sequence:
 * qpos = (i - cu_q[b]) + (Lk_b - Lq_b), kpos = j - cu_k[b] (tokens before cu[0] get 0 and see
 * nothing). A causal sequence with Lq > Lk has Lq - Lk leading rows that see no key.
 * @param batch      >= 0.
 * @param cu_seqlens_q, cu_seqlens_k  host arrays of batch+1 non-negative, non-decreasing offsets.
 */
ALIBI_API alibi_status alibi_mask_create_varlen(alibi_context_t ctx, int batch,
                                               const int32_t* cu_seqlens_q,
                                               const int32_t* cu_seqlens_k, int causal,
                                               alibi_mask_t* out);
/**
 * An explicit list of slices over one packed stream: slice s covers
 * [q_ranges[2s], q_ranges[2s+1]) x [k_ranges[2s], k_ranges[2s+1]) with types[s] (0..3).
 * Ranges must lie within [0, total_q) and [0, total_k), start <= end; empty ranges are legal.
 * Several slices may share query rows (results merge by log-sum-exp) but no two slices'
 * rectangles may overlap (INVALID_ARGUMENT). Positions: qpos = i, kpos = j.
 * @param num_slices >= 0; the arrays may be NULL when it is 0.
 * @param total_q, total_k  0..INT32_MAX.
 */
ALIBI_API alibi_status alibi_mask_create_ranges(alibi_context_t ctx, int num_slices,
                                               const int32_t* q_ranges, const int32_t* k_ranges,
                                               const int32_t* types, int64_t total_q,
                                               int64_t total_k, alibi_mask_t* out);
/**
 * A sliding window per sequence (MagiAttention's semantics), positions as for varlen.
 * Of a sequence's Sq x Sk block only the last min(Sq, Sk) query rows take part; row r of those
 * sits at key p = r + Sk - min(Sq, Sk) and sees keys p - left <= c <= p + right.
 * Stored as at most three slices per sequence (causal head, full or bi-causal middle,
 * inverse-causal tail); empty pieces are omitted. (-1, 0) equals a causal varlen mask.
 * @param window_left, window_right  >= 0, or -1 for unbounded.
 */
ALIBI_API alibi_status alibi_mask_create_sliding_window(alibi_context_t ctx, int batch,
                                                       const int32_t* cu_seqlens_q,
                                                       const int32_t* cu_seqlens_k,
                                                       int window_left, int window_right,
                                                       alibi_mask_t* out);
/**
 * Replaces the ALiBi positions (host arrays of total_q and total_k int32). Either array may be
 * NULL to keep that side's positions (both NULL: NULL_POINTER). Do not call it while another
 * thread uses the mask.
 */
ALIBI_API alibi_status alibi_mask_set_positions(alibi_mask_t mask, const int32_t* q_positions,
                                               const int32_t* k_positions);
/** @param out receives the number of slices (varlen: batch; ranges: num_slices). */
ALIBI_API alibi_status alibi_mask_get_num_slices(alibi_mask_t mask, int* out);
/**
 * Writes the slices in their creation order: q_ranges and k_ranges [n][2], types [n], where n is
 * alibi_mask_get_num_slices. Any of the three may be NULL to skip it.
 */
ALIBI_API alibi_status alibi_mask_get_slices(alibi_mask_t mask, int32_t* q_ranges,
                                            int32_t* k_ranges, int32_t* types);
/**
 * The token counts the mask was made for: the rows q and out must have (total_q) and the rows k
 * and v must have (total_k). Either pointer may be NULL to skip it.
 */
ALIBI_API alibi_status alibi_mask_get_totals(alibi_mask_t mask, int64_t* total_q, int64_t* total_k);
/** Destroys a mask. NULL is a no-op. */
ALIBI_API void alibi_mask_destroy(alibi_mask_t mask);

/* ------------------------------------------------------------------------------------------ */
/* Attention                                                                                   */

/**
 * Parameters of alibi_attention_forward and alibi_build_bias. Always fill with
 * alibi_attention_params_init first.
 *
 * Growth: later versions only append fields, and struct_size says how much of the struct the
 * caller knows (alibi_attention_params_init sets it to the size in the caller's header). A
 * library newer than the caller's header reads only the fields inside struct_size and uses the
 * defaults for the rest; a struct_size below this first version's struct (0.1.0) or above the
 * library's own (a caller built against a newer header) gives INVALID_ARGUMENT, with both sizes
 * in the message. (An appended field starts at or after the previous version's sizeof, padded
 * explicitly if need be, so that struct_size tells the versions apart.)
 */
typedef struct alibi_attention_params {
  size_t struct_size;    /**< the caller's sizeof(alibi_attention_params); set by _init */
  float softmax_scale;   /**< <= 0: 1/sqrt(head_dim) (the default) */
  float softcap;         /**< 0: off (default); > 0: s = softcap * tanh(s / softcap) */
  float max_bias;        /**< slope formula parameter, >= 0; default 8; 0 (with slopes NULL): no ALiBi */
  const float* slopes;   /**< optional host array of slopes >= 0 replacing the formula: num_heads_q
                              floats, or batch * num_heads_q (index b * H + h) when
                              slopes_per_batch != 0. With it, total_heads/head_offset are unused. */
  int slopes_per_batch;  /**< nonzero: per-sequence slopes; varlen and sliding-window masks only */
  int total_heads;       /**< tensor parallelism: heads of the whole model; 0 = num_heads_q */
  int head_offset;       /**< first global head of this shard; head_offset + num_heads_q <= total_heads */
  alibi_tensor_t attn_bias; /**< optional additive bias (H|1, total_q, total_k) f32/f16/bf16, any strides */
  int deterministic;     /**< bitwise-reproducible results run to run (the CPU always is) */
} alibi_attention_params;

/**
 * Fills the first `size` bytes of params with the defaults (scale 1/sqrt(D), no softcap,
 * max_bias 8, formula slopes; fields this library does not know: zero) and sets struct_size
 * to `size`. Called with sizeof *params by the alibi_attention_params_init macro below, so
 * that a library never writes past the struct of the caller's header. NULL is a no-op.
 */
ALIBI_API void alibi_attention_params_init_v2(alibi_attention_params* params, size_t size);
/**
 * The 0.1.0 entry point, kept for programs built against it: fills the fields of the first
 * version only. Source code calls it through the macro, which passes the caller's size.
 */
ALIBI_API void alibi_attention_params_init(alibi_attention_params* params);
#define alibi_attention_params_init(params) \
  alibi_attention_params_init_v2((params), sizeof *(params))

/**
 * Attention forward over a packed batch.
 * @param q    (total_q, Hq, D), f32, f16 or bf16; 1 <= Hq <= 65536, 1 <= D <= 65536.
 * @param k,v  (total_k, Hkv, D), q's dtype, Hq % Hkv == 0 (GQA/MQA: query head h reads kv head
 *             h / (Hq / Hkv)).
 * @param mask its total_q and total_k must match q and k (SHAPE_MISMATCH otherwise).
 * @param params NULL for the defaults; struct_size as alibi_attention_params_init sets it.
 * @param out  (total_q, Hq, D) in q's dtype. Written for every row, including rows no slice
 *             covers (out = 0). Must not overlap q, k or v.
 * @param lse  NULL, or (Hq, total_q) f32: the natural-log log-sum-exp of each row's scores.
 * q, k, v and out may be strided on their first two dims; their last dim must be contiguous
 * (stride 1), e.g. views into a packed (T, 3, H, D) qkv buffer. lse may have any strides.
 * Accumulation is in float32; f16/bf16 inputs are converted exactly and the output rounded once.
 * Never materializes a total_q x total_k matrix.
 *
 * On CUDA, each call takes one of two paths. f16 and bf16 inputs with head_dim <= 256 and no
 * attn_bias run the fused kernel: tensor-core MMA, the ALiBi bias computed in f32 inside the
 * kernel from positions and slopes, and only the key tiles a query tile can see are visited.
 * Every other case (f32 inputs, head_dim > 256, an attn_bias tensor) runs through cuBLAS (f32
 * GEMMs, no TF32) around a bias, mask and softmax kernel, over bounded chunks of queries and keys.
 * Both paths merge slices that share rows in a fixed order, so CUDA results are bitwise
 * reproducible run to run (on the same GPU and library) whether or not params->deterministic is
 * set. The environment variable ALIBI_CUDA_PATH=cublas|fused, read on every call, forces a path
 * (for testing; fused gives UNSUPPORTED where it does not apply).
 */
ALIBI_API alibi_status alibi_attention_forward(alibi_context_t ctx, alibi_tensor_t q,
                                              alibi_tensor_t k, alibi_tensor_t v,
                                              alibi_mask_t mask,
                                              const alibi_attention_params* params,
                                              alibi_tensor_t out, alibi_tensor_t lse);

/**
 * Attention backward: the gradients of one alibi_attention_forward call's inputs, given the
 * gradient dout of its out (training; with trainable slopes).
 * @param q,k,v,mask,params  exactly those of the forward call (its attn_bias is an input here:
 *             it takes part in the scores and gets no gradient).
 * @param out  (total_q, Hq, D) in q's dtype: the forward's out.
 * @param lse  (Hq, total_q) f32: the forward's lse. Required.
 * @param dout (total_q, Hq, D) in q's dtype: the gradient of the loss with respect to out.
 * @param dq   NULL (not computed), or (total_q, Hq, D) in q's dtype or f32.
 * @param dk,dv NULL, or (total_k, Hkv, D) in q's dtype or f32 (each its own choice). GQA: a kv
 *             head's gradient sums over the query heads that read it.
 * @param dslopes NULL, or f32 (Hq) ((num_sequences, Hq) with params->slopes_per_batch): the
 *             gradient with respect to each slope the forward used (formula, tensor-parallel slice
 *             or params->slopes), dslopes[h] = -sum over head h's visible cells of dS * |qpos -
 *             kpos|. Any strides.
 * With s the scores, P = exp(s - lse) on visible cells (0 elsewhere), Di = sum_d dout_id out_id,
 * dP = dout v^T and dS = P (dP - Di): dv = P^T dout; with softcap, dx = dS (1 - tanh^2(x /
 * softcap)) for x = scale q.k (else dx = dS); dq = scale dx k, dk = scale dx^T q. A row whose lse
 * is -inf contributes nothing; rows shared by several slices use the merged lse, so the gradient
 * is that of the union. Gradients are overwritten, never accumulated into; accumulation is in
 * f32. q, k, v, out, dout and the gradients may be strided like the forward's tensors (last dim
 * contiguous). Never materializes a total_q x total_k matrix. The CPU gives bitwise the same
 * results whatever the thread count. On a CUDA context, f16/bf16 inputs with head_dim <= 256 and
 * no attn_bias run fused kernels (tensor cores, f32 accumulation, P and dX fed as split
 * high/low half-precision parts); every other case (f32 inputs, head_dim > 256, an attn_bias)
 * runs through cuBLAS (f32 GEMMs, no TF32) over bounded pieces of keys, with f32 accumulators of
 * dk and dv (total_k x Hkv x D each). Neither uses atomics: CUDA results are bitwise
 * reproducible run to run whether or not params->deterministic is set. ALIBI_CUDA_PATH forces a
 * path as for the forward (fused gives UNSUPPORTED, naming why, where it does not apply).
 * @return as alibi_attention_forward for the forward's arguments; NULL_POINTER for a missing
 *         lse or dout; SHAPE_MISMATCH / DTYPE_MISMATCH naming a gradient of the wrong shape or
 *         dtype; INVALID_ARGUMENT for a gradient that shares memory with an input or another
 *         gradient (e.g. q passed as dq); UNSUPPORTED for ALIBI_CUDA_PATH=fused on a case the
 *         fused kernels do not take. Nothing is written on failure.
 */
ALIBI_API alibi_status alibi_attention_backward(alibi_context_t ctx, alibi_tensor_t q,
                                               alibi_tensor_t k, alibi_tensor_t v,
                                               alibi_mask_t mask,
                                               const alibi_attention_params* params,
                                               alibi_tensor_t out, alibi_tensor_t lse,
                                               alibi_tensor_t dout, alibi_tensor_t dq,
                                               alibi_tensor_t dk, alibi_tensor_t dv,
                                               alibi_tensor_t dslopes);

/**
 * Merges two partial attention results over disjoint key sets of the same queries (split-K,
 * prefix sharing, a ring of devices): per row and head, computed in f32,
 *   lse = logaddexp(lse_a, lse_b),  out = e^(lse_a - lse) out_a + e^(lse_b - lse) out_b.
 * A side whose lse is -inf contributes nothing (whatever its out holds); a row whose two lse
 * are -inf gets out 0 and lse -inf, as alibi_attention_forward gives a row that sees no key.
 * An lse of NaN or +inf (which the forward never writes) gives that row NaN out and lse.
 * This is what the backends do internally when they split a row's keys or merge slices.
 * @param out_a, out_b  (T, H, D) f32, f16 or bf16, both of out's dtype; any strides.
 * @param lse_a, lse_b  (H, T) f32 (as alibi_attention_forward writes them); any strides.
 * @param out  (T, H, D); may be the very tensor out_a or out_b (in place), else must not
 *             overlap them.
 * @param lse  NULL, or (H, T) f32; may be lse_a or lse_b.
 * @return NULL_POINTER for a missing input or out; SHAPE_MISMATCH / DTYPE_MISMATCH as for
 *         alibi_attention_forward; INVALID_ARGUMENT for a tensor of another device. Nothing is
 *         written on failure.
 */
ALIBI_API alibi_status alibi_attention_merge(alibi_context_t ctx, alibi_tensor_t out_a,
                                            alibi_tensor_t lse_a, alibi_tensor_t out_b,
                                            alibi_tensor_t lse_b, alibi_tensor_t out,
                                            alibi_tensor_t lse);

/**
 * Attention of packed query chunks over the keys and values of a paged KV cache (decode,
 * speculative decoding, chunked prefill), as vLLM and FlashInfer keep them: sequence b's key
 * t is row t % block_size of block block_table[b][t / block_size] of the caches.
 * @param q    (total_q, Hq, D), f32, f16 or bf16; the queries of every sequence, packed.
 * @param k_cache,v_cache  (num_blocks, block_size, Hkv, D) in q's dtype (NHD), block_size >= 1,
 *             Hq % Hkv == 0. Any strides with the last dim contiguous (e.g. K and V interleaved
 *             in one pool). Only the blocks the table names are read.
 * @param block_table   (B, max_blocks) int32, any strides: the blocks of each sequence, in key
 *             order. Entries past a sequence's ceil(Lk / block_size) blocks are not read (e.g. -1).
 *             B = 0 (an empty batch, total_q = 0) is a call that succeeds, with any max_blocks.
 * @param cu_seqlens_q  (B+1) int32: 0, non-decreasing, ending at total_q; sequence b has the
 *             queries [cu_seqlens_q[b], cu_seqlens_q[b+1]) (Lq of them, 0 allowed).
 * @param seqlens_k     (B) int32 >= 0: the keys of each sequence (Lk, 0 allowed), the new
 *             tokens' included. The sum over the batch must be at most INT32_MAX.
 *             The three tables live on the context's device (a CUDA context copies them to the
 *             host to validate them, which synchronizes its stream).
 * @param causal        nonzero: key t is visible to a query only when t <= qpos.
 * @param window_left   -1 (unbounded) or >= 0: key t is visible only when t >= qpos - window_left.
 * Positions are bottom-right aligned per sequence: query i has qpos = (i - cu_seqlens_q[b]) +
 * (Lk - Lq), key t has kpos = t. The result equals alibi_attention_forward on the gathered
 * contiguous keys with the varlen mask (window_left -1) or the sliding window mask
 * (window_left, causal ? 0 : -1) of the same cu_seqlens, except that without causal the first
 * Lq - Lk queries of a sequence with Lq > Lk (qpos < 0) see keys by the rule above where the
 * sliding window mask would give them none.
 * @param params NULL for the defaults. softmax_scale, softcap, max_bias, slopes (also
 *             slopes_per_batch: B * Hq values), total_heads and head_offset apply as in
 *             alibi_attention_forward; attn_bias must be NULL (UNSUPPORTED otherwise);
 *             deterministic as for alibi_attention_forward (both backends always are).
 * @param out  (total_q, Hq, D) in q's dtype, strided like q; every row is written (a query that
 *             sees no key gets 0). Must not overlap q or the caches.
 * @param lse  NULL, or (Hq, total_q) f32, any strides (as alibi_attention_forward's).
 * Validation, before anything is written: NULL_POINTER for a missing q, cache, table or out;
 * DTYPE_MISMATCH for caches not of q's dtype, out not of q's dtype, or tables not int32;
 * SHAPE_MISMATCH for ndims and sizes that disagree (caches, out, lse, B between the tables);
 * INVALID_ARGUMENT for a tensor on another device, a last dim that is not contiguous,
 * window_left < -1, cu_seqlens_q not starting at 0, decreasing or not ending at total_q, a
 * negative seqlens_k, Lk > max_blocks * block_size, Lq > Lk with causal, or a block id outside
 * [0, num_blocks) among the ceil(Lk / block_size) blocks a sequence uses; the message names the
 * sequence, the position and the value.
 * The CPU reads the blocks in place (no gather): sequences with a few queries take the decode
 * kernel (long ones split across threads, merged by log-sum-exp), longer chunks the tiled
 * kernel; results are bitwise the same whatever the thread count. On 4 KiB pages a pool of
 * small blocks in shuffled order reads slower than a contiguous cache (measured on a Zen 5 VM,
 * bench/RESULTS.md: a plain read of 16-token GQA blocks of 32 KiB in table order reached 0.72
 * to 0.87 of a sequential read); larger blocks, or pools on huge pages (madvise
 * MADV_HUGEPAGE), narrow the gap. CUDA: a call whose
 * sequences have at most 16 queries each (decode, speculative decoding) and head_dim <= 256
 * takes a split-KV decode kernel that reads the blocks in place, one CTA per (sequence, kv
 * head, split of the keys) over the query heads of the group, its splits merged by log-sum-exp
 * in a fixed order (bitwise reproducible; scratch of splits x total_q x Hq x (D + 1) floats).
 * Any other call (chunked prefill, also mixed with decode) gathers the keys and values of
 * every sequence into contiguous device buffers (2 x sum(Lk) x Hkv x D elements) and runs
 * alibi_attention_forward's kernels on them with the call's mask, then waits for its stream.
 */
ALIBI_API alibi_status alibi_attention_forward_paged(alibi_context_t ctx, alibi_tensor_t q,
                                                    alibi_tensor_t k_cache,
                                                    alibi_tensor_t v_cache,
                                                    alibi_tensor_t block_table,
                                                    alibi_tensor_t cu_seqlens_q,
                                                    alibi_tensor_t seqlens_k, int causal,
                                                    int window_left,
                                                    const alibi_attention_params* params,
                                                    alibi_tensor_t out, alibi_tensor_t lse);

/* ------------------------------------------------------------------------------------------ */
/* Slopes and bias builders                                                                    */

/**
 * The slope formula for heads 0..num_heads-1 (host). max_bias >= 0; max_bias 0 gives zeros.
 * @param out host array of num_heads floats.
 */
ALIBI_API alibi_status alibi_compute_slopes(int num_heads, float max_bias, float* out);
/**
 * Slopes of the heads [head_offset, head_offset + num_heads) of a model with total_heads heads
 * (tensor parallelism): equal to a slice of alibi_compute_slopes(total_heads, ...).
 */
ALIBI_API alibi_status alibi_compute_slopes_tp(int total_heads, int head_offset, int num_heads,
                                              float max_bias, float* out);
/**
 * Materializes exactly what attention adds to the scores for a mask and params:
 * out[h, i, j] = bias(h, i, j) + attn_bias(h, i, j) where visible, -inf where masked (rows no
 * slice covers are all -inf). softmax_scale and softcap do not apply.
 * @param num_heads  the number of query heads H, 1..65536 (slopes as in alibi_attention_forward).
 * @param out        (H, total_q, total_k), f32, f16 or bf16, any strides.
 */
ALIBI_API alibi_status alibi_build_bias(alibi_context_t ctx, alibi_mask_t mask, int num_heads,
                                       const alibi_attention_params* params, alibi_tensor_t out);
/**
 * OpenPPL's dynamic_batching.ALiBiMask. For batch b, rows [seqstarts[b], seqstarts[b+1]) (L of
 * them) and columns [kvstarts[b], kvstarts[b+1]) (K of them), local i, j: d = j - i - (K - L);
 * value slope[h] * d when d <= 0, else -inf. Everywhere else (other blocks and padding columns
 * j >= Sk) the value is 0. Then attn_mask, if given, is added over the first Sk columns.
 * Slopes: the formula with max_bias 8. num_heads: 1..65536.
 * @param seqstarts, kvstarts  (B+1) int64 (or int32) on the context's device, non-decreasing, >= 0;
 *                             B+1 <= INT32_MAX.
 * @param attn_mask  NULL, (H, Sq, Sk) or (Sq, Sk), f32 or f16.
 * @param out        (H, Sq, W), W >= Sk, f32 or f16; Sq = seqstarts[B], Sk = kvstarts[B].
 */
ALIBI_API alibi_status alibi_build_dynamic_batching_mask(alibi_context_t ctx,
                                                        alibi_tensor_t seqstarts,
                                                        alibi_tensor_t kvstarts,
                                                        alibi_tensor_t attn_mask, int num_heads,
                                                        alibi_tensor_t out);
/**
 * HF Bloom's build_alibi_tensor: pos = (cumsum(mask, -1) - 1) * mask per row of attention_mask,
 * out[b*H + h, 0, s] = slope[h] * pos[b, s] (computed in f32, then rounded to out's dtype).
 * Slopes: the formula with max_bias 8. Mask values are used as given (expected 0 or 1; others
 * in wrapping int64 arithmetic, like torch's int64 cumsum). num_heads: 1..65536.
 * @param attention_mask  (B, S) int32 or int64.
 * @param out             (B*H, 1, S) f32, f16 or bf16.
 */
ALIBI_API alibi_status alibi_build_bloom_bias(alibi_context_t ctx, alibi_tensor_t attention_mask,
                                             int num_heads, alibi_tensor_t out);

#ifdef __cplusplus
}
#endif

#endif /* ALIBI_ALIBI_H */
