#include <cstdint>
#include <utility>
#include <vector>

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

// The bytes a view may touch: [begin, end); empty for a tensor without elements.
struct ByteSpan {
  uintptr_t begin = 0, end = 0;
};

ByteSpan bytes_of(const TensorView& t) {
  if (t.numel() == 0) return {};
  int64_t low = 0, high = 0;
  for (int d = 0; d < t.ndim; ++d) {
    const int64_t reach = (t.shape[d] - 1) * t.strides[d];
    (reach < 0 ? low : high) += reach;
  }
  const int64_t size = int64_t(dtype_size(t.dtype));
  const uintptr_t base = reinterpret_cast<uintptr_t>(t.data);
  return {base + uintptr_t(low * size), base + uintptr_t((high + 1) * size)};
}

struct Named {
  const TensorView* view;
  const char* name;
};

// Each gradient is written while every input is read: no gradient may share a byte with an
// input or another gradient.
void check_no_overlap(const std::vector<Named>& gradients, const std::vector<Named>& inputs) {
  for (size_t g = 0; g < gradients.size(); ++g) {
    if (!gradients[g].view) continue;
    const ByteSpan written = bytes_of(*gradients[g].view);
    auto overlaps = [&](const Named& other) {
      if (!other.view) return false;
      const ByteSpan read = bytes_of(*other.view);
      return written.begin < read.end && read.begin < written.end;
    };
    for (const Named& input : inputs)
      if (overlaps(input))
        fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s overlaps %s in memory", gradients[g].name,
             input.name);
    for (size_t h = g + 1; h < gradients.size(); ++h)
      if (overlaps(gradients[h]))
        fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s overlaps %s in memory", gradients[g].name,
             gradients[h].name);
  }
}

}  // namespace

BackwardCall validate_backward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                               alibi_tensor_s* v, alibi_mask_s* mask,
                               const alibi_attention_params* params, alibi_tensor_s* out,
                               alibi_tensor_s* lse, alibi_tensor_s* dout, alibi_tensor_s* dq,
                               alibi_tensor_s* dk, alibi_tensor_s* dv, alibi_tensor_s* dslopes) {
  ForwardCall forward = validate_forward(ctx, q, k, v, mask, params, out, lse);
  require(lse, "lse");
  check_like(*ctx, *require(dout, "dout"), "dout", q->view, "q's shape");
  if (dout->view.dtype != q->view.dtype)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "dout has dtype %s, expected q's dtype %s",
         dtype_name(dout->view.dtype), dtype_name(q->view.dtype));

  BackwardCall call;
  call.resolved = std::move(forward.resolved);  // the slopes' storage moves with it
  BackwardArgs& args = call.args;
  args.forward = forward.args;
  args.dout = dout->view;
  const alibi_dtype input = q->view.dtype;
  args.dq = gradient(*ctx, dq, "dq", q->view, "q's shape", input);
  args.dk = gradient(*ctx, dk, "dk", k->view, "k's shape", input);
  args.dv = gradient(*ctx, dv, "dv", k->view, "k's shape", input);
  args.dslopes = slope_gradient(*ctx, dslopes, q->view.shape[1], args.forward.slopes, mask->plan);
  const ForwardArgs& f = args.forward;
  check_no_overlap({{args.dq, "dq"}, {args.dk, "dk"}, {args.dv, "dv"}, {args.dslopes, "dslopes"}},
                   {{&f.q, "q"}, {&f.k, "k"}, {&f.v, "v"}, {&f.out, "out"}, {f.lse, "lse"},
                    {&args.dout, "dout"}, {f.attn_bias, "params->attn_bias"}});
  return call;
}

void attention_backward(alibi_context_s* ctx, alibi_tensor_s* q, alibi_tensor_s* k,
                        alibi_tensor_s* v, alibi_mask_s* mask,
                        const alibi_attention_params* params, alibi_tensor_s* out,
                        alibi_tensor_s* lse, alibi_tensor_s* dout, alibi_tensor_s* dq,
                        alibi_tensor_s* dk, alibi_tensor_s* dv, alibi_tensor_s* dslopes) {
  const BackwardCall call =
      validate_backward(ctx, q, k, v, mask, params, out, lse, dout, dq, dk, dv, dslopes);
  ctx->device->call(&BackendOps::attention_backward, &call.args);
}

}  // namespace alibi
