using System;
using System.IO;
using System.Linq;
using System.Reflection;
using System.Text.RegularExpressions;

namespace Alibi.Tests {

/// <summary>A console harness: runs every test, prints each result, exits non-zero on a failure.</summary>
public static partial class AlibiTests {
  private const int HQ = 4, HKV = 2, D = 16;
  // prefill 5x5, chunked prefill 3 queries over 7 keys, decode 1 query over 4 keys
  private static readonly int[] CuQ = {0, 5, 8, 9};
  private static readonly int[] CuK = {0, 5, 12, 16};
  // Slices over T tokens: 0 and 1 hold keys [0, 4), slice 2 keys [4, 12), where queries 0..3 see
  // no key.
  private const int T = 12;
  private static readonly int[] QRanges = {0, 4, 4, 12, 4, 12};
  private static readonly int[] KRanges = {0, 4, 0, 4, 4, 12};
  private static readonly MaskType[] Types = {MaskType.Causal, MaskType.Full, MaskType.Causal};

  public static int Main() {
    Action[] tests = {
      VarlenCausalForwardMatchesReference, ArrayWrappingTensorsMatchReference,
      RangesForwardMatchesReference, Bf16ForwardMatchesReference,
      InvalidCallThrowsWithTheLibraryMessage, RawCallsThrowTheirStatusAndMessage,
      ArrayForwardNamesTheArgumentThatDoesNotFit, MergingTheTwoKeySidesEqualsOneForward,
      TensorMergeEqualsOneForward, Bf16MergeOfTheTwoKeySidesEqualsOneForward,
      ASideWhoseLseIsMinusInfinityContributesNothing, ArrayMergeNamesTheArgumentThatDoesNotFit,
      SpanFormsMatchTheArrayForms, Bf16SpanFormsMatchTheArrayForms,
      TensorMergeOfADisposedTensorNamesIt, DisposedObjectsThrowObjectDisposedException,
      NullArgumentsThrowArgumentNullException, DisposingTwiceIsHarmless,
      OnlyTheIdiomaticApiIsPublic, AssemblyVersionIsTheLibraryVersion,
      FinalizerReleasesUndisposedHandles, TenThousandCyclesKeepMemoryStable,
      UndisposedCyclesStayBoundedInThreadsAndMemory,
      VarlenCausalGqaBackwardMatchesTheDoubleReference, PerSequenceSlopesHaveOneGradientPerSequenceAndHead,
      TensorBackwardEqualsTheArrayFormBitwise, SpanBackwardEqualsTheArrayFormAndSkipsEmptyGradients,
      Bf16BackwardMatchesTheDoubleReference, FailedBackwardNamesTheArgumentAndWritesNothing,
      BackwardWithADisposedOrNullObjectNamesIt, PagedForwardEqualsTheCCallsOnTheSameData,
      ABlockOutsideThePoolIsAnInvalidArgumentNamingTheSequence, NoSequencesSucceedAsTheCCall,
    };
    int failed = 0;
    foreach (Action test in tests) {
      try {
        test();
        Console.WriteLine("PASS " + test.Method.Name);
      } catch (Exception e) {
        ++failed;
        Console.WriteLine("FAIL " + test.Method.Name + ": " + e);
      }
    }
    Console.WriteLine($"{tests.Length - failed} of {tests.Length} tests passed");
    return failed == 0 ? 0 : 1;
  }

  private static void VarlenCausalForwardMatchesReference() {
    int tq = CuQ[3], tk = CuK[3];
    float[] q = Random(tq * HQ * D, 1), k = Random(tk * HKV * D, 2), v = Random(tk * HKV * D, 3);
    float[] output = new float[q.Length], lse = new float[HQ * tq];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      ctx.Forward(q, k, v, HQ, HKV, D, mask, null, output, lse);
    }
    var reference = Reference.VarlenCausal(q, k, v, CuQ, CuK, HQ, HKV, D);
    AssertClose("output", reference.Out, output, 1e-4);
    AssertClose("lse", reference.Lse, lse, 1e-4);
  }

