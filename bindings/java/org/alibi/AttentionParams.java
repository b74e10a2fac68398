package org.alibi;

/**
 * Parameters of Context.forward; a plain value, copied into the call. A new instance holds the
 * library's defaults (scale 1/sqrt(D), no softcap, max_bias 8, the slope formula).
 */
public final class AttentionParams {
  private float softmaxScale;
  private float softcap;
  private float maxBias;
  private float[] slopes;
  private boolean slopesPerBatch;
  private int totalHeads;
  private int headOffset;
  private Tensor attnBias;
  private boolean deterministic;

  public AttentionParams() {
    try (alibi_attention_params defaults = new alibi_attention_params()) {
      softmaxScale = defaults.getSoftmaxScale();
      softcap = defaults.getSoftcap();
      maxBias = defaults.getMaxBias();
      slopesPerBatch = defaults.getSlopesPerBatch() != 0;
      totalHeads = defaults.getTotalHeads();
      headOffset = defaults.getHeadOffset();
      deterministic = defaults.getDeterministic() != 0;
    }
  }

  /** <= 0: 1/sqrt(head_dim). */
  public AttentionParams softmaxScale(float value) {
    softmaxScale = value;
    return this;
  }

  /** 0: off; > 0: s = softcap * tanh(s / softcap). */
  public AttentionParams softcap(float value) {
    softcap = value;
    return this;
  }

  /** The slope formula's parameter (8 by default; 0 without slopes: no ALiBi). */
  public AttentionParams maxBias(float value) {
    maxBias = value;
    return this;
  }

  /** Slopes replacing the formula: Hq of them, or batch * Hq with perBatch. null: the formula. */
  public AttentionParams slopes(float[] values, boolean perBatch) {
    slopes = values == null ? null : values.clone();
    slopesPerBatch = perBatch;
    return this;
  }

  /** Tensor parallelism: this shard holds heads [headOffset, headOffset + Hq) of totalHeads. */
  public AttentionParams heads(int totalHeads, int headOffset) {
    this.totalHeads = totalHeads;
    this.headOffset = headOffset;
    return this;
  }

  /** An additive bias (H or 1, total_q, total_k); it must stay open while used. */
  public AttentionParams attnBias(Tensor value) {
    attnBias = value;
    return this;
  }

  public AttentionParams deterministic(boolean value) {
    deterministic = value;
    return this;
  }

  public float softmaxScale() {
    return softmaxScale;
  }

  public float softcap() {
    return softcap;
  }

  public float maxBias() {
    return maxBias;
  }

  /** A native copy, to close after the call; null for null (the library's defaults). */
  static alibi_attention_params toNative(AttentionParams params) {
    if (params == null) return null;
    long attnBias = NativeHandle.optionalHandleOf(params.attnBias, "AttentionParams.attnBias");
    alibi_attention_params p = new alibi_attention_params();
    p.setSoftmaxScale(params.softmaxScale);
    p.setSoftcap(params.softcap);
    p.setMaxBias(params.maxBias);
    p.setSlopesPerBatch(params.slopesPerBatch ? 1 : 0);
    p.setTotalHeads(params.totalHeads);
    p.setHeadOffset(params.headOffset);
    p.setAttnBias(attnBias);
    p.setDeterministic(params.deterministic ? 1 : 0);
    if (params.slopes != null) {
      try {
        p.setSlopes(params.slopes, params.slopes.length);
      } catch (AlibiException e) {
        p.close();
        throw e;
      }
    }
    return p;
  }
}
