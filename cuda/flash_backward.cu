// The fused backward (f16/bf16), FlashAttention-2 style: P is recomputed from q, k and the
// forward's lse, never stored. Two kernels; each CTA writes what it owns once, and every sum
// runs in a fixed order (no atomics), so results are bitwise reproducible.
//  - Key kernel: one CTA per (key block of kBackwardKeyBlock keys, part of head_dim, kv head)
//    accumulates dK and dV of its keys: over the query heads of the group in order, the slices
//    of its block in mask order, and the rows of each slice that see its keys, kRows at a
//    time: S^T = K Q^T and dP^T = V dout^T, then P and dX cell by cell (attention_math.h),
//    then dV += P^T dout and dK += dX^T Q.
//  - Query kernel: one CTA per (row tile, query head), walking the tile's spans as the forward
//    kernel does: S = Q K^T and dP = dout V^T per step of keys, then dQ += dX K, and each
//    span's part of dslopes (summed per thread, over the warp by shuffles, over warps in order).
// Head_dim 256: dK and dV of 64 keys would take 256 f32 accumulator registers per thread, so
// the key kernel splits the columns between two CTAs (kParts), each recomputing S and dP over
// all 256 (a split of dK from dV would recompute less, at the cost of a second kernel body);
// the query kernel takes 32 keys per step, as the forward does.
//
// Precision: the MMAs (mma.sync m16n8k16) accumulate in f32. P and dX enter them as A
// operands split into a high and a low half-precision part (two MMAs), about 22 (f16) or 16
// (bf16) significant bits. P, in [0, 1], is scaled by kProbabilityScale as in the forward. dX
// has no bound, and f16 holds magnitudes only up to 65504 and is subnormal below 2^-14: each A
// row of dX (a key in the key kernel, a query row in the query kernel) enters scaled by
// 2^(kGradientTop - e), e being the largest binary exponent of |dX| the row has had so far,
// so that its largest value lies in [2^14, 2^15) and the parts of smaller ones stay normal down
// to 2^-28 of it (below, they lose bits, at most 2^-38 of the row's largest |dX|). When e
// grows, the row's accumulator is multiplied by 2^(e_old - e_new); the stored gradient by
// 2^(e - kGradientTop). Powers of two: exact. Bf16, with f32's range, takes the same path.
// Non-finite dX (from inf or NaN inputs) leaves e as it is and propagates.
#include <cmath>

#include "core/kernel/attention_math.h"
#include "cuda/cuda_common.cuh"
#include "cuda/mma.cuh"

