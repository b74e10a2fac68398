// The attention math of every backend, each step written once and callable from host and
// device code: the score of a cell, the online-softmax step, the finish of a row, the merge of
// partial results and the attn_bias broadcast. SIMD code that cannot call these functions
// (cpu/tile_ops_avx2.cpp) is tested against them cell by cell (tests/kernel/test_tile_ops.cpp).
//
// Scale: a cell's raw score is x = scale * (q . k). The CPU kernels fold scale into q once per
// tile row (one multiply per query element instead of one per cell); CUDA multiplies after the
// product, since f16/bf16 q cannot hold scale * q exactly. Both then call cell_score with x.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#include "core/kernel/formulas.h"
#include "core/kernel/host_device.h"

namespace alibi {

// s = softcap * tanh(x / softcap) when softcap > 0, else x.
ALIBI_HD float softcapped(float x, float softcap) {
  return softcap > 0.0f ? softcap * tanhf(x / softcap) : x;
}

// The score of a visible cell: softcap, then the ALiBi bias and the additive attn_bias.
ALIBI_HD float cell_score(float x, float softcap, float slope, int32_t qpos, int32_t kpos,
                          float attn_bias) {
  return softcapped(x, softcap) + alibi_bias(slope, qpos, kpos) + attn_bias;
}

// A cell's score where the mask hides it: -inf.
ALIBI_HD float masked_score() { return -INFINITY; }

// What exponentials of a row subtract: its running max, or 0 while the row has seen nothing but
// -inf (then every exp(s - shift) is exactly 0 and no NaN arises).
ALIBI_HD float softmax_shift(float max) { return max == -INFINITY ? 0.0f : max; }

// The weight of a partial result whose log-scale is part_max (a running max, or an lse) in a
// sum whose largest log-scale is max: exp(part_max - shift(max)). 0 for an empty part, and 0
// where it would be subnormal (below 2^-126 = FLT_MIN): such a part's terms weigh less than
// 2^-126 of the heaviest part's, and on x86 each product with a subnormal takes a microcode
// assist (the merge of a cold GQA decode's 8 chunks ran 2x as long).
ALIBI_HD float merge_weight(float part_max, float max) {
  const float weight = expf(part_max - softmax_shift(max));
  return weight < FLT_MIN ? 0.0f : weight;
}

// One step of a row's online softmax: a block of scores whose largest is block_max arrives.
struct SoftmaxStep {
  float max;         // the row's new running max
  float shift;       // the block's probabilities are exp(s - shift)
  float correction;  // the factor of what the row accumulated before (its sum and output)
};

ALIBI_HD SoftmaxStep softmax_step(float running_max, float block_max) {
  const float max = running_max < block_max ? block_max : running_max;
  return {max, softmax_shift(max), merge_weight(running_max, max)};
}

// The running sum after a block whose exp(s - shift) add up to block_sum.
ALIBI_HD float running_sum(float sum, float correction, float block_sum) {
  return sum * correction + block_sum;
}

// Finishing a row from its running max and sum: out = accumulated output * output_scale(sum)
// and lse = row_lse(max, sum) (only where an lse is wanted: a log per row). A row that saw no
// key (sum 0) gets out 0 and lse -inf; a NaN (from NaN inputs) stays NaN in both.
ALIBI_HD float output_scale(float sum) {
  if (sum > 0.0f) return 1.0f / sum;
  return sum == 0.0f ? 0.0f : NAN;
}

ALIBI_HD float row_lse(float max, float sum) {
  if (sum > 0.0f) return max + logf(sum);
  return sum == 0.0f ? -INFINITY : NAN;
}

// What a row accumulated: its running max and its sum of exp(s - softmax_shift(max)).
struct RowTotals {
  float max;
  float sum;
};

// An output element of a finished row: acc * scale (output_scale's), and exactly +0 for a row
// that saw no key (whatever sign the zeros of a tensor-core accumulator carry).
ALIBI_HD float finished_output(float acc, float scale) {
  return scale == 0.0f ? 0.0f : acc * scale;
}

// Backward (the gradients of a forward call, SPEC section 4), cell by cell.

// P of a visible cell from its recomputed score and its row's saved (merged) lse; a row whose
// lse is -inf saw no key and contributes nothing.
ALIBI_HD float saved_probability(float score, float lse) {
  return lse == -INFINITY ? 0.0f : expf(score - lse);
}

// dS = P (dP - Di): the gradient of a score, with dP = dout . v and Di = dout . out of its row.
ALIBI_HD float score_gradient(float p, float dp, float row_dot) { return p * (dp - row_dot); }

// The gradient of x = scale q.k given dS: the softcap's derivative 1 - tanh^2(x / softcap).
ALIBI_HD float raw_score_gradient(float ds, float x, float softcap) {
  if (!(softcap > 0.0f)) return ds;
  const float t = tanhf(x / softcap);
  return ds * (1.0f - t * t);
}

// A cell's term of dslopes: dS times the derivative of its bias with respect to the slope
// (the bias is linear in the slope: -|qpos - kpos|).
ALIBI_HD float slope_gradient_term(float ds, int32_t qpos, int32_t kpos) {
  return ds * alibi_bias(1.0f, qpos, kpos);
}

// The head of an attn_bias of shape (bias_heads, Tq, Tk) that query head `head` reads: a bias
// with one head is broadcast over all.
ALIBI_HD int64_t attn_bias_head(int64_t bias_heads, int64_t head) {
  return bias_heads == 1 ? 0 : head;
}

}  // namespace alibi
