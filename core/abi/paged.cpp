// alibi_attention_forward_paged: validation of the caches and the three tables, and the mask of
// the call (slices and positions over a virtual packed key stream) for the backend.
#include <algorithm>
#include <climits>
#include <vector>

#include "core/abi/ops.h"

namespace alibi {

namespace {

// An int32 table on the context's device, readable on the host: the tensor's own memory on the
// CPU, else a copy (contiguous).
class HostTable {
 public:
  HostTable(const alibi_context_s& ctx, const alibi_tensor_s& t) {
    const TensorView& view = t.view;
    row_stride_ = view.ndim == 2 ? view.strides[0] : 0;
    column_stride_ = view.strides[view.ndim - 1];
    data_ = static_cast<const int32_t*>(view.data);
    if (ctx.kind == ALIBI_DEVICE_CPU) return;
    copy_.resize(size_t(view.numel()));
    ctx.device->call(&BackendOps::copy_to_host, &view, static_cast<void*>(copy_.data()));
    row_stride_ = view.ndim == 2 ? view.shape[1] : 0;
    column_stride_ = 1;
    data_ = copy_.data();
  }

  int32_t at(int64_t row, int64_t column) const {
    return data_[row * row_stride_ + column * column_stride_];
  }
  int32_t operator[](int64_t i) const { return at(0, i); }
  const int32_t* data() const { return data_; }
  int64_t row_stride() const { return row_stride_; }
  int64_t column_stride() const { return column_stride_; }

 private:
  std::vector<int32_t> copy_;
  const int32_t* data_;
  int64_t row_stride_, column_stride_;
};

struct Operand {
  alibi_tensor_s* tensor;
  const char* name;
};

void require_int32(const TensorView& t, const char* name) {
  if (t.dtype != ALIBI_DTYPE_I32)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected i32", name, dtype_name(t.dtype));
}

void require_dtype_of_q(const TensorView& t, const TensorView& q, const char* name) {
  if (t.dtype != q.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected q's dtype %s", name,
         dtype_name(t.dtype), dtype_name(q.dtype));
}

void check_layouts(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                   const TensorView& out) {
  require_ndim(q, 3, "q", "(total_q, Hq, D)");
  require_ndim(out, 3, "out", "(total_q, Hq, D)");
  require_ndim(k_cache, 4, "k_cache", "(num_blocks, block_size, Hkv, D)");
  require_ndim(v_cache, 4, "v_cache", "(num_blocks, block_size, Hkv, D)");
  require_contiguous_last_dim(q, "q");
  require_contiguous_last_dim(k_cache, "k_cache");
  require_contiguous_last_dim(v_cache, "v_cache");
  require_contiguous_last_dim(out, "out");
  require_float_dtype(q, "q");
  require_dtype_of_q(k_cache, q, "k_cache");
  require_dtype_of_q(v_cache, q, "v_cache");
  require_dtype_of_q(out, q, "out");
}

void check_shapes(const TensorView& q, const TensorView& k_cache, const TensorView& v_cache,
                  const TensorView& out) {
  require_head_limits(q);
  if (k_cache.shape[1] < 1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "k_cache.shape[1] = %lld: block_size must be >= 1",
         (long long)k_cache.shape[1]);
  require_dim(k_cache, 3, q.shape[2], "k_cache", "q's head_dim");
  for (int d = 0; d < 4; ++d) require_dim(v_cache, d, k_cache.shape[d], "v_cache", "k_cache's shape");
  if (k_cache.shape[2] < 1 || q.shape[1] % k_cache.shape[2] != 0)
    fail(ALIBI_STATUS_SHAPE_MISMATCH,
         "k_cache.shape[2] = %lld kv heads do not divide q.shape[1] = %lld heads",
         (long long)k_cache.shape[2], (long long)q.shape[1]);
  for (int d = 0; d < 3; ++d) require_dim(out, d, q.shape[d], "out", "q's shape");
}

// Shapes and dtypes of the three tables; returns the batch B.
int check_table_shapes(const TensorView& block_table, const TensorView& cu_seqlens_q,
                       const TensorView& seqlens_k) {
  require_ndim(block_table, 2, "block_table", "(B, max_blocks)");
  require_ndim(cu_seqlens_q, 1, "cu_seqlens_q", "(B+1)");
  require_ndim(seqlens_k, 1, "seqlens_k", "(B)");
  require_int32(block_table, "block_table");
  require_int32(cu_seqlens_q, "cu_seqlens_q");
  require_int32(seqlens_k, "seqlens_k");
  const int64_t batch = block_table.shape[0];
  if (batch >= INT32_MAX)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "block_table.shape[0] = %lld sequences: B+1 must be at most INT32_MAX",
         (long long)batch);
  require_dim(cu_seqlens_q, 0, batch + 1, "cu_seqlens_q", "B+1, B = block_table.shape[0]");
  require_dim(seqlens_k, 0, batch, "seqlens_k", "B = block_table.shape[0]");
  return int(batch);
}

void check_cu_seqlens_q(const HostTable& cu_q, int batch, int64_t total_q) {
  if (cu_q[0] != 0) fail(ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q[0] = %d, expected 0", cu_q[0]);
  for (int b = 0; b < batch; ++b)
    if (cu_q[b + 1] < cu_q[b])
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "cu_seqlens_q[%d] = %d is less than cu_seqlens_q[%d] = %d (sequence %d would have a "
           "negative number of queries)", b + 1, cu_q[b + 1], b, cu_q[b], b);
  if (cu_q[batch] != total_q)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q[%d] = %d, expected total_q = q.shape[0] = %lld",
         batch, cu_q[batch], (long long)total_q);
}

