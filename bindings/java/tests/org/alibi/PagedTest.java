package org.alibi;

import static org.alibi.AlibiTest.D;
import static org.alibi.AlibiTest.HKV;
import static org.alibi.AlibiTest.HQ;
import static org.alibi.AlibiTest.assertClose;
import static org.alibi.AlibiTest.assertIllegal;
import static org.alibi.AlibiTest.atOffset;
import static org.alibi.AlibiTest.contents;
import static org.alibi.AlibiTest.direct;
import static org.alibi.AlibiTest.random;
import static org.junit.Assert.assertArrayEquals;
import static org.junit.Assert.assertEquals;
import static org.junit.Assert.assertThrows;
import static org.junit.Assert.assertTrue;

import java.nio.FloatBuffer;
import java.util.Arrays;
import org.junit.Test;

/**
 * Context.forwardPaged on a small GQA cache of blocks of 3 tokens, shuffled in a pool of 8: a
 * decode row over 7 keys and a chunk of 4 queries over 10 keys. The array form against the C
 * API's alibi_attention_forward_paged (the tensor form, bitwise) and its alibi_attention_forward
 * on the gathered keys with the causal varlen mask.
 */
public class PagedTest {
  private static final int BLOCK_SIZE = 3, NUM_BLOCKS = 8, MAX_BLOCKS = 4;
  private static final int[] CU_Q = {0, 1, 5};
  private static final int[] SEQLENS_K = {7, 10};
  // Sequence 0 uses 3 blocks (-1: past them, not read), sequence 1 all 4; block 4 is unused.
  private static final int[] BLOCK_TABLE = {5, 0, 7, -1, 2, 6, 1, 3};
  private static final int TQ = CU_Q[2], TK = SEQLENS_K[0] + SEQLENS_K[1];
  private static final int ROW = HKV * D;  // the elements of one key in a cache or gathered

  private final float[] q = random(TQ * HQ * D, 31);
  private final float[] kCache = random(NUM_BLOCKS * BLOCK_SIZE * ROW, 32);
  private final float[] vCache = random(kCache.length, 33);

  /** The keys of each sequence, in order, one after another: what the table names. */
  private static float[] gathered(float[] cache) {
    float[] keys = new float[TK * ROW];
    int key = 0;
    for (int b = 0; b < SEQLENS_K.length; ++b) {
      for (int t = 0; t < SEQLENS_K[b]; ++t, ++key) {
        int block = BLOCK_TABLE[b * MAX_BLOCKS + t / BLOCK_SIZE];
        System.arraycopy(cache, (block * BLOCK_SIZE + t % BLOCK_SIZE) * ROW, keys, key * ROW, ROW);
      }
    }
    return keys;
  }

  private static float[] poisoned(int n) {
    float[] x = new float[n];
    Arrays.fill(x, Float.NaN);
    return x;
  }

  private void forwardPaged(Context ctx, int[] blockTable, float[] out, float[] lse) {
    ctx.forwardPaged(q, kCache, vCache, HQ, HKV, D, BLOCK_SIZE, blockTable, CU_Q, SEQLENS_K, true,
                     -1, null, out, lse);
  }

  @Test
  public void pagedForwardEqualsTheCCallsOnTheSameData() {
    float[] out = poisoned(q.length), lse = poisoned(HQ * TQ);
    float[] cOut = new float[q.length], cLse = new float[HQ * TQ];
    float[] contiguousOut = new float[q.length], contiguousLse = new float[HQ * TQ];
    int[] cuK = {0, SEQLENS_K[0], TK};
    try (Context ctx = new Context(); Mask mask = Mask.varlen(ctx, CU_Q, cuK, true);
         Tensor tq = Tensor.create(ctx, DType.F32, TQ, HQ, D).copyFrom(q);
         Tensor tk = Tensor.create(ctx, DType.F32, NUM_BLOCKS, BLOCK_SIZE, HKV, D).copyFrom(kCache);
         Tensor tv = Tensor.create(ctx, DType.F32, NUM_BLOCKS, BLOCK_SIZE, HKV, D).copyFrom(vCache);
         Tensor table = Tensor.create(ctx, DType.I32, 2, MAX_BLOCKS).copyFrom(BLOCK_TABLE);
         Tensor cuQ = Tensor.create(ctx, DType.I32, 3).copyFrom(CU_Q);
         Tensor seqlensK = Tensor.create(ctx, DType.I32, 2).copyFrom(SEQLENS_K);
         Tensor tout = Tensor.create(ctx, DType.F32, TQ, HQ, D);
         Tensor tlse = Tensor.create(ctx, DType.F32, HQ, TQ)) {
      forwardPaged(ctx, BLOCK_TABLE, out, lse);
      ctx.forwardPaged(tq, tk, tv, table, cuQ, seqlensK, true, -1, null, tout, tlse);
      tout.copyTo(cOut);
      tlse.copyTo(cLse);
      ctx.forward(q, gathered(kCache), gathered(vCache), HQ, HKV, D, mask, null, contiguousOut,
                  contiguousLse);
    }
    assertArrayEquals(cOut, out, 0);
    assertArrayEquals(cLse, lse, 0);
    assertClose("out", contiguousOut, out, 1e-5);
    assertClose("lse", contiguousLse, lse, 1e-5);
  }

