// What one rank computes of a plan's mask: the global slices cut to its chunks (pieces over its
// local rows), the global keys those rows see, and which rank holds each of them. Pure
// arithmetic on the plan, so every rank knows every rank's needs without asking.
#pragma once

#include <cstdint>
#include <vector>

#include "core/dist/plan.h"
#include "core/kernel/mask_plan.h"

namespace alibi::dist {

// Tokens (or rows) [begin, end).
struct TokenRun {
  int64_t begin, end;
  int64_t size() const { return end - begin; }
};

// Runs per rank, in rank order.
using RankRuns = std::vector<std::vector<TokenRun>>;

// Rows [row_begin, row_end) (global, inside the slice's) as one slice of the same type: the keys
// cut to exactly what those rows see. Empty q range when they see no key.
Slice cut_rows(const Slice& slice, int32_t row_begin, int32_t row_end);

// Each rank's pieces (global coordinates): every slice cut to each chunk its rows meet, in slice
// order, then chunk order.
std::vector<std::vector<Slice>> pieces_by_rank(const Plan& plan);

// The keys of pieces: their key ranges sorted and merged.
std::vector<TokenRun> keys_of(const std::vector<Slice>& pieces);

// One rank's mask over its local rows and the keys it fetches, packed in ascending global order
// (the key buffer).
struct LocalMask {
  std::vector<TokenRun> keys;
  int64_t num_keys = 0;
  MaskPlan plan;  // rows: local tokens; keys: the key buffer's; planned for the backend
};

LocalMask make_local_mask(const Plan& plan, const std::vector<Slice>& pieces, int rank,
                          const PlanShape& shape);

// One rank's key exchange, in rows: to each rank, runs of this rank's local tokens (in the
// receiver's buffer order); from each rank, the runs of the key buffer it fills.
struct Exchange {
  RankRuns send;  // local token indices
  RankRuns recv;  // key buffer indices
};

Exchange make_exchange(const Plan& plan, const std::vector<std::vector<TokenRun>>& keys_by_rank,
                       int rank);

}  // namespace alibi::dist
