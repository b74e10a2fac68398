// The attention backward through cuBLAS, for every case (dtype, head_dim, attn_bias, softcap,
// GQA, slopes, strides). Query rows come in the mask plan's tiles, as in the forward's cuBLAS
// path; per tile, its Q and dout are gathered once (f32, per head), and per span the visible key
// interval is cut into pieces of at most key_chunk keys. For each piece: gather K and V (f32,
// one copy per query head), S = scale * Q K^T and dP = dout V^T (strided-batched SGEMMs over
// the heads), a kernel that turns them into P and dX (the gradient of x = scale q.k) and each
// row's part of dslopes, then dQ_tile += dX K, and per query head dK = dX^T Q and dV = P^T dout,
// which a last kernel adds, the query heads of a group in order, into the f32 accumulators of
// the piece's keys. GEMMs only run for wanted gradients. All GEMMs are f32 with f32 compute (no
// TF32), no atomics, pieces run in a fixed order: results are deterministic. Working memory is
// bounded by the chunk sizes (and the f32 dK, dV accumulators), never total_q x total_k.
#include <algorithm>

#include "core/kernel/attention_math.h"
#include "cuda/cublas_common.cuh"
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int32_t kChunkRows = kTileRows;
constexpr int kThreads = 128;
constexpr int kGatherThreads = 256;
// Bound of the per-piece f32 buffers (K, V, S and dP), in floats: 128 MiB.
constexpr int64_t kPieceFloats = int64_t(32) << 20;

struct GradientParams {
  float* scores;       // (heads, rows, keys): x = scale * q.k in, P out
  float* dscores;      // (heads, rows, keys): dP = dout . v in, the gradient of x out; null: P only
  float* slope_rows;   // (heads, rows): each row's part of dslopes; null: not wanted
  int rows, keys;
  int first_head;      // of this launch: the block's head is first_head + blockIdx.y
  int32_t row_begin;   // first (global) row of the tile
  int32_t span_begin;  // the span's (global) rows [span_begin, span_end) of the tile
  int32_t span_end;
  PieceScores cells;
  DeviceTensor lse;
  const float* row_dot;  // [head * total_q + row]
  int64_t total_q;
};

// One block per (row, head) of the piece: P and, when dscores is given, dX of its keys
// (cpu gradient_block's cell math; masked cells and rows outside the span get 0), and the
// row's part of dslopes.
__global__ void gradient_kernel(const __grid_constant__ GradientParams p) {
  __shared__ float reduce[32];
  const int r = int(blockIdx.x), head = p.first_head + int(blockIdx.y);
  const int64_t row = p.row_begin + r;
  const int64_t first_cell = (int64_t(head) * p.rows + r) * p.keys;
  float* s = p.scores + first_cell;
  float* ds = p.dscores ? p.dscores + first_cell : nullptr;
  const bool in_span = row >= p.span_begin && row < p.span_end;
  const KeyInterval visible = in_span ? keys_of_row(p.cells.slice, row) : KeyInterval{0, 0};
  const int32_t q_position = p.cells.q_positions[row];
  const float slope = p.cells.slopes.at(p.cells.slice.sequence, head);
  const float lse = p.lse.load(p.lse.offset(head, row, 0));
  const float row_dot = ds ? p.row_dot[int64_t(head) * p.total_q + row] : 0.0f;

  float slope_sum = 0.0f;
  for (int c = threadIdx.x; c < p.keys; c += blockDim.x) {
    const int64_t key = p.cells.first_key + c;
    if (!visible.contains(key)) {
      s[c] = 0.0f;
      if (ds) ds[c] = 0.0f;
      continue;
    }
    const float x = s[c];
    const float probability =
        saved_probability(p.cells.score(head, row, key, x, q_position, slope), lse);
    s[c] = probability;
    if (!ds) continue;
    const float dscore = score_gradient(probability, ds[c], row_dot);
    ds[c] = raw_score_gradient(dscore, x, p.cells.softcap);
    const int32_t k_position = p.cells.k_positions[p.cells.slice.k_begin + key];
    slope_sum += slope_gradient_term(dscore, q_position, k_position);
  }
  if (!p.slope_rows) return;
  const float total = block_reduce(slope_sum, [](float a, float b) { return a + b; }, reduce);
  if (threadIdx.x == 0) p.slope_rows[int64_t(head) * p.rows + r] = total;
}

// slots[head * num_spans + span] += the sum of the head's row parts (rows in order).
__global__ void add_slope_rows_kernel(double* slots, const float* slope_rows, int rows,
                                      int heads, int64_t num_spans, int64_t span) {
  for (int64_t head = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; head < heads;
       head += int64_t(gridDim.x) * blockDim.x) {
    double sum = 0.0;
    for (int r = 0; r < rows; ++r) sum += slope_rows[head * rows + r];
    slots[head * num_spans + span] += sum;
  }
}

