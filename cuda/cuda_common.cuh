// What the CUDA backend's translation units share: the device copy of a mask, stream-ordered
// memory, device views of tensors, launch helpers, and the launchers of each file.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/kernel/backend.h"
#include "core/kernel/half.h"
#include "cuda/cuda_check.h"

namespace alibi::cuda {

// The mask plan's tile height for CUDA masks (the fused kernel's tile): tiles are also cut at
// slice edges, so every row of a tile sees the same slices.
constexpr int32_t kTileRows = 64;
constexpr PlanShape kPlanShape{kTileRows, true, 0, 0};

// The backward's key blocks: block b holds keys [b * kBackwardKeyBlock, (b + 1) *
// kBackwardKeyBlock) of [0, total_k). The slices (in mask order) with query rows and keys in
// block b are slices[first[b], first[b + 1]); device arrays.
constexpr int32_t kBackwardKeyBlock = 64;
struct KeyBlockSlices {
  const int64_t* first;  // num_blocks + 1 entries
  const int32_t* slices;
  int64_t num_blocks;
};

// A mask in device memory, made once when the mask is created (and again by
// alibi_mask_set_positions) and used by any context of its device: its slices, positions,
// tiles and spans, and the backward's key blocks. view() is a MaskView whose arrays are device
// pointers (the other arrays are not uploaded: null).
class CudaMask {
 public:
  CudaMask(const MaskView& mask, cudaStream_t stream);
  ~CudaMask();
  CudaMask(const CudaMask&) = delete;
  CudaMask& operator=(const CudaMask&) = delete;
  const MaskView& view() const { return view_; }
  const KeyBlockSlices& key_blocks() const { return key_blocks_; }

 private:
  struct Free {
    void operator()(void* memory) const { clear_error(cudaFree(memory)); }
  };
  int device_ = 0;
  std::unique_ptr<void, Free> memory_;
  MaskView view_{};
  KeyBlockSlices key_blocks_{};
};

inline const CudaMask& device_mask(const void* device_mask) {
  return *static_cast<const CudaMask*>(device_mask);
}

inline const MaskView& device_mask_view(const void* device_mask) {
  return static_cast<const CudaMask*>(device_mask)->view();
}

// Device memory for the work of one call, allocated from the context's pool and freed in
// stream order.
class StreamMemory {
 public:
  StreamMemory(size_t bytes, cudaStream_t stream, cudaMemPool_t pool) : stream_(stream) {
    if (bytes > 0) CUDA_CHECK(cudaMallocFromPoolAsync(&data_, bytes, pool, stream));
  }
  ~StreamMemory() {
    if (data_) clear_error(cudaFreeAsync(data_, stream_));
  }
  StreamMemory(StreamMemory&& other) noexcept : data_(other.data_), stream_(other.stream_) {
    other.data_ = nullptr;
  }
  StreamMemory(const StreamMemory&) = delete;
  StreamMemory& operator=(const StreamMemory&) = delete;
  StreamMemory& operator=(StreamMemory&&) = delete;

  template <class T>
  T* at(size_t byte_offset = 0) const {
    return reinterpret_cast<T*>(static_cast<char*>(data_) + byte_offset);
  }

 private:
  void* data_ = nullptr;
  cudaStream_t stream_;
};

// A float tensor of up to 3 dims as kernels see it.
struct DeviceTensor {
  void* data = nullptr;
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  int64_t stride[3] = {};

