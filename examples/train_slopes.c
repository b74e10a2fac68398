/*
 * train_slopes: learning the ALiBi slopes of a multi-head attention layer with libalibi's
 * forward and backward.
 *
 * The layer (labml's ALiBi multi-head attention): x (T, d_model) -> q = x Wq, k = x Wk, v = x Wv
 * (plain loops), viewed as (T, H, D) -> libalibi attention with a causal varlen mask over a
 * packed batch of three sequences and the slopes passed as params->slopes -> y = o Wo.
 * The data: the same layer, with the same weights, run once with known "true" slopes gives the
 * targets y*. Training starts from the paper's slopes (max_bias 8) and learns the true ones
 * (max_bias 4: 1/2, 1/4, 1/8, 1/16) from the loss L = mean((y - y*)^2) alone:
 *
 *   dL/dy = 2 (y - y*) / (T d_model),  dout = dL/dy Wo^T      (the output projection, by hand)
 *   dslopes = alibi_attention_backward(..., dout, ...)         (the projections are frozen, so
 *                                                               dq, dk and dv are not asked for)
 *
 * First dslopes is checked against central differences of the loss. Then each slope is trained
 * as theta = log(slope) (slopes stay positive) with Adam. Every step
 * prints the loss and max_h |slope_h - true_h| / true_h; the program exits 0 once that relative
 * error is below 1e-3, and 1 if it is not within kMaxSteps steps.
 *
 * Why 1e-3: the targets are computed in f32, so the loss has a floor near f32 rounding (~1e-7
 * relative in y), which bounds how well the slopes can be identified at ~1e-5 relative; 1e-3 is
 * well above that floor and well below the 4x gap between the initial and true slopes.
 *
 *   cc train_slopes.c $(pkg-config --cflags --libs alibi) -lm -o train_slopes
 */
#include <alibi/alibi.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define B 3               /* sequences in the packed batch */
#define H 4               /* heads */
#define D 8               /* head dim */
#define DM (H * D)        /* d_model */
#define T (16 + 11 + 23)  /* tokens */

static const int32_t kLength[B] = {16, 11, 23};
static const int kMaxSteps = 400;
static const double kTolerance = 1e-3; /* relative slope error (see above) */
/* Central differences with a step of 1% of each slope are exact up to O(step^2) ~ 1e-4 relative
   terms and the f32 noise of the loss (5e-5 here): 1e-3 leaves a margin and catches any wrongly
   scaled or signed gradient. */
static const double kGradientTolerance = 1e-3;

/* Adam: the usual betas; a step size that halves every 60 steps so the iterates settle. */
static const double kLearningRate = 0.08, kHalfLife = 60.0, kBeta1 = 0.9, kBeta2 = 0.999;

#define TRY(call)                                                                      \
  do {                                                                                 \
    alibi_status s_ = (call);                                                          \
    if (s_ != ALIBI_STATUS_SUCCESS) {                                                  \
      fprintf(stderr, "%s failed: %s\n  %s\n", #call, alibi_status_string(s_),         \
              alibi_last_error_message());                                             \
      exit(1);                                                                         \
    }                                                                                  \
  } while (0)

