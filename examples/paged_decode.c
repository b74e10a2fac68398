/*
 * paged_decode: a small generation loop over a paged KV cache, as a serving engine (vLLM,
 * FlashInfer) runs one, with alibi_attention_forward_paged.
 *
 * The cache is a pool of NUM_BLOCKS blocks of BLOCK_SIZE tokens, (NUM_BLOCKS, BLOCK_SIZE, HKV, D)
 * for k and for v; blocks are handed out from a shuffled free list, so a sequence's blocks lie
 * anywhere in the pool, in the order its block table lists them. Four sequences with prompts of
 * different lengths are prefilled in chunks of at most CHUNK queries per sequence and step
 * (chunked prefill), then DECODE_STEPS steps decode one token per sequence. Every step appends
 * the new tokens' k and v to their sequences' blocks (taking a block from the free list when the
 * last one is full) and runs one paged call for the whole batch. A model would project each new
 * token's q, k and v from the previous output; here they are random.
 *
 * Every step is checked against alibi_attention_forward on contiguous copies of the same keys
 * and values (a causal varlen mask, bottom-right aligned, of the same cu_seqlens): the program
 * prints the largest difference per step and exits 1 if one exceeds kTolerance.
 *
 *   cc paged_decode.c $(pkg-config --cflags --libs alibi) -lm -o paged_decode
 */
#include <alibi/alibi.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define B 4            /* sequences */
#define HQ 8           /* query heads */
#define HKV 2          /* key/value heads (grouped-query attention, 4 query heads per group) */
#define D 32           /* head dim */
#define BLOCK_SIZE 16  /* tokens per block */
#define NUM_BLOCKS 32  /* the pool */
#define MAX_BLOCKS 8   /* per sequence (a block table row) */
#define MAX_LEN (MAX_BLOCKS * BLOCK_SIZE)
#define CHUNK 32       /* prefill queries per sequence and step */
#define DECODE_STEPS 24
#define TOKEN_Q (HQ * D)   /* floats of one token's q (and out) */
#define TOKEN_KV (HKV * D) /* floats of one token's k (and v) */

static const int32_t kPrompt[B] = {45, 7, 100, 16};
/* Both calls are f32 over the same keys; only the order of their sums may differ. */
static const double kTolerance = 1e-5;

