// What the cuBLAS paths (cublas_attention.cu, cublas_backward.cu) share: the gather of a
// tensor's tokens into per-head f32 rows, and a block-wide reduction. Kernels have no inline
// linkage: each translation unit gets its own copy (internal linkage).
#pragma once

#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

// (heads, tokens, head_dim) f32 copies of tokens [first, first + count) of a (T, H, D) tensor;
// output head h reads input head h / group.
__global__ void gather_heads_kernel(float* dst, DeviceTensor src, int64_t first, int count,
                                    int heads, int group, int head_dim) {
  const int64_t n = int64_t(heads) * count * head_dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % head_dim, t = i / head_dim % count, h = i / (int64_t(head_dim) * count);
    dst[i] = src.load(src.offset(first + t, h / group, d));
  }
}

template <class Op>
__device__ float block_reduce(float value, Op op, float* shared) {
  for (int offset = 16; offset > 0; offset /= 2)
    value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
  if (threadIdx.x % 32 == 0) shared[threadIdx.x / 32] = value;
  __syncthreads();
  float total = shared[0];
  for (int w = 1; w < int(blockDim.x) / 32; ++w) total = op(total, shared[w]);
  __syncthreads();
  return total;
}

}  // namespace

}  // namespace alibi::cuda
