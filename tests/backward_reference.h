// A plain float64 reference of SPEC section 4, the backward (tests only): loops over heads, rows
// and keys, no tiling, straight from the formulas. It is itself checked against central finite
// differences of the float64 forward (reference.h) in test_backward.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "reference.h"

namespace ref {

struct Gradients {
  std::vector<double> dq;       // (total_q, heads_q, head_dim)
  std::vector<double> dk, dv;   // (total_k, heads_kv, head_dim)
  std::vector<double> dslopes;  // (heads_q), or (num_sequences, heads_q) per sequence
};

// Which dslopes entry the slope of head h in row i belongs to: h, or b * heads_q + h for the
// sequence b holding row i when the slopes are per sequence (sequence_cu_q non-empty: the
// cu_seqlens of the queries). Rows in no sequence see no key, so -1 never gets a gradient.
inline int64_t slope_index(const Problem& p, const std::vector<int32_t>& sequence_cu_q, int h,
                           int64_t i) {
  if (sequence_cu_q.empty()) return h;
  for (size_t b = 0; b + 1 < sequence_cu_q.size(); ++b)
    if (sequence_cu_q[b] <= i && i < sequence_cu_q[b + 1]) return int64_t(b) * p.heads_q + h;
  return -1;
}

// d score / dx for x = scale * q.k: the softcap's derivative, 1 without softcap.
inline double softcap_derivative(const Problem& p, double x) {
  if (p.softcap <= 0) return 1.0;
  const double t = std::tanh(x / p.softcap);
  return 1.0 - t * t;
}

// The gradients of L = sum(dout * out) for the forward `forward` of p (its out and lse, as given to
// the library: Di and P come from them). dout is (total_q, heads_q, head_dim).
inline Gradients backward(const Problem& p, const Result& forward, const std::vector<double>& dout,
                          const std::vector<int32_t>& sequence_cu_q = {}) {
  const int dim = p.head_dim;
  const size_t sequences = sequence_cu_q.empty() ? 1 : sequence_cu_q.size() - 1;
  Gradients g;
  g.dq.assign(size_t(p.total_q * p.heads_q * dim), 0.0);
  g.dk.assign(size_t(p.total_k * p.heads_kv * dim), 0.0);
  g.dv.assign(g.dk.size(), 0.0);
  g.dslopes.assign(sequences * size_t(p.heads_q), 0.0);
  for (int h = 0; h < p.heads_q; ++h) {
    const int kv_head = kv_head_of(p, h);
    for (int64_t i = 0; i < p.total_q; ++i) {
      const double lse = forward.lse[size_t(h * p.total_q + i)];
      if (lse == -std::numeric_limits<double>::infinity()) continue;  // contributes nothing
      const size_t qi = size_t((i * p.heads_q + h) * dim);
      double di = 0.0;
      for (int d = 0; d < dim; ++d) di += dout[qi + size_t(d)] * forward.out[qi + size_t(d)];
      for (int64_t j = 0; j < p.total_k; ++j) {
        if (!p.visible.at(i, j)) continue;
        const size_t kj = size_t((j * p.heads_kv + kv_head) * dim);
        const double prob = std::exp(score(p, h, i, j) - lse);
        double dprob = 0.0;
        for (int d = 0; d < dim; ++d) dprob += dout[qi + size_t(d)] * p.v[kj + size_t(d)];
        const double ds = prob * (dprob - di);
        const double dx = ds * softcap_derivative(p, scaled_dot(p, h, i, j));
        for (int d = 0; d < dim; ++d) {
          g.dv[kj + size_t(d)] += prob * dout[qi + size_t(d)];
          g.dq[qi + size_t(d)] += p.scale * dx * p.k[kj + size_t(d)];
          g.dk[kj + size_t(d)] += p.scale * dx * p.q[qi + size_t(d)];
        }
        g.dslopes[size_t(slope_index(p, sequence_cu_q, h, i))] -= ds * double(distance(p, i, j));
      }
    }
  }
  return g;
}

}  // namespace ref
