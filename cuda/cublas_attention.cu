// Attention through cuBLAS, for every dtype, head_dim and attn_bias. Query rows come in the mask
// plan's tiles (at most kTileRows rows that see the same slices); per tile and slice (span), the
// visible key interval is cut into pieces of at most key_chunk keys. For each piece:
// gather K and V (converted to f32, one copy per query head, so GQA needs no special GEMM),
// S = scale * Q K^T (one strided-batched GEMM over the heads), a softmax kernel that finishes the
// scores (the cell score of core/kernel/attention_math.h) and folds them into the tile's running
// max / sum (the online-softmax step) while rescaling its f32 accumulator, then acc += P V (a
// second GEMM). A final kernel finishes the rows and writes out and lse. All GEMMs are f32 with f32 compute (no TF32), pieces run in a fixed
// order: results are deterministic. Working memory is bounded by the chunk sizes, never
// total_q x total_k.
#include <algorithm>
#include <cmath>

#include "core/kernel/attention_math.h"
#include "cuda/cublas_common.cuh"
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int32_t kChunkRows = kTileRows;
constexpr int kThreads = 128;
// Bound of the per-piece f32 buffers (K, V and S), in floats: 128 MiB.
constexpr int64_t kPieceFloats = int64_t(32) << 20;

// The running softmax of a tile's rows: max and sum per (head, row), acc per (head, row, d).
struct TileAccumulator {
  float* max;
  float* sum;
  float* acc;
};

__global__ void init_accumulator_kernel(TileAccumulator state, int64_t rows, int head_dim) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < rows * head_dim;
       i += int64_t(gridDim.x) * blockDim.x) {
    state.acc[i] = 0.0f;
    if (i < rows) {
      state.max[i] = -INFINITY;
      state.sum[i] = 0.0f;
    }
  }
}

struct PieceParams {
  float* scores;  // (heads, rows, keys): scale * q.k in, exp(s - shift) out
  TileAccumulator state;
  int rows, keys, head_dim;
  int first_head;     // of this launch: the block's head is first_head + blockIdx.y
  int32_t row_begin;  // first (global) row of the tile
  PieceScores cells;
};

// One block per (row, head) of the piece: the online-softmax step of its keys.
__global__ void softmax_update_kernel(const __grid_constant__ PieceParams p) {
  __shared__ float reduce[32];
  __shared__ float correction;
  const int r = int(blockIdx.x), head = p.first_head + int(blockIdx.y);
  const int64_t row = p.row_begin + r;
  const int64_t state_index = int64_t(head) * p.rows + r;
  float* s = p.scores + state_index * p.keys;
  const KeyInterval visible = keys_of_row(p.cells.slice, row);
  const int32_t q_position = p.cells.q_positions[row];
  const float slope = p.cells.slopes.at(p.cells.slice.sequence, head);

  float local_max = -INFINITY;
  for (int c = threadIdx.x; c < p.keys; c += blockDim.x) {
    const int64_t key = p.cells.first_key + c;
    s[c] = visible.contains(key) ? p.cells.score(head, row, key, s[c], q_position, slope)
                                 : masked_score();
    local_max = fmaxf(local_max, s[c]);
  }
  const SoftmaxStep step = softmax_step(
      p.state.max[state_index],
      block_reduce(local_max, [](float a, float b) { return fmaxf(a, b); }, reduce));
  float local_sum = 0.0f;
  for (int c = threadIdx.x; c < p.keys; c += blockDim.x) {
    s[c] = expf(s[c] - step.shift);
    local_sum += s[c];
  }
  const float sum = block_reduce(local_sum, [](float a, float b) { return a + b; }, reduce);
  if (threadIdx.x == 0) {
    correction = step.correction;
    p.state.sum[state_index] = running_sum(p.state.sum[state_index], step.correction, sum);
    p.state.max[state_index] = step.max;
  }
  __syncthreads();
  float* acc = p.state.acc + state_index * p.head_dim;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) acc[d] *= correction;
}

