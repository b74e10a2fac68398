package org.alibi;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.atomic.AtomicInteger;
import org.junit.Test;

/** Objects never closed are released by the Cleaner; close is idempotent and thread-safe. */
public class LifecycleTest {
  private static final int CYCLES = 20_000, GC_EVERY = 500;
  private static final int T = 16, H = 2, D = 32;

  /** A handle whose destruction is counted. */
  private static final class Counted extends NativeHandle {
    Counted(AtomicInteger destroyed) {
      super(42, handle -> destroyed.incrementAndGet(), null);
    }
  }

  @Test
  public void concurrentClosesDestroyOnce() throws InterruptedException {
    AtomicInteger destroyed = new AtomicInteger();
    Counted handle = new Counted(destroyed);
    List<Thread> closers = new ArrayList<>();
    for (int i = 0; i < 8; ++i) closers.add(new Thread(handle::close));
    for (Thread t : closers) t.start();
    for (Thread t : closers) t.join();
    handle.close();
    assertEquals(1, destroyed.get());
  }

  @Test
  public void anUnreachableHandleIsDestroyedByTheCleaner() throws InterruptedException {
    AtomicInteger destroyed = new AtomicInteger();
    new Counted(destroyed);
    for (int tries = 0; tries < 100 && destroyed.get() == 0; ++tries) {
      System.gc();
      Thread.sleep(10);
    }
    assertEquals(1, destroyed.get());
  }

  /** Contexts, masks and tensors created and used, never closed: threads and memory stay bounded. */
  @Test
  public void unclosedCyclesStayBounded() throws IOException, InterruptedException {
    float[] qkv = new float[T * H * D], out = new float[qkv.length];
    for (int i = 0; i < qkv.length; ++i) qkv[i] = (i % 17) / 17.0f;
    int[] cu = {0, T};
    long threadsBefore = status("Threads:");
    cycles(GC_EVERY, qkv, out, cu);  // warms up the heap and the JIT before RSS is measured
    long rssBefore = status("VmRSS:");
    long maxThreads = 0, maxRss = 0, start = System.nanoTime();
    for (int done = 0; done < CYCLES; done += GC_EVERY) {
      cycles(GC_EVERY, qkv, out, cu);
      maxThreads = Math.max(maxThreads, status("Threads:"));
      maxRss = Math.max(maxRss, status("VmRSS:"));
    }
    System.out.printf("LifecycleTest: %d unclosed cycles in %.1f s: threads %d before, at most %d;"
        + " RSS %d KiB before, at most %d KiB%n", CYCLES, (System.nanoTime() - start) / 1e9,
        threadsBefore, maxThreads, rssBefore, maxRss);
    // A context starts no thread: calls share the process's workers (up to one per core, started
    // by the warm-up), and the JVM starts its GC workers on demand (up to one per core).
    int cores = Runtime.getRuntime().availableProcessors();
    assertTrue("threads reached " + maxThreads, maxThreads <= threadsBefore + 2 * cores + 4);
    assertTrue("resident memory grew by " + (maxRss - rssBefore) + " KiB",
               maxRss - rssBefore < 32 * 1024);
  }

  /** n create/forward cycles, then a collection and a pause for the Cleaner thread. */
  private static void cycles(int n, float[] qkv, float[] out, int[] cu) throws InterruptedException {
    for (int i = 0; i < n; ++i) {
      Context ctx = new Context();
      Mask mask = Mask.varlen(ctx, cu, cu, true);
      Tensor q = Tensor.create(ctx, DType.F32, T, H, D).copyFrom(qkv);
      Tensor o = Tensor.create(ctx, DType.F32, T, H, D);
      ctx.forward(q, q, q, mask, null, o, null);
      ctx.forward(qkv, qkv, qkv, H, H, D, mask, null, out, null);
    }
    System.gc();
    Thread.sleep(50);
  }

  private static long status(String field) throws IOException {
    for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
      if (line.startsWith(field)) return Long.parseLong(line.replaceAll("[^0-9]", ""));
    }
    throw new IOException("no " + field + " in /proc/self/status");
  }
}
