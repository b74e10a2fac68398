// The SIMD tile operations, written once over a vector layer V (cpu/simd_avx2.h,
// cpu/simd_avx512.h, cpu/simd_neon.h) and instantiated per ISA: tile_ops_avx2.cpp,
// tile_ops_avx512.cpp and tile_ops_neon.cpp each define ALIBI_SIMD_TARGET (the target attribute
// every function here needs to inline V's intrinsics; empty for NEON, aarch64's baseline),
// include this header once and build their table with simd_tile_ops<V>. All of it has internal
// linkage, so the instantiations never meet at link time.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/kernel/half.h"
#include "cpu/tile_ops.h"

#ifndef ALIBI_SIMD_TARGET
#error "define ALIBI_SIMD_TARGET (the instantiating ISA's target attribute) before including tile_ops_simd.h"
#endif

namespace alibi::cpu {

namespace {

constexpr int kTokensPerDot = 8;
constexpr int64_t kColumnPanel = 64;  // the GEMM's columns of B per pass over A: 32 KB of L1 at k = 128
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// e^x (Cephes-style polynomial after reducing by ln 2, ~1 ulp); x below -87.3 (including -inf)
// gives exactly 0.
template <class V>
ALIBI_SIMD_TARGET inline typename V::F exp_lanes(typename V::F x) {
  const auto underflow = V::less(x, V::set(-87.33f));
  x = V::min(V::max(x, V::set(-87.33f)), V::set(88.0f));
  const auto n = V::round(V::mul(x, V::set(1.44269504088896341f)));
  auto r = V::fnmadd(n, V::set(0.693359375f), x);
  r = V::fnmadd(n, V::set(-2.12194440e-4f), r);
  auto p = V::set(1.9875691500e-4f);
  p = V::fmadd(p, r, V::set(1.3981999507e-3f));
  p = V::fmadd(p, r, V::set(8.3334519073e-3f));
  p = V::fmadd(p, r, V::set(4.1665795894e-2f));
  p = V::fmadd(p, r, V::set(1.6666665459e-1f));
  p = V::fmadd(p, r, V::set(5.0000001201e-1f));
  const auto y = V::fmadd(p, V::mul(r, r), V::add(r, V::set(1.0f)));
  return V::drop(underflow, V::times_pow2(y, n));
}

template <class V>
ALIBI_SIMD_TARGET inline typename V::F tanh_lanes(typename V::F x) {
  const auto e = exp_lanes<V>(V::mul(V::set(-2.0f), V::abs(x)));
  const auto one = V::set(1.0f);
  return V::with_sign_of(V::div(V::sub(one, e), V::add(one, e)), x);
}

// ---- Values in their own dtype, widened in registers ----

template <alibi_dtype kDtype>
using ElementOf = std::conditional_t<kDtype == ALIBI_DTYPE_F32, float, uint16_t>;

template <class V, alibi_dtype kDtype>
ALIBI_SIMD_TARGET inline typename V::F load_lanes(const ElementOf<kDtype>* p) {
  if constexpr (kDtype == ALIBI_DTYPE_F32) return V::load(p);
  else if constexpr (kDtype == ALIBI_DTYPE_F16) return V::widen_f16(p);
  else return V::widen_bf16(p);
}

// The first `count` (1..kLanes - 1) values at p, zeros after them.
template <class V, alibi_dtype kDtype>
ALIBI_SIMD_TARGET inline typename V::F load_first(const ElementOf<kDtype>* p, int64_t count) {
  if constexpr (kDtype == ALIBI_DTYPE_F32) return V::load(p, V::first(count));
  else if constexpr (kDtype == ALIBI_DTYPE_F16) return V::widen_f16(p, count);
  else return V::widen_bf16(p, count);
}

// The first `count` (1..kLanes) values at p, zeros after them.
template <class V, alibi_dtype kDtype>
ALIBI_SIMD_TARGET inline typename V::F load_up_to(const ElementOf<kDtype>* p, int64_t count) {
  if constexpr (kDtype == ALIBI_DTYPE_F32) return V::load(p, V::first(count));
  else return count == V::kLanes ? load_lanes<V, kDtype>(p) : load_first<V, kDtype>(p, count);
}

// ---- The register-blocked GEMM, B in its own dtype ----

// C (M x W kLanes) (+)= A (M x k) B (k x W kLanes): the inner kernel, W = kGemmVectors.
template <class V, alibi_dtype kDtype, int M>
ALIBI_SIMD_TARGET void kernel_wide(int64_t k, const float* a, int64_t a_row, int64_t a_col, const ElementOf<kDtype>* b,
                                   int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  constexpr int L = V::kLanes, W = V::kGemmVectors;
  typename V::F acc[M][W];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    const auto scale = c_scale ? V::broadcast(c_scale + i) : V::zero();
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) acc[i][w] = c_scale ? V::mul(scale, V::load(c + i * ldc + w * L)) : scale;
  }
  for (int64_t p = 0; p < k; ++p) {
    typename V::F row[W];
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) row[w] = load_lanes<V, kDtype>(b + p * ldb + w * L);
    const float* ap = a + p * a_col;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const auto av = V::broadcast(ap + i * a_row);
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) acc[i][w] = V::fmadd(av, row[w], acc[i][w]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) V::store(c + i * ldc + w * L, acc[i][w]);
}

// C (M x width) (+)= A (M x k) B (k x width) for a last panel of width 1..kLanes.
template <class V, alibi_dtype kDtype, int M>
ALIBI_SIMD_TARGET void kernel_narrow(int64_t k, const float* a, int64_t a_row, int64_t a_col, const ElementOf<kDtype>* b,
                                     int64_t ldb, float* c, int64_t ldc, const float* c_scale, int64_t width) {
  const auto mask = V::first(width);
  typename V::F acc[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
    acc[i] = c_scale ? V::mul(V::broadcast(c_scale + i), V::load(c + i * ldc, mask)) : V::zero();
  for (int64_t p = 0; p < k; ++p) {
    const auto b0 = load_up_to<V, kDtype>(b + p * ldb, width);
    const float* ap = a + p * a_col;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) acc[i] = V::fmadd(V::broadcast(ap + i * a_row), b0, acc[i]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) V::store(c + i * ldc, mask, acc[i]);
}

template <class V, alibi_dtype kDtype, int M>
ALIBI_SIMD_TARGET void row_panel(int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                                 const ElementOf<kDtype>* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  constexpr int64_t L = V::kLanes, wide = V::kGemmVectors * L;
  int64_t j = 0;
  for (; j + wide <= n; j += wide) kernel_wide<V, kDtype, M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale);
  for (; j < n; j += L)
    kernel_narrow<V, kDtype, M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale, std::min(L, n - j));
}

