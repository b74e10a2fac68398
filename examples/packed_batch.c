/*
 * packed_batch: attention with ALiBi over a packed batch of three sequences, the shapes a serving
 * engine mixes in one step:
 *
 *   sequence 0  prefill          7 queries over  7 keys
 *   sequence 1  chunked prefill  5 queries over 12 keys (7 keys of earlier chunks + 5 new)
 *   sequence 2  decode           1 query   over  9 keys
 *
 * Causal varlen mask (bottom-right aligned), H = 4 heads, head dim D = 16, f32, with the
 * log-sum-exp. Every sequence is checked against a direct computation in double written below.
 *
 *   cc packed_batch.c $(pkg-config --cflags --libs alibi) -lm -o packed_batch
 */
#include <alibi/alibi.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define B 3  /* sequences */
#define H 4  /* heads */
#define D 16 /* head dim */

static const int32_t kLq[B] = {7, 5, 1};
static const int32_t kLk[B] = {7, 12, 9};
static const char* const kName[B] = {"prefill", "chunked prefill", "decode"};

/* A fixed-seed 64-bit LCG (Knuth's MMIX constants): uniform floats in [-1, 1). */
static uint64_t g_lcg = 20240521u;
static float lcg_uniform(void) {
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(g_lcg >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* SPEC slope formula: c = 2^floor(log2 n), m0 = 2^(-max_bias/c), m1 = 2^(-max_bias/(2c)). */
static double reference_slope(int h, int n, double max_bias) {
  int c = 1;
  while (c * 2 <= n) c *= 2;
  return h < c ? pow(pow(2.0, -max_bias / c), h + 1)
               : pow(pow(2.0, -max_bias / (2.0 * c)), 2 * (h - c) + 1);
}

#define TRY(call)                                                                      \
  do {                                                                                 \
    alibi_status s_ = (call);                                                          \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                  \
      fprintf(stderr, "%s failed: %s\n  %s\n", #call, alibi_status_string(s_),         \
              alibi_last_error_message());                                             \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

int main(void) {
  int32_t cu_q[B + 1] = {0}, cu_k[B + 1] = {0};
  int b, i, j, h, d, all_pass = 1;
  for (b = 0; b < B; ++b) {
    cu_q[b + 1] = cu_q[b] + kLq[b];
    cu_k[b + 1] = cu_k[b] + kLk[b];
  }
  const int64_t tq = cu_q[B], tk = cu_k[B];
  const size_t q_elems = (size_t)(tq * H * D), kv_elems = (size_t)(tk * H * D);

  /* Host buffers, packed token-major: q[t][h][d], k[t][h][d], v[t][h][d]; lse[h][t]. */
  float* q = malloc(q_elems * sizeof *q);
  float* k = malloc(kv_elems * sizeof *k);
  float* v = malloc(kv_elems * sizeof *v);
  float* out = malloc(q_elems * sizeof *out);
  float* lse = malloc((size_t)(H * tq) * sizeof *lse);
  double* score = malloc((size_t)tk * sizeof *score);
  if (!q || !k || !v || !out || !lse || !score) return 1;
  for (size_t n = 0; n < q_elems; ++n) q[n] = lcg_uniform();
  for (size_t n = 0; n < kv_elems; ++n) k[n] = lcg_uniform();
  for (size_t n = 0; n < kv_elems; ++n) v[n] = lcg_uniform();

  printf("libalibi %s: packed batch of %d sequences, %lld queries, %lld keys, H=%d, D=%d, f32\n",
         alibi_version_string(), B, (long long)tq, (long long)tk, H, D);

  /* The library: a CPU context, a causal varlen mask, tensors wrapping the host buffers. */
  alibi_context_t ctx;
  alibi_mask_t mask;
  alibi_tensor_t q_t, k_t, v_t, out_t, lse_t;
  const int64_t q_shape[3] = {tq, H, D}, kv_shape[3] = {tk, H, D}, lse_shape[2] = {H, tq};
  alibi_attention_params params;

  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
  TRY(alibi_mask_create_varlen(ctx, B, cu_q, cu_k, /*causal=*/1, &mask));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, NULL, q, &q_t));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, NULL, k, &k_t));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, NULL, v, &v_t));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, NULL, out, &out_t));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse, &lse_t));
  alibi_attention_params_init(&params); /* scale 1/sqrt(D), max_bias 8, formula slopes */
  TRY(alibi_attention_forward(ctx, q_t, k_t, v_t, mask, &params, out_t, lse_t));

  /* The direct computation, per SPEC: bottom-right positions qpos = r + (Lk - Lq), kpos = c;
     key c visible from row r when c <= r + (Lk - Lq); s = q.k / sqrt(D) - slope |qpos - kpos|. */
  for (b = 0; b < B; ++b) {
    const int lq = kLq[b], lk = kLk[b];
    double err_out = 0.0, err_lse = 0.0;
    for (h = 0; h < H; ++h) {
      const double slope = reference_slope(h, H, 8.0);
      for (i = 0; i < lq; ++i) {
        const int t = cu_q[b] + i;
        const int qpos = i + (lk - lq);
        const int visible = qpos + 1 < lk ? qpos + 1 : lk; /* keys 0..qpos */
        double m = -INFINITY, sum = 0.0, row_lse;
        for (j = 0; j < visible; ++j) {
          const float* qv = q + ((size_t)t * H + h) * D;
          const float* kv = k + ((size_t)(cu_k[b] + j) * H + h) * D;
          double dot = 0.0;
          for (d = 0; d < D; ++d) dot += (double)qv[d] * kv[d];
          score[j] = dot / sqrt((double)D) - slope * fabs((double)(qpos - j));
          if (score[j] > m) m = score[j];
        }
        for (j = 0; j < visible; ++j) sum += exp(score[j] - m);
        row_lse = m + log(sum);
        err_lse = fmax(err_lse, fabs(row_lse - lse[(size_t)h * tq + t]));
        for (d = 0; d < D; ++d) {
          double acc = 0.0;
          for (j = 0; j < visible; ++j)
            acc += exp(score[j] - row_lse) * v[((size_t)(cu_k[b] + j) * H + h) * D + d];
          err_out = fmax(err_out, fabs(acc - out[((size_t)t * H + h) * D + d]));
        }
      }
    }
    const int pass = err_out <= 1e-4 && err_lse <= 1e-4;
    all_pass &= pass;
    printf("  sequence %d  %-15s  Lq=%2d Lk=%2d  max|out-ref| %.2e  max|lse-ref| %.2e  %s\n", b,
           kName[b], lq, lk, err_out, err_lse, pass ? "PASS" : "FAIL");
  }

  alibi_tensor_destroy(q_t);
  alibi_tensor_destroy(k_t);
  alibi_tensor_destroy(v_t);
  alibi_tensor_destroy(out_t);
  alibi_tensor_destroy(lse_t);
  alibi_mask_destroy(mask);
  alibi_context_destroy(ctx);
  free(q);
  free(k);
  free(v);
  free(out);
  free(lse);
  free(score);
  printf("%s\n", all_pass ? "PASS" : "FAIL");
  return all_pass ? 0 : 1;
}
