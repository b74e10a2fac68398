package org.alibi;

import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.util.Objects;

/**
 * A device context: where calls run. Use it from one thread at a time. Close it (try-with-resources)
 * to release it at once; an unclosed context is released by the garbage collector. Masks and
 * tensors made with a context stay valid after it is closed.
 */
public final class Context extends NativeHandle {
  /**
   * A context on a device.
   *
   * @param device CPU, CUDA, or AUTO (CUDA when available, else CPU)
   * @param deviceIndex the CUDA device ordinal (0 for the CPU)
   * @throws AlibiException BACKEND_UNAVAILABLE when the device is not available
   */
  public Context(Device device, int deviceIndex) {
    super(create(device, deviceIndex), AlibiNative::alibi_context_destroy, null);
  }

  /** A CPU context. */
  public Context() {
    this(Device.CPU, 0);
  }

  private static long create(Device device, int deviceIndex) {
    Objects.requireNonNull(device, "device");
    long[] out = new long[1];
    AlibiNative.alibi_context_create(device, deviceIndex, out);
    return out[0];
  }

  /**
   * The device calls run on.
   *
   * @return CPU or CUDA (never AUTO)
   */
  public Device device() {
    int[] out = new int[1];
    try {
      AlibiNative.alibi_context_get_device(handle(), out);
    } finally {
      keepAlive(this);
    }
    return Device.swigToEnum(out[0]);
  }

