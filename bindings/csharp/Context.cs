using System;
using System.Runtime.InteropServices;

namespace Alibi {

/// <summary>
/// A device context: where calls run. Use it from one thread at a time. Dispose it when done
/// (a context never disposed is released by the runtime once unreachable); Dispose is idempotent,
/// and tensors and masks created from it stay usable after it is disposed.
/// </summary>
public sealed class Context : IDisposable, IHandleOwner {
  private readonly ContextHandle handle;

  /// <summary>A context on device (Cpu by default; Auto picks CUDA when available).</summary>
  /// <exception cref="AlibiException">The device is not available (Status.BackendUnavailable).</exception>
  public Context(Device device = Device.Cpu, int deviceIndex = 0) {
    AlibiNative.alibi_context_create(device, deviceIndex, out handle);
  }

  AlibiHandle IHandleOwner.NativeHandle => handle;

  internal IntPtr Handle => handle.Get(null);

  /// <summary>Releases the native context; later calls on it throw ObjectDisposedException.</summary>
  public void Dispose() => handle.Dispose();

  /// <summary>Cpu or Cuda (never Auto).</summary>
  public Device Device {
    get {
      AlibiNative.alibi_context_get_device(Handle, out int device);
      GC.KeepAlive(this);
      return (Device)device;
    }
  }

  /// <summary>CPU threads of this context's calls (0, the default: one per core); returns this context.</summary>
  public Context SetNumThreads(int numThreads) {
    AlibiNative.alibi_context_set_num_threads(Handle, numThreads);
    GC.KeepAlive(this);
    return this;
  }

  /// <summary>Waits until the work this context queued on its device is done.</summary>
  public void Synchronize() {
    AlibiNative.alibi_context_synchronize(Handle);
    GC.KeepAlive(this);
  }

  /// <summary>
  /// Attention forward over tensors: q (total_q, Hq, D), k and v (total_k, Hkv, D), output like q,
  /// lse null or (Hq, total_q) f32. parameters null: the defaults.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or an argument is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the call; the message names the argument.</exception>
  public void Forward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams parameters,
                      Tensor output, Tensor lse) {
    IntPtr ctx = Handle, hq = Args.Required(q, nameof(q)), hk = Args.Required(k, nameof(k));
    IntPtr hv = Args.Required(v, nameof(v)), hmask = Args.Required(mask, nameof(mask));
    IntPtr hout = Args.Required(output, nameof(output)), hlse = Args.Optional(lse, nameof(lse));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_attention_forward(ctx, hq, hk, hv, hmask, p, hout, hlse);
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
  /// library checks against the mask. parameters null: the defaults.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit; the message names the argument.</exception>
  public void Forward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                      Mask mask, AttentionParams parameters, float[] output, float[] lse) {
    Args.NotNull(q, nameof(q));
    Args.NotNull(k, nameof(k));
    Args.NotNull(v, nameof(v));
    Args.NotNull(output, nameof(output));
    Forward(new ReadOnlySpan<float>(q), k, v, headsQ, headsKv, headDim, mask, parameters,
            new Span<float>(output), new Span<float>(lse));
  }

