// A plain float64 reference of SPEC's attention (tests only): clarity over speed. It builds the
// whole total_q x total_k visibility matrix and loops over heads, rows and keys.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <vector>

namespace ref {

enum MaskType { kFull = 0, kCausal = 1, kInvCausal = 2, kBiCausal = 3 };

// Rows [q_begin, q_end) x keys [k_begin, k_end) of one packed stream, with a MaskType.
struct Slice {
  int64_t q_begin, q_end, k_begin, k_end;
  int type;
};

// SPEC's table: local row r, local column c of an sq x sk slice.
inline bool visible_in_slice(int type, int64_t r, int64_t c, int64_t sq, int64_t sk) {
  const bool causal = c <= r + (sk - sq);
  const bool inverse_causal = c >= r;
  switch (type) {
    case kFull:
      return true;
    case kCausal:
      return causal;
    case kInvCausal:
      return inverse_causal;
    default:
      return causal && inverse_causal;
  }
}

// Which (query, key) cells are visible.
struct Visibility {
  int64_t total_q = 0, total_k = 0;
  std::vector<uint8_t> cells;  // total_q x total_k

  Visibility() = default;
  Visibility(int64_t tq, int64_t tk) : total_q(tq), total_k(tk), cells(size_t(tq * tk), 0) {}
  bool at(int64_t i, int64_t j) const { return cells[size_t(i * total_k + j)] != 0; }
  void set(int64_t i, int64_t j) { cells[size_t(i * total_k + j)] = 1; }
};

// The union of the slices' visible cells.
inline Visibility from_slices(int64_t total_q, int64_t total_k, const std::vector<Slice>& slices) {
  Visibility vis(total_q, total_k);
  for (const Slice& s : slices) {
    const int64_t sq = s.q_end - s.q_begin, sk = s.k_end - s.k_begin;
    for (int64_t r = 0; r < sq; ++r)
      for (int64_t c = 0; c < sk; ++c)
        if (visible_in_slice(s.type, r, c, sq, sk)) vis.set(s.q_begin + r, s.k_begin + c);
  }
  return vis;
}

// One slice per sequence, causal or full (what alibi_mask_create_varlen describes).
inline std::vector<Slice> varlen_slices(const std::vector<int32_t>& cu_q,
                                        const std::vector<int32_t>& cu_k, bool causal) {
  std::vector<Slice> slices;
  for (size_t b = 0; b + 1 < cu_q.size(); ++b)
    slices.push_back({cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1], causal ? kCausal : kFull});
  return slices;
}

// SPEC's sliding window, straight from its definition: of each sequence's Sq x Sk block only the
// last min(Sq, Sk) rows take part; row r of those sits at key p = r + Sk - min(Sq, Sk) and sees
// p - left <= c <= p + right (-1: unbounded).
inline Visibility sliding_window(const std::vector<int32_t>& cu_q, const std::vector<int32_t>& cu_k,
                                 int left, int right) {
  Visibility vis(cu_q.back(), cu_k.back());
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int64_t sq = cu_q[b + 1] - cu_q[b], sk = cu_k[b + 1] - cu_k[b];
    const int64_t m = std::min(sq, sk);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t row = cu_q[b] + (sq - m) + r, p = r + sk - m;
      for (int64_t c = 0; c < sk; ++c)
        if ((left < 0 || c >= p - left) && (right < 0 || c <= p + right)) vis.set(row, cu_k[b] + c);
    }
  }
  return vis;
}

// ALiBi positions of every query and key token.
struct Positions {
  std::vector<int32_t> q, k;
};

// Masks made from ranges: global token indices.
inline Positions stream_positions(int64_t total_q, int64_t total_k) {
  Positions pos;
  for (int64_t i = 0; i < total_q; ++i) pos.q.push_back(int32_t(i));
  for (int64_t j = 0; j < total_k; ++j) pos.k.push_back(int32_t(j));
  return pos;
}

// Masks made from cu_seqlens: bottom-right aligned per sequence; tokens before cu[0] get 0.
inline Positions varlen_positions(const std::vector<int32_t>& cu_q,
                                  const std::vector<int32_t>& cu_k) {
  Positions pos{std::vector<int32_t>(size_t(cu_q.back()), 0),
                std::vector<int32_t>(size_t(cu_k.back()), 0)};
  for (size_t b = 0; b + 1 < cu_q.size(); ++b) {
    const int32_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
    for (int32_t i = cu_q[b]; i < cu_q[b + 1]; ++i) pos.q[size_t(i)] = (i - cu_q[b]) + (lk - lq);
    for (int32_t j = cu_k[b]; j < cu_k[b + 1]; ++j) pos.k[size_t(j)] = j - cu_k[b];
  }
  return pos;
}

// SPEC's slope formula for heads 0..n-1, in double, rounded once to float. max_bias 0 means no
// ALiBi (the header's decision; the bare formula would give slopes of 1).
inline std::vector<float> formula_slopes(int n, float max_bias) {
  std::vector<float> slopes(size_t(n), 0.0f);
  if (max_bias == 0.0f) return slopes;
  int c = 1;
  while (2 * c <= n) c *= 2;
  const double m0 = std::exp2(-double(max_bias) / c), m1 = std::exp2(-double(max_bias) / (2.0 * c));
  for (int h = 0; h < n; ++h)
    slopes[size_t(h)] = float(h < c ? std::pow(m0, h + 1) : std::pow(m1, 2 * (h - c) + 1));
  return slopes;
}

