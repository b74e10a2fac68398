// Merging partial results of a row, as the public alibi_attention_merge, the decode kernel's
// key chunks and the tiled kernel's key splits all do.
#pragma once

#include <cstdint>

#include "core/kernel/attention_math.h"
#include "cpu/thread_pool.h"

namespace alibi::cpu {

// A partial result of one row: its log-scale `max` (a running max, or an lse), its sum of
// exponentials against it (1 for a finished result) and its output accumulator (dim values).
struct PartialRow {
  float max;
  float sum;
  const float* acc;
};

// Merges parts in their order (so the result is deterministic) into acc (dim values) and
// returns the merged row's totals. Parts of weight 0 are skipped, whatever their acc holds.
RowTotals merge_rows(const PartialRow* parts, int64_t count, int64_t dim, float* acc);

}  // namespace alibi::cpu
