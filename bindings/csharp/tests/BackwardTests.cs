using System;
using System.Linq;

namespace Alibi.Tests {

/// <summary>
/// Context.Backward in each form, on the causal varlen GQA batch of the forward tests (prefill,
/// chunked prefill, decode): against Reference's double-precision gradients, and the array and
/// span forms against the tensor form (the C API's alibi_attention_backward itself).
/// </summary>
public static partial class AlibiTests {
  private static readonly int Tq = CuQ[3], Tk = CuK[3], Sequences = CuQ.Length - 1;

  /// <summary>Forward results of random q, k, v, a random dOutput, and NaN-poisoned gradients.</summary>
  private sealed class BackwardProblem {
    public readonly float[] Q = Random(Tq * HQ * D, 21), K = Random(Tk * HKV * D, 22);
    public readonly float[] V = Random(Tk * HKV * D, 23), DOutput = Random(Tq * HQ * D, 24);
    public readonly float[] Output = new float[Tq * HQ * D], Lse = new float[HQ * Tq];
    public readonly float[] Dq = Poisoned(Tq * HQ * D), Dk = Poisoned(Tk * HKV * D);
    public readonly float[] Dv = Poisoned(Tk * HKV * D), DSlopes;

    public BackwardProblem(Context ctx, Mask mask, AttentionParams parameters, int slopeGradients) {
      ctx.Forward(Q, K, V, HQ, HKV, D, mask, parameters, Output, Lse);
      DSlopes = Poisoned(slopeGradients);
    }

    public void Backward(Context ctx, Mask mask, AttentionParams parameters) =>
        ctx.Backward(Q, K, V, HQ, HKV, D, mask, parameters, Output, Lse, DOutput, Dq, Dk, Dv, DSlopes);

    public Reference.Gradients Reference(double[] slopes) =>
        Tests.Reference.VarlenCausalBackward(Q, K, V, DOutput, CuQ, CuK, HQ, HKV, D, slopes);

    public void AssertGradients(Reference.Gradients expected, double[] expectedDSlopes) {
      AssertClose("dq", expected.Dq, Dq, 1e-4);
      AssertClose("dk", expected.Dk, Dk, 1e-4);
      AssertClose("dv", expected.Dv, Dv, 1e-4);
      AssertClose("dslopes", expectedDSlopes, DSlopes, 1e-4);
    }
  }

  private static float[] Poisoned(int n) => Enumerable.Repeat(float.NaN, n).ToArray();

