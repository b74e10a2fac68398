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
    var mask = new Varlen(cuQ, cuK);
    return Attention(q, k, v, mask.Tq, mask.Tk, hq, hkv, d, mask.Visible, mask.QPos, mask.KPos);
  }

  /// <summary>The cells and positions of a causal varlen mask, and the sequence of each query.</summary>
  private sealed class Varlen {
    public readonly int Tq, Tk;
    public readonly bool[,] Visible;
    public readonly int[] QPos, KPos, Sequence;

    public Varlen(int[] cuQ, int[] cuK) {
      Tq = cuQ[cuQ.Length - 1];
      Tk = cuK[cuK.Length - 1];
      Visible = new bool[Tq, Tk];
      QPos = new int[Tq];
      KPos = new int[Tk];
      Sequence = new int[Tq];
      for (int b = 0; b + 1 < cuQ.Length; ++b) {
        int lq = cuQ[b + 1] - cuQ[b], lk = cuK[b + 1] - cuK[b];
        for (int r = 0; r < lq; ++r) {
          QPos[cuQ[b] + r] = r + lk - lq;
          Sequence[cuQ[b] + r] = b;
          for (int c = 0; c < lk; ++c) Visible[cuQ[b] + r, cuK[b] + c] = c <= r + lk - lq;
        }
        for (int c = 0; c < lk; ++c) KPos[cuK[b] + c] = c;
      }
    }
  }

  /// <summary>The gradients of a backward call, in double.</summary>
  public sealed class Gradients {
    public readonly double[] Dq, Dk, Dv;
    /// <summary>(sequences, hq): the gradient of each sequence's slopes.</summary>
    public readonly double[] DSlopes;

    public Gradients(int tq, int tk, int hq, int hkv, int d, int sequences) {
      Dq = new double[tq * hq * d];
      Dk = new double[tk * hkv * d];
      Dv = new double[tk * hkv * d];
      DSlopes = new double[sequences * hq];
    }

    /// <summary>DSlopes summed over sequences: the gradient of slopes all sequences share.</summary>
    public double[] SharedDSlopes(int hq) {
      var shared = new double[hq];
      for (int i = 0; i < DSlopes.Length; ++i) shared[i % hq] += DSlopes[i];
      return shared;
    }
  }

  /// <summary>
  /// The gradients of causal varlen attention with slopes[b * hq + h] for sequence b, head h,
  /// given dout: P = exp(s - lse) recomputed from the scores and this class's forward (output,
  /// lse in double), Di = dout_i . out_i, dS = P (dout_i . v_j - Di); dv = P^T dout, dq = scale
  /// dS k, dk = scale dS^T q (GQA: kv heads sum over their query heads), dslopes = -sum dS
  /// |qpos - kpos|.
  /// </summary>
  public static Gradients VarlenCausalBackward(float[] q, float[] k, float[] v, float[] dout,
                                               int[] cuQ, int[] cuK, int hq, int hkv, int d,
                                               double[] slopes) {
    var mask = new Varlen(cuQ, cuK);
    Reference forward = Attention(q, k, v, mask.Tq, mask.Tk, hq, hkv, d, mask.Visible, mask.QPos,
                                  mask.KPos, mask.Sequence, slopes);
    var g = new Gradients(mask.Tq, mask.Tk, hq, hkv, d, cuQ.Length - 1);
    double scale = 1 / Math.Sqrt(d);
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      for (int i = 0; i < mask.Tq; ++i) {
        double lse = forward.Lse[h * mask.Tq + i];
        if (double.IsNegativeInfinity(lse)) continue;
        int b = mask.Sequence[i], qi = (i * hq + h) * d;
        double di = 0;
        for (int e = 0; e < d; ++e) di += dout[qi + e] * forward.Out[qi + e];
        for (int j = 0; j < mask.Tk; ++j) {
          if (!mask.Visible[i, j]) continue;
          int kj = (j * hkv + kh) * d;
          double dot = 0, dp = 0, distance = Math.Abs(mask.QPos[i] - mask.KPos[j]);
          for (int e = 0; e < d; ++e) {
            dot += q[qi + e] * (double)k[kj + e];
            dp += dout[qi + e] * (double)v[kj + e];
          }
          double p = Math.Exp(scale * dot - slopes[b * hq + h] * distance - lse);
          double ds = p * (dp - di);
          for (int e = 0; e < d; ++e) {
            g.Dv[kj + e] += p * dout[qi + e];
            g.Dq[qi + e] += scale * ds * k[kj + e];
            g.Dk[kj + e] += scale * ds * q[qi + e];
          }
          g.DSlopes[b * hq + h] -= ds * distance;
        }
      }
    }
    return g;
  }

  /// <summary>The formula's slopes of hq heads for each of `sequences` sequences: (sequences, hq).</summary>
  public static double[] FormulaSlopes(int hq, int sequences) {
    var slopes = new double[sequences * hq];
    for (int i = 0; i < slopes.Length; ++i) slopes[i] = Slope(i % hq, hq);
    return slopes;
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

  /// <summary>Attention with the formula's slopes.</summary>
  private static Reference Attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, bool[,] visible, int[] qpos, int[] kpos) =>
      Attention(q, k, v, tq, tk, hq, hkv, d, visible, qpos, kpos, new int[tq], FormulaSlopes(hq, 1));

  /// <summary>Attention with slopes[sequence[i] * hq + h] for query i, head h.</summary>
  private static Reference Attention(float[] q, float[] k, float[] v, int tq, int tk, int hq,
                                     int hkv, int d, bool[,] visible, int[] qpos, int[] kpos,
                                     int[] sequence, double[] slopes) {
    var output = new double[tq * hq * d];
    var lse = new double[hq * tq];
    double scale = 1 / Math.Sqrt(d);
    var score = new double[tk];
    for (int h = 0; h < hq; ++h) {
      int kh = h / (hq / hkv);
      for (int i = 0; i < tq; ++i) {
        double slope = slopes[sequence[i] * hq + h];
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
