// What the fused tensor-core kernels (flash_attention.cu, flash_backward.cu) share: the CTA of
// 4 warps, shared-memory tiles of 16-bit rows, ldmatrix, cp.async and mma.sync m16n8k16 of
// f16 and bf16, and the split of f32 values into two half-precision parts.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
// Shared-memory rows are padded by 16 bytes, so the 8 row addresses of an ldmatrix hit
// distinct banks.
constexpr int kPad = 8;
// P (in [0, 1]) enters the P V product scaled by 2^8, exactly, so that small probabilities and
// the low parts of the split stay above f16's subnormal range; the output divides it out.
constexpr float kProbabilityScale = 256.0f;

// The rows of q, k, v or out of one head: token t at data + t * token_stride.
struct Operand {
  uint16_t* data;
  int64_t token_stride, head_stride;
  __device__ uint16_t* at(int64_t token, int64_t head) const {
    return data + token * token_stride + head * head_stride;
  }
};

__device__ inline uint32_t shared_address(const void* pointer) {
  return uint32_t(__cvta_generic_to_shared(pointer));
}

__device__ inline void ldmatrix_x4(uint32_t (&r)[4], const uint16_t* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

__device__ inline void ldmatrix_x4_trans(uint32_t (&r)[4], const uint16_t* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row))
               : "memory");
}

// 16 bytes global -> shared; zero-filled when !valid (then `from` is not read).
__device__ inline void cp_async_16(uint16_t* to, const uint16_t* from, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(to)),
               "l"(from), "r"(valid ? 16 : 0)
               : "memory");
}

__device__ inline void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }

template <int Pending>
__device__ inline void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

template <class Pair>
__device__ inline uint32_t pair_bits(Pair pair) {
  uint32_t bits;
  memcpy(&bits, &pair, sizeof bits);
  return bits;
}

// The MMA and conversions of an element type. pack() rounds (lo, hi) to a register pair and
// returns the rounded values through `rounded`. F16 and BF16 are the same code but for their
// intrinsics and the PTX type, which inline asm takes only as a literal string.
struct F16 {
  __device__ static uint32_t pack(float lo, float hi, float2* rounded) {
    const __half2 pair = __floats2half2_rn(lo, hi);
    *rounded = __half22float2(pair);
    return pair_bits(pair);
  }
  __device__ static uint16_t store(float x) { return float_to_f16(x); }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

struct BF16 {
  __device__ static uint32_t pack(float lo, float hi, float2* rounded) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
    *rounded = __bfloat1622float2(pair);
    return pair_bits(pair);
  }
  __device__ static uint16_t store(float x) { return float_to_bf16(x); }
  __device__ static void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
        "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
};

// (a, b) = hi + lo with both parts in T, packed as A-operand registers: products with hi and
// lo summed in f32 keep about twice T's precision.
template <class T>
__device__ inline void split(float a, float b, uint32_t& hi, uint32_t& lo) {
  float2 rounded, unused;
  hi = T::pack(a, b, &rounded);
  lo = T::pack(a - rounded.x, b - rounded.y, &unused);
}

// kProbabilityScale * p = hi + lo with both parts in T, packed as A-operand registers.
template <class T>
__device__ inline void split_pair(float a, float b, uint32_t& hi, uint32_t& lo) {
  split<T>(a * kProbabilityScale, b * kProbabilityScale, hi, lo);
}

// Copies rows [0, valid) of one head (row r at src + r * row_stride, head_dim values) into a
// shared tile of Rows rows; the rest of the tile (rows >= valid, columns >= head_dim) is zero.
template <int Rows, class Shape>
__device__ inline void load_rows(uint16_t* tile, const uint16_t* src, int64_t row_stride, int valid,
                          int head_dim, bool vector) {
  if (vector) {
    constexpr int kChunks = Shape::kDim / 8;
    for (int c = threadIdx.x; c < Rows * kChunks; c += kThreads) {
      const int r = c / kChunks, col = (c % kChunks) * 8;
      const bool inside = r < valid && col < head_dim;
      cp_async_16(tile + r * Shape::kStride + col, inside ? src + r * row_stride + col : src,
                  inside);
    }
  } else {
    for (int e = threadIdx.x; e < Rows * Shape::kDim; e += kThreads) {
      const int r = e / Shape::kDim, col = e % Shape::kDim;
      tile[r * Shape::kStride + col] =
          r < valid && col < head_dim ? src[r * row_stride + col] : uint16_t(0);
    }
  }
}

// What a thread knows of one of its two rows within the current slice.
struct RowKeys {
  KeyInterval visible = {0, 0};  // slice-local keys
  int32_t position = 0;
};

// Fragment layout of mma.sync m16n8k16 (C and D, f32): lane l holds rows l/4 and l/4 + 8 of
// the warp's 16 and, of every 8-column block n, columns 8n + 2(l%4) and 8n + 2(l%4) + 1:
// element e of block n is row l/4 + 8(e/2), column 8n + 2(l%4) + e%2.
__device__ inline int fragment_column(int n, int e) {
  return n * 8 + int(threadIdx.x % 32) % 4 * 2 + e % 2;
}

// c = A B^T, A the warp's 16 rows of a_tile, B rows [0, Columns) of b_tile, over head_dim;
// blocks of 16 B rows at or past `count` are skipped (their c stays 0).
// A: ldmatrix of rows 16w + l%16, column half l/16; B (row-major = "col"): rows l%8 + 8(l/16),
// column half (l/8)%2; each 16-row B step gives the b0 b1 of two 8-column blocks.
template <class T, int Columns, int Stride>
__device__ inline void row_products(float (&c)[Columns / 8][4], const uint16_t* a_tile,
                                    const uint16_t* b_tile, int head_dim, int count) {
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
#pragma unroll
  for (int n = 0; n < Columns / 8; ++n) c[n][0] = c[n][1] = c[n][2] = c[n][3] = 0.0f;
  const int steps = (head_dim + 15) / 16;
  const uint16_t* a_row = a_tile + (warp * 16 + lane % 16) * Stride + (lane / 16) * 8;
  const uint16_t* b_row = b_tile + (lane % 8 + (lane / 16) * 8) * Stride + (lane / 8 % 2) * 8;
  for (int step = 0; step < steps; ++step) {
    uint32_t a[4];
    ldmatrix_x4(a, a_row + step * 16);
#pragma unroll
    for (int pair = 0; pair < Columns / 16; ++pair) {
      if (pair * 16 >= count) break;
      uint32_t b[4];
      ldmatrix_x4(b, b_row + pair * 16 * Stride + step * 16);
      T::mma(c[2 * pair], a, b[0], b[1]);
      T::mma(c[2 * pair + 1], a, b[2], b[3]);
    }
  }
}

inline Operand operand(const TensorView& view) {
  return {static_cast<uint16_t*>(view.data), view.strides[0], view.strides[1]};
}

inline bool rows_are_16_byte_aligned(const TensorView& view) {
  return reinterpret_cast<uintptr_t>(view.data) % 16 == 0 && view.strides[0] % 8 == 0 &&
         view.strides[1] % 8 == 0;
}

}  // namespace alibi::cuda
