#include "baselines.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

namespace bench {

namespace {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstHeadMap = Eigen::Map<const RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;
using HeadMap = Eigen::Map<RowMatrix, Eigen::Unaligned, Eigen::OuterStride<>>;

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kMaxBias = 8.0f;  // libalibi's default slopes

// One thread's Lq x Lk buffers.
struct Workspace {
  RowMatrix scores, bias;
};

// ALiBi bias of one head and sequence, bottom-right aligned as libalibi's varlen masks:
// qpos = row + (Lk - Lq), kpos = col; -slope * |qpos - kpos| where visible, -inf where masked.
void build_bias(float slope, int64_t lq, int64_t lk, bool causal, RowMatrix& bias) {
  bias.resize(lq, lk);
  for (int64_t row = 0; row < lq; ++row) {
    const int64_t qpos = row + lk - lq;
    const int64_t visible_end = causal ? std::clamp<int64_t>(qpos + 1, 0, lk) : lk;
    float* values = &bias(row, 0);
    for (int64_t col = 0; col < visible_end; ++col)
      values[col] = -(slope * float(std::abs(qpos - col)));
    std::fill(values + visible_end, values + lk, kNegInf);
  }
}

void softmax_rows(RowMatrix& scores) {
  for (Eigen::Index row = 0; row < scores.rows(); ++row) {
    auto values = scores.row(row);
    const float max = values.maxCoeff();
    if (max == kNegInf) {  // no visible key: out = 0
      values.setZero();
      continue;
    }
    values = (values.array() - max).exp();
    values /= values.sum();
  }
}

// q/k/v/out point at the head in the first token of the sequence; rows (tokens) are q_stride
// (q, out) and kv_stride (k, v) floats apart.
struct HeadView {
  const float *q, *k, *v;
  float* out;
  int64_t lq, lk, q_stride, kv_stride, head_dim;
};

void attend_head(const HeadView& view, float slope, float scale, bool causal, Workspace& ws) {
  const ConstHeadMap q(view.q, view.lq, view.head_dim, Eigen::OuterStride<>(view.q_stride));
  const ConstHeadMap k(view.k, view.lk, view.head_dim, Eigen::OuterStride<>(view.kv_stride));
  const ConstHeadMap v(view.v, view.lk, view.head_dim, Eigen::OuterStride<>(view.kv_stride));
  HeadMap out(view.out, view.lq, view.head_dim, Eigen::OuterStride<>(view.q_stride));
  build_bias(slope, view.lq, view.lk, causal, ws.bias);
  ws.scores.noalias() = (scale * q) * k.transpose();
  ws.scores += ws.bias;
  softmax_rows(ws.scores);
  out.noalias() = ws.scores * v;
}

void attend_all(const Case& c, const float* q, const float* k, const float* v, float* out) {
  std::vector<float> slopes(size_t(c.heads));
  alibi_compute_slopes(c.heads, kMaxBias, slopes.data());
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
  const int64_t q_stride = int64_t(c.heads) * c.head_dim,
                kv_stride = int64_t(c.kv_heads) * c.head_dim;
  const int group = c.heads / c.kv_heads;
  const int items = int(c.lengths_q.size()) * c.heads;
#pragma omp parallel
  {
    Workspace ws;
#pragma omp for schedule(dynamic)
    for (int item = 0; item < items; ++item) {
      const int b = item / c.heads, head = item % c.heads;
      const int64_t q_offset = cu_q[b] * q_stride + int64_t(head) * c.head_dim;
      const int64_t kv_offset = cu_k[b] * kv_stride + int64_t(head / group) * c.head_dim;
      const HeadView view{q + q_offset,   k + kv_offset,  v + kv_offset,
                          out + q_offset, c.lengths_q[b], c.lengths_k[b],
                          q_stride,       kv_stride,      c.head_dim};
      attend_head(view, slopes[size_t(head)], scale, c.causal, ws);
    }
  }
}

std::vector<float> widen_half(const std::vector<unsigned char>& bytes, alibi_dtype dtype) {
  const int64_t count = int64_t(bytes.size() / 2);
  const uint16_t* halves = reinterpret_cast<const uint16_t*>(bytes.data());
  std::vector<float> values(static_cast<size_t>(count));
#pragma omp parallel for
  for (int64_t i = 0; i < count; ++i) values[size_t(i)] = from_half(halves[i], dtype);
  return values;
}

const float* as_f32(const std::vector<unsigned char>& bytes) {
  return reinterpret_cast<const float*>(bytes.data());
}

// One thread's Lq x Lk buffers for the backward: P, the bias, dP (then dS in place).
struct BackwardWorkspace {
  RowMatrix probabilities, bias, dscores;
  Eigen::VectorXf row_dot;  // rowsum(dO * O)
};

// P = exp(S - lse) row by row, in place over S (bias included, -inf where masked): 0 where
// masked, and on a whole row whose lse is -inf (it sees no key).
void exponentiate_rows(const float* lse, RowMatrix& scores) {
  for (Eigen::Index row = 0; row < scores.rows(); ++row) {
    auto values = scores.row(row);
    if (lse[row] == kNegInf)
      values.setZero();
    else
      values = (values.array() - lse[row]).exp();
  }
}

// sum over the cells of dS * |qpos - kpos| (bottom-right aligned positions); masked cells hold 0.
double distance_weighted_sum(const RowMatrix& dscores, int64_t lq, int64_t lk) {
  double total = 0.0;
  for (int64_t row = 0; row < lq; ++row) {
    const int64_t qpos = row + lk - lq;
    const float* values = &dscores(row, 0);
    float sum = 0.0f;
    for (int64_t col = 0; col < lk; ++col) sum += values[col] * float(std::abs(qpos - col));
    total += sum;
  }
  return total;
}

// One query head's part of the backward; a view's out is the forward's out, dout its gradient,
// dq, dk, dv the head's gradients (dk and dv accumulated into: a kv head serves its group).
struct BackwardHeadView {
  const float *q, *k, *v, *out, *dout, *lse;
  float *dq, *dk, *dv;
  int64_t lq, lk, q_stride, kv_stride, head_dim;
};

// Returns the head's contribution to its slope's gradient.
double backward_head(const BackwardHeadView& view, float slope, float scale, bool causal,
                     BackwardWorkspace& ws) {
  const Eigen::OuterStride<> q_stride(view.q_stride), kv_stride(view.kv_stride);
  const ConstHeadMap q(view.q, view.lq, view.head_dim, q_stride),
      out(view.out, view.lq, view.head_dim, q_stride),
      dout(view.dout, view.lq, view.head_dim, q_stride);
  const ConstHeadMap k(view.k, view.lk, view.head_dim, kv_stride),
      v(view.v, view.lk, view.head_dim, kv_stride);
  HeadMap dq(view.dq, view.lq, view.head_dim, q_stride);
  HeadMap dk(view.dk, view.lk, view.head_dim, kv_stride),
      dv(view.dv, view.lk, view.head_dim, kv_stride);

  build_bias(slope, view.lq, view.lk, causal, ws.bias);
  ws.probabilities.noalias() = (scale * q) * k.transpose();
  ws.probabilities += ws.bias;
  exponentiate_rows(view.lse, ws.probabilities);
  dv.noalias() += ws.probabilities.transpose() * dout;
  ws.dscores.noalias() = dout * v.transpose();
  ws.row_dot = dout.cwiseProduct(out).rowwise().sum();
  ws.dscores.array() =
      ws.probabilities.array() * (ws.dscores.array().colwise() - ws.row_dot.array());
  dq.noalias() = (scale * ws.dscores) * k;
  dk.noalias() += (scale * ws.dscores.transpose()) * q;
  return -distance_weighted_sum(ws.dscores, view.lq, view.lk);
}

// The f32 tensors of a backward: q, k, v, out, dout.
struct BackwardTensors {
  const float *q, *k, *v, *out, *dout;
};

void backward_all(const Case& c, const BackwardTensors& t, const float* lse, Gradients& grads) {
  std::vector<float> slopes(size_t(c.heads));
  alibi_compute_slopes(c.heads, kMaxBias, slopes.data());
  const float scale = 1.0f / std::sqrt(float(c.head_dim));
  const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
  const int64_t q_stride = int64_t(c.heads) * c.head_dim,
                kv_stride = int64_t(c.kv_heads) * c.head_dim;
  const int group = c.heads / c.kv_heads;
  const int sequences = int(c.lengths_q.size());
  const int items = sequences * c.kv_heads;
  std::vector<double> dslope_parts(size_t(sequences) * c.heads);  // per (sequence, head)
#pragma omp parallel
  {
    BackwardWorkspace ws;
#pragma omp for schedule(dynamic)
    for (int item = 0; item < items; ++item) {
      const int b = item / c.kv_heads, kv_head = item % c.kv_heads;
      const int64_t kv_offset = cu_k[b] * kv_stride + int64_t(kv_head) * c.head_dim;
      HeadMap(grads.dk.data() + kv_offset, c.lengths_k[b], c.head_dim,
              Eigen::OuterStride<>(kv_stride))
          .setZero();
      HeadMap(grads.dv.data() + kv_offset, c.lengths_k[b], c.head_dim,
              Eigen::OuterStride<>(kv_stride))
          .setZero();
      for (int head = kv_head * group; head < (kv_head + 1) * group; ++head) {
        const int64_t q_offset = cu_q[b] * q_stride + int64_t(head) * c.head_dim;
        const BackwardHeadView view{t.q + q_offset,
                                    t.k + kv_offset,
                                    t.v + kv_offset,
                                    t.out + q_offset,
                                    t.dout + q_offset,
                                    lse + int64_t(head) * c.total_q() + cu_q[b],
                                    grads.dq.data() + q_offset,
                                    grads.dk.data() + kv_offset,
                                    grads.dv.data() + kv_offset,
                                    c.lengths_q[b],
                                    c.lengths_k[b],
                                    q_stride,
                                    kv_stride,
                                    c.head_dim};
        dslope_parts[size_t(b) * c.heads + head] =
            backward_head(view, slopes[size_t(head)], scale, c.causal, ws);
      }
    }
  }
  for (int head = 0; head < c.heads; ++head) {
    double total = 0.0;
    for (int b = 0; b < sequences; ++b) total += dslope_parts[size_t(b) * c.heads + head];
    grads.dslopes[size_t(head)] = float(total);
  }
}

}  // namespace

void unfused_attention(const Case& c, const Inputs& inputs, float* out) {
  if (c.dtype == ALIBI_DTYPE_F32) {
    attend_all(c, as_f32(inputs.q), as_f32(inputs.k), as_f32(inputs.v), out);
    return;
  }
  const std::vector<float> q = widen_half(inputs.q, c.dtype), k = widen_half(inputs.k, c.dtype),
                           v = widen_half(inputs.v, c.dtype);
  attend_all(c, q.data(), k.data(), v.data(), out);
}

void unfused_attention_backward(const Case& c, const Inputs& inputs, const ForwardResult& forward,
                                Gradients& grads) {
  if (c.dtype == ALIBI_DTYPE_F32) {
    const BackwardTensors tensors{as_f32(inputs.q), as_f32(inputs.k), as_f32(inputs.v),
                                  as_f32(forward.out), as_f32(inputs.dout)};
    backward_all(c, tensors, forward.lse.data(), grads);
    return;
  }
  const std::vector<float> q = widen_half(inputs.q, c.dtype), k = widen_half(inputs.k, c.dtype),
                           v = widen_half(inputs.v, c.dtype),
                           out = widen_half(forward.out, c.dtype),
                           dout = widen_half(inputs.dout, c.dtype);
  backward_all(c, {q.data(), k.data(), v.data(), out.data(), dout.data()}, forward.lse.data(),
               grads);
}

Gemm::Gemm(int n) : a_(Matrix::Random(n, n)), b_(Matrix::Random(n, n)), c_(Matrix::Zero(n, n)) {}

void Gemm::run() { c_.noalias() = a_ * b_; }

double Gemm::flops() const {
  return 2.0 * double(a_.rows()) * double(a_.cols()) * double(b_.cols());
}

Copy::Copy(size_t bytes) : source_(bytes, 1), target_(bytes, 0) {}

void Copy::run() {
  const size_t size = source_.size();
#pragma omp parallel
  {
    const size_t threads = size_t(omp_get_num_threads()), thread = size_t(omp_get_thread_num());
    const size_t chunk = (size + threads - 1) / threads;
    const size_t begin = std::min(size, thread * chunk), end = std::min(size, begin + chunk);
    std::memcpy(target_.data() + begin, source_.data() + begin, end - begin);
  }
}

double Copy::bytes_moved() const { return 2.0 * double(source_.size()); }

void Copy::read() {
  const auto* words = reinterpret_cast<const uint64_t*>(source_.data());
  const int64_t count = int64_t(source_.size() / sizeof(uint64_t));
  uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (int64_t i = 0; i < count; ++i) sum += words[i];
  checksum_ += sum;
}

double Copy::bytes_read() const { return double(source_.size()); }

}  // namespace bench
