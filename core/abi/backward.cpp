#include "core/abi/ops.h"

namespace alibi {

namespace {

// dout or a gradient: shaped like `like` (named in messages as like_name), 3-d with a
// contiguous last dim like the forward's tensors, on the context's device.
void check_like(const alibi_context_s& ctx, const alibi_tensor_s& t, const char* name,
                const TensorView& like, const char* like_name) {
  require_same_device(ctx, t.kind, t.device_index, name);
  require_ndim(t.view, 3, name, "(tokens, heads, head_dim)");
  if (t.view.strides[2] != 1 && t.view.shape[2] > 1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s.strides[2] = %lld, the last dim must be contiguous",
         name, (long long)t.view.strides[2]);
  for (int d = 0; d < 3; ++d) require_dim(t.view, d, like.shape[d], name, like_name);
}

// dq, dk or dv (each optional): q's dtype or f32.
const TensorView* gradient(const alibi_context_s& ctx, const alibi_tensor_s* t, const char* name,
                           const TensorView& like, const char* like_name, alibi_dtype input) {
  if (!t) return nullptr;
  check_like(ctx, *t, name, like, like_name);
  if (t->view.dtype != input && t->view.dtype != ALIBI_DTYPE_F32)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected q's dtype %s or f32", name,
         dtype_name(t->view.dtype), dtype_name(input));
  return &t->view;
}

// dslopes (optional): f32 (Hq), or (num_sequences, Hq) with per-sequence slopes; any strides.
const TensorView* slope_gradient(const alibi_context_s& ctx, const alibi_tensor_s* t,
                                 int64_t num_heads, const SlopeTable& slopes,
                                 const MaskPlan& plan) {
  if (!t) return nullptr;
  require_same_device(ctx, t->kind, t->device_index, "dslopes");
  if (t->view.dtype != ALIBI_DTYPE_F32)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "dslopes has dtype %s, expected f32",
         dtype_name(t->view.dtype));
  if (slopes.per_sequence) {
    require_ndim(t->view, 2, "dslopes", "(num_sequences, Hq): the slopes are per sequence");
    require_dim(t->view, 0, plan.num_sequences, "dslopes", "the mask's sequences");
    require_dim(t->view, 1, num_heads, "dslopes", "q's heads");
  } else {
    require_ndim(t->view, 1, "dslopes", "(Hq)");
    require_dim(t->view, 0, num_heads, "dslopes", "q's heads");
  }
  return &t->view;
}

}  // namespace

void attention_backward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                        alibi_tensor_s* v, alibi_mask_s* mask,
                        const alibi_attention_params* params, alibi_tensor_s* out,
                        alibi_tensor_s* lse, alibi_tensor_s* dout, alibi_tensor_s* dq,
                        alibi_tensor_s* dk, alibi_tensor_s* dv, alibi_tensor_s* dslopes) {
  const ForwardCall call = validate_forward(ctx, q, k, v, mask, params, out, lse);
  require(lse, "lse");
  check_like(*ctx, *require(dout, "dout"), "dout", q->view, "q's shape");
  if (dout->view.dtype != q->view.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "dout has dtype %s, expected q's dtype %s",
         dtype_name(dout->view.dtype), dtype_name(q->view.dtype));

  BackwardArgs args;
  args.forward = call.args;
  args.dout = dout->view;
  const alibi_dtype input = q->view.dtype;
  args.dq = gradient(*ctx, dq, "dq", q->view, "q's shape", input);
  args.dk = gradient(*ctx, dk, "dk", k->view, "k's shape", input);
  args.dv = gradient(*ctx, dv, "dv", k->view, "k's shape", input);
  args.dslopes = slope_gradient(*ctx, dslopes, q->view.shape[1], call.args.slopes, mask->plan);
  ctx->device->call(&BackendOps::attention_backward, &args);
}

}  // namespace alibi