#define TRY(call)                                                                      \
  do {                                                                                 \
    alibi_status s_ = (call);                                                          \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                  \
      fprintf(stderr, "%s failed: %s\n  %s\n", #call, alibi_status_string(s_),         \
              alibi_last_error_message());                                             \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* A fixed-seed 64-bit LCG (Knuth's MMIX constants). */
static uint64_t g_lcg = 20261205u;
static uint32_t lcg_next(void) {
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(g_lcg >> 32);
}
/* Uniform floats in [-1, 1). */
static float lcg_uniform(void) {
  return (float)((double)(lcg_next() >> 8) / (double)(1u << 24) * 2.0 - 1.0);
}
static void fill_uniform(float* values, int count) {
  int i;
  for (i = 0; i < count; ++i) values[i] = lcg_uniform();
}

/* The block pool, its free list (shuffled once), each sequence's block table row and length. */
static float g_k_cache[NUM_BLOCKS * BLOCK_SIZE * TOKEN_KV];
static float g_v_cache[NUM_BLOCKS * BLOCK_SIZE * TOKEN_KV];
static int32_t g_free[NUM_BLOCKS];
static int g_free_count;
static int32_t g_table[B][MAX_BLOCKS];
static int32_t g_length[B];

/* Contiguous copies of each sequence's keys and values: what the check compares with. */
static float g_k_seq[B][MAX_LEN * TOKEN_KV], g_v_seq[B][MAX_LEN * TOKEN_KV];

/* One step's packed queries, outputs and contiguous keys and values. */
static float g_q[B * CHUNK * TOKEN_Q], g_out_paged[B * CHUNK * TOKEN_Q];
static float g_out_contiguous[B * CHUNK * TOKEN_Q];
static float g_k_packed[B * MAX_LEN * TOKEN_KV], g_v_packed[B * MAX_LEN * TOKEN_KV];

static void init_pool(void) {
  int i, b, j;
  for (i = 0; i < NUM_BLOCKS; ++i) g_free[i] = i;
  for (i = NUM_BLOCKS - 1; i > 0; --i) { /* Fisher-Yates */
    const int other = (int)(lcg_next() % (uint32_t)(i + 1));
    const int32_t id = g_free[i];
    g_free[i] = g_free[other];
    g_free[other] = id;
  }
  g_free_count = NUM_BLOCKS;
  for (b = 0; b < B; ++b)
    for (j = 0; j < MAX_BLOCKS; ++j) g_table[b][j] = -1; /* unused entries are not read */
}

static int32_t allocate_block(void) {
  if (g_free_count == 0) {
    fprintf(stderr, "the block pool is exhausted\n");
    exit(1);
  }
  return g_free[--g_free_count];
}

/* Appends a new token's (random) k and v to sequence b: to its last block, or to a new one when
   that is full, and to the contiguous copies. */
static void append_token(int b) {
  const int32_t t = g_length[b];
  size_t row;
  if (t == MAX_LEN) {
    fprintf(stderr, "sequence %d outgrew its block table\n", b);
    exit(1);
  }
  if (t % BLOCK_SIZE == 0) g_table[b][t / BLOCK_SIZE] = allocate_block();
  row = ((size_t)g_table[b][t / BLOCK_SIZE] * BLOCK_SIZE + (size_t)(t % BLOCK_SIZE)) * TOKEN_KV;
  fill_uniform(&g_k_seq[b][t * TOKEN_KV], TOKEN_KV);
  fill_uniform(&g_v_seq[b][t * TOKEN_KV], TOKEN_KV);
  memcpy(&g_k_cache[row], &g_k_seq[b][t * TOKEN_KV], TOKEN_KV * sizeof(float));
  memcpy(&g_v_cache[row], &g_v_seq[b][t * TOKEN_KV], TOKEN_KV * sizeof(float));
  g_length[b] = t + 1;
}

static alibi_tensor_t wrap(alibi_context_t ctx, alibi_dtype dtype, int ndim, const int64_t* shape,
                           void* data) {
  alibi_tensor_t tensor;
  TRY(alibi_tensor_wrap(ctx, dtype, ndim, shape, NULL, data, &tensor));
  return tensor;
}

/* out (total_q, HQ, D) = the paged call over the pool, causal, no window, default params. */
static void attend_paged(alibi_context_t ctx, const int32_t* cu_q, float* out) {
  const int64_t q_shape[3] = {cu_q[B], HQ, D};
  const int64_t cache_shape[4] = {NUM_BLOCKS, BLOCK_SIZE, HKV, D};
  const int64_t table_shape[2] = {B, MAX_BLOCKS}, cu_shape[1] = {B + 1}, lengths_shape[1] = {B};
  alibi_tensor_t q = wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, g_q);
  alibi_tensor_t k_cache = wrap(ctx, ALIBI_DTYPE_F32, 4, cache_shape, g_k_cache);
  alibi_tensor_t v_cache = wrap(ctx, ALIBI_DTYPE_F32, 4, cache_shape, g_v_cache);
  alibi_tensor_t table = wrap(ctx, ALIBI_DTYPE_I32, 2, table_shape, g_table);
  alibi_tensor_t cu_seqlens_q = wrap(ctx, ALIBI_DTYPE_I32, 1, cu_shape, (void*)cu_q);
  alibi_tensor_t seqlens_k = wrap(ctx, ALIBI_DTYPE_I32, 1, lengths_shape, g_length);
  alibi_tensor_t out_t = wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, out);
  TRY(alibi_attention_forward_paged(ctx, q, k_cache, v_cache, table, cu_seqlens_q, seqlens_k,
                                    /*causal=*/1, /*window_left=*/-1, NULL, out_t, NULL));
  alibi_tensor_destroy(q);
  alibi_tensor_destroy(k_cache);
  alibi_tensor_destroy(v_cache);
  alibi_tensor_destroy(table);
  alibi_tensor_destroy(cu_seqlens_q);
  alibi_tensor_destroy(seqlens_k);
  alibi_tensor_destroy(out_t);
}

/* Packs the contiguous copies as alibi_attention_forward takes them; writes their cu_seqlens. */
static void pack_sequences(int32_t* cu_k) {
  int b;
  cu_k[0] = 0;
  for (b = 0; b < B; ++b) {
    const size_t bytes = (size_t)g_length[b] * TOKEN_KV * sizeof(float);
    cu_k[b + 1] = cu_k[b] + g_length[b];
    memcpy(&g_k_packed[cu_k[b] * TOKEN_KV], g_k_seq[b], bytes);
    memcpy(&g_v_packed[cu_k[b] * TOKEN_KV], g_v_seq[b], bytes);
  }
}

