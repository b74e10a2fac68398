// The tile operations of cpu/tile_ops_simd.h with AVX-512 F, BW, DQ and VL (16 lanes). Only
// functions carrying that target use them, so the rest of the library stays runnable on any
// x86-64 CPU. Built on x86 only: elsewhere (aarch64) the table is absent and avx512_tile_ops()
// says so.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
// g++ 12 flags the self-initialised _mm512_undefined_* inside its own intrinsics (GCC bug 105593);
// the pragma must precede immintrin.h, where the warnings are located.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/simd_avx512.h"

#define ALIBI_SIMD_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#include "cpu/tile_ops_simd.h"

#include <cstring>

#define ALIBI_BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512bf16")))

namespace alibi::cpu {

namespace {

// ---- gemm_bf16_pairs: the GEMM's register block with vdpbf16ps, a pair of A's columns a step ----

ALIBI_BF16_TARGET inline __m512bh pair_of(const uint16_t* a) {
  uint32_t pair;
  std::memcpy(&pair, a, sizeof pair);
  return (__m512bh)_mm512_set1_epi32(int32_t(pair));
}

// C (M x W columns of 16) = scale * A B, the last column vector under `last` when kMasked.
template <int M, int W, bool kMasked>
ALIBI_BF16_TARGET void dot_kernel(int64_t pairs, const uint16_t* a, int64_t lda, const uint32_t* b, int64_t ldb,
                                  float scale, float* c, int64_t ldc, __mmask16 last) {
  __m512 acc[M][W];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) acc[i][w] = _mm512_setzero_ps();
  for (int64_t p = 0; p < pairs; ++p) {
    __m512bh row[W];
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) {
      const uint32_t* bp = b + p * ldb + w * 16;
      row[w] = (__m512bh)(kMasked && w == W - 1 ? _mm512_maskz_loadu_epi32(last, bp) : _mm512_loadu_si512(bp));
    }
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const __m512bh av = pair_of(a + i * lda + 2 * p);
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) acc[i][w] = _mm512_dpbf16_ps(acc[i][w], av, row[w]);
    }
  }
  const __m512 factor = _mm512_set1_ps(scale);
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) {
      float* cp = c + i * ldc + w * 16;
      const __m512 x = _mm512_mul_ps(factor, acc[i][w]);
      if (kMasked && w == W - 1) _mm512_mask_storeu_ps(cp, last, x);
      else _mm512_storeu_ps(cp, x);
    }
}

template <int M>
ALIBI_BF16_TARGET void dot_row_panel(int64_t rows, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
                                     const uint32_t* b, int64_t ldb, float scale, float* c, int64_t ldc) {
  if constexpr (M > 1) {
    if (rows < M) return dot_row_panel<M - 1>(rows, n, pairs, a, lda, b, ldb, scale, c, ldc);
  }
  constexpr int64_t kWide = Avx512::kGemmVectors * 16;
  int64_t j = 0;
  for (; j + kWide <= n; j += kWide)
    dot_kernel<M, Avx512::kGemmVectors, false>(pairs, a, lda, b + j, ldb, scale, c + j, ldc, 0);
  for (; j < n; j += 16) {
    const __mmask16 last = __mmask16((1u << std::min<int64_t>(16, n - j)) - 1u);
    dot_kernel<M, 1, true>(pairs, a, lda, b + j, ldb, scale, c + j, ldc, last);
  }
}

ALIBI_BF16_TARGET void gemm_bf16_pairs(int64_t m, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
                                       const uint32_t* b, int64_t ldb, float scale, float* c, int64_t ldc) {
  constexpr int64_t M = Avx512::kGemmRows;
  for (int64_t i = 0; i < m; i += M)
    dot_row_panel<M>(std::min(M, m - i), n, pairs, a + i * lda, lda, b, ldb, scale, c + i * ldc, ldc);
}

// vdpbf16ps runs at about FMA's instruction rate on AMD Zen 4 and 5 (twice the multiply-adds);
// on Sapphire Rapids a tile with it ran 0.67x the widened f32 GEMM (cpu/README.md).
bool bf16_dots_outrun_widening() { return __builtin_cpu_is("amd"); }

// The table also uses AVX2, FMA and F16C instructions (the 8-lane sums, the widening).
bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && avx2_tile_ops() != nullptr;
}

}  // namespace

decltype(TileOps::gemm_bf16_pairs) avx512_bf16_gemm() {
  return has_avx512() && __builtin_cpu_supports("avx512bf16") ? gemm_bf16_pairs : nullptr;
}

const TileOps* avx512_tile_ops() {
  static const TileOps ops =
      simd_tile_ops<Avx512>("avx512", bf16_dots_outrun_widening() ? avx512_bf16_gemm() : nullptr);
  return has_avx512() ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const TileOps* avx512_tile_ops() { return nullptr; }

decltype(TileOps::gemm_bf16_pairs) avx512_bf16_gemm() { return nullptr; }

}  // namespace alibi::cpu

#endif
