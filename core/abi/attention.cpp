#include "core/abi/ops.h"

namespace alibi {

namespace {

struct Operand {
  alibi_tensor_s* tensor;
  const char* name;
};

void check_operand_device(const alibi_context_s& ctx, const Operand& op) {
  require_same_device(ctx, op.tensor->kind, op.tensor->device_index, op.name);
}

void check_qkv_layout(const Operand& op) {
  require_ndim(op.tensor->view, 3, op.name, "(tokens, heads, head_dim)");
  require_contiguous_last_dim(op.tensor->view, op.name);
}

void check_dtypes(const TensorView& q, const TensorView& k, const TensorView& v,
                  const TensorView& out) {
  require_float_dtype(q, "q");
  if (k.dtype != q.dtype || v.dtype != q.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "q, k, v have dtypes %s, %s, %s; they must agree",
         dtype_name(q.dtype), dtype_name(k.dtype), dtype_name(v.dtype));
  if (out.dtype != q.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "out has dtype %s, expected q's dtype %s",
         dtype_name(out.dtype), dtype_name(q.dtype));
}

void check_shapes(const TensorView& q, const TensorView& k, const TensorView& v,
                  const TensorView& out, const MaskPlan& plan) {
  require_head_limits(q);
  require_dim(q, 0, plan.total_q, "q", "the mask's total_q");
  require_dim(k, 0, plan.total_k, "k", "the mask's total_k");
  require_dim(k, 2, q.shape[2], "k", "q's head_dim");
  for (int d = 0; d < 3; ++d) require_dim(v, d, k.shape[d], "v", "k's shape");
  if (k.shape[1] < 1 || q.shape[1] % k.shape[1] != 0)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "k.shape[1] = %lld kv heads do not divide q.shape[1] = %lld heads",
         (long long)k.shape[1], (long long)q.shape[1]);
  for (int d = 0; d < 3; ++d) require_dim(out, d, q.shape[d], "out", "q's shape");
}

}  // namespace

ForwardArgs forward_args(const alibi_tensor_s& q, const alibi_tensor_s& k, const alibi_tensor_s& v,
                         const alibi_tensor_s& out, const alibi_tensor_s* lse, const ResolvedParams& resolved) {
  ForwardArgs args;
  args.q = q.view;
  args.k = k.view;
  args.v = v.view;
  args.out = out.view;
  args.lse = lse ? &lse->view : nullptr;
  args.attn_bias = resolved.attn_bias ? &resolved.attn_bias->view : nullptr;
  args.scale = resolved.scale;
  args.softcap = resolved.softcap;
  args.slopes = resolved.slope_table(int(q.view.shape[1]));
  args.deterministic = resolved.deterministic;
  return args;
}

ForwardCall validate_forward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                             alibi_tensor_s* v, alibi_mask_s* mask,
                             const alibi_attention_params* params, alibi_tensor_s* out,
                             alibi_tensor_s* lse) {
  require(ctx, "ctx");
  const Operand operands[] = {{require(q, "q"), "q"}, {require(k, "k"), "k"},
                              {require(v, "v"), "v"}, {require(out, "out"), "out"}};
  require(mask, "mask");
  for (const Operand& op : operands) check_operand_device(*ctx, op);
  require_same_device(*ctx, mask->kind, mask->device_index, "mask");
  for (const Operand& op : operands) check_qkv_layout(op);
  check_dtypes(q->view, k->view, v->view, out->view);
  check_shapes(q->view, k->view, v->view, out->view, mask->plan);
  if (lse)
    require_lse(*ctx, *lse, "lse",
                {q->view.shape[1], q->view.shape[0], "(Hq, total_q)", "q's heads", "total_q"});

  const int num_heads = int(q->view.shape[1]);
  ForwardCall call;
  call.resolved = resolve_params(params, num_heads, q->view.shape[2], mask->plan);
  const ResolvedParams& resolved = call.resolved;
  if (resolved.attn_bias) check_attn_bias(*ctx, *resolved.attn_bias, num_heads, mask->plan);

  call.args = forward_args(*q, *k, *v, *out, lse, resolved);
  call.args.mask = &mask->view;
  call.args.device_mask = mask->device_mask.get();
  return call;
}

void attention_forward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                       alibi_tensor_s* v, alibi_mask_s* mask,
                       const alibi_attention_params* params, alibi_tensor_s* out,
                       alibi_tensor_s* lse) {
  const ForwardCall call = validate_forward(ctx, q, k, v, mask, params, out, lse);
  ctx->device->call(&BackendOps::attention_forward, &call.args);
}

}  // namespace alibi