// Sequence b's keys against its row of the table: its length, Lq <= Lk when causal, and the ids
// of the blocks it uses.
void check_sequence(int b, int32_t lq, int32_t lk, bool causal, const HostTable& table,
                    int64_t max_blocks, int64_t block_size, int64_t num_blocks) {
  if (lk < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "seqlens_k[%d] = %d is negative (sequence %d)", b, lk, b);
  // Compared in blocks: max_blocks * block_size may overflow.
  const int64_t used = (int64_t(lk) + block_size - 1) / block_size;
  if (used > max_blocks)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "sequence %d: seqlens_k[%d] = %d keys need %lld blocks of %lld tokens, more than its "
         "block_table row holds (max_blocks = %lld)", b, b, lk, (long long)used,
         (long long)block_size, (long long)max_blocks);
  if (causal && lq > lk)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "sequence %d: %d queries (cu_seqlens_q[%d..%d]) but seqlens_k[%d] = %d keys; causal "
         "attention needs Lq <= Lk", b, lq, b, b + 1, b, lk);
  for (int64_t j = 0; j < used; ++j) {
    const int32_t id = table.at(b, j);
    if (id < 0 || id >= num_blocks)
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "sequence %d: block_table[%d][%lld] = %d is outside [0, num_blocks = %lld) (the "
           "sequence's %d keys use its first %lld blocks)", b, b, (long long)j, id,
           (long long)num_blocks, lk, (long long)used);
  }
}

// The keys of every sequence packed one after another: B+1 offsets.
std::vector<int32_t> packed_key_offsets(const HostTable& seqlens_k, int batch) {
  std::vector<int32_t> offsets(size_t(batch) + 1, 0);
  int64_t total = 0;
  for (int b = 0; b < batch; ++b) {
    total += seqlens_k[b];
    if (total > INT32_MAX)
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "seqlens_k sums to more than INT32_MAX keys by sequence %d (seqlens_k[%d] = %d)", b, b,
           seqlens_k[b]);
    offsets[size_t(b) + 1] = int32_t(total);
  }
  return offsets;
}

