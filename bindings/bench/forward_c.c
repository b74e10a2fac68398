/*
 * forward_c: the time of one alibi_attention_forward call from C, the baseline of the bindings'
 * overhead (run_overhead.sh, generated in the build folder, runs it next to the Java, C# and Go
 * programs, which take the same arguments and print the same line).
 *
 * Usage: forward_c [runs [threads [seqs seq_len heads dim]]]. Defaults: 10 runs, threads 0 (one
 * per core), 64 causal sequences of 128 tokens packed into T = 8192, H = 16 query and key/value
 * heads, D = 128, f32: q, k, v and out hold 16.8M elements each. After 2 warm-up calls, prints
 * the median and minimum wall time of the calls and of the calling thread's CPU time; with
 * threads 1 the call runs on that thread alone, so its CPU time ignores other processes' load.
 */
#include <alibi/alibi.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define WARMUP 2

#define TRY(call)                                                                         \
  do {                                                                                    \
    alibi_status s_ = (call);                                                             \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                     \
      fprintf(stderr, "%s: %s\n", #call, alibi_last_error_message());                     \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

static double clock_ms(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int compare(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

static int arg(int argc, char** argv, int i, int fallback) {
  return argc > i && (i < 3 || argc > 6) ? atoi(argv[i]) : fallback;
}

int main(int argc, char** argv) {
  const int runs = arg(argc, argv, 1, 10), threads = arg(argc, argv, 2, 0);
  const int seqs = arg(argc, argv, 3, 64), seq_len = arg(argc, argv, 4, 128);
  const int heads = arg(argc, argv, 5, 16), dim = arg(argc, argv, 6, 128);
  const int64_t t = (int64_t)seqs * seq_len;
  const size_t n = (size_t)t * heads * dim;
  const int64_t shape[3] = {t, heads, dim}, lse_shape[2] = {heads, t};
  int32_t* cu = malloc((size_t)(seqs + 1) * sizeof *cu);
  float *q = malloc(n * sizeof *q), *k = malloc(n * sizeof *k), *v = malloc(n * sizeof *v);
  float *out = malloc(n * sizeof *out), *lse = malloc((size_t)t * heads * sizeof *lse);
  double *wall = malloc((size_t)(runs > 0 ? runs : 1) * sizeof *wall);
  double *cpu = malloc((size_t)(runs > 0 ? runs : 1) * sizeof *cpu);
  alibi_context_t ctx;
  alibi_mask_t mask;
  alibi_tensor_t tq, tk, tv, tout, tlse;
  if (!cu || !q || !k || !v || !out || !lse || !wall || !cpu || runs < 1 || seqs < 1) return 1;
  for (size_t i = 0; i < n; ++i) {
    q[i] = (float)(i % 97) / 97.0f - 0.5f;
    k[i] = (float)(i % 89) / 89.0f - 0.5f;
    v[i] = (float)(i % 83) / 83.0f - 0.5f;
  }
  for (int b = 0; b <= seqs; ++b) cu[b] = b * seq_len;

  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
  TRY(alibi_context_set_num_threads(ctx, threads));
  TRY(alibi_mask_create_varlen(ctx, seqs, cu, cu, 1, &mask));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, q, &tq));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, k, &tk));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, v, &tv));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, out, &tout));
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse, &tlse));
  for (int r = -WARMUP; r < runs; ++r) {
    double wall_start = clock_ms(CLOCK_MONOTONIC), cpu_start = clock_ms(CLOCK_THREAD_CPUTIME_ID);
    TRY(alibi_attention_forward(ctx, tq, tk, tv, mask, NULL, tout, tlse));
    if (r >= 0) {
      cpu[r] = clock_ms(CLOCK_THREAD_CPUTIME_ID) - cpu_start;
      wall[r] = clock_ms(CLOCK_MONOTONIC) - wall_start;
    }
  }
  qsort(wall, (size_t)runs, sizeof *wall, compare);
  qsort(cpu, (size_t)runs, sizeof *cpu, compare);
  printf("c       median_ms=%.4f min_ms=%.4f cpu_median_ms=%.4f cpu_min_ms=%.4f runs=%d threads=%d "
         "shape=%dx%d,H=%d,D=%d\n", wall[runs / 2], wall[0], cpu[runs / 2], cpu[0], runs, threads,
         seqs, seq_len, heads, dim);

  alibi_tensor_destroy(tq);
  alibi_tensor_destroy(tk);
  alibi_tensor_destroy(tv);
  alibi_tensor_destroy(tout);
  alibi_tensor_destroy(tlse);
  alibi_mask_destroy(mask);
  alibi_context_destroy(ctx);
  free(cu);
  free(q);
  free(k);
  free(v);
  free(out);
  free(lse);
  free(wall);
  free(cpu);
  return 0;
}