namespace alibi::cuda {

namespace {

constexpr int kBlockKeys = kBackwardKeyBlock;  // key kernel: 16 keys per warp
static_assert(kBlockKeys == 16 * kWarps, "each warp owns 16 keys of the block");
constexpr int kTileQueryRows = kTileRows;  // query kernel: 16 rows per warp
static_assert(kTileQueryRows == 16 * kWarps, "each warp owns 16 rows of the tile");

constexpr int kGradientTop = 14;
constexpr int kLowestExponent = kGradientTop - 127;  // 2^(kGradientTop - e) stays finite

// Query kernel: head_dim rounded up to kDim (zero padded), kKeys keys per step.
template <int Dim, int Keys>
struct QueryShape {
  static constexpr int kDim = Dim;
  static constexpr int kKeys = Keys;
  static constexpr int kStride = Dim + kPad;  // shared-memory row, in 16-bit elements
  // Q, dout, K and V tiles, key positions, one slope sum per warp.
  static constexpr size_t kSharedBytes =
      size_t(2 * kTileQueryRows + 2 * Keys) * kStride * 2 + Keys * 4 + kWarps * 8;
  static_assert(Dim % 16 == 0 && Keys % 16 == 0, "MMA steps are 16 wide");
};

// Key kernel: head_dim rounded up to kDim, kRows query rows per step, dK and dV columns in
// kParts parts of kPart.
template <int Dim, int Rows, int Part>
struct KeyShape {
  static constexpr int kDim = Dim;
  static constexpr int kRows = Rows;
  static constexpr int kPart = Part;
  static constexpr int kParts = Dim / Part;
  static constexpr int kStride = Dim + kPad;
  // K, V, Q and dout tiles, then per row: lse, Di, position, visible keys (lo, hi).
  static constexpr size_t kSharedBytes =
      size_t(2 * kBlockKeys + 2 * Rows) * kStride * 2 + Rows * 20;
  static_assert(Dim % Part == 0 && Part % 16 == 0 && Rows % 16 == 0, "MMA steps are 16 wide");
};

struct BackwardParams {
  Operand q, k, v, dout;
  const float* lse;  // (Hq, Tq)
  int64_t lse_head_stride, lse_row_stride;
  const float* row_dot;  // BackwardWork::row_dot
  double* span_slopes;   // BackwardWork::span_slopes, or null
  DeviceTensor dq, dk, dv;  // data null: not wanted
  KeyBlockSlices key_blocks;
  int head_dim;
  int group;  // query heads per kv head
  float scale, softcap;
  SlopeTable slopes;  // values in device memory
  MaskView mask;      // the device copy
  int first_head;     // of this launch: query heads (query kernel) or kv heads (key kernel)
  bool vector_loads;  // every row 16-byte aligned and head_dim % 8 == 0: cp.async
};

// acc += (f * factor) B: f the warp's C fragments of 16 rows x Columns (the k dimension), row
// j of them times factor[j], as split A operands; B rows [0, Columns) of b_tile, columns
// [first_column, first_column + Part) of its head_dim. Steps of 16 at or past `count` are
// skipped (f is 0 there).
// A from C: blocks 2s and 2s + 1 give a0a1 a2a3 and a4a5 a6a7 of step s. B: ldmatrix .trans of
// rows l%8 + 8((l/8)%2), column half l/16: b0 b1 of two 8-column blocks.
template <class T, int Columns, int Part, int Stride>
__device__ void accumulate(float (&acc)[Part / 8][4], const float (&f)[Columns / 8][4],
                           const float (&factor)[2], const uint16_t* b_tile, int first_column,
                           int head_dim, int count) {
  const int lane = int(threadIdx.x) % 32;
  const uint16_t* b_row =
      b_tile + (lane % 8 + (lane / 8 % 2) * 8) * Stride + (lane / 16) * 8 + first_column;
#pragma unroll
  for (int step = 0; step < Columns / 16; ++step) {
    if (step * 16 >= count) break;
    uint32_t hi[4], lo[4];
    split<T>(f[2 * step][0] * factor[0], f[2 * step][1] * factor[0], hi[0], lo[0]);
    split<T>(f[2 * step][2] * factor[1], f[2 * step][3] * factor[1], hi[1], lo[1]);
    split<T>(f[2 * step + 1][0] * factor[0], f[2 * step + 1][1] * factor[0], hi[2], lo[2]);
    split<T>(f[2 * step + 1][2] * factor[1], f[2 * step + 1][3] * factor[1], hi[3], lo[3]);
#pragma unroll
    for (int pair = 0; pair < Part / 16; ++pair) {
      if (first_column + pair * 16 >= head_dim) break;
      uint32_t b[4];
      ldmatrix_x4_trans(b, b_row + step * 16 * Stride + pair * 16);
      T::mma(acc[2 * pair], hi, b[0], b[1]);
      T::mma(acc[2 * pair], lo, b[0], b[1]);
      T::mma(acc[2 * pair + 1], hi, b[2], b[3]);
      T::mma(acc[2 * pair + 1], lo, b[2], b[3]);
    }
  }
}

// The scale of dX's two A rows of a thread (header comment): exponent[j] of row j.
struct GradientScale {
  int exponent[2] = {kLowestExponent, kLowestExponent};

  // Takes in a step's dX fragments f: raises the rows' exponents, rescales acc to match, and
  // gives the factors of f. Every lane of the warp calls it (quad shuffles).
  template <int Columns, int Part>
  __device__ void update(const float (&f)[Columns / 8][4], float (&acc)[Part / 8][4],
                         float (&factor)[2]) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float largest = 0.0f;
#pragma unroll
      for (int n = 0; n < Columns / 8; ++n)
        largest = fmaxf(largest, fmaxf(fabsf(f[n][2 * j]), fabsf(f[n][2 * j + 1])));
      largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, 1));
      largest = fmaxf(largest, __shfl_xor_sync(0xffffffffu, largest, 2));
      const int exponent_now = isfinite(largest) && largest > 0.0f ? ilogbf(largest) : exponent[j];
      if (exponent_now > exponent[j]) {
        const float correction = ldexpf(1.0f, exponent[j] - exponent_now);
        exponent[j] = exponent_now;
#pragma unroll
        for (int n = 0; n < Part / 8; ++n) {
          acc[n][2 * j] *= correction;
          acc[n][2 * j + 1] *= correction;
        }
      }
      factor[j] = ldexpf(1.0f, kGradientTop - exponent[j]);
    }
  }

  // What row j's accumulator is multiplied by to give its true sum.
  __device__ float unscale(int j) const { return ldexpf(1.0f, exponent[j] - kGradientTop); }
};

