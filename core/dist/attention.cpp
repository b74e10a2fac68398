#include <cstddef>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <vector>

#include "core/abi/ops.h"
#include "core/dist/dist.h"
#include "core/dist/local_mask.h"
#include "core/dist/staging.h"
#include "core/kernel/half.h"

namespace alibi::dist {

namespace {

const Plan& check_collective(const alibi_context_s* ctx, const alibi_comm_s* comm,
                             const alibi_dist_plan_s* plan_handle) {
  require(ctx, "ctx");
  require(comm, "comm");
  const Plan& plan = require(plan_handle, "plan")->plan;
  if (plan.cp_size != comm->size)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "plan has cp_size = %d but comm has size %d", plan.cp_size,
         comm->size);
  return plan;
}

void reject_attn_bias(const alibi_attention_params* params) {
  constexpr size_t known = offsetof(alibi_attention_params, attn_bias) + sizeof(alibi_tensor_t);
  if (params && params->struct_size >= known && params->attn_bias)
    fail(ALIBI_STATUS_UNSUPPORTED,
         "params->attn_bias is not NULL: a (H, T, T) bias of the whole stream has no place in a "
         "distributed call");
}

struct Named {
  alibi_tensor_s* tensor;
  const char* name;
};

// q, k, v and out hold this rank's num_local_tokens tokens.
void check_local_tokens(const Plan& plan, std::initializer_list<Named> tensors) {
  for (const Named& t : tensors) {
    require(t.tensor, t.name);
    require_ndim(t.tensor->view, 3, t.name, "(tokens, heads, head_dim)");
    require_dim(t.tensor->view, 0, plan.local_tokens(), t.name, "the plan's num_local_tokens");
  }
}

// A mask with only the sizes of a rank's tensors (num_local_tokens queries and keys) and the
// global mask's sequences: what the single-process validation checks local tensors and params
// against.
std::unique_ptr<alibi_mask_s> sizes_mask(const alibi_context_s& ctx, const Plan& plan) {
  auto mask = std::make_unique<alibi_mask_s>(
      alibi_mask_s{ctx.kind, ctx.device_index, ctx.device, {}, {}, nullptr});
  mask->plan.total_q = mask->plan.total_k = plan.local_tokens();
  mask->plan.from_sequences = plan.from_sequences;
  mask->plan.num_sequences = plan.num_sequences;
  mask->view = mask->plan.view();
  return mask;
}

// What this rank's call runs on: its local mask (uploaded) and its key exchange.
struct RankWork {
  LocalMask local;
  MaskView view;
  std::shared_ptr<void> device_mask;
  Exchange exchange;
};

std::unique_ptr<RankWork> plan_rank(const alibi_context_s& ctx, const Plan& plan, int rank) {
  const std::vector<std::vector<Slice>> pieces = pieces_by_rank(plan);
  std::vector<std::vector<TokenRun>> keys;
  for (const std::vector<Slice>& rank_pieces : pieces) keys.push_back(keys_of(rank_pieces));
  auto work = std::make_unique<RankWork>();
  work->local = make_local_mask(plan, pieces[size_t(rank)], rank, ctx.device->ops().plan_shape);
  work->view = work->local.plan.view();
  work->device_mask = ctx.device->upload_mask(work->view);
  work->exchange = make_exchange(plan, keys, rank);
  return work;
}

int64_t rows_in(const std::vector<TokenRun>& runs) {
  int64_t rows = 0;
  for (const TokenRun& run : runs) rows += run.size();
  return rows;
}

// What one alltoallv of rows brought: from rank r, at displs[r], each part's rows in turn.
struct Received {
  std::vector<uint8_t> bytes;
  std::vector<int64_t> displs;
};

// One alltoallv of rows of `row` bytes: to each rank r, for each part (a packed host array of
// rows) in turn, its rows at outgoing[r]'s runs; from each rank r, the rows of incoming[r]'s runs.
Received exchange_rows(const alibi_context_s& ctx, const alibi_comm_s& comm, alibi_dtype dtype,
                       size_t row, const std::vector<const uint8_t*>& parts,
                       const RankRuns& outgoing, const RankRuns& incoming) {
  const size_t ranks = size_t(comm.size);
  std::vector<int64_t> send_counts(ranks), send_displs(ranks), recv_counts(ranks),
      recv_displs(ranks);
  int64_t sent = 0, received = 0;
  for (size_t r = 0; r < ranks; ++r) {
    send_displs[r] = sent;
    sent += send_counts[r] = rows_in(outgoing[r]) * int64_t(parts.size() * row);
    recv_displs[r] = received;
    received += recv_counts[r] = rows_in(incoming[r]) * int64_t(parts.size() * row);
  }
  std::vector<uint8_t> packed(static_cast<size_t>(sent));
  uint8_t* at = packed.data();
  for (size_t r = 0; r < ranks; ++r)
    for (const uint8_t* part : parts)
      for (const TokenRun& run : outgoing[r]) {
        std::memcpy(at, part + size_t(run.begin) * row, size_t(run.size()) * row);
        at += size_t(run.size()) * row;
      }
  const int64_t row_elements = int64_t(row / dtype_size(dtype));
  const DeviceArray send(ctx.device, dtype, {sent / int64_t(row), row_elements});
  const DeviceArray recv(ctx.device, dtype, {received / int64_t(row), row_elements});
  from_host(*ctx.device, send.view(), packed.data());
  synchronize(*ctx.device);
  alltoallv(comm, send.view().data, send_counts.data(), send_displs.data(), recv.view().data,
            recv_counts.data(), recv_displs.data());
  return {to_host(*ctx.device, recv.view()), recv_displs};
}

// Calls fn(part, run, rows) for each run of incoming[r] of each part, ranks in order.
template <class Fn>
void for_each_received(const Received& got, const RankRuns& incoming, size_t parts, size_t row,
                       Fn&& fn) {
  for (size_t r = 0; r < incoming.size(); ++r) {
    const uint8_t* at = got.bytes.data() + got.displs[r];
    for (size_t part = 0; part < parts; ++part)
      for (const TokenRun& run : incoming[r]) {
        fn(part, run, at);
        at += size_t(run.size()) * row;
      }
  }
}

// The key buffer: the keys and values of the tokens the local mask's keys index, in order.
struct KeyBuffer {
  DeviceArray k, v;
  KeyBuffer(const alibi_context_s& ctx, int64_t num_keys, const TensorView& like)
      : k(ctx.device, like.dtype, shape_with_rows(like, num_keys)),
        v(ctx.device, like.dtype, shape_with_rows(like, num_keys)) {}
};

void fetch_keys(const alibi_context_s& ctx, const alibi_comm_s& comm, const RankWork& work,
                const TensorView& k, const TensorView& v, const KeyBuffer& buffer) {
  const size_t row = row_bytes(k);
  const std::vector<uint8_t> local_k = to_host(*ctx.device, k), local_v = to_host(*ctx.device, v);
  const Received got = exchange_rows(ctx, comm, k.dtype, row, {local_k.data(), local_v.data()},
                                     work.exchange.send, work.exchange.recv);
  std::vector<uint8_t> keys(size_t(work.local.num_keys) * row), values(keys.size());
  uint8_t* const targets[] = {keys.data(), values.data()};
  for_each_received(
      got, work.exchange.recv, 2, row, [&](size_t part, const TokenRun& run, const uint8_t* rows) {
        std::memcpy(targets[part] + size_t(run.begin) * row, rows, size_t(run.size()) * row);
      });
  from_host(*ctx.device, buffer.k.view(), keys.data());
  from_host(*ctx.device, buffer.v.view(), values.data());
}

// A gradient of this rank's keys (dk or dv) and the f32 partials of the key buffer's tokens.
struct KeyGradient {
  const TensorView* target;
  const DeviceArray* partial;
};

// Each rank's partials go back to the keys' owners; each owner sums them per token in rank
// order, in f32 (tokens no row sees: 0), and stores the sum once in the gradient's dtype.
void return_partials(const alibi_context_s& ctx, const alibi_comm_s& comm, const RankWork& work,
                     const std::vector<KeyGradient>& gradients, int64_t local_tokens) {
  const TensorView& like = gradients[0].partial->view();
  const size_t row = row_bytes(like);
  const size_t elements = row / sizeof(float);
  std::vector<std::vector<uint8_t>> partials;
  std::vector<const uint8_t*> parts;
  for (const KeyGradient& g : gradients) {
    partials.push_back(to_host(*ctx.device, g.partial->view()));
    parts.push_back(partials.back().data());
  }
  const Received got =
      exchange_rows(ctx, comm, ALIBI_DTYPE_F32, row, parts, work.exchange.recv, work.exchange.send);
  std::vector<std::vector<float>> sums(gradients.size(),
                                       std::vector<float>(size_t(local_tokens) * elements, 0.0f));
  for_each_received(got, work.exchange.send, gradients.size(), row,
                    [&](size_t part, const TokenRun& run, const uint8_t* rows) {
                      float* sum = sums[part].data() + size_t(run.begin) * elements;
                      for (size_t e = 0; e < size_t(run.size()) * elements; ++e) {
                        float value;
                        std::memcpy(&value, rows + e * sizeof(float), sizeof(float));
                        sum[e] += value;
                      }
                    });
  for (size_t g = 0; g < gradients.size(); ++g) {
    const alibi_dtype dtype = gradients[g].target->dtype;
    std::vector<uint8_t> stored(sums[g].size() * dtype_size(dtype));
    for (size_t e = 0; e < sums[g].size(); ++e)
      store_element(dtype, stored.data(), int64_t(e), sums[g][e]);
    from_host(*ctx.device, *gradients[g].target, stored.data());
  }
}

// dslopes: every rank's f32 partial gathered and summed in rank order.
void sum_slopes(const alibi_context_s& ctx, const alibi_comm_s& comm, const DeviceArray& partial,
                const TensorView& dslopes) {
  const int64_t count = partial.view().numel();
  const DeviceArray gathered(ctx.device, ALIBI_DTYPE_F32, {comm.size, count});
  synchronize(*ctx.device);
  allgather(comm, partial.view().data, gathered.view().data, count * int64_t(sizeof(float)));
  const std::vector<uint8_t> all = to_host(*ctx.device, gathered.view());
  std::vector<float> sums(size_t(count), 0.0f);
  for (int r = 0; r < comm.size; ++r)
    for (int64_t i = 0; i < count; ++i) {
      float value;
      std::memcpy(&value, &all[(size_t(r) * size_t(count) + size_t(i)) * sizeof(float)],
                  sizeof(float));
      sums[size_t(i)] += value;
    }
  from_host(*ctx.device, dslopes, sums.data());
}

// The backend's arguments on the key buffer and the local mask instead of the rank's k and v.
void point_at_buffer(ForwardArgs& args, const RankWork& work, const KeyBuffer& buffer) {
  args.k = buffer.k.view();
  args.v = buffer.v.view();
  args.mask = &work.view;
  args.device_mask = work.device_mask.get();
}

}  // namespace