// Problem::slopes from one slope per head, used by every row.
inline std::vector<float> slopes_of_rows(const std::vector<float>& per_head, int64_t total_q) {
  std::vector<float> slopes;
  for (float s : per_head) slopes.insert(slopes.end(), size_t(total_q), s);
  return slopes;
}

// Problem::slopes from per-sequence slopes (index b * heads + h); rows in no sequence get 0.
inline std::vector<float> slopes_of_sequences(const std::vector<float>& per_sequence, int heads,
                                              const std::vector<int32_t>& cu_q) {
  const int64_t total_q = cu_q.back();
  std::vector<float> slopes(size_t(heads * total_q), 0.0f);
  for (size_t b = 0; b + 1 < cu_q.size(); ++b)
    for (int h = 0; h < heads; ++h)
      for (int32_t i = cu_q[b]; i < cu_q[b + 1]; ++i)
        slopes[size_t(h * total_q + i)] = per_sequence[b * size_t(heads) + size_t(h)];
  return slopes;
}

struct Problem {
  int64_t total_q = 0, total_k = 0;
  int heads_q = 1, heads_kv = 1, head_dim = 1;
  std::vector<double> q, k, v;  // (total, heads, head_dim) row-major
  Visibility visible;
  Positions positions;
  std::vector<float> slopes;      // [h * total_q + i]: the slope query head h uses in row i
  double scale = 1.0;             // the softmax scale actually applied
  double softcap = 0.0;           // 0: off
  int bias_heads = 0;             // attn_bias: 0 (none), 1 (broadcast) or heads_q
  std::vector<double> attn_bias;  // (bias_heads, total_q, total_k)
};

struct Result {
  std::vector<double> out;  // (total_q, heads_q, head_dim)
  std::vector<double> lse;  // (heads_q, total_q)
};

// The kv head query head h reads (GQA/MQA).
inline int kv_head_of(const Problem& p, int h) { return h / (p.heads_q / p.heads_kv); }

// x = scale * (q_i . k_j): the score before softcap and biases.
inline double scaled_dot(const Problem& p, int h, int64_t i, int64_t j) {
  const int kv_head = kv_head_of(p, h);
  double dot = 0.0;
  for (int d = 0; d < p.head_dim; ++d)
    dot += p.q[size_t((i * p.heads_q + h) * p.head_dim + d)] *
           p.k[size_t((j * p.heads_kv + kv_head) * p.head_dim + d)];
  return p.scale * dot;
}

// |qpos[i] - kpos[j]|, an exact integer.
inline int64_t distance(const Problem& p, int64_t i, int64_t j) {
  return std::llabs(int64_t(p.positions.q[size_t(i)]) - p.positions.k[size_t(j)]);
}

// SPEC's score of a visible cell.
inline double score(const Problem& p, int h, int64_t i, int64_t j) {
  double s = scaled_dot(p, h, i, j);
  if (p.softcap > 0) s = p.softcap * std::tanh(s / p.softcap);
  // SPEC: in float32.
  const float bias = -(p.slopes[size_t(h * p.total_q + i)] * float(distance(p, i, j)));
  s += bias;
  if (p.bias_heads > 0) {
    const int64_t bias_head = p.bias_heads == 1 ? 0 : h;
    s += p.attn_bias[size_t((bias_head * p.total_q + i) * p.total_k + j)];
  }
  return s;
}

// Softmax over row i of head h; a row without a finite score keeps out 0 and gets lse -inf.
inline void attend_row(const Problem& p, int h, int64_t i, Result& res) {
  const double kNegInf = -std::numeric_limits<double>::infinity();
  std::vector<double> s(size_t(p.total_k), kNegInf);
  double max_score = kNegInf;
  for (int64_t j = 0; j < p.total_k; ++j) {
    if (!p.visible.at(i, j)) continue;
    s[size_t(j)] = score(p, h, i, j);
    max_score = std::max(max_score, s[size_t(j)]);
  }
  double& lse = res.lse[size_t(h * p.total_q + i)];
  lse = kNegInf;
  if (max_score == kNegInf) return;
  double sum = 0.0;
  for (double x : s) sum += std::exp(x - max_score);
  lse = max_score + std::log(sum);
  const int kv_head = kv_head_of(p, h);
  double* out = &res.out[size_t((i * p.heads_q + h) * p.head_dim)];
  for (int64_t j = 0; j < p.total_k; ++j) {
    const double weight = std::exp(s[size_t(j)] - lse);
    for (int d = 0; d < p.head_dim; ++d)
      out[d] += weight * p.v[size_t((j * p.heads_kv + kv_head) * p.head_dim + d)];
  }
}

inline Result attention(const Problem& p) {
  Result res;
  res.out.assign(size_t(p.total_q * p.heads_q * p.head_dim), 0.0);
  res.lse.assign(size_t(p.heads_q * p.total_q), 0.0);
  for (int h = 0; h < p.heads_q; ++h)
    for (int64_t i = 0; i < p.total_q; ++i) attend_row(p, h, i, res);
  return res;
}

}  // namespace ref
