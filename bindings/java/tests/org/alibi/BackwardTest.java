package org.alibi;

import static org.alibi.AlibiTest.CU_K;
import static org.alibi.AlibiTest.CU_Q;
import static org.alibi.AlibiTest.D;
import static org.alibi.AlibiTest.HKV;
import static org.alibi.AlibiTest.HQ;
import static org.alibi.AlibiTest.assertBlames;
import static org.alibi.AlibiTest.assertClose;
import static org.alibi.AlibiTest.assertClosed;
import static org.alibi.AlibiTest.assertFails;
import static org.alibi.AlibiTest.assertIllegal;
import static org.alibi.AlibiTest.assertNullNamed;
import static org.alibi.AlibiTest.atOffset;
import static org.alibi.AlibiTest.bf16;
import static org.alibi.AlibiTest.contents;
import static org.alibi.AlibiTest.direct;
import static org.alibi.AlibiTest.floats;
import static org.alibi.AlibiTest.random;
import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertTrue;

import java.nio.FloatBuffer;
import java.util.Arrays;
import org.junit.Test;

/**
 * Context.backward in each form, on the causal varlen GQA batch of AlibiTest (prefill, chunked
 * prefill, decode): against Reference's double-precision gradients, and the array and buffer
 * forms against the tensor form (the C API's alibi_attention_backward itself).
 */
public class BackwardTest {
  private static final int TQ = CU_Q[3], TK = CU_K[3], SEQUENCES = CU_Q.length - 1;

  /** Forward results of random q, k, v, a random dout, and NaN-poisoned gradients. */
  private static final class Problem {
    final float[] q = random(TQ * HQ * D, 21), k = random(TK * HKV * D, 22);
    final float[] v = random(TK * HKV * D, 23), dout = random(TQ * HQ * D, 24);
    final float[] out = new float[q.length], lse = new float[HQ * TQ];
    final float[] dq = poisoned(q.length), dk = poisoned(k.length), dv = poisoned(v.length);
    final float[] dslopes;

    Problem(Context ctx, Mask mask, AttentionParams params, int slopeGradients) {
      ctx.forward(q, k, v, HQ, HKV, D, mask, params, out, lse);
      dslopes = poisoned(slopeGradients);
    }

    void backward(Context ctx, Mask mask, AttentionParams params) {
      ctx.backward(q, k, v, HQ, HKV, D, mask, params, out, lse, dout, dq, dk, dv, dslopes);
    }

    Reference.Gradients reference(double[] slopes) {
      return Reference.varlenCausalBackward(q, k, v, dout, CU_Q, CU_K, HQ, HKV, D, slopes);
    }

    void assertGradients(Reference.Gradients expected, double[] expectedDslopes) {
      assertClose("dq", expected.dq, dq, 1e-4);
      assertClose("dk", expected.dk, dk, 1e-4);
      assertClose("dv", expected.dv, dv, 1e-4);
      assertClose("dslopes", expectedDslopes, dslopes, 1e-4);
    }
  }

  private static float[] poisoned(int n) {
    float[] x = new float[n];
    Arrays.fill(x, Float.NaN);
    return x;
  }

