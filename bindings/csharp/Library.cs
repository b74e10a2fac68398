using System;

namespace Alibi {

/// <summary>Library-wide calls: version and the ALiBi slope formula.</summary>
public static class Library {
  /// <summary>The version of the library actually loaded, e.g. "0.1.0".</summary>
  public static string Version => AlibiNative.alibi_version_string();

  /// <summary>slope[h] for heads 0..numHeads-1 (max_bias 8 gives the paper's slopes).</summary>
  public static float[] Slopes(int numHeads, float maxBias) {
    var slopes = new float[Math.Max(numHeads, 0)];
    AlibiNative.alibi_compute_slopes(numHeads, maxBias, slopes);
    return slopes;
  }
}

}
