#include "core/abi/params.h"

#include <cmath>
#include <cstring>

#include "core/kernel/formulas.h"
#include "core/abi/ops.h"

namespace alibi {

namespace {

void check_finite_non_negative(float value, const char* name) {
  if (!std::isfinite(value) || value < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s = %g is not a finite value >= 0", name, value);
}

void check_user_slopes(const float* slopes, int64_t count) {
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(slopes[i]) || slopes[i] < 0)
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "params->slopes[%lld] = %g is not a finite slope >= 0",
           (long long)i, slopes[i]);
}

// The caller's params, with the defaults for the fields past its struct_size (a caller built
// against an older header); the struct itself is never read past struct_size.
alibi_attention_params read_params(const alibi_attention_params* caller) {
  alibi_attention_params p = default_params();
  if (!caller) return p;
  const size_t size = caller->struct_size;
  if (size < kFirstParamsSize)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "params->struct_size = %zu is smaller than the first version's alibi_attention_params "
         "(%zu bytes; this library's: %zu); fill params with alibi_attention_params_init",
         size, kFirstParamsSize, sizeof p);
  if (size > sizeof p)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "params->struct_size = %zu is larger than this library's alibi_attention_params (%zu "
         "bytes): the caller was built against a newer header than this library",
         size, sizeof p);
  std::memcpy(&p, caller, size);
  return p;
}

std::vector<float> resolve_slopes(const alibi_attention_params& p, int num_heads,
                                  const MaskPlan& plan) {
  if (p.slopes_per_batch) {
    require(p.slopes, "params->slopes (required by slopes_per_batch)");
    if (!plan.from_sequences)
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "params->slopes_per_batch = %d needs a mask made from cu_seqlens, not from ranges",
           p.slopes_per_batch);
  }
  int total_heads = p.total_heads == 0 ? num_heads : p.total_heads;
  if (p.head_offset < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "params->head_offset = %d is negative", p.head_offset);
  if (int64_t(p.head_offset) + num_heads > total_heads)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "params->head_offset = %d with %d heads exceeds params->total_heads = %d", p.head_offset,
         num_heads, total_heads);
  std::vector<float> slopes(static_cast<size_t>(num_heads));
  compute_slopes(total_heads, p.head_offset, num_heads, p.max_bias, slopes.data());
  if (!p.slopes) return slopes;
  int64_t count = int64_t(num_heads) * (p.slopes_per_batch ? plan.num_sequences : 1);
  check_user_slopes(p.slopes, count);
  return std::vector<float>(p.slopes, p.slopes + count);
}

}  // namespace

void compute_slopes(int total_heads, int head_offset, int num_heads, float max_bias, float* out) {
  if (total_heads < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "total_heads = %d is negative", total_heads);
  if (num_heads < 0) fail(ALIBI_STATUS_INVALID_ARGUMENT, "num_heads = %d is negative", num_heads);
  if (head_offset < 0) fail(ALIBI_STATUS_INVALID_ARGUMENT, "head_offset = %d is negative", head_offset);
  if (int64_t(head_offset) + num_heads > total_heads)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "head_offset = %d with num_heads = %d exceeds total_heads = %d", head_offset, num_heads,
         total_heads);
  check_finite_non_negative(max_bias, "max_bias");
  require(out, "out");
  for (int h = 0; h < num_heads; ++h) out[h] = slope_formula(head_offset + h, total_heads, max_bias);
}

alibi_attention_params default_params() {
  alibi_attention_params p{};
  p.struct_size = sizeof p;
  p.max_bias = 8.0f;
  return p;
}

ResolvedParams resolve_params(const alibi_attention_params* params, int num_heads,
                              int64_t head_dim, const MaskPlan& plan) {
  const alibi_attention_params p = read_params(params);
  if (std::isnan(p.softmax_scale) || std::isinf(p.softmax_scale))
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "params->softmax_scale = %g is not finite",
         p.softmax_scale);
  check_finite_non_negative(p.softcap, "params->softcap");
  check_finite_non_negative(p.max_bias, "params->max_bias");
  if (p.total_heads < 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "params->total_heads = %d is negative", p.total_heads);

  ResolvedParams resolved;
  resolved.scale = p.softmax_scale > 0 ? p.softmax_scale : float(1.0 / std::sqrt(double(head_dim)));
  resolved.softcap = p.softcap;
  resolved.slopes = resolve_slopes(p, num_heads, plan);
  resolved.per_sequence = p.slopes && p.slopes_per_batch;
  resolved.attn_bias = p.attn_bias;
  resolved.deterministic = p.deterministic != 0;
  return resolved;
}

void check_attn_bias(const alibi_context_s& ctx, const alibi_tensor_s& bias, int64_t num_heads,
                     const MaskPlan& plan) {
  const char* name = "params->attn_bias";
  require_same_device(ctx, bias.kind, bias.device_index, name);
  require_ndim(bias.view, 3, name, "(H|1, total_q, total_k)");
  require_float_dtype(bias.view, name);
  if (bias.view.shape[0] != 1) require_dim(bias.view, 0, num_heads, name, "H or 1");
  require_dim(bias.view, 1, plan.total_q, name, "the mask's total_q");
  require_dim(bias.view, 2, plan.total_k, name, "the mask's total_k");
}

}  // namespace alibi
