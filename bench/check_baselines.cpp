// alibi-bench-check: the unfused backward baseline against central finite differences of a
// float64 forward written here, on small varlen problems (an empty sequence, causal and full,
// GQA). A wrong baseline would make every "vs unfused" figure and every agreement check of
// alibi-bench meaningless; this checks it without libalibi's backward. Exit status 1 on a
// difference above kTolerance. Run by ctest (bench.check_baselines).
#include <cmath>
#include <cstdio>
#include <cstring>
#include <vector>

#include "baselines.h"

namespace bench {

namespace {

constexpr double kStep = 1e-5;       // central differences in float64
constexpr double kTolerance = 1e-5;  // the baseline computes in f32
constexpr float kMaxBias = 8.0f;

using Values = std::vector<double>;

struct Forward {
  Values out, lse;  // (total_q, heads, head_dim); (heads, total_q)
};

// One row's scores: scale q.k - slope |qpos - kpos| on visible keys, -inf elsewhere.
Values row_scores(const Case& c, const Values& q, const Values& k, double slope, int64_t row,
                  int64_t key_begin, int64_t length_k, int64_t qpos, int head) {
  const int64_t dim = c.head_dim, kv_head = head / (c.heads / c.kv_heads);
  const double scale = 1.0 / std::sqrt(double(dim));
  Values scores(size_t(length_k), -INFINITY);
  for (int64_t j = 0; j < length_k; ++j) {
    if (c.causal && j > qpos) continue;
    double dot = 0.0;
    for (int64_t d = 0; d < dim; ++d)
      dot += q[size_t((row * c.heads + head) * dim + d)] *
             k[size_t(((key_begin + j) * c.kv_heads + kv_head) * dim + d)];
    scores[size_t(j)] = scale * dot - slope * double(std::abs(qpos - j));
  }
  return scores;
}

Forward forward(const Case& c, const Values& q, const Values& k, const Values& v,
                const Values& slopes) {
  Forward result{Values(q.size(), 0.0), Values(size_t(c.heads * c.total_q()), 0.0)};
  const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
  const int64_t dim = c.head_dim;
  for (size_t b = 0; b < c.lengths_q.size(); ++b)
    for (int head = 0; head < c.heads; ++head)
      for (int64_t i = 0; i < c.lengths_q[b]; ++i) {
        const int64_t row = cu_q[b] + i, qpos = i + c.lengths_k[b] - c.lengths_q[b];
        const Values scores = row_scores(c, q, k, slopes[size_t(head)], row, cu_k[b],
                                         c.lengths_k[b], qpos, head);
        double max = -INFINITY, sum = 0.0;
        for (double s : scores) max = std::max(max, s);
        for (double s : scores) sum += s == -INFINITY ? 0.0 : std::exp(s - max);
        const double lse = max == -INFINITY ? -INFINITY : max + std::log(sum);
        result.lse[size_t(head * c.total_q() + row)] = lse;
        for (int64_t j = 0; j < c.lengths_k[b]; ++j) {
          if (scores[size_t(j)] == -INFINITY) continue;
          const double p = std::exp(scores[size_t(j)] - lse);
          const int64_t kv_head = head / (c.heads / c.kv_heads);
          for (int64_t d = 0; d < dim; ++d)
            result.out[size_t((row * c.heads + head) * dim + d)] +=
                p * v[size_t(((cu_k[b] + j) * c.kv_heads + kv_head) * dim + d)];
        }
      }
  return result;
}

Values as_doubles(const std::vector<unsigned char>& bytes) {
  Values values(bytes.size() / 4);
  for (size_t i = 0; i < values.size(); ++i) {
    float value;
    std::memcpy(&value, bytes.data() + 4 * i, 4);
    values[i] = value;
  }
  return values;
}

std::vector<unsigned char> as_f32_bytes(const Values& values) {
  std::vector<unsigned char> bytes(values.size() * 4);
  for (size_t i = 0; i < values.size(); ++i) {
    const float value = float(values[i]);
    std::memcpy(bytes.data() + 4 * i, &value, 4);
  }
  return bytes;
}

// The parameters the loss depends on: q, k, v and the slopes; loss = sum(dout * out).
struct Parameters {
  Values q, k, v, slopes;
};

double loss(const Case& c, const Parameters& p, const Values& dout) {
  const Forward result = forward(c, p.q, p.k, p.v, p.slopes);
  double total = 0.0;
  for (size_t i = 0; i < dout.size(); ++i) total += dout[i] * result.out[i];
  return total;
}

// Max |central difference - gradient| over the elements of `x` (one of p's members).
double max_difference(const Case& c, Parameters& p, Values& x, const std::vector<float>& gradient,
                      const Values& dout) {
  double worst = 0.0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double original = x[i];
    x[i] = original + kStep;
    const double above = loss(c, p, dout);
    x[i] = original - kStep;
    const double below = loss(c, p, dout);
    x[i] = original;
    const double diff = std::fabs((above - below) / (2 * kStep) - gradient[i]);
    if (!(diff <= worst)) worst = diff;  // NaN sticks
  }
  return worst;
}

Case small_case(const char* name, int heads, int kv_heads, bool causal, std::vector<int32_t> lq,
                std::vector<int32_t> lk) {
  Case c;
  c.name = name;
  c.kind = Kind::varlen;
  c.dtype = ALIBI_DTYPE_F32;
  c.backward = true;
  c.with_baseline = true;
  c.quick = false;
  c.heads = heads;
  c.kv_heads = kv_heads;
  c.head_dim = 8;
  c.causal = causal;
  c.lengths_q = std::move(lq);
  c.lengths_k = std::move(lk);
  return c;
}

// True when every gradient of the baseline is within kTolerance of the finite differences.
bool check(const Case& c) {
  const Inputs inputs = make_inputs(c);
  std::vector<float> slopes(size_t(c.heads));
  alibi_compute_slopes(c.heads, kMaxBias, slopes.data());
  Parameters p{as_doubles(inputs.q), as_doubles(inputs.k), as_doubles(inputs.v),
               Values(slopes.begin(), slopes.end())};
  const Values dout = as_doubles(inputs.dout);
  const Forward f = forward(c, p.q, p.k, p.v, p.slopes);
  const ForwardResult forward_result{as_f32_bytes(f.out),
                                     std::vector<float>(f.lse.begin(), f.lse.end())};
  const float nan = NAN;
  Gradients g{std::vector<float>(p.q.size(), nan), std::vector<float>(p.k.size(), nan),
              std::vector<float>(p.v.size(), nan), std::vector<float>(p.slopes.size(), nan)};
  unfused_attention_backward(c, inputs, forward_result, g);
  const double dq = max_difference(c, p, p.q, g.dq, dout),
               dk = max_difference(c, p, p.k, g.dk, dout),
               dv = max_difference(c, p, p.v, g.dv, dout),
               dslopes = max_difference(c, p, p.slopes, g.dslopes, dout);
  std::printf("%s: max |finite difference - baseline|: dq %.3g, dk %.3g, dv %.3g, dslopes %.3g\n",
              c.name.c_str(), dq, dk, dv, dslopes);
  return dq <= kTolerance && dk <= kTolerance && dv <= kTolerance && dslopes <= kTolerance;
}

}  // namespace

}  // namespace bench

int main() {
  using bench::small_case;
  const bench::Case cases[] = {
      small_case("causal H4/2, lengths 5x7 0x3 9x9 3x3", 4, 2, true, {5, 0, 9, 3}, {7, 3, 9, 3}),
      small_case("full H4/2, lengths 6x6 4x11", 4, 2, false, {6, 4}, {6, 11}),
      small_case("causal H4/1 (MQA), lengths 5x7 0x3 9x9 3x3", 4, 1, true, {5, 0, 9, 3},
                 {7, 3, 9, 3})};
  bool ok = true;
  for (const bench::Case& c : cases) ok = bench::check(c) && ok;
  std::printf("%s\n", ok ? "the backward baseline agrees with the finite differences"
                         : "FAILED: the backward baseline disagrees with the finite differences");
  return ok ? 0 : 1;
}
