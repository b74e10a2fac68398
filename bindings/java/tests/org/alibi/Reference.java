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
    Varlen mask = new Varlen(cuQ, cuK);
    return attention(q, k, v, mask.tq, mask.tk, hq, hkv, d, mask.visible, mask.qpos, mask.kpos);
  }

  /** The cells and positions of a causal varlen mask, and the sequence of each query. */
  private static final class Varlen {
    final int tq, tk;
    final boolean[][] visible;
    final int[] qpos, kpos, sequence;

    Varlen(int[] cuQ, int[] cuK) {
      tq = cuQ[cuQ.length - 1];
      tk = cuK[cuK.length - 1];
      visible = new boolean[tq][tk];
      qpos = new int[tq];
      kpos = new int[tk];
      sequence = new int[tq];
      for (int b = 0; b + 1 < cuQ.length; ++b) {
        int lq = cuQ[b + 1] - cuQ[b], lk = cuK[b + 1] - cuK[b];
        for (int r = 0; r < lq; ++r) {
          qpos[cuQ[b] + r] = r + lk - lq;
          sequence[cuQ[b] + r] = b;
          for (int c = 0; c < lk; ++c) visible[cuQ[b] + r][cuK[b] + c] = c <= r + lk - lq;
        }
        for (int c = 0; c < lk; ++c) kpos[cuK[b] + c] = c;
      }
    }
  }

  /** The gradients of a backward call, in double. */
  static final class Gradients {
    final double[] dq, dk, dv;
    /** (sequences, hq): the gradient of each sequence's slopes (sum over sequences for shared ones). */
    final double[] dslopes;

    Gradients(int tq, int tk, int hq, int hkv, int d, int sequences) {
      dq = new double[tq * hq * d];
      dk = new double[tk * hkv * d];
      dv = new double[tk * hkv * d];
      dslopes = new double[sequences * hq];
    }

    /** dslopes summed over sequences: the gradient of slopes shared by all sequences. */
    double[] sharedDslopes(int hq) {
      double[] shared = new double[hq];
      for (int i = 0; i < dslopes.length; ++i) shared[i % hq] += dslopes[i];
      return shared;
    }
  }

  /**
   * The gradients of causal varlen attention with slopes[b * hq + h] for sequence b, head h,
   * given dout: P = exp(s - lse) recomputed from the scores and this class's forward (out, lse in
   * double), Di = dout_i . out_i, dS = P (dout_i . v_j - Di); dv = P^T dout, dq = scale dS k,
   * dk = scale dS^T q (GQA: kv heads sum over their query heads), dslopes = -sum dS |qpos - kpos|.
   */
  static Gradients varlenCausalBackward(float[] q, float[] k, float[] v, float[] dout, int[] cuQ,
                                        int[] cuK, int hq, int hkv, int d, double[] slopes) {
    Varlen mask = new Varlen(cuQ, cuK);
    Reference forward = attention(q, k, v, mask.tq, mask.tk, hq, hkv, d, mask.visible, mask.qpos,
                                  mask.kpos, mask.sequence, slopes);
    Gradients g = new Gradients(mask.tq, mask.tk, hq, hkv, d, cuQ.length - 1);
    double scale = 1 / Math.sqrt(d);
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      for (int i = 0; i < mask.tq; ++i) {
        double lse = forward.lse[h * mask.tq + i];
        if (lse == Double.NEGATIVE_INFINITY) continue;
        int b = mask.sequence[i], qi = (i * hq + h) * d;
        double di = 0;
        for (int e = 0; e < d; ++e) di += dout[qi + e] * forward.out[qi + e];
        for (int j = 0; j < mask.tk; ++j) {
          if (!mask.visible[i][j]) continue;
          int kj = (j * hkv + kh) * d;
          double dot = 0, dp = 0, distance = Math.abs(mask.qpos[i] - mask.kpos[j]);
          for (int e = 0; e < d; ++e) {
            dot += q[qi + e] * (double) k[kj + e];
            dp += dout[qi + e] * (double) v[kj + e];
          }
          double p = Math.exp(scale * dot - slopes[b * hq + h] * distance - lse);
          double ds = p * (dp - di);
          for (int e = 0; e < d; ++e) {
            g.dv[kj + e] += p * dout[qi + e];
            g.dq[qi + e] += scale * ds * k[kj + e];
            g.dk[kj + e] += scale * ds * q[qi + e];
          }
          g.dslopes[b * hq + h] -= ds * distance;
        }
      }
    }
    return g;
  }

  /** The formula's slopes of hq heads for each of `sequences` sequences: (sequences, hq). */
  static double[] formulaSlopes(int hq, int sequences) {
    double[] slopes = new double[sequences * hq];
    for (int i = 0; i < slopes.length; ++i) slopes[i] = slope(i % hq, hq);
    return slopes;
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

  /** Attention with the formula's slopes. */
  private static Reference attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, boolean[][] visible, int[] qpos, int[] kpos) {
    return attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos, new int[tq],
                     formulaSlopes(hq, 1));
  }

  /** Attention with slopes[sequence[i] * hq + h] for query i, head h. */
  private static Reference attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, boolean[][] visible, int[] qpos, int[] kpos,
                                     int[] sequence, double[] slopes) {
    double[] out = new double[tq * hq * d];
    double[] lse = new double[hq * tq];
    double scale = 1 / Math.sqrt(d);
    double[] score = new double[tk];
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      for (int i = 0; i < tq; ++i) {
        double slope = slopes[sequence[i] * hq + h];
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
