// The plan's operations behind alibi_dist.h: every argument checked before anything is made or
// written, then plan.cpp's arithmetic.
#include <algorithm>
#include <cstdint>

#include "core/dist/dist.h"
#include "core/kernel/status.h"

namespace alibi::dist {

namespace {

constexpr int kMaxCpSize = 65536;
// Tokens are int32 everywhere else in the library (ranges, cu_seqlens, chunk ids).
constexpr int64_t kMaxTokens = INT32_MAX;

void check_cp_and_chunk(int cp_size, int chunk_size) {
  if (cp_size < 1 || cp_size > kMaxCpSize)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "cp_size = %d is outside [1, %d]", cp_size, kMaxCpSize);
  if (chunk_size < 1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "chunk_size = %d is not >= 1", chunk_size);
}

void check_rank(const Plan& plan, int rank) {
  if (rank < 0 || rank >= plan.cp_size)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "rank = %d is outside [0, cp_size) with cp_size = %d", rank,
         plan.cp_size);
}

}  // namespace

int64_t compute_pad_size(int64_t total, int cp_size, int chunk_size) {
  if (total < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "total_seqlen = %lld is negative", (long long)total);
  check_cp_and_chunk(cp_size, chunk_size);
  return pad_size(total, cp_size, chunk_size);
}

alibi_dist_plan_s* plan_create(const alibi_mask_s* mask, int cp_size, int chunk_size) {
  const MaskView& view = mask->view;
  if (view.total_q != view.total_k)
    fail(ALIBI_STATUS_SHAPE_MISMATCH,
         "mask has total_q = %lld and total_k = %lld; a plan needs self-attention (equal totals)",
         (long long)view.total_q, (long long)view.total_k);
  check_cp_and_chunk(cp_size, chunk_size);
  const int64_t pad = pad_size(view.total_q, cp_size, chunk_size);
  if (view.total_q + pad > kMaxTokens)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "the mask's %lld tokens padded to a multiple of chunk_size = %d times cp_size = %d are "
         "%lld, more than INT32_MAX",
         (long long)view.total_q, chunk_size, cp_size, (long long)(view.total_q + pad));
  return new alibi_dist_plan_s{make_plan(view, cp_size, chunk_size)};
}

void plan_get_chunks(const alibi_dist_plan_s* plan, int rank, int32_t* chunk_ids) {
  check_rank(plan->plan, rank);
  const std::vector<int32_t>& chunks = plan->plan.chunks[size_t(rank)];
  std::copy(chunks.begin(), chunks.end(), chunk_ids);
}

void plan_get_position_ids(const alibi_dist_plan_s* plan, int rank, int64_t* out) {
  const Plan& p = plan->plan;
  check_rank(p, rank);
  // MagiAttention's clamp: padding tokens (and any past the last visible row) read max_valid - 1.
  for (int64_t i = 0; i < p.local_tokens(); ++i)
    out[i] = std::min(p.global_token(rank, i), p.max_valid - 1);
}

void plan_get_workloads(const alibi_dist_plan_s* plan, int64_t* out) {
  const Plan& p = plan->plan;
  for (int r = 0; r < p.cp_size; ++r) {
    int64_t load = 0;
    for (int32_t chunk : p.chunks[size_t(r)]) load += p.chunk_workloads[size_t(chunk)];
    out[r] = load;
  }
}

}  // namespace alibi::dist
