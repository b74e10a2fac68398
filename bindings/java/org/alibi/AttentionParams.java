package org.alibi;

/**
 * Parameters of {@link Context#forward(Tensor, Tensor, Tensor, Mask, AttentionParams, Tensor,
 * Tensor) Context.forward}; a plain value, copied into each call. A new instance holds the
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

  /** The library's defaults. */
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

  /**
   * Sets the scale of q.k.
   *
   * @param value the scale; &lt;= 0 for 1/sqrt(head_dim)
   * @return this
   */
  public AttentionParams softmaxScale(float value) {
    softmaxScale = value;
    return this;
  }

  /**
   * Sets the logit soft cap.
   *
   * @param value 0 for none; &gt; 0: s = softcap * tanh(s / softcap)
   * @return this
   */
  public AttentionParams softcap(float value) {
    softcap = value;
    return this;
  }

  /**
   * Sets the slope formula's parameter.
   *
   * @param value 8 by default; 0 without slopes: no ALiBi
   * @return this
   */
  public AttentionParams maxBias(float value) {
    maxBias = value;
    return this;
  }

  /**
   * Sets slopes replacing the formula (copied).
   *
   * @param values Hq slopes, or batch * Hq with perBatch; null for the formula
   * @param perBatch whether values holds one set per sequence
   * @return this
   */
  public AttentionParams slopes(float[] values, boolean perBatch) {
    slopes = values == null ? null : values.clone();
    slopesPerBatch = perBatch;
    return this;
  }

  /**
   * Tensor parallelism: this shard holds heads [headOffset, headOffset + Hq) of totalHeads.
   *
   * @param totalHeads the heads of the whole model (0: this call's Hq)
   * @param headOffset the first head of this shard
   * @return this
   */
  public AttentionParams heads(int totalHeads, int headOffset) {
    this.totalHeads = totalHeads;
    this.headOffset = headOffset;
    return this;
  }

  /**
   * Sets an additive bias; it must stay open while these parameters are used.
   *
   * @param value (H or 1, total_q, total_k), or null for none
   * @return this
   */
  public AttentionParams attnBias(Tensor value) {
    attnBias = value;
    return this;
  }

  /**
   * Asks for bitwise reproducible results across runs.
   *
   * @param value whether to
   * @return this
   */
  public AttentionParams deterministic(boolean value) {
    deterministic = value;
    return this;
  }

  /**
   * The scale of q.k.
   *
   * @return the value set, &lt;= 0 for 1/sqrt(head_dim)
   */
  public float softmaxScale() {
    return softmaxScale;
  }

  /**
   * The logit soft cap.
   *
   * @return 0 for none
   */
  public float softcap() {
    return softcap;
  }

  /**
   * The slope formula's parameter.
   *
   * @return the value set
   */
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
