// ForwardBench: forward_c's measurement from C#, on float[] arrays pinned in place for the call;
// the same arguments, [runs [threads [seqs seqLen heads dim]]], and the same line.
using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using Alibi;

public static class ForwardBench {
  private const int Warmup = 2;
  private const int ClockThreadCpuTime = 3;  // CLOCK_THREAD_CPUTIME_ID

  [StructLayout(LayoutKind.Sequential)]
  private struct Timespec {
    public long Seconds, Nanoseconds;
  }

  [DllImport("libc")]
  private static extern int clock_gettime(int clock, out Timespec time);

  private static double ThreadCpuMs() {
    clock_gettime(ClockThreadCpuTime, out Timespec time);
    return time.Seconds * 1e3 + time.Nanoseconds / 1e6;
  }

  public static void Main(string[] args) {
    int runs = Arg(args, 0, 10), threads = Arg(args, 1, 0);
    int seqs = Arg(args, 2, 64), seqLen = Arg(args, 3, 128), h = Arg(args, 4, 16), d = Arg(args, 5, 128);
    int t = seqs * seqLen, n = t * h * d;
    float[] q = new float[n], k = new float[n], v = new float[n], output = new float[n];
    var lse = new float[h * t];
    for (int i = 0; i < n; ++i) {
      q[i] = (i % 97) / 97.0f - 0.5f;
      k[i] = (i % 89) / 89.0f - 0.5f;
      v[i] = (i % 83) / 83.0f - 0.5f;
    }
    var cu = new int[seqs + 1];
    for (int b = 0; b <= seqs; ++b) cu[b] = b * seqLen;
    double[] wall = new double[runs], cpu = new double[runs];
    using (var ctx = new Context().SetNumThreads(threads))
    using (var mask = Mask.Varlen(ctx, cu, cu, true)) {
      for (int r = -Warmup; r < runs; ++r) {
        var watch = Stopwatch.StartNew();
        double cpuStart = ThreadCpuMs();
        ctx.Forward(q, k, v, h, h, d, mask, null, output, lse);
        if (r >= 0) {
          cpu[r] = ThreadCpuMs() - cpuStart;
          wall[r] = watch.Elapsed.TotalMilliseconds;
        }
      }
    }
    Array.Sort(wall);
    Array.Sort(cpu);
    Console.WriteLine(
        FormattableString.Invariant($"csharp  median_ms={wall[runs / 2]:F4} min_ms={wall[0]:F4} ") +
        FormattableString.Invariant($"cpu_median_ms={cpu[runs / 2]:F4} cpu_min_ms={cpu[0]:F4} runs={runs} ") +
        FormattableString.Invariant($"threads={threads} shape={seqs}x{seqLen},H={h},D={d}"));
  }

  private static int Arg(string[] args, int i, int fallback) =>
      args.Length > i && (i < 2 || args.Length > 5) ? int.Parse(args[i]) : fallback;
}