// Key t of a sequence is visible to its query at qpos when (!causal || t <= qpos) and
// (window_left < 0 || t >= qpos - window_left): the varlen or sliding-window slices, plus, for
// the leading Lq - Lk queries (qpos < 0) that a sliding window leaves out, a full slice.
void append_paged_slices(MaskPlan& plan, int b, int32_t q0, int32_t lq, int32_t k0, int32_t lk,
                         bool causal, int window_left) {
  if (window_left < 0) {
    plan.slices.push_back({q0, q0 + lq, k0, k0 + lk, causal ? ALIBI_MASK_CAUSAL : ALIBI_MASK_FULL, b});
    return;
  }
  const int32_t leading = std::max(0, lq - lk);  // 0 with causal (checked)
  if (leading > 0) plan.slices.push_back({q0, q0 + leading, k0, k0 + lk, ALIBI_MASK_FULL, b});
  append_window_slices(plan, b, q0, lq, k0, lk, window_left, causal ? 0 : -1);
}

}  // namespace

void attention_forward_paged(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k_cache,
                             alibi_tensor_s* v_cache, alibi_tensor_s* block_table,
                             alibi_tensor_s* cu_seqlens_q, alibi_tensor_s* seqlens_k, int causal,
                             int window_left, const alibi_attention_params* params,
                             alibi_tensor_s* out, alibi_tensor_s* lse) {
  require(ctx, "ctx");
  const Operand operands[] = {{require(q, "q"), "q"},
                              {require(k_cache, "k_cache"), "k_cache"},
                              {require(v_cache, "v_cache"), "v_cache"},
                              {require(block_table, "block_table"), "block_table"},
                              {require(cu_seqlens_q, "cu_seqlens_q"), "cu_seqlens_q"},
                              {require(seqlens_k, "seqlens_k"), "seqlens_k"},
                              {require(out, "out"), "out"}};
  for (const Operand& op : operands)
    require_same_device(*ctx, op.tensor->kind, op.tensor->device_index, op.name);
  if (window_left < -1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "window_left = %d is neither >= 0 nor -1 (unbounded)",
         window_left);
  check_layouts(q->view, k_cache->view, v_cache->view, out->view);
  check_shapes(q->view, k_cache->view, v_cache->view, out->view);
  const int batch = check_table_shapes(block_table->view, cu_seqlens_q->view, seqlens_k->view);
  const int64_t total_q = q->view.shape[0], heads = q->view.shape[1];
  if (lse) require_lse(*ctx, *lse, "lse", {heads, total_q, "(Hq, total_q)", "q's heads", "total_q"});

  const HostTable cu_q(*ctx, *cu_seqlens_q), lengths_k(*ctx, *seqlens_k), table(*ctx, *block_table);
  check_cu_seqlens_q(cu_q, batch, total_q);
  for (int b = 0; b < batch; ++b)
    check_sequence(b, cu_q[b + 1] - cu_q[b], lengths_k[b], causal != 0, table,
                   block_table->view.shape[1], k_cache->view.shape[1], k_cache->view.shape[0]);

  const std::vector<int32_t> key_begin = packed_key_offsets(lengths_k, batch);
  std::vector<int32_t> query_begin(size_t(batch) + 1);
  for (int b = 0; b <= batch; ++b) query_begin[size_t(b)] = cu_q[b];
  MaskPlan plan = sequence_plan(batch, query_begin.data(), key_begin.data());
  for (int b = 0; b < batch; ++b)
    append_paged_slices(plan, b, query_begin[size_t(b)], cu_q[b + 1] - cu_q[b],
                        key_begin[size_t(b)], lengths_k[b], causal != 0, window_left);
  const ResolvedParams resolved = resolve_params(params, int(heads), q->view.shape[2], plan);
  if (resolved.attn_bias)
    fail(ALIBI_STATUS_UNSUPPORTED, "params->attn_bias is not NULL: paged attention takes none");
  plan_slices(plan, ctx->device->ops().plan_shape);
  const MaskView mask = plan.view();

  PagedForwardArgs args;
  args.forward = forward_args(*q, *k_cache, *v_cache, *out, lse, resolved);
  args.forward.mask = &mask;
  args.block_table = table.data();
  args.table_row_stride = table.row_stride();
  args.table_column_stride = table.column_stride();
  args.key_begin = key_begin.data();
  ctx->device->call(&BackendOps::attention_forward_paged, &args);
}

}  // namespace alibi
