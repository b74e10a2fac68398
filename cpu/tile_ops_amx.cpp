// AMX-BF16 (tdpbf16ps): bf16 q.k as tiles of 16 x 16 sums over 16 pairs of dims, the
// gemm_bf16_pairs of Intel CPUs that have it (Sapphire Rapids on), where the AVX512-BF16 kernel
// is slower than widening. Whole 32 x 32 blocks of C go through the tiles, pairs past the last
// whole tile added by vdpbf16ps; the rows and columns left over through the AVX512-BF16 kernel.
// The decode's q.k (score_tokens_bf16_pairs) takes a key head's tokens as A, straight from the
// cache, and its query heads as B (the queries by key head: TileOps::bf16_queries_by_key_head),
// for GQA groups of 8 query heads or more.
// Linux hands out the tile state on request (arch_prctl ARCH_REQ_XCOMP_PERM, for the whole
// process): asked at the first call, so only processes that make bf16 products carry it; where
// Linux refuses, every call takes the AVX512-BF16 kernel. Built on x86-64 Linux only.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) && defined(__linux__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#define ALIBI_AMX_TARGET __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bf16")))
#define ALIBI_SIMD_TARGET ALIBI_AMX_TARGET
#include "cpu/host_tensor.h"
#include "cpu/tile_ops_simd.h"  // RunPrefetch

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

// ---- score_tokens_bf16_pairs: a key head's query heads against up to 16 of its tokens ----

constexpr int64_t kPairsPerTile = 16;  // 64-byte rows of A (32 bf16 dims), 16 rows of B
constexpr int64_t kHeadsPerTile = 16;  // columns of B and C

// The decode's tiles (the intrinsics take their numbers as literals): 0 C (tokens x query
// heads), 1 A (tokens x 16 pairs of dims), 2 B (16 pairs x query heads), 3 and 4 A and B of the
// pairs left past the last 16.
struct DecodeShape {
  int64_t tokens;      // rows of A and C (at most 16)
  int64_t heads;       // query heads of a chunk (at most 16)
  int64_t pair_tiles;  // whole 16-pair products
  int64_t rest_pairs;  // pairs after them (an odd dim's last, single dim not among them)
};

ALIBI_AMX_TARGET void configure_decode_tiles(const DecodeShape& shape) {
  TileConfig config;
  const auto set = [&](int tile, int64_t rows, int64_t row_bytes) {
    if (rows == 0 || row_bytes == 0) return;  // unused: left unconfigured
    config.rows[tile] = uint8_t(rows);
    config.row_bytes[tile] = uint16_t(row_bytes);
  };
  set(0, shape.tokens, 4 * shape.heads);
  set(1, shape.tokens, 64);
  set(2, kPairsPerTile, 4 * shape.heads);
  set(3, shape.tokens, 4 * shape.rest_pairs);
  set(4, shape.rest_pairs, 4 * shape.heads);
  asm volatile("" : : "m"(config));  // g++ 12 dropped the stores as if ldtilecfg did not read them
  _tile_loadconfig(&config);
}

// Gives the tiles rows of `tokens` and columns of `heads` where they have others.
ALIBI_AMX_TARGET void reshape_tiles(DecodeShape& tiles, int64_t tokens, int64_t heads) {
  if (tiles.tokens == tokens && tiles.heads == heads) return;
  tiles.tokens = tokens;
  tiles.heads = heads;
  configure_decode_tiles(tiles);
}

// Where one chunk's products come from and go: keys (tokens key_bytes apart), queries by pair
// (pair p of the chunk's heads at q + p * group), scores (token j's at scores + j * heads).
struct ChunkOperands {
  const uint16_t* keys;
  int64_t key_bytes;
  const uint32_t* q;
  int64_t group;
  float* scores;
  int64_t heads;
};

// One chunk of query heads in the tiles' shape, prefetching a share of `ahead` per product.
ALIBI_AMX_TARGET void score_head_chunk(const ChunkOperands& op, const DecodeShape& shape, RunPrefetch& ahead) {
  const int64_t q_bytes = 4 * op.group;
  _tile_zero(0);
  for (int64_t t = 0; t < shape.pair_tiles; ++t) {
    _tile_loadd(1, op.keys + 2 * kPairsPerTile * t, op.key_bytes);
    _tile_loadd(2, op.q + kPairsPerTile * t * op.group, q_bytes);
    _tile_dpbf16ps(0, 1, 2);
    ahead.lines_for(1).tick();
  }
  if (shape.rest_pairs > 0) {
    const int64_t first = kPairsPerTile * shape.pair_tiles;
    _tile_loadd(3, op.keys + 2 * first, op.key_bytes);
    _tile_loadd(4, op.q + first * op.group, q_bytes);
    _tile_dpbf16ps(0, 3, 4);
    ahead.lines_for(1).tick();
  }
  _tile_stored(0, op.scores, 4 * op.heads);
}