// P, dS and dX of one cell from its raw product q.k and dP = dout.v; all 0 where the mask hides
// it.
struct CellGradient {
  float p, ds, dx;
};

__device__ CellGradient cell_gradient(const BackwardParams& p, float product, float dp,
                                      bool visible, float lse, float row_dot, float slope,
                                      int32_t qpos, int32_t kpos) {
  if (!visible) return {0.0f, 0.0f, 0.0f};
  const float x = product * p.scale;
  const float score = cell_score(x, p.softcap, slope, qpos, kpos, 0.0f);
  const float probability = saved_probability(score, lse);
  const float ds = score_gradient(probability, dp, row_dot);
  return {probability, ds, raw_score_gradient(ds, x, p.softcap)};
}

// dQ and the span slots of one (row tile, query head). Warp w owns tile rows [16w, 16w + 16).
template <class T, class Shape>
class QueryCta {
 public:
  static constexpr int kDim = Shape::kDim, kKeys = Shape::kKeys, kStride = Shape::kStride;

  __device__ QueryCta(const BackwardParams& p, uint16_t* shared)
      : p_(p),
        tile_(p.mask.tiles[blockIdx.x]),
        head_(p.first_head + int(blockIdx.y)),
        kv_head_(head_ / p.group),
        rows_(tile_.row_end - tile_.row_begin),
        warp_(int(threadIdx.x) / 32),
        lane_(int(threadIdx.x) % 32),
        busy_(warp_ * 16 < rows_),
        q_tile_(shared),
        dout_tile_(q_tile_ + kTileQueryRows * kStride),
        k_tile_(dout_tile_ + kTileQueryRows * kStride),
        v_tile_(k_tile_ + kKeys * kStride),
        key_positions_(reinterpret_cast<int32_t*>(v_tile_ + kKeys * kStride)),
        warp_slopes_(reinterpret_cast<double*>(key_positions_ + kKeys)) {}

  __device__ void run() {
    load_rows<kTileQueryRows, Shape>(q_tile_, p_.q.at(tile_.row_begin, head_), p_.q.token_stride,
                                     rows_, p_.head_dim, p_.vector_loads);
    load_rows<kTileQueryRows, Shape>(dout_tile_, p_.dout.at(tile_.row_begin, head_),
                                     p_.dout.token_stride, rows_, p_.head_dim, p_.vector_loads);
    cp_async_commit();
    load_row_terms();
    cp_async_wait<0>();
    __syncthreads();
    for (int i = 0; i < tile_.num_spans; ++i) walk_span(i);
    if (p_.dq.data) write_rows();
  }

 private:
  // The tile-local row of the thread's row j (0 or 1).
  __device__ int local_row(int j) const { return warp_ * 16 + lane_ / 4 + 8 * j; }

  __device__ void load_row_terms() {
    for (int j = 0; j < 2; ++j) {
      if (local_row(j) >= rows_) continue;
      const int64_t row = tile_.row_begin + local_row(j);
      lse_[j] = p_.lse[head_ * p_.lse_head_stride + row * p_.lse_row_stride];
      row_dot_[j] = p_.row_dot[int64_t(head_) * p_.mask.total_q + row];
    }
  }

  __device__ void walk_span(int i) {
    const SliceRows& span = p_.mask.spans[tile_.first_span + i];
    const Slice slice = p_.mask.slices[span.slice];
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    const int64_t first = tile_.row_begin - slice.q_begin;
    RowKeys keys[2];
    for (int j = 0; j < 2; ++j) {
      if (local_row(j) >= rows_) continue;
      const KeyInterval visible = visible_keys(slice.type, first + local_row(j), sq, sk);
      keys[j] = {visible, p_.mask.q_positions[tile_.row_begin + local_row(j)]};
    }
    const float slope = p_.slopes.at(slice.sequence, head_);
    double slope_sum = 0.0;
    for (int64_t key = span.key_lo; key < span.key_hi; key += kKeys) {
      const int count = int(span.key_hi - key < kKeys ? span.key_hi - key : kKeys);
      load_keys(slice.k_begin + key, count);
      cp_async_wait<0>();
      __syncthreads();
      if (busy_) slope_sum += key_step(key, count, keys, slope);
    }
    if (p_.span_slopes)
      store_span_slope(slope_sum, int64_t(head_) * p_.mask.num_spans + tile_.first_span + i);
  }

