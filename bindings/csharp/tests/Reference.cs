using System;

namespace Alibi.Tests {

/// <summary>Attention with ALiBi in plain double loops: the model the binding's results are checked against.</summary>
internal sealed class Reference {
  public readonly double[] Out;
  public readonly double[] Lse;

  private Reference(double[] output, double[] lse) {
    Out = output;
    Lse = lse;
  }

  /// <summary>The slope formula with max_bias 8: c = 2^floor(log2 n), m0 = 2^(-8/c), m1 = 2^(-8/(2c)).</summary>
  public static double Slope(int h, int n) {
    int c = 1;
    while (c * 2 <= n) c *= 2;
    return h < c ? Math.Pow(Math.Pow(2, -8.0 / c), h + 1)
                 : Math.Pow(Math.Pow(2, -8.0 / (2 * c)), 2 * (h - c) + 1);
  }

  /// <summary>Causal varlen: bottom-right aligned per sequence, positions likewise.</summary>
  public static Reference VarlenCausal(float[] q, float[] k, float[] v, int[] cuQ, int[] cuK,
                                       int hq, int hkv, int d) {
    int tq = cuQ[cuQ.Length - 1], tk = cuK[cuK.Length - 1];
    var visible = new bool[tq, tk];
    int[] qpos = new int[tq], kpos = new int[tk];
    for (int b = 0; b + 1 < cuQ.Length; ++b) {
      int lq = cuQ[b + 1] - cuQ[b], lk = cuK[b + 1] - cuK[b];
      for (int r = 0; r < lq; ++r) {
        qpos[cuQ[b] + r] = r + lk - lq;
        for (int c = 0; c < lk; ++c) visible[cuQ[b] + r, cuK[b] + c] = c <= r + lk - lq;
      }
      for (int c = 0; c < lk; ++c) kpos[cuK[b] + c] = c;
    }
    return Attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos);
  }

  /// <summary>Explicit slices [qs,qe) x [ks,ke) of MaskType; positions are token indices.</summary>
  public static Reference Ranges(float[] q, float[] k, float[] v, int[] qRanges, int[] kRanges,
                                 MaskType[] types, int tq, int tk, int hq, int hkv, int d) {
    var visible = new bool[tq, tk];
    for (int s = 0; s < types.Length; ++s) {
      int qs = qRanges[2 * s], sq = qRanges[2 * s + 1] - qs;
      int ks = kRanges[2 * s], sk = kRanges[2 * s + 1] - ks;
      bool causal = types[s] == MaskType.Causal || types[s] == MaskType.BiCausal;
      bool inverse = types[s] == MaskType.InverseCausal || types[s] == MaskType.BiCausal;
      for (int r = 0; r < sq; ++r)
        for (int c = 0; c < sk; ++c)
          if ((!causal || c <= r + sk - sq) && (!inverse || c >= r)) visible[qs + r, ks + c] = true;
    }
    int[] qpos = new int[tq], kpos = new int[tk];
    for (int i = 0; i < tq; ++i) qpos[i] = i;
    for (int j = 0; j < tk; ++j) kpos[j] = j;
    return Attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos);
  }

  private static Reference Attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, bool[,] visible, int[] qpos, int[] kpos) {
    var output = new double[tq * hq * d];
    var lse = new double[hq * tq];
    double scale = 1 / Math.Sqrt(d);
    var score = new double[tk];
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      double slope = Slope(h, hq);
      for (int i = 0; i < tq; ++i) {
        double max = double.NegativeInfinity;
        for (int j = 0; j < tk; ++j) {
          if (!visible[i, j]) {
            score[j] = double.NegativeInfinity;
            continue;
          }
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += q[(i * hq + h) * d + e] * (double)k[(j * hkv + kh) * d + e];
          score[j] = scale * dot - slope * Math.Abs(qpos[i] - kpos[j]);
          max = Math.Max(max, score[j]);
        }
        if (double.IsNegativeInfinity(max)) {
          lse[h * tq + i] = double.NegativeInfinity;
          continue;
        }
        double sum = 0;
        for (int j = 0; j < tk; ++j) sum += Math.Exp(score[j] - max);
        lse[h * tq + i] = max + Math.Log(sum);
        for (int j = 0; j < tk; ++j) {
          double p = Math.Exp(score[j] - max) / sum;
          if (p == 0) continue;
          for (int e = 0; e < d; ++e) output[(i * hq + h) * d + e] += p * v[(j * hkv + kh) * d + e];
        }
      }
    }
    return new Reference(output, lse);
  }
}

}
