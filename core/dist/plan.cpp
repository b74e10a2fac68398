#include "core/dist/plan.h"

#include <algorithm>
#include <numeric>
#include <queue>
#include <utility>

namespace alibi::dist {

namespace {

// sum of clamp(x, 0, cap) over x in [0, n): the triangle up to cap, then cap per x.
int64_t clamped_prefix(int64_t n, int64_t cap) {
  if (n <= 0) return 0;
  if (n <= cap + 1) return n * (n - 1) / 2;
  return cap * (cap + 1) / 2 + (n - cap - 1) * cap;
}

// sum of clamp(x, 0, cap) over x in [lo, hi).
int64_t clamped_sum(int64_t lo, int64_t hi, int64_t cap) {
  return hi <= lo ? 0 : clamped_prefix(hi, cap) - clamped_prefix(lo, cap);
}

}  // namespace

int64_t pad_size(int64_t total, int cp_size, int chunk_size) {
  const int64_t block = int64_t(chunk_size) * cp_size;
  return total % block == 0 ? 0 : block - total % block;
}

// Local rows i in [a, b) of an Sq x Sk slice, d = Sk - Sq (formulas.h's visible_keys):
// full: Sk each; causal: clamp(i + d + 1, 0, Sk); inverse causal: Sk - i; bi-causal (d >= 0,
// else none): clamp(Sk - i, 0, d + 1).
int64_t visible_cells(const Slice& slice, int64_t row_begin, int64_t row_end) {
  const int64_t a = std::max<int64_t>(row_begin, slice.q_begin) - slice.q_begin;
  const int64_t b = std::min<int64_t>(row_end, slice.q_end) - slice.q_begin;
  const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
  if (a >= b || sk <= 0) return 0;
  const int64_t d = sk - sq;
  switch (slice.type) {
    case 1: return clamped_sum(a + d + 1, b + d + 1, sk);
    case 2: return clamped_sum(sk - b + 1, sk - a + 1, sk);
    case 3: return d < 0 ? 0 : clamped_sum(sk - b + 1, sk - a + 1, d + 1);
    default: return (b - a) * sk;
  }
}

std::vector<int64_t> chunk_workloads(const std::vector<Slice>& slices, int64_t num_chunks,
                                     int chunk_size) {
  std::vector<int64_t> workloads(size_t(num_chunks), 0);
  for (const Slice& slice : slices) {
    if (slice.q_begin >= slice.q_end || slice.k_begin >= slice.k_end) continue;
    for (int64_t c = slice.q_begin / chunk_size; c * chunk_size < slice.q_end; ++c)
      workloads[size_t(c)] += visible_cells(slice, c * chunk_size, (c + 1) * chunk_size);
  }
  return workloads;
}

std::vector<std::vector<int32_t>> deal_chunks(const std::vector<int64_t>& workloads, int cp_size) {
  std::vector<int32_t> order(workloads.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t x, int32_t y) { return workloads[size_t(x)] < workloads[size_t(y)]; });
  std::reverse(order.begin(), order.end());
  const size_t per_rank = workloads.size() / size_t(cp_size);
  using Bucket = std::pair<int64_t, int>;  // (load, rank): the least load first, then the lower rank
  std::priority_queue<Bucket, std::vector<Bucket>, std::greater<>> heap;
  for (int r = 0; r < cp_size; ++r) heap.push({0, r});
  std::vector<std::vector<int32_t>> chunks(static_cast<size_t>(cp_size));
  for (int32_t chunk : order) {
    while (chunks[size_t(heap.top().second)].size() >= per_rank) heap.pop();  // a full rank
    const auto [load, rank] = heap.top();
    heap.pop();
    chunks[size_t(rank)].push_back(chunk);
    heap.push({load + workloads[size_t(chunk)], rank});
  }
  for (auto& rank_chunks : chunks) std::sort(rank_chunks.begin(), rank_chunks.end());
  return chunks;
}

Plan make_plan(const MaskView& mask, int cp_size, int chunk_size) {
  Plan plan;
  plan.cp_size = cp_size;
  plan.chunk_size = chunk_size;
  plan.total = mask.total_q;
  plan.padded = plan.total + pad_size(plan.total, cp_size, chunk_size);
  plan.slices.assign(mask.slices, mask.slices + mask.num_slices);
  plan.q_positions.assign(mask.q_positions, mask.q_positions + mask.total_q);
  plan.k_positions.assign(mask.k_positions, mask.k_positions + mask.total_k);
  plan.from_sequences = mask.from_sequences;
  plan.num_sequences = mask.num_sequences;
  for (const Slice& slice : plan.slices)
    if (slice.q_begin < slice.q_end && slice.k_begin < slice.k_end)
      plan.max_valid = std::max<int64_t>(plan.max_valid, slice.q_end);
  const int64_t num_chunks = plan.padded / chunk_size;
  plan.chunk_workloads = chunk_workloads(plan.slices, num_chunks, chunk_size);
  plan.chunks = deal_chunks(plan.chunk_workloads, cp_size);
  plan.owner.assign(size_t(num_chunks), 0);
  plan.slot.assign(size_t(num_chunks), 0);
  for (int r = 0; r < cp_size; ++r)
    for (size_t i = 0; i < plan.chunks[size_t(r)].size(); ++i) {
      plan.owner[size_t(plan.chunks[size_t(r)][i])] = r;
      plan.slot[size_t(plan.chunks[size_t(r)][i])] = int32_t(i);
    }
  return plan;
}

}  // namespace alibi::dist
