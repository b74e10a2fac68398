#include "reference_check.h"

#include "fuzz_common.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

namespace fuzz {

ref::Result reference_with_bounds(const ref::Problem& p, std::vector<RowBound>* bounds) {
  const double eps = 4e-7;  // a few f32 roundings
  const int group = p.heads_q / p.heads_kv;
  bounds->assign(size_t(p.heads_q * p.total_q), RowBound{});
  for (int h = 0; h < p.heads_q; ++h)
    for (int64_t i = 0; i < p.total_q; ++i) {
      const int kv = h / group;
      RowBound& b = (*bounds)[size_t(h * p.total_q + i)];
      for (int64_t j = 0; j < p.total_k; ++j) {
        if (!p.visible.at(i, j)) continue;
        double dot = 0.0;
        for (int d = 0; d < p.head_dim; ++d)
          dot += std::fabs(p.q[size_t((i * p.heads_q + h) * p.head_dim + d)] *
                           p.k[size_t((j * p.heads_kv + kv) * p.head_dim + d)]);
        const double distance = double(std::llabs(int64_t(p.positions.q[size_t(i)]) - p.positions.k[size_t(j)]));
        const double bias = std::fabs(double(p.slopes[size_t(h * p.total_q + i)]) * distance);
        double extra = 0.0;
        if (p.bias_heads > 0)
          extra = std::fabs(p.attn_bias[size_t(((p.bias_heads == 1 ? 0 : h) * p.total_q + i) * p.total_k + j)]);
        if (std::isinf(extra)) extra = 0.0;
        const double cell = eps * ((p.head_dim + 4) * std::fabs(p.scale) * dot + 2 * bias + 2 * extra +
                                   (p.softcap > 0 ? 8 * p.softcap : 0.0));
        b.score_error = std::max(b.score_error, cell);
        for (int d = 0; d < p.head_dim; ++d)
          b.v_max = std::max(b.v_max, std::fabs(p.v[size_t((j * p.heads_kv + kv) * p.head_dim + d)]));
      }
    }
  return ref::attention(p);
}

void check_forward_results(const ref::Problem& p, const ForwardResults& got, alibi_dtype dtype,
                           const char* what) {
  std::vector<RowBound> bounds;
  const ref::Result want = reference_with_bounds(p, &bounds);
  const int heads = p.heads_q, dim = p.head_dim;
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < p.total_q; ++i) {
      const double error = bounds[size_t(h * p.total_q + i)].score_error;
      const double v_max = bounds[size_t(h * p.total_q + i)].v_max;
      const double lse_want = want.lse[size_t(h * p.total_q + i)];
      if (got.lse) {
        const float lse = got.lse(h, i);
        const double tolerance = error + 2e-6 * std::fabs(lse_want) + 1e-5;
        const bool ok = std::isinf(lse_want) ? lse == -std::numeric_limits<float>::infinity()
                                             : std::fabs(lse - lse_want) <= tolerance;
        FUZZ_REQUIRE(ok, "lse[%d, %lld] = %.9g, reference %.9g (tolerance %g; %s)", h, (long long)i, lse,
                     lse_want, tolerance, what);
      }
      for (int d = 0; d < dim; ++d) {
        const double w = want.out[size_t((i * heads + h) * dim + d)];
        const float x = got.out(i, h, d);
        const double tolerance = v_max * (2 * error + 2e-5) + rounding(dtype) * std::fabs(w) + 1e-30;
        const bool ok = std::isinf(lse_want) ? x == 0.0f : std::fabs(x - w) <= tolerance;
        FUZZ_REQUIRE(ok, "out[%lld, %d, %d] = %.9g, reference %.9g (tolerance %g; %s, %s)", (long long)i, h, d, x,
                     w, tolerance, dtype == ALIBI_DTYPE_F32 ? "f32" : dtype == ALIBI_DTYPE_F16 ? "f16" : "bf16",
                     what);
      }
    }
}

}  // namespace fuzz