/* A fixed-seed 64-bit LCG (Knuth's MMIX constants): uniform floats in [-1, 1). */
static uint64_t g_lcg = 20261204u;
static float lcg_uniform(void) {
  g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((double)(g_lcg >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

/* c (rows x cols) = a (rows x inner) b (inner x cols), or b^T when b_transposed (b: cols x inner). */
static void matmul(const float* a, const float* b, float* c, int rows, int inner, int cols,
                   int b_transposed) {
  int r, i, j;
  for (r = 0; r < rows; ++r)
    for (j = 0; j < cols; ++j) {
      float acc = 0.0f;
      for (i = 0; i < inner; ++i)
        acc += a[r * inner + i] * (b_transposed ? b[j * inner + i] : b[i * cols + j]);
      c[r * cols + j] = acc;
    }
}

/* The layer's buffers and libalibi handles; q/k/v/o/dout are (T, H, D) = (T, d_model). */
struct Layer {
  float x[T * DM], wq[DM * DM], wk[DM * DM], wv[DM * DM], wo[DM * DM];
  float q[T * DM], k[T * DM], v[T * DM], o[T * DM], lse[H * T], y[T * DM], dout[T * DM];
  float slopes[H], dslopes[H];
  alibi_context_t ctx;
  alibi_mask_t mask;
  alibi_tensor_t q_t, k_t, v_t, o_t, lse_t, dout_t, dslopes_t;
};

static void layer_init(struct Layer* layer) {
  const float gain = 2.0f / sqrtf((float)DM); /* scores of order 1 before the bias */
  const int64_t qkv_shape[3] = {T, H, D}, lse_shape[2] = {H, T}, slope_shape[1] = {H};
  int32_t cu[B + 1] = {0};
  int n, b;
  for (b = 0; b < B; ++b) cu[b + 1] = cu[b] + kLength[b];
  for (n = 0; n < T * DM; ++n) layer->x[n] = lcg_uniform();
  for (n = 0; n < DM * DM; ++n) {
    layer->wq[n] = gain * lcg_uniform();
    layer->wk[n] = gain * lcg_uniform();
    layer->wv[n] = gain * lcg_uniform();
    layer->wo[n] = gain * lcg_uniform();
  }
  /* The projections are frozen: q, k and v are computed once. */
  matmul(layer->x, layer->wq, layer->q, T, DM, DM, 0);
  matmul(layer->x, layer->wk, layer->k, T, DM, DM, 0);
  matmul(layer->x, layer->wv, layer->v, T, DM, DM, 0);

  TRY(alibi_context_create(ALIBI_DEVICE_CPU, 0, &layer->ctx));
  TRY(alibi_mask_create_varlen(layer->ctx, B, cu, cu, /*causal=*/1, &layer->mask));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 3, qkv_shape, NULL, layer->q, &layer->q_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 3, qkv_shape, NULL, layer->k, &layer->k_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 3, qkv_shape, NULL, layer->v, &layer->v_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 3, qkv_shape, NULL, layer->o, &layer->o_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 2, lse_shape, NULL, layer->lse, &layer->lse_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 3, qkv_shape, NULL, layer->dout, &layer->dout_t));
  TRY(alibi_tensor_wrap(layer->ctx, ALIBI_DTYPE_F32, 1, slope_shape, NULL, layer->dslopes,
                        &layer->dslopes_t));
}

static void layer_destroy(struct Layer* layer) {
  alibi_tensor_destroy(layer->q_t);
  alibi_tensor_destroy(layer->k_t);
  alibi_tensor_destroy(layer->v_t);
  alibi_tensor_destroy(layer->o_t);
  alibi_tensor_destroy(layer->lse_t);
  alibi_tensor_destroy(layer->dout_t);
  alibi_tensor_destroy(layer->dslopes_t);
  alibi_mask_destroy(layer->mask);
  alibi_context_destroy(layer->ctx);
}

static void attention_params(const struct Layer* layer, alibi_attention_params* params) {
  alibi_attention_params_init(params); /* scale 1/sqrt(D) */
  params->slopes = layer->slopes;
}

/* y = attention(q, k, v; slopes) Wo. */
static void layer_forward(struct Layer* layer) {
  alibi_attention_params params;
  attention_params(layer, &params);
  TRY(alibi_attention_forward(layer->ctx, layer->q_t, layer->k_t, layer->v_t, layer->mask, &params,
                              layer->o_t, layer->lse_t));
  matmul(layer->o, layer->wo, layer->y, T, DM, DM, 0);
}

/* The loss mean((y - target)^2); dslopes = dL/dslopes. */
static double layer_loss_and_slope_gradient(struct Layer* layer, const float* target) {
  float dy[T * DM];
  double loss = 0.0;
  alibi_attention_params params;
  int n;
  for (n = 0; n < T * DM; ++n) {
    const float diff = layer->y[n] - target[n];
    loss += (double)diff * diff;
    dy[n] = 2.0f * diff / (float)(T * DM);
  }
  matmul(dy, layer->wo, layer->dout, T, DM, DM, /*b_transposed=*/1); /* dout = dy Wo^T */
  attention_params(layer, &params);
  TRY(alibi_attention_backward(layer->ctx, layer->q_t, layer->k_t, layer->v_t, layer->mask, &params,
                               layer->o_t, layer->lse_t, layer->dout_t, NULL, NULL, NULL,
                               layer->dslopes_t));
  return loss / (T * DM);
}

/* The loss alone (the layer's forward at the current slopes). */
static double layer_loss(struct Layer* layer, const float* target) {
  double loss = 0.0;
  int n;
  layer_forward(layer);
  for (n = 0; n < T * DM; ++n) loss += ((double)layer->y[n] - target[n]) * ((double)layer->y[n] - target[n]);
  return loss / (T * DM);
}

/* dslopes against central differences of the loss (Adam would hide a wrongly scaled gradient):
   the largest difference relative to max |dslopes|. Leaves the layer at the current slopes. */
static double finite_difference_mismatch(struct Layer* layer, const float* target) {
  double worst = 0.0, largest = 0.0;
  int h;
  layer_forward(layer);
  layer_loss_and_slope_gradient(layer, target);
  for (h = 0; h < H; ++h) largest = fmax(largest, fabs(layer->dslopes[h]));
  for (h = 0; h < H; ++h) {
    const float slope = layer->slopes[h], step = 1e-2f * slope;
    double plus, minus;
    layer->slopes[h] = slope + step;
    plus = layer_loss(layer, target);
    layer->slopes[h] = slope - step;
    minus = layer_loss(layer, target);
    layer->slopes[h] = slope;
    worst = fmax(worst, fabs((plus - minus) / (2.0 * step) - layer->dslopes[h]) / largest);
  }
  return worst;
}

static double relative_slope_error(const float* slopes, const float* truth) {
  double worst = 0.0;
  int h;
  for (h = 0; h < H; ++h) worst = fmax(worst, fabs((double)slopes[h] - truth[h]) / truth[h]);
  return worst;
}

int main(void) {
  static struct Layer layer;
  static float target[T * DM];
  float truth[H];
  double theta[H], m[H] = {0}, s[H] = {0}, error = INFINITY, mismatch;
  int step, h;

  layer_init(&layer);
  TRY(alibi_compute_slopes(H, 4.0f, truth));
  TRY(alibi_compute_slopes(H, 4.0f, layer.slopes));
  layer_forward(&layer);
  for (h = 0; h < T * DM; ++h) target[h] = layer.y[h];

  TRY(alibi_compute_slopes(H, 8.0f, layer.slopes));
  for (h = 0; h < H; ++h) theta[h] = log(layer.slopes[h]);
  printf("libalibi %s: learning the slopes of a %d-head ALiBi attention layer (d_model %d, %d "
         "tokens in %d causal sequences)\n",
         alibi_version_string(), H, DM, T, B);
  printf("true slopes  %.6f %.6f %.6f %.6f\n", truth[0], truth[1], truth[2], truth[3]);
  printf("start slopes %.6f %.6f %.6f %.6f\n", layer.slopes[0], layer.slopes[1], layer.slopes[2],
         layer.slopes[3]);
  mismatch = finite_difference_mismatch(&layer, target);
  printf("dslopes vs central differences of the loss: max difference %.1e of max |dslopes|\n",
         mismatch);
  if (!(mismatch < kGradientTolerance)) {
    printf("FAIL: the slope gradient disagrees with the loss (tolerance %.0e)\n", kGradientTolerance);
    layer_destroy(&layer);
    return 1;
  }

  for (step = 1; step <= kMaxSteps; ++step) {
    const double rate = kLearningRate * pow(0.5, (step - 1) / kHalfLife);
    double loss;
    layer_forward(&layer);
    loss = layer_loss_and_slope_gradient(&layer, target);
    for (h = 0; h < H; ++h) {
      const double g = (double)layer.dslopes[h] * layer.slopes[h]; /* d loss / d theta */
      m[h] = kBeta1 * m[h] + (1 - kBeta1) * g;
      s[h] = kBeta2 * s[h] + (1 - kBeta2) * g * g;
      theta[h] -= rate * (m[h] / (1 - pow(kBeta1, step))) /
                  (sqrt(s[h] / (1 - pow(kBeta2, step))) + 1e-12);
      layer.slopes[h] = (float)exp(theta[h]);
    }
    error = relative_slope_error(layer.slopes, truth);
    printf("step %3d  loss %.3e  max|slope - true|/true %.3e\n", step, loss, error);
    if (error < kTolerance) break;
  }
  printf("learned slopes %.6f %.6f %.6f %.6f\n", layer.slopes[0], layer.slopes[1],
         layer.slopes[2], layer.slopes[3]);
  layer_destroy(&layer);
  if (error < kTolerance) {
    printf("PASS: the slopes converged to %.1e relative error in %d steps\n", error, step);
    return 0;
  }
  printf("FAIL: relative slope error %.3e after %d steps (tolerance %.0e)\n", error, kMaxSteps,
         kTolerance);
  return 1;
}
