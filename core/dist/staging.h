// Packed arrays in a context's device memory, and host copies of tensors. The collectives move
// device memory; the packing of token rows and the sums of partial gradients run on the host
// (on a CUDA context, through a staging copy each way).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "core/abi/objects.h"

namespace alibi::dist {

// Rows [begin, end) (dim 0) of t.
TensorView rows_of(const TensorView& t, int64_t begin, int64_t end);

// Bytes of one row (dim 0 index) of t.
size_t row_bytes(const TensorView& t);

// t's elements packed in row-major order.
std::vector<uint8_t> to_host(const Device& device, const TensorView& t);

// Writes packed host elements into t.
void from_host(const Device& device, const TensorView& t, const void* packed);

// Waits for the device's queued work (copies into a DeviceArray), which the engine's collectives
// may not be ordered after (another CUDA stream).
void synchronize(const Device& device);

// t's shape with `rows` rows (dim 0).
std::vector<int64_t> shape_with_rows(const TensorView& t, int64_t rows);

// A packed row-major array on a device, freed with the object.
class DeviceArray {
 public:
  DeviceArray(std::shared_ptr<Device> device, alibi_dtype dtype, const std::vector<int64_t>& shape);
  ~DeviceArray();
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;

  const TensorView& view() const { return view_; }

 private:
  std::shared_ptr<Device> device_;
  TensorView view_;
};

}  // namespace alibi::dist
