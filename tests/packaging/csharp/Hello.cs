// The program of bindings/csharp/README.md: causal attention with ALiBi over one sequence of 6
// tokens. The first token sees only itself, so its output is its own v: a check without a reference.
using System;
using Alibi;

public static class Hello {
  public static int Main() {
    const int tokens = 6, heads = 2, headDim = 8;
    var rng = new Random(7);
    float[] q = new float[tokens * heads * headDim], k = new float[q.Length], v = new float[q.Length];
    for (int i = 0; i < q.Length; ++i) {
      q[i] = (float)rng.NextDouble();
      k[i] = (float)rng.NextDouble();
      v[i] = (float)rng.NextDouble();
    }
    float[] output = new float[q.Length];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, new[] {0, tokens}, new[] {0, tokens}, causal: true)) {
      ctx.Forward(q, k, v, heads, heads, headDim, mask, null, output, null);
    }
    double error = 0;
    for (int i = 0; i < heads * headDim; ++i) error = Math.Max(error, Math.Abs(output[i] - v[i]));
    Console.WriteLine($"Alibi.dll {typeof(Context).Assembly.GetName().Version}, libalibi {Library.Version}: " +
                      $"first token max|out - v| = {error:0.0e+00}");
    return error < 1e-6 ? 0 : 1;
  }
}
