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
   * lse null or (headsQ, total_q). The JVM may hold garbage collection while the arrays are
   * pinned; for long calls in allocation-heavy programs, tensors wrapping direct buffers avoid it.
   */
  public void forward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                      Mask mask, AttentionParams params, float[] out, float[] lse) {
    forwardArrays(DType.F32, q, q.length, k, k.length, v, v.length, headsQ, headsKv, headDim,
                  mask, params, out, out.length, lse);
  }

  /** As the f32 form, for f16 or bf16 data given as their 16-bit patterns. */
  public void forward(DType dtype, short[] q, short[] k, short[] v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams params, short[] out, float[] lse) {
    if (dtype != DType.F16 && dtype != DType.BF16) {
      throw new AlibiException(Status.DTYPE_MISMATCH,
          "Context.forward: short[] data is F16 or BF16, not " + dtype);
    }
    forwardArrays(dtype, q, q.length, k, k.length, v, v.length, headsQ, headsKv, headDim, mask,
                  params, out, out.length, lse);
  }

  private void forwardArrays(DType dtype, Object q, int qLength, Object k, int kLength, Object v,
                             int vLength, int headsQ, int headsKv, int headDim, Mask mask,
                             AttentionParams params, Object out, int outLength, float[] lse) {
    long totalQ = rows("q", qLength, headsQ, headDim);
    long totalK = rows("k", kLength, headsKv, headDim);
    requireLength("v", vLength, kLength);
    requireLength("out", outLength, qLength);
    if (lse != null) requireLength("lse", lse.length, totalQ * headsQ);
    try (alibi_attention_params p = AttentionParams.toNative(params)) {
      AlibiNative.alibi_binding_forward(handle(), dtype, totalQ, totalK, headsQ, headsKv, headDim,
          q, k, v, handleOf(mask), p, out, lse);
    }
  }

  private static long rows(String name, int length, int heads, int headDim) {
    if (heads <= 0 || headDim <= 0) {
      throw new AlibiException(Status.INVALID_ARGUMENT, "Context.forward: heads = " + heads
          + ", headDim = " + headDim + " (both must be > 0)");
    }
    long rowLength = (long) heads * headDim;
    if (length % rowLength != 0) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Context.forward: " + name + " has "
          + length + " elements, not a multiple of heads * headDim = " + rowLength);
    }
    return length / rowLength;
  }

  private static void requireLength(String name, long length, long expected) {
    if (length != expected) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Context.forward: " + name + " has "
          + length + " elements, expected " + expected);
    }
  }
}