struct FinishParams {
  TileAccumulator state;
  int rows, head_dim;
  int first_head;
  int32_t row_begin;
  DeviceTensor out;
  DeviceTensor lse;
  bool has_lse;
};

// One block per (row, head) of the tile: out and lse of the finished row.
__global__ void finish_kernel(const __grid_constant__ FinishParams p) {
  const int r = int(blockIdx.x), head = p.first_head + int(blockIdx.y);
  const int64_t state_index = int64_t(head) * p.rows + r, row = p.row_begin + r;
  const float max = p.state.max[state_index], sum = p.state.sum[state_index];
  const float scale = output_scale(sum);
  const float* acc = p.state.acc + state_index * p.head_dim;
  for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x)
    p.out.store(p.out.offset(row, head, d), finished_output(acc[d], scale));
  if (p.has_lse && threadIdx.x == 0) p.lse.store(p.lse.offset(head, row, 0), row_lse(max, sum));
}

class CublasAttention {
 public:
  CublasAttention(const ForwardArgs& args, const SlopeTable& slopes, cudaStream_t stream,
                  cudaMemPool_t pool, cublasHandle_t cublas)
      : args_(args),
        slopes_(slopes),
        stream_(stream),
        gemm_{cublas, int(args.q.shape[1])},
        heads_(int(args.q.shape[1])),
        group_(int(args.q.shape[1] / args.k.shape[1])),
        head_dim_(int(args.q.shape[2])),
        key_chunk_(key_chunk(heads_, head_dim_)),
        mask_(*args.mask),
        device_mask_(device_mask_view(args.device_mask)),
        memory_(workspace_bytes(), stream, pool) {
    q_ = memory_.at<float>();
    k_ = q_ + rows_floats(head_dim_);
    v_ = k_ + keys_floats(head_dim_);
    scores_ = v_ + keys_floats(head_dim_);
    state_ = {scores_ + int64_t(heads_) * kChunkRows * key_chunk_, nullptr, nullptr};
    state_.sum = state_.max + rows_floats(1);
    state_.acc = state_.sum + rows_floats(1);
  }

  void run() {
    for (int64_t t = 0; t < mask_.num_tiles; ++t) attend_tile(mask_.tiles[t]);
  }

 private:
  // Keys per piece: K, V and S within kPieceFloats, at least 64, at most 4096.
  static int key_chunk(int heads, int head_dim) {
    const int64_t fit = kPieceFloats / (int64_t(heads) * (2 * head_dim + kChunkRows));
    return int(std::clamp<int64_t>(fit / 64 * 64, 64, 4096));
  }
  int64_t rows_floats(int width) const { return int64_t(heads_) * kChunkRows * width; }
  int64_t keys_floats(int width) const { return int64_t(heads_) * key_chunk_ * width; }
  size_t workspace_bytes() const {
    const int64_t floats = rows_floats(head_dim_) + 2 * keys_floats(head_dim_) +
                           int64_t(heads_) * kChunkRows * key_chunk_ + rows_floats(2) +
                           rows_floats(head_dim_);
    return size_t(floats) * sizeof(float);
  }

  void attend_tile(const RowTile& tile) {
    const int rows = tile.row_end - tile.row_begin;
    init_accumulator_kernel<<<grid_blocks(int64_t(heads_) * rows * head_dim_, kThreads), kThreads, 0,
                              stream_>>>(state_, int64_t(heads_) * rows, head_dim_);
    CUDA_CHECK_LAUNCH();
    if (tile.num_spans > 0) gather(q_, args_.q, tile.row_begin, rows, 1);
    for (int i = 0; i < tile.num_spans; ++i) {
      const SliceRows& span = mask_.spans[tile.first_span + i];
      const Slice& slice = mask_.slices[span.slice];
      for (int64_t key = span.key_lo; key < span.key_hi; key += key_chunk_)
        attend_piece(tile, slice, key, int(std::min<int64_t>(key_chunk_, span.key_hi - key)));
    }
    finish(tile);
  }

