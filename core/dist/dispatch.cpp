#include <algorithm>
#include <cstring>

#include "core/abi/ops.h"
#include "core/dist/dist.h"
#include "core/dist/staging.h"

namespace alibi::dist {

namespace {

// global_x (T, ...) and local_x (num_local_tokens, ...): same dtype and trailing dims, on the
// context's device.
void check_tokens(const alibi_context_s& ctx, const Plan& plan, const alibi_tensor_s& global_x,
                  const alibi_tensor_s& local_x) {
  require_same_device(ctx, global_x.kind, global_x.device_index, "global_x");
  require_same_device(ctx, local_x.kind, local_x.device_index, "local_x");
  const TensorView& global = global_x.view;
  const TensorView& local = local_x.view;
  if (global.ndim < 1)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "global_x has ndim = 0, expected >= 1 (tokens, ...)");
  require_ndim(local, global.ndim, "local_x", "(global_x's ndim)");
  if (local.dtype != global.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "local_x has dtype %s, expected global_x's dtype %s",
         dtype_name(local.dtype), dtype_name(global.dtype));
  require_dim(global, 0, plan.total, "global_x", "the plan's tokens");
  require_dim(local, 0, plan.local_tokens(), "local_x", "the plan's num_local_tokens");
  for (int d = 1; d < global.ndim; ++d)
    require_dim(local, d, global.shape[d], "local_x", "global_x's shape");
}

// Calls fn(global_begin, global_end, local_begin) for each run of rank's real (not padding)
// tokens, adjacent chunks together.
template <class Fn>
void for_each_token_run(const Plan& plan, int rank, Fn&& fn) {
  const std::vector<int32_t>& chunks = plan.chunks[size_t(rank)];
  for (size_t i = 0; i < chunks.size();) {
    size_t j = i + 1;
    while (j < chunks.size() && chunks[j] == chunks[j - 1] + 1) ++j;
    const int64_t begin = int64_t(chunks[i]) * plan.chunk_size;
    const int64_t end = std::min(plan.total, int64_t(chunks[j - 1] + 1) * plan.chunk_size);
    if (begin < end) fn(begin, end, int64_t(i) * plan.chunk_size);
    i = j;
  }
}

}  // namespace

void dispatch(alibi_context_s* ctx, const alibi_dist_plan_s* plan_handle, int rank,
              alibi_tensor_s* global_x, alibi_tensor_s* local_x) {
  require(ctx, "ctx");
  const Plan& plan = require(plan_handle, "plan")->plan;
  require(global_x, "global_x");
  require(local_x, "local_x");
  if (rank < 0 || rank >= plan.cp_size)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "rank = %d is outside [0, cp_size = %d)", rank,
         plan.cp_size);
  check_tokens(*ctx, plan, *global_x, *local_x);
  const Device& device = *ctx->device;
  const TensorView& local = local_x->view;
  for_each_token_run(plan, rank, [&](int64_t begin, int64_t end, int64_t at) {
    const std::vector<uint8_t> rows = to_host(device, rows_of(global_x->view, begin, end));
    from_host(device, rows_of(local, at, at + (end - begin)), rows.data());
  });
  // Padding: the rows of each chunk past the plan's tokens.
  const std::vector<uint8_t> zeros(size_t(plan.chunk_size) * row_bytes(local));
  const std::vector<int32_t>& chunks = plan.chunks[size_t(rank)];
  for (size_t i = 0; i < chunks.size(); ++i) {
    const int64_t real =
        std::clamp<int64_t>(plan.total - int64_t(chunks[i]) * plan.chunk_size, 0, plan.chunk_size);
    const int64_t first = int64_t(i) * plan.chunk_size;
    if (real < plan.chunk_size)
      from_host(device, rows_of(local, first + real, first + plan.chunk_size), zeros.data());
  }
}

void undispatch(alibi_context_s* ctx, const alibi_comm_s* comm,
                const alibi_dist_plan_s* plan_handle, alibi_tensor_s* local_x,
                alibi_tensor_s* global_x) {
  require(ctx, "ctx");
  require(comm, "comm");
  const Plan& plan = require(plan_handle, "plan")->plan;
  require(local_x, "local_x");
  require(global_x, "global_x");
  if (plan.cp_size != comm->size)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "plan has cp_size = %d but comm has size %d", plan.cp_size,
         comm->size);
  check_tokens(*ctx, plan, *global_x, *local_x);

  const TensorView& local = local_x->view;
  const size_t row = row_bytes(local);
  const int64_t tokens = plan.local_tokens();
  DeviceArray send(ctx->device, local.dtype, shape_with_rows(local, tokens));
  DeviceArray gathered(ctx->device, local.dtype, shape_with_rows(local, tokens * plan.cp_size));
  from_host(*ctx->device, send.view(), to_host(*ctx->device, local).data());
  synchronize(*ctx->device);
  allgather(*comm, send.view().data, gathered.view().data, tokens * int64_t(row));

  const std::vector<uint8_t> all = to_host(*ctx->device, gathered.view());
  std::vector<uint8_t> global(size_t(plan.total) * row);
  for (int r = 0; r < plan.cp_size; ++r)
    for_each_token_run(plan, r, [&](int64_t begin, int64_t end, int64_t at) {
      const size_t bytes = size_t(end - begin) * row;  // 0 for rows of no elements
      if (bytes > 0)
        std::memcpy(&global[size_t(begin) * row], &all[size_t(r * tokens + at) * row], bytes);
    });
  from_host(*ctx->device, global_x->view, global.data());
}

}  // namespace alibi::dist
