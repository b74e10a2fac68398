// The program of bindings/java/README.md: one causal sequence of 4 tokens, 2 heads of 8 dims.
import org.alibi.Alibi;
import org.alibi.Context;
import org.alibi.Mask;

public final class Consumer {
  public static void main(String[] args) {
    int tokens = 4, heads = 2, headDim = 8;
    float[] q = new float[tokens * heads * headDim];
    for (int i = 0; i < q.length; ++i) q[i] = (i % 7 + 1) / 7.0f;
    float[] out = new float[q.length];
    float[] lse = new float[heads * tokens];
    int[] cuSeqlens = {0, tokens};  // one sequence: tokens [0, 4)
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, cuSeqlens, cuSeqlens, true)) {
      ctx.forward(q, q, q, heads, heads, headDim, mask, null, out, lse);  // q = k = v here
    }
    // The first token sees only itself: its output is its own value row.
    System.out.printf("libalibi %s: out[0] = %.4f (v[0] = %.4f), lse[0] = %.4f%n",
                      Alibi.version(), out[0], q[0], lse[0]);
    System.exit(Math.abs(out[0] - q[0]) < 1e-6 ? 0 : 1);
  }
}