  /// <summary>
  /// The f32 array form over spans (slices of arrays, stack or native memory), used in place;
  /// an empty lse means none.
  /// </summary>
  /// <exception cref="ArgumentNullException">mask is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit; the message names the argument.</exception>
  public unsafe void Forward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
                             int headsQ, int headsKv, int headDim, Mask mask,
                             AttentionParams parameters, Span<float> output, Span<float> lse) {
    IntPtr ctx = Handle, hmask = Args.Required(mask, nameof(mask));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (float* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(k),
           pv = &MemoryMarshal.GetReference(v), pout = &MemoryMarshal.GetReference(output),
           plse = &MemoryMarshal.GetReference(lse)) {
      AlibiNative.alibi_binding_forward_f32(ctx, headsQ, headsKv, headDim,
          new NativeArray(pq, q.Length), new NativeArray(pk, k.Length), new NativeArray(pv, v.Length),
          hmask, p, new NativeArray(pout, output.Length), NativeArray.Optional(plse, lse.Length));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(mask);
    GC.KeepAlive(parameters);
  }

  /// <summary>As the f32 array form, for F16 or BF16 data given as their 16-bit patterns.</summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit; the message names the argument.</exception>
  public void Forward(DType dtype, ushort[] q, ushort[] k, ushort[] v, int headsQ, int headsKv,
                      int headDim, Mask mask, AttentionParams parameters, ushort[] output,
                      float[] lse) {
    Args.NotNull(q, nameof(q));
    Args.NotNull(k, nameof(k));
    Args.NotNull(v, nameof(v));
    Args.NotNull(output, nameof(output));
    Forward(dtype, new ReadOnlySpan<ushort>(q), k, v, headsQ, headsKv, headDim, mask, parameters,
            new Span<ushort>(output), new Span<float>(lse));
  }

  /// <summary>The F16/BF16 array form over spans, used in place; an empty lse means none.</summary>
  /// <exception cref="ArgumentNullException">mask is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit; the message names the argument.</exception>
  public unsafe void Forward(DType dtype, ReadOnlySpan<ushort> q, ReadOnlySpan<ushort> k,
                             ReadOnlySpan<ushort> v, int headsQ, int headsKv, int headDim,
                             Mask mask, AttentionParams parameters, Span<ushort> output,
                             Span<float> lse) {
    IntPtr ctx = Handle, hmask = Args.Required(mask, nameof(mask));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (ushort* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(k),
           pv = &MemoryMarshal.GetReference(v), pout = &MemoryMarshal.GetReference(output))
    fixed (float* plse = &MemoryMarshal.GetReference(lse)) {
      AlibiNative.alibi_binding_forward_u16(ctx, dtype, headsQ, headsKv, headDim,
          new NativeArray(pq, q.Length), new NativeArray(pk, k.Length), new NativeArray(pv, v.Length),
          hmask, p, new NativeArray(pout, output.Length), NativeArray.Optional(plse, lse.Length));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(mask);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// Attention of packed query chunks over a paged KV cache (decode, speculative decoding,
  /// chunked prefill; alibi_attention_forward_paged in alibi.h): sequence b's key t is row
  /// t % block_size of block blockTable[b, t / block_size] of the caches. q (total_q, Hq, D),
  /// kCache and vCache (num_blocks, block_size, Hkv, D) in q's dtype, blockTable (B, max_blocks),
  /// cuSeqlensQ (B+1) and seqlensK (B) I32, output like q, lse null or (Hq, total_q) F32.
  /// Positions are bottom-right aligned per sequence; windowLeft -1 is unbounded. The result
  /// equals Forward on the gathered keys with the varlen (or sliding window) mask. parameters
  /// null: the defaults (AttnBias is not supported).
  /// </summary>
  /// <exception cref="ArgumentNullException">q, kCache, vCache, a table or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or an argument is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the call (nothing is written), e.g. Status.InvalidArgument for a block id outside the pool, naming the sequence.</exception>
  public void ForwardPaged(Tensor q, Tensor kCache, Tensor vCache, Tensor blockTable,
                           Tensor cuSeqlensQ, Tensor seqlensK, bool causal, int windowLeft,
                           AttentionParams parameters, Tensor output, Tensor lse) {
    IntPtr ctx = Handle, hq = Args.Required(q, nameof(q));
    IntPtr hk = Args.Required(kCache, nameof(kCache)), hv = Args.Required(vCache, nameof(vCache));
    IntPtr htable = Args.Required(blockTable, nameof(blockTable));
    IntPtr hcu = Args.Required(cuSeqlensQ, nameof(cuSeqlensQ));
    IntPtr hsk = Args.Required(seqlensK, nameof(seqlensK));
    IntPtr hout = Args.Required(output, nameof(output)), hlse = Args.Optional(lse, nameof(lse));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_attention_forward_paged(ctx, hq, hk, hv, htable, hcu, hsk, causal ? 1 : 0,
                                                windowLeft, p, hout, hlse);
    }
    GC.KeepAlive(this);
    GC.KeepAlive(q);
    GC.KeepAlive(kCache);
    GC.KeepAlive(vCache);
    GC.KeepAlive(blockTable);
    GC.KeepAlive(cuSeqlensQ);
    GC.KeepAlive(seqlensK);
    GC.KeepAlive(output);
    GC.KeepAlive(lse);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// ForwardPaged over f32 arrays, used in place (pinned for the call, not copied): q and output
  /// hold (total_q, headsQ, headDim), kCache and vCache (num_blocks, blockSize, headsKv, headDim),
  /// blockTable (B, max_blocks) row-major, cuSeqlensQ (B+1), seqlensK (B); lse null or (headsQ,
  /// total_q). B is seqlensK's length; every other length is checked against the sizes given.
  /// B = 0 (an empty batch: q, output, blockTable and seqlensK empty, cuSeqlensQ {0}) succeeds, as
  /// the C call does.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, kCache, vCache, a table or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">A length does not fit (the message names the argument), or the library rejected the tables.</exception>
  public void ForwardPaged(float[] q, float[] kCache, float[] vCache, int headsQ, int headsKv,
                           int headDim, int blockSize, int[] blockTable, int[] cuSeqlensQ,
                           int[] seqlensK, bool causal, int windowLeft,
                           AttentionParams parameters, float[] output, float[] lse) {
    RequirePagedArrays(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, output);
    ForwardPaged(new ReadOnlySpan<float>(q), kCache, vCache, headsQ, headsKv, headDim, blockSize,
                 blockTable, cuSeqlensQ, seqlensK, causal, windowLeft, parameters,
                 new Span<float>(output), new Span<float>(lse));
  }

  /// <summary>The f32 array form of ForwardPaged over spans, used in place; an empty lse means none.</summary>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">A length does not fit (the message names the argument), or the library rejected the tables.</exception>
  public unsafe void ForwardPaged(ReadOnlySpan<float> q, ReadOnlySpan<float> kCache,
                                  ReadOnlySpan<float> vCache, int headsQ, int headsKv,
                                  int headDim, int blockSize, ReadOnlySpan<int> blockTable,
                                  ReadOnlySpan<int> cuSeqlensQ, ReadOnlySpan<int> seqlensK,
                                  bool causal, int windowLeft, AttentionParams parameters,
                                  Span<float> output, Span<float> lse) {
    IntPtr ctx = Handle;
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (float* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(kCache),
           pv = &MemoryMarshal.GetReference(vCache), pout = &MemoryMarshal.GetReference(output),
           plse = &MemoryMarshal.GetReference(lse))
    fixed (int* ptable = &MemoryMarshal.GetReference(blockTable),
           pcu = &MemoryMarshal.GetReference(cuSeqlensQ), psk = &MemoryMarshal.GetReference(seqlensK)) {
      AlibiNative.alibi_binding_forward_paged_f32(ctx, headsQ, headsKv, headDim, blockSize,
          new NativeArray(pq, q.Length), new NativeArray(pk, kCache.Length),
          new NativeArray(pv, vCache.Length), new NativeArray(ptable, blockTable.Length),
          new NativeArray(pcu, cuSeqlensQ.Length), new NativeArray(psk, seqlensK.Length),
          causal ? 1 : 0, windowLeft, p, new NativeArray(pout, output.Length),
          NativeArray.Optional(plse, lse.Length));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(parameters);
  }

  /// <summary>As the f32 array form of ForwardPaged, for F16 or BF16 q, caches and output given as their 16-bit patterns (lse stays f32).</summary>
  /// <exception cref="ArgumentNullException">q, kCache, vCache, a table or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, a length does not fit, or the library rejected the tables.</exception>
  public void ForwardPaged(DType dtype, ushort[] q, ushort[] kCache, ushort[] vCache, int headsQ,
                           int headsKv, int headDim, int blockSize, int[] blockTable,
                           int[] cuSeqlensQ, int[] seqlensK, bool causal, int windowLeft,
                           AttentionParams parameters, ushort[] output, float[] lse) {
    RequirePagedArrays(q, kCache, vCache, blockTable, cuSeqlensQ, seqlensK, output);
    ForwardPaged(dtype, new ReadOnlySpan<ushort>(q), kCache, vCache, headsQ, headsKv, headDim,
                 blockSize, blockTable, cuSeqlensQ, seqlensK, causal, windowLeft, parameters,
                 new Span<ushort>(output), new Span<float>(lse));
  }

  /// <summary>The F16/BF16 array form of ForwardPaged over spans, used in place; an empty lse means none.</summary>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, a length does not fit, or the library rejected the tables.</exception>
  public unsafe void ForwardPaged(DType dtype, ReadOnlySpan<ushort> q, ReadOnlySpan<ushort> kCache,
                                  ReadOnlySpan<ushort> vCache, int headsQ, int headsKv,
                                  int headDim, int blockSize, ReadOnlySpan<int> blockTable,
                                  ReadOnlySpan<int> cuSeqlensQ, ReadOnlySpan<int> seqlensK,
                                  bool causal, int windowLeft, AttentionParams parameters,
                                  Span<ushort> output, Span<float> lse) {
    IntPtr ctx = Handle;
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (ushort* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(kCache),
           pv = &MemoryMarshal.GetReference(vCache), pout = &MemoryMarshal.GetReference(output))
    fixed (float* plse = &MemoryMarshal.GetReference(lse))
    fixed (int* ptable = &MemoryMarshal.GetReference(blockTable),
           pcu = &MemoryMarshal.GetReference(cuSeqlensQ), psk = &MemoryMarshal.GetReference(seqlensK)) {
      AlibiNative.alibi_binding_forward_paged_u16(ctx, dtype, headsQ, headsKv, headDim, blockSize,
          new NativeArray(pq, q.Length), new NativeArray(pk, kCache.Length),
          new NativeArray(pv, vCache.Length), new NativeArray(ptable, blockTable.Length),
          new NativeArray(pcu, cuSeqlensQ.Length), new NativeArray(psk, seqlensK.Length),
          causal ? 1 : 0, windowLeft, p, new NativeArray(pout, output.Length),
          NativeArray.Optional(plse, lse.Length));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(parameters);
  }

  private static void RequirePagedArrays(Array q, Array kCache, Array vCache, int[] blockTable,
                                         int[] cuSeqlensQ, int[] seqlensK, Array output) {
    Args.NotNull(q, nameof(q));
    Args.NotNull(kCache, nameof(kCache));
    Args.NotNull(vCache, nameof(vCache));
    Args.NotNull(blockTable, nameof(blockTable));
    Args.NotNull(cuSeqlensQ, nameof(cuSeqlensQ));
    Args.NotNull(seqlensK, nameof(seqlensK));
    Args.NotNull(output, nameof(output));
  }

  /// <summary>
  /// Attention backward over tensors: the gradients of one Forward call's inputs (training, with
  /// trainable slopes). q, k, v, mask and parameters are the forward's, output and lse (required,
  /// (Hq, total_q) f32) its results, dOutput (like q) the gradient of the loss with respect to
  /// output. dq (like q), dk and dv (like k), each in q's dtype or F32, and dSlopes (F32 (Hq), or
  /// (sequences, Hq) with per-sequence slopes) are overwritten, never accumulated into; a null one
  /// is not computed. With GQA a kv head's dk and dv sum over the query heads that read it; an
  /// AttnBias takes part in the scores and gets no gradient.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask, output, lse or dOutput is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or an argument is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the call (nothing is written); the message names the argument.</exception>
  public void Backward(Tensor q, Tensor k, Tensor v, Mask mask, AttentionParams parameters,
                       Tensor output, Tensor lse, Tensor dOutput, Tensor dq, Tensor dk, Tensor dv,
                       Tensor dSlopes) {
    IntPtr ctx = Handle, hq = Args.Required(q, nameof(q)), hk = Args.Required(k, nameof(k));
    IntPtr hv = Args.Required(v, nameof(v)), hmask = Args.Required(mask, nameof(mask));
    IntPtr hout = Args.Required(output, nameof(output)), hlse = Args.Required(lse, nameof(lse));
    IntPtr hdout = Args.Required(dOutput, nameof(dOutput)), hdq = Args.Optional(dq, nameof(dq));
    IntPtr hdk = Args.Optional(dk, nameof(dk)), hdv = Args.Optional(dv, nameof(dv));
    IntPtr hdslopes = Args.Optional(dSlopes, nameof(dSlopes));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters)) {
      AlibiNative.alibi_attention_backward(ctx, hq, hk, hv, hmask, p, hout, hlse, hdout, hdq, hdk,
                                           hdv, hdslopes);
    }
    GC.KeepAlive(this);
    GC.KeepAlive(q);
    GC.KeepAlive(k);
    GC.KeepAlive(v);
    GC.KeepAlive(mask);
    GC.KeepAlive(output);
    GC.KeepAlive(lse);
    GC.KeepAlive(dOutput);
    GC.KeepAlive(dq);
    GC.KeepAlive(dk);
    GC.KeepAlive(dv);
    GC.KeepAlive(dSlopes);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// Attention backward over f32 arrays, used in place as Forward's: q, k, v, mask and parameters
  /// the forward's, output and lse (required) its results, dOutput (like q) the gradient of the
  /// loss with respect to output. dq (like q), dk and dv (like k) and dSlopes ((headsQ), or
  /// (sequences, headsQ) with per-sequence slopes) are overwritten; a null one is not computed.
  /// Every length is checked against the mask's totals.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask, output, lse or dOutput is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit (nothing is written); the message names the argument.</exception>
  public void Backward(float[] q, float[] k, float[] v, int headsQ, int headsKv, int headDim,
                       Mask mask, AttentionParams parameters, float[] output, float[] lse,
                       float[] dOutput, float[] dq, float[] dk, float[] dv, float[] dSlopes) {
    Args.NotNull(q, nameof(q));
    Args.NotNull(k, nameof(k));
    Args.NotNull(v, nameof(v));
    Args.NotNull(output, nameof(output));
    Args.NotNull(lse, nameof(lse));
    Args.NotNull(dOutput, nameof(dOutput));
    Backward(new ReadOnlySpan<float>(q), k, v, headsQ, headsKv, headDim, mask, parameters, output,
             lse, dOutput, new Span<float>(dq), new Span<float>(dk), new Span<float>(dv),
             new Span<float>(dSlopes));
  }

  /// <summary>
  /// The f32 array form of Backward over spans, used in place; an empty gradient span is not
  /// computed.
  /// </summary>
  /// <exception cref="ArgumentNullException">mask is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit (nothing is written); the message names the argument.</exception>
  public unsafe void Backward(ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
                              int headsQ, int headsKv, int headDim, Mask mask,
                              AttentionParams parameters, ReadOnlySpan<float> output,
                              ReadOnlySpan<float> lse, ReadOnlySpan<float> dOutput, Span<float> dq,
                              Span<float> dk, Span<float> dv, Span<float> dSlopes) {
    IntPtr ctx = Handle, hmask = Args.Required(mask, nameof(mask));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (float* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(k),
           pv = &MemoryMarshal.GetReference(v), pout = &MemoryMarshal.GetReference(output),
           plse = &MemoryMarshal.GetReference(lse), pdout = &MemoryMarshal.GetReference(dOutput),
           pdq = &MemoryMarshal.GetReference(dq), pdk = &MemoryMarshal.GetReference(dk),
           pdv = &MemoryMarshal.GetReference(dv), pds = &MemoryMarshal.GetReference(dSlopes)) {
      AlibiNative.alibi_binding_backward_f32(ctx, headsQ, headsKv, headDim,
          new NativeArray(pq, q.Length), new NativeArray(pk, k.Length), new NativeArray(pv, v.Length),
          hmask, p, new NativeArray(pout, output.Length), new NativeArray(plse, lse.Length),
          new NativeArray(pdout, dOutput.Length), NativeArray.Optional(pdq, dq.Length),
          NativeArray.Optional(pdk, dk.Length), NativeArray.Optional(pdv, dv.Length),
          NativeArray.Optional(pds, dSlopes.Length));
    }
    GC.KeepAlive(this);
    GC.KeepAlive(mask);
    GC.KeepAlive(parameters);
  }

  /// <summary>
  /// As the f32 array form of Backward, for F16 or BF16 data given as their 16-bit patterns: q,
  /// k, v, output, dOutput and the gradients dq, dk, dv (in q's dtype; tensors also take F32
  /// gradients); lse and dSlopes are f32.
  /// </summary>
  /// <exception cref="ArgumentNullException">q, k, v, mask, output, lse or dOutput is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit (nothing is written); the message names the argument.</exception>
  public void Backward(DType dtype, ushort[] q, ushort[] k, ushort[] v, int headsQ, int headsKv,
                       int headDim, Mask mask, AttentionParams parameters, ushort[] output,
                       float[] lse, ushort[] dOutput, ushort[] dq, ushort[] dk, ushort[] dv,
                       float[] dSlopes) {
    Args.NotNull(q, nameof(q));
    Args.NotNull(k, nameof(k));
    Args.NotNull(v, nameof(v));
    Args.NotNull(output, nameof(output));
    Args.NotNull(lse, nameof(lse));
    Args.NotNull(dOutput, nameof(dOutput));
    Backward(dtype, new ReadOnlySpan<ushort>(q), k, v, headsQ, headsKv, headDim, mask, parameters,
             output, lse, dOutput, new Span<ushort>(dq), new Span<ushort>(dk),
             new Span<ushort>(dv), new Span<float>(dSlopes));
  }

  /// <summary>The F16/BF16 form of Backward over spans, used in place; an empty gradient span is not computed.</summary>
  /// <exception cref="ArgumentNullException">mask is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or the mask is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit (nothing is written); the message names the argument.</exception>
  public unsafe void Backward(DType dtype, ReadOnlySpan<ushort> q, ReadOnlySpan<ushort> k,
                              ReadOnlySpan<ushort> v, int headsQ, int headsKv, int headDim,
                              Mask mask, AttentionParams parameters, ReadOnlySpan<ushort> output,
                              ReadOnlySpan<float> lse, ReadOnlySpan<ushort> dOutput,
                              Span<ushort> dq, Span<ushort> dk, Span<ushort> dv,
                              Span<float> dSlopes) {
    IntPtr ctx = Handle, hmask = Args.Required(mask, nameof(mask));
    using (alibi_attention_params p = AttentionParams.ToNative(parameters))
    fixed (ushort* pq = &MemoryMarshal.GetReference(q), pk = &MemoryMarshal.GetReference(k),
           pv = &MemoryMarshal.GetReference(v), pout = &MemoryMarshal.GetReference(output),
           pdout = &MemoryMarshal.GetReference(dOutput), pdq = &MemoryMarshal.GetReference(dq),
           pdk = &MemoryMarshal.GetReference(dk), pdv = &MemoryMarshal.GetReference(dv))
    fixed (float* plse = &MemoryMarshal.GetReference(lse), pds = &MemoryMarshal.GetReference(dSlopes)) {
      AlibiNative.alibi_binding_backward_u16(ctx, dtype, headsQ, headsKv, headDim,
          new NativeArray(pq, q.Length), new NativeArray(pk, k.Length), new NativeArray(pv, v.Length),
          hmask, p, new NativeArray(pout, output.Length), new NativeArray(plse, lse.Length),
          new NativeArray(pdout, dOutput.Length), NativeArray.Optional(pdq, dq.Length),
          NativeArray.Optional(pdk, dk.Length), NativeArray.Optional(pdv, dv.Length),
          NativeArray.Optional(pds, dSlopes.Length));
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
  /// <exception cref="ArgumentNullException">outputA, lseA, outputB, lseB or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context or an argument is disposed.</exception>
  /// <exception cref="AlibiException">The library rejected the call; the message names the argument.</exception>
  public void Merge(Tensor outputA, Tensor lseA, Tensor outputB, Tensor lseB, Tensor output,
                    Tensor lse) {
    IntPtr ctx = Handle, hOutA = Args.Required(outputA, nameof(outputA));
    IntPtr hLseA = Args.Required(lseA, nameof(lseA)), hOutB = Args.Required(outputB, nameof(outputB));
    IntPtr hLseB = Args.Required(lseB, nameof(lseB)), hOut = Args.Required(output, nameof(output));
    AlibiNative.alibi_attention_merge(ctx, hOutA, hLseA, hOutB, hLseB, hOut, Args.Optional(lse, nameof(lse)));
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
  /// <exception cref="ArgumentNullException">outputA, lseA, outputB, lseB or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit; the message names the argument.</exception>
  public void Merge(float[] outputA, float[] lseA, float[] outputB, float[] lseB, int heads,
                    int headDim, float[] output, float[] lse) {
    Args.NotNull(outputA, nameof(outputA));
    Args.NotNull(lseA, nameof(lseA));
    Args.NotNull(outputB, nameof(outputB));
    Args.NotNull(lseB, nameof(lseB));
    Args.NotNull(output, nameof(output));
    Merge(new ReadOnlySpan<float>(outputA), lseA, outputB, lseB, heads, headDim,
          new Span<float>(output), new Span<float>(lse));
  }

  /// <summary>The f32 array form of Merge over spans, used in place; an empty lse means none.</summary>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">A length or size does not fit; the message names the argument.</exception>
  public unsafe void Merge(ReadOnlySpan<float> outputA, ReadOnlySpan<float> lseA,
                           ReadOnlySpan<float> outputB, ReadOnlySpan<float> lseB, int heads,
                           int headDim, Span<float> output, Span<float> lse) {
    IntPtr ctx = Handle;
    fixed (float* pOutA = &MemoryMarshal.GetReference(outputA), pLseA = &MemoryMarshal.GetReference(lseA),
           pOutB = &MemoryMarshal.GetReference(outputB), pLseB = &MemoryMarshal.GetReference(lseB),
           pOut = &MemoryMarshal.GetReference(output), pLse = &MemoryMarshal.GetReference(lse)) {
      AlibiNative.alibi_binding_merge_f32(ctx, heads, headDim,
          new NativeArray(pOutA, outputA.Length), new NativeArray(pLseA, lseA.Length),
          new NativeArray(pOutB, outputB.Length), new NativeArray(pLseB, lseB.Length),
          new NativeArray(pOut, output.Length), NativeArray.Optional(pLse, lse.Length));
    }
    GC.KeepAlive(this);
  }

  /// <summary>As the f32 array form, for F16 or BF16 outputs given as their 16-bit patterns (lse stays f32).</summary>
  /// <exception cref="ArgumentNullException">outputA, lseA, outputB, lseB or output is null.</exception>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit; the message names the argument.</exception>
  public void Merge(DType dtype, ushort[] outputA, float[] lseA, ushort[] outputB, float[] lseB,
                    int heads, int headDim, ushort[] output, float[] lse) {
    Args.NotNull(outputA, nameof(outputA));
    Args.NotNull(lseA, nameof(lseA));
    Args.NotNull(outputB, nameof(outputB));
    Args.NotNull(lseB, nameof(lseB));
    Args.NotNull(output, nameof(output));
    Merge(dtype, new ReadOnlySpan<ushort>(outputA), lseA, outputB, lseB, heads, headDim,
          new Span<ushort>(output), new Span<float>(lse));
  }

  /// <summary>The F16/BF16 form of Merge over spans, used in place; an empty lse means none.</summary>
  /// <exception cref="ObjectDisposedException">This context is disposed.</exception>
  /// <exception cref="AlibiException">dtype is not 16-bit, or a length does not fit; the message names the argument.</exception>
  public unsafe void Merge(DType dtype, ReadOnlySpan<ushort> outputA, ReadOnlySpan<float> lseA,
                           ReadOnlySpan<ushort> outputB, ReadOnlySpan<float> lseB, int heads,
                           int headDim, Span<ushort> output, Span<float> lse) {
    IntPtr ctx = Handle;
    fixed (ushort* pOutA = &MemoryMarshal.GetReference(outputA), pOutB = &MemoryMarshal.GetReference(outputB),
           pOut = &MemoryMarshal.GetReference(output))
    fixed (float* pLseA = &MemoryMarshal.GetReference(lseA), pLseB = &MemoryMarshal.GetReference(lseB),
           pLse = &MemoryMarshal.GetReference(lse)) {
      AlibiNative.alibi_binding_merge_u16(ctx, dtype, heads, headDim,
          new NativeArray(pOutA, outputA.Length), new NativeArray(pLseA, lseA.Length),
          new NativeArray(pOutB, outputB.Length), new NativeArray(pLseB, lseB.Length),
          new NativeArray(pOut, output.Length), NativeArray.Optional(pLse, lse.Length));
    }
    GC.KeepAlive(this);
  }
}

}
