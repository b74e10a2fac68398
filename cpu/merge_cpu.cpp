#include <algorithm>
#include <vector>

#include "cpu/host_tensor.h"
#include "cpu/kernels.h"
#include "cpu/merge.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kTokensPerItem = 64;

// One (token, head) row of a (T, H, D) float tensor as f32.
void load_row(const TensorView& t, int64_t token, int64_t head, float* dst) {
  const int64_t dim = t.shape[2];
  for (int64_t d = 0; d < dim; ++d) dst[d] = load_float(t, offset3(t, token, head, d));
}

}  // namespace

RowTotals merge_rows(const PartialRow* parts, int64_t count, int64_t dim, float* acc) {
  float max = -INFINITY;
  for (int64_t p = 0; p < count; ++p) max = std::max(max, parts[p].max);
  std::fill(acc, acc + dim, 0.0f);
  float sum = 0.0f;
  for (int64_t p = 0; p < count; ++p) {
    const float weight = merge_weight(parts[p].max, max);
    if (weight == 0.0f) continue;
    sum += parts[p].sum * weight;
    for (int64_t d = 0; d < dim; ++d) acc[d] += weight * parts[p].acc[d];
  }
  return {max, sum};
}

void attention_merge(const MergeArgs& args, const ThreadPool& pool) {
  const int64_t tokens = args.out.shape[0], heads = args.out.shape[1], dim = args.out.shape[2];
  pool.parallel_for((tokens + kTokensPerItem - 1) / kTokensPerItem, [&](int64_t item, int) {
    std::vector<float> a(static_cast<size_t>(dim)), b(a), acc(a);
    const int64_t end = std::min(tokens, (item + 1) * kTokensPerItem);
    for (int64_t t = item * kTokensPerItem; t < end; ++t)
      for (int64_t h = 0; h < heads; ++h) {
        load_row(args.out_a, t, h, a.data());
        load_row(args.out_b, t, h, b.data());
        const PartialRow parts[] = {{load_float(args.lse_a, offset2(args.lse_a, h, t)), 1.0f, a.data()},
                                    {load_float(args.lse_b, offset2(args.lse_b, h, t)), 1.0f, b.data()}};
        const RowTotals row = merge_rows(parts, 2, dim, acc.data());
        const float scale = output_scale(row.sum);
        for (int64_t d = 0; d < dim; ++d)
          store_float(args.out, offset3(args.out, t, h, d), acc[size_t(d)] * scale);
        if (args.lse) store_float(*args.lse, offset2(*args.lse, h, t), row_lse(row.max, row.sum));
      }
  });
}

}  // namespace alibi::cpu
