namespace Alibi {

/// <summary>
/// Parameters of Context.Forward; a plain value, copied into each call. A new instance holds the
/// library's defaults (scale 1/sqrt(D), no softcap, max_bias 8, the slope formula).
/// </summary>
public sealed class AttentionParams {
  /// <summary>&lt;= 0: 1/sqrt(head_dim).</summary>
  public float SoftmaxScale { get; set; }
  /// <summary>0: off; &gt; 0: s = softcap * tanh(s / softcap).</summary>
  public float Softcap { get; set; }
  /// <summary>The slope formula's parameter (8 by default; 0 without slopes: no ALiBi).</summary>
  public float MaxBias { get; set; }
  /// <summary>Slopes replacing the formula: Hq of them, or batch * Hq with SlopesPerBatch.</summary>
  public float[] Slopes { get; set; }
  /// <summary>Slopes holds batch * Hq slopes (index b * Hq + h): varlen and sliding-window masks only.</summary>
  public bool SlopesPerBatch { get; set; }
  /// <summary>Tensor parallelism: this shard holds heads [HeadOffset, HeadOffset + Hq) of TotalHeads.</summary>
  public int TotalHeads { get; set; }
  /// <summary>Tensor parallelism: the first head of this shard (see TotalHeads).</summary>
  public int HeadOffset { get; set; }
  /// <summary>An additive bias (H or 1, total_q, total_k); it must stay undisposed while used.</summary>
  public Tensor AttnBias { get; set; }
  /// <summary>Bitwise-reproducible results run to run (the CPU always is).</summary>
  public bool Deterministic { get; set; }

  /// <summary>The library's defaults.</summary>
  public AttentionParams() {
    using (alibi_attention_params defaults = new alibi_attention_params()) {
      SoftmaxScale = defaults.SoftmaxScale;
      Softcap = defaults.Softcap;
      MaxBias = defaults.MaxBias;
      SlopesPerBatch = defaults.SlopesPerBatch != 0;
      TotalHeads = defaults.TotalHeads;
      HeadOffset = defaults.HeadOffset;
      Deterministic = defaults.Deterministic != 0;
    }
  }

  /// <summary>A native copy to dispose after the call; null for null (the library's defaults).</summary>
  internal static alibi_attention_params ToNative(AttentionParams parameters) {
    if (parameters == null) return null;
    var attnBias = Args.Optional(parameters.AttnBias, "AttentionParams.AttnBias");
    var p = new alibi_attention_params {
      SoftmaxScale = parameters.SoftmaxScale,
      Softcap = parameters.Softcap,
      MaxBias = parameters.MaxBias,
      SlopesPerBatch = parameters.SlopesPerBatch ? 1 : 0,
      TotalHeads = parameters.TotalHeads,
      HeadOffset = parameters.HeadOffset,
      AttnBias = attnBias,
      Deterministic = parameters.Deterministic ? 1 : 0,
    };
    float[] slopes = parameters.Slopes;
    if (slopes != null) {
      try {
        p.SetSlopes(slopes, slopes.Length);
      } catch (AlibiException) {
        p.Dispose();
        throw;
      }
    }
    return p;
  }
}

}
