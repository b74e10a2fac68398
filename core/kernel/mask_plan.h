// A mask as the backends see it: slices over packed tokens plus every token's ALiBi position.
#pragma once

#include <cstdint>
#include <vector>

namespace alibi {

struct Slice {
  int32_t q_begin, q_end;  // query rows [q_begin, q_end)
  int32_t k_begin, k_end;  // keys [k_begin, k_end)
  int32_t type;            // alibi_mask_type
  int32_t sequence;        // index of the varlen sequence it came from; -1 for ranges masks
};

struct MaskPlan {
  int64_t total_q = 0;
  int64_t total_k = 0;
  bool from_sequences = false;  // built from cu_seqlens: per-sequence slopes apply
  int num_sequences = 0;
  std::vector<Slice> slices;   // creation order
  std::vector<int32_t> q_positions;  // total_q entries
  std::vector<int32_t> k_positions;  // total_k entries
};

}  // namespace alibi
