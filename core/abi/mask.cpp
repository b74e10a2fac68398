#include <algorithm>
#include <climits>
#include <numeric>

#include "core/abi/ops.h"

namespace alibi {

namespace {

void check_cu_seqlens(const int32_t* cu, int batch, const char* name) {
  require(cu, name);
  if (cu[0] < 0) fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s[0] = %d is negative", name, cu[0]);
  for (int b = 0; b < batch; ++b)
    if (cu[b + 1] < cu[b])
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s[%d] = %d is less than %s[%d] = %d (offsets must not decrease)",
           name, b + 1, cu[b + 1], name, b, cu[b]);
}

void check_batch(int batch) {
  if (batch < 0) fail(ALIBI_STATUS_INVALID_ARGUMENT, "batch = %d is negative", batch);
}

// The mask's plan for its backend, and the backend's copy of it.
alibi_mask_s* new_mask(const alibi_context_s& ctx, MaskPlan plan) {
  plan_slices(plan, ctx.device->ops().plan_shape);
  std::unique_ptr<alibi_mask_s> mask(
      new alibi_mask_s{ctx.kind, ctx.device_index, ctx.device, std::move(plan), {}, nullptr});
  mask->view = mask->plan.view();
  mask->device_mask = mask->device->upload_mask(mask->view);
  return mask.release();
}

void check_range(const int32_t* range, int s, int64_t total, const char* name,
                 const char* total_name) {
  int32_t begin = range[2 * int64_t(s)], end = range[2 * int64_t(s) + 1];
  if (begin < 0 || end < begin || end > total)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "%s[%d] = [%d, %d) is not a range within [0, %s = %lld)", name, s, begin, end,
         total_name, (long long)total);
}

void check_no_overlap(const std::vector<Slice>& slices) {
  std::vector<size_t> order;
  for (size_t s = 0; s < slices.size(); ++s)
    if (slices[s].q_begin < slices[s].q_end && slices[s].k_begin < slices[s].k_end)
      order.push_back(s);
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return slices[a].q_begin < slices[b].q_begin; });
  for (size_t x = 0; x < order.size(); ++x) {
    const Slice& a = slices[order[x]];
    for (size_t y = x + 1; y < order.size() && slices[order[y]].q_begin < a.q_end; ++y) {
      const Slice& b = slices[order[y]];
      if (b.k_begin < a.k_end && a.k_begin < b.k_end) {
        size_t first = std::min(order[x], order[y]), second = std::max(order[x], order[y]);
        const Slice& f = slices[first];
        const Slice& g = slices[second];
        fail(ALIBI_STATUS_INVALID_ARGUMENT,
             "slices %zu (q [%d, %d) x k [%d, %d)) and %zu (q [%d, %d) x k [%d, %d)) overlap",
             first, f.q_begin, f.q_end, f.k_begin, f.k_end, second, g.q_begin, g.q_end,
             g.k_begin, g.k_end);
      }
    }
  }
}

void check_window_side(int value, const char* name) {
  if (value < -1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s = %d is neither >= 0 nor -1 (unbounded)", name,
         value);
}

}  // namespace

void plan_slices(MaskPlan& plan, const PlanShape& shape) {
  // alibi_mask_get_num_slices answers an int (windows make up to 3 slices per sequence).
  if (plan.slices.size() > size_t(INT32_MAX))
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "the mask would have %zu slices, more than INT32_MAX",
         plan.slices.size());
  plan_rows_and_keys(plan, shape);
  plan_positions(plan);
}

MaskPlan sequence_plan(int batch, const int32_t* cu_q, const int32_t* cu_k) {
  MaskPlan plan;
  plan.total_q = cu_q[batch];
  plan.total_k = cu_k[batch];
  plan.from_sequences = true;
  plan.num_sequences = batch;
  plan.q_positions.assign(size_t(plan.total_q), 0);
  plan.k_positions.assign(size_t(plan.total_k), 0);
  for (int b = 0; b < batch; ++b) {
    int32_t lq = cu_q[b + 1] - cu_q[b], lk = cu_k[b + 1] - cu_k[b];
    for (int32_t i = 0; i < lq; ++i) plan.q_positions[size_t(cu_q[b] + i)] = i + (lk - lq);
    for (int32_t j = 0; j < lk; ++j) plan.k_positions[size_t(cu_k[b] + j)] = j;
  }
  return plan;
}

// Sliding window of one sequence as at most three slices (see the header). Participating row r
// sees keys [r + shift - left, r + shift + right] clipped to [0, Sk), shift = Sk - min(Sq, Sk).
void append_window_slices(MaskPlan& plan, int sequence, int32_t q0, int32_t sq, int32_t k0,
                          int32_t sk, int left, int right) {
  const int64_t m = std::min(sq, sk);
  if (m == 0) return;
  const int64_t shift = sk - m;
  const int32_t rows0 = q0 + int32_t(sq - m);
  // First row whose window starts past key 0, and first whose window reaches the last key.
  const int64_t starts_inside = left < 0 ? m : std::clamp<int64_t>(left - shift + 1, 0, m);
  const int64_t reaches_end = right < 0 ? 0 : std::clamp<int64_t>(m - 1 - right, 0, m);
  const int64_t split1 = std::min(starts_inside, reaches_end);
  const int64_t split2 = std::max(starts_inside, reaches_end);
  auto window_lo = [&](int64_t r) { return r + shift - left; };
  auto window_end = [&](int64_t r) { return r + shift + right + 1; };
  auto add = [&](int64_t r_begin, int64_t r_end, int64_t c_begin, int64_t c_end, int type) {
    if (r_begin < r_end)
      plan.slices.push_back({int32_t(rows0 + r_begin), int32_t(rows0 + r_end),
                             int32_t(k0 + c_begin), int32_t(k0 + c_end), type, sequence});
  };
  add(0, split1, 0, split1 > 0 ? window_end(split1 - 1) : 0, ALIBI_MASK_CAUSAL);
  if (starts_inside < reaches_end)
    add(split1, split2, window_lo(split1), window_end(split2 - 1), ALIBI_MASK_BI_CAUSAL);
  else
    add(split1, split2, 0, sk, ALIBI_MASK_FULL);
  add(split2, m, split2 < m ? window_lo(split2) : 0, sk, ALIBI_MASK_INV_CAUSAL);
}

