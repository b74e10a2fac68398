package org.alibi;

/** Library-wide calls: version and the ALiBi slope formula. */
public final class Alibi {
  private Alibi() {}

  /**
   * The version of the native library actually loaded.
   *
   * @return e.g. "0.1.0"
   */
  public static String version() {
    return AlibiNative.alibi_version_string();
  }

  /**
   * The formula's slopes.
   *
   * @param numHeads the heads
   * @param maxBias the formula's parameter (8 gives the paper's slopes)
   * @return slope[h] for heads 0..numHeads-1
   */
  public static float[] slopes(int numHeads, float maxBias) {
    float[] out = new float[Math.max(numHeads, 0)];
    AlibiNative.alibi_compute_slopes(numHeads, maxBias, out);
    return out;
  }
}
