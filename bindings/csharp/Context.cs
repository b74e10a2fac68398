using System;

namespace Alibi {

/// <summary>A device context: where calls run. Use it from one thread at a time.</summary>
public sealed class Context : NativeHandle {
  public Context(Device device = Device.Cpu, int deviceIndex = 0) : base(Create(device, deviceIndex)) {}

  private static IntPtr Create(Device device, int deviceIndex) {
    AlibiNative.alibi_context_create(device, deviceIndex, out IntPtr ctx);
    return ctx;
  }

  protected override void Destroy(IntPtr handle) => AlibiNative.alibi_context_destroy(handle);

  /// <summary>Cpu or Cuda (never Auto).</summary>
  public Device Device {
    get {
      AlibiNative.alibi_context_get_device(Handle, out int device);
      GC.KeepAlive(this);
      return (Device)device;
    }
  }

  /// <summary>CPU worker threads of this context's calls; 0 = one per core.</summary>
  public Context SetNumThreads(int numThreads) {
    AlibiNative.alibi_context_set_num_threads(Handle, numThreads);
    GC.KeepAlive(this);
    return this;
  }

  public void Synchronize() {
    AlibiNative.alibi_context_synchronize(Handle);
    GC.KeepAlive(this);
  }

  /// <summary>
  /// Attention forward over tensors: q (total_q, Hq, D), k and v (total_k, Hkv, D), output like q,
  /// lse null or (Hq, total_q) f32. parameters null: the defaults.
  /// </summary>
  public void Forward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams parameters,
                      Tensor output, Tensor lse) {
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_attention_forward(Handle, HandleOf(q), HandleOf(k), HandleOf(v),
          HandleOf(mask), p, HandleOf(output), OptionalHandleOf(lse, "Forward: lse"));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(q);
    GC.KeepAlive(k);
    GC.KeepAlive(v);
    GC.KeepAlive(mask);
    GC.KeepAlive(output);
    GC.KeepAlive(lse);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// Attention forward over f32 arrays, used in place (pinned for the call, not copied): q and
  /// output hold (total_q, headsQ, headDim), k and v (total_k, headsKv, headDim), row-major;
  /// lse null or (headsQ, total_q). total_q and total_k follow from the lengths, which the
  /// library checks against each other and the mask.
  /// </summary>
  public void Forward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                      Mask mask, AttentionParams parameters, float[] output, float[] lse) {
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_binding_forward_f32(Handle, headsQ, headsKv, headDim, q, k, v,
                                            HandleOf(mask), p, output, lse);
    }
    GC.KeepAlive(this);
    GC.KeepAlive(mask);
    GC.KeepAlive(parameters);
  }

  /// <summary>As the f32 form, for F16 or BF16 data given as their 16-bit patterns.</summary>
  public void Forward(DType dtype, ushort[] q, ushort[] k, ushort[] v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams parameters, ushort[] output,
                      float[] lse) {
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_binding_forward_u16(Handle, dtype, headsQ, headsKv, headDim, q, k, v,
                                            HandleOf(mask), p, output, lse);
    }
    GC.KeepAlive(this);
    GC.KeepAlive(mask);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// Merges two partial results of the same queries over disjoint keys (split-K, prefix sharing):
  /// outputA, outputB and output (tokens, heads, headDim) of one dtype, lseA, lseB and lse (heads,
  /// tokens) f32 as Forward writes them; lse may be null. output may be outputA or outputB, lse
  /// lseA or lseB (in place). A side whose lse is -inf contributes nothing.
  /// </summary>
  public void Merge(Tensor outputA, Tensor lseA, Tensor outputB, Tensor lseB, Tensor output,
                    Tensor lse) {
    AlibiNative.alibi_attention_merge(Handle, HandleOf(outputA), HandleOf(lseA), HandleOf(outputB),
                                      HandleOf(lseB), HandleOf(output), OptionalHandleOf(lse, "Merge: lse"));
    GC.KeepAlive(this);
    GC.KeepAlive(outputA);
    GC.KeepAlive(lseA);
    GC.KeepAlive(outputB);
    GC.KeepAlive(lseB);
    GC.KeepAlive(output);
    GC.KeepAlive(lse);
  }

  /// <summary>
  /// Merge over f32 arrays, used in place as Forward's: outputA, outputB and output hold (tokens,
  /// heads, headDim), lseA, lseB and lse (heads, tokens); lse may be null. Passing outputA (or
  /// outputB) as output merges in place.
  /// </summary>
  public void Merge(float[] outputA, float[] lseA, float[] outputB, float[] lseB, int heads,
                    int headDim, float[] output, float[] lse) {
    AlibiNative.alibi_binding_merge_f32(Handle, heads, headDim, outputA, lseA, outputB, lseB, output, lse);
    GC.KeepAlive(this);
  }

  /// <summary>As the f32 form, for F16 or BF16 outputs given as their 16-bit patterns (lse stays f32).</summary>
  public void Merge(DType dtype, ushort[] outputA, float[] lseA, ushort[] outputB, float[] lseB,
                    int heads, int headDim, ushort[] output, float[] lse) {
    AlibiNative.alibi_binding_merge_u16(Handle, dtype, heads, headDim, outputA, lseA, outputB, lseB,
                                        output, lse);
    GC.KeepAlive(this);
  }
}

}