/* The same attention with alibi_attention_forward over the packed contiguous copies. */
static void attend_contiguous(alibi_context_t ctx, const int32_t* cu_q, float* out) {
  int32_t cu_k[B + 1];
  pack_sequences(cu_k);
  const int64_t q_shape[3] = {cu_q[B], HQ, D}, kv_shape[3] = {cu_k[B], HKV, D};
  alibi_tensor_t q = wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, g_q);
  alibi_tensor_t k = wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, g_k_packed);
  alibi_tensor_t v = wrap(ctx, ALIBI_DTYPE_F32, 3, kv_shape, g_v_packed);
  alibi_tensor_t out_t = wrap(ctx, ALIBI_DTYPE_F32, 3, q_shape, out);
  alibi_mask_t mask;
  TRY(alibi_mask_create_varlen(ctx, B, cu_q, cu_k, /*causal=*/1, &mask));
  TRY(alibi_attention_forward(ctx, q, k, v, mask, NULL, out_t, NULL));
  alibi_mask_destroy(mask);
  alibi_tensor_destroy(q);
  alibi_tensor_destroy(k);
  alibi_tensor_destroy(v);
  alibi_tensor_destroy(out_t);
}

/* One step: new_tokens[b] tokens for sequence b (their q, k and v), the paged call, the check.
   Prints a line; returns whether the two calls agree within kTolerance. */
static int step(alibi_context_t ctx, int number, const char* what, const int32_t* new_tokens) {
  int32_t cu_q[B + 1] = {0};
  int b, i, keys = 0;
  double max_diff = 0.0;
  for (b = 0; b < B; ++b) {
    cu_q[b + 1] = cu_q[b] + new_tokens[b];
    for (i = 0; i < new_tokens[b]; ++i) append_token(b);
    keys += g_length[b];
  }
  fill_uniform(g_q, cu_q[B] * TOKEN_Q);
  attend_paged(ctx, cu_q, g_out_paged);
  attend_contiguous(ctx, cu_q, g_out_contiguous);
  for (i = 0; i < cu_q[B] * TOKEN_Q; ++i)
    max_diff = fmax(max_diff, fabs((double)g_out_paged[i] - g_out_contiguous[i]));
  printf("  step %2d  %-7s  queries %3d  keys %3d  blocks %2d of %d  max|paged - contiguous| "
         "%.2e\n", number, what, cu_q[B], keys, NUM_BLOCKS - g_free_count, NUM_BLOCKS, max_diff);
  return max_diff <= kTolerance;
}

/* Chunked prefill: each step takes up to CHUNK more tokens of every unfinished prompt. */
static int prefill(alibi_context_t ctx, int* number) {
  int32_t new_tokens[B];
  int b, remaining, ok = 1;
  do {
    remaining = 0;
    for (b = 0; b < B; ++b) {
      const int32_t left = kPrompt[b] - g_length[b];
      new_tokens[b] = left < CHUNK ? left : CHUNK;
      remaining += left - new_tokens[b];
    }
    ok &= step(ctx, (*number)++, "prefill", new_tokens);
  } while (remaining > 0);
  return ok;
}

static int decode(alibi_context_t ctx, int* number) {
  const int32_t one_each[B] = {1, 1, 1, 1};
  int i, ok = 1;
  for (i = 0; i < DECODE_STEPS; ++i) ok &= step(ctx, (*number)++, "decode", one_each);
  return ok;
}

int main(void) {
  alibi_context_t ctx;
  int number = 1, ok;
  printf("libalibi %s: paged KV cache, %d sequences (prompts %d, %d, %d, %d), Hq=%d, Hkv=%d, "
         "D=%d, f32,\n  %d blocks of %d tokens, chunked prefill of %d, %d decode steps\n",
         alibi_version_string(), B, kPrompt[0], kPrompt[1], kPrompt[2], kPrompt[3], HQ, HKV, D,
         NUM_BLOCKS, BLOCK_SIZE, CHUNK, DECODE_STEPS);
  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx));
  init_pool();
  ok = prefill(ctx, &number);
  ok &= decode(ctx, &number);
  alibi_context_destroy(ctx);
  printf("%s (tolerance %.0e)\n", ok ? "PASS" : "FAIL", kTolerance);
  return ok ? 0 : 1;
}