alibi_mask_s* mask_create_varlen(alibi_context_s* ctx, int batch, const int32_t* cu_q,
                                 const int32_t* cu_k, int causal) {
  require(ctx, "ctx");
  check_batch(batch);
  check_cu_seqlens(cu_q, batch, "cu_seqlens_q");
  check_cu_seqlens(cu_k, batch, "cu_seqlens_k");
  MaskPlan plan = sequence_plan(batch, cu_q, cu_k);
  const int32_t type = causal ? ALIBI_MASK_CAUSAL : ALIBI_MASK_FULL;
  for (int b = 0; b < batch; ++b)
    plan.slices.push_back({cu_q[b], cu_q[b + 1], cu_k[b], cu_k[b + 1], type, b});
  return new_mask(*ctx, std::move(plan));
}

alibi_mask_s* mask_create_ranges(alibi_context_s* ctx, int num_slices, const int32_t* q_ranges,
                                 const int32_t* k_ranges, const int32_t* types, int64_t total_q,
                                 int64_t total_k) {
  require(ctx, "ctx");
  if (num_slices < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "num_slices = %d is negative", num_slices);
  if (total_q < 0 || total_q > INT32_MAX)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "total_q = %lld is outside [0, INT32_MAX]",
         (long long)total_q);
  if (total_k < 0 || total_k > INT32_MAX)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "total_k = %lld is outside [0, INT32_MAX]",
         (long long)total_k);
  if (num_slices > 0) {
    require(q_ranges, "q_ranges");
    require(k_ranges, "k_ranges");
    require(types, "types");
  }
  MaskPlan plan;
  plan.total_q = total_q;
  plan.total_k = total_k;
  for (int s = 0; s < num_slices; ++s) {
    check_range(q_ranges, s, total_q, "q_ranges", "total_q");
    check_range(k_ranges, s, total_k, "k_ranges", "total_k");
    if (types[s] < ALIBI_MASK_FULL || types[s] > ALIBI_MASK_BI_CAUSAL)
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "types[%d] = %d is not an alibi_mask_type (0..3)", s,
           types[s]);
    const int64_t at = 2 * int64_t(s);  // 2 * s overflows int for s >= 2^30
    plan.slices.push_back(
        {q_ranges[at], q_ranges[at + 1], k_ranges[at], k_ranges[at + 1], types[s], -1});
  }
  check_no_overlap(plan.slices);
  plan.q_positions.resize(size_t(total_q));
  plan.k_positions.resize(size_t(total_k));
  std::iota(plan.q_positions.begin(), plan.q_positions.end(), 0);
  std::iota(plan.k_positions.begin(), plan.k_positions.end(), 0);
  return new_mask(*ctx, std::move(plan));
}

alibi_mask_s* mask_create_sliding_window(alibi_context_s* ctx, int batch, const int32_t* cu_q,
                                         const int32_t* cu_k, int left, int right) {
  require(ctx, "ctx");
  check_batch(batch);
  check_cu_seqlens(cu_q, batch, "cu_seqlens_q");
  check_cu_seqlens(cu_k, batch, "cu_seqlens_k");
  check_window_side(left, "window_left");
  check_window_side(right, "window_right");
  MaskPlan plan = sequence_plan(batch, cu_q, cu_k);
  for (int b = 0; b < batch; ++b)
    append_window_slices(plan, b, cu_q[b], cu_q[b + 1] - cu_q[b], cu_k[b], cu_k[b + 1] - cu_k[b],
                         left, right);
  return new_mask(*ctx, std::move(plan));
}

void mask_set_positions(alibi_mask_s* mask, const int32_t* q_positions,
                        const int32_t* k_positions) {
  require(mask, "mask");
  if (!q_positions && !k_positions)
    fail(ALIBI_STATUS_NULL_POINTER, "q_positions and k_positions are both NULL");
  MaskPlan plan = mask->plan;
  if (q_positions) plan.q_positions.assign(q_positions, q_positions + plan.total_q);
  if (k_positions) plan.k_positions.assign(k_positions, k_positions + plan.total_k);
  plan_positions(plan);
  const MaskView view = plan.view();
  std::shared_ptr<void> uploaded = mask->device->upload_mask(view);
  mask->plan = std::move(plan);
  mask->view = mask->plan.view();
  mask->device_mask = std::move(uploaded);
}

void mask_get_slices(const alibi_mask_s* mask, int32_t* q_ranges, int32_t* k_ranges,
                     int32_t* types) {
  require(mask, "mask");
  for (size_t s = 0; s < mask->plan.slices.size(); ++s) {
    const Slice& slice = mask->plan.slices[s];
    if (q_ranges) q_ranges[2 * s] = slice.q_begin, q_ranges[2 * s + 1] = slice.q_end;
    if (k_ranges) k_ranges[2 * s] = slice.k_begin, k_ranges[2 * s + 1] = slice.k_end;
    if (types) types[s] = slice.type;
  }
}

}  // namespace alibi
