/*
 * An out-of-tree consumer of an installed libalibi: built once through pkg-config and once
 * through find_package(alibi). It computes one query attending to two keys (full mask, H = 2
 * heads, D = 4) and checks out and lse against the formula written out here.
 */
#include <alibi/alibi.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define H 2
#define D 4

#define TRY(call)                                                                        \
  do {                                                                                   \
    alibi_status s_ = (call);                                                            \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                    \
      fprintf(stderr, "consumer: %s failed: %s: %s\n", #call, alibi_status_string(s_),   \
              alibi_last_error_message());                                               \
      return 1;                                                                          \
    }                                                                                    \
  } while (0)

int main(void) {
  /* One sequence: 1 query, 2 keys, full attention (a decode step). */
  const int32_t cu_q[2] = {0, 1};
  const int32_t cu_k[2] = {0, 2};
  const int64_t q_shape[3] = {1, H, D}, kv_shape[3] = {2, H, D}, lse_shape[2] = {H, 1};
  float q[1][H][D], k[2][H][D], v[2][H][D], out[1][H][D], lse[H][1];
  alibi_context_t ctx = NULL;
  alibi_mask_t mask = NULL;
  alibi_tensor_t tq = NULL, tk = NULL, tv = NULL, tout = NULL, tlse = NULL;
  double max_err = 0.0;
  int h, d, j;

  if (alibi_version_number() != ALIBI_VERSION_NUMBER) {
    fprintf(stderr, "consumer: header %s but library %s\n", ALIBI_VERSION_STRING,
            alibi_version_string());
    return 1;
  }
  for (h = 0; h < H; ++h)
    for (d = 0; d < D; ++d) {
      q[0][h][d] = 0.25f * (float)(d + 1) - 0.5f * (float)h;
      for (j = 0; j < 2; ++j) {
        k[j][h][d] = (float)((d + 2 * j + h) % 3) - 1.0f;
        v[j][h][d] = (float)(10 * j + d) + 0.5f * (float)h;
      }
    }

  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
  TRY(alibi_mask_create_varlen(ctx, 1, cu_q, cu_k, 0, &mask));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, NULL, q, &tq));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, NULL, k, &tk));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, NULL, v, &tv));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, NULL, out, &tout));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse, &tlse));
  TRY(alibi_attention_forward(ctx, tq, tk, tv, mask, NULL, tout, tlse));

  /* Direct computation. Two heads: c = 2, slope[h] = 2^(-8/2 * (h+1)) = 1/16, 1/256.
     Bottom-right positions: qpos = 0 + (2 - 1) = 1, kpos = 0, 1. */
  for (h = 0; h < H; ++h) {
    const double slope = pow(2.0, -4.0 * (h + 1));
    double s[2], m, sum, ref_lse;
    for (j = 0; j < 2; ++j) {
      double dot = 0.0;
      for (d = 0; d < D; ++d) dot += (double)q[0][h][d] * k[j][h][d];
      s[j] = dot / sqrt((double)D) - slope * fabs(1.0 - (double)j);
    }
    m = s[0] > s[1] ? s[0] : s[1];
    sum = exp(s[0] - m) + exp(s[1] - m);
    ref_lse = m + log(sum);
    if (fabs(ref_lse - lse[h][0]) > max_err) max_err = fabs(ref_lse - lse[h][0]);
    for (d = 0; d < D; ++d) {
      double ref = (exp(s[0] - ref_lse) * v[0][h][d] + exp(s[1] - ref_lse) * v[1][h][d]);
      if (fabs(ref - out[0][h][d]) > max_err) max_err = fabs(ref - out[0][h][d]);
    }
  }

  alibi_tensor_destroy(tq);
  alibi_tensor_destroy(tk);
  alibi_tensor_destroy(tv);
  alibi_tensor_destroy(tout);
  alibi_tensor_destroy(tlse);
  alibi_mask_destroy(mask);
  alibi_context_destroy(ctx);

  printf("consumer: libalibi %s, 1 query x 2 keys, H=%d D=%d: max abs error %.3g: %s\n",
         alibi_version_string(), H, D, max_err, max_err <= 1e-4 ? "PASS" : "FAIL");
  return max_err <= 1e-4 ? 0 : 1;
}
