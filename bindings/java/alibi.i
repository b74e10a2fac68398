/* Java entry file: the common layer, with this folder's local.i (package org.alibi). */
%include "../swig/alibi.i"

/*
 * The FloatBuffer forms of Context.forward, backward, merge and forwardPaged: the common f32
 * helpers over direct buffers (local.i's BUFFER typemaps), so their checks and messages are the
 * array forms'. forwardPaged's tables stay int arrays, pinned as in its array form.
 */
%apply (const float* BUFFER, size_t COUNT) {
  (const float* q_buffer, size_t q_count), (const float* k_buffer, size_t k_count),
  (const float* v_buffer, size_t v_count), (const float* out_a_buffer, size_t out_a_count),
  (const float* lse_a_buffer, size_t lse_a_count), (const float* out_b_buffer, size_t out_b_count),
  (const float* lse_b_buffer, size_t lse_b_count) };
%apply (float* BUFFER, size_t COUNT) {
  (float* out_buffer, size_t out_count), (float* lse_buffer, size_t lse_count) };
%apply (const float* BUFFER, size_t COUNT) {
  (const float* out_buffer, size_t out_count), (const float* lse_buffer, size_t lse_count),
  (const float* dout_buffer, size_t dout_count) };
%apply (float* BUFFER, size_t COUNT) {
  (float* dq_buffer, size_t dq_count), (float* dk_buffer, size_t dk_count),
  (float* dv_buffer, size_t dv_count), (float* dslopes_buffer, size_t dslopes_count) };
%apply (const float* BUFFER, size_t COUNT) {
  (const float* k_cache_buffer, size_t k_cache_count),
  (const float* v_cache_buffer, size_t v_cache_count) };

%inline %{
alibi_status alibi_java_forward_f32_buffers(alibi_context_t ctx, int heads_q, int heads_kv,
                                            int head_dim, const float* q_buffer, size_t q_count,
                                            const float* k_buffer, size_t k_count,
                                            const float* v_buffer, size_t v_count,
                                            alibi_mask_t mask, const alibi_attention_params* params,
                                            float* out_buffer, size_t out_count,
                                            float* lse_buffer, size_t lse_count) {
  return alibi_binding_forward_f32(ctx, heads_q, heads_kv, head_dim, q_buffer, q_count, k_buffer,
                                   k_count, v_buffer, v_count, mask, params, out_buffer, out_count,
                                   lse_buffer, lse_count);
}

alibi_status alibi_java_merge_f32_buffers(alibi_context_t ctx, int heads, int head_dim,
                                          const float* out_a_buffer, size_t out_a_count,
                                          const float* lse_a_buffer, size_t lse_a_count,
                                          const float* out_b_buffer, size_t out_b_count,
                                          const float* lse_b_buffer, size_t lse_b_count,
                                          float* out_buffer, size_t out_count, float* lse_buffer,
                                          size_t lse_count) {
  return alibi_binding_merge_f32(ctx, heads, head_dim, out_a_buffer, out_a_count, lse_a_buffer,
                                 lse_a_count, out_b_buffer, out_b_count, lse_b_buffer, lse_b_count,
                                 out_buffer, out_count, lse_buffer, lse_count);
}

alibi_status alibi_java_backward_f32_buffers(alibi_context_t ctx, int heads_q, int heads_kv,
                                             int head_dim, const float* q_buffer, size_t q_count,
                                             const float* k_buffer, size_t k_count,
                                             const float* v_buffer, size_t v_count,
                                             alibi_mask_t mask,
                                             const alibi_attention_params* params,
                                             const float* out_buffer, size_t out_count,
                                             const float* lse_buffer, size_t lse_count,
                                             const float* dout_buffer, size_t dout_count,
                                             float* dq_buffer, size_t dq_count,
                                             float* dk_buffer, size_t dk_count,
                                             float* dv_buffer, size_t dv_count,
                                             float* dslopes_buffer, size_t dslopes_count) {
  return alibi_binding_backward_f32(ctx, heads_q, heads_kv, head_dim, q_buffer, q_count, k_buffer,
                                    k_count, v_buffer, v_count, mask, params, out_buffer,
                                    out_count, lse_buffer, lse_count, dout_buffer, dout_count,
                                    dq_buffer, dq_count, dk_buffer, dk_count, dv_buffer, dv_count,
                                    dslopes_buffer, dslopes_count);
}

alibi_status alibi_java_forward_paged_f32_buffers(alibi_context_t ctx, int heads_q, int heads_kv,
                                                  int head_dim, int block_size,
                                                  const float* q_buffer, size_t q_count,
                                                  const float* k_cache_buffer,
                                                  size_t k_cache_count,
                                                  const float* v_cache_buffer,
                                                  size_t v_cache_count,
                                                  const int32_t* block_table,
                                                  size_t block_table_count,
                                                  const int32_t* cu_seqlens_q,
                                                  size_t cu_seqlens_q_count,
                                                  const int32_t* seqlens_k,
                                                  size_t seqlens_k_count, int causal,
                                                  int window_left,
                                                  const alibi_attention_params* params,
                                                  float* out_buffer, size_t out_count,
                                                  float* lse_buffer, size_t lse_count) {
  return alibi_binding_forward_paged_f32(ctx, heads_q, heads_kv, head_dim, block_size, q_buffer,
                                         q_count, k_cache_buffer, k_cache_count, v_cache_buffer,
                                         v_cache_count, block_table, block_table_count,
                                         cu_seqlens_q, cu_seqlens_q_count, seqlens_k,
                                         seqlens_k_count, causal, window_left, params, out_buffer,
                                         out_count, lse_buffer, lse_count);
}
%}