// The sum over a group's query heads (in order) of per-head rows (heads, keys, D), at key n,
// kv head kv_head, element d.
__device__ float group_sum(const float* per_head, int64_t n, int64_t kv_head, int64_t d,
                           int keys, int group, int head_dim) {
  float sum = 0.0f;
  for (int g = 0; g < group; ++g)
    sum += per_head[((kv_head * group + g) * keys + n) * head_dim + d];
  return sum;
}

struct KeyGradients {
  const float* dk_heads;  // (heads, keys, D) of the piece; null: dK not wanted
  const float* dv_heads;
  float* dk;  // (total_k, kv_heads, D) accumulators
  float* dv;
  int64_t first_key;  // global
  int keys, kv_heads, group, head_dim;
};

// dK and dV accumulators of the piece's keys += their group sums.
__global__ void add_key_gradients_kernel(const __grid_constant__ KeyGradients p) {
  const int64_t n_elements = int64_t(p.keys) * p.kv_heads * p.head_dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n_elements;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = i % p.head_dim, kv_head = i / p.head_dim % p.kv_heads,
                  n = i / (int64_t(p.head_dim) * p.kv_heads);
    const int64_t at = ((p.first_key + n) * p.kv_heads + kv_head) * p.head_dim + d;
    if (p.dk_heads) p.dk[at] += group_sum(p.dk_heads, n, kv_head, d, p.keys, p.group, p.head_dim);
    if (p.dv_heads) p.dv[at] += group_sum(p.dv_heads, n, kv_head, d, p.keys, p.group, p.head_dim);
  }
}

// Rows [first, first + count) of a (T, H, D) gradient: a view of the same elements.
TensorView token_rows(const TensorView& gradient, int64_t first, int64_t count) {
  TensorView rows = gradient;
  rows.shape[0] = count;
  rows.data = static_cast<char*>(gradient.data) +
              first * gradient.strides[0] * int64_t(dtype_size(gradient.dtype));
  return rows;
}

class CublasBackward {
 public:
  CublasBackward(const BackwardArgs& args, const SlopeTable& slopes, const BackwardWork& work,
                 cudaStream_t stream, cudaMemPool_t pool, cublasHandle_t cublas)
      : args_(args),
        fwd_(args.forward),
        slopes_(slopes),
        work_(work),
        stream_(stream),
        gemm_{cublas, int(fwd_.q.shape[1])},
        heads_(int(fwd_.q.shape[1])),
        kv_heads_(int(fwd_.k.shape[1])),
        group_(heads_ / kv_heads_),
        head_dim_(int(fwd_.q.shape[2])),
        key_chunk_(key_chunk(heads_, head_dim_)),
        wants_dx_(args.dq || args.dk || work.span_slopes),
        mask_(*fwd_.mask),
        device_mask_(device_mask_view(fwd_.device_mask)),
        memory_(workspace_bytes(), stream, pool) {
    float* next = memory_.at<float>();
    const auto take = [&next](int64_t floats) {
      float* taken = next;
      next += floats;
      return taken;
    };
    q_ = take(rows_floats(head_dim_));
    dout_ = take(rows_floats(head_dim_));
    dq_ = take(args.dq ? rows_floats(head_dim_) : 0);
    slope_rows_ = take(work.span_slopes ? rows_floats(1) : 0);
    k_ = take(keys_floats());
    v_ = take(keys_floats());
    scores_ = take(cells_floats());
    dscores_ = take(wants_dx_ ? cells_floats() : 0);
    dk_ = take(args.dk ? accumulator_floats() : 0);
    dv_ = take(args.dv ? accumulator_floats() : 0);
  }

  void run() {
    if (work_.span_slopes)
      zero(work_.span_slopes, size_t(heads_) * size_t(mask_.num_spans) * sizeof(double));
    if (args_.dk) zero(dk_, size_t(accumulator_floats()) * sizeof(float));
    if (args_.dv) zero(dv_, size_t(accumulator_floats()) * sizeof(float));
    for (int64_t t = 0; t < mask_.num_tiles; ++t) backward_tile(mask_.tiles[t]);
    if (args_.dk) store_gradient(dk_, *args_.dk, fwd_.scale, stream_);
    if (args_.dv) store_gradient(dv_, *args_.dv, 1.0f, stream_);
  }