  // Keys [first, first + count) of the kv head, and their positions.
  __device__ void load_keys(int64_t first, int count) {
    __syncthreads();  // every warp is done with the previous tiles
    load_rows<kKeys, Shape>(k_tile_, p_.k.at(first, kv_head_), p_.k.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    load_rows<kKeys, Shape>(v_tile_, p_.v.at(first, kv_head_), p_.v.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    cp_async_commit();
    for (int j = threadIdx.x; j < kKeys; j += kThreads)
      key_positions_[j] = j < count ? p_.mask.k_positions[first + j] : 0;
  }

  // The warp's rows against the loaded keys (slice-local first_key on): dQ += dX K; returns
  // the thread's part of dslopes.
  __device__ float key_step(int64_t first_key, int count, const RowKeys (&keys)[2], float slope) {
    float s[kKeys / 8][4], dp[kKeys / 8][4];
    row_products<T, kKeys, kStride>(s, q_tile_, k_tile_, p_.head_dim, count);
    row_products<T, kKeys, kStride>(dp, dout_tile_, v_tile_, p_.head_dim, count);
    float slope_sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const RowKeys& row = keys[e / 2];
        const int column = fragment_column(n, e);
        const CellGradient cell = cell_gradient(
            p_, s[n][e], dp[n][e], row.visible.contains(first_key + column), lse_[e / 2],
            row_dot_[e / 2], slope, row.position, key_positions_[column]);
        slope_sum += slope_gradient_term(cell.ds, row.position, key_positions_[column]);
        dp[n][e] = cell.dx;
      }
    }
    if (p_.dq.data) {
      float factor[2];
      scale_.update<kKeys, kDim>(dp, dq_, factor);
      accumulate<T, kKeys, kDim, kStride>(dq_, dp, factor, k_tile_, 0, p_.head_dim, count);
    }
    return slope_sum;
  }

  // The CTA's sum of the threads' sums: over each warp by butterfly shuffles, then warp by warp
  // in order.
  __device__ void store_span_slope(double sum, int64_t slot) {
#pragma unroll
    for (int lanes = 1; lanes < 32; lanes *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, lanes);
    if (lane_ == 0) warp_slopes_[warp_] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
      double total = 0.0;
      for (int w = 0; w < kWarps; ++w) total += warp_slopes_[w];
      p_.span_slopes[slot] = total;
    }
    __syncthreads();  // warp_slopes_ is read before the next span writes it
  }

  __device__ void write_rows() const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (local_row(j) >= rows_) continue;
      const int64_t row = tile_.row_begin + local_row(j);
      const float unscale = scale_.unscale(j);
#pragma unroll
      for (int n = 0; n < kDim / 8; ++n) {
#pragma unroll
        for (int e = 2 * j; e < 2 * j + 2; ++e) {
          const int column = fragment_column(n, e);
          if (column < p_.head_dim)
            p_.dq.store(p_.dq.offset(row, head_, column), dq_[n][e] * unscale * p_.scale);
        }
      }
    }
  }

  const BackwardParams& p_;
  const RowTile tile_;
  const int head_, kv_head_, rows_, warp_, lane_;
  const bool busy_;  // the warp has rows in the tile
  uint16_t* const q_tile_;
  uint16_t* const dout_tile_;
  uint16_t* const k_tile_;
  uint16_t* const v_tile_;
  int32_t* const key_positions_;
  double* const warp_slopes_;
  float lse_[2] = {-INFINITY, -INFINITY};
  float row_dot_[2] = {0.0f, 0.0f};
  float dq_[kDim / 8][4] = {};
  GradientScale scale_;
};

// dK and dV of one (key block, column part, kv head). Warp w owns the block's keys
// [16w, 16w + 16).
template <class T, class Shape>
class KeyCta {
 public:
  static constexpr int kRows = Shape::kRows, kPart = Shape::kPart, kStride = Shape::kStride;

