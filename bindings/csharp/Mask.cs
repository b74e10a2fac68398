using System;

namespace Alibi {

/// <summary>
/// Which (query, key) cells are visible, plus the ALiBi position of every token. Host arrays are
/// copied; a mask may be used with any context of its device, from several threads. Dispose it
/// when done (a mask never disposed is released by the runtime once unreachable); Dispose is
/// idempotent.
/// </summary>
public sealed class Mask : IDisposable, IHandleOwner {
  private readonly MaskHandle handle;

  /// <summary>The number of query tokens (rows) the mask covers.</summary>
  public long TotalQ { get; }
  /// <summary>The number of key tokens (columns) the mask covers.</summary>
  public long TotalK { get; }

  private Mask(MaskHandle handle, long totalQ, long totalK) {
    this.handle = handle;
    TotalQ = totalQ;
    TotalK = totalK;
  }

  AlibiHandle IHandleOwner.NativeHandle => handle;

  internal IntPtr Handle => handle.Get(null);

  /// <summary>Releases the mask; later calls on it, or passing it, throw ObjectDisposedException.</summary>
  public void Dispose() => handle.Dispose();

  /// <summary>
  /// One slice per sequence b: queries [cuQ[b], cuQ[b+1]) and keys [cuK[b], cuK[b+1]), causal
  /// (bottom-right aligned) or full; positions bottom-right aligned per sequence.
  /// </summary>
  /// <exception cref="ArgumentNullException">ctx, cuSeqlensQ or cuSeqlensK is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The offsets are invalid; the message names the entry.</exception>
  public static Mask Varlen(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, bool causal) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    int batch = BatchOf("Mask.Varlen", cuSeqlensQ, cuSeqlensK);
    AlibiNative.alibi_mask_create_varlen(hctx, batch, cuSeqlensQ, cuSeqlensK, causal ? 1 : 0,
                                         out MaskHandle m);
    GC.KeepAlive(ctx);
    return new Mask(m, cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /// <summary>
  /// Explicit slices over one packed stream: slice s covers queries [qRanges[2s], qRanges[2s+1])
  /// and keys [kRanges[2s], kRanges[2s+1]) with types[s]; positions are the token indices.
  /// </summary>
  /// <exception cref="ArgumentNullException">ctx, qRanges, kRanges or types is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The ranges are invalid; the message names the entry.</exception>
  public static Mask Ranges(Context ctx, int[] qRanges, int[] kRanges, MaskType[] types,
                            long totalQ, long totalK) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    Args.NotNull(qRanges, nameof(qRanges));
    Args.NotNull(kRanges, nameof(kRanges));
    Args.NotNull(types, nameof(types));
    if (qRanges.Length != 2 * types.Length || kRanges.Length != 2 * types.Length) {
      throw new AlibiException(Status.ShapeMismatch,
          $"Mask.Ranges: {types.Length} types need 2 * {types.Length} query and key bounds, " +
          $"got {qRanges.Length} and {kRanges.Length}");
    }
    int[] typeCodes = Array.ConvertAll(types, t => (int)t);
    AlibiNative.alibi_mask_create_ranges(hctx, types.Length, qRanges, kRanges, typeCodes, totalQ,
                                         totalK, out MaskHandle m);
    GC.KeepAlive(ctx);
    return new Mask(m, totalQ, totalK);
  }

  /// <summary>A sliding window per sequence (left, right; -1 = unbounded), positions as for Varlen.</summary>
  /// <exception cref="ArgumentNullException">ctx, cuSeqlensQ or cuSeqlensK is null.</exception>
  /// <exception cref="ObjectDisposedException">ctx is disposed.</exception>
  /// <exception cref="AlibiException">The offsets or the window are invalid.</exception>
  public static Mask SlidingWindow(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, int windowLeft,
                                   int windowRight) {
    IntPtr hctx = Args.Required(ctx, nameof(ctx));
    int batch = BatchOf("Mask.SlidingWindow", cuSeqlensQ, cuSeqlensK);
    AlibiNative.alibi_mask_create_sliding_window(hctx, batch, cuSeqlensQ, cuSeqlensK, windowLeft,
                                                 windowRight, out MaskHandle m);
    GC.KeepAlive(ctx);
    return new Mask(m, cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /// <summary>Replaces the positions: TotalQ query and TotalK key positions; either may be null to keep.</summary>
  /// <exception cref="ObjectDisposedException">The mask is disposed.</exception>
  /// <exception cref="AlibiException">A length is not TotalQ or TotalK (Status.ShapeMismatch).</exception>
  public Mask SetPositions(int[] qPositions, int[] kPositions) {
    RequireLength("qPositions", qPositions, TotalQ);
    RequireLength("kPositions", kPositions, TotalK);
    AlibiNative.alibi_mask_set_positions(Handle, qPositions, kPositions);
    GC.KeepAlive(this);
    return this;
  }

  /// <summary>The number of slices.</summary>
  public int NumSlices {
    get {
      AlibiNative.alibi_mask_get_num_slices(Handle, out int n);
      GC.KeepAlive(this);
      return n;
    }
  }

  private static int BatchOf(string where, int[] cuSeqlensQ, int[] cuSeqlensK) {
    Args.NotNull(cuSeqlensQ, nameof(cuSeqlensQ));
    Args.NotNull(cuSeqlensK, nameof(cuSeqlensK));
    if (cuSeqlensQ.Length == 0 || cuSeqlensQ.Length != cuSeqlensK.Length) {
      throw new AlibiException(Status.ShapeMismatch,
          where + ": cuSeqlensQ and cuSeqlensK need the same length batch + 1 >= 1");
    }
    return cuSeqlensQ.Length - 1;
  }

  private static void RequireLength(string name, int[] positions, long expected) {
    if (positions != null && positions.Length != expected) {
      throw new AlibiException(Status.ShapeMismatch,
          $"Mask.SetPositions: {name} has {positions.Length} entries, expected {expected}");
    }
  }
}

}
