// What the cuBLAS paths (cublas_attention.cu, cublas_backward.cu) share: the gather of a
// tensor's tokens into per-head f32 rows, per-head GEMMs, the scores of a piece's cells, and a
// block-wide reduction. Kernels have no inline linkage: each translation unit gets its own copy
// (internal linkage).
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

// One f32 GEMM per head over strided batches (cuBLAS, column-major; CUBLAS_COMPUTE_32F: no TF32).
struct BatchedSgemm {
  cublasHandle_t handle;
  int heads;

  void operator()(cublasOperation_t op_a, cublasOperation_t op_b, int m, int n, int k, float alpha,
                  const float* a, int lda, int64_t stride_a, const float* b, int ldb,
                  int64_t stride_b, float beta, float* c, int ldc, int64_t stride_c) const {
    CUBLAS_CHECK(cublasGemmStridedBatchedEx(handle, op_a, op_b, m, n, k, &alpha, a, CUDA_R_32F, lda,
                                            stride_a, b, CUDA_R_32F, ldb, stride_b, &beta, c,
                                            CUDA_R_32F, ldc, stride_c, heads, CUBLAS_COMPUTE_32F,
                                            CUBLAS_GEMM_DEFAULT));
  }
};

// What turns x = scale * q.k of a piece's cells (keys first_key on, slice-local) into scores:
// the slice, its ALiBi terms and the optional attn_bias.
struct PieceScores {
  Slice slice;
  int64_t first_key;
  float softcap;
  SlopeTable slopes;  // values in device memory
  const int32_t* q_positions;
  const int32_t* k_positions;
  DeviceTensor attn_bias;
  int64_t attn_bias_heads;  // 0: none

  // The score of a visible cell (key slice-local) from x.
  __device__ float score(int head, int64_t row, int64_t key, float x, int32_t q_position,
                         float slope) const {
    const int64_t k_index = slice.k_begin + key;
    const float bias =
        attn_bias_heads == 0
            ? 0.0f
            : attn_bias.load(attn_bias.offset(attn_bias_head(attn_bias_heads, head), row, k_index));
    return cell_score(x, softcap, slope, q_position, k_positions[k_index], bias);
  }
};

inline PieceScores piece_scores(const Slice& slice, int64_t first_key, float softcap,
                                const SlopeTable& slopes, const MaskView& device_mask,
                                const TensorView* attn_bias) {
  PieceScores s{};
  s.slice = slice;
  s.first_key = first_key;
  s.softcap = softcap;
  s.slopes = slopes;
  s.q_positions = device_mask.q_positions;
  s.k_positions = device_mask.k_positions;
  if (attn_bias) {
    s.attn_bias = device_tensor(*attn_bias);
    s.attn_bias_heads = attn_bias->shape[0];
  }
  return s;
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
