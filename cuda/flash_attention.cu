// The fused attention kernel (f16/bf16): one CTA per (row tile, query head). A tile's rows all
// see the same slices (the mask plan's tiles for CUDA, cuda_common.cuh); the CTA walks them in
// mask order and, per slice, only the key interval its rows can see (the plan's span), so fully
// masked key tiles are never loaded. The online
// softmax state (row max, row sum, f32 output accumulator) carries over from one slice to the
// next: slices sharing rows merge by log-sum-exp inside the CTA, in a fixed order, so results
// are bitwise reproducible (deterministic mode needs nothing more).
//
// Per key tile: S = Q K^T with mma.sync m16n8k16 (f32 accumulation), then scale and the cell
// score and online-softmax step of core/kernel/attention_math.h, in f32; then O += P V,
// where P is split into a high and a low half-precision part (two MMAs) so that P V keeps f32
// accuracy instead of rounding the probabilities to 11 (f16) or 8 (bf16) bits.
#include <cmath>

#include "core/kernel/attention_math.h"
#include "cuda/cuda_common.cuh"
#include "cuda/mma.cuh"

namespace alibi::cuda {

namespace {

constexpr int kRows = kTileRows;  // 16 query rows per warp
static_assert(kRows == 16 * kWarps, "each warp owns 16 rows of the tile");

// A compile-time tile shape: head_dim rounded up to kDim (zero padded), kKeys keys per step.
template <int Dim, int Keys>
struct TileShape {
  static constexpr int kDim = Dim;
  static constexpr int kKeys = Keys;
  static constexpr int kStride = Dim + kPad;  // shared-memory row, in 16-bit elements
  static constexpr size_t kSharedBytes = size_t(kRows + 2 * Keys) * kStride * 2 + Keys * 4;
  static_assert(Dim % 16 == 0 && Keys % 16 == 0, "MMA steps are 16 wide");
};

struct FusedParams {
  Operand q, k, v, out;
  float* lse;  // nullptr or (Hq, Tq)
  int64_t lse_head_stride, lse_row_stride;
  int head_dim;
  int group;  // query heads per kv head
  float scale, softcap;
  SlopeTable slopes;  // values in device memory
  MaskView mask;      // the device copy: slices, positions, tiles and spans
  int first_head;     // of this launch (grids hold at most kMaxGridHeads heads)
  bool vector_loads;  // every row 16-byte aligned and head_dim % 8 == 0: cp.async
};

// One CTA's work. Thread layout (mma.sync fragments): warp w owns tile rows [16w, 16w + 16);
// lane l holds rows 16w + l/4 and 16w + l/4 + 8, and of every 8-column block the columns
// 2(l%4) and 2(l%4) + 1.
template <class T, class Shape>
class FusedCta {
 public:
  static constexpr int kDim = Shape::kDim, kKeys = Shape::kKeys, kStride = Shape::kStride;

  __device__ FusedCta(const FusedParams& p, uint16_t* shared)
      : p_(p),
        tile_(p.mask.tiles[blockIdx.x]),
        head_(p.first_head + int(blockIdx.y)),
        kv_head_(head_ / p.group),
        rows_(tile_.row_end - tile_.row_begin),
        warp_(int(threadIdx.x) / 32),
        lane_(int(threadIdx.x) % 32),
        busy_(warp_ * 16 < rows_),
        q_tile_(shared),
        k_tile_(q_tile_ + kRows * kStride),
        v_tile_(k_tile_ + kKeys * kStride),
        key_positions_(reinterpret_cast<int32_t*>(v_tile_ + kKeys * kStride)) {}

  __device__ void run() {
    load_rows<kRows, Shape>(q_tile_, p_.q.at(tile_.row_begin, head_), p_.q.token_stride, rows_,
                            p_.head_dim, p_.vector_loads);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    for (int i = 0; i < tile_.num_spans; ++i) attend(p_.mask.spans[tile_.first_span + i]);
    write_rows();
  }

 private:
  // The tile-local row of the thread's row j (0 or 1).
  __device__ int local_row(int j) const { return warp_ * 16 + lane_ / 4 + 8 * j; }

  __device__ void attend(const SliceRows& span) {
    const Slice slice = p_.mask.slices[span.slice];
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    const int64_t first = tile_.row_begin - slice.q_begin;
    const int64_t key_lo = span.key_lo, key_hi = span.key_hi;  // what the tile's rows see
    RowKeys keys[2];
    for (int j = 0; j < 2; ++j) {
      if (local_row(j) >= rows_) continue;
      const KeyInterval visible = visible_keys(slice.type, first + local_row(j), sq, sk);
      keys[j] = {visible, p_.mask.q_positions[tile_.row_begin + local_row(j)]};
    }
    const float slope = p_.slopes.at(slice.sequence, head_);
    for (int64_t key = key_lo; key < key_hi; key += kKeys) {
      const int count = int(key_hi - key < kKeys ? key_hi - key : kKeys);
      load_keys(slice.k_begin + key, count);
      cp_async_wait<1>();  // K (V may still be in flight)
      __syncthreads();
      float s[kKeys / 8][4];
      if (busy_) {
        scores(s, count);
        finish_scores(s, key, keys, slope);
        online_softmax(s);
      }
      cp_async_wait<0>();
      __syncthreads();
      if (busy_) accumulate(s, count);
    }
  }

