// AMX-BF16 (tdpbf16ps): bf16 q.k as tiles of 16 x 16 sums over 16 pairs of dims, the
// gemm_bf16_pairs of Intel CPUs that have it (Sapphire Rapids on), where the AVX512-BF16 kernel
// is slower than widening. Whole 32 x 32 blocks of C go through the tiles, pairs past the last
// whole tile added by vdpbf16ps; the rows and columns left over through the AVX512-BF16 kernel.
// Linux hands out the tile state on request (arch_prctl ARCH_REQ_XCOMP_PERM, for the whole
// process): asked at the first call, so only processes that make bf16 products carry it; where
// Linux refuses, every call takes the AVX512-BF16 kernel. Built on x86-64 Linux only.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#define ALIBI_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16")))

namespace alibi::cpu {

namespace {

constexpr int kTileRows = 16;              // rows of every tile; 64 bytes a row
constexpr int64_t kBlock = 2 * kTileRows;  // C is taken in 2 x 2 tiles

// The 64-byte operand of ldtilecfg, palette 1.
struct alignas(64) TileConfig {
  uint8_t palette = 1;
  uint8_t start_row = 0;
  uint8_t reserved[14] = {};
  uint16_t row_bytes[16] = {};
  uint8_t rows[16] = {};
};

// CPUID leaf 7's EDX bits 22 and 24 (gcc and clang name them differently).
bool cpu_has_amx_bf16() {
  constexpr unsigned kAmxBf16 = 1u << 22, kAmxTile = 1u << 24;
  unsigned eax, ebx, ecx, edx;
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return false;
  return (edx & kAmxBf16) && (edx & kAmxTile);
}

bool tile_state_granted() {
  constexpr long kRequestPermission = 0x1023;  // ARCH_REQ_XCOMP_PERM
  constexpr long kTileData = 18;               // XFEATURE_XTILEDATA
  static const bool granted = syscall(SYS_arch_prctl, kRequestPermission, kTileData) == 0;
  return granted;
}

// Tiles 0 to 3: a 32 x 32 block of C; 4, 5: 16 rows of A, 16 pairs each; 6, 7: 16 pair rows of
// B, 16 columns each.
ALIBI_AMX_TARGET void configure_tiles() {
  TileConfig config;
  for (int t = 0; t < 8; ++t) {
    config.rows[t] = kTileRows;
    config.row_bytes[t] = 64;
  }
  _tile_loadconfig(&config);
}

// Adds the products of pairs [first, pairs) to the 32 x 32 block at c, scales it.
ALIBI_AMX_TARGET void finish_block(int64_t first, int64_t pairs, const uint16_t* a, int64_t lda, const uint32_t* b,
                                   int64_t ldb, float scale, float* c, int64_t ldc) {
  const __m512 factor = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < kBlock; ++i)
    for (int64_t j = 0; j < kBlock; j += 16) {
      float* row = c + i * ldc + j;
      __m512 sum = _mm512_loadu_ps(row);
      for (int64_t p = first; p < pairs; ++p) {
        uint32_t pair;
        std::memcpy(&pair, a + i * lda + 2 * p, sizeof pair);
        sum = _mm512_dpbf16_ps(sum, (__m512bh)_mm512_set1_epi32(int32_t(pair)),
                               (__m512bh)_mm512_loadu_si512(b + p * ldb + j));
      }
      _mm512_storeu_ps(row, _mm512_mul_ps(factor, sum));
    }
}

// The 32 x 32 block of C at c = scale * A B: whole tiles of 16 pairs, then the pairs left.
ALIBI_AMX_TARGET void block_product(int64_t pairs, const uint16_t* a, int64_t lda, const uint32_t* b, int64_t ldb,
                                    float scale, float* c, int64_t ldc) {
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  const int64_t a_bytes = lda * int64_t(sizeof(uint16_t)), b_bytes = ldb * int64_t(sizeof(uint32_t));
  const int64_t tiled_pairs = pairs / kTileRows * kTileRows;
  for (int64_t p = 0; p < tiled_pairs; p += kTileRows) {
    _tile_loadd(4, a + 2 * p, a_bytes);
    _tile_loadd(5, a + kTileRows * lda + 2 * p, a_bytes);
    _tile_loadd(6, b + p * ldb, b_bytes);
    _tile_loadd(7, b + p * ldb + kTileRows, b_bytes);
    _tile_dpbf16ps(0, 4, 6);
    _tile_dpbf16ps(1, 4, 7);
    _tile_dpbf16ps(2, 5, 6);
    _tile_dpbf16ps(3, 5, 7);
  }
  const int64_t c_bytes = ldc * int64_t(sizeof(float));
  _tile_stored(0, c, c_bytes);
  _tile_stored(1, c + kTileRows, c_bytes);
  _tile_stored(2, c + kTileRows * ldc, c_bytes);
  _tile_stored(3, c + kTileRows * ldc + kTileRows, c_bytes);
  finish_block(tiled_pairs, pairs, a, lda, b, ldb, scale, c, ldc);
}

// Column blocks outermost: a block of B (16 KiB at 128 pairs) is read once, A's rows (at most
// 64, kKeyBlock) stay in L1.
ALIBI_AMX_TARGET void tile_products(int64_t m, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
                                    const uint32_t* b, int64_t ldb, float scale, float* c, int64_t ldc) {
  configure_tiles();
  for (int64_t j = 0; j < n; j += kBlock)
    for (int64_t i = 0; i < m; i += kBlock)
      block_product(pairs, a + i * lda, lda, b + j, ldb, scale, c + i * ldc + j, ldc);
  _tile_release();
}

void gemm_bf16_pairs_amx(int64_t m, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda, const uint32_t* b,
                         int64_t ldb, float scale, float* c, int64_t ldc) {
  static const auto rest = avx512_bf16_ops()->gemm;  // once: avx512_bf16_ops() asks cpuid
  const bool tiles = pairs >= kTileRows && m >= kBlock && n >= kBlock && tile_state_granted();
  const int64_t tiled_rows = tiles ? m / kBlock * kBlock : 0, tiled_columns = n / kBlock * kBlock;
  if (tiles) {
    tile_products(tiled_rows, tiled_columns, pairs, a, lda, b, ldb, scale, c, ldc);
    if (tiled_columns < n)
      rest(tiled_rows, n - tiled_columns, pairs, a, lda, b + tiled_columns, ldb, scale, c + tiled_columns, ldc);
  }
  if (tiled_rows < m)
    rest(m - tiled_rows, n, pairs, a + tiled_rows * lda, lda, b, ldb, scale, c + tiled_rows * ldc, ldc);
}

}  // namespace

const Bf16PairOps* amx_bf16_ops() {
  static const Bf16PairOps ops{gemm_bf16_pairs_amx, nullptr};
  return avx512_bf16_ops() && cpu_has_amx_bf16() ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const Bf16PairOps* amx_bf16_ops() { return nullptr; }

}  // namespace alibi::cpu

#endif