// row_panel<V, kDtype, rows> for a run-time rows in 1..M.
template <class V, alibi_dtype kDtype, int M>
ALIBI_SIMD_TARGET void row_panel_of(int64_t rows, int64_t n, int64_t k, const float* a, int64_t a_row,
                                    int64_t a_col, const ElementOf<kDtype>* b, int64_t ldb, float* c, int64_t ldc,
                                    const float* c_scale) {
  if constexpr (M > 1) {
    if (rows < M) return row_panel_of<V, kDtype, M - 1>(rows, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
  }
  row_panel<V, kDtype, M>(n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
}

template <class V, alibi_dtype kDtype>
ALIBI_SIMD_TARGET void gemm_of(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                               const ElementOf<kDtype>* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  constexpr int64_t M = V::kGemmRows;
  static_assert(kColumnPanel % (V::kGemmVectors * V::kLanes) == 0);
  // Column panels outermost: a k x kColumnPanel block of B stays in L1 across the row panels.
  for (int64_t j = 0; j < n; j += kColumnPanel)
    for (int64_t i = 0; i < m; i += M)
      row_panel_of<V, kDtype, V::kGemmRows>(std::min(M, m - i), std::min(kColumnPanel, n - j), k, a + i * a_row,
                                            a_row, a_col, b + j, ldb, c + i * ldc + j, ldc, c_scale ? c_scale + i : nullptr);
}

template <class V>
ALIBI_SIMD_TARGET void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                            const float* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  gemm_of<V, ALIBI_DTYPE_F32>(m, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
}

template <class V>
ALIBI_SIMD_TARGET void gemm_half_b(alibi_dtype dtype, int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row,
                                   int64_t a_col, const uint16_t* b, int64_t ldb, float* c, int64_t ldc,
                                   const float* c_scale) {
  if (dtype == ALIBI_DTYPE_F16) gemm_of<V, ALIBI_DTYPE_F16>(m, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
  else gemm_of<V, ALIBI_DTYPE_BF16>(m, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
}

// ---- Blocks of scores, kLanes queries at a time ----

// Queries [c0, c0 + kLanes) of a block. A 16-lane table's last group may reach past the arrays
// padded to 8: kPart then reads and writes them under `inside` only. A 4-lane table's groups
// always fit in the padding.
template <class V, bool kPart>
struct QueryLanes {
  using F = typename V::F;
  using I = typename V::I;
  int64_t c0;
  typename V::Mask valid;   // real queries
  typename V::Mask inside;  // columns inside the padded arrays (kPart only)

  ALIBI_SIMD_TARGET F load(const float* row) const {
    if constexpr (kPart) return V::load(row + c0, inside);
    else return V::load(row + c0);
  }
  ALIBI_SIMD_TARGET I load(const int32_t* row) const {
    if constexpr (kPart) return V::load(row + c0, inside);
    else return V::load(row + c0);
  }
  ALIBI_SIMD_TARGET void store(float* row, F x) const {
    if constexpr (kPart) V::store(row + c0, inside, x);
    else V::store(row + c0, x);
  }
};

// visit(lanes) for each group of kLanes queries of a block with `queries` queries.
template <class V, class Visit>
ALIBI_SIMD_TARGET void for_query_lanes(int64_t queries, Visit&& visit) {
  constexpr int64_t L = V::kLanes;
  const int64_t padded = padded_queries(queries);
  // Whole groups up to the padding; with 4 lanes, not a group past the last query.
  const int64_t end = L < kQueryPadding ? (queries + L - 1) / L * L : padded;
  int64_t c0 = 0;
  for (; c0 + L <= end; c0 += L) visit(QueryLanes<V, false>{c0, V::first(std::min(L, queries - c0)), {}});
  if constexpr (L > kQueryPadding) {
    if (c0 < queries) visit(QueryLanes<V, true>{c0, V::first(queries - c0), V::first(padded - c0)});
  }
}

// Whether the block's mask may hide a key from a query of the group. Visible intervals only
// move forward with the query, so the first lane has the lowest end, the last real one the
// highest start: most groups of a block on a causal diagonal see every key.
template <class V, class Block, bool kPart>
ALIBI_SIMD_TARGET bool group_needs_mask(const Block& b, const QueryLanes<V, kPart>& q) {
  if (!b.needs_mask) return false;
  const int64_t last = std::min(q.c0 + V::kLanes, b.queries) - 1;
  return b.first_key < b.visible_lo[last] || b.first_key + b.keys > b.visible_hi[q.c0];
}

// Pass 1 of softmax_block for a group: final scores written back; returns their max over the
// block's keys.
template <class V, bool kPart>
ALIBI_SIMD_TARGET typename V::F finish_scores(const ScoreBlock& b, const QueryLanes<V, kPart>& q) {
  const auto neg_inf = V::set(kNegInf);
  const auto slope = b.slopes ? q.load(b.slopes) : V::set(b.slope);
  const auto cap = V::set(b.softcap), inverse_cap = V::set(1.0f / b.softcap);
  const auto qpos = q.load(b.query_pos);
  const bool needs_mask = group_needs_mask(b, q);
  const auto none = V::set(int32_t(0));  // visible_lo and _hi are read only where the mask is
  const auto lo = needs_mask ? q.load(b.visible_lo) : none, hi = needs_mask ? q.load(b.visible_hi) : none;
  auto block_max = neg_inf;
  for (int64_t j = 0; j < b.keys; ++j) {
    float* row = b.scores + j * b.ld;
    auto s = q.load(row);
    if (b.softcap > 0) s = V::mul(cap, tanh_lanes<V>(V::mul(s, inverse_cap)));
    const auto distance = V::to_float(V::abs(V::sub(qpos, V::set(b.key_pos[j]))));
    s = V::add(s, V::negate(V::mul(slope, distance)));
    if (b.attn_bias) s = V::add(s, q.load(b.attn_bias + j * b.ld));
    if (needs_mask) {
      const auto key = V::set(int32_t(b.first_key + j));
      const auto visible = V::but_not(V::greater(hi, key), V::greater(lo, key));
      s = V::select(V::both(visible, q.valid), s, neg_inf);
    }
    q.store(row, s);
    block_max = V::max(block_max, s);
  }
  return block_max;
}

template <class V>
struct SoftmaxLanes {
  const ScoreBlock& b;
  template <bool kPart>
  ALIBI_SIMD_TARGET void operator()(const QueryLanes<V, kPart>& q) const {
    const auto neg_inf = V::set(kNegInf);
    const auto block_max = finish_scores(b, q);
    const auto old_max = V::load(b.row_max + q.c0, q.valid);
    const auto new_max = V::max(old_max, block_max);
    // Lanes that have seen nothing but -inf shift by 0, so their probabilities are exactly 0.
    const auto shift = V::drop(V::equal(new_max, neg_inf), new_max);
    auto sum = V::zero();
    for (int64_t j = 0; j < b.keys; ++j) {
      float* row = b.scores + j * b.ld;
      const auto p = exp_lanes<V>(V::sub(q.load(row), shift));
      q.store(row, p);
      sum = V::add(sum, p);
    }
    const auto correction = exp_lanes<V>(V::sub(old_max, shift));
    const auto old_sum = V::load(b.row_sum + q.c0, q.valid);
    V::store(b.row_max + q.c0, q.valid, new_max);
    V::store(b.row_sum + q.c0, q.valid, V::fmadd(old_sum, correction, sum));
    V::store(b.correction + q.c0, q.valid, correction);
  }
};

template <class V>
ALIBI_SIMD_TARGET void softmax_block(const ScoreBlock& b) {
  for_query_lanes<V>(b.queries, SoftmaxLanes<V>{b});
}

// The backward's gradient_block for a group, adding its slope terms to slope_sum lane by lane.
template <class V>
struct GradientLanes {
  const GradientBlock& b;
  typename V::F& slope_sum;
  template <bool kPart>
  ALIBI_SIMD_TARGET void operator()(const QueryLanes<V, kPart>& q) const {
    const auto one = V::set(1.0f);
    const auto slope = V::set(b.slope);
    const auto cap = V::set(b.softcap), inverse_cap = V::set(1.0f / b.softcap);
    const auto qpos = q.load(b.query_pos), lo = q.load(b.visible_lo), hi = q.load(b.visible_hi);
    const auto lse = q.load(b.lse), row_dot = q.load(b.row_dot);
    // Cells take part for real queries whose lse is not -inf (rows that saw no key contribute nothing).
    const auto lanes = V::both(V::not_equal(lse, V::set(kNegInf)), q.valid);
    const bool needs_mask = group_needs_mask(b, q);
    auto sum = V::zero();
    for (int64_t j = 0; j < b.keys; ++j) {
      float* p_row = b.scores + j * b.ld;
      float* d_row = b.dscores + j * b.ld;
      const auto x = q.load(p_row);
      auto s = x, tanh_x = x;
      if (b.softcap > 0) {
        tanh_x = tanh_lanes<V>(V::mul(x, inverse_cap));
        s = V::mul(cap, tanh_x);
      }
      const auto distance = V::to_float(V::abs(V::sub(qpos, V::set(b.key_pos[j]))));
      s = V::add(s, V::negate(V::mul(slope, distance)));  // as the forward: no FMA
      if (b.attn_bias) s = V::add(s, q.load(b.attn_bias + j * b.ld));
      auto keep = lanes;
      if (needs_mask) {
        const auto key = V::set(int32_t(b.first_key + j));
        keep = V::both(keep, V::but_not(V::greater(hi, key), V::greater(lo, key)));
      }
      const auto p = V::keep(keep, exp_lanes<V>(V::sub(s, lse)));
      const auto ds = V::keep(keep, V::mul(p, V::sub(q.load(d_row), row_dot)));
      const auto dx = b.softcap > 0 ? V::mul(ds, V::fnmadd(tanh_x, tanh_x, one)) : ds;
      q.store(p_row, p);
      q.store(d_row, dx);
      sum = V::add(sum, V::mul(ds, V::negate(distance)));
    }
    slope_sum = V::add(slope_sum, sum);
  }
};

template <class V>
ALIBI_SIMD_TARGET float gradient_block(const GradientBlock& b) {
  auto slope_sum = V::zero();
  for_query_lanes<V>(b.queries, GradientLanes<V>{b, slope_sum});
  float lanes[V::kLanes];
  V::store(lanes, slope_sum);
  float total = 0.0f;
  for (float lane : lanes) total += lane;
  return total;
}

template <class V>
ALIBI_SIMD_TARGET void widen(alibi_dtype dtype, const uint16_t* src, int64_t count, float* dst) {
  int64_t i = 0;
  for (; i + V::kLanes <= count; i += V::kLanes)
    V::store(dst + i, dtype == ALIBI_DTYPE_F16 ? V::widen_f16(src + i) : V::widen_bf16(src + i));
  for (; i < count; ++i) dst[i] = dtype == ALIBI_DTYPE_F16 ? f16_to_float(src[i]) : bf16_to_float(src[i]);
}

template <class V>
ALIBI_SIMD_TARGET void narrow(alibi_dtype dtype, const float* src, float scale, int64_t count, uint16_t* dst) {
  const auto factor = V::set(scale);
  int64_t i = 0;
  for (; i + V::kLanes <= count; i += V::kLanes) {
    const auto x = V::mul(V::load(src + i), factor);
    if (dtype == ALIBI_DTYPE_F16) V::store_f16(dst + i, x);
    else V::store_bf16(dst + i, x);
  }
  for (; i < count; ++i) dst[i] = dtype == ALIBI_DTYPE_F16 ? float_to_f16(src[i] * scale) : float_to_bf16(src[i] * scale);
}

template <class V>
ALIBI_SIMD_TARGET void exp_in_place(float* x, int64_t count) {
  int64_t i = 0;
  for (; i + V::kLanes <= count; i += V::kLanes) V::store(x + i, exp_lanes<V>(V::load(x + i)));
  if (i == count) return;
  const auto mask = V::first(count - i);
  V::store(x + i, mask, exp_lanes<V>(V::load(x + i, mask)));
}

// ---- Decode: k and v read in their own dtype and widened in registers ----

// Whether the decode's prefetches are non-temporal (a decode reads each line once per query
// row) or into L2. AMD's prefetchnta fills L2 as well: on Zen 5 it ran 1.07x prefetcht0 and
// 1.14x prefetcht1. Intel's fills L1 only, which a step's lines (32 KiB of keys, then of
// values, at GQA 32/8 f32) left before they were read: on the Sapphire Rapids class Xeon the
// GQA decode ran 2.1x with prefetcht1. NEON keeps PLDL1STRM (not measured).
inline bool prefetch_non_temporal() {
#if defined(__x86_64__) || defined(__i386__)
  static const bool amd = __builtin_cpu_is("amd");
  return amd;
#else
  return true;
#endif
}

ALIBI_SIMD_TARGET inline void prefetch_line(const char* line, bool non_temporal) {
  if (non_temporal) __builtin_prefetch(line, 0, 0);
  else __builtin_prefetch(line, 0, 2);
}

// Cache lines to prefetch, per_tick of them at each tick of a loop (none where per_tick is 0):
// consecutive lines from `line`, or where `listed`, the lines whose addresses follow one
// another from `line` (a gathered run's, RunPrefetch::list_).
struct FetchLines {
  const char* line = nullptr;
  int32_t per_tick = 0;  // 16 bytes in all: passed in two registers, not through the stack
  bool non_temporal = true;
  bool listed = false;

  ALIBI_SIMD_TARGET void tick() {
    for (int32_t n = 0; n < per_tick; ++n) {
      if (listed) {
        prefetch_line(*reinterpret_cast<const char* const*>(line), non_temporal);
        line = paced(line + sizeof(const char*));
      } else {
        prefetch_line(line, non_temporal);
        line = paced(line + 64);
      }
    }
  }

  // p, about 10 cycles later: the requests are paced. Asked for back to back, the f32 GQA decode
  // from DRAM ran 0.79x. On x86 three multiplies by 1 (in registers: with the address sent
  // through memory instead, the compiler kept a GQA dot product's sums in memory too).
  ALIBI_SIMD_TARGET static const char* paced(const char* p) {
#if defined(__x86_64__)
    asm volatile("imul $1, %0, %0\n\timul $1, %0, %0\n\timul $1, %0, %0" : "+r"(p));
#else
    asm volatile("" : "+m"(p));
    asm volatile("" : "+m"(p));
#endif
    return p;
  }
};

// Prefetches the cache lines of a run's kv_heads x dim values in memory order (by token, then
// head, or by head, then token, whichever stride is the smaller inside), an equal share at each
// of the `ticks` ticks of the loops that run before the run is read. Asked for head by head
// (8 token rows at a time, each a 4 KiB page of its own at GQA 32/8 f32), the same lines came
// in at 0.8x the speed: the hardware prefetchers follow one stream, not 8.
class RunPrefetch {
 public:
  RunPrefetch(const TokenRun* run, int64_t kv_heads, int64_t dim, int64_t ticks) {
    if (!run) return;
    const int64_t size = run->element_size();
    const bool by_token = run->token_stride >= run->head_stride;
    rows_ = run->rows;
    by_token_ = by_token;
    outer_ = by_token ? run->count : kv_heads;
    inner_ = by_token ? kv_heads : run->count;
    outer_stride_ = size * (by_token ? run->token_stride : run->head_stride);
    inner_stride_ = size * (by_token ? run->head_stride : run->token_stride);
    span_ = size * dim;
    if (inner_stride_ == span_ && (by_token || !rows_)) {  // an outer index's spans are one
      span_ *= inner_;
      inner_ = 1;
    }
    data_ = static_cast<const char*>(run->data);
    const int64_t lines = outer_ * inner_ * ((span_ + 63) / 64);
    per_tick_ = (lines + std::max<int64_t>(ticks, 1) - 1) / std::max<int64_t>(ticks, 1);
    if (rows_ && by_token && lines <= kMaxGatheredLines) list_lines();
  }

  // The lines of the next `ticks` ticks, to be asked for a tick at a time; where they cross a
  // span, asked for now.
  ALIBI_SIMD_TARGET FetchLines lines_for(int64_t ticks) {
    const int64_t lines = per_tick_ * ticks;
    if (listed_ > 0) return listed_share(lines);
    if (o_ >= outer_ || byte_ + 64 * lines > span_) {
      issue(lines);
      return {};
    }
    const FetchLines share{span(o_, i_) + byte_, int32_t(per_tick_), non_temporal_};
    byte_ += 64 * lines;
    next_span_if_done();
    return share;
  }
  // The lines no tick asked for (where the work had fewer ticks than counted).
  ALIBI_SIMD_TARGET void finish() {
    if (listed_ > 0) issue_listed();
    else issue(std::numeric_limits<int64_t>::max());
  }

 private:
  // A gathered run's lines in the order asked for: a line from each of its kGatherWays places
  // in turn, each place's tokens (j, j + kGatherWays, ...) line by line. Read side by side
  // this way, 16-token blocks of a shuffled pool came in at 1.4x the rate of one block at a
  // time (a throwaway model of the GQA 32/8 bf16 step; bench/RESULTS.md).
  void list_lines() {
    for (int64_t first = 0; first < outer_; first += kGatherWays) {
      const int64_t ways = std::min(kGatherWays, outer_ - first);
      for (int64_t i = 0; i < inner_; ++i) {
        const char* spans[kGatherWays];
        for (int64_t w = 0; w < ways; ++w) spans[w] = span(first + w, i);
        for (int64_t byte = 0; byte < span_; byte += 64)
          for (int64_t w = 0; w < kGatherWays; ++w)
            if (w < ways) list_[listed_++] = spans[w] + byte;
      }
    }
  }

  // The next `lines` listed lines as a share, or the rest asked for now where fewer are left.
  ALIBI_SIMD_TARGET FetchLines listed_share(int64_t lines) {
    if (lines > listed_ - next_) {
      issue_listed();
      return {};
    }
    const FetchLines share{reinterpret_cast<const char*>(list_ + next_), int32_t(per_tick_), non_temporal_, true};
    next_ += lines;
    return share;
  }

  ALIBI_SIMD_TARGET void issue_listed() {
    for (; next_ < listed_; ++next_) prefetch_line(list_[next_], non_temporal_);
  }

  ALIBI_SIMD_TARGET void issue(int64_t lines) {
    while (lines > 0 && o_ < outer_) {
      const char* span = this->span(o_, i_);
      const int64_t take = std::min(lines, (span_ - byte_ + 63) / 64);
      const int64_t end = std::min(span_, byte_ + 64 * take);
      lines -= take;
      for (; byte_ < end; byte_ += 64) prefetch_line(span + byte_, non_temporal_);
      next_span_if_done();
    }
  }

  // Where span (o, i) starts: o-th outer, i-th inner index (token and head, or head and token).
  const char* span(int64_t o, int64_t i) const {
    if (!rows_) return data_ + o * outer_stride_ + i * inner_stride_;
    return by_token_ ? static_cast<const char*>(rows_[o]) + i * inner_stride_
                     : static_cast<const char*>(rows_[i]) + o * outer_stride_;
  }

  void next_span_if_done() {
    if (byte_ < span_) return;
    byte_ = 0;
    if (++i_ < inner_) return;
    i_ = 0;
    ++o_;
  }

  const char* data_ = nullptr;
  const void* const* rows_ = nullptr;  // a gathered run's token rows (TokenRun::rows)
  bool by_token_ = true;
  const char* list_[kMaxGatheredLines];  // a gathered run's lines (list_lines), listed_ of them
  int64_t listed_ = 0, next_ = 0;
  int64_t outer_ = 0, inner_ = 0, outer_stride_ = 0, inner_stride_ = 0, span_ = 0, per_tick_ = 0;
  int64_t o_ = 0, i_ = 0, byte_ = 0;
  bool non_temporal_ = prefetch_non_temporal();
};

// The lines a loop of `ticks` ticks prefetches: its share of `ahead`'s, or none.
template <bool kFetches>
ALIBI_SIMD_TARGET inline FetchLines share(RunPrefetch& ahead, int64_t ticks) {
  if constexpr (kFetches) return ahead.lines_for(ticks);
  return {};
}

// How the decode's dot products step through dims: kDims a step, queries stored as Query
// (row_length(dim) per head), each step's query and key vectors loaded and multiplied into f32
// sums. WidenedDots: f32 queries (scaled), keys widened to f32, FMA. (The AVX512-BF16 build has
// bf16 pairs: tile_ops_avx512_bf16.cpp.)
template <class V, alibi_dtype kDtype>
struct WidenedDots {
  using Query = float;
  using Element = ElementOf<kDtype>;
  static constexpr int64_t kDims = V::kLanes;
  static constexpr int64_t row_length(int64_t dim) { return dim; }
  ALIBI_SIMD_TARGET static inline typename V::F query(const float* q, int64_t d) { return V::load(q + d); }
  ALIBI_SIMD_TARGET static inline typename V::F query_first(const float* q, int64_t d, int64_t dims) {
    return V::load(q + d, V::first(dims));
  }
  ALIBI_SIMD_TARGET static inline typename V::F key(const Element* k) { return load_lanes<V, kDtype>(k); }
  ALIBI_SIMD_TARGET static inline typename V::F key_first(const Element* k, int64_t dims) {
    return load_first<V, kDtype>(k, dims);
  }
  ALIBI_SIMD_TARGET static inline typename V::F madd(typename V::F q, typename V::F k, typename V::F acc) {
    return V::fmadd(q, k, acc);
  }
};

template <class Dots>
using QueryOf = typename Dots::Query;
template <class Dots>
using KeyOf = typename Dots::Element;

// dots[j] = q . k[j] over dim, one chain of products per token, each q vector loaded once for all 8.
template <class V, class Dots, bool kFetches>
ALIBI_SIMD_TARGET inline void dot_8_tokens(const QueryOf<Dots>* q, const KeyOf<Dots>* const* k, int64_t dim,
                                           FetchLines ahead, float* dots) {
  typename V::F acc[kTokensPerDot];
  for (auto& a : acc) a = V::zero();
  int64_t d = 0;
  for (; d + Dots::kDims <= dim; d += Dots::kDims) {
    const auto query = Dots::query(q, d);
    if constexpr (kFetches) ahead.tick();
#pragma GCC unroll 8
    for (int j = 0; j < kTokensPerDot; ++j) acc[j] = Dots::madd(query, Dots::key(k[j] + d), acc[j]);
  }
  if (d < dim) {
    const auto query = Dots::query_first(q, d, dim - d);
#pragma GCC unroll 8
    for (int j = 0; j < kTokensPerDot; ++j) acc[j] = Dots::madd(query, Dots::key_first(k[j] + d, dim - d), acc[j]);
  }
  V::sum_each_of_8(acc, dots);
}

// GQA: query heads that share a key head take it kHeadsPerBlock at a time, each key vector
// loaded (and widened) once for all of them; the products are the same chains as
// dot_8_tokens', lane by lane, so the scores are bitwise those of one head at a time.
constexpr int kHeadsPerBlock = 4;
template <class V>
constexpr int kTokensPerBlock = V::kLanes >= 16 ? 4 : 2;  // 16 accumulators where 32 registers

// The dots of kTokensPerBlock tokens (rows of the step's scores, `heads` apart) for the
// kHeadsPerBlock query heads at q (row_length apart): scores[j * heads + i] = q_i . k[j] for
// j < count. Each lane's sum is dot_8_tokens' (the same products, added in the same order).
template <class V, class Dots, bool kFetches>
ALIBI_SIMD_TARGET inline void dot_head_block(const QueryOf<Dots>* q, const KeyOf<Dots>* const* k, int64_t dim,
                                             FetchLines ahead, int64_t count, int64_t heads, float* scores) {
  constexpr int T = kTokensPerBlock<V>, H = kHeadsPerBlock, N = H * T;
  const int64_t row = Dots::row_length(dim);
  typename V::F acc[N];  // token by token, then head by head: the order of the sums' lanes
#pragma GCC unroll 16
  for (auto& a : acc) a = V::zero();
  int64_t d = 0;
  for (; d + Dots::kDims <= dim; d += Dots::kDims) {
    decltype(Dots::key(k[0])) keys[T];
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) keys[j] = Dots::key(k[j] + d);
    if constexpr (kFetches) ahead.tick();
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) {
      const auto query = Dots::query(q + h * row, d);
#pragma GCC unroll 8
      for (int j = 0; j < T; ++j) acc[j * H + h] = Dots::madd(query, keys[j], acc[j * H + h]);
    }
  }
  if (d < dim) {
    decltype(Dots::key(k[0])) keys[T];
#pragma GCC unroll 8
    for (int j = 0; j < T; ++j) keys[j] = Dots::key_first(k[j] + d, dim - d);
#pragma GCC unroll 4
    for (int h = 0; h < H; ++h) {
      const auto query = Dots::query_first(q + h * row, d, dim - d);
#pragma GCC unroll 8
      for (int j = 0; j < T; ++j) acc[j * H + h] = Dots::madd(query, keys[j], acc[j * H + h]);
    }
  }
  alignas(64) float dots[N];
#pragma GCC unroll 2
  for (int i = 0; i < N; i += V::kLanes) V::store(dots + i, V::sum_each_of_lanes(acc + i));
  for (int64_t j = 0; j < count; ++j) std::memcpy(scores + j * heads, dots + j * H, H * sizeof(float));
}

// Element `offset` of token j of a run, as T.
template <class T, class Rows>
inline const T* at(const Rows& rows, int64_t j, int64_t offset) {
  return reinterpret_cast<const T*>(rows(j)) + offset;
}

// Calls f(rows) with the run's rows as the type that fits it.
template <class F>
inline void with_rows(const TokenRun& run, F&& f) {
  if (run.rows) f(GatheredRows(run));
  else f(EvenRows(run));
}

// Query heads [h, h + kHeadsPerBlock) of one key head, kTokensPerBlock tokens at a time.
template <class V, class Dots, bool kFetches, class Rows>
ALIBI_SIMD_TARGET void score_head_block(const QueryOf<Dots>* q, const TokenRun& k, const Rows& rows,
                                        const HeadLayout& layout, int64_t h, RunPrefetch& ahead, float* scores) {
  constexpr int64_t T = kTokensPerBlock<V>;
  const int64_t head = (h / layout.group) * k.head_stride;
  for (int64_t j0 = 0; j0 < k.count; j0 += T) {
    const int64_t count = std::min<int64_t>(T, k.count - j0);
    const KeyOf<Dots>* tokens[T];
    for (int64_t j = 0; j < T; ++j) tokens[j] = at<KeyOf<Dots>>(rows, j0 + std::min(j, count - 1), head);
    dot_head_block<V, Dots, kFetches>(q + h * Dots::row_length(layout.dim), tokens, layout.dim,
                                      share<kFetches>(ahead, layout.dim / Dots::kDims), count, layout.heads,
                                      scores + j0 * layout.heads + h);
  }
}

// Query head h, 8 tokens at a time (a short last group repeats its last token).
template <class V, class Dots, bool kFetches, class Rows>
ALIBI_SIMD_TARGET inline void score_head(const QueryOf<Dots>* q, const TokenRun& k, const Rows& rows,
                                         const HeadLayout& layout, int64_t h, RunPrefetch& ahead, float* scores) {
  const int64_t head = (h / layout.group) * k.head_stride;
  for (int64_t j0 = 0; j0 < k.count; j0 += kTokensPerDot) {
    const int64_t count = std::min<int64_t>(kTokensPerDot, k.count - j0);
    const KeyOf<Dots>* tokens[kTokensPerDot];
    for (int64_t j = 0; j < kTokensPerDot; ++j) tokens[j] = at<KeyOf<Dots>>(rows, j0 + std::min(j, count - 1), head);
    float dots[kTokensPerDot];
    dot_8_tokens<V, Dots, kFetches>(q + h * Dots::row_length(layout.dim), tokens, layout.dim,
                                    share<kFetches>(ahead, layout.dim / Dots::kDims), dots);
    for (int64_t j = 0; j < count; ++j) scores[(j0 + j) * layout.heads + h] = dots[j];
  }
}

// MHA head by head (a loop of its own: the grouped one below cost its memory-bound f32 decode
// 3%); GQA key head by key head, its query heads in blocks, the first block of each prefetching
// `ahead`. kFetches: whether there is an `ahead` (a prefetch check in the loops of a call
// without one cost MHA f32 11 to 13%).
template <class V, class Dots, bool kFetches, class Rows>
ALIBI_SIMD_TARGET void score_tokens_in(const QueryOf<Dots>* q, const TokenRun& k, const Rows& rows,
                                       const TokenRun* ahead, const HeadLayout& layout, float* scores) {
  const int64_t ticks_per_dot = layout.dim / Dots::kDims;
  if (layout.group == 1) {
    const int64_t token_groups = (k.count + kTokensPerDot - 1) / kTokensPerDot;
    RunPrefetch fetch(ahead, layout.heads, layout.dim, layout.heads * token_groups * ticks_per_dot);
    for (int64_t h = 0; h < layout.heads; ++h) score_head<V, Dots, kFetches>(q, k, rows, layout, h, fetch, scores);
    fetch.finish();
    return;
  }
  const int64_t kv_heads = layout.heads / layout.group;
  const int64_t token_blocks = (k.count + kTokensPerBlock<V> - 1) / kTokensPerBlock<V>;
  RunPrefetch fetch(ahead, kv_heads, layout.dim, kv_heads * token_blocks * ticks_per_dot);
  for (int64_t g = 0; g < kv_heads; ++g) {
    const int64_t first = g * layout.group, end = first + layout.group;
    int64_t h = first;
    for (; h + kHeadsPerBlock <= end; h += kHeadsPerBlock) {
      if (h == first) score_head_block<V, Dots, kFetches>(q, k, rows, layout, h, fetch, scores);
      else score_head_block<V, Dots, false>(q, k, rows, layout, h, fetch, scores);
    }
    for (; h < end; ++h) score_head<V, Dots, false>(q, k, rows, layout, h, fetch, scores);
  }
  fetch.finish();
}

template <class V, class Dots, bool kFetches>
ALIBI_SIMD_TARGET void score_tokens_of(const QueryOf<Dots>* q, const TokenRun& k, const TokenRun* ahead,
                                       const HeadLayout& layout, float* scores) {
  with_rows(k, [&](const auto& rows) { score_tokens_in<V, Dots, kFetches>(q, k, rows, ahead, layout, scores); });
}

template <class V, class Dots>
ALIBI_SIMD_TARGET void score_tokens_as(const QueryOf<Dots>* q, const TokenRun& k, const TokenRun* ahead,
                                       const HeadLayout& layout, float* scores) {
  if (ahead) score_tokens_of<V, Dots, true>(q, k, ahead, layout, scores);
  else score_tokens_of<V, Dots, false>(q, k, ahead, layout, scores);
}

template <class V>
ALIBI_SIMD_TARGET void score_tokens(const float* q, const TokenRun& k, const TokenRun* ahead, const HeadLayout& layout,
                                    float* scores) {
  switch (k.dtype) {
    case ALIBI_DTYPE_F16: return score_tokens_as<V, WidenedDots<V, ALIBI_DTYPE_F16>>(q, k, ahead, layout, scores);
    case ALIBI_DTYPE_BF16: return score_tokens_as<V, WidenedDots<V, ALIBI_DTYPE_BF16>>(q, k, ahead, layout, scores);
    default: return score_tokens_as<V, WidenedDots<V, ALIBI_DTYPE_F32>>(q, k, ahead, layout, scores);
  }
}

// out[0, kLanes * N) = scale * out + sum over j of p[j * p_stride] * (v's token j from offset),
// in registers throughout.
template <class V, alibi_dtype kDtype, int N, bool kFetches, class Rows>
ALIBI_SIMD_TARGET inline void accumulate_vectors(const float* p, int64_t p_stride, const Rows& v, int64_t count,
                                                 int64_t offset, typename V::F scale, float* out, FetchLines ahead) {
  constexpr int L = V::kLanes;
  typename V::F acc[N];
#pragma GCC unroll 8
  for (int i = 0; i < N; ++i) acc[i] = V::mul(scale, V::load(out + L * i));
  for (int64_t j = 0; j < count; ++j) {
    const auto weight = V::broadcast(p + j * p_stride);
    const ElementOf<kDtype>* row = at<ElementOf<kDtype>>(v, j, offset);
    if constexpr (kFetches) ahead.tick();
#pragma GCC unroll 8
    for (int i = 0; i < N; ++i) acc[i] = V::fmadd(weight, load_lanes<V, kDtype>(row + L * i), acc[i]);
  }
#pragma GCC unroll 8
  for (int i = 0; i < N; ++i) V::store(out + L * i, acc[i]);
}

template <class V, alibi_dtype kDtype, class Rows>
ALIBI_SIMD_TARGET void accumulate_tail(const float* p, int64_t p_stride, const Rows& v, int64_t count, int64_t offset,
                                       typename V::F scale, float* out, int64_t width) {
  const auto mask = V::first(width);
  auto acc = V::mul(scale, V::load(out, mask));
  for (int64_t j = 0; j < count; ++j)
    acc = V::fmadd(V::broadcast(p + j * p_stride), load_first<V, kDtype>(at<ElementOf<kDtype>>(v, j, offset), width),
                   acc);
  V::store(out, mask, acc);
}

// GQA: kHeadsPerBlock query heads of one value head, kVectorsPerBlock vectors of each from
// out (dim apart) in registers, each value vector loaded (and widened) once for all of them;
// every lane's FMA chain is accumulate_vectors', so the results are bitwise the same.
template <class V>
constexpr int kVectorsPerBlock = V::kLanes >= 16 ? 4 : 2;  // 16 accumulators where 32 registers

template <class V, alibi_dtype kDtype, bool kFetches, class Rows>
ALIBI_SIMD_TARGET inline void accumulate_head_block(const float* p, int64_t p_stride, const Rows& v, int64_t count,
                                                    int64_t offset, const float* correction, float* out, int64_t dim,
                                                    FetchLines ahead) {
  constexpr int L = V::kLanes, W = kVectorsPerBlock<V>;
  typename V::F acc[kHeadsPerBlock * W];
#pragma GCC unroll 4
  for (int h = 0; h < kHeadsPerBlock; ++h) {
    const auto scale = V::broadcast(correction + h);
#pragma GCC unroll 4
    for (int i = 0; i < W; ++i) acc[h * W + i] = V::mul(scale, V::load(out + h * dim + L * i));
  }
  for (int64_t j = 0; j < count; ++j) {
    const ElementOf<kDtype>* row = at<ElementOf<kDtype>>(v, j, offset);
    typename V::F values[W];
#pragma GCC unroll 4
    for (int i = 0; i < W; ++i) values[i] = load_lanes<V, kDtype>(row + L * i);
    if constexpr (kFetches) ahead.tick();
#pragma GCC unroll 4
    for (int h = 0; h < kHeadsPerBlock; ++h) {
      const auto weight = V::broadcast(p + j * p_stride + h);
#pragma GCC unroll 4
      for (int i = 0; i < W; ++i) acc[h * W + i] = V::fmadd(weight, values[i], acc[h * W + i]);
    }
  }
#pragma GCC unroll 4
  for (int h = 0; h < kHeadsPerBlock; ++h)
#pragma GCC unroll 4
    for (int i = 0; i < W; ++i) V::store(out + h * dim + L * i, acc[h * W + i]);
}

// Dims [d, dim) of query head h, up to 8 vectors of its accumulator in registers across the run.
template <class V, alibi_dtype kDtype, bool kFetches, class Rows>
ALIBI_SIMD_TARGET inline void accumulate_head(const float* p, const TokenRun& v, const Rows& rows,
                                              const HeadLayout& layout, const float* correction, float* acc, int64_t h,
                                              int64_t d, RunPrefetch& ahead) {
  constexpr int64_t L = V::kLanes;
  const int64_t dim = layout.dim, count = v.count, n = layout.heads, head = (h / layout.group) * v.head_stride;
  const auto scale = V::broadcast(correction + h);
  float* out = acc + h * dim;
  for (; d + 8 * L <= dim; d += 8 * L)
    accumulate_vectors<V, kDtype, 8, kFetches>(p + h, n, rows, count, head + d, scale, out + d,
                                                share<kFetches>(ahead, count));
  for (; d + 4 * L <= dim; d += 4 * L)
    accumulate_vectors<V, kDtype, 4, kFetches>(p + h, n, rows, count, head + d, scale, out + d,
                                                share<kFetches>(ahead, count));
  for (; d + L <= dim; d += L)
    accumulate_vectors<V, kDtype, 1, kFetches>(p + h, n, rows, count, head + d, scale, out + d,
                                                share<kFetches>(ahead, count));
  if (d < dim) accumulate_tail<V, kDtype>(p + h, n, rows, count, head + d, scale, out + d, dim - d);
}

// Query heads [h, h + kHeadsPerBlock) of one value head: blocks of kVectorsPerBlock vectors,
// then the dims left head by head.
template <class V, alibi_dtype kDtype, bool kFetches, class Rows>
ALIBI_SIMD_TARGET void accumulate_head_group(const float* p, const TokenRun& v, const Rows& rows,
                                             const HeadLayout& layout, const float* correction, float* acc, int64_t h,
                                             RunPrefetch& ahead) {
  constexpr int64_t width = V::kLanes * kVectorsPerBlock<V>;
  const int64_t dim = layout.dim, head = (h / layout.group) * v.head_stride;
  int64_t d = 0;
  for (; d + width <= dim; d += width)
    accumulate_head_block<V, kDtype, kFetches>(p + h, layout.heads, rows, v.count, head + d, correction + h,
                                               acc + h * dim + d, dim, share<kFetches>(ahead, v.count));
  for (int64_t i = 0; i < kHeadsPerBlock; ++i)
    accumulate_head<V, kDtype, false>(p, v, rows, layout, correction, acc, h + i, d, ahead);
}

// As score_tokens_of: MHA head by head, GQA value head by value head.
template <class V, alibi_dtype kDtype, bool kFetches, class Rows>
ALIBI_SIMD_TARGET void accumulate_tokens_in(const float* p, const TokenRun& v, const Rows& rows, const TokenRun* ahead,
                                            const HeadLayout& layout, const float* correction, float* acc) {
  if (layout.group == 1) {
    RunPrefetch fetch(ahead, layout.heads, layout.dim, layout.heads * v.count);
    for (int64_t h = 0; h < layout.heads; ++h)
      accumulate_head<V, kDtype, kFetches>(p, v, rows, layout, correction, acc, h, 0, fetch);
    fetch.finish();
    return;
  }
  const int64_t kv_heads = layout.heads / layout.group;
  RunPrefetch fetch(ahead, kv_heads, layout.dim,
                            kv_heads * (layout.dim / (V::kLanes * kVectorsPerBlock<V>)) * v.count);
  for (int64_t g = 0; g < kv_heads; ++g) {
    const int64_t first = g * layout.group, end = first + layout.group;
    int64_t h = first;
    for (; h + kHeadsPerBlock <= end; h += kHeadsPerBlock) {
      if (h == first) accumulate_head_group<V, kDtype, kFetches>(p, v, rows, layout, correction, acc, h, fetch);
      else accumulate_head_group<V, kDtype, false>(p, v, rows, layout, correction, acc, h, fetch);
    }
    for (; h < end; ++h) accumulate_head<V, kDtype, false>(p, v, rows, layout, correction, acc, h, 0, fetch);
  }
  fetch.finish();
}

template <class V, alibi_dtype kDtype, bool kFetches>
ALIBI_SIMD_TARGET void accumulate_tokens_of(const float* p, const TokenRun& v, const TokenRun* ahead,
                                            const HeadLayout& layout, const float* correction, float* acc) {
  with_rows(v, [&](const auto& rows) {
    accumulate_tokens_in<V, kDtype, kFetches>(p, v, rows, ahead, layout, correction, acc);
  });
}

template <class V, alibi_dtype kDtype>
ALIBI_SIMD_TARGET void accumulate_tokens_as(const float* p, const TokenRun& v, const TokenRun* ahead,
                                            const HeadLayout& layout, const float* correction, float* acc) {
  if (ahead) accumulate_tokens_of<V, kDtype, true>(p, v, ahead, layout, correction, acc);
  else accumulate_tokens_of<V, kDtype, false>(p, v, ahead, layout, correction, acc);
}

template <class V>
ALIBI_SIMD_TARGET void accumulate_tokens(const float* p, const TokenRun& v, const TokenRun* ahead,
                                         const HeadLayout& layout, const float* correction, float* acc) {
  switch (v.dtype) {
    case ALIBI_DTYPE_F16: return accumulate_tokens_as<V, ALIBI_DTYPE_F16>(p, v, ahead, layout, correction, acc);
    case ALIBI_DTYPE_BF16: return accumulate_tokens_as<V, ALIBI_DTYPE_BF16>(p, v, ahead, layout, correction, acc);
    default: return accumulate_tokens_as<V, ALIBI_DTYPE_F32>(p, v, ahead, layout, correction, acc);
  }
}

template <class V>
TileOps simd_tile_ops(const char* name, bool values_widened_in_gemm, bool decode_prefetches_mha_half,
                      const Bf16PairOps* bf16_pairs = nullptr) {
  return {name,
          gemm<V>,
          gemm_half_b<V>,
          values_widened_in_gemm,
          softmax_block<V>,
          widen<V>,
          narrow<V>,
          bf16_pairs ? bf16_pairs->gemm : nullptr,
          score_tokens<V>,
          bf16_pairs ? bf16_pairs->score_tokens : nullptr,
          bf16_pairs ? bf16_pairs->decode_from_group : 0,
          bf16_pairs && bf16_pairs->query_by_key_head,
          accumulate_tokens<V>,
          decode_prefetches_mha_half,
          exp_in_place<V>,
          gradient_block<V>};
}

}  // namespace

}  // namespace alibi::cpu
