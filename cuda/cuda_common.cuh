// What the CUDA backend's translation units share: the device copy of a mask, stream-ordered
// scratch memory, device views of tensors and slopes, and the launchers of each file.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/kernel/backend.h"
#include "core/kernel/half.h"
#include "cuda/cuda_check.h"
#include "cuda/row_tiles.h"

namespace alibi::cuda {

// Query rows per tile of the mask's device tiling (the fused kernel's tile height).
constexpr int32_t kMaskTileRows = 64;

// Device arrays of a mask; see CudaMask.
struct MaskArrays {
  const Slice* slices = nullptr;
  const int32_t* q_positions = nullptr;
  const int32_t* k_positions = nullptr;
  const RowTile* tiles = nullptr;  // tile_rows(plan, kMaskTileRows)
  const int32_t* slice_list = nullptr;
  int32_t num_tiles = 0;
};

// A mask uploaded once, at creation (and again by alibi_mask_set_positions), and used by any
// context of its device.
class CudaMask final : public DeviceMask {
 public:
  CudaMask(const MaskPlan& plan, cudaStream_t stream);
  ~CudaMask() override;
  CudaMask(const CudaMask&) = delete;
  CudaMask& operator=(const CudaMask&) = delete;
  const MaskArrays& arrays() const { return arrays_; }

 private:
  struct Free {
    void operator()(void* memory) const { cudaFree(memory); }
  };
  int device_ = 0;
  std::unique_ptr<void, Free> memory_;
  MaskArrays arrays_;
};

inline const MaskArrays& mask_arrays(const DeviceMask* mask) {
  return static_cast<const CudaMask*>(mask)->arrays();
}

// Device memory for the work of one call, allocated from the context's pool and freed in
// stream order.
class Scratch {
 public:
  Scratch(size_t bytes, cudaStream_t stream, cudaMemPool_t pool) : stream_(stream) {
    if (bytes > 0) CUDA_CHECK(cudaMallocFromPoolAsync(&data_, bytes, pool, stream));
  }
  ~Scratch() {
    if (data_) cudaFreeAsync(data_, stream_);
  }
  Scratch(Scratch&& other) noexcept : data_(other.data_), stream_(other.stream_) {
    other.data_ = nullptr;
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  Scratch& operator=(Scratch&&) = delete;

  template <class T>
  T* at(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(data_) + byte_offset);
  }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// Slopes on the device, indexed as SlopeTable.
struct DeviceSlopes {
  const float* values = nullptr;
  int per_sequence = 0;
  int num_heads = 0;
  __device__ float at(int sequence, int head) const {
    return per_sequence ? values[int64_t(sequence) * num_heads + head] : values[head];
  }
};

// A float tensor of up to 3 dims as kernels see it.
struct DeviceTensor {
  void* data = nullptr;
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  int64_t stride[3] = {};

  __device__ int64_t offset(int64_t i0, int64_t i1, int64_t i2) const {
    return i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
  }
  __device__ float load(int64_t offset) const {
    switch (dtype) {
      case ALIBI_DTYPE_F16: return f16_to_float(static_cast<const uint16_t*>(data)[offset]);
      case ALIBI_DTYPE_BF16: return bf16_to_float(static_cast<const uint16_t*>(data)[offset]);
      default: return static_cast<const float*>(data)[offset];
    }
  }
  __device__ void store(int64_t offset, float value) const {
    switch (dtype) {
      case ALIBI_DTYPE_F16: static_cast<uint16_t*>(data)[offset] = float_to_f16(value); break;
      case ALIBI_DTYPE_BF16: static_cast<uint16_t*>(data)[offset] = float_to_bf16(value); break;
      default: static_cast<float*>(data)[offset] = value; break;
    }
  }
};

inline DeviceTensor device_tensor(const TensorView& view) {
  DeviceTensor t;
  t.data = view.data;
  t.dtype = view.dtype;
  for (int d = 0; d < view.ndim && d < 3; ++d) t.stride[d] = view.strides[d];
  return t;
}

// Blocks of `threads` for a grid-stride loop over n items.
inline unsigned grid_blocks(int64_t n, int threads) {
  const int64_t blocks = (n + threads - 1) / threads;
  return unsigned(blocks < 1 ? 1 : blocks > 65535 ? 65535 : blocks);
}

// flash_attention.cu: the fused kernel, for f16/bf16 with head_dim <= kFusedMaxHeadDim and no
// attn_bias. Returns "" when it applies, else why not.
constexpr int kFusedMaxHeadDim = 256;
std::string fused_attention_unsupported(const ForwardArgs& args);
void fused_attention(const ForwardArgs& args, const DeviceSlopes& slopes, cudaStream_t stream);

// cublas_attention.cu: every case, in bounded chunks of queries and keys.
void cublas_attention(const ForwardArgs& args, const DeviceSlopes& slopes, cudaStream_t stream,
                      cudaMemPool_t pool, cublasHandle_t cublas);

// builders.cu
void build_bias(const BiasArgs& args, const DeviceSlopes& slopes, cudaStream_t stream);
void build_dynamic_batching_mask(const DynamicBatchingArgs& args, const int64_t* seqstarts,
                                 const int64_t* kvstarts, const DeviceSlopes& slopes,
                                 cudaStream_t stream);
void build_bloom_bias(const BloomArgs& args, const DeviceSlopes& slopes, cudaStream_t stream);

}  // namespace alibi::cuda
