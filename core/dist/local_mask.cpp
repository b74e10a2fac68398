#include "core/dist/local_mask.h"

#include <algorithm>

#include "alibi/alibi.h"

namespace alibi::dist {

namespace {

bool sees_keys(const Slice& slice) {
  return slice.q_begin < slice.q_end && slice.k_begin < slice.k_end;
}

// The index in the key buffer of global key `key`, which one of `keys` holds.
int64_t buffer_index(const std::vector<TokenRun>& keys, const std::vector<int64_t>& offsets,
                     int64_t key) {
  const auto after = std::upper_bound(keys.begin(), keys.end(), key,
                                      [](int64_t k, const TokenRun& run) { return k < run.begin; });
  const size_t run = size_t(after - keys.begin()) - 1;
  return offsets[run] + (key - keys[run].begin);
}

// A global piece as a slice of the local mask: rows in local indices, keys in buffer indices.
Slice localize(const Plan& plan, const Slice& piece, const std::vector<TokenRun>& keys,
               const std::vector<int64_t>& offsets) {
  const int32_t row = int32_t(plan.local_index(piece.q_begin));
  const int32_t key = int32_t(buffer_index(keys, offsets, piece.k_begin));
  const int32_t rows = piece.q_end - piece.q_begin, keys_seen = piece.k_end - piece.k_begin;
  return {row, row + rows, key, key + keys_seen, piece.type, piece.sequence};
}

// Runs of `runs` split where the owning rank changes: calls fn(owner, run) in order.
template <class Fn>
void for_each_owned(const Plan& plan, const std::vector<TokenRun>& runs, Fn&& fn) {
  for (const TokenRun& run : runs)
    for (int64_t begin = run.begin; begin < run.end;) {
      const int32_t owner = plan.rank_of(begin);
      int64_t end = std::min(run.end, (begin / plan.chunk_size + 1) * plan.chunk_size);
      while (end < run.end && plan.rank_of(end) == owner)
        end = std::min(run.end, end + plan.chunk_size);
      fn(owner, TokenRun{begin, end});
      begin = end;
    }
}

}  // namespace

Slice cut_rows(const Slice& slice, int32_t row_begin, int32_t row_end) {
  if (visible_cells(slice, row_begin, row_end) == 0) return {row_begin, row_begin, 0, 0, 0, -1};
  const bool causal_end = slice.type == ALIBI_MASK_CAUSAL || slice.type == ALIBI_MASK_BI_CAUSAL;
  const bool inverse_start =
      slice.type == ALIBI_MASK_INV_CAUSAL || slice.type == ALIBI_MASK_BI_CAUSAL;
  // Row r's keys end at r + (Sk - Sq) and (inverse) start at r, both relative to the slice: the
  // cut keeps Sk - Sq and the key start's offset from the first row.
  const int32_t k_begin = slice.k_begin + (inverse_start ? row_begin - slice.q_begin : 0);
  const int32_t k_end = slice.k_end - (causal_end ? slice.q_end - row_end : 0);
  return {row_begin, row_end, k_begin, k_end, slice.type, slice.sequence};
}

std::vector<std::vector<Slice>> pieces_by_rank(const Plan& plan) {
  std::vector<std::vector<Slice>> pieces(size_t(plan.cp_size));
  const int64_t size = plan.chunk_size;
  for (const Slice& slice : plan.slices) {
    if (!sees_keys(slice)) continue;
    for (int64_t c = slice.q_begin / size; c * size < slice.q_end; ++c) {
      const Slice piece = cut_rows(slice, int32_t(std::max<int64_t>(slice.q_begin, c * size)),
                                   int32_t(std::min<int64_t>(slice.q_end, (c + 1) * size)));
      if (piece.q_begin < piece.q_end) pieces[size_t(plan.owner[size_t(c)])].push_back(piece);
    }
  }
  return pieces;
}

std::vector<TokenRun> keys_of(const std::vector<Slice>& pieces) {
  std::vector<TokenRun> ranges;
  for (const Slice& piece : pieces) ranges.push_back({piece.k_begin, piece.k_end});
  std::sort(ranges.begin(), ranges.end(),
            [](const TokenRun& a, const TokenRun& b) { return a.begin < b.begin; });
  std::vector<TokenRun> merged;
  for (const TokenRun& range : ranges)
    if (!merged.empty() && range.begin <= merged.back().end)
      merged.back().end = std::max(merged.back().end, range.end);
    else
      merged.push_back(range);
  return merged;
}

LocalMask make_local_mask(const Plan& plan, const std::vector<Slice>& pieces, int rank,
                          const PlanShape& shape) {
  LocalMask local;
  local.keys = keys_of(pieces);
  std::vector<int64_t> offsets;
  for (const TokenRun& run : local.keys) {
    offsets.push_back(local.num_keys);
    local.num_keys += run.size();
  }
  MaskPlan& mask = local.plan;
  mask.total_q = plan.local_tokens();
  mask.total_k = local.num_keys;
  mask.from_sequences = plan.from_sequences;
  mask.num_sequences = plan.num_sequences;
  for (const Slice& piece : pieces)
    mask.slices.push_back(localize(plan, piece, local.keys, offsets));
  // Padding rows get position 0: they see no key, so it is never used.
  mask.q_positions.assign(size_t(mask.total_q), 0);
  for (int64_t i = 0; i < mask.total_q; ++i) {
    const int64_t token = plan.global_token(rank, i);
    if (token < plan.total) mask.q_positions[size_t(i)] = plan.q_positions[size_t(token)];
  }
  for (const TokenRun& run : local.keys)
    mask.k_positions.insert(mask.k_positions.end(), plan.k_positions.begin() + run.begin,
                            plan.k_positions.begin() + run.end);
  plan_rows_and_keys(mask, shape);
  plan_positions(mask);
  return local;
}

Exchange make_exchange(const Plan& plan, const std::vector<std::vector<TokenRun>>& keys_by_rank,
                       int rank) {
  Exchange exchange{RankRuns(size_t(plan.cp_size)), RankRuns(size_t(plan.cp_size))};
  for (int to = 0; to < plan.cp_size; ++to)
    for_each_owned(plan, keys_by_rank[size_t(to)], [&](int32_t owner, const TokenRun& run) {
      if (owner != rank) return;
      // A rank's adjacent chunks have adjacent slots: the run is contiguous locally too.
      const int64_t first = plan.local_index(run.begin);
      exchange.send[size_t(to)].push_back({first, first + run.size()});
    });
  int64_t offset = 0;
  for_each_owned(plan, keys_by_rank[size_t(rank)], [&](int32_t owner, const TokenRun& run) {
    exchange.recv[size_t(owner)].push_back({offset, offset + run.size()});
    offset += run.size();
  });
  return exchange;
}

}  // namespace alibi::dist
