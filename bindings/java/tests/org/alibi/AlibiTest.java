package org.alibi;

import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertSame;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;
import static org.junit.Assert.fail;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Arrays;
import java.util.Random;
import org.junit.Test;
import org.junit.function.ThrowingRunnable;

public class AlibiTest {
  static final int HQ = 4, HKV = 2, D = 16;
  // prefill 5x5, chunked prefill 3 queries over 7 keys, decode 1 query over 4 keys
  static final int[] CU_Q = {0, 5, 8, 9};
  static final int[] CU_K = {0, 5, 12, 16};
  // Slices over T tokens: 0 and 1 hold keys [0, 4), slice 2 keys [4, 12), where queries 0..3 see
  // no key.
  private static final int T = 12;
  private static final int[] Q_RANGES = {0, 4, 4, 12, 4, 12};
  private static final int[] K_RANGES = {0, 4, 0, 4, 4, 12};
  private static final MaskType[] TYPES = {MaskType.CAUSAL, MaskType.FULL, MaskType.CAUSAL};

  static float[] random(int n, long seed) {
    Random rng = new Random(seed);
    float[] x = new float[n];
    for (int i = 0; i < n; ++i) x[i] = rng.nextFloat() * 2 - 1;
    return x;
  }

  static void assertClose(String what, double[] expected, float[] actual, double tol) {
    assertEquals(what + " length", expected.length, actual.length);
    for (int i = 0; i < expected.length; ++i) {
      if (Double.isInfinite(expected[i])) {
        assertEquals(what + "[" + i + "]", expected[i], actual[i], 0);
      } else if (!(Math.abs(expected[i] - actual[i]) <= tol * (1 + Math.abs(expected[i])))) {
        fail(what + "[" + i + "] = " + actual[i] + ", expected " + expected[i]);
      }
    }
  }

