/*
 * context_parallel: one packed batch split across MPI ranks (context parallelism), forward and
 * backward, checked against the single-process calls on every rank.
 *
 * The batch: five causal sequences of 301, 64, 777, 5 and 389 tokens (1536 in all), H = 4 query
 * heads over 2 kv heads (GQA), head dim D = 32, f32. Every rank builds the same global tensors
 * (fixed seed), makes the same plan (chunks of 64 tokens dealt to the ranks by workload), takes
 * its chunks with alibi_dist_dispatch, runs alibi_dist_attention_forward and _backward (each rank
 * fetches only the keys its queries see), and gathers the results back with
 * alibi_dist_undispatch. Then it runs alibi_attention_forward / _backward on the whole batch and
 * compares: outputs and gradients must agree within f32 rounding, dslopes on every rank.
 *
 *   mpicc context_parallel.c $(pkg-config --cflags --libs alibi-mpi) -lm -o context_parallel
 *   mpirun -np 3 ./context_parallel
 */
#include <alibi/alibi.h>
#include <alibi/alibi_dist.h>
#include <alibi/alibi_mpi.h>
#include <mpi.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B 5   /* sequences */
#define HQ 4  /* query heads */
#define HKV 2 /* kv heads */
#define D 32  /* head dim */
#define CHUNK 64

static const int32_t kLengths[B] = {301, 64, 777, 5, 389};

#define TRY(call)                                                                          \
  do {                                                                                     \
    alibi_status s_ = (call);                                                              \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                      \
      fprintf(stderr, "rank %d: %s failed: %s\n  %s\n", g_rank, #call,                     \
              alibi_status_string(s_), alibi_last_error_message());                        \
      MPI_Abort(MPI_COMM_WORLD, 1);                                                        \
    }                                                                                      \
  } while (0)

static int g_rank;

/* A fixed-seed 64-bit LCG (Knuth's MMIX constants): uniform floats in [-1, 1). */
static uint64_t g_lcg = 20261205u;
static float lcg_uniform(void) {
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(g_lcg >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static void fill_random(float* x, int64_t n) {
  int64_t i;
  for (i = 0; i < n; ++i) x[i] = lcg_uniform();
}

/* A (tokens, heads, D) f32 tensor over data (wrapped, not copied). */
static alibi_tensor_t wrap(alibi_context_t ctx, int64_t tokens, int heads, float* data) {
  const int64_t shape[3] = {tokens, heads, D};
  alibi_tensor_t t;
  TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, NULL, data, &t));
  return t;
}

/* The largest |a - b| relative to 1 + |b| over n values. */
static double worst_difference(const float* a, const float* b, int64_t n) {
  double worst = 0.0;
  int64_t i;
  for (i = 0; i < n; ++i) {
    const double d = fabs((double)a[i] - (double)b[i]) / (1.0 + fabs((double)b[i]));
    if (d > worst) worst = d;
  }
  return worst;
}

/* One (tokens, heads, D) buffer per name, global and local. */
typedef struct {
  float *q, *k, *v, *out, *dout, *dq, *dk, *dv;
} Buffers;

static void allocate(Buffers* x, int64_t tokens) {
  const size_t q = (size_t)tokens * HQ * D * sizeof(float);
  const size_t kv = (size_t)tokens * HKV * D * sizeof(float);
  x->q = malloc(q);
  x->k = malloc(kv);
  x->v = malloc(kv);
  x->out = malloc(q);
  x->dout = malloc(q);
  x->dq = malloc(q);
  x->dk = malloc(kv);
  x->dv = malloc(kv);
}

static void release(Buffers* x) {
  free(x->q), free(x->k), free(x->v), free(x->out), free(x->dout), free(x->dq), free(x->dk),
      free(x->dv);
}

/* global -> this rank's chunks, for a (tokens, heads, D) tensor. */
static void dispatch(alibi_context_t ctx, alibi_dist_plan_t plan, int64_t total, int64_t local,
                     int heads, float* global_data, float* local_data) {
  alibi_tensor_t g = wrap(ctx, total, heads, global_data), l = wrap(ctx, local, heads, local_data);
  TRY(alibi_dist_dispatch(ctx, plan, g_rank, g, l));
  alibi_tensor_destroy(g);
  alibi_tensor_destroy(l);
}

/* every rank's chunks -> the global order, on every rank. */
static void undispatch(alibi_context_t ctx, alibi_comm_t comm, alibi_dist_plan_t plan,
                       int64_t total, int64_t local, int heads, float* local_data,
                       float* global_data) {
  alibi_tensor_t g = wrap(ctx, total, heads, global_data), l = wrap(ctx, local, heads, local_data);
  TRY(alibi_dist_undispatch(ctx, comm, plan, l, g));
  alibi_tensor_destroy(g);
  alibi_tensor_destroy(l);
}