  __device__ KeyCta(const BackwardParams& p, uint16_t* shared)
      : p_(p),
        block_(int64_t(blockIdx.x) / Shape::kParts),
        first_column_(int(blockIdx.x) % Shape::kParts * kPart),
        kv_head_(p.first_head + int(blockIdx.y)),
        first_key_(block_ * kBlockKeys),
        count_(int(p.mask.total_k - first_key_ < kBlockKeys ? p.mask.total_k - first_key_
                                                             : kBlockKeys)),
        warp_(int(threadIdx.x) / 32),
        lane_(int(threadIdx.x) % 32),
        busy_(warp_ * 16 < count_),
        k_tile_(shared),
        v_tile_(k_tile_ + kBlockKeys * kStride),
        q_tile_(v_tile_ + kBlockKeys * kStride),
        dout_tile_(q_tile_ + kRows * kStride),
        row_lse_(reinterpret_cast<float*>(dout_tile_ + kRows * kStride)),
        row_dot_(row_lse_ + kRows),
        row_position_(reinterpret_cast<int32_t*>(row_dot_ + kRows)),
        row_lo_(row_position_ + kRows),
        row_hi_(row_lo_ + kRows) {}

  __device__ void run() {
    load_rows<kBlockKeys, Shape>(k_tile_, p_.k.at(first_key_, kv_head_), p_.k.token_stride,
                                 count_, p_.head_dim, p_.vector_loads);
    load_rows<kBlockKeys, Shape>(v_tile_, p_.v.at(first_key_, kv_head_), p_.v.token_stride,
                                 count_, p_.head_dim, p_.vector_loads);
    cp_async_commit();
    for (int j = 0; j < 2; ++j)
      if (key(j) < p_.mask.total_k) key_position_[j] = p_.mask.k_positions[key(j)];
    cp_async_wait<0>();
    __syncthreads();
    const KeyBlockSlices& blocks = p_.key_blocks;
    for (int head = kv_head_ * p_.group; head < (kv_head_ + 1) * p_.group; ++head)
      for (int64_t i = blocks.first[block_]; i < blocks.first[block_ + 1]; ++i)
        visit(p_.mask.slices[blocks.slices[i]], head);
    write_keys();
  }

 private:
  // The global index of the thread's key j (0 or 1).
  __device__ int64_t key(int j) const { return first_key_ + warp_ * 16 + lane_ / 4 + 8 * j; }

  // The slice's rows that see the block's keys, kRows at a time.
  __device__ void visit(const Slice& slice, int head) {
    const int64_t k0 = (first_key_ > slice.k_begin ? first_key_ : slice.k_begin) - slice.k_begin;
    const int64_t end = first_key_ + count_ < slice.k_end ? first_key_ + count_ : slice.k_end;
    const int64_t k1 = end - slice.k_begin;
    if (k0 >= k1) return;
    const RowRun rows = rows_seeing(slice, k0, k1);
    const float slope = p_.slopes.at(slice.sequence, head);
    for (int64_t row = rows.begin; row < rows.end; row += kRows)
      piece(slice, head, slope, row, int(rows.end - row < kRows ? rows.end - row : kRows));
  }