  void gather(float* dst, const TensorView& src, int64_t first, int count, int group) {
    gather_heads_kernel<<<grid_blocks(int64_t(heads_) * count * head_dim_, 256), 256, 0, stream_>>>(
        dst, device_tensor(src), first, count, heads_, group, head_dim_);
    CUDA_CHECK_LAUNCH();
  }

  void attend_piece(const RowTile& tile, const Slice& slice, int64_t first_key, int keys) {
    const int rows = tile.row_end - tile.row_begin;
    gather(k_, args_.k, slice.k_begin + first_key, keys, group_);
    gather(v_, args_.v, slice.k_begin + first_key, keys, group_);
    // Row-major S (rows x keys) is column-major S^T = K Q^T.
    gemm_(CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, head_dim_, args_.scale, k_, head_dim_,
          int64_t(keys) * head_dim_, q_, head_dim_, int64_t(rows) * head_dim_, 0.0f, scores_, keys,
          int64_t(rows) * keys);
    softmax_update(tile, slice, first_key, keys);
    // Row-major acc (rows x D) += P V is column-major acc^T += V^T P^T.
    gemm_(CUBLAS_OP_N, CUBLAS_OP_N, head_dim_, rows, keys, 1.0f, v_, head_dim_,
          int64_t(keys) * head_dim_, scores_, keys, int64_t(rows) * keys, 1.0f, state_.acc,
          head_dim_, int64_t(rows) * head_dim_);
  }

  void softmax_update(const RowTile& tile, const Slice& slice, int64_t first_key, int keys) {
    PieceParams p{};
    p.scores = scores_;
    p.state = state_;
    p.rows = tile.row_end - tile.row_begin;
    p.keys = keys;
    p.head_dim = head_dim_;
    p.row_begin = tile.row_begin;
    p.cells =
        piece_scores(slice, first_key, args_.softcap, slopes_, device_mask_, args_.attn_bias);
    for_head_runs(heads_, [&](int first_head, unsigned count) {
      p.first_head = first_head;
      softmax_update_kernel<<<dim3(unsigned(p.rows), count), kThreads, 0, stream_>>>(p);
      CUDA_CHECK_LAUNCH();
    });
  }

  void finish(const RowTile& tile) {
    FinishParams p{};
    p.state = state_;
    p.rows = tile.row_end - tile.row_begin;
    p.head_dim = head_dim_;
    p.row_begin = tile.row_begin;
    p.out = device_tensor(args_.out);
    p.has_lse = args_.lse != nullptr;
    if (p.has_lse) p.lse = device_tensor(*args_.lse);
    for_head_runs(heads_, [&](int first_head, unsigned count) {
      p.first_head = first_head;
      finish_kernel<<<dim3(unsigned(p.rows), count), kThreads, 0, stream_>>>(p);
      CUDA_CHECK_LAUNCH();
    });
  }

  const ForwardArgs& args_;
  const SlopeTable slopes_;
  const cudaStream_t stream_;
  const BatchedSgemm gemm_;
  const int heads_, group_, head_dim_, key_chunk_;
  const MaskView& mask_;         // host arrays: the tiles to walk
  const MaskView& device_mask_;  // device arrays: what the kernels read
  StreamMemory memory_;
  float* q_;  // (heads, rows, D)
  float* k_;  // (heads, keys, D), kv heads repeated per query head
  float* v_;
  float* scores_;  // (heads, rows, keys)
  TileAccumulator state_;
};

}  // namespace

void cublas_attention(const ForwardArgs& args, const SlopeTable& slopes, cudaStream_t stream,
                      cudaMemPool_t pool, cublasHandle_t cublas) {
  CublasAttention(args, slopes, stream, pool, cublas).run();
}

}  // namespace alibi::cuda
