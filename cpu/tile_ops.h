// The inner operations of the CPU attention kernel, in builds chosen at run time: a portable
// one (Eigen, scalar loops) and SIMD ones written once (cpu/tile_ops_simd.h) for AVX2+FMA+F16C,
// for AVX-512 and for aarch64's NEON. The drivers (attention_cpu.cpp, decode_cpu.cpp,
// backward_cpu.cpp) are written once against this table.
#pragma once

#include <cstdint>

#include "alibi/alibi.h"
#include "core/kernel/backend.h"

namespace alibi::cpu {

constexpr int64_t kQueryPadding = 8;  // arrays indexed by query are padded to this (ScoreBlock)
inline int64_t padded_queries(int64_t queries) { return (queries + kQueryPadding - 1) / kQueryPadding * kQueryPadding; }

// One key block of scores, stored transposed: row j is a key, column c a query. On entry the
// raw q.k products (scale already folded into q); on exit the probabilities exp(s - shift) of
// the online-softmax step (core/kernel/attention_math.h).
struct ScoreBlock {
  float* scores;
  int64_t ld;                 // row stride of scores (and of attn_bias)
  int64_t keys, queries;      // queries <= ld; arrays indexed by query are padded to 8
  const float* attn_bias;     // optional additive values, same layout
  const int32_t* key_pos;     // ALiBi positions of the keys
  const int32_t* query_pos;   // ALiBi positions of the queries (|qpos - kpos| < 2^31 assumed)
  const int32_t* visible_lo;  // per query, slice-relative visible keys [lo, hi) (read where needs_mask)
  const int32_t* visible_hi;
  int32_t first_key;          // slice-relative index of key row 0
  bool needs_mask;            // whether any cell of the block may be invisible
  float slope, softcap;
  float* row_max;             // running softmax state per query
  float* row_sum;
  float* correction;          // out: factor each query's accumulator must be scaled by
  const float* slopes;        // per query, or nullptr: slope for every query
};

// One key block of the backward, laid out as a ScoreBlock (row j a key, column c a query). On
// entry scores holds the raw products x = scale q.k and dscores dP = dout . v; on exit scores
// holds P (saved_probability of the cell score; 0 where masked) and dscores the gradient of x
// (score_gradient, then raw_score_gradient: core/kernel/attention_math.h).
struct GradientBlock {
  float* scores;
  float* dscores;
  int64_t ld;                 // row stride of scores, dscores (and attn_bias)
  int64_t keys, queries;      // queries <= ld; arrays indexed by query are padded to 8
  const float* attn_bias;     // optional, as in ScoreBlock
  const int32_t* key_pos;
  const int32_t* query_pos;
  const int32_t* visible_lo;  // per query, slice-relative visible keys [lo, hi)
  const int32_t* visible_hi;
  int32_t first_key;          // slice-relative index of key row 0
  bool needs_mask;
  float slope, softcap;
  const float* lse;           // per query: the forward's (merged) lse
  const float* row_dot;       // per query: Di = dout . out
};

// Key or value tokens, f32, f16 or bf16 as stored (decode widens in registers): head g of token
// j starts at element g * head_stride of row(j), which is element j * token_stride of data, or
// rows[j] where the tokens were gathered from kGatherWays places (a decode step reading several
// places of a cache side by side): token j from place j % kGatherWays, whose tokens the
// prefetch of the run walks in turn, a cache line from each place at a time. A gathered run
// has at most kMaxGatheredLines lines (token_stride >= head_stride); the bf16 pair products
// (TileOps::score_tokens_bf16_pairs) take only evenly spaced tokens.
constexpr int64_t kGatherWays = 4;
constexpr int64_t kMaxGatheredLines = 2048;

struct TokenRun {
  const void* data;
  alibi_dtype dtype;
  int64_t token_stride, head_stride, count;
  const void* const* rows = nullptr;

  int64_t element_size() const { return int64_t(dtype_size(dtype)); }
  const char* row(int64_t j) const;
};

// Where a run's token j starts: evenly spaced (EvenRows) or gathered (GatheredRows,
// TokenRun::rows). The SIMD loops over tokens take one or the other as a type, so that they
// test neither per token (a test per token cost the GQA 32/16 f32 decode 6 to 9%).
struct EvenRows {
  const char* data;
  int64_t stride;  // bytes
  explicit EvenRows(const TokenRun& run)
      : data(static_cast<const char*>(run.data)), stride(run.token_stride * run.element_size()) {}
  const char* operator()(int64_t j) const { return data + j * stride; }
};
struct GatheredRows {
  const void* const* rows;
  explicit GatheredRows(const TokenRun& run) : rows(run.rows) {}
  const char* operator()(int64_t j) const { return static_cast<const char*>(rows[j]); }
};

inline const char* TokenRun::row(int64_t j) const { return rows ? GatheredRows(*this)(j) : EvenRows(*this)(j); }

// Query heads of dim values; query head h reads key/value head h / group.
struct HeadLayout {
  int64_t heads, group, dim;
};

// Where pair p (of `pairs`) of head h's query is, stored key head by key head, then pair by pair
// (TileOps::bf16_queries_by_key_head).
inline int64_t by_key_head(const HeadLayout& layout, int64_t pairs, int64_t h, int64_t p) {
  return ((h / layout.group) * pairs + p) * layout.group + h % layout.group;
}

struct TileOps {
  const char* name;  // "generic", "avx2", "avx512" or "neon"
  // C (m x n) = A (m x k) * B (k x n) without c_scale; with it, C = diag(c_scale) * C + A * B
  // (the online softmax's correction folded into the product). A(i, p) = a[i * a_row + p * a_col];
  // B and C are row-major with leading dims ldb and ldc.
  void (*gemm)(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
               const float* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale);
  // gemm with B's f16 or bf16 values widened as they are loaded (every SIMD table; nullptr in the
  // generic one).
  void (*gemm_half_b)(alibi_dtype dtype, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row,
                      int64_t a_col, const uint16_t* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale);
  // Whether the forward's P.V takes half values through gemm_half_b rather than widening the
  // value tile first: only where the widening does not compete with the FMAs (AMD; cpu/README.md).
  bool values_widened_in_gemm;
  // The cell scores (attention_math.h: softcap, ALiBi bias, attn_bias, mask), then the
  // online-softmax step of the block's queries.
  void (*softmax_block)(const ScoreBlock& block);
  // count f16 or bf16 values to f32.
  void (*widen)(alibi_dtype dtype, const uint16_t* src, int64_t count, float* dst);
  // dst[i] = src[i] * scale rounded to f16 or bf16 (bitwise float_to_f16 or float_to_bf16).
  void (*narrow)(alibi_dtype dtype, const float* src, float scale, int64_t count, uint16_t* dst);

