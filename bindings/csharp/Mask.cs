using System;

namespace Alibi {

/// <summary>
/// Which (query, key) cells are visible, plus the ALiBi position of every token. Host arrays are
/// copied; a mask may be used with any context of its device, from several threads.
/// </summary>
public sealed class Mask : NativeHandle {
  public long TotalQ { get; }
  public long TotalK { get; }

  private Mask(IntPtr handle, long totalQ, long totalK) : base(handle) {
    TotalQ = totalQ;
    TotalK = totalK;
  }

  protected override void Destroy(IntPtr handle) => AlibiNative.alibi_mask_destroy(handle);

  /// <summary>
  /// One slice per sequence b: queries [cuQ[b], cuQ[b+1]) and keys [cuK[b], cuK[b+1]), causal
  /// (bottom-right aligned) or full; positions bottom-right aligned per sequence.
  /// </summary>
  public static Mask Varlen(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, bool causal) {
    int batch = BatchOf("Mask.Varlen", cuSeqlensQ, cuSeqlensK);
    AlibiNative.alibi_mask_create_varlen(HandleOf(ctx), batch, cuSeqlensQ, cuSeqlensK,
                                         causal ? 1 : 0, out IntPtr m);
    GC.KeepAlive(ctx);
    return new Mask(m, cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /// <summary>
  /// Explicit slices over one packed stream: slice s covers queries [qRanges[2s], qRanges[2s+1])
  /// and keys [kRanges[2s], kRanges[2s+1]) with types[s]; positions are the token indices.
  /// </summary>
  public static Mask Ranges(Context ctx, int[] qRanges, int[] kRanges, MaskType[] types,
                            long totalQ, long totalK) {
    if (qRanges.Length != 2 * types.Length || kRanges.Length != 2 * types.Length) {
      throw new AlibiException(Status.ShapeMismatch,
          $"Mask.Ranges: {types.Length} types need 2 * {types.Length} query and key bounds, " +
          $"got {qRanges.Length} and {kRanges.Length}");
    }
    int[] typeCodes = Array.ConvertAll(types, t => (int)t);
    AlibiNative.alibi_mask_create_ranges(HandleOf(ctx), types.Length, qRanges, kRanges, typeCodes,
                                         totalQ, totalK, out IntPtr m);
    GC.KeepAlive(ctx);
    return new Mask(m, totalQ, totalK);
  }

  /// <summary>A sliding window per sequence (left, right; -1 = unbounded), positions as for Varlen.</summary>
  public static Mask SlidingWindow(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, int windowLeft,
                                   int windowRight) {
    int batch = BatchOf("Mask.SlidingWindow", cuSeqlensQ, cuSeqlensK);
    AlibiNative.alibi_mask_create_sliding_window(HandleOf(ctx), batch, cuSeqlensQ, cuSeqlensK,
                                                 windowLeft, windowRight, out IntPtr m);
    GC.KeepAlive(ctx);
    return new Mask(m, cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /// <summary>Replaces the positions: TotalQ query and TotalK key positions; either may be null to keep.</summary>
  public Mask SetPositions(int[] qPositions, int[] kPositions) {
    RequireLength("qPositions", qPositions, TotalQ);
    RequireLength("kPositions", kPositions, TotalK);
    AlibiNative.alibi_mask_set_positions(Handle, qPositions, kPositions);
    GC.KeepAlive(this);
    return this;
  }

  public int NumSlices {
    get {
      AlibiNative.alibi_mask_get_num_slices(Handle, out int n);
      GC.KeepAlive(this);
      return n;
    }
  }

  private static int BatchOf(string where, int[] cuSeqlensQ, int[] cuSeqlensK) {
    if (cuSeqlensQ == null || cuSeqlensK == null || cuSeqlensQ.Length == 0 ||
        cuSeqlensQ.Length != cuSeqlensK.Length) {
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
