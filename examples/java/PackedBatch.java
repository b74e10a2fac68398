/*
 * packed_batch (Java): attention with ALiBi over a packed batch of three sequences, the shapes a
 * serving engine mixes in one step (prefill 7x7, chunked prefill 5 queries over 12 keys, decode
 * 1 query over 9 keys), causal, H = 4, D = 16, f32, with the log-sum-exp. The arrays are used in
 * place (no copy); every sequence is checked against a direct computation in double.
 */
import java.util.Random;
import org.alibi.Alibi;
import org.alibi.Context;
import org.alibi.Mask;

public final class PackedBatch {
  private static final int H = 4, D = 16;
  private static final int[] LQ = {7, 5, 1}, LK = {7, 12, 9};
  private static final String[] NAMES = {"prefill", "chunked prefill", "decode"};

  public static void main(String[] args) {
    int[] cuQ = new int[LQ.length + 1], cuK = new int[LK.length + 1];
    for (int b = 0; b < LQ.length; ++b) {
      cuQ[b + 1] = cuQ[b] + LQ[b];
      cuK[b + 1] = cuK[b] + LK[b];
    }
    int tq = cuQ[LQ.length], tk = cuK[LK.length];
    Random rng = new Random(20240521);
    float[] q = random(rng, tq * H * D), k = random(rng, tk * H * D), v = random(rng, tk * H * D);
    float[] out = new float[q.length], lse = new float[H * tq];
    System.out.printf("libalibi %s (Java): packed batch of %d sequences, %d queries, %d keys, H=%d, D=%d, f32%n",
                      Alibi.version(), LQ.length, tq, tk, H, D);

    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, cuQ, cuK, true)) {
      ctx.forward(q, k, v, H, H, D, mask, null, out, lse);
    }

    boolean allPass = true;
    float[] slopes = Alibi.slopes(H, 8);
    for (int b = 0; b < LQ.length; ++b) {
      double errOut = 0, errLse = 0;
      for (int h = 0; h < H; ++h) {
        for (int i = 0; i < LQ[b]; ++i) {
          int t = cuQ[b] + i, qpos = i + LK[b] - LQ[b], visible = Math.min(qpos + 1, LK[b]);
          double[] score = new double[visible];
          double max = Double.NEGATIVE_INFINITY, sum = 0;
          for (int j = 0; j < visible; ++j) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += q[(t * H + h) * D + d] * (double) k[((cuK[b] + j) * H + h) * D + d];
            score[j] = dot / Math.sqrt(D) - slopes[h] * Math.abs(qpos - j);
            max = Math.max(max, score[j]);
          }
          for (double s : score) sum += Math.exp(s - max);
          double rowLse = max + Math.log(sum);
          errLse = Math.max(errLse, Math.abs(rowLse - lse[h * tq + t]));
          for (int d = 0; d < D; ++d) {
            double acc = 0;
            for (int j = 0; j < visible; ++j) acc += Math.exp(score[j] - rowLse) * v[((cuK[b] + j) * H + h) * D + d];
            errOut = Math.max(errOut, Math.abs(acc - out[(t * H + h) * D + d]));
          }
        }
      }
      boolean pass = errOut <= 1e-4 && errLse <= 1e-4;
      allPass &= pass;
      System.out.printf("  sequence %d  %-15s  Lq=%2d Lk=%2d  max|out-ref| %.2e  max|lse-ref| %.2e  %s%n",
                        b, NAMES[b], LQ[b], LK[b], errOut, errLse, pass ? "PASS" : "FAIL");
    }
    System.out.println(allPass ? "PASS" : "FAIL");
    System.exit(allPass ? 0 : 1);
  }

  private static float[] random(Random rng, int n) {
    float[] x = new float[n];
    for (int i = 0; i < n; ++i) x[i] = rng.nextFloat() * 2 - 1;
    return x;
  }
}