  // Keys [first, first + count) of the kv head, and their positions.
  __device__ void load_keys(int64_t first, int count) {
    __syncthreads();  // every warp is done with the previous tiles
    load_rows<kKeys, Shape>(k_tile_, p_.k.at(first, kv_head_), p_.k.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    cp_async_commit();
    load_rows<kKeys, Shape>(v_tile_, p_.v.at(first, kv_head_), p_.v.token_stride, count,
                            p_.head_dim, p_.vector_loads);
    cp_async_commit();
    for (int j = threadIdx.x; j < kKeys; j += kThreads)
      key_positions_[j] = j < count ? p_.mask.k_positions[first + j] : 0;
  }

  // s = Q K^T for the warp's 16 rows and the tile's keys (columns >= count stay 0).
  __device__ void scores(float (&s)[kKeys / 8][4], int count) const {
    row_products<T, kKeys, kStride>(s, q_tile_, k_tile_, p_.head_dim, count);
  }

  // Raw products to final scores: scale, softcap, ALiBi bias, mask (-inf).
  __device__ void finish_scores(float (&s)[kKeys / 8][4], int64_t first_key,
                                const RowKeys (&keys)[2], float slope) const {
#pragma unroll
    for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const RowKeys& row = keys[e / 2];
        const int column = fragment_column(n, e);
        s[n][e] = row.visible.contains(first_key + column)
                      ? cell_score(s[n][e] * p_.scale, p_.softcap, slope, row.position,
                                   key_positions_[column], 0.0f)
                      : masked_score();
      }
    }
  }

  // Folds the tile's scores into the running max and sum of each row and rescales the
  // accumulator; leaves exp(s - max) in s.
  __device__ void online_softmax(float (&s)[kKeys / 8][4]) {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float tile_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n)
        tile_max = fmaxf(tile_max, fmaxf(s[n][2 * j], s[n][2 * j + 1]));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 1));
      tile_max = fmaxf(tile_max, __shfl_xor_sync(0xffffffffu, tile_max, 2));
      const SoftmaxStep step = softmax_step(row_max_[j], tile_max);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kKeys / 8; ++n) {
#pragma unroll
        for (int e = 2 * j; e < 2 * j + 2; ++e) {
          s[n][e] = expf(s[n][e] - step.shift);
          sum += s[n][e];
        }
      }
      row_sum_[j] = running_sum(row_sum_[j], step.correction, sum);  // this thread's columns only
      row_max_[j] = step.max;
#pragma unroll
      for (int n = 0; n < kDim / 8; ++n) {
        acc_[n][2 * j] *= step.correction;
        acc_[n][2 * j + 1] *= step.correction;
      }
    }
  }

  // acc += P V. The score fragments of two 8-key blocks form the A operand of one 16-key step.
  __device__ void accumulate(const float (&s)[kKeys / 8][4], int count) {
    const uint16_t* v_row =
        v_tile_ + (lane_ % 8 + (lane_ / 8 % 2) * 8) * kStride + (lane_ / 16) * 8;
#pragma unroll
    for (int step = 0; step < kKeys / 16; ++step) {
      if (step * 16 >= count) break;
      uint32_t hi[4], lo[4];
      split_pair<T>(s[2 * step][0], s[2 * step][1], hi[0], lo[0]);
      split_pair<T>(s[2 * step][2], s[2 * step][3], hi[1], lo[1]);
      split_pair<T>(s[2 * step + 1][0], s[2 * step + 1][1], hi[2], lo[2]);
      split_pair<T>(s[2 * step + 1][2], s[2 * step + 1][3], hi[3], lo[3]);
#pragma unroll
      for (int pair = 0; pair < kDim / 16; ++pair) {
        if (pair * 16 >= p_.head_dim) break;
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_row + step * 16 * kStride + pair * 16);
        T::mma(acc_[2 * pair], hi, b[0], b[1]);
        T::mma(acc_[2 * pair], lo, b[0], b[1]);
        T::mma(acc_[2 * pair + 1], hi, b[2], b[3]);
        T::mma(acc_[2 * pair + 1], lo, b[2], b[3]);
      }
    }
  }

  __device__ void write_rows() const {
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      float sum = row_sum_[j];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      if (local_row(j) >= rows_) continue;
      const int64_t row = tile_.row_begin + local_row(j);
      const float scale = output_scale(sum) / kProbabilityScale;  // exact: a power of two
      uint16_t* out = p_.out.at(row, head_);
#pragma unroll
      for (int n = 0; n < kDim / 8; ++n) {
        const int column = n * 8 + (lane_ % 4) * 2;
        if (column < p_.head_dim) out[column] = T::store(finished_output(acc_[n][2 * j], scale));
        if (column + 1 < p_.head_dim)
          out[column + 1] = T::store(finished_output(acc_[n][2 * j + 1], scale));
      }
      if (p_.lse && lane_ % 4 == 0)
        p_.lse[head_ * p_.lse_head_stride + row * p_.lse_row_stride] = row_lse(row_max_[j], sum);
    }
  }

  const FusedParams& p_;
  const RowTile tile_;
  const int head_, kv_head_, rows_, warp_, lane_;
  const bool busy_;  // the warp has rows in the tile
  uint16_t* const q_tile_;
  uint16_t* const k_tile_;
  uint16_t* const v_tile_;
  int32_t* const key_positions_;
  float acc_[kDim / 8][4] = {};
  float row_max_[2] = {-INFINITY, -INFINITY};
  float row_sum_[2] = {0.0f, 0.0f};
};

