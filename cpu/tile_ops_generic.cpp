// Portable tile operations: Eigen for the products, plain loops for the softmax.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/kernel/attention_math.h"
#include "core/kernel/half.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

using RowMajor = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using DynamicStride = Eigen::Stride<Eigen::Dynamic, Eigen::Dynamic>;

void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
          const float* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  Eigen::Map<const RowMajor, 0, DynamicStride> lhs(a, m, k, DynamicStride(a_row, a_col));
  Eigen::Map<const RowMajor, 0, Eigen::OuterStride<>> rhs(b, k, n, Eigen::OuterStride<>(ldb));
  Eigen::Map<RowMajor, 0, Eigen::OuterStride<>> out(c, m, n, Eigen::OuterStride<>(ldc));
  if (c_scale) {
    out = Eigen::Map<const Eigen::VectorXf>(c_scale, m).asDiagonal() * out;
    out.noalias() += lhs * rhs;
  } else {
    out.noalias() = lhs * rhs;
  }
}

float finished_score(const ScoreBlock& b, int64_t j, int64_t c) {
  const int64_t key = b.first_key + j;
  if (b.needs_mask && !KeyInterval{b.visible_lo[c], b.visible_hi[c]}.contains(key)) return masked_score();
  return cell_score(b.scores[j * b.ld + c], b.softcap, b.slopes ? b.slopes[c] : b.slope, b.query_pos[c], b.key_pos[j],
                    b.attn_bias ? b.attn_bias[j * b.ld + c] : 0.0f);
}

void softmax_block(const ScoreBlock& b) {
  for (int64_t c = 0; c < b.queries; ++c) {
    float block_max = kNegInf;
    for (int64_t j = 0; j < b.keys; ++j) {
      const float s = finished_score(b, j, c);
      b.scores[j * b.ld + c] = s;
      block_max = std::max(block_max, s);
    }
    const SoftmaxStep step = softmax_step(b.row_max[c], block_max);
    float sum = 0.0f;
    for (int64_t j = 0; j < b.keys; ++j) {
      float& s = b.scores[j * b.ld + c];
      s = std::exp(s - step.shift);
      sum += s;
    }
    b.correction[c] = step.correction;
    b.row_sum[c] = running_sum(b.row_sum[c], step.correction, sum);
    b.row_max[c] = step.max;
  }
}

void widen(alibi_dtype dtype, const uint16_t* src, int64_t count, float* dst) {
  if (dtype == ALIBI_DTYPE_F16)
    for (int64_t i = 0; i < count; ++i) dst[i] = f16_to_float(src[i]);
  else
    for (int64_t i = 0; i < count; ++i) dst[i] = bf16_to_float(src[i]);
}

void narrow(alibi_dtype dtype, const float* src, float scale, int64_t count, uint16_t* dst) {
  if (dtype == ALIBI_DTYPE_F16)
    for (int64_t i = 0; i < count; ++i) dst[i] = float_to_f16(src[i] * scale);
  else
    for (int64_t i = 0; i < count; ++i) dst[i] = float_to_bf16(src[i] * scale);
}

// Dim d of head g of a run's token j.
float token_value(const TokenRun& run, int64_t j, int64_t g, int64_t d) {
  return load_element(run.dtype, run.row(j), g * run.head_stride + d);
}

// The portable build ignores the prefetch hint (`ahead`).
void score_tokens(const float* q, const TokenRun& k, const TokenRun*, const HeadLayout& layout, float* scores) {
  for (int64_t j = 0; j < k.count; ++j)
    for (int64_t h = 0; h < layout.heads; ++h) {
      float s = 0.0f;
      for (int64_t d = 0; d < layout.dim; ++d) s += q[h * layout.dim + d] * token_value(k, j, h / layout.group, d);
      scores[j * layout.heads + h] = s;
    }
}

void accumulate_tokens(const float* p, const TokenRun& v, const TokenRun*, const HeadLayout& layout, const float* correction,
                       float* acc) {
  for (int64_t h = 0; h < layout.heads; ++h)
    for (int64_t d = 0; d < layout.dim; ++d) acc[h * layout.dim + d] *= correction[h];
  for (int64_t j = 0; j < v.count; ++j)
    for (int64_t h = 0; h < layout.heads; ++h) {
      const float weight = p[j * layout.heads + h];
      for (int64_t d = 0; d < layout.dim; ++d) acc[h * layout.dim + d] += weight * token_value(v, j, h / layout.group, d);
    }
}

void exp_in_place(float* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) x[i] = std::exp(x[i]);
}

float gradient_block(const GradientBlock& b) {
  float slope_sum = 0.0f;
  for (int64_t j = 0; j < b.keys; ++j)
    for (int64_t c = 0; c < b.queries; ++c) {
      float& p = b.scores[j * b.ld + c];
      float& gradient = b.dscores[j * b.ld + c];
      if (b.needs_mask && !KeyInterval{b.visible_lo[c], b.visible_hi[c]}.contains(b.first_key + j)) {
        p = gradient = 0.0f;
        continue;
      }
      const float x = p;
      const float s = cell_score(x, b.softcap, b.slope, b.query_pos[c], b.key_pos[j],
                                 b.attn_bias ? b.attn_bias[j * b.ld + c] : 0.0f);
      p = saved_probability(s, b.lse[c]);
      const float ds = score_gradient(p, gradient, b.row_dot[c]);
      gradient = raw_score_gradient(ds, x, b.softcap);
      slope_sum += slope_gradient_term(ds, b.query_pos[c], b.key_pos[j]);
    }
  return slope_sum;
}

}  // namespace

const TileOps& generic_tile_ops() {
  static const TileOps ops{"generic", gemm,    nullptr,      false,   softmax_block, widen,
                           narrow,    nullptr, score_tokens, nullptr, 0,             false,
                           accumulate_tokens, false, exp_in_place, gradient_block};
  return ops;
}

}  // namespace alibi::cpu
