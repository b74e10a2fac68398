#include <cstdint>
#include <vector>

#include "core/kernel/formulas.h"
#include "core/abi/ops.h"
#include "core/abi/params.h"

namespace alibi {

namespace {

// Supported range documented in alibi.h, as for the heads of alibi_attention_forward.
constexpr int kMaxHeads = 65536;

void check_num_heads(int num_heads) {
  if (num_heads < 1 || num_heads > kMaxHeads)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "num_heads = %d is outside [1, %d]", num_heads, kMaxHeads);
}

std::vector<float> formula_slopes(int num_heads) {
  std::vector<float> slopes(static_cast<size_t>(num_heads));
  compute_slopes(num_heads, 0, num_heads, 8.0f, slopes.data());
  return slopes;
}

void require_index_dtype(const TensorView& t, const char* name) {
  if (t.dtype != ALIBI_DTYPE_I64 && t.dtype != ALIBI_DTYPE_I32)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected i64 or i32", name,
         dtype_name(t.dtype));
}

// Reads a (B+1) offsets tensor to the host and checks it is non-negative and non-decreasing.
std::vector<int64_t> read_offsets(alibi_context_s& ctx, const alibi_tensor_s& t,
                                  const char* name) {
  require_same_device(ctx, t.kind, t.device_index, name);
  require_ndim(t.view, 1, name, "(B+1)");
  require_index_dtype(t.view, name);
  if (t.view.shape[0] < 1) fail(ALIBI_STATUS_SHAPE_MISMATCH, "%s.shape[0] = 0, expected B+1 >= 1", name);
  if (t.view.shape[0] > INT32_MAX)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s.shape[0] = %lld: B+1 must be at most INT32_MAX", name,
         (long long)t.view.shape[0]);
  std::vector<int64_t> values(size_t(t.view.shape[0]));
  if (t.view.dtype == ALIBI_DTYPE_I64) {
    ctx.device->call(&BackendOps::copy_to_host, &t.view, static_cast<void*>(values.data()));
  } else {
    std::vector<int32_t> narrow(values.size());
    ctx.device->call(&BackendOps::copy_to_host, &t.view, static_cast<void*>(narrow.data()));
    values.assign(narrow.begin(), narrow.end());
  }
  for (size_t b = 0; b < values.size(); ++b) {
    if (values[b] < 0 || (b > 0 && values[b] < values[b - 1]))
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s[%zu] = %lld breaks non-negative, non-decreasing offsets",
           name, b, (long long)values[b]);
  }
  return values;
}

// OpenPPL's operator takes f32 or f16 only.
void require_half_or_f32(const TensorView& t, const char* name) {
  if (t.dtype != ALIBI_DTYPE_F32 && t.dtype != ALIBI_DTYPE_F16)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected f32 or f16", name,
         dtype_name(t.dtype));
}

void check_attn_mask(const alibi_context_s& ctx, const alibi_tensor_s& mask, int num_heads,
                     int64_t sq, int64_t sk) {
  const char* name = "attn_mask";
  require_same_device(ctx, mask.kind, mask.device_index, name);
  require_half_or_f32(mask.view, name);
  if (mask.view.ndim != 2 && mask.view.ndim != 3)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "attn_mask has ndim = %d, expected 2 (Sq, Sk) or 3 (H, Sq, Sk)",
         mask.view.ndim);
  int first = mask.view.ndim - 2;
  if (mask.view.ndim == 3) require_dim(mask.view, 0, num_heads, name, "num_heads");
  require_dim(mask.view, first, sq, name, "Sq = seqstarts[B]");
  require_dim(mask.view, first + 1, sk, name, "Sk = kvstarts[B]");
}

}  // namespace

