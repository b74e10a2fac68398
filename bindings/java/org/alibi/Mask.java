package org.alibi;

import java.util.Objects;

/**
 * Which (query, key) cells are visible, plus the ALiBi position of every token. Host arrays are
 * copied; a mask may be used with any context of its device, from several threads. Close it
 * (try-with-resources) to release it at once; an unclosed mask is released by the garbage
 * collector.
 */
public final class Mask extends NativeHandle {
  private final long totalQ;
  private final long totalK;

  private Mask(long handle, long totalQ, long totalK) {
    super(handle, AlibiNative::alibi_mask_destroy, null);
    this.totalQ = totalQ;
    this.totalK = totalK;
  }

  /**
   * One slice per sequence b: queries [cuSeqlensQ[b], cuSeqlensQ[b+1]) and keys
   * [cuSeqlensK[b], cuSeqlensK[b+1]), causal (bottom-right aligned) or full; positions
   * bottom-right aligned per sequence.
   *
   * @param ctx the context whose device holds the mask
   * @param cuSeqlensQ batch + 1 cumulative query counts, from 0
   * @param cuSeqlensK batch + 1 cumulative key counts, from 0
   * @param causal causal, else full
   * @return the mask
   */
  public static Mask varlen(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK, boolean causal) {
    long context = handleOf(ctx, "ctx");
    int batch = batchOf("Mask.varlen", cuSeqlensQ, cuSeqlensK);
    long[] out = new long[1];
    try {
      AlibiNative.alibi_mask_create_varlen(context, batch, cuSeqlensQ, cuSeqlensK, causal ? 1 : 0,
          out);
    } finally {
      keepAlive(ctx);
    }
    return new Mask(out[0], cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /**
   * Explicit slices over one packed stream: slice s covers queries [qRanges[2s], qRanges[2s+1])
   * and keys [kRanges[2s], kRanges[2s+1]) with types[s]; positions are the token indices.
   *
   * @param ctx the context whose device holds the mask
   * @param qRanges 2 query bounds per slice
   * @param kRanges 2 key bounds per slice
   * @param types the rule of each slice
   * @param totalQ the queries of the stream
   * @param totalK the keys of the stream
   * @return the mask
   */
  public static Mask ranges(Context ctx, int[] qRanges, int[] kRanges, MaskType[] types,
                            long totalQ, long totalK) {
    long context = handleOf(ctx, "ctx");
    Objects.requireNonNull(qRanges, "qRanges");
    Objects.requireNonNull(kRanges, "kRanges");
    int[] typeCodes = typeCodes(types);
    if (qRanges.length != 2 * types.length || kRanges.length != 2 * types.length) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Mask.ranges: " + types.length
          + " types need 2 * " + types.length + " query and key bounds, got " + qRanges.length
          + " and " + kRanges.length);
    }
    long[] out = new long[1];
    try {
      AlibiNative.alibi_mask_create_ranges(context, types.length, qRanges, kRanges, typeCodes,
          totalQ, totalK, out);
    } finally {
      keepAlive(ctx);
    }
    return new Mask(out[0], totalQ, totalK);
  }

  /**
   * A sliding window per sequence, positions as for varlen.
   *
   * @param ctx the context whose device holds the mask
   * @param cuSeqlensQ batch + 1 cumulative query counts, from 0
   * @param cuSeqlensK batch + 1 cumulative key counts, from 0
   * @param windowLeft keys visible before the diagonal, -1 for unbounded
   * @param windowRight keys visible after the diagonal, -1 for unbounded
   * @return the mask
   */
  public static Mask slidingWindow(Context ctx, int[] cuSeqlensQ, int[] cuSeqlensK,
                                   int windowLeft, int windowRight) {
    long context = handleOf(ctx, "ctx");
    int batch = batchOf("Mask.slidingWindow", cuSeqlensQ, cuSeqlensK);
    long[] out = new long[1];
    try {
      AlibiNative.alibi_mask_create_sliding_window(context, batch, cuSeqlensQ, cuSeqlensK,
          windowLeft, windowRight, out);
    } finally {
      keepAlive(ctx);
    }
    return new Mask(out[0], cuSeqlensQ[batch], cuSeqlensK[batch]);
  }

  /**
   * Replaces the positions.
   *
   * @param qPositions totalQ query positions, or null to keep them
   * @param kPositions totalK key positions, or null to keep them
   * @return this mask
   */
  public Mask setPositions(int[] qPositions, int[] kPositions) {
    requireLength("qPositions", qPositions, totalQ);
    requireLength("kPositions", kPositions, totalK);
    try {
      AlibiNative.alibi_mask_set_positions(handle(), qPositions, kPositions);
    } finally {
      keepAlive(this);
    }
    return this;
  }

  /**
   * The slices.
   *
   * @return how many (query range, key range, rule) slices the mask holds
   */
  public int numSlices() {
    int[] out = new int[1];
    try {
      AlibiNative.alibi_mask_get_num_slices(handle(), out);
    } finally {
      keepAlive(this);
    }
    return out[0];
  }

  /**
   * The queries the mask covers.
   *
   * @return total_q
   */
  public long totalQ() {
    return totalQ;
  }

  /**
   * The keys the mask covers.
   *
   * @return total_k
   */
  public long totalK() {
    return totalK;
  }

  private static int batchOf(String where, int[] cuSeqlensQ, int[] cuSeqlensK) {
    Objects.requireNonNull(cuSeqlensQ, "cuSeqlensQ");
    Objects.requireNonNull(cuSeqlensK, "cuSeqlensK");
    if (cuSeqlensQ.length == 0 || cuSeqlensQ.length != cuSeqlensK.length) {
      throw new AlibiException(Status.SHAPE_MISMATCH, where + ": cuSeqlensQ (" + cuSeqlensQ.length
          + " entries) and cuSeqlensK (" + cuSeqlensK.length
          + ") need the same length batch + 1 >= 1");
    }
    return cuSeqlensQ.length - 1;
  }

  private static int[] typeCodes(MaskType[] types) {
    Objects.requireNonNull(types, "types");
    int[] codes = new int[types.length];
    for (int s = 0; s < types.length; ++s) {
      if (types[s] == null) throw new NullPointerException("types[" + s + "]");
      codes[s] = types[s].swigValue();
    }
    return codes;
  }

  private static void requireLength(String name, int[] positions, long expected) {
    if (positions != null && positions.length != expected) {
      throw new AlibiException(Status.SHAPE_MISMATCH, "Mask.setPositions: " + name + " has "
          + positions.length + " entries, expected " + expected);
    }
  }
}
