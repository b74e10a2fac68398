#include "core/abi/ops.h"

namespace alibi {

const char* dtype_name(alibi_dtype dtype) {
  switch (dtype) {
    case ALIBI_DTYPE_F32: return "f32";
    case ALIBI_DTYPE_F16: return "f16";
    case ALIBI_DTYPE_BF16: return "bf16";
    case ALIBI_DTYPE_I32: return "i32";
    case ALIBI_DTYPE_I64: return "i64";
  }
  return "unknown";
}

static const char* device_name(alibi_device kind) {
  return kind == ALIBI_DEVICE_CUDA ? "CUDA" : "CPU";
}

void require_same_device(const alibi_context_s& ctx, alibi_device kind, int index,
                         const char* name) {
  if (kind != ctx.kind || index != ctx.device_index)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s lives on %s:%d but the context is on %s:%d", name,
         device_name(kind), index, device_name(ctx.kind), ctx.device_index);
}

void require_ndim(const TensorView& t, int ndim, const char* name, const char* layout) {
  if (t.ndim != ndim)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "%s has ndim = %d, expected %d %s", name, t.ndim, ndim,
         layout);
}

void require_dim(const TensorView& t, int dim, int64_t expected, const char* name,
                 const char* expected_what) {
  if (t.shape[dim] != expected)
    fail(ALIBI_STATUS_SHAPE_MISMATCH, "%s.shape[%d] = %lld, expected %lld (%s)", name, dim,
         (long long)t.shape[dim], (long long)expected, expected_what);
}

void require_float_dtype(const TensorView& t, const char* name) {
  if (t.dtype != ALIBI_DTYPE_F32 && t.dtype != ALIBI_DTYPE_F16 && t.dtype != ALIBI_DTYPE_BF16)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected f32, f16 or bf16", name,
         dtype_name(t.dtype));
}

void require_contiguous_last_dim(const TensorView& t, const char* name) {
  const int last = t.ndim - 1;
  if (t.strides[last] != 1 && t.shape[last] > 1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "%s.strides[%d] = %lld, the last dim must be contiguous",
         name, last, (long long)t.strides[last]);
}

void require_head_limits(const TensorView& q) {
  // Supported ranges documented in alibi.h (builders.cpp checks num_heads against the same):
  // head counts and head_dim index int arrays and scratch buffers.
  constexpr int64_t kMaxHeads = 65536;
  constexpr int64_t kMaxHeadDim = 65536;
  if (q.shape[1] < 1 || q.shape[2] < 1)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "q has %lld heads of dim %lld, both must be >= 1",
         (long long)q.shape[1], (long long)q.shape[2]);
  if (q.shape[1] > kMaxHeads || q.shape[2] > kMaxHeadDim)
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "q has %lld heads of dim %lld, beyond the supported %lld heads and head_dim %lld",
         (long long)q.shape[1], (long long)q.shape[2], (long long)kMaxHeads,
         (long long)kMaxHeadDim);
}

void require_lse(const alibi_context_s& ctx, const alibi_tensor_s& lse, const char* name,
                 const LseShape& shape) {
  require_same_device(ctx, lse.kind, lse.device_index, name);
  require_ndim(lse.view, 2, name, shape.layout);
  if (lse.view.dtype != ALIBI_DTYPE_F32)
    fail(ALIBI_STATUS_DTYPE_MISMATCH, "%s has dtype %s, expected f32", name, dtype_name(lse.view.dtype));
  require_dim(lse.view, 0, shape.heads, name, shape.heads_are);
  require_dim(lse.view, 1, shape.tokens, name, shape.tokens_are);
}

}  // namespace alibi
