// What both benchmarks (alibi-bench on the CPU, alibi-gpu-bench) count alike about a case: a
// packed varlen batch of sequences b with lengths_q[b] queries over lengths_k[b] keys, its token
// offsets, the cells its mask leaves visible, its FLOPs and its bytes.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <vector>

namespace bench_common {

inline std::vector<int32_t> prefix_sums(const std::vector<int32_t>& lengths) {
  std::vector<int32_t> offsets(lengths.size() + 1, 0);
  std::partial_sum(lengths.begin(), lengths.end(), offsets.begin() + 1);
  return offsets;
}

// q and out: (total_q, heads, head_dim); k and v: (total_k, kv_heads, head_dim). A causal mask
// is bottom-right aligned, as alibi_mask_create_varlen makes it.
struct AttentionShape {
  int heads, kv_heads, head_dim;
  std::vector<int32_t> lengths_q, lengths_k;
  bool causal;

  std::vector<int32_t> cu_seqlens_q() const { return prefix_sums(lengths_q); }
  std::vector<int32_t> cu_seqlens_k() const { return prefix_sums(lengths_k); }
  int64_t total_q() const { return cu_seqlens_q().back(); }
  int64_t total_k() const { return cu_seqlens_k().back(); }

  // Per head: row r of a causal sequence sees keys 0 .. r + Lk - Lq.
  int64_t visible_cells() const {
    int64_t cells = 0;
    for (size_t b = 0; b < lengths_q.size(); ++b) {
      const int64_t lq = lengths_q[b], lk = lengths_k[b];
      if (!causal) {
        cells += lq * lk;
        continue;
      }
      for (int64_t row = 0; row < lq; ++row) cells += std::clamp<int64_t>(row + lk - lq + 1, 0, lk);
    }
    return cells;
  }

  // 2 * head_dim for Q K^T and 2 * head_dim for P V per visible cell, every head.
  double flops() const { return 4.0 * head_dim * double(visible_cells()) * heads; }

  // K and V read, q read, out written, in elements of `element_bytes` each.
  double io_bytes(size_t element_bytes) const {
    const double kv = 2.0 * double(total_k()) * kv_heads * head_dim;
    const double q_and_out = 2.0 * double(total_q()) * heads * head_dim;
    return (kv + q_and_out) * double(element_bytes);
  }
};

}  // namespace bench_common
