#include "core/dist/staging.h"

#include <utility>

namespace alibi::dist {

TensorView rows_of(const TensorView& t, int64_t begin, int64_t end) {
  TensorView rows = t;
  rows.shape[0] = end - begin;
  rows.data = static_cast<char*>(t.data) + begin * t.strides[0] * int64_t(dtype_size(t.dtype));
  return rows;
}

size_t row_bytes(const TensorView& t) {
  size_t bytes = dtype_size(t.dtype);
  for (int d = 1; d < t.ndim; ++d) bytes *= size_t(t.shape[d]);
  return bytes;
}

std::vector<uint8_t> to_host(const Device& device, const TensorView& t) {
  std::vector<uint8_t> packed(size_t(t.numel()) * dtype_size(t.dtype));
  if (!packed.empty())
    device.call(&BackendOps::copy_to_host, &t, static_cast<void*>(packed.data()));
  return packed;
}

void from_host(const Device& device, const TensorView& t, const void* packed) {
  if (t.numel() > 0) device.call(&BackendOps::copy_from_host, &t, packed);
}

void synchronize(const Device& device) { device.call(&BackendOps::synchronize); }

std::vector<int64_t> shape_with_rows(const TensorView& t, int64_t rows) {
  std::vector<int64_t> shape(t.shape, t.shape + t.ndim);
  shape[0] = rows;
  return shape;
}

DeviceArray::DeviceArray(std::shared_ptr<Device> device, alibi_dtype dtype,
                         const std::vector<int64_t>& shape)
    : device_(std::move(device)) {
  view_.dtype = dtype;
  view_.ndim = int(shape.size());
  int64_t stride = 1;
  for (int d = view_.ndim - 1; d >= 0; --d) {
    view_.shape[d] = shape[size_t(d)];
    view_.strides[d] = stride;
    stride *= shape[size_t(d)];
  }
  const size_t bytes = size_t(view_.numel()) * dtype_size(dtype);
  if (bytes > 0) device_->call(&BackendOps::allocate, bytes, &view_.data);
}

DeviceArray::~DeviceArray() {
  if (view_.data) device_->deallocate(view_.data);
}

}  // namespace alibi::dist
