#include "backward_check.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "backward_reference.h"

namespace fuzz {

namespace {

constexpr double kEps = 4e-7;      // a few f32 roundings of one operation chain
constexpr double kUnit = 1.2e-7;   // per f32 addition of an accumulation (2 ulps: any order)
// What an f32 operation may lose absolutely where its result is tiny (flushed below FLT_MIN).
constexpr double kTiny = 2.4e-38;

// Sums of terms with their propagated errors and magnitudes, per element.
struct Accumulator {
  std::vector<double> value, error, magnitude;
  int64_t terms = 0;  // the most terms any element sums
  explicit Accumulator(size_t n) : value(n, 0.0), error(n, 0.0), magnitude(n, 0.0) {}
  void add(size_t at, double term, double term_error) {
    value[at] += term;
    error[at] += term_error + kTiny;
    magnitude[at] += std::fabs(term);
  }
  Gradient finish() const {
    Gradient g{value, error};
    for (size_t n = 0; n < value.size(); ++n) g.bound[n] += kUnit * double(terms + 4) * magnitude[n];
    return g;
  }
};

double dot(const double* a, const double* b, int n, double* magnitude) {
  double sum = 0.0;
  *magnitude = 0.0;
  for (int d = 0; d < n; ++d) sum += a[d] * b[d], *magnitude += std::fabs(a[d] * b[d]);
  return sum;
}

// A visible cell with a finite score: x = scale q.k, the score s, and the largest error of the
// library's f32 x and s.
struct Cell {
  int64_t key;
  double x, score, x_error, score_error;
};

// Row i of query head h: its cells and the float64 lse (-inf when no cell is finite).
std::vector<Cell> row_cells(const ref::Problem& p, int h, int64_t i, double* lse) {
  const int kv = ref::kv_head_of(p, h);
  const double* q = &p.q[size_t((i * p.heads_q + h) * p.head_dim)];
  std::vector<Cell> cells;
  double max_score = -INFINITY;
  for (int64_t j = 0; j < p.total_k; ++j) {
    if (!p.visible.at(i, j)) continue;
    const double s = ref::score(p, h, i, j);
    if (std::isinf(s)) continue;  // an attn_bias -inf cell
    double qk_magnitude;
    const double x = p.scale * dot(q, &p.k[size_t((j * p.heads_kv + kv) * p.head_dim)], p.head_dim, &qk_magnitude);
    const double bias = double(p.slopes[size_t(h * p.total_q + i)]) * double(ref::distance(p, i, j));
    const double x_error = kEps * (p.head_dim + 4) * std::fabs(p.scale) * qk_magnitude;
    const double score_error =
        x_error + kEps * (2 * bias + 2 * std::fabs(s - x) + 2 * std::fabs(s) + (p.softcap > 0 ? 8 * p.softcap : 0.0));
    cells.push_back({j, x, s, x_error, score_error});
    max_score = std::max(max_score, s);
  }
  double sum = 0.0;
  for (const Cell& c : cells) sum += std::exp(c.score - max_score);
  *lse = cells.empty() ? -INFINITY : max_score + std::log(sum);
  return cells;
}

// How far the library's P of a cell may be from P = exp(s - lse) when its exponent s' - lse'
// is off by at most `error`: P' <= exp(s - lse + error) (this form holds where P underflows).
// Capped so that products with the other (bounded) factors stay finite.
double probability_error(double s_minus_lse, double error) {
  return std::min(std::exp(s_minus_lse + error) - std::exp(s_minus_lse) + kTiny, 1e200);
}

}  // namespace

BackwardResult backward_with_bounds(const ref::Problem& p, const BackwardInputs& in) {
  const int dim = p.head_dim, group = p.heads_q / p.heads_kv;
  Accumulator dq(size_t(p.total_q * p.heads_q * dim)), dk(size_t(p.total_k * p.heads_kv * dim)),
      dv(size_t(p.total_k * p.heads_kv * dim)), dslopes(size_t(in.slope_slots));
  dq.terms = p.total_k;
  dk.terms = dv.terms = group * p.total_q;
  dslopes.terms = p.total_q * p.total_k;
  for (int h = 0; h < p.heads_q; ++h)
    for (int64_t i = 0; i < p.total_q; ++i) {
      double lse;
      const std::vector<Cell> cells = row_cells(p, h, i, &lse);
      // The forward's lse (which the library reads) is off by its scores' errors and its sum's.
      double lse_error = kEps * std::fabs(lse) + kUnit * double(cells.size() + 4);
      for (const Cell& c : cells) lse_error = std::max(lse_error, c.score_error + kEps * std::fabs(lse));
      const int kv = ref::kv_head_of(p, h);
      const size_t qi = size_t((i * p.heads_q + h) * dim);
      const double* q = &p.q[qi];
      const double* dout = &in.dout[qi];
      double di_magnitude;
      const double di = dot(dout, &in.out[qi], dim, &di_magnitude);
      const double di_error = kEps * (dim + 2) * di_magnitude;
      const int slot = in.slope_slot[size_t(h * p.total_q + i)];
      for (const Cell& c : cells) {
        const size_t kj = size_t((c.key * p.heads_kv + kv) * dim);
        const double *k = &p.k[kj], *v = &p.v[kj];
        double dp_magnitude;
        const double dp = dot(dout, v, dim, &dp_magnitude);
        const double distance = double(ref::distance(p, i, c.key));
        const double prob = std::exp(c.score - lse);
        const double prob_error = probability_error(c.score - lse, c.score_error + lse_error);
        const double ds = prob * (dp - di);
        const double ds_error = prob_error * std::fabs(dp - di) +
                                (prob + prob_error) * (kEps * (dim + 2) * dp_magnitude + di_error) +
                                kEps * std::fabs(ds) + kTiny;
        double dx = ds, dx_error = ds_error;
        if (p.softcap > 0) {
          const double slope = ref::softcap_derivative(p, c.x);
          // d(1 - tanh^2 u)/du is at most 0.77 in magnitude; 1 - t^2 loses ~3 ulps absolute.
          const double slope_error = 0.77 * c.x_error / p.softcap + 4 * kUnit;
          dx = ds * slope;
          dx_error = ds_error * slope + (std::fabs(ds) + ds_error) * slope_error + kTiny;
        }
        for (int d = 0; d < dim; ++d) {
          dq.add(qi + size_t(d), p.scale * dx * k[d], std::fabs(p.scale) * dx_error * std::fabs(k[d]));
          dk.add(kj + size_t(d), p.scale * dx * q[d], std::fabs(p.scale) * dx_error * std::fabs(q[d]));
          dv.add(kj + size_t(d), prob * dout[d], prob_error * std::fabs(dout[d]));
        }
        if (slot >= 0) dslopes.add(size_t(slot), -ds * distance, ds_error * distance * (1 + kEps));
      }
    }
  return {dq.finish(), dk.finish(), dv.finish(), dslopes.finish()};
}

}  // namespace fuzz
