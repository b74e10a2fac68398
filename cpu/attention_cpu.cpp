// Attention on the CPU: blocks of query rows against blocks of keys with an online softmax in
// f32; the ALiBi bias is computed per cell from positions and slopes. Working memory is a few
// tiles per thread, never a total_q x total_k matrix.
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/formulas.h"
#include "cpu/host_tensor.h"
#include "cpu/kernels.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kRowBlock = 64;
constexpr int64_t kKeyBlock = 128;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// Query rows [begin, end) and the slices that touch them, in mask order.
struct RowBlock {
  int64_t begin, end;
  std::vector<int32_t> slices;
};

// One thread's tiles.
struct Scratch {
  Matrix q, k, v, scores, acc;
  std::vector<float> row_max, row_sum;

  void resize(int64_t head_dim) {
    q.resize(kRowBlock, head_dim);
    k.resize(kKeyBlock, head_dim);
    v.resize(kKeyBlock, head_dim);
    scores.resize(kRowBlock, kKeyBlock);
    acc.resize(kRowBlock, head_dim);
    row_max.resize(kRowBlock);
    row_sum.resize(kRowBlock);
  }
};

std::vector<RowBlock> plan_row_blocks(const MaskPlan& plan) {
  std::vector<RowBlock> blocks(size_t((plan.total_q + kRowBlock - 1) / kRowBlock));
  for (size_t b = 0; b < blocks.size(); ++b) {
    blocks[b].begin = int64_t(b) * kRowBlock;
    blocks[b].end = std::min(plan.total_q, blocks[b].begin + kRowBlock);
  }
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    if (slice.q_begin == slice.q_end || slice.k_begin == slice.k_end) continue;
    for (int64_t b = slice.q_begin / kRowBlock; b <= (slice.q_end - 1) / kRowBlock; ++b)
      blocks[size_t(b)].slices.push_back(int32_t(s));
  }
  return blocks;
}

// Copies `count` token rows of one head into a tile as f32, times scale.
void load_tile(const TensorView& t, int64_t first_token, int64_t count, int64_t head, float scale,
               Matrix& tile) {
  const int64_t dim = t.shape[2];
  for (int64_t i = 0; i < count; ++i) {
    int64_t offset = offset3(t, first_token + i, head, 0);
    if (t.dtype == ALIBI_DTYPE_F32 && scale == 1.0f)
      std::memcpy(&tile(i, 0), static_cast<const float*>(t.data) + offset, size_t(dim) * 4);
    else
      load_row(t, offset, dim, scale, &tile(i, 0));
  }
}

class BlockAttention {
 public:
  BlockAttention(const ForwardArgs& args, const RowBlock& block, int64_t head, Scratch& s)
      : args_(args), plan_(*args.plan), block_(block), head_(head), s_(s),
        kv_head_(head / (args.q.shape[1] / args.k.shape[1])), dim_(args.q.shape[2]) {}

  void run() {
    const int64_t rows = block_.end - block_.begin;
    load_tile(args_.q, block_.begin, rows, head_, args_.scale, s_.q);
    s_.acc.topRows(rows).setZero();
    std::fill(s_.row_max.begin(), s_.row_max.end(), kNegInf);
    std::fill(s_.row_sum.begin(), s_.row_sum.end(), 0.0f);
    for (int32_t index : block_.slices) attend(plan_.slices[size_t(index)]);
    write_rows();
  }

 private:
  void attend(const Slice& slice) {
    const int64_t row_begin = std::max<int64_t>(block_.begin, slice.q_begin);
    const int64_t row_end = std::min<int64_t>(block_.end, slice.q_end);
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    // Rows' visible intervals only move right, so the block needs [first.lo, last.hi).
    const int64_t key_lo = visible_keys(slice.type, row_begin - slice.q_begin, sq, sk).lo;
    const int64_t key_hi = visible_keys(slice.type, row_end - 1 - slice.q_begin, sq, sk).hi;
    const float slope = args_.slopes.at(slice.sequence, int(head_));
    for (int64_t kb = key_lo; kb < key_hi; kb += kKeyBlock) {
      const int64_t count = std::min(kKeyBlock, key_hi - kb);
      load_tile(args_.k, slice.k_begin + kb, count, kv_head_, 1.0f, s_.k);
      load_tile(args_.v, slice.k_begin + kb, count, kv_head_, 1.0f, s_.v);
      const int64_t r0 = row_begin - block_.begin, rows = row_end - row_begin;
      s_.scores.block(r0, 0, rows, count).noalias() =
          s_.q.block(r0, 0, rows, dim_) * s_.k.topRows(count).transpose();
      for (int64_t r = row_begin; r < row_end; ++r) {
        KeyInterval visible = visible_keys(slice.type, r - slice.q_begin, sq, sk);
        float* scores = &s_.scores(r - block_.begin, 0);
        finish_scores(slice, r, kb, count, visible, slope, scores);
        online_softmax(r - block_.begin, scores, count);
      }
      s_.acc.block(r0, 0, rows, dim_).noalias() +=
          s_.scores.block(r0, 0, rows, count) * s_.v.topRows(count);
    }
  }

