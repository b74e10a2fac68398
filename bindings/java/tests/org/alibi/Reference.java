package org.alibi;

/** Attention with ALiBi in plain double loops: the model the binding's results are checked against. */
final class Reference {
  final double[] out;
  final double[] lse;

  private Reference(double[] out, double[] lse) {
    this.out = out;
    this.lse = lse;
  }

  /** The slope formula with max_bias 8: c = 2^floor(log2 n), m0 = 2^(-8/c), m1 = 2^(-8/(2c)). */
  static double slope(int h, int n) {
    int c = 1;
    while (c * 2 <= n) c *= 2;
    return h < c ? Math.pow(Math.pow(2, -8.0 / c), h + 1)
                 : Math.pow(Math.pow(2, -8.0 / (2 * c)), 2 * (h - c) + 1);
  }

  /** Causal varlen: bottom-right aligned per sequence, positions likewise. */
  static Reference varlenCausal(float[] q, float[] k, float[] v, int[] cuQ, int[] cuK, int hq,
                                int hkv, int d) {
    int tq = cuQ[cuQ.length - 1], tk = cuK[cuK.length - 1];
    boolean[][] visible = new boolean[tq][tk];
    int[] qpos = new int[tq], kpos = new int[tk];
    for (int b = 0; b + 1 < cuQ.length; ++b) {
      int lq = cuQ[b + 1] - cuQ[b], lk = cuK[b + 1] - cuK[b];
      for (int r = 0; r < lq; ++r) {
        qpos[cuQ[b] + r] = r + lk - lq;
        for (int c = 0; c < lk; ++c) visible[cuQ[b] + r][cuK[b] + c] = c <= r + lk - lq;
      }
      for (int c = 0; c < lk; ++c) kpos[cuK[b] + c] = c;
    }
    return attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos);
  }

  /** Explicit slices [qs,qe) x [ks,ke) of MaskType codes; positions are token indices. */
  static Reference ranges(float[] q, float[] k, float[] v, int[] qRanges, int[] kRanges,
                          MaskType[] types, int tq, int tk, int hq, int hkv, int d) {
    boolean[][] visible = new boolean[tq][tk];
    for (int s = 0; s < types.length; ++s) {
      int qs = qRanges[2 * s], sq = qRanges[2 * s + 1] - qs;
      int ks = kRanges[2 * s], sk = kRanges[2 * s + 1] - ks;
      boolean causal = types[s] == MaskType.CAUSAL || types[s] == MaskType.BI_CAUSAL;
      boolean inverse = types[s] == MaskType.INV_CAUSAL || types[s] == MaskType.BI_CAUSAL;
      for (int r = 0; r < sq; ++r) {
        for (int c = 0; c < sk; ++c) {
          if ((!causal || c <= r + sk - sq) && (!inverse || c >= r)) visible[qs + r][ks + c] = true;
        }
      }
    }
    int[] qpos = new int[tq], kpos = new int[tk];
    for (int i = 0; i < tq; ++i) qpos[i] = i;
    for (int j = 0; j < tk; ++j) kpos[j] = j;
    return attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos);
  }

  private static Reference attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, boolean[][] visible, int[] qpos, int[] kpos) {
    double[] out = new double[tq * hq * d];
    double[] lse = new double[hq * tq];
    double scale = 1 / Math.sqrt(d);
    double[] score = new double[tk];
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      double slope = slope(h, hq);
      for (int i = 0; i < tq; ++i) {
        double max = Double.NEGATIVE_INFINITY;
        for (int j = 0; j < tk; ++j) {
          if (!visible[i][j]) {
            score[j] = Double.NEGATIVE_INFINITY;
            continue;
          }
          double dot = 0;
          for (int e = 0; e < d; ++e) dot += q[(i * hq + h) * d + e] * (double) k[(j * hkv + kh) * d + e];
          score[j] = scale * dot - slope * Math.abs(qpos[i] - kpos[j]);
          max = Math.max(max, score[j]);
        }
        if (max == Double.NEGATIVE_INFINITY) {
          lse[h * tq + i] = Double.NEGATIVE_INFINITY;
          continue;
        }
        double sum = 0;
        for (int j = 0; j < tk; ++j) sum += Math.exp(score[j] - max);
        lse[h * tq + i] = max + Math.log(sum);
        for (int j = 0; j < tk; ++j) {
          double p = Math.exp(score[j] - max) / sum;
          if (p == 0) continue;
          for (int e = 0; e < d; ++e) out[(i * hq + h) * d + e] += p * v[(j * hkv + kh) * d + e];
        }
      }
    }
    return new Reference(out, lse);
  }
}