  private static void VarlenCausalGqaBackwardMatchesTheDoubleReference() {
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, null, HQ);
      p.Backward(ctx, mask, null);
      var expected = p.Reference(Reference.FormulaSlopes(HQ, Sequences));
      p.AssertGradients(expected, expected.SharedDSlopes(HQ));
    }
  }

  private static void PerSequenceSlopesHaveOneGradientPerSequenceAndHead() {
    float[] slopes = Enumerable.Range(1, Sequences * HQ).Select(i => 0.05f * i).ToArray();
    var parameters = new AttentionParams { Slopes = slopes, SlopesPerBatch = true };
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, parameters, Sequences * HQ);
      p.Backward(ctx, mask, parameters);
      var expected = p.Reference(slopes.Select(x => (double)x).ToArray());
      p.AssertGradients(expected, expected.DSlopes);
      AssertBlames("dslopes", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, parameters, p.Output,
                                                 p.Lse, p.DOutput, null, null, null, new float[(Sequences - 1) * HQ]));
    }
  }

  private static Tensor F32(Context ctx, float[] data, params long[] shape) {
    var t = Tensor.Create(ctx, DType.F32, shape);
    return data == null ? t : t.CopyFrom(data);
  }

  /// <summary>The tensor form is the C API's call; the array forms wrap the same memory, so agree bitwise.</summary>
  private static void TensorBackwardEqualsTheArrayFormBitwise() {
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, null, HQ);
      p.Backward(ctx, mask, null);
      float[] dq = new float[p.Dq.Length], dk = new float[p.Dk.Length], dv = new float[p.Dv.Length];
      var dslopes = new float[HQ];
      using (var q = F32(ctx, p.Q, Tq, HQ, D))
      using (var k = F32(ctx, p.K, Tk, HKV, D))
      using (var v = F32(ctx, p.V, Tk, HKV, D))
      using (var output = F32(ctx, p.Output, Tq, HQ, D))
      using (var lse = F32(ctx, p.Lse, HQ, Tq))
      using (var dOutput = F32(ctx, p.DOutput, Tq, HQ, D))
      using (var tdq = F32(ctx, null, Tq, HQ, D))
      using (var tdk = F32(ctx, null, Tk, HKV, D))
      using (var tdv = F32(ctx, null, Tk, HKV, D))
      using (var tds = F32(ctx, null, HQ)) {
        ctx.Backward(q, k, v, mask, null, output, lse, dOutput, tdq, tdk, tdv, tds);
        tdq.CopyTo(dq);
        tdk.CopyTo(dk);
        tdv.CopyTo(dv);
        tds.CopyTo(dslopes);
      }
      Check(dq.SequenceEqual(p.Dq), "tensor dq differs from the array form's");
      Check(dk.SequenceEqual(p.Dk), "tensor dk differs from the array form's");
      Check(dv.SequenceEqual(p.Dv), "tensor dv differs from the array form's");
      Check(dslopes.SequenceEqual(p.DSlopes), "tensor dslopes differ from the array form's");
    }
  }

  private static void SpanBackwardEqualsTheArrayFormAndSkipsEmptyGradients() {
    const int pad = 3;
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, null, HQ);
      p.Backward(ctx, mask, null);
      float[] dv = new float[p.Dv.Length + pad], dslopes = new float[HQ + pad];
      ctx.Backward(Padded(p.Q, pad).AsSpan(pad), Padded(p.K, pad).AsSpan(pad), p.V, HQ, HKV, D, mask,
                   null, p.Output, Padded(p.Lse, pad).AsSpan(pad), p.DOutput, Span<float>.Empty,
                   default(Span<float>), dv.AsSpan(pad), dslopes.AsSpan(pad));
      Check(dv.Skip(pad).SequenceEqual(p.Dv), "span dv differs from the array form's");
      Check(dslopes.Skip(pad).SequenceEqual(p.DSlopes), "span dslopes differ from the array form's");
      Check(dv.Take(pad).All(x => x == 0), "the span form wrote before its slice");
    }
  }

  private static void Bf16BackwardMatchesTheDoubleReference() {
    ushort[] q, k, v, output, dOutput;
    ushort[] dq = new ushort[Tq * HQ * D], dk = new ushort[Tk * HKV * D], dv = new ushort[dk.Length];
    float[] lse = new float[HQ * Tq], dslopes = Poisoned(HQ);
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, null, HQ);
      q = Bf16(p.Q);
      k = Bf16(p.K);
      v = Bf16(p.V);
      dOutput = Bf16(p.DOutput);
      output = new ushort[q.Length];
      ctx.Forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, output, lse);
      foreach (ushort[] gradient in new[] {dq, dk, dv}) Array.Fill(gradient, (ushort)0x7FC0);  // bf16 NaN
      ctx.Backward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, output, lse, dOutput, dq, dk, dv, dslopes);
    }
    var expected = Reference.VarlenCausalBackward(Floats(q), Floats(k), Floats(v), Floats(dOutput), CuQ, CuK,
                                                  HQ, HKV, D, Reference.FormulaSlopes(HQ, Sequences));
    AssertClose("dq", expected.Dq, Floats(dq), 2e-2);
    AssertClose("dk", expected.Dk, Floats(dk), 2e-2);
    AssertClose("dv", expected.Dv, Floats(dv), 2e-2);
    AssertClose("dslopes", expected.SharedDSlopes(HQ), dslopes, 2e-2);
  }

  private static void FailedBackwardNamesTheArgumentAndWritesNothing() {
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      var p = new BackwardProblem(ctx, mask, null, HQ);
      AssertBlames("dk", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, p.Lse, p.DOutput,
                                            p.Dq, Poisoned((Tk - 1) * HKV * D), p.Dv, p.DSlopes));
      AssertBlames("dslopes", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, p.Lse,
                                                 p.DOutput, p.Dq, p.Dk, p.Dv, Poisoned(HQ + 1)));
      AssertBlames("dout", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, p.Lse,
                                              p.DOutput.Take(p.DOutput.Length - D).ToArray(), p.Dq, p.Dk,
                                              p.Dv, p.DSlopes));
      AssertFails(Status.ShapeMismatch, "alibi_binding_backward_f32: dq has 575 elements, expected 576 = " +
                  "the mask's total_q 9 x heads_q 4 x head_dim 16",
                  () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, p.Lse, p.DOutput,
                                     Poisoned(p.Dq.Length - 1), p.Dk, p.Dv, p.DSlopes));
      AssertFails(Status.NullPointer, "alibi_binding_backward_f32: lse is NULL",
                  () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, ReadOnlySpan<float>.Empty,
                                     p.DOutput, p.Dq, p.Dk, p.Dv, p.DSlopes));
      AssertNullArgument("lse", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output, null,
                                                   p.DOutput, p.Dq, p.Dk, p.Dv, p.DSlopes));
      AssertNullArgument("dOutput", () => ctx.Backward(p.Q, p.K, p.V, HQ, HKV, D, mask, null, p.Output,
                                                       p.Lse, null, p.Dq, p.Dk, p.Dv, p.DSlopes));
      AssertFails(Status.DTypeMismatch,
                  "alibi_binding_backward_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
                  () => ctx.Backward(DType.F32, new ushort[p.Q.Length], new ushort[p.K.Length],
                                     new ushort[p.V.Length], HQ, HKV, D, mask, null, new ushort[p.Q.Length],
                                     p.Lse, new ushort[p.Q.Length], null, null, null, p.DSlopes));
      foreach (float[] gradient in new[] {p.Dq, p.Dk, p.Dv, p.DSlopes})
        Check(gradient.All(float.IsNaN), "a failed backward wrote a gradient");
    }
  }

  private static void BackwardWithADisposedOrNullObjectNamesIt() {
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true))
    using (var q = F32(ctx, null, Tq, HQ, D))
    using (var kv = F32(ctx, null, Tk, HKV, D))
    using (var lse = F32(ctx, null, HQ, Tq)) {
      var disposed = F32(ctx, null, Tk, HKV, D);
      disposed.Dispose();
      AssertDisposed("Tensor", "dk", () => ctx.Backward(q, kv, kv, mask, null, q, lse, q, null, disposed, null, null));
      AssertNullArgument("dOutput", () => ctx.Backward(q, kv, kv, mask, null, q, lse, null, q, kv, kv, null));
      AssertNullArgument("lse", () => ctx.Backward(q, kv, kv, mask, null, q, null, q, q, null, null, null));
      var disposedMask = Mask.Varlen(ctx, CuQ, CuK, true);
      disposedMask.Dispose();
      var x = new float[1];
      AssertDisposed("Mask", "mask", () => ctx.Backward(x, x, x, HQ, HKV, D, disposedMask, null, x, x, x,
                                                        null, null, null, null));
    }
    var disposedContext = new Context();
    disposedContext.Dispose();
    var y = new float[1];
    AssertDisposed("Context", null, () => disposedContext.Backward(y, y, y, HQ, HKV, D, null, null, y, y, y,
                                                                   null, null, null, null));
  }
}

}