  private static void ArrayWrappingTensorsMatchReference() {
    int tq = CuQ[3], tk = CuK[3];
    float[] q = Random(tq * HQ * D, 4), k = Random(tk * HKV * D, 5), v = Random(tk * HKV * D, 6);
    var output = new float[q.Length];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true))
    using (var tq3 = Tensor.Wrap(ctx, q, tq, HQ, D))
    using (var tk3 = Tensor.Create(ctx, DType.F32, tk, HKV, D).CopyFrom(k))
    using (var tv3 = Tensor.Wrap(ctx, v, tk, HKV, D))
    using (var to3 = Tensor.Wrap(ctx, output, tq, HQ, D)) {
      ctx.Forward(tq3, tk3, tv3, mask, new AttentionParams(), to3, null);
    }
    AssertClose("output", Reference.VarlenCausal(q, k, v, CuQ, CuK, HQ, HKV, D).Out, output, 1e-4);
  }

  private static void RangesForwardMatchesReference() {
    float[] q = Random(T * HQ * D, 7), k = Random(T * HKV * D, 8), v = Random(T * HKV * D, 9);
    float[] output = new float[q.Length], lse = new float[HQ * T];
    using (var ctx = new Context())
    using (var mask = Slices(ctx, 0, 3)) {
      Check(mask.NumSlices == 3, "3 slices");
      ctx.Forward(q, k, v, HQ, HKV, D, mask, new AttentionParams { MaxBias = 8 }, output, lse);
    }
    var reference = Reference.Ranges(q, k, v, QRanges, KRanges, Types, T, T, HQ, HKV, D);
    AssertClose("output", reference.Out, output, 1e-4);
    AssertClose("lse", reference.Lse, lse, 1e-4);
  }

  private static void Bf16ForwardMatchesReference() {
    int tq = CuQ[3], tk = CuK[3];
    ushort[] q = Bf16(Random(tq * HQ * D, 10)), k = Bf16(Random(tk * HKV * D, 11));
    ushort[] v = Bf16(Random(tk * HKV * D, 12)), output = new ushort[q.Length];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      ctx.Forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, output, null);
    }
    var reference = Reference.VarlenCausal(Floats(q), Floats(k), Floats(v), CuQ, CuK, HQ, HKV, D);
    AssertClose("output", reference.Out, Floats(output), 1e-2);
  }

  private static void InvalidCallThrowsWithTheLibraryMessage() {
    using (var ctx = new Context()) {
      try {
        Mask.Varlen(ctx, new[] {0, 4, 2}, new[] {0, 4, 6}, true);
      } catch (AlibiException e) {
        Check(e.Status == Status.InvalidArgument, "status " + e.Status);
        Check(e.Detail.StartsWith("alibi_mask_create_varlen: ", StringComparison.Ordinal), e.Detail);
        Check(e.Message.StartsWith("invalid argument: alibi_mask_create_varlen", StringComparison.Ordinal), e.Message);
        return;
      }
      throw new Exception("decreasing cu_seqlens_q accepted");
    }
  }

  private static void AssertFails(Status status, string detail, Action call) {
    try {
      call();
    } catch (AlibiException e) {
      Check(e.Detail == detail, $"detail \"{e.Detail}\", expected \"{detail}\"");
      Check(e.Status == status, $"status {e.Status}, expected {status}");
      return;
    }
    throw new Exception("no AlibiException, expected " + detail);
  }

  private static void RawCallsThrowTheirStatusAndMessage() {
    AlibiNative.alibi_context_create(Device.Cpu, 0, out ContextHandle owner);
    IntPtr ctx = owner.DangerousGetHandle();
    try {
      AssertFails(Status.InvalidArgument, "alibi_context_set_num_threads: num_threads = -1 is outside [0, 1024]",
                  () => AlibiNative.alibi_context_set_num_threads(ctx, -1));
      AssertFails(Status.NullPointer, "alibi_attention_merge: out_a is NULL",
                  () => AlibiNative.alibi_attention_merge(ctx, IntPtr.Zero, IntPtr.Zero, IntPtr.Zero,
                                                          IntPtr.Zero, IntPtr.Zero, IntPtr.Zero));
    } finally {
      owner.Dispose();
    }
    using (var p = new alibi_attention_params()) {
      AssertFails(Status.InvalidArgument, "alibi_attention_params_set_slopes: count = -1 is negative",
                  () => p.SetSlopes(new float[1], -1));
    }
    // The binding's own message above is not read again for the library's next failure.
    AssertFails(Status.NullPointer, "alibi_context_synchronize: ctx is NULL",
                () => AlibiNative.alibi_context_synchronize(IntPtr.Zero));
  }

  /// <summary>
  /// The library's message names the argument whose length does not fit: ": k has ..." or
  /// ": k.shape[0] = ...", whichever check finds it (asserted by name, not by whole text).
  /// </summary>
  private static void AssertBlames(string argument, Action call) {
    try {
      call();
    } catch (AlibiException e) {
      Check(e.Status == Status.ShapeMismatch, $"status {e.Status}: {e.Detail}");
      Match blamed = Regex.Match(e.Detail, @": (\w+)(\.shape\[\d\]| has )");
      Check(blamed.Success && blamed.Groups[1].Value == argument,
            $"\"{e.Detail}\" names {(blamed.Success ? blamed.Groups[1].Value : "no argument")}, expected {argument}");
      return;
    }
    throw new Exception("no AlibiException, expected one naming " + argument);
  }

  private static void AssertNullArgument(string paramName, Action call) {
    try {
      call();
    } catch (ArgumentNullException e) {
      Check(e.ParamName == paramName, $"ParamName {e.ParamName}, expected {paramName}");
      return;
    }
    throw new Exception("no ArgumentNullException, expected one for " + paramName);
  }

  private static void ArrayForwardNamesTheArgumentThatDoesNotFit() {
    int tq = CuQ[3], tk = CuK[3];
    float[] q = new float[tq * HQ * D], kv = new float[tk * HKV * D], output = new float[q.Length];
    float[] lse = new float[HQ * tq], kvRowShort = new float[(tk - 1) * HKV * D];
    float[] outputRowShort = new float[(tq - 1) * HQ * D], lseRowShort = new float[HQ * (tq - 1)];
    float[] kvElementShort = kv.Take(kv.Length - 1).ToArray();
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true)) {
      AssertBlames("k", () => ctx.Forward(q, kvRowShort, kv, HQ, HKV, D, mask, null, output, lse));
      AssertBlames("k", () => ctx.Forward(q, kvElementShort, kv, HQ, HKV, D, mask, null, output, lse));
      AssertBlames("v", () => ctx.Forward(q, kv, kvRowShort, HQ, HKV, D, mask, null, output, lse));
      AssertBlames("q", () => ctx.Forward(outputRowShort, kv, kv, HQ, HKV, D, mask, null, output, lse));
      AssertBlames("out", () => ctx.Forward(q, kv, kv, HQ, HKV, D, mask, null, outputRowShort, lse));
      AssertBlames("lse", () => ctx.Forward(q, kv, kv, HQ, HKV, D, mask, null, output, lseRowShort));
      AssertBlames("lse", () => ctx.Forward(q, kv, kv, HQ, HKV, D, mask, null, output, new float[lse.Length - 1]));
      AssertFails(Status.InvalidArgument,
                  "alibi_binding_forward_f32: heads_q = 0, heads_kv = 2, head_dim = 16; each must be >= 1",
                  () => ctx.Forward(q, kv, kv, 0, HKV, D, mask, null, output, lse));
      AssertFails(Status.InvalidArgument,
                  "alibi_binding_forward_f32: heads_q = 4, heads_kv = 2, head_dim = 0; each must be >= 1",
                  () => ctx.Forward(q, kv, kv, HQ, HKV, 0, mask, null, output, lse));
      AssertFails(Status.DTypeMismatch,
                  "alibi_binding_forward_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
                  () => ctx.Forward(DType.F32, new ushort[q.Length], new ushort[kv.Length],
                                    new ushort[kv.Length], HQ, HKV, D, mask, null, new ushort[q.Length], lse));
    }
    Check(output.All(x => x == 0) && lse.All(x => x == 0), "a failed forward wrote its outputs");
  }

  /// <summary>The mask of slices [from, to): all keys (0, 3), keys [0, 4) (0, 2) or keys [4, 12) (2, 3).</summary>
  private static Mask Slices(Context ctx, int from, int to) =>
      Mask.Ranges(ctx, QRanges.Skip(2 * from).Take(2 * (to - from)).ToArray(),
                  KRanges.Skip(2 * from).Take(2 * (to - from)).ToArray(),
                  Types.Skip(from).Take(to - from).ToArray(), T, T);

  private static readonly float[] SQ = Random(T * HQ * D, 14), SK = Random(T * HKV * D, 15);
  private static readonly float[] SV = Random(T * HKV * D, 16);

  /// <summary>An attention result (tokens T): zeros, or the forward of SQ, SK, SV over some slices.</summary>
  private sealed class Partial {
    public readonly float[] Output = new float[T * HQ * D], Lse = new float[HQ * T];

    public Partial() {}

    public Partial(Context ctx, int from, int to) {
      using (var mask = Slices(ctx, from, to)) ctx.Forward(SQ, SK, SV, HQ, HKV, D, mask, null, Output, Lse);
    }

    public void AssertCloseTo(Partial expected, double tol) {
      AssertClose("output", expected.Output, Output, tol);
      AssertClose("lse", expected.Lse, Lse, tol);
    }
  }

  /// <summary>The forward over all keys, and over the keys of each side: A [0, 4), B [4, 12).</summary>
  private sealed class Split {
    public readonly Partial All, A, B;

    public Split(Context ctx) {
      All = new Partial(ctx, 0, 3);
      A = new Partial(ctx, 0, 2);
      B = new Partial(ctx, 2, 3);
    }
  }

  private static void MergingTheTwoKeySidesEqualsOneForward() {
    using (var ctx = new Context()) {
      var split = new Split(ctx);
      var merged = new Partial();
      Partial a = split.A, b = split.B;
      ctx.Merge(a.Output, a.Lse, b.Output, b.Lse, HQ, D, merged.Output, merged.Lse);
      merged.AssertCloseTo(split.All, 1e-5);
      ctx.Merge(a.Output, a.Lse, b.Output, b.Lse, HQ, D, a.Output, a.Lse);
      a.AssertCloseTo(split.All, 1e-5);
    }
  }

  private static Tensor OutputTensor(Context ctx) => Tensor.Create(ctx, DType.F32, T, HQ, D);
  private static Tensor LseTensor(Context ctx) => Tensor.Create(ctx, DType.F32, HQ, T);

  private static void TensorMergeEqualsOneForward() {
    using (var ctx = new Context()) {
      var split = new Split(ctx);
      var merged = new Partial();
      using (var outputA = OutputTensor(ctx).CopyFrom(split.A.Output))
      using (var lseA = LseTensor(ctx).CopyFrom(split.A.Lse))
      using (var outputB = OutputTensor(ctx).CopyFrom(split.B.Output))
      using (var lseB = LseTensor(ctx).CopyFrom(split.B.Lse))
      using (var output = OutputTensor(ctx)) {
        ctx.Merge(outputA, lseA, outputB, lseB, output, null);
        output.CopyTo(merged.Output);
        AssertClose("output", split.All.Output, merged.Output, 1e-5);
        ctx.Merge(outputA, lseA, outputB, lseB, outputA, lseA);
        outputA.CopyTo(merged.Output);
        lseA.CopyTo(merged.Lse);
        merged.AssertCloseTo(split.All, 1e-5);
      }
    }
  }

  private static void Bf16MergeOfTheTwoKeySidesEqualsOneForward() {
    ushort[] q = Bf16(SQ), k = Bf16(SK), v = Bf16(SV);
    var outputs = new ushort[3][];
    var lses = new float[3][];
    int[][] sides = {new[] {0, 3}, new[] {0, 2}, new[] {2, 3}};
    using (var ctx = new Context()) {
      for (int s = 0; s < 3; ++s) {
        outputs[s] = new ushort[q.Length];
        lses[s] = new float[HQ * T];
        using (var mask = Slices(ctx, sides[s][0], sides[s][1]))
          ctx.Forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, outputs[s], lses[s]);
      }
      ctx.Merge(DType.BF16, outputs[1], lses[1], outputs[2], lses[2], HQ, D, outputs[1], null);
    }
    AssertClose("output", Floats(outputs[0]), Floats(outputs[1]), 1e-2);
  }

  private static void ASideWhoseLseIsMinusInfinityContributesNothing() {
    using (var ctx = new Context()) {
      var a = new Partial(ctx, 0, 3);
      var none = new Partial();
      Array.Fill(none.Output, float.NaN);
      Array.Fill(none.Lse, float.NegativeInfinity);
      var merged = new Partial();
      ctx.Merge(none.Output, none.Lse, a.Output, a.Lse, HQ, D, merged.Output, merged.Lse);
      merged.AssertCloseTo(a, 0);
    }
  }

  private static void ArrayMergeNamesTheArgumentThatDoesNotFit() {
    Partial a = new Partial(), b = new Partial(), output = new Partial();
    var output16 = new ushort[output.Output.Length];
    using (var ctx = new Context()) {
      AssertBlames("lse_b", () => ctx.Merge(a.Output, a.Lse, b.Output, new float[HQ * (T - 1)], HQ, D,
                                            output.Output, output.Lse));
      AssertBlames("lse_b", () => ctx.Merge(a.Output, a.Lse, b.Output, new float[HQ * T - 1], HQ, D,
                                            output.Output, output.Lse));
      AssertBlames("out", () => ctx.Merge(a.Output, a.Lse, b.Output, b.Lse, HQ, D,
                                          new float[(T - 1) * HQ * D], null));
      AssertFails(Status.InvalidArgument, "alibi_binding_merge_f32: heads = 0, head_dim = 16; each must be >= 1",
                  () => ctx.Merge(a.Output, a.Lse, b.Output, b.Lse, 0, D, output.Output, output.Lse));
      AssertFails(Status.DTypeMismatch,
                  "alibi_binding_merge_u16: dtype = 0 is not ALIBI_DTYPE_F16 or ALIBI_DTYPE_BF16 (16-bit data)",
                  () => ctx.Merge(DType.F32, output16, a.Lse, output16, b.Lse, HQ, D, output16, null));
    }
  }

  /// <summary>Forward and merge over spans: slices of larger arrays, in place, as the array forms.</summary>
  private static void SpanFormsMatchTheArrayForms() {
    const int pad = 3;
    float[] q = Padded(SQ, pad), k = Padded(SK, pad), v = Padded(SV, pad);
    float[] lse = new float[HQ * T + pad], output = new float[T * HQ * D + pad];
    using (var ctx = new Context())
    using (var mask = Slices(ctx, 0, 3)) {
      var split = new Split(ctx);
      ctx.Forward(q.AsSpan(pad), k.AsSpan(pad), v.AsSpan(pad), HQ, HKV, D, mask, null,
                  output.AsSpan(pad), lse.AsSpan(pad));
      AssertClose("output", split.All.Output, output.Skip(pad).ToArray(), 0);
      AssertClose("lse", split.All.Lse, lse.Skip(pad).ToArray(), 0);
      Check(output.Take(pad).All(x => x == 0), "the span form wrote before its slice");
      var merged = new Partial();
      ctx.Merge(split.A.Output.AsSpan(), split.A.Lse, split.B.Output, split.B.Lse, HQ, D,
                merged.Output.AsSpan(), Span<float>.Empty);
      AssertClose("merged output", split.All.Output, merged.Output, 1e-5);
      Check(merged.Lse.All(x => x == 0), "an empty lse span was written");
      AssertBlames("k", () => ctx.Forward(q.AsSpan(pad), k.AsSpan(pad + HKV * D), v.AsSpan(pad), HQ, HKV, D,
                                          mask, null, output.AsSpan(pad), lse.AsSpan(pad)));
    }
  }

  private static void Bf16SpanFormsMatchTheArrayForms() {
    ushort[] q = Bf16(SQ), k = Bf16(SK), v = Bf16(SV), expected = new ushort[q.Length];
    var actual = new ushort[q.Length + 1];
    using (var ctx = new Context())
    using (var mask = Slices(ctx, 0, 3)) {
      ctx.Forward(DType.BF16, q, k, v, HQ, HKV, D, mask, null, expected, null);
      ctx.Forward(DType.BF16, q.AsSpan(), k, v, HQ, HKV, D, mask, null, actual.AsSpan(1), default(Span<float>));
      Check(expected.SequenceEqual(actual.Skip(1)), "bf16 span forward differs from the array form");
      ctx.Merge(DType.BF16, expected.AsSpan(), new float[HQ * T], expected, new float[HQ * T], HQ, D,
                actual.AsSpan(1), default(Span<float>));
      Check(actual[0] == 0, "the span merge wrote before its slice");
    }
  }

  private static float[] Padded(float[] x, int pad) => new float[pad].Concat(x).ToArray();

  private static void AssertDisposed(string objectName, string role, Action call) {
    try {
      call();
    } catch (ObjectDisposedException e) {
      Check(e.ObjectName == objectName, $"ObjectName {e.ObjectName}, expected {objectName}");
      Check(role == null || e.Message.StartsWith(role + " is a disposed " + objectName, StringComparison.Ordinal),
            $"message \"{e.Message}\" does not name {role}");
      return;
    }
    throw new Exception($"no ObjectDisposedException for a disposed {objectName}");
  }

  private static void TensorMergeOfADisposedTensorNamesIt() {
    using (var ctx = new Context())
    using (var outputA = OutputTensor(ctx))
    using (var lseA = LseTensor(ctx))
    using (var outputB = OutputTensor(ctx))
    using (var lseB = LseTensor(ctx)) {
      var disposed = OutputTensor(ctx);
      disposed.Dispose();
      AssertDisposed("Tensor", "outputB", () => ctx.Merge(outputA, lseA, disposed, lseB, outputA, null));
      AssertDisposed("Tensor", "lse", () => ctx.Merge(outputA, lseA, outputB, lseB, outputA, disposed));
      AssertNullArgument("lseA", () => ctx.Merge(outputA, null, outputB, lseB, outputA, null));
    }
  }

  /// <summary>Each disposed object throws before any native call, named by ObjectName.</summary>
  private static void DisposedObjectsThrowObjectDisposedException() {
    var ctx = new Context();
    var tensor = Tensor.Create(ctx, DType.F32, 2, 3);
    var mask = Mask.Varlen(ctx, new[] {0, 2}, new[] {0, 2}, false);
    var data = new float[2 * 1 * 4];
    ctx.Dispose();
    AssertDisposed("Context", null, () => ctx.SetNumThreads(1));
    AssertDisposed("Context", null, () => ctx.Forward(data, data, data, 1, 1, 4, mask, null, data, null));
    AssertDisposed("Context", "ctx", () => Tensor.Create(ctx, DType.F32, 1));
    AssertDisposed("Context", "ctx", () => Mask.Varlen(ctx, new[] {0, 1}, new[] {0, 1}, true));
    Check(tensor.Shape.SequenceEqual(new long[] {2, 3}), "a tensor outlives its disposed context");
    Check(mask.NumSlices == 1, "a mask outlives its disposed context");
    tensor.Dispose();
    mask.Dispose();
    AssertDisposed("Tensor", null, () => { var unused = tensor.DType; });
    AssertDisposed("Tensor", null, () => tensor.CopyFrom(new float[6]));
    AssertDisposed("Mask", null, () => { var unused = mask.NumSlices; });
    using (var live = new Context()) {
      AssertDisposed("Mask", "mask", () => live.Forward(data, data, data, 1, 1, 4, mask, null, data, null));
      AssertDisposed("Tensor", "AttentionParams.AttnBias", () => live.Forward(
          data, data, data, 1, 1, 4, Mask.Varlen(live, new[] {0, 2}, new[] {0, 2}, false),
          new AttentionParams { AttnBias = tensor }, data, null));
    }
  }

  private static void NullArgumentsThrowArgumentNullException() {
    float[] q = new float[CuQ[3] * HQ * D], kv = new float[CuK[3] * HKV * D], output = new float[q.Length];
    ushort[] q16 = new ushort[q.Length], kv16 = new ushort[kv.Length];
    using (var ctx = new Context())
    using (var mask = Mask.Varlen(ctx, CuQ, CuK, true))
    using (var t = Tensor.Create(ctx, DType.F32, 1)) {
      AssertNullArgument("q", () => ctx.Forward(null, kv, kv, HQ, HKV, D, mask, null, output, null));
      AssertNullArgument("k", () => ctx.Forward(q, null, kv, HQ, HKV, D, mask, null, output, null));
      AssertNullArgument("v", () => ctx.Forward(q, kv, null, HQ, HKV, D, mask, null, output, null));
      AssertNullArgument("mask", () => ctx.Forward(q, kv, kv, HQ, HKV, D, null, null, output, null));
      AssertNullArgument("output", () => ctx.Forward(q, kv, kv, HQ, HKV, D, mask, null, null, null));
      AssertNullArgument("output", () => ctx.Forward(DType.BF16, q16, kv16, kv16, HQ, HKV, D, mask, null, null, null));
      AssertNullArgument("k", () => ctx.Forward(t, null, t, mask, null, t, null));
      AssertNullArgument("outputB", () => ctx.Merge(q, q, null, q, HQ, D, q, null));
      AssertNullArgument("output", () => ctx.Merge(DType.F16, q16, q, q16, q, HQ, D, null, null));
      AssertNullArgument("ctx", () => Tensor.Create(null, DType.F32, 1));
      AssertNullArgument("shape", () => Tensor.Create(ctx, DType.F32, null));
      AssertNullArgument("data", () => Tensor.Wrap(ctx, (float[])null, 1));
      AssertNullArgument("src", () => t.CopyFrom((float[])null));
      AssertNullArgument("dst", () => t.CopyTo((float[])null));
      AssertNullArgument("cuSeqlensK", () => Mask.Varlen(ctx, CuQ, null, true));
      AssertNullArgument("types", () => Mask.Ranges(ctx, QRanges, KRanges, null, T, T));
    }
  }

  private static void DisposingTwiceIsHarmless() {
    var ctx = new Context();
    var t = Tensor.Wrap(ctx, new float[6], 2, 3);
    var mask = Mask.Varlen(ctx, new[] {0, 2}, new[] {0, 2}, false);
    ctx.Dispose();
    t.Dispose();
    t.Dispose();
    mask.Dispose();
    mask.Dispose();
    ctx.Dispose();
  }

  /// <summary>Users see the idiomatic classes and the enums; the SWIG layer is internal.</summary>
  private static void OnlyTheIdiomaticApiIsPublic() {
    string[] expected = {"AlibiException", "AttentionParams", "Context", "DType", "Device", "Library",
                         "Mask", "MaskType", "Status", "Tensor"};
    string[] actual = typeof(Context).Assembly.GetExportedTypes().Select(type => type.FullName)
        .OrderBy(name => name, StringComparer.Ordinal).ToArray();
    Check(actual.SequenceEqual(expected.Select(name => "Alibi." + name)),
          "public types: " + string.Join(", ", actual));
  }

  private static void AssemblyVersionIsTheLibraryVersion() {
    Assembly assembly = typeof(Context).Assembly;
    string informational = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>().InformationalVersion;
    Check(informational == Library.Version, $"Alibi.dll {informational}, libalibi {Library.Version}");
    Check(assembly.GetName().Version == new Version(Library.Version + ".0"),
          $"AssemblyVersion {assembly.GetName().Version}, libalibi {Library.Version}");
  }

  private static void FinalizerReleasesUndisposedHandles() {
    // 100 undisposed 64 KiB tensors a round: 6.4 MB a round (190 MB in all) if the finalizer
    // did not free them; a round or two may still await collection when measured.
    var data = new float[16 * 1024];
    using (var ctx = new Context()) {
      Action round = () => {
        for (int i = 0; i < 100; ++i) Tensor.Create(ctx, DType.F32, data.Length).CopyFrom(data);
        GC.Collect();
        GC.WaitForPendingFinalizers();
      };
      round();
      round();
      long before = ResidentKiB();
      for (int r = 0; r < 30; ++r) round();
      long grown = ResidentKiB() - before;
      Check(grown < 32 * 1024, $"resident memory grew by {grown} KiB");
    }
  }

  private static void TenThousandCyclesKeepMemoryStable() {
    const int t = 32, h = 2, d = 32;  // 8 KiB per tensor: a leak of one per cycle is 80 MiB
    float[] q = Random(t * h * d, 13), output = new float[q.Length], lse = new float[h * t];
    int[] cu = {0, t};
    Cycles(500, q, output, lse, cu, h, d);
    long before = ResidentKiB();
    Cycles(10000, q, output, lse, cu, h, d);
    GC.Collect();
    GC.WaitForPendingFinalizers();
    long grown = ResidentKiB() - before;
    Check(grown < 16 * 1024, $"resident memory grew by {grown} KiB");
  }

  /// <summary>
  /// Contexts (default threads), masks and forwards never disposed: the runtime's finalization
  /// alone must keep the process's threads and memory bounded, collecting every Interval cycles.
  /// </summary>
  private static void UndisposedCyclesStayBoundedInThreadsAndMemory() {
    const int cycles = 20000, interval = 200, t = 16, h = 2, d = 16;
    float[] qkv = Random(t * h * d, 17), output = new float[qkv.Length], lse = new float[h * t];
    int[] cu = {0, t};
    Action leak = () => {
      var ctx = new Context();
      ctx.Forward(qkv, qkv, qkv, h, h, d, Mask.Varlen(ctx, cu, cu, true), null, output, lse);
    };
    for (int i = 0; i < interval; ++i) leak();
    CollectGarbage();
    long threadsBefore = ProcStatus("Threads:"), residentBefore = ResidentKiB(), peakThreads = 0;
    var watch = System.Diagnostics.Stopwatch.StartNew();
    for (int i = 1; i <= cycles; ++i) {
      leak();
      if (i % interval == 0) {
        peakThreads = Math.Max(peakThreads, ProcStatus("Threads:"));
        CollectGarbage();
      }
    }
    long threadsAfter = ProcStatus("Threads:"), grownKiB = ResidentKiB() - residentBefore;
    Console.WriteLine($"  {cycles} undisposed cycles in {watch.ElapsedMilliseconds} ms: threads {threadsBefore} " +
                      $"before, peak {peakThreads} (before a collection), {threadsAfter} after; " +
                      $"resident memory grew {grownKiB} KiB");
    Check(threadsAfter <= threadsBefore + 4, $"threads {threadsBefore} -> {threadsAfter}");
    // A context starts no thread (calls share the process's workers, started by the warm-up).
    Check(peakThreads <= threadsBefore + 4, $"peak threads {peakThreads}");
    Check(grownKiB < 32 * 1024, $"resident memory grew by {grownKiB} KiB");
  }

  private static void CollectGarbage() {
    GC.Collect();
    GC.WaitForPendingFinalizers();
  }

  private static void Cycles(int n, float[] qkv, float[] output, float[] lse, int[] cu, int h, int d) {
    long t = cu[1];
    for (int i = 0; i < n; ++i) {
      using (var ctx = new Context().SetNumThreads(1))  // no worker threads to start each cycle
      using (var mask = Mask.Varlen(ctx, cu, cu, true))
      using (var q = Tensor.Create(ctx, DType.F32, t, h, d).CopyFrom(qkv))
      using (var o = Tensor.Create(ctx, DType.F32, t, h, d)) {
        ctx.Forward(q, q, q, mask, new AttentionParams(), o, null);
        ctx.Forward(qkv, qkv, qkv, h, h, d, mask, null, output, lse);
      }
    }
  }

  private static long ResidentKiB() => ProcStatus("VmRSS:");

  /// <summary>A number of /proc/self/status: "VmRSS:" in KiB, "Threads:" a count.</summary>
  private static long ProcStatus(string field) {
    string line = File.ReadLines("/proc/self/status").First(l => l.StartsWith(field, StringComparison.Ordinal));
    return long.Parse(new string(line.Where(char.IsDigit).ToArray()));
  }

  private static float[] Random(int n, int seed) {
    var rng = new Random(seed);
    var x = new float[n];
    for (int i = 0; i < n; ++i) x[i] = (float)(rng.NextDouble() * 2 - 1);
    return x;
  }

  /// <summary>Round to nearest even bfloat16 (finite inputs).</summary>
  private static ushort[] Bf16(float[] x) {
    var y = new ushort[x.Length];
    for (int i = 0; i < x.Length; ++i) {
      uint bits = BitConverter.ToUInt32(BitConverter.GetBytes(x[i]), 0);
      y[i] = (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16);
    }
    return y;
  }

  private static float[] Floats(ushort[] bf16) {
    var x = new float[bf16.Length];
    for (int i = 0; i < x.Length; ++i) x[i] = BitConverter.ToSingle(BitConverter.GetBytes((uint)bf16[i] << 16), 0);
    return x;
  }

  private static void AssertClose(string what, double[] expected, float[] actual, double tol) {
    Check(expected.Length == actual.Length, what + " length");
    for (int i = 0; i < expected.Length; ++i) {
      bool ok = double.IsInfinity(expected[i])
          ? expected[i] == actual[i]
          : Math.Abs(expected[i] - actual[i]) <= tol * (1 + Math.Abs(expected[i]));
      Check(ok, $"{what}[{i}] = {actual[i]}, expected {expected[i]}");
    }
  }

  private static void AssertClose(string what, float[] expected, float[] actual, double tol) =>
      AssertClose(what, expected.Select(x => (double)x).ToArray(), actual, tol);

  private static void Check(bool condition, string message) {
    if (!condition) throw new Exception(message);
  }
}

}