  __device__ int64_t offset(int64_t i0, int64_t i1, int64_t i2) const {
    return i0 * stride[0] + i1 * stride[1] + i2 * stride[2];
  }
  __device__ float load(int64_t offset) const { return load_element(dtype, data, offset); }
  __device__ void store(int64_t offset, float value) const {
    store_element(dtype, data, offset, value);
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

// Grids put heads on their y axis, which holds at most 65535 blocks: launch(first_head, count)
// is called for each run of at most that many heads, and a kernel's head is
// first_head + blockIdx.y.
constexpr int kMaxGridHeads = 65535;

template <class Launch>
void for_head_runs(int64_t heads, Launch&& launch) {
  for (int64_t first = 0; first < heads; first += kMaxGridHeads)
    launch(int(first), unsigned(heads - first < kMaxGridHeads ? heads - first : kMaxGridHeads));
}

// flash_attention.cu: the fused kernel, for f16/bf16 with head_dim <= kFusedMaxHeadDim and no
// attn_bias. Returns "" when it applies, else why not.
constexpr int kFusedMaxHeadDim = 256;
std::string fused_attention_unsupported(const ForwardArgs& args);
void fused_attention(const ForwardArgs& args, const SlopeTable& slopes, cudaStream_t stream);

// cublas_attention.cu: every case, in bounded chunks of keys.
void cublas_attention(const ForwardArgs& args, const SlopeTable& slopes, cudaStream_t stream,
                      cudaMemPool_t pool, cublasHandle_t cublas);

// Backward (alibi_attention_backward). The context computes row_dot first, then runs one path,
// then write_slope_gradient. A path writes every element of each wanted gradient (dq, dk, dv:
// zeros where no cell contributes) in its dtype and strides, and, when span_slopes is given,
// every slot of it; it reads only q, k, v, dout, lse, attn_bias and the mask. dQ = scale *
// sum dX k and dK = scale * sum dX q, where dX is the gradient of the raw score x = scale q.k
// (attention_math.h). Results never depend on timing: no atomics, fixed summation orders.
struct BackwardWork {
  const float* row_dot;  // [head * total_q + row]: Di = dout . out of the row, f32
  double* span_slopes;   // [head * num_spans + span]: the span's part of dslopes; null: not wanted
  KeyBlockSlices key_blocks;
};

// backward_common.cu
void row_dots(const BackwardArgs& args, float* row_dot, cudaStream_t stream);
// gradient[t, h, d] = scale * packed[(t * H + h) * D + d] for its (T, H, D) shape, rounded once
// to its dtype, in its strides.
void store_gradient(const float* packed, const TensorView& gradient, float scale,
                    cudaStream_t stream);
// dslopes[group, head] = sum of span_slopes over the head's spans of that group, in span order
// (group: the span's sequence with per-sequence slopes, else 0).
void write_slope_gradient(const BackwardArgs& args, const double* span_slopes, cudaStream_t stream);

// flash_backward.cu: f16/bf16, head_dim <= kFusedMaxHeadDim, no attn_bias. "" when it applies,
// else why not.
std::string fused_backward_unsupported(const BackwardArgs& args);
void fused_backward(const BackwardArgs& args, const SlopeTable& slopes, const BackwardWork& work,
                    cudaStream_t stream);

// cublas_backward.cu: every case.
void cublas_backward(const BackwardArgs& args, const SlopeTable& slopes, const BackwardWork& work,
                     cudaStream_t stream, cudaMemPool_t pool, cublasHandle_t cublas);

// paged_attention.cu: alibi_attention_forward_paged. PagedDeviceArrays are the device copies of
// what the kernels read besides the tensors: the host block table's first
// paged_table_entries(args) entries, key_begin, the mask's slices, tiles, spans and query
// positions, and the slopes (the gather reads the first two only).
constexpr int kPagedDecodeMaxHeadDim = 256;
struct PagedDeviceArrays {
  const int32_t* block_table = nullptr;
  const int32_t* key_begin = nullptr;
  const Slice* slices = nullptr;
  const RowTile* tiles = nullptr;
  const SliceRows* spans = nullptr;
  const int32_t* q_positions = nullptr;
  SlopeTable slopes;
};
int64_t paged_table_entries(const PagedForwardArgs& args);
// Whether the split-KV decode kernel takes the call: at most a few queries per sequence (16
// rows per slice), head_dim <= kPagedDecodeMaxHeadDim.
bool paged_decode_applies(const PagedForwardArgs& args);
void paged_decode(const PagedForwardArgs& args, const PagedDeviceArrays& device,
                  cudaStream_t stream, cudaMemPool_t pool);
// The keys and values of every sequence, packed in key_begin order into contiguous
// (total_k, Hkv, D) buffers k and v of the caches' dtype.
void gather_paged_keys(const PagedForwardArgs& args, const PagedDeviceArrays& device, void* k,
                       void* v, cudaStream_t stream);

// merge.cu
void attention_merge(const MergeArgs& args, cudaStream_t stream);

// builders.cu
void build_bias(const BiasArgs& args, const SlopeTable& slopes, cudaStream_t stream);
void build_dynamic_batching_mask(const DynamicBatchingArgs& args, const int64_t* seqstarts,
                                 const int64_t* kvstarts, const SlopeTable& slopes,
                                 cudaStream_t stream);
void build_bloom_bias(const BloomArgs& args, const SlopeTable& slopes, cudaStream_t stream);

}  // namespace alibi::cuda
