using System;
using System.Linq;

namespace Alibi.Tests {

/// <summary>
/// Context.ForwardPaged on a small GQA cache of blocks of 3 tokens, shuffled in a pool of 8: a
/// decode row over 7 keys and a chunk of 4 queries over 10 keys. The array form against the C
/// API's alibi_attention_forward_paged (the tensor form, bitwise) and its alibi_attention_forward
/// on the gathered keys with the causal varlen mask.
/// </summary>
public static partial class AlibiTests {
  private const int BlockSize = 3, NumBlocks = 8, MaxBlocks = 4, KeyRow = HKV * D;
  private static readonly int[] PagedCuQ = {0, 1, 5};
  private static readonly int[] SeqlensK = {7, 10};
  // Sequence 0 uses 3 blocks (-1: past them, not read), sequence 1 all 4; block 4 is unused.
  private static readonly int[] BlockTable = {5, 0, 7, -1, 2, 6, 1, 3};
  private static readonly int PagedTq = PagedCuQ[2], PagedTk = SeqlensK.Sum();
  private static readonly float[] PagedQ = Random(PagedTq * HQ * D, 31);
  private static readonly float[] KCache = Random(NumBlocks * BlockSize * KeyRow, 32);
  private static readonly float[] VCache = Random(NumBlocks * BlockSize * KeyRow, 33);

  /// <summary>The keys of each sequence, in order, one after another: what the table names.</summary>
  private static float[] Gathered(float[] cache) {
    var keys = new float[PagedTk * KeyRow];
    int key = 0;
    for (int b = 0; b < SeqlensK.Length; ++b) {
      for (int t = 0; t < SeqlensK[b]; ++t, ++key) {
        int block = BlockTable[b * MaxBlocks + t / BlockSize];
        Array.Copy(cache, (block * BlockSize + t % BlockSize) * KeyRow, keys, key * KeyRow, KeyRow);
      }
    }
    return keys;
  }

  private static void ForwardPaged(Context ctx, int[] blockTable, float[] output, float[] lse) =>
      ctx.ForwardPaged(PagedQ, KCache, VCache, HQ, HKV, D, BlockSize, blockTable, PagedCuQ,
                       SeqlensK, true, -1, null, output, lse);

  private static void PagedForwardEqualsTheCCallsOnTheSameData() {
    float[] output = Poisoned(PagedQ.Length), lse = Poisoned(HQ * PagedTq);
    float[] cOutput = new float[PagedQ.Length], cLse = new float[HQ * PagedTq];
    float[] contiguousOutput = new float[PagedQ.Length], contiguousLse = new float[HQ * PagedTq];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, PagedCuQ, new[] {0, SeqlensK[0], PagedTk}, true))
    using (var q = Tensor.Create(ctx, DType.F32, PagedTq, HQ, D).CopyFrom(PagedQ))
    using (var k = Tensor.Create(ctx, DType.F32, NumBlocks, BlockSize, HKV, D).CopyFrom(KCache))
    using (var v = Tensor.Create(ctx, DType.F32, NumBlocks, BlockSize, HKV, D).CopyFrom(VCache))
    using (var table = Tensor.Create(ctx, DType.I32, 2, MaxBlocks).CopyFrom(BlockTable))
    using (var cuQ = Tensor.Create(ctx, DType.I32, 3).CopyFrom(PagedCuQ))
    using (var seqlensK = Tensor.Create(ctx, DType.I32, 2).CopyFrom(SeqlensK))
    using (var tOutput = Tensor.Create(ctx, DType.F32, PagedTq, HQ, D))
    using (var tLse = Tensor.Create(ctx, DType.F32, HQ, PagedTq)) {
      ForwardPaged(ctx, BlockTable, output, lse);
      ctx.ForwardPaged(q, k, v, table, cuQ, seqlensK, true, -1, null, tOutput, tLse);
      tOutput.CopyTo(cOutput);
      tLse.CopyTo(cLse);
      ctx.Forward(PagedQ, Gathered(KCache), Gathered(VCache), HQ, HKV, D, mask, null,
                  contiguousOutput, contiguousLse);
    }
    Check(cOutput.SequenceEqual(output), "the array form's output differs from the tensor form's");
    Check(cLse.SequenceEqual(lse), "the array form's lse differs from the tensor form's");
    AssertClose("output", contiguousOutput, output, 1e-5);
    AssertClose("lse", contiguousLse, lse, 1e-5);
  }

  /// <summary>An empty batch succeeds in every form, as alibi_attention_forward_paged does with B = 0.</summary>
  private static void NoSequencesSucceedAsTheCCall() {
    int[] none = {}, cuQ = {0};
    using (var ctx = new Context())
    using (var empty = Tensor.Create(ctx, DType.F32, 0, HQ, D))
    using (var k = Tensor.Create(ctx, DType.F32, NumBlocks, BlockSize, HKV, D).CopyFrom(KCache))
    using (var table = Tensor.Create(ctx, DType.I32, 0, MaxBlocks))
    using (var tCuQ = Tensor.Create(ctx, DType.I32, 1).CopyFrom(cuQ))
    using (var seqlensK = Tensor.Create(ctx, DType.I32, 0)) {
      ctx.ForwardPaged(empty, k, k, table, tCuQ, seqlensK, true, -1, null, empty, null);
      ctx.ForwardPaged(new float[0], KCache, VCache, HQ, HKV, D, BlockSize, none, cuQ, none, true,
                       -1, null, new float[0], new float[0]);
      ctx.ForwardPaged(DType.BF16, new ushort[0], new ushort[KCache.Length],
                       new ushort[KCache.Length], HQ, HKV, D, BlockSize, none, cuQ, none, false, 2,
                       null, new ushort[0], null);
      AssertFails(Status.ShapeMismatch,
                  "alibi_binding_forward_paged_f32: block_table has 2 elements, expected 0 = seqlens_k's length 0",
                  () => ctx.ForwardPaged(new float[0], KCache, VCache, HQ, HKV, D, BlockSize,
                                         new[] {5, 0}, cuQ, none, true, -1, null, new float[0], null));
    }
  }

  private static void ABlockOutsideThePoolIsAnInvalidArgumentNamingTheSequence() {
    int[] blockTable = (int[])BlockTable.Clone();
    blockTable[MaxBlocks + 2] = NumBlocks;
    float[] output = Poisoned(PagedQ.Length);
    using (var ctx = new Context()) {
      try {
        ForwardPaged(ctx, blockTable, output, null);
      } catch (AlibiException e) {
        Check(e.Status == Status.InvalidArgument, "status " + e.Status);
        Check(e.Detail.Contains("sequence 1: block_table[1][2] = 8 is outside [0, num_blocks = 8)"),
              e.Detail);
        Check(output.All(float.IsNaN), "a failed paged forward wrote output");
        return;
      }
      throw new Exception("a block id outside the pool accepted");
    }
  }
}

}