  // Turns raw q.k products of one row into final scores: softcap, ALiBi, attn_bias, mask.
  void finish_scores(const Slice& slice, int64_t row, int64_t kb, int64_t count,
                     KeyInterval visible, float slope, float* scores) const {
    const int32_t qpos = plan_.q_positions[size_t(row)];
    const float softcap = args_.softcap;
    for (int64_t c = 0; c < count; ++c) {
      const int64_t col = kb + c;
      if (col < visible.lo || col >= visible.hi) {
        scores[c] = kNegInf;
        continue;
      }
      const int64_t key = slice.k_begin + col;
      float score = scores[c];
      if (softcap > 0) score = softcap * std::tanh(score / softcap);
      score += alibi_bias(slope, qpos, plan_.k_positions[size_t(key)]);
      if (args_.attn_bias) score += attn_bias(row, key);
      scores[c] = score;
    }
  }

  float attn_bias(int64_t row, int64_t key) const {
    const TensorView& bias = *args_.attn_bias;
    return load_float(bias, offset3(bias, bias.shape[0] == 1 ? 0 : head_, row, key));
  }

  // Folds one row's block of scores into its running max, sum and accumulator; leaves the
  // probabilities (relative to the new max) in scores for the P.V product.
  void online_softmax(int64_t local_row, float* scores, int64_t count) {
    float& row_max = s_.row_max[size_t(local_row)];
    float& row_sum = s_.row_sum[size_t(local_row)];
    const float new_max = std::max(row_max, *std::max_element(scores, scores + count));
    if (new_max == kNegInf) {
      std::fill(scores, scores + count, 0.0f);
      return;
    }
    const float correction = std::exp(row_max - new_max);
    float sum = 0.0f;
    for (int64_t c = 0; c < count; ++c) {
      scores[c] = std::exp(scores[c] - new_max);
      sum += scores[c];
    }
    row_sum = row_sum * correction + sum;
    s_.acc.row(local_row) *= correction;
    row_max = new_max;
  }

  void write_rows() const {
    for (int64_t r = block_.begin; r < block_.end; ++r) {
      const int64_t local = r - block_.begin;
      const float sum = s_.row_sum[size_t(local)];
      const float inverse = sum > 0 ? 1.0f / sum : 0.0f;
      const int64_t offset = offset3(args_.out, r, head_, 0);
      for (int64_t d = 0; d < dim_; ++d) store_float(args_.out, offset + d, s_.acc(local, d) * inverse);
      if (args_.lse) {
        const float lse = sum > 0 ? s_.row_max[size_t(local)] + std::log(sum) : kNegInf;
        store_float(*args_.lse, offset2(*args_.lse, head_, r), lse);
      }
    }
  }

  const ForwardArgs& args_;
  const MaskPlan& plan_;
  const RowBlock& block_;
  const int64_t head_;
  Scratch& s_;
  const int64_t kv_head_;
  const int64_t dim_;
};

}  // namespace

void attention_forward(const ForwardArgs& args, ThreadPool& pool) {
  const std::vector<RowBlock> blocks = plan_row_blocks(*args.plan);
  const int64_t heads = args.q.shape[1];
  std::vector<Scratch> scratch(size_t(pool.size()));
  pool.parallel_for(int64_t(blocks.size()) * heads, [&](int64_t item, int worker) {
    Scratch& s = scratch[size_t(worker)];
    if (s.q.cols() != args.q.shape[2]) s.resize(args.q.shape[2]);
    BlockAttention(args, blocks[size_t(item / heads)], item % heads, s).run();
  });
}

}  // namespace alibi::cpu