  @Test
  public void varlenCausalForwardMatchesReference() {
    int tq = CU_Q[3], tk = CU_K[3];
    float[] q = random(tq * HQ * D, 1), k = random(tk * HKV * D, 2), v = random(tk * HKV * D, 3);
    float[] out = new float[q.length], lse = new float[HQ * tq];
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      ctx.forward(q, k, v, HQ, HKV, D, mask, null, out, lse);
    }
    Reference ref = Reference.varlenCausal(q, k, v, CU_Q, CU_K, HQ, HKV, D);
    assertClose("out", ref.out, out, 1e-4);
    assertClose("lse", ref.lse, lse, 1e-4);
  }

  @Test
  public void tensorsWrappingDirectBuffersMatchReference() {
    int tq = CU_Q[3], tk = CU_K[3];
    float[] q = random(tq * HQ * D, 4), k = random(tk * HKV * D, 5), v = random(tk * HKV * D, 6);
    FloatBuffer outBuffer = direct(q.length);
    try (Context ctx = new Context();
         Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true);
         Tensor tq3 = Tensor.wrap(ctx, direct(q), tq, HQ, D);
         Tensor tk3 = Tensor.create(ctx, DType.F32, tk, HKV, D).copyFrom(k);
         Tensor tv3 = Tensor.create(ctx, DType.F32, tk, HKV, D).copyFrom(direct(v));
         Tensor to3 = Tensor.wrap(ctx, outBuffer, tq, HQ, D)) {
      ctx.forward(tq3, tk3, tv3, mask, new AttentionParams(), to3, null);
      assertSame(outBuffer, to3.buffer());
    }
    float[] out = new float[q.length];
    outBuffer.get(0, out);
    assertClose("out", Reference.varlenCausal(q, k, v, CU_Q, CU_K, HQ, HKV, D).out, out, 1e-4);
  }

  /** A direct native-order buffer holding x after `offset` padding elements, positioned at x. */
  static FloatBuffer atOffset(float[] x, int offset) {
    FloatBuffer b = direct(offset + x.length);
    b.put(offset, x);
    b.position(offset);
    return b;
  }

  @Test
  public void floatBufferForwardAndMergeMatchTheArrayForms() {
    float[] out = new float[SQ.length], lse = new float[HQ * T];
    FloatBuffer outBuffer = atOffset(new float[SQ.length], 3), lseBuffer = atOffset(lse, 5);
    try (Context ctx = new Context(); Mask mask = slices(ctx, 0, 3)) {
      ctx.forward(SQ, SK, SV, HQ, HKV, D, mask, null, out, lse);
      ctx.forward(atOffset(SQ, 1), atOffset(SK, 2), atOffset(SV, 0), HQ, HKV, D, mask, null,
                  outBuffer, lseBuffer);
      assertEquals("positions are left alone", 3, outBuffer.position());
      assertClose("out", out, contents(outBuffer), 0);
      assertClose("lse", lse, contents(lseBuffer), 0);

      Partial a = new Partial(ctx, 0, 2), b = new Partial(ctx, 2, 3);
      FloatBuffer outA = atOffset(a.out, 7), lseA = atOffset(a.lse, 1);
      ctx.merge(outA, lseA, atOffset(b.out, 0), atOffset(b.lse, 2), HQ, D, outA, lseA);
      assertClose("merged out", out, contents(outA), 1e-5);
      assertClose("merged lse", lse, contents(lseA), 1e-5);
    }
  }

  static float[] contents(FloatBuffer b) {
    float[] x = new float[b.remaining()];
    b.get(b.position(), x);
    return x;
  }

  @Test
  public void floatBufferFormsRejectBuffersTheyCannotUseInPlace() {
    float[] lse = new float[HQ * T];
    FloatBuffer q = atOffset(SQ, 0), k = atOffset(SK, 0), v = atOffset(SV, 0);
    FloatBuffer out = direct(SQ.length);
    FloatBuffer bigEndian = ByteBuffer.allocateDirect(4 * SK.length).asFloatBuffer();
    try (Context ctx = new Context(); Mask mask = slices(ctx, 0, 3)) {
      assertIllegal("k is a heap buffer", () -> ctx.forward(q, FloatBuffer.wrap(SK), v, HQ, HKV, D,
          mask, null, out, null));
      assertIllegal("v is in BIG_ENDIAN byte order", () -> ctx.forward(q, k, bigEndian, HQ, HKV,
          D, mask, null, out, null));
      assertIllegal("out is read-only", () -> ctx.forward(q, k, v, HQ, HKV, D, mask, null,
          out.asReadOnlyBuffer(), null));
      assertNullNamed("q", () -> ctx.forward(null, k, v, HQ, HKV, D, mask, null, out, null));
      assertBlames("k", () -> ctx.forward(q, k.slice(HKV * D, k.capacity() - HKV * D), v, HQ,
          HKV, D, mask, null, out, null));
      assertBlames("lse_b", () -> ctx.merge(out, direct(lse), out, direct(lse.length - HQ), HQ,
          D, out, null));
    }
  }

  static void assertIllegal(String start, ThrowingRunnable call) {
    IllegalArgumentException e = assertThrows(IllegalArgumentException.class, call);
    assertTrue(e.getMessage(), e.getMessage().startsWith(start));
  }

  @Test
  public void everyNullArgumentIsNamed() {
    int[] cu = {0, 2};
    float[] x = new float[2 * HQ * D];
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, cu, cu, true);
         Tensor t = Tensor.create(ctx, DType.F32, 2, HQ, D)) {
      assertNullNamed("device", () -> new Context(null, 0));
      assertNullNamed("ctx", () -> Mask.varlen(null, cu, cu, true));
      assertNullNamed("cuSeqlensK", () -> Mask.slidingWindow(ctx, cu, null, -1, 0));
      assertNullNamed("types[1]", () -> Mask.ranges(ctx, Q_RANGES, K_RANGES,
          new MaskType[] {MaskType.FULL, null, MaskType.FULL}, T, T));
      assertNullNamed("dtype", () -> Tensor.create(ctx, null, 2));
      assertNullNamed("data", () -> Tensor.wrap(ctx, (FloatBuffer) null, 2));
      assertNullNamed("src", () -> t.copyFrom((float[]) null));
      assertNullNamed("dst", () -> t.copyTo((FloatBuffer) null));
      assertNullNamed("mask", () -> ctx.forward(x, x, x, HQ, HQ, D, null, null, x, null));
      assertNullNamed("v", () -> ctx.forward(t, t, null, mask, null, t, null));
      assertNullNamed("lseB", () -> ctx.merge(t, t, t, null, t, null));
    }
  }

  @Test
  public void rangesForwardMatchesReference() {
    float[] q = random(T * HQ * D, 7), k = random(T * HKV * D, 8), v = random(T * HKV * D, 9);
    float[] out = new float[q.length], lse = new float[HQ * T];
    try (Context ctx = new Context(); Mask mask = slices(ctx, 0, 3)) {
      assertEquals(3, mask.numSlices());
      ctx.forward(q, k, v, HQ, HKV, D, mask, new AttentionParams().maxBias(8), out, lse);
    }
    Reference ref = Reference.ranges(q, k, v, Q_RANGES, K_RANGES, TYPES, T, T, HQ, HKV, D);
    assertClose("out", ref.out, out, 1e-4);
    assertClose("lse", ref.lse, lse, 1e-4);
  }

  @Test
  public void bf16ForwardMatchesReference() {
    int tq = CU_Q[3], tk = CU_K[3];
    short[] q = bf16(random(tq * HQ * D, 10)), k = bf16(random(tk * HKV * D, 11));
    short[] v = bf16(random(tk * HKV * D, 12)), out = new short[q.length];
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      ctx.forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, out, null);
    }
    Reference ref = Reference.varlenCausal(floats(q), floats(k), floats(v), CU_Q, CU_K, HQ, HKV, D);
    assertClose("out", ref.out, floats(out), 1e-2);
  }

  @Test
  public void invalidCallThrowsWithTheLibraryMessage() {
    try (Context ctx = new Context()) {
      Mask.varlen(ctx, new int[] {0, 4, 2}, new int[] {0, 4, 6}, true);
      fail("decreasing cu_seqlens_q accepted");
    } catch (AlibiException e) {
      assertEquals(Status.INVALID_ARGUMENT, e.getStatus());
      assertTrue(e.getDetail(), e.getDetail().startsWith("alibi_mask_create_varlen: "));
      assertTrue(e.getMessage(), e.getMessage().startsWith("invalid argument: alibi_mask_create_varlen"));
    }
  }

  static void assertClose(String what, float[] expected, float[] actual, double tol) {
    double[] widened = new double[expected.length];
    for (int i = 0; i < expected.length; ++i) widened[i] = expected[i];
    assertClose(what, widened, actual, tol);
  }

  static void assertFails(Status status, String detail, ThrowingRunnable call) {
    AlibiException e = assertThrows(AlibiException.class, call);
    assertEquals(detail, e.getDetail());
    assertEquals(status, e.getStatus());
  }

  /** A shape error whose message, after the function's name, starts with the argument's. */
  static void assertBlames(String argument, ThrowingRunnable call) {
    AlibiException e = assertThrows(AlibiException.class, call);
    assertEquals(e.getMessage(), Status.SHAPE_MISMATCH, e.getStatus());
    assertTrue("does not blame " + argument + ": " + e.getDetail(),
               e.getDetail().matches("\\w+: " + argument + "[ .].*"));
  }

  static void assertNullNamed(String argument, ThrowingRunnable call) {
    NullPointerException e = assertThrows(NullPointerException.class, call);
    assertEquals(argument, e.getMessage());
  }

  static void assertClosed(String message, ThrowingRunnable call) {
    IllegalStateException e = assertThrows(IllegalStateException.class, call);
    assertEquals(message, e.getMessage());
  }

  @Test
  public void rawCallsThrowTheirStatusAndMessage() {
    try (Context ctx = new Context(); alibi_attention_params p = new alibi_attention_params()) {
      assertFails(Status.INVALID_ARGUMENT,
          "alibi_context_set_num_threads: num_threads = -1 is outside [0, 1024]",
          () -> AlibiNative.alibi_context_set_num_threads(ctx.handle(), -1));
      assertFails(Status.NULL_POINTER, "alibi_attention_merge: out_a is NULL",
          () -> AlibiNative.alibi_attention_merge(ctx.handle(), 0, 0, 0, 0, 0, 0));
      assertFails(Status.INVALID_ARGUMENT, "alibi_attention_params_set_slopes: count = -1 is negative",
          () -> p.setSlopes(new float[1], -1));
      // The binding's own message above is not read again for the library's next failure.
      assertFails(Status.NULL_POINTER, "alibi_context_synchronize: ctx is NULL",
          () -> AlibiNative.alibi_context_synchronize(0));
    }
  }

  @Test
  public void arrayForwardNamesTheArgumentThatDoesNotFit() {
    int tq = CU_Q[3], tk = CU_K[3];
    float[] q = new float[tq * HQ * D], kv = new float[tk * HKV * D], out = new float[q.length];
    float[] lse = new float[HQ * tq], kvRowShort = new float[(tk - 1) * HKV * D];
    float[] outRowShort = new float[(tq - 1) * HQ * D], lseRowShort = new float[HQ * (tq - 1)];
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      assertBlames("k", () -> ctx.forward(q, kvRowShort, kv, HQ, HKV, D, mask, null, out, lse));
      assertBlames("k", () -> ctx.forward(q, Arrays.copyOf(kv, kv.length - 1), kv, HQ, HKV, D,
                                          mask, null, out, lse));
      assertBlames("v", () -> ctx.forward(q, kv, kvRowShort, HQ, HKV, D, mask, null, out, lse));
      assertBlames("out", () -> ctx.forward(q, kv, kv, HQ, HKV, D, mask, null, outRowShort, lse));
      assertBlames("lse", () -> ctx.forward(q, kv, kv, HQ, HKV, D, mask, null, out, lseRowShort));
      assertBlames("lse",
          () -> ctx.forward(q, kv, kv, HQ, HKV, D, mask, null, out, new float[lse.length - 1]));
      assertNullNamed("k", () -> ctx.forward(q, null, kv, HQ, HKV, D, mask, null, out, lse));
      assertNullNamed("out", () -> ctx.forward(DType.BF16, new short[q.length],
          new short[kv.length], new short[kv.length], HQ, HKV, D, mask, null, null, null));
      assertFails(Status.INVALID_ARGUMENT, "alibi_binding_forward_f32: heads_q = 0, heads_kv = 2, "
          + "head_dim = 16; each must be >= 1",
          () -> ctx.forward(q, kv, kv, 0, HKV, D, mask, null, out, lse));
      assertFails(Status.INVALID_ARGUMENT, "alibi_binding_forward_f32: heads_q = 4, heads_kv = 2, "
          + "head_dim = 0; each must be >= 1",
          () -> ctx.forward(q, kv, kv, HQ, HKV, 0, mask, null, out, lse));
      assertFails(Status.DTYPE_MISMATCH, "alibi_binding_forward_u16: dtype = 0 is not "
          + "ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
          () -> ctx.forward(DType.F32, new short[q.length], new short[kv.length],
                            new short[kv.length], HQ, HKV, D, mask, null, new short[q.length], lse));
    }
  }

  /** The mask of slices [from, to): all keys (0, 3), keys [0, 4) (0, 2) or keys [4, 12) (2, 3). */
  private static Mask slices(Context ctx, int from, int to) {
    return Mask.ranges(ctx, Arrays.copyOfRange(Q_RANGES, 2 * from, 2 * to),
        Arrays.copyOfRange(K_RANGES, 2 * from, 2 * to), Arrays.copyOfRange(TYPES, from, to), T, T);
  }

  private static final float[] SQ = random(T * HQ * D, 14), SK = random(T * HKV * D, 15);
  private static final float[] SV = random(T * HKV * D, 16);

  /** An attention result (tokens T): zeros, or the forward of SQ, SK, SV over some slices. */
  private static final class Partial {
    final float[] out = new float[T * HQ * D], lse = new float[HQ * T];

    Partial() {}

    Partial(Context ctx, int from, int to) {
      try (Mask mask = slices(ctx, from, to)) {
        ctx.forward(SQ, SK, SV, HQ, HKV, D, mask, null, out, lse);
      }
    }

    void assertCloseTo(Partial expected, double tol) {
      assertClose("out", expected.out, out, tol);
      assertClose("lse", expected.lse, lse, tol);
    }
  }

  @Test
  public void mergingTheTwoKeySidesEqualsOneForward() {
    try (Context ctx = new Context()) {
      Partial all = new Partial(ctx, 0, 3), a = new Partial(ctx, 0, 2), b = new Partial(ctx, 2, 3);
      Partial merged = new Partial();
      ctx.merge(a.out, a.lse, b.out, b.lse, HQ, D, merged.out, merged.lse);
      merged.assertCloseTo(all, 1e-5);
      ctx.merge(a.out, a.lse, b.out, b.lse, HQ, D, a.out, a.lse);
      a.assertCloseTo(all, 1e-5);
    }
  }

  @Test
  public void tensorMergeEqualsOneForward() {
    try (Context ctx = new Context()) {
      Partial all = new Partial(ctx, 0, 3), a = new Partial(ctx, 0, 2), b = new Partial(ctx, 2, 3);
      Partial merged = new Partial();
      try (Tensor outA = outTensor(ctx).copyFrom(a.out); Tensor lseA = lseTensor(ctx).copyFrom(a.lse);
           Tensor outB = outTensor(ctx).copyFrom(b.out); Tensor lseB = lseTensor(ctx).copyFrom(b.lse);
           Tensor out = outTensor(ctx)) {
        ctx.merge(outA, lseA, outB, lseB, out, null);
        out.copyTo(merged.out);
        assertClose("out", all.out, merged.out, 1e-5);
        ctx.merge(outA, lseA, outB, lseB, outA, lseA);
        outA.copyTo(merged.out);
        lseA.copyTo(merged.lse);
        merged.assertCloseTo(all, 1e-5);
      }
    }
  }

  private static Tensor outTensor(Context ctx) {
    return Tensor.create(ctx, DType.F32, T, HQ, D);
  }

  private static Tensor lseTensor(Context ctx) {
    return Tensor.create(ctx, DType.F32, HQ, T);
  }

  @Test
  public void bf16MergeOfTheTwoKeySidesEqualsOneForward() {
    short[] q = bf16(SQ), k = bf16(SK), v = bf16(SV);
    short[][] outs = new short[3][q.length];
    float[][] lses = new float[3][HQ * T];
    int[][] sides = {{0, 3}, {0, 2}, {2, 3}};
    try (Context ctx = new Context()) {
      for (int s = 0; s < 3; ++s) {
        try (Mask mask = slices(ctx, sides[s][0], sides[s][1])) {
          ctx.forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, outs[s], lses[s]);
        }
      }
      ctx.merge(DType.BF16, outs[1], lses[1], outs[2], lses[2], HQ, D, outs[1], null);
    }
    assertClose("out", floats(outs[0]), floats(outs[1]), 1e-2);
  }

  @Test
  public void aSideWhoseLseIsMinusInfinityContributesNothing() {
    try (Context ctx = new Context()) {
      Partial a = new Partial(ctx, 0, 3), none = new Partial(), merged = new Partial();
      Arrays.fill(none.out, Float.NaN);
      Arrays.fill(none.lse, Float.NEGATIVE_INFINITY);
      ctx.merge(none.out, none.lse, a.out, a.lse, HQ, D, merged.out, merged.lse);
      merged.assertCloseTo(a, 0);
    }
  }

  @Test
  public void arrayMergeNamesTheArgumentThatDoesNotFit() {
    Partial a = new Partial(), b = new Partial(), out = new Partial();
    short[] out16 = new short[out.out.length];
    try (Context ctx = new Context()) {
      assertBlames("lse_b",
          () -> ctx.merge(a.out, a.lse, b.out, new float[HQ * (T - 1)], HQ, D, out.out, out.lse));
      assertFails(Status.SHAPE_MISMATCH,
          "alibi_binding_merge_f32: lse_b has 47 elements, not a multiple of 4 = heads 4",
          () -> ctx.merge(a.out, a.lse, b.out, new float[HQ * T - 1], HQ, D, out.out, out.lse));
      assertBlames("out",
          () -> ctx.merge(a.out, a.lse, b.out, b.lse, HQ, D, new float[(T - 1) * HQ * D], null));
      assertNullNamed("outB", () -> ctx.merge(a.out, a.lse, null, b.lse, HQ, D, out.out, out.lse));
      assertNullNamed("out",
          () -> ctx.merge(DType.F16, out16, a.lse, out16, b.lse, HQ, D, null, null));
      assertFails(Status.INVALID_ARGUMENT,
          "alibi_binding_merge_f32: heads = 0, head_dim = 16; each must be >= 1",
          () -> ctx.merge(a.out, a.lse, b.out, b.lse, 0, D, out.out, out.lse));
      assertFails(Status.DTYPE_MISMATCH, "alibi_binding_merge_u16: dtype = 0 is not "
          + "ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
          () -> ctx.merge(DType.F32, out16, a.lse, out16, b.lse, HQ, D, out16, null));
    }
  }

  @Test
  public void tensorMergeOfAClosedOrNullTensorNamesIt() {
    try (Context ctx = new Context(); Tensor outA = outTensor(ctx); Tensor lseA = lseTensor(ctx);
         Tensor outB = outTensor(ctx); Tensor lseB = lseTensor(ctx)) {
      Tensor closed = outTensor(ctx);
      closed.close();
      assertClosed("Tensor is closed (argument outB)",
          () -> ctx.merge(outA, lseA, closed, lseB, outA, null));
      assertNullNamed("lseA", () -> ctx.merge(outA, null, outB, lseB, outA, null));
      assertClosed("Tensor is closed (argument lse)",
          () -> ctx.merge(outA, lseA, outB, lseB, outA, closed));
    }
  }

  @Test
  public void closingTwiceIsHarmlessAndAClosedObjectNamesItself() {
    Context ctx = new Context();
    Tensor t = Tensor.create(ctx, DType.F32, 2, 3);
    Mask mask = Mask.varlen(ctx, new int[] {0, 2}, new int[] {0, 2}, false);
    ctx.close();
    assertTrue(ctx.isClosed());
    assertEquals(DType.F32, t.dtype());  // a tensor outlives its context
    t.close();
    t.close();
    mask.close();
    mask.close();
    ctx.close();
    assertClosed("Tensor is closed", t::dtype);
    assertClosed("Mask is closed", mask::numSlices);
    assertClosed("Context is closed", ctx::device);
    float[] x = new float[2 * 4 * 16];
    assertClosed("Context is closed", () -> ctx.forward(x, x, x, 4, 4, 16, mask, null, x, null));
    try (Context open = new Context()) {
      assertClosed("Mask is closed (argument mask)",
          () -> open.forward(x, x, x, 4, 4, 16, mask, null, x, null));
      assertClosed("Context is closed (argument ctx)", () -> Tensor.create(ctx, DType.F32, 2));
      assertClosed("Tensor is closed (argument AttentionParams.attnBias)",
          () -> open.forward(x, x, x, 4, 4, 16, Mask.varlen(open, new int[] {0, 2},
              new int[] {0, 2}, false), new AttentionParams().attnBias(t), x, null));
    }
  }

  @Test
  public void tenThousandCyclesKeepMemoryStable() throws IOException {
    int t = 32, h = 2, d = 32;  // 8 KiB per tensor: a leak of one per cycle is 80 MiB
    float[] q = random(t * h * d, 13), out = new float[q.length], lse = new float[h * t];
    int[] cu = {0, t};
    cycles(500, q, out, lse, cu, h, d);
    long before = residentKiB();
    cycles(10_000, q, out, lse, cu, h, d);
    long grown = residentKiB() - before;
    assertTrue("resident memory grew by " + grown + " KiB", grown < 16 * 1024);
  }

  private static void cycles(int n, float[] qkv, float[] out, float[] lse, int[] cu, int h, int d) {
    long t = cu[1];
    for (int i = 0; i < n; ++i) {
      try (Context ctx = new Context().setNumThreads(1);  // no worker threads to start each cycle
           Mask mask = Mask.varlen(ctx, cu, cu, true);
           Tensor q = Tensor.create(ctx, DType.F32, t, h, d).copyFrom(qkv);
           Tensor o = Tensor.create(ctx, DType.F32, t, h, d)) {
        ctx.forward(q, q, q, mask, new AttentionParams(), o, null);
        ctx.forward(qkv, qkv, qkv, h, h, d, mask, null, out, lse);
      }
    }
  }

  private static long residentKiB() throws IOException {
    for (String line : Files.readAllLines(Paths.get("/proc/self/status"))) {
      if (line.startsWith("VmRSS:")) return Long.parseLong(line.replaceAll("[^0-9]", ""));
    }
    throw new IOException("no VmRSS in /proc/self/status");
  }

  static FloatBuffer direct(int n) {
    return ByteBuffer.allocateDirect(4 * n).order(ByteOrder.nativeOrder()).asFloatBuffer();
  }

  static FloatBuffer direct(float[] x) {
    FloatBuffer b = direct(x.length);
    b.put(0, x);
    return b;
  }

  /** Round to nearest even bfloat16 (finite inputs). */
  static short[] bf16(float[] x) {
    short[] y = new short[x.length];
    for (int i = 0; i < x.length; ++i) {
      int bits = Float.floatToRawIntBits(x[i]);
      y[i] = (short) ((bits + 0x7FFF + ((bits >>> 16) & 1)) >>> 16);
    }
    return y;
  }

  static float[] floats(short[] bf16) {
    float[] x = new float[bf16.length];
    for (int i = 0; i < x.length; ++i) x[i] = Float.intBitsToFloat((bf16[i] & 0xFFFF) << 16);
    return x;
  }
}