// `tokens` (at most 16) from first_token: every key head's query heads, 16 at a time (the
// tiles reshaped for a narrower last chunk).
ALIBI_AMX_TARGET void score_token_tile(const uint32_t* q, const TokenRun& k, int64_t first_token, int64_t tokens,
                                       DecodeShape& tiles, const HeadLayout& layout, RunPrefetch& ahead, float* scores) {
  const int64_t pairs = pairs_of(layout.dim), kv_heads = layout.heads / layout.group;
  const auto* keys = static_cast<const uint16_t*>(k.data) + first_token * k.token_stride;
  for (int64_t h = 0; h < layout.group; h += kHeadsPerTile) {
    reshape_tiles(tiles, tokens, std::min(kHeadsPerTile, layout.group - h));
    const auto chunk = [&](int64_t g) {
      return ChunkOperands{keys + g * k.head_stride,       2 * k.token_stride,
                           q + g * pairs * layout.group + h, layout.group,
                           scores + first_token * layout.heads + g * layout.group + h, layout.heads};
    };
    for (int64_t g = 0; g < kv_heads; ++g) score_head_chunk(chunk(g), tiles, ahead);
  }
}

// An odd dim's last dim, which no pair of the tiles holds: its products added in f32.
void add_last_dims(const uint32_t* q, const TokenRun& k, const HeadLayout& layout, float* scores) {
  const int64_t pairs = pairs_of(layout.dim), last = layout.dim - 1;
  const auto* keys = static_cast<const uint16_t*>(k.data);
  for (int64_t j = 0; j < k.count; ++j)
    for (int64_t h = 0; h < layout.heads; ++h) {
      const uint32_t pair = q[by_key_head(layout, pairs, h, pairs - 1)];
      const float key = bf16_to_float(keys[j * k.token_stride + h / layout.group * k.head_stride + last]);
      scores[j * layout.heads + h] += bf16_to_float(uint16_t(pair)) * key;
    }
}

// q: the queries by key head (q[by_key_head(layout, pairs, h, p)]), unscaled.
ALIBI_AMX_TARGET void score_tokens_amx(const uint32_t* q, const TokenRun& k, const TokenRun* ahead,
                                       const HeadLayout& layout, float* scores) {
  const int64_t whole_pairs = layout.dim / 2, kv_heads = layout.heads / layout.group;
  const int64_t products = (layout.group + kHeadsPerTile - 1) / kHeadsPerTile *
                           (whole_pairs / kPairsPerTile + (whole_pairs % kPairsPerTile > 0));
  RunPrefetch fetch(ahead, kv_heads, layout.dim, (k.count + kTileRows - 1) / kTileRows * kv_heads * products);
  DecodeShape tiles{0, 0, whole_pairs / kPairsPerTile, whole_pairs % kPairsPerTile};
  for (int64_t j = 0; j < k.count; j += kTileRows)
    score_token_tile(q, k, j, std::min<int64_t>(kTileRows, k.count - j), tiles, layout, fetch, scores);
  _tile_release();
  fetch.finish();
  if (layout.dim % 2) add_last_dims(q, k, layout, scores);
}

// Where Linux withholds the tile state: the queries repacked head by head for AVX512-BF16.
void score_tokens_repacked(const uint32_t* q, const TokenRun& k, const TokenRun* ahead, const HeadLayout& layout,
                           float* scores) {
  const int64_t pairs = pairs_of(layout.dim);
  std::vector<uint32_t> by_head(size_t(layout.heads * pairs));
  for (int64_t h = 0; h < layout.heads; ++h)
    for (int64_t p = 0; p < pairs; ++p)
      by_head[size_t(h * pairs + p)] = q[by_key_head(layout, pairs, h, p)];
  avx512_bf16_ops()->score_tokens(by_head.data(), k, ahead, layout, scores);
}

void score_tokens_bf16_pairs_amx(const uint32_t* q, const TokenRun& k, const TokenRun* ahead,
                                 const HeadLayout& layout, float* scores) {
  if (tile_state_granted()) score_tokens_amx(q, k, ahead, layout, scores);
  else score_tokens_repacked(q, k, ahead, layout, scores);
}

// The decode takes the tiles for groups of 8 query heads or more. Against widening (Tk 32768
// H32 D128 bf16, one query, 2 threads, paired), they ran MHA 0.88x, GQA 32/8 0.94x to 1.02x
// (paged 1.0x to 1.04x; AVX512-BF16 0.97x to 0.99x), 32/4 1.22x, MQA 32/1 1.31x.
constexpr int64_t kTileGroup = 8;

}  // namespace

const Bf16PairOps* amx_bf16_ops() {
  static const Bf16PairOps ops{gemm_bf16_pairs_amx, score_tokens_bf16_pairs_amx, kTileGroup, true};
  return avx512_bf16_ops() && cpu_has_amx_bf16() ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const Bf16PairOps* amx_bf16_ops() { return nullptr; }

}  // namespace alibi::cpu

#endif
