// A mask as the backends see it: slices over packed tokens, every token's ALiBi position, and
// the plan of its rows and keys, made once per mask (when it is created, and again when its
// positions change), never per call. MaskView is what crosses the backend interface: plain
// arrays, C-compatible; MaskPlan (core only) owns them.
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernel/formulas.h"
#include "core/kernel/host_device.h"

namespace alibi {

struct Slice {
  int32_t q_begin, q_end;  // query rows [q_begin, q_end)
  int32_t k_begin, k_end;  // keys [k_begin, k_end)
  int32_t type;            // alibi_mask_type
  int32_t sequence;        // index of the varlen sequence it came from; -1 for ranges masks
};

// The keys (slice-local) that a row (packed) of the slice sees.
ALIBI_HD KeyInterval keys_of_row(const Slice& slice, int64_t row) {
  return visible_keys(slice.type, row - slice.q_begin, slice.q_end - slice.q_begin,
                      slice.k_end - slice.k_begin);
}

// Rows [begin, end) (packed).
struct RowRun {
  int64_t begin, end;
};

// The first row of [lo, hi) whose visible keys reach past the slice-local key k (by_start
// false: hi > k) or start at or after it (by_start true: lo >= k), or hi. Both move right from
// row to row, so a binary search finds it.
ALIBI_HD int64_t first_row_past(const Slice& slice, int64_t lo, int64_t hi, int64_t k,
                                bool by_start) {
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    const KeyInterval keys = keys_of_row(slice, mid);
    if (by_start ? keys.lo >= k : keys.hi > k)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo;
}

// The slice's rows whose visible keys meet the slice-local keys [k0, k1): a contiguous run.
ALIBI_HD RowRun rows_seeing(const Slice& slice, int64_t k0, int64_t k1) {
  const int64_t begin = first_row_past(slice, slice.q_begin, slice.q_end, k0, false);
  return {begin, first_row_past(slice, begin, slice.q_end, k1, true)};
}

// The rows of one slice within a row tile, and the keys [key_lo, key_hi) (slice-local) that
// they see together (visible intervals only move right from row to row).
struct SliceRows {
  int32_t slice;
  int32_t row_begin, row_end;
  int32_t key_lo, key_hi;
};

// Query rows [row_begin, row_end) and the slices they see: spans[first_span, + num_spans), in
// mask order (the order in which slices sharing rows merge).
struct RowTile {
  int32_t row_begin, row_end;
  int32_t num_spans;
  int64_t first_span;
  int64_t cells;   // visible cells the spans cover (at most)
  int64_t widest;  // the largest key interval of a span
};

// A chunk of the keys a slice's rows see, for kernels that split keys.
struct KeyChunk {
  int32_t slice;
  int32_t key_begin, key_end;  // slice-local
};

struct RowRange {
  int32_t begin, end;
};

// How a backend wants masks planned (BackendOps::plan_shape).
struct PlanShape {
  int32_t tile_rows;           // tiles of at most this many rows, from row 0 on
  bool tiles_share_slices;     // also cut at slice edges: every row of a tile sees the same slices
  int32_t min_chunk_keys;      // key chunks of at least this many keys; 0: no key chunks
  int32_t target_chunks;       // otherwise as many chunks over the whole mask as this
};

struct MaskView {
  int64_t total_q, total_k;
  bool from_sequences;  // built from cu_seqlens: per-sequence slopes apply
  int32_t num_sequences;
  const Slice* slices;  // creation order
  int64_t num_slices;
  const int32_t* q_positions;  // total_q entries
  const int32_t* k_positions;  // total_k entries
  int64_t position_span;       // max - min of all positions and 0: bounds every |qpos - kpos|
  // Rows, in tiles that cover [0, total_q) in order; slices with no query or no key are left out.
  const RowTile* tiles;
  int64_t num_tiles;
  const SliceRows* spans;
  int64_t num_spans;
  const int32_t* tiles_by_work;  // tile indices, most cells first (ties: lower index first)
  const RowRange* uncovered;     // rows no span covers: they see no key
  int64_t num_uncovered;
  // Keys: slice s's chunks are chunks[first_chunk[s], first_chunk[s + 1]).
  const KeyChunk* chunks;
  const int64_t* first_chunk;
  int32_t max_slice_rows;   // the most query rows of any slice
  bool slices_share_rows;   // two slices with query rows share one
};

// Owns what a MaskView points to.
struct MaskPlan {
  int64_t total_q = 0;
  int64_t total_k = 0;
  bool from_sequences = false;
  int num_sequences = 0;
  std::vector<Slice> slices;
  std::vector<int32_t> q_positions;
  std::vector<int32_t> k_positions;
  int64_t position_span = 0;
  std::vector<RowTile> tiles;
  std::vector<SliceRows> spans;
  std::vector<int32_t> tiles_by_work;
  std::vector<RowRange> uncovered;
  std::vector<KeyChunk> chunks;
  std::vector<int64_t> first_chunk;
  int32_t max_slice_rows = 0;
  bool slices_share_rows = false;

  MaskView view() const;
};

// Plans rows and keys (everything but the positions) for a backend's shape.
void plan_rows_and_keys(MaskPlan& plan, const PlanShape& shape);
// Derives what depends on the positions (position_span); again after they change.
void plan_positions(MaskPlan& plan);

}  // namespace alibi