void build_bias(alibi_context_s* ctx, alibi_mask_s* mask, int num_heads,
                const alibi_attention_params* params, alibi_tensor_s* out) {
  require(ctx, "ctx");
  require(mask, "mask");
  require(out, "out");
  check_num_heads(num_heads);
  require_same_device(*ctx, mask->kind, mask->device_index, "mask");
  require_same_device(*ctx, out->kind, out->device_index, "out");
  require_ndim(out->view, 3, "out", "(H, total_q, total_k)");
  require_float_dtype(out->view, "out");
  require_dim(out->view, 0, num_heads, "out", "num_heads");
  require_dim(out->view, 1, mask->plan.total_q, "out", "the mask's total_q");
  require_dim(out->view, 2, mask->plan.total_k, "out", "the mask's total_k");
  ResolvedParams resolved = resolve_params(params, num_heads, 1, mask->plan);
  if (resolved.attn_bias) check_attn_bias(*ctx, *resolved.attn_bias, num_heads, mask->plan);

  BiasArgs args;
  args.mask = &mask->view;
  args.device_mask = mask->device_mask.get();
  args.slopes = resolved.slope_table(num_heads);
  args.attn_bias = resolved.attn_bias ? &resolved.attn_bias->view : nullptr;
  args.out = out->view;
  ctx->device->call(&BackendOps::build_bias, &args);
}

void build_dynamic_batching_mask(alibi_context_s* ctx, alibi_tensor_s* seqstarts,
                                 alibi_tensor_s* kvstarts, alibi_tensor_s* attn_mask,
                                 int num_heads, alibi_tensor_s* out) {
  require(ctx, "ctx");
  require(seqstarts, "seqstarts");
  require(kvstarts, "kvstarts");
  require(out, "out");
  check_num_heads(num_heads);
  std::vector<int64_t> seq = read_offsets(*ctx, *seqstarts, "seqstarts");
  std::vector<int64_t> kv = read_offsets(*ctx, *kvstarts, "kvstarts");
  if (seq.size() != kv.size())
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "seqstarts has %zu entries but kvstarts has %zu", seq.size(),
         kv.size());
  const int64_t sq = seq.back(), sk = kv.back();
  require_same_device(*ctx, out->kind, out->device_index, "out");
  require_ndim(out->view, 3, "out", "(H, Sq, W)");
  require_half_or_f32(out->view, "out");
  require_dim(out->view, 0, num_heads, "out", "num_heads");
  require_dim(out->view, 1, sq, "out", "Sq = seqstarts[B]");
  if (out->view.shape[2] < sk)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "out.shape[2] = %lld is less than Sk = kvstarts[B] = %lld",
         (long long)out->view.shape[2], (long long)sk);
  if (attn_mask) check_attn_mask(*ctx, *attn_mask, num_heads, sq, sk);

  std::vector<float> slopes = formula_slopes(num_heads);
  DynamicBatchingArgs args;
  args.seqstarts = seq.data();
  args.kvstarts = kv.data();
  args.batch = int(seq.size()) - 1;
  args.attn_mask = attn_mask ? &attn_mask->view : nullptr;
  args.slopes = {slopes.data(), false, num_heads};
  args.out = out->view;
  ctx->device->call(&BackendOps::build_dynamic_batching_mask, &args);
}

void build_bloom_bias(alibi_context_s* ctx, alibi_tensor_s* attention_mask, int num_heads,
                      alibi_tensor_s* out) {
  require(ctx, "ctx");
  require(attention_mask, "attention_mask");
  require(out, "out");
  check_num_heads(num_heads);
  const TensorView& mask = attention_mask->view;
  require_same_device(*ctx, attention_mask->kind, attention_mask->device_index, "attention_mask");
  require_ndim(mask, 2, "attention_mask", "(B, S)");
  require_index_dtype(mask, "attention_mask");
  require_same_device(*ctx, out->kind, out->device_index, "out");
  require_ndim(out->view, 3, "out", "(B*H, 1, S)");
  require_float_dtype(out->view, "out");
  int64_t rows;
  if (__builtin_mul_overflow(mask.shape[0], int64_t(num_heads), &rows))
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "attention_mask.shape[0] = %lld times num_heads = %d overflows",
         (long long)mask.shape[0], num_heads);
  require_dim(out->view, 0, rows, "out", "B * num_heads");
  require_dim(out->view, 1, 1, "out", "1");
  require_dim(out->view, 2, mask.shape[1], "out", "S");

  std::vector<float> slopes = formula_slopes(num_heads);
  BloomArgs args;
  args.attention_mask = mask;
  args.slopes = {slopes.data(), false, num_heads};
  args.out = out->view;
  ctx->device->call(&BackendOps::build_bloom_bias, &args);
}

}  // namespace alibi