 private:
  // Keys per piece: K, V, S and dP within kPieceFloats, at least 64, at most 4096.
  static int key_chunk(int heads, int head_dim) {
    const int64_t fit = kPieceFloats / (int64_t(heads) * (2 * head_dim + 2 * kChunkRows));
    return int(std::clamp<int64_t>(fit / 64 * 64, 64, 4096));
  }
  int64_t rows_floats(int width) const { return int64_t(heads_) * kChunkRows * width; }
  int64_t keys_floats() const { return int64_t(heads_) * key_chunk_ * head_dim_; }
  int64_t cells_floats() const { return int64_t(heads_) * kChunkRows * key_chunk_; }
  int64_t accumulator_floats() const { return mask_.total_k * kv_heads_ * head_dim_; }
  size_t workspace_bytes() const {
    const int64_t floats =
        (2 + (args_.dq ? 1 : 0)) * rows_floats(head_dim_) +
        (work_.span_slopes ? rows_floats(1) : 0) + 2 * keys_floats() +
        (wants_dx_ ? 2 : 1) * cells_floats() +
        ((args_.dk ? 1 : 0) + (args_.dv ? 1 : 0)) * accumulator_floats();
    return size_t(floats) * sizeof(float);
  }

  void zero(void* data, size_t bytes) {
    if (bytes > 0) CUDA_CHECK(cudaMemsetAsync(data, 0, bytes, stream_));
  }

  // dQ of the tile's rows (zeros where no span is) and every span's part of the others.
  void backward_tile(const RowTile& tile) {
    const int rows = tile.row_end - tile.row_begin;
    if (args_.dq) zero(dq_, size_t(rows_floats(head_dim_)) * sizeof(float));
    if (tile.num_spans > 0) {
      gather(q_, fwd_.q, tile.row_begin, rows, 1);
      gather(dout_, args_.dout, tile.row_begin, rows, 1);
    }
    for (int i = 0; i < tile.num_spans; ++i) {
      const int64_t span_index = tile.first_span + i;
      const SliceRows& span = mask_.spans[span_index];
      for (int64_t key = span.key_lo; key < span.key_hi; key += key_chunk_)
        backward_piece(tile, span_index, key,
                       int(std::min<int64_t>(key_chunk_, span.key_hi - key)));
    }
    if (args_.dq)
      store_gradient(dq_, token_rows(*args_.dq, tile.row_begin, rows), fwd_.scale, stream_);
  }

  void gather(float* dst, const TensorView& src, int64_t first, int count, int group) {
    gather_heads_kernel<<<grid_blocks(int64_t(heads_) * count * head_dim_, kGatherThreads),
                          kGatherThreads, 0, stream_>>>(dst, device_tensor(src), first, count,
                                                        heads_, group, head_dim_);
    CUDA_CHECK_LAUNCH();
  }

  // Keys [first_key, first_key + keys) (slice-local) of a span against the tile's rows.
  void backward_piece(const RowTile& tile, int64_t span_index, int64_t first_key, int keys) {
    const int rows = tile.row_end - tile.row_begin;
    const int64_t first_token = mask_.slices[mask_.spans[span_index].slice].k_begin + first_key;
    const int64_t rows_stride = int64_t(rows) * head_dim_, keys_stride = int64_t(keys) * head_dim_,
                  cells_stride = int64_t(rows) * keys;
    gather(k_, fwd_.k, first_token, keys, group_);
    // Row-major S (rows x keys) = scale * Q K^T is column-major S^T = scale * K Q^T.
    gemm_(CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, head_dim_, fwd_.scale, k_, head_dim_, keys_stride,
          q_, head_dim_, rows_stride, 0.0f, scores_, keys, cells_stride);
    if (wants_dx_) {
      gather(v_, fwd_.v, first_token, keys, group_);
      // Row-major dP (rows x keys) = dout V^T is column-major dP^T = V dout^T.
      gemm_(CUBLAS_OP_T, CUBLAS_OP_N, keys, rows, head_dim_, 1.0f, v_, head_dim_, keys_stride,
            dout_, head_dim_, rows_stride, 0.0f, dscores_, keys, cells_stride);
    }
    gradients(tile, span_index, first_key, keys);
    if (args_.dq) {
      // Row-major dQ (rows x D; rows H * D apart, heads D apart) += dX K is column-major
      // dQ^T += K^T dX^T.
      gemm_(CUBLAS_OP_N, CUBLAS_OP_N, head_dim_, rows, keys, 1.0f, k_, head_dim_, keys_stride,
            dscores_, keys, cells_stride, 1.0f, dq_, heads_ * head_dim_, head_dim_);
    }
    if (args_.dk) {
      // Row-major dK (keys x D) = dX^T Q is column-major dK^T = Q^T dX; into k_ (K is read).
      gemm_(CUBLAS_OP_N, CUBLAS_OP_T, head_dim_, keys, rows, 1.0f, q_, head_dim_, rows_stride,
            dscores_, keys, cells_stride, 0.0f, k_, head_dim_, keys_stride);
    }
    if (args_.dv) {
      // Row-major dV (keys x D) = P^T dout is column-major dV^T = dout^T P; into v_ (V is read).
      gemm_(CUBLAS_OP_N, CUBLAS_OP_T, head_dim_, keys, rows, 1.0f, dout_, head_dim_, rows_stride,
            scores_, keys, cells_stride, 0.0f, v_, head_dim_, keys_stride);
    }
    if (args_.dk || args_.dv) add_key_gradients(first_token, keys);
  }

