// The AVX512-BF16 operations: bf16 products taken in pairs (vdpbf16ps: the two products of a
// pair exact in f32, added to an f32 sum) for bf16 q.k, in the forward's tiles
// (gemm_bf16_pairs) and in the decode (score_tokens_bf16_pairs, cpu/tile_ops_simd.h's decode
// loops over BF16PairDots). A translation unit of its own, so that only these functions carry
// the avx512bf16 target. Built on x86 only.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
// As in tile_ops_avx512.cpp (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/simd_avx512.h"

#include <cstring>

#define ALIBI_SIMD_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c,avx512bf16")))
#include "cpu/tile_ops_simd.h"

namespace alibi::cpu {

namespace {

// ---- gemm_bf16_pairs: the GEMM's register block with vdpbf16ps, a pair of A's columns a step ----

ALIBI_SIMD_TARGET inline __m512bh pair_of(const uint16_t* a) {
  uint32_t pair;
  std::memcpy(&pair, a, sizeof pair);
  return (__m512bh)_mm512_set1_epi32(int32_t(pair));
}

// C (M x W columns of 16) = scale * A B, the last column vector under `last` when kMasked.
template <int M, int W, bool kMasked>
ALIBI_SIMD_TARGET void dot_kernel(int64_t pairs, const uint16_t* a, int64_t lda, const uint32_t* b, int64_t ldb,
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
ALIBI_SIMD_TARGET void dot_row_panel(int64_t rows, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
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

ALIBI_SIMD_TARGET void gemm_bf16_pairs(int64_t m, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
                                       const uint32_t* b, int64_t ldb, float scale, float* c, int64_t ldc) {
  constexpr int64_t M = Avx512::kGemmRows;
  for (int64_t i = 0; i < m; i += M)
    dot_row_panel<M>(std::min(M, m - i), n, pairs, a + i * lda, lda, b, ldb, scale, c + i * ldc, ldc);
}

// ---- score_tokens_bf16_pairs: the decode's dot products over pairs of dims ----

// 32 dims a step: the query's 16 pairs against 32 bf16 key values.
struct BF16PairDots {
  using Query = uint32_t;
  using Element = uint16_t;
  static constexpr int64_t kDims = 32;
  static constexpr int64_t row_length(int64_t dim) { return (dim + 1) / 2; }
  ALIBI_SIMD_TARGET static inline __m512bh query(const uint32_t* q, int64_t d) {
    return (__m512bh)_mm512_loadu_si512(q + d / 2);
  }
  // The pairs holding dims [d, d + dims): an odd last dim's pair carries its zero.
  ALIBI_SIMD_TARGET static inline __m512bh query_first(const uint32_t* q, int64_t d, int64_t dims) {
    return (__m512bh)_mm512_maskz_loadu_epi32(__mmask16((1u << ((dims + 1) / 2)) - 1u), q + d / 2);
  }
  ALIBI_SIMD_TARGET static inline __m512bh key(const uint16_t* k) { return (__m512bh)_mm512_loadu_si512(k); }
  ALIBI_SIMD_TARGET static inline __m512bh key_first(const uint16_t* k, int64_t dims) {
    return (__m512bh)_mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << dims) - 1u), k);
  }
  ALIBI_SIMD_TARGET static inline __m512 madd(__m512bh q, __m512bh k, __m512 acc) { return _mm512_dpbf16_ps(acc, q, k); }
};

ALIBI_SIMD_TARGET void score_tokens_bf16_pairs(const uint32_t* q, const TokenRun& k, const TokenRun* ahead,
                                               const HeadLayout& layout, float* scores) {
  score_tokens_as<Avx512, BF16PairDots>(q, k, ahead, layout, scores);
}

}  // namespace

const Bf16PairOps* avx512_bf16_ops() {
  static const Bf16PairOps ops{gemm_bf16_pairs, score_tokens_bf16_pairs, 1, false};
  return cpu_runs_avx512() && __builtin_cpu_supports("avx512bf16") ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const Bf16PairOps* avx512_bf16_ops() { return nullptr; }

}  // namespace alibi::cpu

#endif