template <class T, class Shape>
__global__ void __launch_bounds__(kThreads)
    flash_attention_kernel(const __grid_constant__ FusedParams p) {
  extern __shared__ uint4 shared[];  // uint4: 16-byte aligned
  FusedCta<T, Shape>(p, reinterpret_cast<uint16_t*>(shared)).run();
}

template <class T, class Shape>
void launch(FusedParams params, int num_tiles, int heads, cudaStream_t stream) {
  const auto kernel = flash_attention_kernel<T, Shape>;
  CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(Shape::kSharedBytes)));
  for_head_runs(heads, [&](int first_head, unsigned count) {
    params.first_head = first_head;
    kernel<<<dim3(unsigned(num_tiles), count), kThreads, Shape::kSharedBytes, stream>>>(params);
    CUDA_CHECK_LAUNCH();
  });
}

// The three compiled tile shapes; head_dim is zero padded up to the next one.
template <class T>
void launch_for_head_dim(const FusedParams& params, int num_tiles, int heads, cudaStream_t stream) {
  if (params.head_dim <= 64)
    launch<T, TileShape<64, 64>>(params, num_tiles, heads, stream);
  else if (params.head_dim <= 128)
    launch<T, TileShape<128, 64>>(params, num_tiles, heads, stream);
  else
    launch<T, TileShape<256, 32>>(params, num_tiles, heads, stream);
}

FusedParams fused_params(const ForwardArgs& args, const SlopeTable& slopes) {
  FusedParams p{};
  p.q = operand(args.q);
  p.k = operand(args.k);
  p.v = operand(args.v);
  p.out = operand(args.out);
  p.lse = args.lse ? static_cast<float*>(args.lse->data) : nullptr;
  p.lse_head_stride = args.lse ? args.lse->strides[0] : 0;
  p.lse_row_stride = args.lse ? args.lse->strides[1] : 0;
  p.head_dim = int(args.q.shape[2]);
  p.group = int(args.q.shape[1] / args.k.shape[1]);
  p.scale = args.scale;
  p.softcap = args.softcap;
  p.slopes = slopes;
  p.mask = device_mask_view(args.device_mask);
  p.vector_loads = p.head_dim % 8 == 0 && rows_are_16_byte_aligned(args.q) &&
                   rows_are_16_byte_aligned(args.k) && rows_are_16_byte_aligned(args.v);
  return p;
}

}  // namespace

std::string fused_attention_unsupported(const ForwardArgs& args) {
  if (args.q.dtype == ALIBI_DTYPE_F32) return "f32 inputs (the fused kernel takes f16 and bf16)";
  if (args.q.shape[2] > kFusedMaxHeadDim)
    return "head_dim " + std::to_string(args.q.shape[2]) + " > " + std::to_string(kFusedMaxHeadDim);
  if (args.attn_bias) return "an attn_bias tensor";
  return "";
}

void fused_attention(const ForwardArgs& args, const SlopeTable& slopes, cudaStream_t stream) {
  const FusedParams params = fused_params(args, slopes);
  const int num_tiles = int(params.mask.num_tiles), heads = int(args.q.shape[1]);
  if (num_tiles == 0) return;
  if (args.q.dtype == ALIBI_DTYPE_F16)
    launch_for_head_dim<F16>(params, num_tiles, heads, stream);
  else
    launch_for_head_dim<BF16>(params, num_tiles, heads, stream);
}

}  // namespace alibi::cuda