  // P into scores_, dX into dscores_ (when wanted) and the span's slots += the piece's dslopes.
  void gradients(const RowTile& tile, int64_t span_index, int64_t first_key, int keys) {
    const SliceRows& span = mask_.spans[span_index];
    GradientParams p{};
    p.scores = scores_;
    p.dscores = wants_dx_ ? dscores_ : nullptr;
    p.slope_rows = work_.span_slopes ? slope_rows_ : nullptr;
    p.rows = tile.row_end - tile.row_begin;
    p.keys = keys;
    p.row_begin = tile.row_begin;
    p.span_begin = span.row_begin;
    p.span_end = span.row_end;
    p.cells = piece_scores(mask_.slices[span.slice], first_key, fwd_.softcap, slopes_,
                           device_mask_, fwd_.attn_bias);
    p.lse = device_tensor(*fwd_.lse);
    p.row_dot = work_.row_dot;
    p.total_q = mask_.total_q;
    for_head_runs(heads_, [&](int first_head, unsigned count) {
      p.first_head = first_head;
      gradient_kernel<<<dim3(unsigned(p.rows), count), kThreads, 0, stream_>>>(p);
      CUDA_CHECK_LAUNCH();
    });
    if (!work_.span_slopes) return;
    add_slope_rows_kernel<<<grid_blocks(heads_, kThreads), kThreads, 0, stream_>>>(
        work_.span_slopes, slope_rows_, p.rows, heads_, mask_.num_spans, span_index);
    CUDA_CHECK_LAUNCH();
  }

  void add_key_gradients(int64_t first_token, int keys) {
    KeyGradients p{};
    p.dk_heads = args_.dk ? k_ : nullptr;
    p.dv_heads = args_.dv ? v_ : nullptr;
    p.dk = dk_;
    p.dv = dv_;
    p.first_key = first_token;
    p.keys = keys;
    p.kv_heads = kv_heads_;
    p.group = group_;
    p.head_dim = head_dim_;
    add_key_gradients_kernel<<<grid_blocks(int64_t(keys) * kv_heads_ * head_dim_, kGatherThreads),
                               kGatherThreads, 0, stream_>>>(p);
    CUDA_CHECK_LAUNCH();
  }

  const BackwardArgs& args_;
  const ForwardArgs& fwd_;
  const SlopeTable slopes_;
  const BackwardWork work_;
  const cudaStream_t stream_;
  const BatchedSgemm gemm_;
  const int heads_, kv_heads_, group_, head_dim_, key_chunk_;
  const bool wants_dx_;          // dQ, dK or dslopes: dP and dX are needed, not only P
  const MaskView& mask_;         // host arrays: the tiles to walk
  const MaskView& device_mask_;  // device arrays: what the kernels read
  StreamMemory memory_;
  float* q_;            // (heads, rows, D)
  float* dout_;         // (heads, rows, D)
  float* dq_;           // (rows, heads, D): the tile's dQ, unscaled
  float* slope_rows_;   // (heads, rows)
  float* k_;            // (heads, keys, D), kv heads repeated per query head; then dK per head
  float* v_;            // likewise V; then dV per head
  float* scores_;       // (heads, rows, keys): S, then P
  float* dscores_;      // (heads, rows, keys): dP, then dX
  float* dk_;           // (total_k, kv_heads, D): dK, unscaled
  float* dv_;           // (total_k, kv_heads, D): dV
};

}  // namespace

void cublas_backward(const BackwardArgs& args, const SlopeTable& slopes, const BackwardWork& work,
                     cudaStream_t stream, cudaMemPool_t pool, cublasHandle_t cublas) {
  if (!args.dq && !args.dk && !args.dv && !work.span_slopes) return;
  CublasBackward(args, slopes, work, stream, pool, cublas).run();
}

}  // namespace alibi::cuda