  // Rows [first_row, first_row + count) of a slice against the block's keys.
  __device__ void piece(const Slice& slice, int head, float slope, int64_t first_row, int count) {
    __syncthreads();  // every warp is done with the previous rows
    load_rows<kRows, Shape>(q_tile_, p_.q.at(first_row, head), p_.q.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    load_rows<kRows, Shape>(dout_tile_, p_.dout.at(first_row, head), p_.dout.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    cp_async_commit();
    load_row_terms(slice, head, first_row, count);
    cp_async_wait<0>();
    __syncthreads();
    if (busy_) row_step(slice.k_begin, count, slope);
  }

  // lse, Di, position and visible keys of each loaded row; rows past count see nothing.
  __device__ void load_row_terms(const Slice& slice, int head, int64_t first_row, int count) {
    for (int i = threadIdx.x; i < kRows; i += kThreads) {
      const int64_t row = first_row + i;
      const KeyInterval visible = i < count ? keys_of_row(slice, row) : KeyInterval{0, 0};
      row_lse_[i] = i < count ? p_.lse[head * p_.lse_head_stride + row * p_.lse_row_stride]
                              : -INFINITY;
      row_dot_[i] = i < count ? p_.row_dot[int64_t(head) * p_.mask.total_q + row] : 0.0f;
      row_position_[i] = i < count ? p_.mask.q_positions[row] : 0;
      row_lo_[i] = int32_t(visible.lo);
      row_hi_[i] = int32_t(visible.hi);
    }
  }

  // The warp's keys against the loaded rows: dV += P^T dout, dK += dX^T Q.
  __device__ void row_step(int64_t k_begin, int count, float slope) {
    float s[kRows / 8][4], dp[kRows / 8][4];
    row_products<T, kRows, kStride>(s, k_tile_, q_tile_, p_.head_dim, count);
    row_products<T, kRows, kStride>(dp, v_tile_, dout_tile_, p_.head_dim, count);
#pragma unroll
    for (int n = 0; n < kRows / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int column = fragment_column(n, e);
        const KeyInterval visible{row_lo_[column], row_hi_[column]};
        const CellGradient cell = cell_gradient(
            p_, s[n][e], dp[n][e], visible.contains(key(e / 2) - k_begin), row_lse_[column],
            row_dot_[column], slope, row_position_[column], key_position_[e / 2]);
        s[n][e] = cell.p;
        dp[n][e] = cell.dx;
      }
    }
    if (p_.dv.data) {
      const float factor[2] = {kProbabilityScale, kProbabilityScale};
      accumulate<T, kRows, kPart, kStride>(dv_, s, factor, dout_tile_, first_column_,
                                           p_.head_dim, count);
    }
    if (p_.dk.data) {
      float factor[2];
      scale_.update<kRows, kPart>(dp, dk_, factor);
      accumulate<T, kRows, kPart, kStride>(dk_, dp, factor, q_tile_, first_column_, p_.head_dim,
                                           count);
    }
  }

  __device__ void write_keys() const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      if (key(j) >= p_.mask.total_k) continue;
      const float unscale = scale_.unscale(j);
#pragma unroll
      for (int n = 0; n < kPart / 8; ++n) {
#pragma unroll
        for (int e = 2 * j; e < 2 * j + 2; ++e) {
          const int column = first_column_ + fragment_column(n, e);
          if (column >= p_.head_dim) continue;
          if (p_.dk.data)
            p_.dk.store(p_.dk.offset(key(j), kv_head_, column), dk_[n][e] * unscale * p_.scale);
          if (p_.dv.data)
            p_.dv.store(p_.dv.offset(key(j), kv_head_, column), dv_[n][e] / kProbabilityScale);
        }
      }
    }
  }

  const BackwardParams& p_;
  const int64_t block_;
  const int first_column_;
  const int kv_head_;
  const int64_t first_key_;
  const int count_;  // keys in the block
  const int warp_, lane_;
  const bool busy_;  // the warp has keys in the block
  uint16_t* const k_tile_;
  uint16_t* const v_tile_;
  uint16_t* const q_tile_;
  uint16_t* const dout_tile_;
  float* const row_lse_;
  float* const row_dot_;
  int32_t* const row_position_;
  int32_t* const row_lo_;
  int32_t* const row_hi_;
  int32_t key_position_[2] = {0, 0};
  float dk_[kPart / 8][4] = {};
  float dv_[kPart / 8][4] = {};
  GradientScale scale_;  // of dk_
};

template <class T, class Shape>
__global__ void __launch_bounds__(kThreads)
    query_backward_kernel(const __grid_constant__ BackwardParams p) {
  extern __shared__ uint4 shared[];  // uint4: 16-byte aligned
  QueryCta<T, Shape>(p, reinterpret_cast<uint16_t*>(shared)).run();
}

template <class T, class Shape>
__global__ void __launch_bounds__(kThreads)
    key_backward_kernel(const __grid_constant__ BackwardParams p) {
  extern __shared__ uint4 shared[];
  KeyCta<T, Shape>(p, reinterpret_cast<uint16_t*>(shared)).run();
}

// blocks x heads CTAs of kernel, heads in runs of at most kMaxGridHeads.
template <class Kernel>
void launch(Kernel kernel, size_t shared_bytes, BackwardParams params, unsigned blocks,
            int64_t heads, cudaStream_t stream) {
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(shared_bytes)));
  for_head_runs(heads, [&](int first_head, unsigned count) {
    params.first_head = first_head;
    kernel<<<dim3(blocks, count), kThreads, shared_bytes, stream>>>(params);
    CUDA_CHECK_LAUNCH();
  });
}