void attention_forward(alibi_context_s* ctx, const alibi_comm_s* comm,
                       const alibi_dist_plan_s* plan_handle, alibi_tensor_s* q, alibi_tensor_s* k,
                       alibi_tensor_s* v, const alibi_attention_params* params, alibi_tensor_s* out,
                       alibi_tensor_s* lse) {
  const Plan& plan = check_collective(ctx, comm, plan_handle);
  reject_attn_bias(params);
  check_local_tokens(plan, {{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}});
  const std::unique_ptr<alibi_mask_s> sizes = sizes_mask(*ctx, plan);
  const ForwardCall call = validate_forward(ctx, q, k, v, sizes.get(), params, out, lse);

  const std::unique_ptr<RankWork> work = plan_rank(*ctx, plan, comm->rank);
  const KeyBuffer buffer(*ctx, work->local.num_keys, k->view);
  fetch_keys(*ctx, *comm, *work, k->view, v->view, buffer);
  ForwardArgs args = call.args;
  point_at_buffer(args, *work, buffer);
  ctx->device->call(&BackendOps::attention_forward, &args);
}

void attention_backward(alibi_context_s* ctx, const alibi_comm_s* comm,
                        const alibi_dist_plan_s* plan_handle, alibi_tensor_s* q, alibi_tensor_s* k,
                        alibi_tensor_s* v, const alibi_attention_params* params,
                        alibi_tensor_s* out, alibi_tensor_s* lse, alibi_tensor_s* dout,
                        alibi_tensor_s* dq, alibi_tensor_s* dk, alibi_tensor_s* dv,
                        alibi_tensor_s* dslopes) {
  const Plan& plan = check_collective(ctx, comm, plan_handle);
  reject_attn_bias(params);
  check_local_tokens(plan, {{q, "q"}, {k, "k"}, {v, "v"}, {out, "out"}});
  const std::unique_ptr<alibi_mask_s> sizes = sizes_mask(*ctx, plan);
  const BackwardCall call =
      validate_backward(ctx, q, k, v, sizes.get(), params, out, lse, dout, dq, dk, dv, dslopes);

  const std::unique_ptr<RankWork> work = plan_rank(*ctx, plan, comm->rank);
  const int64_t num_keys = work->local.num_keys;
  const KeyBuffer buffer(*ctx, num_keys, k->view);
  fetch_keys(*ctx, *comm, *work, k->view, v->view, buffer);
  const DeviceArray dk_partial(ctx->device, ALIBI_DTYPE_F32,
                               shape_with_rows(k->view, dk ? num_keys : 0));
  const DeviceArray dv_partial(ctx->device, ALIBI_DTYPE_F32,
                               shape_with_rows(k->view, dv ? num_keys : 0));
  const DeviceArray dslopes_partial(
      ctx->device, ALIBI_DTYPE_F32,
      dslopes ? shape_with_rows(dslopes->view, dslopes->view.shape[0]) : std::vector<int64_t>{0});
  BackwardArgs args = call.args;
  point_at_buffer(args.forward, *work, buffer);
  args.dk = dk ? &dk_partial.view() : nullptr;
  args.dv = dv ? &dv_partial.view() : nullptr;
  args.dslopes = dslopes ? &dslopes_partial.view() : nullptr;
  ctx->device->call(&BackendOps::attention_backward, &args);

  std::vector<KeyGradient> gradients;
  if (dk) gradients.push_back({&dk->view, &dk_partial});
  if (dv) gradients.push_back({&dv->view, &dv_partial});
  if (!gradients.empty()) return_partials(*ctx, *comm, *work, gradients, plan.local_tokens());
  if (dslopes) sum_slopes(*ctx, *comm, dslopes_partial, dslopes->view);
}

}  // namespace alibi::dist