  /**
   * Sets how many CPU worker threads this context's calls use.
   *
   * @param numThreads 0 for one per core, else 1 to 1024
   * @return this context
   */
  public Context setNumThreads(int numThreads) {
    try {
      AlibiNative.alibi_context_set_num_threads(handle(), numThreads);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /** Waits until the calls issued on this context have completed (a no-op on the CPU). */
  public void synchronize() {
    try {
      AlibiNative.alibi_context_synchronize(handle());
    } finally {
      keepAlive(this);
    }
  }

  /**
   * Attention forward over tensors.
   *
   * @param q queries (total_q, Hq, D)
   * @param k keys (total_k, Hkv, D)
   * @param v values, like k
   * @param mask the visible (query, key) cells and the ALiBi positions
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (Hq, total_q) f32
   */
  public void forward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams params, Tensor out,
                      Tensor lse) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_attention_forward(handle(), handleOf(q, "q"), handleOf(k, "k"),
          handleOf(v, "v"), handleOf(mask, "mask"), p, handleOf(out, "out"),
          optionalHandleOf(lse, "lse"));
    } finally {
      keepAlive(this, q, k, v, mask, params, out, lse);
    }
  }

  /**
   * Attention forward over f32 arrays, used in place (pinned for the call, not copied). total_q
   * and total_k follow from the lengths, which are checked against the mask's totals: a wrong
   * length throws AlibiException naming the array. The JVM may hold garbage collection while the
   * arrays are pinned; for long calls in allocation-heavy programs, prefer direct buffers.
   *
   * @param q queries (total_q, headsQ, headDim), row-major
   * @param k keys (total_k, headsKv, headDim)
   * @param v values, like k
   * @param headsQ query heads
   * @param headsKv key/value heads (headsQ a multiple of it: grouped-query attention)
   * @param headDim the head dimension
   * @param mask the visible (query, key) cells and the ALiBi positions
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q)
   */
  public void forward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                      Mask mask, AttentionParams params, float[] out, float[] lse) {
    requireArrays(q, k, v, out);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_f32(handle(), headsQ, headsKv, headDim, q, k, v,
          handleOf(mask, "mask"), p, out, lse);
    } finally {
      keepAlive(this, mask, params);
    }
  }

  /**
   * As {@link #forward(float[], float[], float[], int, int, int, Mask, AttentionParams, float[],
   * float[]) the f32 array form}, over direct buffers in native byte order, used in place: each
   * buffer's elements from its position to its limit (positions are left unchanged).
   *
   * @param q queries (total_q, headsQ, headDim), row-major
   * @param k keys (total_k, headsKv, headDim)
   * @param v values, like k
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param mask the visible (query, key) cells and the ALiBi positions
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q)
   * @throws IllegalArgumentException for a heap, read-only (out, lse) or non-native-order buffer
   */
  public void forward(FloatBuffer q, FloatBuffer k, FloatBuffer v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams params, FloatBuffer out,
                      FloatBuffer lse) {
    FloatBuffer q1 = input(q, "q"), k1 = input(k, "k"), v1 = input(v, "v");
    FloatBuffer out1 = output(out, "out"), lse1 = optionalOutput(lse, "lse");
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_java_forward_f32_buffers(handle(), headsQ, headsKv, headDim, q1, k1, v1,
          handleOf(mask, "mask"), p, out1, lse1);
    } finally {
      keepAlive(this, mask, params, q, k, v, out, lse);
    }
  }

  /**
   * As the f32 array form, for F16 or BF16 data given as their 16-bit patterns.
   *
   * @param dtype F16 or BF16
   * @param q queries (total_q, headsQ, headDim)
   * @param k keys (total_k, headsKv, headDim)
   * @param v values, like k
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param mask the visible (query, key) cells and the ALiBi positions
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q) f32
   */
  public void forward(DType dtype, short[] q, short[] k, short[] v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams params, short[] out, float[] lse) {
    Objects.requireNonNull(dtype, "dtype");
    requireArrays(q, k, v, out);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_u16(handle(), dtype, headsQ, headsKv, headDim, q, k, v,
          handleOf(mask, "mask"), p, out, lse);
    } finally {
      keepAlive(this, mask, params);
    }
  }

  /**
   * Attention of packed query chunks over a paged KV cache (decode, speculative decoding, chunked
   * prefill; alibi_attention_forward_paged in alibi.h): sequence b's key t is row t % block_size of
   * block blockTable[b][t / block_size] of the caches. Positions are bottom-right aligned per
   * sequence; the result equals {@link #forward(Tensor, Tensor, Tensor, Mask, AttentionParams,
   * Tensor, Tensor) forward} on the gathered keys with the varlen mask (windowLeft -1) or the
   * sliding window mask. params.attnBias is not supported.
   *
   * @param q queries (total_q, Hq, D), f32, f16 or bf16
   * @param kCache the key blocks (num_blocks, block_size, Hkv, D) in q's dtype
   * @param vCache the value blocks, like kCache
   * @param blockTable (B, max_blocks) i32: each sequence's blocks in key order
   * @param cuSeqlensQ (B+1) i32: sequence b has the queries [cuSeqlensQ[b], cuSeqlensQ[b+1])
   * @param seqlensK (B) i32: each sequence's keys, the new tokens' included
   * @param causal key t is visible to a query only when t &lt;= its position
   * @param windowLeft -1 (unbounded), or key t is visible only when t &gt;= position - windowLeft
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (Hq, total_q) f32
   * @throws AlibiException when the library rejects the call, e.g. INVALID_ARGUMENT for a block id
   *     outside the pool, naming the sequence; nothing is written then
   */
  public void forwardPaged(Tensor q, Tensor kCache, Tensor vCache, Tensor blockTable,
                           Tensor cuSeqlensQ, Tensor seqlensK, boolean causal, int windowLeft,
                           AttentionParams params, Tensor out, Tensor lse) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_attention_forward_paged(handle(), handleOf(q, "q"),
          handleOf(kCache, "kCache"), handleOf(vCache, "vCache"),
          handleOf(blockTable, "blockTable"), handleOf(cuSeqlensQ, "cuSeqlensQ"),
          handleOf(seqlensK, "seqlensK"), causal ? 1 : 0, windowLeft, p, handleOf(out, "out"),
          optionalHandleOf(lse, "lse"));
    } finally {
      keepAlive(this, q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, params, out, lse);
    }
  }

  /**
   * {@link #forwardPaged(Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, boolean, int,
   * AttentionParams, Tensor, Tensor) The paged forward} over f32 arrays, used in place (pinned for
   * the call, not copied). The number of sequences B is seqlensK's length; every other length is
   * checked against the sizes given and B, and a wrong one throws AlibiException naming the
   * array. B = 0 (an empty batch: q, out, blockTable and seqlensK empty, cuSeqlensQ {0})
   * succeeds, as the C call does.
   *
   * @param q queries (total_q, headsQ, headDim), row-major
   * @param kCache the key blocks (num_blocks, blockSize, headsKv, headDim)
   * @param vCache the value blocks, like kCache
   * @param headsQ query heads
   * @param headsKv key/value heads (headsQ a multiple of it)
   * @param headDim the head dimension
   * @param blockSize the keys of one block
   * @param blockTable (B, max_blocks): each sequence's blocks in key order
   * @param cuSeqlensQ (B+1): sequence b has the queries [cuSeqlensQ[b], cuSeqlensQ[b+1])
   * @param seqlensK (B): each sequence's keys, the new tokens' included
   * @param causal key t is visible to a query only when t &lt;= its position
   * @param windowLeft -1 (unbounded), or key t is visible only when t &gt;= position - windowLeft
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q)
   */
  public void forwardPaged(float[] q, float[] kCache, float[] vCache, int headsQ, int headsKv,
                           int headDim, int blockSize, int[] blockTable, int[] cuSeqlensQ,
                           int[] seqlensK, boolean causal, int windowLeft, AttentionParams params,
                           float[] out, float[] lse) {
    requirePagedArrays(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, out);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_paged_f32(handle(), headsQ, headsKv, headDim, blockSize, q,
          kCache, vCache, blockTable, cuSeqlensQ, seqlensK, causal ? 1 : 0, windowLeft, p, out,
          lse);
    } finally {
      keepAlive(this, params);
    }
  }

  /**
   * As {@link #forwardPaged(float[], float[], float[], int, int, int, int, int[], int[], int[],
   * boolean, int, AttentionParams, float[], float[]) the f32 array form}, with q, the caches, out
   * and lse in direct buffers in native byte order, used in place: each buffer's elements from its
   * position to its limit (positions are left unchanged). The tables stay arrays, pinned for the
   * call.
   *
   * @param q queries (total_q, headsQ, headDim), row-major
   * @param kCache the key blocks (num_blocks, blockSize, headsKv, headDim)
   * @param vCache the value blocks, like kCache
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param blockSize the keys of one block
   * @param blockTable (B, max_blocks): each sequence's blocks in key order
   * @param cuSeqlensQ (B+1): sequence b has the queries [cuSeqlensQ[b], cuSeqlensQ[b+1])
   * @param seqlensK (B): each sequence's keys, the new tokens' included
   * @param causal key t is visible to a query only when t &lt;= its position
   * @param windowLeft -1 (unbounded), or key t is visible only when t &gt;= position - windowLeft
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q)
   * @throws IllegalArgumentException for a heap, read-only (out, lse) or non-native-order buffer
   */
  public void forwardPaged(FloatBuffer q, FloatBuffer kCache, FloatBuffer vCache, int headsQ,
                           int headsKv, int headDim, int blockSize, int[] blockTable,
                           int[] cuSeqlensQ, int[] seqlensK, boolean causal, int windowLeft,
                           AttentionParams params, FloatBuffer out, FloatBuffer lse) {
    FloatBuffer q1 = input(q, "q"), kCache1 = input(kCache, "kCache");
    FloatBuffer vCache1 = input(vCache, "vCache");
    FloatBuffer out1 = output(out, "out"), lse1 = optionalOutput(lse, "lse");
    requirePagedArrays(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, out);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_java_forward_paged_f32_buffers(handle(), headsQ, headsKv, headDim,
          blockSize, q1, kCache1, vCache1, blockTable, cuSeqlensQ, seqlensK, causal ? 1 : 0,
          windowLeft, p, out1, lse1);
    } finally {
      keepAlive(this, params, q, kCache, vCache, out, lse);
    }
  }

  /**
   * As the f32 array form of forwardPaged, for F16 or BF16 queries, caches and out given as their
   * 16-bit patterns (lse stays f32).
   *
   * @param dtype F16 or BF16
   * @param q queries (total_q, headsQ, headDim)
   * @param kCache the key blocks (num_blocks, blockSize, headsKv, headDim)
   * @param vCache the value blocks, like kCache
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param blockSize the keys of one block
   * @param blockTable (B, max_blocks): each sequence's blocks in key order
   * @param cuSeqlensQ (B+1): sequence b has the queries [cuSeqlensQ[b], cuSeqlensQ[b+1])
   * @param seqlensK (B): each sequence's keys, the new tokens' included
   * @param causal key t is visible to a query only when t &lt;= its position
   * @param windowLeft -1 (unbounded), or key t is visible only when t &gt;= position - windowLeft
   * @param params null for the defaults
   * @param out written, like q
   * @param lse null, or written with the log-sum-exp, (headsQ, total_q) f32
   */
  public void forwardPaged(DType dtype, short[] q, short[] kCache, short[] vCache, int headsQ,
                           int headsKv, int headDim, int blockSize, int[] blockTable,
                           int[] cuSeqlensQ, int[] seqlensK, boolean causal, int windowLeft,
                           AttentionParams params, short[] out, float[] lse) {
    Objects.requireNonNull(dtype, "dtype");
    requirePagedArrays(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, out);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_paged_u16(handle(), dtype, headsQ, headsKv, headDim,
          blockSize, q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, causal ? 1 : 0,
          windowLeft, p, out, lse);
    } finally {
      keepAlive(this, params);
    }
  }

  /**
   * Attention backward over tensors: the gradients of one {@link #forward(Tensor, Tensor, Tensor,
   * Mask, AttentionParams, Tensor, Tensor) forward} call's inputs (training, with trainable
   * slopes). Each gradient is overwritten, never accumulated into; null ones are not computed.
   * With GQA, a kv head's dk and dv sum over the query heads that read it. attnBias in params
   * takes part in the scores and gets no gradient.
   *
   * @param q queries (total_q, Hq, D): the forward's
   * @param k keys (total_k, Hkv, D): the forward's
   * @param v values, like k: the forward's
   * @param mask the forward's mask
   * @param params the forward's parameters (null: the defaults)
   * @param out the forward's out, like q
   * @param lse the forward's log-sum-exp, (Hq, total_q) f32; required
   * @param dout the gradient of the loss with respect to out, like q
   * @param dq null, or written with the gradient of q: like q, in q's dtype or f32
   * @param dk null, or written with the gradient of k: like k, in q's dtype or f32
   * @param dv null, or written with the gradient of v: like k, in q's dtype or f32
   * @param dslopes null, or written with the gradient of each slope the forward used: f32 (Hq),
   *     or (sequences, Hq) with per-sequence slopes
   * @throws AlibiException when the library rejects the call (the message names the argument);
   *     nothing is written then
   */
  public void backward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams params, Tensor out,
                       Tensor lse, Tensor dout, Tensor dq, Tensor dk, Tensor dv, Tensor dslopes) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_attention_backward(handle(), handleOf(q, "q"), handleOf(k, "k"),
          handleOf(v, "v"), handleOf(mask, "mask"), p, handleOf(out, "out"), handleOf(lse, "lse"),
          handleOf(dout, "dout"), optionalHandleOf(dq, "dq"), optionalHandleOf(dk, "dk"),
          optionalHandleOf(dv, "dv"), optionalHandleOf(dslopes, "dslopes"));
    } finally {
      keepAlive(this, q, k, v, mask, params, out, lse, dout, dq, dk, dv, dslopes);
    }
  }

  /**
   * Attention backward over f32 arrays, used in place as the {@link #forward(float[], float[],
   * float[], int, int, int, Mask, AttentionParams, float[], float[]) array forward}'s: every
   * length is checked against the mask's totals, and a wrong one throws AlibiException naming the
   * array. Gradients are overwritten; null ones are not computed.
   *
   * @param q queries (total_q, headsQ, headDim): the forward's
   * @param k keys (total_k, headsKv, headDim): the forward's
   * @param v values, like k: the forward's
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param mask the forward's mask
   * @param params the forward's parameters (null: the defaults)
   * @param out the forward's out, like q
   * @param lse the forward's log-sum-exp, (headsQ, total_q); required
   * @param dout the gradient of the loss with respect to out, like q
   * @param dq null, or written with the gradient of q, like q
   * @param dk null, or written with the gradient of k, like k
   * @param dv null, or written with the gradient of v, like k
   * @param dslopes null, or written with the gradient of each slope: (headsQ), or (sequences,
   *     headsQ) with per-sequence slopes
   */
  public void backward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                       Mask mask, AttentionParams params, float[] out, float[] lse, float[] dout,
                       float[] dq, float[] dk, float[] dv, float[] dslopes) {
    requireArrays(q, k, v, out);
    requireBackwardArrays(lse, dout);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_backward_f32(handle(), headsQ, headsKv, headDim, q, k, v,
          handleOf(mask, "mask"), p, out, lse, dout, dq, dk, dv, dslopes);
    } finally {
      keepAlive(this, mask, params);
    }
  }

  /**
   * As {@link #backward(float[], float[], float[], int, int, int, Mask, AttentionParams, float[],
   * float[], float[], float[], float[], float[], float[]) the f32 array form}, over direct buffers
   * in native byte order, used in place from position to limit (positions are left unchanged).
   *
   * @param q queries (total_q, headsQ, headDim): the forward's
   * @param k keys (total_k, headsKv, headDim): the forward's
   * @param v values, like k: the forward's
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param mask the forward's mask
   * @param params the forward's parameters (null: the defaults)
   * @param out the forward's out, like q
   * @param lse the forward's log-sum-exp, (headsQ, total_q); required
   * @param dout the gradient of the loss with respect to out, like q
   * @param dq null, or written with the gradient of q, like q
   * @param dk null, or written with the gradient of k, like k
   * @param dv null, or written with the gradient of v, like k
   * @param dslopes null, or written with the gradient of each slope: (headsQ), or (sequences,
   *     headsQ) with per-sequence slopes
   * @throws IllegalArgumentException for a heap, read-only (gradients) or non-native-order buffer
   */
  public void backward(FloatBuffer q, FloatBuffer k, FloatBuffer v, int headsQ, int headsKv,
                       int headDim, Mask mask, AttentionParams params, FloatBuffer out,
                       FloatBuffer lse, FloatBuffer dout, FloatBuffer dq, FloatBuffer dk,
                       FloatBuffer dv, FloatBuffer dslopes) {
    FloatBuffer q1 = input(q, "q"), k1 = input(k, "k"), v1 = input(v, "v");
    FloatBuffer out1 = input(out, "out"), lse1 = input(lse, "lse"), dout1 = input(dout, "dout");
    FloatBuffer dq1 = optionalOutput(dq, "dq"), dk1 = optionalOutput(dk, "dk");
    FloatBuffer dv1 = optionalOutput(dv, "dv"), dslopes1 = optionalOutput(dslopes, "dslopes");
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_java_backward_f32_buffers(handle(), headsQ, headsKv, headDim, q1, k1, v1,
          handleOf(mask, "mask"), p, out1, lse1, dout1, dq1, dk1, dv1, dslopes1);
    } finally {
      keepAlive(this, mask, params, q, k, v, out, lse, dout, dq, dk, dv, dslopes);
    }
  }

  /**
   * As the f32 array form, for F16 or BF16 data given as their 16-bit patterns: q, k, v, out,
   * dout and the gradients dq, dk, dv (in q's dtype; {@link #backward(Tensor, Tensor, Tensor,
   * Mask, AttentionParams, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor) tensors} also
   * take f32 gradients); lse and dslopes are f32.
   *
   * @param dtype F16 or BF16
   * @param q queries (total_q, headsQ, headDim): the forward's
   * @param k keys (total_k, headsKv, headDim): the forward's
   * @param v values, like k: the forward's
   * @param headsQ query heads
   * @param headsKv key/value heads
   * @param headDim the head dimension
   * @param mask the forward's mask
   * @param params the forward's parameters (null: the defaults)
   * @param out the forward's out, like q
   * @param lse the forward's log-sum-exp, (headsQ, total_q) f32; required
   * @param dout the gradient of the loss with respect to out, like q
   * @param dq null, or written with the gradient of q, like q
   * @param dk null, or written with the gradient of k, like k
   * @param dv null, or written with the gradient of v, like k
   * @param dslopes null, or written with the gradient of each slope, f32: (headsQ), or
   *     (sequences, headsQ) with per-sequence slopes
   */
  public void backward(DType dtype, short[] q, short[] k, short[] v, int headsQ, int headsKv,
                       int headDim, Mask mask, AttentionParams params, short[] out, float[] lse,
                       short[] dout, short[] dq, short[] dk, short[] dv, float[] dslopes) {
    Objects.requireNonNull(dtype, "dtype");
    requireArrays(q, k, v, out);
    requireBackwardArrays(lse, dout);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_backward_u16(handle(), dtype, headsQ, headsKv, headDim, q, k, v,
          handleOf(mask, "mask"), p, out, lse, dout, dq, dk, dv, dslopes);
    } finally {
      keepAlive(this, mask, params);
    }
  }

  /**
   * Merges two partial results of the same queries over disjoint keys (split-K, prefix sharing).
   * out may be outA or outB, lse lseA or lseB (in place). A side whose lse is -inf contributes
   * nothing.
   *
   * @param outA the first side's output (tokens, heads, headDim)
   * @param lseA its log-sum-exp (heads, tokens) f32
   * @param outB the second side's output, like outA
   * @param lseB its log-sum-exp, like lseA
   * @param out written, like outA
   * @param lse null, or written like lseA
   */
  public void merge(Tensor outA, Tensor lseA, Tensor outB, Tensor lseB, Tensor out, Tensor lse) {
    try {
      AlibiNative.alibi_attention_merge(handle(), handleOf(outA, "outA"), handleOf(lseA, "lseA"),
          handleOf(outB, "outB"), handleOf(lseB, "lseB"), handleOf(out, "out"),
          optionalHandleOf(lse, "lse"));
    } finally {
      keepAlive(this, outA, lseA, outB, lseB, out, lse);
    }
  }

  /**
   * merge over f32 arrays, used in place; passing outA (or outB) as out merges in place.
   *
   * @param outA the first side's output (tokens, heads, headDim)
   * @param lseA its log-sum-exp (heads, tokens)
   * @param outB the second side's output, like outA
   * @param lseB its log-sum-exp, like lseA
   * @param heads heads
   * @param headDim the head dimension
   * @param out written, like outA
   * @param lse null, or written like lseA
   */
  public void merge(float[] outA, float[] lseA, float[] outB, float[] lseB, int heads, int headDim,
                    float[] out, float[] lse) {
    requireMergeArrays(outA, lseA, outB, lseB, out);
    try {
      AlibiNative.alibi_binding_merge_f32(handle(), heads, headDim, outA, lseA, outB, lseB, out,
          lse);
    } finally {
      keepAlive(this);
    }
  }

  /**
   * merge over direct buffers in native byte order, used in place from position to limit (as
   * the FloatBuffer form of forward); the same buffer region as outA (or outB) and out merges in
   * place.
   *
   * @param outA the first side's output (tokens, heads, headDim)
   * @param lseA its log-sum-exp (heads, tokens)
   * @param outB the second side's output, like outA
   * @param lseB its log-sum-exp, like lseA
   * @param heads heads
   * @param headDim the head dimension
   * @param out written, like outA
   * @param lse null, or written like lseA
   * @throws IllegalArgumentException for a heap, read-only (out, lse) or non-native-order buffer
   */
  public void merge(FloatBuffer outA, FloatBuffer lseA, FloatBuffer outB, FloatBuffer lseB,
                    int heads, int headDim, FloatBuffer out, FloatBuffer lse) {
    FloatBuffer outA1 = input(outA, "outA"), lseA1 = input(lseA, "lseA");
    FloatBuffer outB1 = input(outB, "outB"), lseB1 = input(lseB, "lseB");
    FloatBuffer out1 = output(out, "out"), lse1 = optionalOutput(lse, "lse");
    try {
      AlibiNative.alibi_java_merge_f32_buffers(handle(), heads, headDim, outA1, lseA1, outB1,
          lseB1, out1, lse1);
    } finally {
      keepAlive(this, outA, lseA, outB, lseB, out, lse);
    }
  }

  /**
   * As the f32 array form, for F16 or BF16 outputs given as their 16-bit patterns (lse stays f32).
   *
   * @param dtype F16 or BF16
   * @param outA the first side's output (tokens, heads, headDim)
   * @param lseA its log-sum-exp (heads, tokens)
   * @param outB the second side's output, like outA
   * @param lseB its log-sum-exp, like lseA
   * @param heads heads
   * @param headDim the head dimension
   * @param out written, like outA
   * @param lse null, or written like lseA
   */
  public void merge(DType dtype, short[] outA, float[] lseA, short[] outB, float[] lseB, int heads,
                    int headDim, short[] out, float[] lse) {
    Objects.requireNonNull(dtype, "dtype");
    requireMergeArrays(outA, lseA, outB, lseB, out);
    try {
      AlibiNative.alibi_binding_merge_u16(handle(), dtype, heads, headDim, outA, lseA, outB, lseB,
          out, lse);
    } finally {
      keepAlive(this);
    }
  }

  private static void requireArrays(Object q, Object k, Object v, Object out) {
    Objects.requireNonNull(q, "q");
    Objects.requireNonNull(k, "k");
    Objects.requireNonNull(v, "v");
    Objects.requireNonNull(out, "out");
  }

  private static void requirePagedArrays(Object q, Object kCache, Object vCache,
                                         int[] blockTable, int[] cuSeqlensQ, int[] seqlensK,
                                         Object out) {
    Objects.requireNonNull(q, "q");
    Objects.requireNonNull(kCache, "kCache");
    Objects.requireNonNull(vCache, "vCache");
    Objects.requireNonNull(blockTable, "blockTable");
    Objects.requireNonNull(cuSeqlensQ, "cuSeqlensQ");
    Objects.requireNonNull(seqlensK, "seqlensK");
    Objects.requireNonNull(out, "out");
  }

  private static void requireBackwardArrays(Object lse, Object dout) {
    Objects.requireNonNull(lse, "lse");
    Objects.requireNonNull(dout, "dout");
  }

  private static void requireMergeArrays(Object outA, Object lseA, Object outB, Object lseB,
                                         Object out) {
    Objects.requireNonNull(outA, "outA");
    Objects.requireNonNull(lseA, "lseA");
    Objects.requireNonNull(outB, "outB");
    Objects.requireNonNull(lseB, "lseB");
    Objects.requireNonNull(out, "out");
  }

  /** The position..limit region of a direct, native-order buffer, as a buffer of its own. */
  private static FloatBuffer input(FloatBuffer buffer, String argument) {
    Objects.requireNonNull(buffer, argument);
    if (!buffer.isDirect()) {
      throw new IllegalArgumentException(argument + " is a heap buffer; a direct one is needed "
          + "(ByteBuffer.allocateDirect(n).order(ByteOrder.nativeOrder()).asFloatBuffer())");
    }
    if (buffer.order() != ByteOrder.nativeOrder()) {
      throw new IllegalArgumentException(argument + " is in " + buffer.order()
          + " byte order, not the native " + ByteOrder.nativeOrder());
    }
    return buffer.slice();
  }

  private static FloatBuffer output(FloatBuffer buffer, String argument) {
    FloatBuffer region = input(buffer, argument);
    if (buffer.isReadOnly()) throw new IllegalArgumentException(argument + " is read-only");
    return region;
  }

  private static FloatBuffer optionalOutput(FloatBuffer buffer, String argument) {
    return buffer == null ? null : output(buffer, argument);
  }
}