  // bf16 q.k where the CPU's pairwise bf16 dot products outrun widening to f32 (AVX512-BF16 on
  // AMD, AMX-BF16 tiles on Intel; nullptr elsewhere): C (m x n) = scale * A (m x 2 pairs) B (2 pairs
  // x n), A's rows bf16 lda elements apart, B given as pairs of its rows: b[p * ldb + j] = B(2p, j) |
  // B(2p + 1, j) << 16 (a zero pads an odd dim). Each product is exact in f32 and added to the f32
  // sum; subnormal bf16 inputs count as zero (vdpbf16ps, tdpbf16ps).
  void (*gemm_bf16_pairs)(int64_t m, int64_t n, int64_t pairs, const uint16_t* a, int64_t lda,
                          const uint32_t* b, int64_t ldb, float scale, float* c, int64_t ldc);

  // Decode: a run of key or value tokens against one query row. q, acc are dense [heads][dim].
  // `ahead` (or nullptr): a run read later (by the next call), prefetched in memory order a
  // share at a time as this call reads its own (where hardware prefetchers would follow a
  // step's 8 token rows as 8 short streams). A hint: the SIMD builds take it, the portable
  // build does not.
  // scores[j * heads + h] = q[h] . k_j[h / group] for each token j of the run
  void (*score_tokens)(const float* q, const TokenRun& k, const TokenRun* ahead, const HeadLayout& layout,
                       float* scores);
  // score_tokens for bf16 keys by bf16 pairwise dot products where they outrun widening
  // (nullptr elsewhere; gemm_bf16_pairs says where), which the decode takes for groups of at
  // least bf16_pairs_from_group query heads per key head: q holds the bf16 queries by pairs of
  // dims (pair p of head h: q_h[2p] | q_h[2p + 1] << 16, a zero padding an odd dim), unscaled,
  // and scores are q_h . k_j unscaled. The pairs are stored head by head (q[h * pairs + p]), or,
  // where bf16_queries_by_key_head, key head by key head, then pair by pair (q[by_key_head(...)]:
  // a key head's queries as one AMX tile).
  void (*score_tokens_bf16_pairs)(const uint32_t* q, const TokenRun& k, const TokenRun* ahead,
                                  const HeadLayout& layout, float* scores);
  int64_t bf16_pairs_from_group;
  bool bf16_queries_by_key_head;
  // acc[h] = correction[h] * acc[h] + sum over j of p[j * heads + h] * v_j[h / group]
  void (*accumulate_tokens)(const float* p, const TokenRun& v, const TokenRun* ahead, const HeadLayout& layout,
                            const float* correction, float* acc);
  // Whether the decode passes `ahead` for MHA's f16 or bf16 runs (GQA and MQA runs always, f32
  // MHA runs never): where the hardware prefetchers fall behind them (cpu/README.md).
  bool decode_prefetches_mha_half;
  // x[i] = e^x[i] for i < count; e^-inf = 0.
  void (*exp_in_place)(float* x, int64_t count);

  // Backward: P and the gradient of x for a key block (GradientBlock); returns the block's sum
  // of slope_gradient_term (this block's part of dslopes).
  float (*gradient_block)(const GradientBlock& block);
};

const TileOps& generic_tile_ops();
const TileOps* avx2_tile_ops();    // nullptr when this CPU lacks AVX2, FMA or F16C
const TileOps* avx512_tile_ops();  // nullptr when this CPU lacks AVX-512 F, BW, DQ or VL (or AVX2's)
bool cpu_runs_avx512();            // whether avx512_tile_ops() is there
// The AVX512-BF16 operations (tile_ops_avx512_bf16.cpp) wherever the CPU has the instructions
// (for tests: the avx512 table takes them only where they are the faster way), nullptr elsewhere.
struct Bf16PairOps {
  decltype(TileOps::gemm_bf16_pairs) gemm;
  decltype(TileOps::score_tokens_bf16_pairs) score_tokens;
  int64_t decode_from_group;  // TileOps::bf16_pairs_from_group
  bool query_by_key_head;     // TileOps::bf16_queries_by_key_head
};
const Bf16PairOps* avx512_bf16_ops();
// AMX-BF16's gemm and decode products (tile_ops_amx.cpp) wherever the CPU has AMX-BF16 and
// AVX512-BF16, nullptr elsewhere.
const Bf16PairOps* amx_bf16_ops();
const TileOps* neon_tile_ops();    // nullptr off aarch64

// The best table for this CPU, capped by the environment variable ALIBI_MAX_CPU_ISA
// ("generic", "avx2", "avx512" or "neon"; unset or anything else: no cap), read once.
const TileOps& tile_ops();

}  // namespace alibi::cpu
