#include <limits>

#include "core/abi/ops.h"

namespace alibi {

namespace {

void check_dtype(alibi_dtype dtype) {
  if (dtype_size(dtype) == 0)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "dtype = %d is not an alibi_dtype", int(dtype));
}

// Shape checks shared by create and wrap; returns the element count. The byte count of the
// sizes taken as at least 1 must fit in int64, so that no element count, contiguous stride or
// byte offset computed from the shape overflows, even for a tensor with a zero size.
int64_t check_shape(int ndim, const int64_t* shape, alibi_dtype dtype) {
  if (ndim < 0 || ndim > ALIBI_MAX_DIMS)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "ndim = %d is outside [0, %d]", ndim, ALIBI_MAX_DIMS);
  if (ndim > 0) require(shape, "shape");
  int64_t numel = 1, bytes = int64_t(dtype_size(dtype));
  for (int d = 0; d < ndim; ++d) {
    if (shape[d] < 0)
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "shape[%d] = %lld is negative", d,
           (long long)shape[d]);
    if (__builtin_mul_overflow(bytes, shape[d] > 0 ? shape[d] : 1, &bytes))
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "shape[%d] = %lld makes the byte count overflow 64 bits", d, (long long)shape[d]);
    numel *= shape[d];  // <= bytes: cannot overflow
  }
  return numel;
}

// The byte offset of the last element (plus one element) must fit in int64.
void check_strides(int ndim, const int64_t* shape, const int64_t* strides, alibi_dtype dtype) {
  int64_t last_offset = 0;
  for (int d = 0; d < ndim; ++d) {
    if (strides[d] < 0)
      fail(ALIBI_STATUS_INVALID_ARGUMENT, "strides[%d] = %lld is negative", d,
           (long long)strides[d]);
    int64_t reach, end, end_bytes;
    if (shape[d] > 0 && (__builtin_mul_overflow(shape[d] - 1, strides[d], &reach) ||
                         __builtin_add_overflow(last_offset, reach, &last_offset) ||
                         __builtin_add_overflow(last_offset, 1, &end) ||
                         __builtin_mul_overflow(end, int64_t(dtype_size(dtype)), &end_bytes)))
      fail(ALIBI_STATUS_INVALID_ARGUMENT,
           "strides[%d] = %lld makes the byte offsets overflow 64 bits", d,
           (long long)strides[d]);
  }
}

TensorView make_view(alibi_dtype dtype, int ndim, const int64_t* shape, const int64_t* strides,
                     void* data) {
  TensorView view;
  view.dtype = dtype;
  view.ndim = ndim;
  view.data = data;
  int64_t stride = 1;
  for (int d = ndim - 1; d >= 0; --d) {
    view.shape[d] = shape[d];
    view.strides[d] = strides ? strides[d] : stride;
    stride *= shape[d];
  }
  return view;
}

alibi_tensor_s* new_tensor(const alibi_context_s& ctx, const TensorView& view, bool owned) {
  return new alibi_tensor_s{ctx.kind, ctx.device_index, ctx.device, view, owned};
}

// The host side of a copy is contiguous: exactly numel * element size bytes.
void check_host_bytes(const alibi_tensor_s& t, size_t bytes) {
  size_t expected = size_t(t.view.numel()) * dtype_size(t.view.dtype);
  if (bytes != expected)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "bytes = %zu, but the tensor holds %zu bytes", bytes,
         expected);
}

}  // namespace

alibi_tensor_s* tensor_create(alibi_context_s* ctx, alibi_dtype dtype, int ndim,
                              const int64_t* shape) {
  require(ctx, "ctx");
  check_dtype(dtype);
  int64_t numel = check_shape(ndim, shape, dtype);
  TensorView view = make_view(dtype, ndim, shape, nullptr, nullptr);
  size_t bytes = size_t(numel) * dtype_size(dtype);
  if (bytes > 0) ctx->device->call(&BackendOps::allocate, bytes, &view.data);
  return new_tensor(*ctx, view, true);
}

alibi_tensor_s* tensor_wrap(alibi_context_s* ctx, alibi_dtype dtype, int ndim,
                            const int64_t* shape, const int64_t* strides, void* data) {
  require(ctx, "ctx");
  check_dtype(dtype);
  int64_t numel = check_shape(ndim, shape, dtype);
  if (strides) check_strides(ndim, shape, strides, dtype);
  if (numel > 0) require(data, "data");
  return new_tensor(*ctx, make_view(dtype, ndim, shape, strides, data), false);
}

void tensor_copy_from_host(alibi_tensor_s* t, const void* src, size_t bytes) {
  require(t, "t");
  check_host_bytes(*t, bytes);
  if (bytes == 0) return;
  t->device->call(&BackendOps::copy_from_host, &t->view, require(src, "src"));
}

void tensor_copy_to_host(alibi_tensor_s* t, void* dst, size_t bytes) {
  require(t, "t");
  check_host_bytes(*t, bytes);
  if (bytes == 0) return;
  t->device->call(&BackendOps::copy_to_host, &t->view, require(dst, "dst"));
}

void tensor_get_dims(const alibi_tensor_s* t, const int64_t* dims, int capacity, int64_t* out) {
  if (capacity < t->view.ndim)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "capacity = %d is less than ndim = %d", capacity,
         t->view.ndim);
  if (t->view.ndim > 0) require(out, "out");
  for (int d = 0; d < t->view.ndim; ++d) out[d] = dims[d];
}

}  // namespace alibi
