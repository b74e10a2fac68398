// The bias builders on the GPU, with the formulas of core/kernel/formulas.h.
#include <cmath>

#include "core/kernel/attention_math.h"
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int kThreads = 256;

// Calls fn(i0, i1, i2) for every index of a (n0, n1, n2) array, grid-stride.
template <class Fn>
__device__ void for_each_index(int64_t n0, int64_t n1, int64_t n2, Fn&& fn) {
  const int64_t n = n0 * n1 * n2;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    fn(i / (n1 * n2), i / n2 % n1, i % n2);
}

__global__ void fill_kernel(DeviceTensor out, int64_t n0, int64_t n1, int64_t n2, float value) {
  for_each_index(n0, n1, n2, [&](int64_t i0, int64_t i1, int64_t i2) {
    out.store(out.offset(i0, i1, i2), value);
  });
}

struct BiasParams {
  DeviceTensor out;
  MaskView mask;      // the device copy
  SlopeTable slopes;  // values in device memory
  DeviceTensor attn_bias;
  int64_t attn_bias_heads;  // 0: none
  int first_head;           // of this launch: the block's head is first_head + blockIdx.y
};

// One block per (row tile, head): the visible cells of the slices the tile's rows see.
__global__ void bias_kernel(const __grid_constant__ BiasParams p) {
  const RowTile tile = p.mask.tiles[blockIdx.x];
  const int head = p.first_head + int(blockIdx.y);
  for (int i = 0; i < tile.num_spans; ++i) {
    const SliceRows span = p.mask.spans[tile.first_span + i];
    const Slice slice = p.mask.slices[span.slice];
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    const float slope = p.slopes.at(slice.sequence, head);
    for (int64_t row = span.row_begin; row < span.row_end; ++row) {
      const KeyInterval visible = visible_keys(slice.type, row - slice.q_begin, sq, sk);
      const int32_t q_position = p.mask.q_positions[row];
      for (int64_t c = visible.lo + threadIdx.x; c < visible.hi; c += blockDim.x) {
        const int64_t key = slice.k_begin + c;
        float value = alibi_bias(slope, q_position, p.mask.k_positions[key]);
        if (p.attn_bias_heads > 0)
          value += p.attn_bias.load(
              p.attn_bias.offset(attn_bias_head(p.attn_bias_heads, head), row, key));
        p.out.store(p.out.offset(head, row, key), value);
      }
    }
  }
}

struct DynamicBatchingParams {
  DeviceTensor out;
  int64_t heads, rows, width, total_k;
  const int64_t* seqstarts;  // batch + 1
  const int64_t* kvstarts;
  int batch;
  SlopeTable slopes;
  DeviceTensor attn_mask;
  int attn_mask_ndim;  // 0: none
};

// The batch whose block holds row r (seqstarts[b] <= r < seqstarts[b + 1]), or -1.
__device__ int batch_of_row(const int64_t* starts, int batch, int64_t r) {
  int lo = 0, hi = batch + 1;  // first index with starts[index] > r, in [lo, hi)
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (starts[mid] > r)
      hi = mid;
    else
      lo = mid + 1;
  }
  return lo - 1;
}

__global__ void dynamic_batching_kernel(const __grid_constant__ DynamicBatchingParams p) {
  for_each_index(p.heads, p.rows, p.width, [&](int64_t h, int64_t r, int64_t c) {
    const int b = batch_of_row(p.seqstarts, p.batch, r);
    float value = 0.0f;
    if (b >= 0 && c >= p.kvstarts[b] && c < p.kvstarts[b + 1]) {
      const int64_t block_rows = p.seqstarts[b + 1] - p.seqstarts[b];
      const int64_t block_keys = p.kvstarts[b + 1] - p.kvstarts[b];
      const int64_t i = r - p.seqstarts[b];
      value = dynamic_batching_value(p.slopes.at(0, int(h)),
                                     (c - p.kvstarts[b]) - i - (block_keys - block_rows));
    }
    if (p.attn_mask_ndim > 0 && c < p.total_k)
      value += p.attn_mask.load(p.attn_mask_ndim == 3 ? p.attn_mask.offset(h, r, c)
                                                      : p.attn_mask.offset(r, c, 0));
    p.out.store(p.out.offset(h, r, c), value);
  });
}

struct BloomParams {
  const void* mask;
  bool mask_i64;
  int64_t mask_stride[2];
  int64_t length;
  int heads;
  SlopeTable slopes;
  DeviceTensor out;

