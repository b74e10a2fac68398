// The context-parallel plan (alibi_dist_plan_create): pure arithmetic over a mask's slices,
// identical on every rank (SPEC section 6, MagiAttention's dispatch).
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernel/mask_plan.h"

namespace alibi::dist {

// MagiAttention's compute_pad_size (arguments validated by the caller).
int64_t pad_size(int64_t total, int cp_size, int chunk_size);

// Visible cells of rows [row_begin, row_end) (packed) of a slice, in closed form.
int64_t visible_cells(const Slice& slice, int64_t row_begin, int64_t row_end);

// Visible cells of each chunk of chunk_size rows over num_chunks chunks.
std::vector<int64_t> chunk_workloads(const std::vector<Slice>& slices, int64_t num_chunks,
                                     int chunk_size);

// MagiAttention's MinHeap dealing of chunks (by workload) to cp_size ranks of
// workloads.size() / cp_size chunks each; each rank's chunk ids ascending.
std::vector<std::vector<int32_t>> deal_chunks(const std::vector<int64_t>& workloads, int cp_size);

struct Plan {
  int cp_size = 1;
  int chunk_size = 1;
  int64_t total = 0;   // tokens of the mask
  int64_t padded = 0;  // total + pad: num_chunks * chunk_size
  int64_t max_valid = 0;
  std::vector<int64_t> chunk_workloads;       // num_chunks
  std::vector<std::vector<int32_t>> chunks;   // per rank, ascending
  std::vector<int32_t> owner;                 // per chunk: its rank
  std::vector<int32_t> slot;                  // per chunk: its index among its rank's chunks
  // The global mask as it was at plan creation (slices in creation order, positions, sequences).
  std::vector<Slice> slices;
  std::vector<int32_t> q_positions, k_positions;  // total entries each
  bool from_sequences = false;
  int32_t num_sequences = 0;

  int64_t num_chunks() const { return int64_t(owner.size()); }
  int64_t chunks_per_rank() const { return num_chunks() / cp_size; }
  int64_t local_tokens() const { return chunks_per_rank() * chunk_size; }
  // The rank holding global (padded) token t, and t's index among that rank's local tokens.
  int32_t rank_of(int64_t token) const { return owner[size_t(token / chunk_size)]; }
  int64_t local_index(int64_t token) const {
    return int64_t(slot[size_t(token / chunk_size)]) * chunk_size + token % chunk_size;
  }
  // The global token of local token i of `rank`.
  int64_t global_token(int rank, int64_t i) const {
    return int64_t(chunks[size_t(rank)][size_t(i / chunk_size)]) * chunk_size + i % chunk_size;
  }
};

// The plan of a mask whose total_q == total_k (checked by the caller), cp_size >= 1,
// chunk_size >= 1.
Plan make_plan(const MaskView& mask, int cp_size, int chunk_size);

}  // namespace alibi::dist