  @Test
  public void floatBufferFormEqualsTheArrayFormBitwise() {
    float[] out = poisoned(q.length), lse = poisoned(HQ * TQ);
    FloatBuffer outBuffer = atOffset(poisoned(q.length), 3);
    FloatBuffer lseBuffer = atOffset(poisoned(HQ * TQ), 5);
    FloatBuffer kBuffer = atOffset(kCache, 2), vBuffer = atOffset(vCache, 0);
    try (Context ctx = new Context()) {
      forwardPaged(ctx, BLOCK_TABLE, out, lse);
      ctx.forwardPaged(atOffset(q, 1), kBuffer, vBuffer, HQ, HKV, D, BLOCK_SIZE, BLOCK_TABLE, CU_Q,
                       SEQLENS_K, true, -1, null, outBuffer, lseBuffer);
      assertIllegal("kCache is a heap buffer", () -> ctx.forwardPaged(atOffset(q, 0),
          FloatBuffer.wrap(kCache), vBuffer, HQ, HKV, D, BLOCK_SIZE, BLOCK_TABLE, CU_Q, SEQLENS_K,
          true, -1, null, outBuffer, null));
    }
    assertEquals("positions are left alone", 3, outBuffer.position());
    assertArrayEquals(out, contents(outBuffer), 0);
    assertArrayEquals(lse, contents(lseBuffer), 0);
  }

  /** An empty batch succeeds in every form, as alibi_attention_forward_paged does with B = 0. */
  @Test
  public void noSequencesSucceedAsTheCCall() {
    int[] none = {}, cuQ = {0};
    try (Context ctx = new Context();
         Tensor empty = Tensor.create(ctx, DType.F32, 0, HQ, D);
         Tensor tk = Tensor.create(ctx, DType.F32, NUM_BLOCKS, BLOCK_SIZE, HKV, D).copyFrom(kCache);
         Tensor table = Tensor.create(ctx, DType.I32, 0, MAX_BLOCKS);
         Tensor tCuQ = Tensor.create(ctx, DType.I32, 1).copyFrom(cuQ);
         Tensor seqlensK = Tensor.create(ctx, DType.I32, 0)) {
      ctx.forwardPaged(empty, tk, tk, table, tCuQ, seqlensK, true, -1, null, empty, null);
      ctx.forwardPaged(new float[0], kCache, vCache, HQ, HKV, D, BLOCK_SIZE, none, cuQ, none, true,
                       -1, null, new float[0], new float[0]);
      ctx.forwardPaged(DType.BF16, new short[0], new short[kCache.length],
                       new short[kCache.length], HQ, HKV, D, BLOCK_SIZE, none, cuQ, none, false, 2,
                       null, new short[0], null);
      ctx.forwardPaged(direct(0), direct(kCache), direct(vCache), HQ, HKV, D, BLOCK_SIZE, none, cuQ,
                       none, true, -1, null, direct(0), direct(0));
      AlibiException e = assertThrows(AlibiException.class,
          () -> ctx.forwardPaged(new float[0], kCache, vCache, HQ, HKV, D, BLOCK_SIZE,
                                 new int[] {5, 0}, cuQ, none, true, -1, null, new float[0], null));
      assertEquals(Status.SHAPE_MISMATCH, e.getStatus());
      assertEquals("alibi_binding_forward_paged_f32: block_table has 2 elements, expected 0 = "
          + "seqlens_k's length 0", e.getDetail());
    }
  }

  @Test
  public void aBlockOutsideThePoolIsAnInvalidArgumentNamingTheSequence() {
    int[] blockTable = BLOCK_TABLE.clone();
    blockTable[MAX_BLOCKS + 2] = NUM_BLOCKS;
    float[] out = poisoned(q.length);
    try (Context ctx = new Context()) {
      AlibiException e = assertThrows(AlibiException.class,
          () -> forwardPaged(ctx, blockTable, out, null));
      assertEquals(Status.INVALID_ARGUMENT, e.getStatus());
      assertTrue(e.getDetail(), e.getDetail().contains(
          "sequence 1: block_table[1][2] = 8 is outside [0, num_blocks = 8)"));
    }
    assertArrayEquals("nothing is written", poisoned(q.length), out, 0);
  }
}