// The wanted kernels of one compiled tile shape.
struct Launches {
  bool keys, queries;
  int64_t kv_heads, heads;
};

template <class T, class Keys, class Queries>
void launch_shape(const BackwardParams& params, const Launches& what, cudaStream_t stream) {
  if (what.keys && params.key_blocks.num_blocks > 0)
    launch(key_backward_kernel<T, Keys>, Keys::kSharedBytes, params,
           unsigned(params.key_blocks.num_blocks * Keys::kParts), what.kv_heads, stream);
  if (what.queries && params.mask.num_tiles > 0)
    launch(query_backward_kernel<T, Queries>, Queries::kSharedBytes, params,
           unsigned(params.mask.num_tiles), what.heads, stream);
}

// The three compiled shapes; head_dim is zero padded up to the next one. The key kernel takes
// 32 rows per step from head_dim 128 on: with 64, its f32 dK and dV (128 registers) and S and dP
// of 64 rows spill.
template <class T>
void launch_for_head_dim(const BackwardParams& params, const Launches& what, cudaStream_t stream) {
  if (params.head_dim <= 64)
    launch_shape<T, KeyShape<64, 64, 64>, QueryShape<64, 64>>(params, what, stream);
  else if (params.head_dim <= 128)
    launch_shape<T, KeyShape<128, 32, 128>, QueryShape<128, 64>>(params, what, stream);
  else
    launch_shape<T, KeyShape<256, 32, 128>, QueryShape<256, 32>>(params, what, stream);
}

DeviceTensor wanted(const TensorView* gradient) {
  return gradient ? device_tensor(*gradient) : DeviceTensor{};
}

BackwardParams backward_params(const BackwardArgs& args, const SlopeTable& slopes,
                               const BackwardWork& work) {
  const ForwardArgs& fwd = args.forward;
  BackwardParams p{};
  p.q = operand(fwd.q);
  p.k = operand(fwd.k);
  p.v = operand(fwd.v);
  p.dout = operand(args.dout);
  p.lse = static_cast<const float*>(fwd.lse->data);
  p.lse_head_stride = fwd.lse->strides[0];
  p.lse_row_stride = fwd.lse->strides[1];
  p.row_dot = work.row_dot;
  p.span_slopes = work.span_slopes;
  p.dq = wanted(args.dq);
  p.dk = wanted(args.dk);
  p.dv = wanted(args.dv);
  p.key_blocks = work.key_blocks;
  p.head_dim = int(fwd.q.shape[2]);
  p.group = int(fwd.q.shape[1] / fwd.k.shape[1]);
  p.scale = fwd.scale;
  p.softcap = fwd.softcap;
  p.slopes = slopes;
  p.mask = device_mask_view(fwd.device_mask);
  p.vector_loads = p.head_dim % 8 == 0 && rows_are_16_byte_aligned(fwd.q) &&
                   rows_are_16_byte_aligned(fwd.k) && rows_are_16_byte_aligned(fwd.v) &&
                   rows_are_16_byte_aligned(args.dout);
  return p;
}

}  // namespace

std::string fused_backward_unsupported(const BackwardArgs& args) {
  const ForwardArgs& fwd = args.forward;
  if (fwd.q.dtype == ALIBI_DTYPE_F32) return "f32 inputs (the fused backward takes f16 and bf16)";
  if (fwd.q.shape[2] > kFusedMaxHeadDim)
    return "head_dim " + std::to_string(fwd.q.shape[2]) + " > " + std::to_string(kFusedMaxHeadDim);
  if (fwd.attn_bias) return "an attn_bias tensor";
  return "";
}

void fused_backward(const BackwardArgs& args, const SlopeTable& slopes, const BackwardWork& work,
                    cudaStream_t stream) {
  const BackwardParams params = backward_params(args, slopes, work);
  const Launches what{args.dk || args.dv, args.dq || work.span_slopes,
                      args.forward.k.shape[1], args.forward.q.shape[1]};
  if (args.forward.q.dtype == ALIBI_DTYPE_F16)
    launch_for_head_dim<F16>(params, what, stream);
  else
    launch_for_head_dim<BF16>(params, what, stream);
}

}  // namespace alibi::cuda
