/*
 * ForwardBench: forward_c's measurement from Java, on float[] arrays pinned in place for the
 * call; the same arguments, [runs [threads [seqs seqLen heads dim]]], and the same line.
 */
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.util.Arrays;
import org.alibi.Context;
import org.alibi.Mask;

public final class ForwardBench {
  private static final int WARMUP = 2;

  public static void main(String[] args) {
    int runs = arg(args, 0, 10), threads = arg(args, 1, 0);
    int seqs = arg(args, 2, 64), seqLen = arg(args, 3, 128), h = arg(args, 4, 16), d = arg(args, 5, 128);
    int t = seqs * seqLen, n = t * h * d;
    float[] q = new float[n], k = new float[n], v = new float[n], out = new float[n];
    float[] lse = new float[h * t];
    for (int i = 0; i < n; ++i) {
      q[i] = (i % 97) / 97.0f - 0.5f;
      k[i] = (i % 89) / 89.0f - 0.5f;
      v[i] = (i % 83) / 83.0f - 0.5f;
    }
    int[] cu = new int[seqs + 1];
    for (int b = 0; b <= seqs; ++b) cu[b] = b * seqLen;
    ThreadMXBean clock = ManagementFactory.getThreadMXBean();
    double[] wall = new double[runs], cpu = new double[runs];
    try (Context ctx = new Context().setNumThreads(threads); Mask mask = Mask.varlen(ctx, cu, cu, true)) {
      for (int r = -WARMUP; r < runs; ++r) {
        long wallStart = System.nanoTime(), cpuStart = clock.getCurrentThreadCpuTime();
        ctx.forward(q, k, v, h, h, d, mask, null, out, lse);
        if (r >= 0) {
          cpu[r] = (clock.getCurrentThreadCpuTime() - cpuStart) / 1e6;
          wall[r] = (System.nanoTime() - wallStart) / 1e6;
        }
      }
    }
    Arrays.sort(wall);
    Arrays.sort(cpu);
    System.out.printf("java    median_ms=%.4f min_ms=%.4f cpu_median_ms=%.4f cpu_min_ms=%.4f runs=%d "
                      + "threads=%d shape=%dx%d,H=%d,D=%d%n", wall[runs / 2], wall[0], cpu[runs / 2],
                      cpu[0], runs, threads, seqs, seqLen, h, d);
  }

  private static int arg(String[] args, int i, int fallback) {
    return args.length > i && (i < 2 || args.length > 5) ? Integer.parseInt(args[i]) : fallback;
  }
}
