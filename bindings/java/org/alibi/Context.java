package org.alibi;

/** A device context: where calls run. Use it from one thread at a time. */
public final class Context extends NativeHandle {
  public Context(Device device, int deviceIndex) {
    super(create(device, deviceIndex));
  }

  /** A CPU context. */
  public Context() {
    this(Device.CPU, 0);
  }

  private static long create(Device device, int deviceIndex) {
    long[] out = new long[1];
    AlibiNative.alibi_context_create(device, deviceIndex, out);
    return out[0];
  }

  @Override
  void destroy(long handle) {
    AlibiNative.alibi_context_destroy(handle);
  }

  /** CPU or CUDA (never AUTO). */
  public Device device() {
    int[] out = new int[1];
    AlibiNative.alibi_context_get_device(handle(), out);
    return Device.swigToEnum(out[0]);
  }

  /** CPU worker threads of this context's calls; 0 = one per core. */
  public Context setNumThreads(int numThreads) {
    AlibiNative.alibi_context_set_num_threads(handle(), numThreads);
    return this;
  }

  public void synchronize() {
    AlibiNative.alibi_context_synchronize(handle());
  }

  /**
   * Attention forward over tensors: q (total_q, Hq, D), k and v (total_k, Hkv, D), out like q,
   * lse null or (Hq, total_q) f32. params null: the defaults.
   */
  public void forward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams params, Tensor out,
                      Tensor lse) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_attention_forward(handle(), handleOf(q), handleOf(k), handleOf(v),
          handleOf(mask), p, handleOf(out), optionalHandleOf(lse, "Context.forward: lse"));
    }
  }

  /**
   * Attention forward over f32 arrays, used in place (pinned for the call, not copied):
   * q and out hold (total_q, headsQ, headDim), k and v (total_k, headsKv, headDim), row-major;
   * lse null or (headsQ, total_q). total_q and total_k follow from the lengths, which the
   * library checks against each other and the mask. The JVM may hold garbage collection while
   * the arrays are pinned; for long calls in allocation-heavy programs, tensors wrapping direct
   * buffers avoid it.
   */
  public void forward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                      Mask mask, AttentionParams params, float[] out, float[] lse) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_f32(handle(), headsQ, headsKv, headDim, q, k, v,
          handleOf(mask), p, out, lse);
    }
  }

  /** As the f32 form, for F16 or BF16 data given as their 16-bit patterns. */
  public void forward(DType dtype, short[] q, short[] k, short[] v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams params, short[] out, float[] lse) {
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward_u16(handle(), dtype, headsQ, headsKv, headDim, q, k, v,
          handleOf(mask), p, out, lse);
    }
  }

  /**
   * Merges two partial results of the same queries over disjoint keys (split-K, prefix sharing):
   * outA, outB and out (tokens, heads, headDim) of one dtype, lseA, lseB and lse (heads, tokens)
   * f32 as forward writes them; lse may be null. out may be outA or outB, lse lseA or lseB (in
   * place). A side whose lse is -inf contributes nothing.
   */
  public void merge(Tensor outA, Tensor lseA, Tensor outB, Tensor lseB, Tensor out, Tensor lse) {
    AlibiNative.alibi_attention_merge(handle(), handleOf(outA), handleOf(lseA), handleOf(outB),
        handleOf(lseB), handleOf(out), optionalHandleOf(lse, "Context.merge: lse"));
  }

  /**
   * merge over f32 arrays, used in place as forward's: outA, outB and out hold (tokens, heads,
   * headDim), lseA, lseB and lse (heads, tokens); lse may be null. Passing outA (or outB) as out
   * merges in place.
   */
  public void merge(float[] outA, float[] lseA, float[] outB, float[] lseB, int heads, int headDim,
                    float[] out, float[] lse) {
    AlibiNative.alibi_binding_merge_f32(handle(), heads, headDim, outA, lseA, outB, lseB, out, lse);
  }

  /** As the f32 form, for F16 or BF16 outputs given as their 16-bit patterns (lse stays f32). */
  public void merge(DType dtype, short[] outA, float[] lseA, short[] outB, float[] lseB, int heads,
                    int headDim, short[] out, float[] lse) {
    AlibiNative.alibi_binding_merge_u16(handle(), dtype, heads, headDim, outA, lseA, outB, lseB,
        out, lse);
  }
}