  __device__ int64_t keep(int64_t b, int64_t s) const {
    const int64_t offset = b * mask_stride[0] + s * mask_stride[1];
    return mask_i64 ? static_cast<const int64_t*>(mask)[offset]
                    : static_cast<const int32_t*>(mask)[offset];
  }
};

// One block per batch row: a two-level cumulative sum of the mask, then every head's values.
__global__ void bloom_kernel(const __grid_constant__ BloomParams p) {
  __shared__ uint64_t chunk_start[kThreads];
  const int64_t b = blockIdx.x;
  const int64_t chunk = (p.length + kThreads - 1) / kThreads;
  const int64_t begin = threadIdx.x * chunk;
  const int64_t end = begin + chunk < p.length ? begin + chunk : p.length;
  uint64_t total = 0;
  for (int64_t s = begin; s < end; ++s) total += uint64_t(p.keep(b, s));
  chunk_start[threadIdx.x] = total;
  __syncthreads();
  if (threadIdx.x == 0) {
    uint64_t running = 0;
    for (int t = 0; t < kThreads; ++t) {
      const uint64_t count = chunk_start[t];
      chunk_start[t] = running;
      running += count;
    }
  }
  __syncthreads();
  uint64_t cumulative = chunk_start[threadIdx.x];
  for (int64_t s = begin; s < end; ++s) {
    const uint64_t keep = uint64_t(p.keep(b, s));
    cumulative += keep;
    const float position = float(bloom_position(cumulative, keep));
    for (int h = 0; h < p.heads; ++h)
      p.out.store(p.out.offset(b * p.heads + h, 0, s), p.slopes.at(0, h) * position);
  }
}

}  // namespace

void build_bias(const BiasArgs& args, const SlopeTable& slopes, cudaStream_t stream) {
  const TensorView& out = args.out;
  if (out.numel() == 0) return;
  BiasParams p{};
  p.out = device_tensor(out);
  p.mask = device_mask_view(args.device_mask);
  p.slopes = slopes;
  if (args.attn_bias) {
    p.attn_bias = device_tensor(*args.attn_bias);
    p.attn_bias_heads = args.attn_bias->shape[0];
  }
  fill_kernel<<<grid_blocks(out.numel(), kThreads), kThreads, 0, stream>>>(
      p.out, out.shape[0], out.shape[1], out.shape[2], masked_score());
  CUDA_CHECK_LAUNCH();
  if (p.mask.num_tiles == 0) return;
  for_head_runs(out.shape[0], [&](int first_head, unsigned count) {
    p.first_head = first_head;
    bias_kernel<<<dim3(unsigned(p.mask.num_tiles), count), kThreads, 0, stream>>>(p);
    CUDA_CHECK_LAUNCH();
  });
}

void build_dynamic_batching_mask(const DynamicBatchingArgs& args, const int64_t* seqstarts,
                                 const int64_t* kvstarts, const SlopeTable& slopes,
                                 cudaStream_t stream) {
  const TensorView& out = args.out;
  if (out.numel() == 0) return;
  DynamicBatchingParams p;
  p.out = device_tensor(out);
  p.heads = out.shape[0];
  p.rows = out.shape[1];
  p.width = out.shape[2];
  p.total_k = args.kvstarts[args.batch];
  p.seqstarts = seqstarts;
  p.kvstarts = kvstarts;
  p.batch = args.batch;
  p.slopes = slopes;
  p.attn_mask_ndim = args.attn_mask ? args.attn_mask->ndim : 0;
  if (args.attn_mask) p.attn_mask = device_tensor(*args.attn_mask);
  dynamic_batching_kernel<<<grid_blocks(out.numel(), kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void build_bloom_bias(const BloomArgs& args, const SlopeTable& slopes, cudaStream_t stream) {
  const TensorView& mask = args.attention_mask;
  if (args.out.numel() == 0) return;
  BloomParams p;
  p.mask = mask.data;
  p.mask_i64 = mask.dtype == ALIBI_DTYPE_I64;
  p.mask_stride[0] = mask.strides[0];
  p.mask_stride[1] = mask.strides[1];
  p.length = mask.shape[1];
  p.heads = slopes.num_heads;
  p.slopes = slopes;
  p.out = device_tensor(args.out);
  bloom_kernel<<<unsigned(mask.shape[0]), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace alibi::cuda
