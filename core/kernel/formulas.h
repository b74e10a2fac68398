// The ALiBi formulas, each written once, callable from host and device code.
#pragma once

#include <cmath>
#include <cstdint>

#include "core/kernel/host_device.h"

namespace alibi {

// Slope of global head `head` of `total_heads` (paper formula incl. the non-power-of-2 interleave).
// Computed in double and rounded once, so every caller gets the same float.
ALIBI_HD float slope_formula(int head, int total_heads, float max_bias) {
  if (max_bias == 0.0f) return 0.0f;
  int c = 1;
  while (c * 2 <= total_heads) c *= 2;
  double exponent = head < c ? double(head + 1) * max_bias / c
                             : double(2 * (head - c) + 1) * max_bias / (2.0 * c);
  return float(exp2(-exponent));
}

// The bias attention adds to score (i, j): -slope * |qpos - kpos|, in float32.
ALIBI_HD float alibi_bias(float slope, int32_t qpos, int32_t kpos) {
  int64_t distance = int64_t(qpos) - int64_t(kpos);
  if (distance < 0) distance = -distance;
  return -(slope * float(distance));
}

// OpenPPL's dynamic-batching value inside a block: slope * d for d <= 0 (d = j - i - (K - L)).
ALIBI_HD float dynamic_batching_value(float slope, int64_t d) {
  return d <= 0 ? slope * float(d) : -INFINITY;
}

// HF Bloom's position of a token: (cumsum(mask) - 1) * mask, given the running sum including it.
// Unsigned so that mask values other than 0/1 wrap as torch's int64 cumsum does, never overflow.
ALIBI_HD int64_t bloom_position(uint64_t cumulative, uint64_t keep) {
  return int64_t((cumulative - 1) * keep);
}

// The keys [lo, hi) a local row of a slice sees. Every mask type gives one interval per row,
// and lo and hi never decrease from one row to the next.
struct KeyInterval {
  int64_t lo;
  int64_t hi;
  ALIBI_HD bool contains(int64_t key) const { return key >= lo && key < hi; }
};

ALIBI_HD KeyInterval visible_keys(int type, int64_t row, int64_t slice_q, int64_t slice_k) {
  const bool causal_end = type == 1 || type == 3;    // c <= r + (Sk - Sq)
  const bool inverse_start = type == 2 || type == 3;  // c >= r
  int64_t lo = inverse_start ? row : 0;
  int64_t hi = causal_end ? row + (slice_k - slice_q) + 1 : slice_k;
  if (lo < 0) lo = 0;
  if (lo > slice_k) lo = slice_k;
  if (hi > slice_k) hi = slice_k;
  if (hi < lo) hi = lo;
  return {lo, hi};
}

}  // namespace alibi
