// packed_batch (C#): attention with ALiBi over a packed batch of three sequences, the shapes a
// serving engine mixes in one step (prefill 7x7, chunked prefill 5 queries over 12 keys, decode
// 1 query over 9 keys), causal, H = 4, D = 16, f32, with the log-sum-exp. The arrays are pinned
// in place (no copy); every sequence is checked against a direct computation in double.
using System;
using Alibi;

public static class PackedBatch {
  private const int H = 4, D = 16;
  private static readonly int[] Lq = {7, 5, 1}, Lk = {7, 12, 9};
  private static readonly string[] Names = {"prefill", "chunked prefill", "decode"};

  public static int Main() {
    int[] cuQ = new int[Lq.Length + 1], cuK = new int[Lk.Length + 1];
    for (int b = 0; b < Lq.Length; ++b) {
      cuQ[b + 1] = cuQ[b] + Lq[b];
      cuK[b + 1] = cuK[b] + Lk[b];
    }
    int tq = cuQ[Lq.Length], tk = cuK[Lk.Length];
    var rng = new Random(20240521);
    float[] q = RandomArray(rng, tq * H * D), k = RandomArray(rng, tk * H * D), v = RandomArray(rng, tk * H * D);
    float[] output = new float[q.Length], lse = new float[H * tq];
    Console.WriteLine($"libalibi {Library.Version} (C#): packed batch of {Lq.Length} sequences, " +
                      $"{tq} queries, {tk} keys, H={H}, D={D}, f32");

    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, cuQ, cuK, true)) {
      ctx.Forward(q, k, v, H, H, D, mask, null, output, lse);
    }

    bool allPass = true;
    float[] slopes = Library.Slopes(H, 8);
    for (int b = 0; b < Lq.Length; ++b) {
      double errOut = 0, errLse = 0;
      for (int h = 0; h < H; ++h) {
        for (int i = 0; i < Lq[b]; ++i) {
          int t = cuQ[b] + i, qpos = i + Lk[b] - Lq[b], visible = Math.Min(qpos + 1, Lk[b]);
          var score = new double[visible];
          double max = double.NegativeInfinity, sum = 0;
          for (int j = 0; j < visible; ++j) {
            double dot = 0;
            for (int d = 0; d < D; ++d) dot += q[(t * H + h) * D + d] * (double)k[((cuK[b] + j) * H + h) * D + d];
            score[j] = dot / Math.Sqrt(D) - slopes[h] * Math.Abs(qpos - j);
            max = Math.Max(max, score[j]);
          }
          foreach (double s in score) sum += Math.Exp(s - max);
          double rowLse = max + Math.Log(sum);
          errLse = Math.Max(errLse, Math.Abs(rowLse - lse[h * tq + t]));
          for (int d = 0; d < D; ++d) {
            double acc = 0;
            for (int j = 0; j < visible; ++j) acc += Math.Exp(score[j] - rowLse) * v[((cuK[b] + j) * H + h) * D + d];
            errOut = Math.Max(errOut, Math.Abs(acc - output[(t * H + h) * D + d]));
          }
        }
      }
      bool pass = errOut <= 1e-4 && errLse <= 1e-4;
      allPass &= pass;
      Console.WriteLine($"  sequence {b}  {Names[b],-15}  Lq={Lq[b],2} Lk={Lk[b],2}  " +
                        $"max|out-ref| {errOut:0.00e+00}  max|lse-ref| {errLse:0.00e+00}  {(pass ? "PASS" : "FAIL")}");
    }
    Console.WriteLine(allPass ? "PASS" : "FAIL");
    return allPass ? 0 : 1;
  }

  private static float[] RandomArray(Random rng, int n) {
    var x = new float[n];
    for (int i = 0; i < n; ++i) x[i] = (float)(rng.NextDouble() * 2 - 1);
    return x;
  }
}