  @Test
  public void varlenCausalGqaBackwardMatchesTheDoubleReference() {
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      Problem p = new Problem(ctx, mask, null, HQ);
      p.backward(ctx, mask, null);
      Reference.Gradients expected = p.reference(Reference.formulaSlopes(HQ, SEQUENCES));
      p.assertGradients(expected, expected.sharedDslopes(HQ));
    }
  }

  @Test
  public void perSequenceSlopesHaveOneGradientPerSequenceAndHead() {
    float[] slopes = new float[SEQUENCES * HQ];
    double[] exact = new double[slopes.length];
    for (int i = 0; i < slopes.length; ++i) exact[i] = slopes[i] = 0.05f * (i + 1);
    AttentionParams params = new AttentionParams().slopes(slopes, true);
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      Problem p = new Problem(ctx, mask, params, SEQUENCES * HQ);
      p.backward(ctx, mask, params);
      Reference.Gradients expected = p.reference(exact);
      p.assertGradients(expected, expected.dslopes);
      assertBlames("dslopes", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, params, p.out,
          p.lse, p.dout, null, null, null, new float[(SEQUENCES - 1) * HQ]));
    }
  }

  /** The tensor form is the C API's call; the array forms wrap the same memory, so agree bitwise. */
  @Test
  public void tensorBackwardEqualsTheArrayFormBitwise() {
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      Problem p = new Problem(ctx, mask, null, HQ);
      p.backward(ctx, mask, null);
      float[] dq = new float[p.dq.length], dk = new float[p.dk.length], dv = new float[p.dv.length];
      float[] dslopes = new float[HQ];
      try (Tensor q = f32(ctx, p.q, TQ, HQ, D); Tensor k = f32(ctx, p.k, TK, HKV, D);
           Tensor v = f32(ctx, p.v, TK, HKV, D); Tensor out = f32(ctx, p.out, TQ, HQ, D);
           Tensor lse = f32(ctx, p.lse, HQ, TQ); Tensor dout = f32(ctx, p.dout, TQ, HQ, D);
           Tensor tdq = f32(ctx, null, TQ, HQ, D); Tensor tdk = f32(ctx, null, TK, HKV, D);
           Tensor tdv = f32(ctx, null, TK, HKV, D); Tensor tds = f32(ctx, null, HQ)) {
        ctx.backward(q, k, v, mask, null, out, lse, dout, tdq, tdk, tdv, tds);
        tdq.copyTo(dq);
        tdk.copyTo(dk);
        tdv.copyTo(dv);
        tds.copyTo(dslopes);
      }
      assertArrayEquals(dq, p.dq, 0);
      assertArrayEquals(dk, p.dk, 0);
      assertArrayEquals(dv, p.dv, 0);
      assertArrayEquals(dslopes, p.dslopes, 0);
    }
  }

  private static Tensor f32(Context ctx, float[] data, long... shape) {
    Tensor t = Tensor.create(ctx, DType.F32, shape);
    return data == null ? t : t.copyFrom(data);
  }

  @Test
  public void floatBufferBackwardEqualsTheArrayFormAndSkipsNullGradients() {
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      Problem p = new Problem(ctx, mask, null, HQ);
      p.backward(ctx, mask, null);
      FloatBuffer dv = atOffset(new float[p.dv.length], 3), dslopes = atOffset(new float[HQ], 1);
      ctx.backward(atOffset(p.q, 1), atOffset(p.k, 2), atOffset(p.v, 0), HQ, HKV, D, mask, null,
          atOffset(p.out, 5), atOffset(p.lse, 4), atOffset(p.dout, 7), null, null, dv, dslopes);
      assertEquals("positions are left alone", 3, dv.position());
      assertArrayEquals(p.dv, contents(dv), 0);
      assertArrayEquals(p.dslopes, contents(dslopes), 0);
    }
  }

  @Test
  public void bf16BackwardMatchesTheDoubleReference() {
    Problem p;
    short[] q, k, v, out, dout;
    short[] dq = new short[TQ * HQ * D], dk = new short[TK * HKV * D], dv = new short[dk.length];
    float[] lse = new float[HQ * TQ], dslopes = poisoned(HQ);
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      p = new Problem(ctx, mask, null, HQ);
      q = bf16(p.q);
      k = bf16(p.k);
      v = bf16(p.v);
      dout = bf16(p.dout);
      out = new short[q.length];
      ctx.forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, out, lse);
      Arrays.fill(dq, (short) 0x7FC0);  // bf16 NaN: each element must be written
      Arrays.fill(dk, (short) 0x7FC0);
      Arrays.fill(dv, (short) 0x7FC0);
      ctx.backward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, out, lse, dout, dq, dk, dv,
                   dslopes);
    }
    Reference.Gradients expected = Reference.varlenCausalBackward(floats(q), floats(k),
        floats(v), floats(dout), CU_Q, CU_K, HQ, HKV, D, Reference.formulaSlopes(HQ, SEQUENCES));
    assertClose("dq", expected.dq, floats(dq), 2e-2);
    assertClose("dk", expected.dk, floats(dk), 2e-2);
    assertClose("dv", expected.dv, floats(dv), 2e-2);
    assertClose("dslopes", expected.sharedDslopes(HQ), dslopes, 2e-2);
  }

  @Test
  public void failedBackwardNamesTheArgumentAndWritesNothing() {
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true)) {
      Problem p = new Problem(ctx, mask, null, HQ);
      float[] dkRowShort = poisoned((TK - 1) * HKV * D);
      assertBlames("dk", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out, p.lse,
          p.dout, p.dq, dkRowShort, p.dv, p.dslopes));
      assertBlames("dslopes", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out,
          p.lse, p.dout, p.dq, p.dk, p.dv, poisoned(HQ + 1)));
      assertBlames("dout", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out, p.lse,
          Arrays.copyOf(p.dout, p.dout.length - D), p.dq, p.dk, p.dv, p.dslopes));
      assertFails(Status.SHAPE_MISMATCH, "alibi_binding_backward_f32: dq has 575 elements, "
          + "expected 576 = the mask's total_q 9 x heads_q 4 x head_dim 16",
          () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out, p.lse, p.dout,
                             poisoned(p.dq.length - 1), p.dk, p.dv, p.dslopes));
      assertNullNamed("lse", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out, null,
          p.dout, p.dq, p.dk, p.dv, p.dslopes));
      assertNullNamed("dout", () -> ctx.backward(p.q, p.k, p.v, HQ, HKV, D, mask, null, p.out,
          p.lse, null, p.dq, p.dk, p.dv, p.dslopes));
      assertFails(Status.DTYPE_MISMATCH, "alibi_binding_backward_u16: dtype = 0 is not "
          + "ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
          () -> ctx.backward(DType.F32, new short[p.q.length], new short[p.k.length],
              new short[p.v.length], HQ, HKV, D, mask, null, new short[p.q.length], p.lse,
              new short[p.q.length], null, null, null, p.dslopes));
      assertIllegal("dq is a heap buffer", () -> ctx.backward(direct(p.q), direct(p.k),
          direct(p.v), HQ, HKV, D, mask, null, direct(p.out), direct(p.lse), direct(p.dout),
          FloatBuffer.wrap(p.dq), null, null, null));
      assertIllegal("dslopes is read-only", () -> ctx.backward(direct(p.q), direct(p.k),
          direct(p.v), HQ, HKV, D, mask, null, direct(p.out), direct(p.lse), direct(p.dout), null,
          null, null, direct(HQ).asReadOnlyBuffer()));
      assertPoisoned(p.dq, p.dk, p.dv, p.dslopes);
    }
  }

  @Test
  public void backwardWithAClosedOrNullObjectNamesIt() {
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, CU_K, true);
         Tensor q = f32(ctx, null, TQ, HQ, D); Tensor kv = f32(ctx, null, TK, HKV, D);
         Tensor lse = f32(ctx, null, HQ, TQ)) {
      Tensor closed = f32(ctx, null, TK, HKV, D);
      closed.close();
      assertClosed("Tensor is closed (argument dk)",
          () -> ctx.backward(q, kv, kv, mask, null, q, lse, q, null, closed, null, null));
      assertNullNamed("dout",
          () -> ctx.backward(q, kv, kv, mask, null, q, lse, null, q, kv, kv, null));
      assertNullNamed("lse", () -> ctx.backward(q, kv, kv, mask, null, q, null, q, q, null, null,
          null));
      Mask closedMask = Mask.varlen(ctx, CU_Q, CU_K, true);
      closedMask.close();
      float[] x = new float[1];
      assertClosed("Mask is closed (argument mask)", () -> ctx.backward(x, x, x, HQ, HKV, D,
          closedMask, null, x, x, x, null, null, null, null));
    }
    Context closedContext = new Context();
    closedContext.close();
    float[] x = new float[1];
    assertClosed("Context is closed", () -> closedContext.backward(x, x, x, HQ, HKV, D, null,
        null, x, x, x, null, null, null, null));
  }

  private static void assertPoisoned(float[]... arrays) {
    for (float[] a : arrays) {
      for (float x : a) assertTrue("a failed call wrote a gradient", Float.isNaN(x));
    }
  }
}
