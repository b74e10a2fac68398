package org.alibi;

/**
 * Which (query, key) cells are visible, plus the ALiBi position of every token. Host arrays are
 * copied; a mask may be used with any context of its device, from several threads.
 */
public final class Mask extends NativeHandle {
  private final long totalQ;
  private final long totalK;

  private Mask(long handle, long totalQ, long totalK) {
    super(handle);
    this.totalQ = totalQ;
    this.totalK = totalK;
  }

  @Override
  void destroy(long handle) {
    AlibiNative.alibi_mask_destroy(handle);
  }

  /**
   * One slice per sequence b: queries [cuQ[b], cuQ[b+1]) and keys [cuK[b], cuK[b+1]), causal
   * (bottom-right aligned) or full; positions bottom-right aligned per sequence.
   */
  public static Mask varlen(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, boolean causal) {
    int batch = batchOf("Mask.varlen", cuSeqlensQ, cuSeqlensK);
    long[] out = new long[1];
    AlibiNative.alibi_mask_create_varlen(NativeHandle.handleOf(ctx), batch,
        cuSeqlensQ, cuSeqlensK, causal ? 1 : 0, out);
    return new Mask(out[0], cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /**
   * Explicit slices over one packed stream: slice s covers queries
   * [qRanges[2s], qRanges[2s+1]) and keys [kRanges[2s], kRanges[2s+1]) with types[s];
   * positions are the token indices.
   */
  public static Mask ranges(Context ctx, int[] qRanges, int[] kRanges, MaskType[] types,
                            long totalQ, long totalK) {
    if (qRanges.length != 2 * types.length || kRanges.length != 2 * types.length) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Mask.ranges: " + types.length
          + " types need 2 * " + types.length + " query and key bounds, got " + qRanges.length
          + " and " + kRanges.length);
    }
    int[] typeCodes = new int[types.length];
    for (int s = 0; s < types.length; ++s) typeCodes[s] = types[s].swigValue();
    long[] out = new long[1];
    AlibiNative.alibi_mask_create_ranges(NativeHandle.handleOf(ctx),
        types.length, qRanges, kRanges, typeCodes, totalQ, totalK, out);
    return new Mask(out[0], totalQ, totalK);
  }

  /** A sliding window per sequence (left, right; -1 = unbounded), positions as for varlen. */
  public static Mask slidingWindow(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK,
                                   int windowLeft, int windowRight) {
    int batch = batchOf("Mask.slidingWindow", cuSeqlensQ, cuSeqlensK);
    long[] out = new long[1];
    AlibiNative.alibi_mask_create_sliding_window(NativeHandle.handleOf(ctx),
        batch, cuSeqlensQ, cuSeqlensK, windowLeft, windowRight, out);
    return new Mask(out[0], cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /** Replaces the positions: totalQ query and totalK key positions; either may be null to keep. */
  public Mask setPositions(int[] qPositions, int[] kPositions) {
    requireLength("qPositions", qPositions, totalQ);
    requireLength("kPositions", kPositions, totalK);
    AlibiNative.alibi_mask_set_positions(handle(), qPositions, kPositions);
    return this;
  }

  public int numSlices() {
    int[] out = new int[1];
    AlibiNative.alibi_mask_get_num_slices(handle(), out);
    return out[0];
  }

  public long totalQ() {
    return totalQ;
  }

  public long totalK() {
    return totalK;
  }

  private static int batchOf(String where, int[] cuSeqlensQ, int[] cuSeqlensK) {
    if (cuSeqlensQ == null || cuSeqlensK == null || cuSeqlensQ.length == 0
        || cuSeqlensQ.length != cuSeqlensK.length) {
      throw new AlibiException(Status.SHAPE_MISMATCH, where
          + ": cuSeqlensQ and cuSeqlensK need the same length batch + 1 >= 1");
    }
    return cuSeqlensQ.length - 1;
  }

  private static void requireLength(String name, int[] positions, long expected) {
    if (positions != null && positions.length != expected) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Mask.setPositions: " + name + " has "
          + positions.length + " entries, expected " + expected);
    }
  }
}
