#include "core/abi/ops.h"

namespace alibi {

namespace {

// out_a fixes (T, H, D) and the dtype; out_b and out must agree with it.
void check_outputs(const alibi_context_s& ctx, const alibi_tensor_s& out_a,
                   const alibi_tensor_s& out_b, const alibi_tensor_s& out) {
  const struct {
    const alibi_tensor_s& tensor;
    const char* name;
  } outputs[] = {{out_a, "out_a"}, {out_b, "out_b"}, {out, "out"}};
  for (const auto& o : outputs) require_same_device(ctx, o.tensor.kind, o.tensor.device_index, o.name);
  require_ndim(out_a.view, 3, "out_a", "(tokens, heads, head_dim)");
  require_float_dtype(out_a.view, "out_a");
  for (const auto& o : outputs) {
    if (o.tensor.view.dtype != out_a.view.dtype)
      fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected out_a's dtype %s", o.name,
           dtype_name(o.tensor.view.dtype), dtype_name(out_a.view.dtype));
    require_ndim(o.tensor.view, 3, o.name, "(tokens, heads, head_dim)");
    for (int d = 0; d < 3; ++d) require_dim(o.tensor.view, d, out_a.view.shape[d], o.name, "out_a's shape");
  }
}

}  // namespace

void attention_merge(alibi_context_s* ctx, alibi_tensor_s* out_a, alibi_tensor_s* lse_a,
                     alibi_tensor_s* out_b, alibi_tensor_s* lse_b, alibi_tensor_s* out,
                     alibi_tensor_s* lse) {
  require(ctx, "ctx");
  require(out_a, "out_a");
  require(lse_a, "lse_a");
  require(out_b, "out_b");
  require(lse_b, "lse_b");
  require(out, "out");
  check_outputs(*ctx, *out_a, *out_b, *out);
  const LseShape lse_shape{out_a->view.shape[1], out_a->view.shape[0], "(H, T)", "out_a's heads",
                           "out_a's tokens"};
  require_lse(*ctx, *lse_a, "lse_a", lse_shape);
  require_lse(*ctx, *lse_b, "lse_b", lse_shape);
  if (lse) require_lse(*ctx, *lse, "lse", lse_shape);

  MergeArgs args;
  args.out_a = out_a->view;
  args.lse_a = lse_a->view;
  args.out_b = out_b->view;
  args.lse_b = lse_b->view;
  args.out = out->view;
  args.lse = lse ? &lse->view : nullptr;
  ctx->device->call(&BackendOps::attention_merge, &args);
}

}  // namespace alibi