int main(int argc, char** argv) {
  int32_t cu[B + 1] = {0};
  int b, size, pass;
  int64_t total, local;
  alibi_context_t ctx;
  alibi_comm_t comm;
  alibi_mask_t mask;
  alibi_dist_plan_t plan;
  Buffers global, mine, single;
  float *lse, *lse_local, dslopes[HQ], dslopes_single[HQ];
  double worst_out, worst_dq, worst_dk, worst_dv, worst_dslopes;

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (b = 0; b < B; ++b) cu[b + 1] = cu[b] + kLengths[b];
  total = cu[B];

  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
  TRY(alibi_context_set_num_threads(ctx, 1));
  TRY(alibi_comm_create_mpi(MPI_COMM_WORLD, &comm));
  TRY(alibi_mask_create_varlen(ctx, B, cu, cu, 1, &mask));
  TRY(alibi_dist_plan_create(mask, size, CHUNK, &plan));
  TRY(alibi_dist_plan_get_num_local_tokens(plan, &local));

  /* The same global inputs on every rank. */
  allocate(&global, total);
  fill_random(global.q, total * HQ * D);
  fill_random(global.k, total * HKV * D);
  fill_random(global.v, total * HKV * D);
  fill_random(global.dout, total * HQ * D);

  /* Distributed: dispatch, forward, backward, undispatch. */
  allocate(&mine, local);
  lse_local = malloc((size_t)HQ * (size_t)local * sizeof *lse_local);
  dispatch(ctx, plan, total, local, HQ, global.q, mine.q);
  dispatch(ctx, plan, total, local, HKV, global.k, mine.k);
  dispatch(ctx, plan, total, local, HKV, global.v, mine.v);
  dispatch(ctx, plan, total, local, HQ, global.dout, mine.dout);
  {
    const int64_t lse_shape[2] = {HQ, local}, slope_shape[1] = {HQ};
    alibi_tensor_t q = wrap(ctx, local, HQ, mine.q), k = wrap(ctx, local, HKV, mine.k),
                   v = wrap(ctx, local, HKV, mine.v), out = wrap(ctx, local, HQ, mine.out),
                   dout = wrap(ctx, local, HQ, mine.dout), dq = wrap(ctx, local, HQ, mine.dq),
                   dk = wrap(ctx, local, HKV, mine.dk), dv = wrap(ctx, local, HKV, mine.dv), lse,
                   ds;
    TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse_local, &lse));
    TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 1, slope_shape, NULL, dslopes, &ds));
    TRY(alibi_dist_attention_forward(ctx, comm, plan, q, k, v, NULL, out, lse));
    TRY(alibi_dist_attention_backward(ctx, comm, plan, q, k, v, NULL, out, lse, dout, dq, dk, dv,
                                      ds));
    alibi_tensor_destroy(q), alibi_tensor_destroy(k), alibi_tensor_destroy(v);
    alibi_tensor_destroy(out), alibi_tensor_destroy(dout), alibi_tensor_destroy(dq);
    alibi_tensor_destroy(dk), alibi_tensor_destroy(dv), alibi_tensor_destroy(lse);
    alibi_tensor_destroy(ds);
  }
  undispatch(ctx, comm, plan, total, local, HQ, mine.out, global.out);
  undispatch(ctx, comm, plan, total, local, HQ, mine.dq, global.dq);
  undispatch(ctx, comm, plan, total, local, HKV, mine.dk, global.dk);
  undispatch(ctx, comm, plan, total, local, HKV, mine.dv, global.dv);

  /* The single-process calls on the whole batch. */
  allocate(&single, total);
  lse = malloc((size_t)HQ * (size_t)total * sizeof *lse);
  {
    const int64_t lse_shape[2] = {HQ, total}, slope_shape[1] = {HQ};
    alibi_tensor_t q = wrap(ctx, total, HQ, global.q), k = wrap(ctx, total, HKV, global.k),
                   v = wrap(ctx, total, HKV, global.v), out = wrap(ctx, total, HQ, single.out),
                   dout = wrap(ctx, total, HQ, global.dout), dq = wrap(ctx, total, HQ, single.dq),
                   dk = wrap(ctx, total, HKV, single.dk), dv = wrap(ctx, total, HKV, single.dv),
                   lse_t, ds;
    TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, lse, &lse_t));
    TRY(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 1, slope_shape, NULL, dslopes_single, &ds));
    TRY(alibi_attention_forward(ctx, q, k, v, mask, NULL, out, lse_t));
    TRY(alibi_attention_backward(ctx, q, k, v, mask, NULL, out, lse_t, dout, dq, dk, dv, ds));
    alibi_tensor_destroy(q), alibi_tensor_destroy(k), alibi_tensor_destroy(v);
    alibi_tensor_destroy(out), alibi_tensor_destroy(dout), alibi_tensor_destroy(dq);
    alibi_tensor_destroy(dk), alibi_tensor_destroy(dv), alibi_tensor_destroy(lse_t);
    alibi_tensor_destroy(ds);
  }

  worst_out = worst_difference(global.out, single.out, total * HQ * D);
  worst_dq = worst_difference(global.dq, single.dq, total * HQ * D);
  worst_dk = worst_difference(global.dk, single.dk, total * HKV * D);
  worst_dv = worst_difference(global.dv, single.dv, total * HKV * D);
  worst_dslopes = worst_difference(dslopes, dslopes_single, HQ);
  /* f32 sums in another order: a few units of 2^-24 of the magnitudes; dslopes sums 1536^2/2
     terms per head, so its rounding grows with that many. */
  pass = worst_out < 1e-5 && worst_dq < 1e-5 && worst_dk < 1e-5 && worst_dv < 1e-5 &&
         worst_dslopes < 1e-4;
  printf("rank %d of %d: %lld local tokens (%lld chunks); largest relative difference to one "
         "process: out %.2g, dq %.2g, dk %.2g, dv %.2g, dslopes %.2g: %s\n",
         g_rank, size, (long long)local, (long long)(local / CHUNK), worst_out, worst_dq, worst_dk,
         worst_dv, worst_dslopes, pass ? "ok" : "MISMATCH");

  release(&global);
  release(&mine);
  release(&single);
  free(lse);
  free(lse_local);
  alibi_dist_plan_destroy(plan);
  alibi_mask_destroy(mask);
  alibi_comm_destroy(comm);
  alibi_context_destroy(ctx);
  MPI_Allreduce(MPI_IN_PLACE, &pass, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  MPI_Finalize();
  return pass ? 0 : 1;
}
