// alibi_attention_forward_paged on the GPU: a split-KV decode kernel that reads the cache blocks
// in place (FlashDecoding style) with a merge kernel of the splits in a fixed order, and the
// gather of a call's keys into contiguous buffers for the prefill path (cuda_backend.cu runs the
// forward on them). The math is attention_math.h's: cell score, online-softmax step, row finish
// and the LSE merge.
#include <algorithm>

#include "core/kernel/attention_math.h"
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int kWarps = 4;  // a decode CTA: one (query row, query head) pair per warp
constexpr int kThreads = kWarps * 32;
constexpr int kChunkKeys = 32;           // keys in shared memory at a time: one per lane
constexpr int kColumnsPerLane = kPagedDecodeMaxHeadDim / 32;
constexpr int kMaxDecodeRows = 16;       // calls with a slice of more query rows take the prefill path
// __launch_bounds__' CTAs per SM: caps registers at 128 (uncapped, ptxas kept 72 on sm_90 and spilled).
constexpr int kMinDecodeCtasPerSm = 4;
constexpr int64_t kTargetCtas = 1024;    // splits are added until a call has about this many CTAs
constexpr int64_t kMinSplitKeys = 256;   // but no split has fewer keys than this

// Where the blocks of a sequence are: key t of sequence b is row t % block_size of block
// entries[b * row_stride + (t / block_size) * column_stride]. Device arrays.
struct BlockTable {
  const int32_t* entries;
  int64_t row_stride, column_stride, block_size;
  const int32_t* key_begin;  // B + 1: sequence b's keys are [key_begin[b], key_begin[b + 1]) packed

  __device__ int64_t block_of(int sequence, int64_t t) const {
    return entries[sequence * row_stride + t / block_size * column_stride];
  }
};

// A (num_blocks, block_size, Hkv, D) cache as kernels read it.
struct CacheView {
  const void* data;
  alibi_dtype dtype;
  int64_t block_stride, row_stride, head_stride;

  __device__ int64_t token(int64_t block, int64_t row, int64_t head) const {
    return block * block_stride + row * row_stride + head * head_stride;
  }
  __device__ float load(int64_t offset) const { return load_element(dtype, data, offset); }
};

CacheView cache_view(const TensorView& t) {
  return {t.data, t.dtype, t.strides[0], t.strides[1], t.strides[2]};
}

BlockTable block_table(const PagedForwardArgs& args, const PagedDeviceArrays& device) {
  return {device.block_table, args.table_row_stride, args.table_column_stride,
          args.forward.k.shape[1], device.key_begin};
}

// ------------------------------------------------------------------------------ decode

// The splits of a call's key intervals: split s of a tile's span covers its keys
// [key_lo + s * keys, key_lo + (s + 1) * keys).
struct Splits {
  int64_t count, keys;
};

struct DecodeParams {
  DeviceTensor q;
  CacheView k, v;
  BlockTable table;
  const Slice* slices;
  const RowTile* tiles;
  const SliceRows* spans;
  const int32_t* q_positions;
  SlopeTable slopes;
  float scale, softcap;
  int64_t group, heads, dim, total_q;
  int64_t pair_blocks;  // CTAs per (tile, split, kv head): kWarps (row, head) pairs each
  Splits splits;
  int first_kv_head;
  float* partial_out;  // [split][row][head][dim]: each split's normalized output
  float* partial_lse;  // [split][row][head]
};

// A (query row, query head) pair's share of a split: its running softmax over the keys seen.
struct RowState {
  float max = -INFINITY, sum = 0.0f;
  float acc[kColumnsPerLane] = {};  // columns lane, lane + 32, ...
};

// Key t of its sequence of a slice's (slice-local) key.
__device__ int64_t sequence_key(const DecodeParams& p, const Slice& slice, int64_t key) {
  return slice.k_begin - p.table.key_begin[slice.sequence] + key;
}

// Where the keys [first, first + kChunkKeys) (slice-local) of one kv head start in the caches,
// -1 at or past `end`: one table lookup per key rather than per element.
__device__ void locate_chunk(const DecodeParams& p, const Slice& slice, int64_t first,
                             int64_t end, int64_t kv_head, int64_t* k_offsets,
                             int64_t* v_offsets) {
  if (threadIdx.x >= kChunkKeys) return;
  const int64_t key = first + threadIdx.x;
  k_offsets[threadIdx.x] = v_offsets[threadIdx.x] = -1;
  if (key >= end) return;
  const int64_t t = sequence_key(p, slice, key);
  const int64_t block = p.table.block_of(slice.sequence, t), row = t % p.table.block_size;
  k_offsets[threadIdx.x] = p.k.token(block, row, kv_head);
  v_offsets[threadIdx.x] = p.v.token(block, row, kv_head);
}

// The located keys and values into shared memory as f32 (zeros past the end), rows padded to
// an odd stride so that lanes reading one column each of different keys do not share a bank.
__device__ void load_chunk(const DecodeParams& p, const int64_t* k_offsets,
                           const int64_t* v_offsets, int stride, float* k_rows, float* v_rows) {
  const int dim = int(p.dim);
  for (int i = threadIdx.x; i < kChunkKeys * dim; i += kThreads) {
    const int j = i / dim, d = i % dim;
    const bool present = k_offsets[j] >= 0;
    k_rows[j * stride + d] = present ? p.k.load(k_offsets[j] + d) : 0.0f;
    v_rows[j * stride + d] = present ? p.v.load(v_offsets[j] + d) : 0.0f;
  }
}

__device__ float warp_max(float x) {
  for (int lane_mask = 16; lane_mask > 0; lane_mask /= 2)
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, lane_mask));
  return x;
}

// A butterfly: every lane gets the same sum, in the same order on every run.
__device__ float warp_sum(float x) {
  for (int lane_mask = 16; lane_mask > 0; lane_mask /= 2)
    x += __shfl_xor_sync(0xffffffffu, x, lane_mask);
  return x;
}

// One chunk of keys into a pair's state: lane j scores key first + j (when `visible`, the keys
// the row sees in this split, holds it), then every lane adds the probabilities times the values
// to its columns.
__device__ void accumulate_chunk(const DecodeParams& p, const Slice& slice, KeyInterval visible,
                                 int64_t first, int32_t qpos, float slope, const float* q_row,
                                 const float* k_rows, const float* v_rows, int stride,
                                 RowState& state) {
  const int lane = threadIdx.x % 32;
  const int64_t key = first + lane;
  float score = masked_score();
  if (visible.contains(key)) {
    float dot = 0.0f;
    for (int64_t d = 0; d < p.dim; ++d) dot += q_row[d] * k_rows[lane * stride + d];
    score = cell_score(p.scale * dot, p.softcap, slope, qpos, int32_t(sequence_key(p, slice, key)),
                       0.0f);
  }
  const SoftmaxStep step = softmax_step(state.max, warp_max(score));
  const float probability = expf(score - step.shift);  // 0 for a masked key
  state.sum = running_sum(state.sum, step.correction, warp_sum(probability));
  state.max = step.max;
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) state.acc[c] *= step.correction;
  for (int j = 0; j < kChunkKeys; ++j) {
    const float pj = __shfl_sync(0xffffffffu, probability, j);
#pragma unroll
    for (int c = 0; c < kColumnsPerLane; ++c) {
      const int64_t d = lane + 32 * c;
      if (d < p.dim) state.acc[c] += pj * v_rows[j * stride + d];
    }
  }
}

// The split's normalized output and lse of a pair (lse -inf and zeros when it saw no key).
__device__ void store_partial(const DecodeParams& p, int64_t split, int64_t row, int64_t head,
                              const RowState& state) {
  const int lane = threadIdx.x % 32;
  const int64_t slot = (split * p.total_q + row) * p.heads + head;
  const float scale = output_scale(state.sum);
#pragma unroll
  for (int c = 0; c < kColumnsPerLane; ++c) {
    const int64_t d = lane + 32 * c;
    if (d < p.dim) p.partial_out[slot * p.dim + d] = finished_output(state.acc[c], scale);
  }
  if (lane == 0) p.partial_lse[slot] = row_lse(state.max, state.sum);
}

// One CTA per (tile, block of kWarps pairs, split) on x and kv head on y. A paged mask's tile
// has at most one span (its slices never share rows); warps whose pair is past the tile's rows
// only help load.
__global__ void __launch_bounds__(kThreads, kMinDecodeCtasPerSm)
    paged_decode_kernel(const __grid_constant__ DecodeParams p) {
  extern __shared__ int64_t shared[];  // see decode_shared_bytes
  int64_t* k_offsets = shared;
  int64_t* v_offsets = k_offsets + kChunkKeys;
  const int stride = int(p.dim) | 1;
  float* k_rows = reinterpret_cast<float*>(v_offsets + kChunkKeys);
  float* v_rows = k_rows + kChunkKeys * stride;
  const int warp = threadIdx.x / 32;
  float* q_row = v_rows + kChunkKeys * stride + warp * p.dim;

  const int64_t split = blockIdx.x % p.splits.count;
  const int64_t tile_index = blockIdx.x / p.splits.count / p.pair_blocks;
  const int64_t pair = blockIdx.x / p.splits.count % p.pair_blocks * kWarps + warp;
  const RowTile tile = p.tiles[tile_index];
  const int64_t kv_head = p.first_kv_head + blockIdx.y;
  const bool active = pair < (tile.row_end - tile.row_begin) * p.group;
  const int64_t row = tile.row_begin + pair / p.group, head = kv_head * p.group + pair % p.group;

  RowState state;
  if (tile.num_spans > 0) {
    const SliceRows span = p.spans[tile.first_span];
    const Slice slice = p.slices[span.slice];
    const int64_t begin = span.key_lo + split * p.splits.keys;
    const int64_t end = min(int64_t(span.key_hi), begin + p.splits.keys);
    KeyInterval visible{0, 0};
    int32_t qpos = 0;
    float slope = 0.0f;
    if (active) {
      const KeyInterval row_keys = keys_of_row(slice, row);
      visible = {max(row_keys.lo, begin), min(row_keys.hi, end)};  // empty when lo >= hi
      qpos = p.q_positions[row];
      slope = p.slopes.at(slice.sequence, int(head));
      for (int64_t d = threadIdx.x % 32; d < p.dim; d += 32)
        q_row[d] = p.q.load(p.q.offset(row, head, d));
    }
    for (int64_t first = begin; first < end; first += kChunkKeys) {
      __syncthreads();  // the previous chunk is consumed
      locate_chunk(p, slice, first, end, kv_head, k_offsets, v_offsets);
      __syncthreads();
      load_chunk(p, k_offsets, v_offsets, stride, k_rows, v_rows);
      __syncthreads();
      const bool overlaps = visible.lo < first + kChunkKeys && visible.hi > first;
      if (active && overlaps)
        accumulate_chunk(p, slice, visible, first, qpos, slope, q_row, k_rows, v_rows, stride,
                         state);
    }
  }
  if (active) store_partial(p, split, row, head, state);
}

// ------------------------------------------------------------------------------- merge

struct MergeSplitsParams {
  const float* partial_out;
  const float* partial_lse;
  int64_t splits, total_q, heads, dim;
  DeviceTensor out, lse;
  bool has_lse;
};

// One warp per (row, head): the splits' LSE merge, always in split order; a split whose lse is
// -inf (it saw no key) is never read.
__global__ void merge_splits_kernel(const __grid_constant__ MergeSplitsParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
  for (int64_t slot = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / 32;
       slot < p.total_q * p.heads; slot += warps) {
    const int64_t row = slot / p.heads, head = slot % p.heads;
    const int64_t split_slots = p.total_q * p.heads;
    float max = -INFINITY;
    for (int64_t s = 0; s < p.splits; ++s) max = fmaxf(max, p.partial_lse[s * split_slots + slot]);
    float sum = 0.0f;
    for (int64_t s = 0; s < p.splits; ++s) sum += merge_weight(p.partial_lse[s * split_slots + slot], max);
    const float scale = output_scale(sum);
    for (int64_t d = lane; d < p.dim; d += 32) {
      float acc = 0.0f;
      for (int64_t s = 0; s < p.splits; ++s) {
        const float weight = merge_weight(p.partial_lse[s * split_slots + slot], max);
        if (weight != 0.0f) acc += weight * p.partial_out[(s * split_slots + slot) * p.dim + d];
      }
      p.out.store(p.out.offset(row, head, d), finished_output(acc, scale));
    }
    if (p.has_lse && lane == 0) p.lse.store(p.lse.offset(head, row, 0), row_lse(max, sum));
  }
}

// ------------------------------------------------------------------------- launches

int64_t most_tile_rows(const MaskView& mask) {
  int64_t rows = 0;
  for (int64_t t = 0; t < mask.num_tiles; ++t)
    rows = std::max<int64_t>(rows, mask.tiles[t].row_end - mask.tiles[t].row_begin);
  return rows;
}

int64_t widest_span(const MaskView& mask) {
  int64_t widest = 0;
  for (int64_t t = 0; t < mask.num_tiles; ++t) widest = std::max(widest, mask.tiles[t].widest);
  return widest;
}

int64_t pair_blocks(const PagedForwardArgs& args) {
  const int64_t group = args.forward.q.shape[1] / args.forward.k.shape[2];
  return std::max<int64_t>(1, (most_tile_rows(*args.forward.mask) * group + kWarps - 1) / kWarps);
}

// As many splits as bring the call near kTargetCtas, of at least kMinSplitKeys keys each (the
// count depends on the call's shapes only, so results are the same run to run).
Splits choose_splits(const PagedForwardArgs& args) {
  const MaskView& mask = *args.forward.mask;
  const int64_t ctas = std::max<int64_t>(1, mask.num_tiles * pair_blocks(args) * args.forward.k.shape[2]);
  const int64_t widest = widest_span(mask);
  const int64_t most = std::max<int64_t>(1, (widest + kMinSplitKeys - 1) / kMinSplitKeys);
  const int64_t wanted = std::clamp<int64_t>((kTargetCtas + ctas - 1) / ctas, 1, most);
  const int64_t per_split = (widest + wanted - 1) / wanted;
  const int64_t keys = std::max<int64_t>(kChunkKeys, (per_split + kChunkKeys - 1) / kChunkKeys * kChunkKeys);
  return {std::max<int64_t>(1, (widest + keys - 1) / keys), keys};
}

int64_t decode_grid_x(const PagedForwardArgs& args) {
  return args.forward.mask->num_tiles * pair_blocks(args) * choose_splits(args).count;
}

// The chunk's key and value offsets, its keys and values (f32, rows of an odd stride) and each
// warp's query row.
size_t decode_shared_bytes(int64_t dim) {
  return 2 * kChunkKeys * sizeof(int64_t) +
         (size_t(2 * kChunkKeys * (dim | 1)) + size_t(kWarps * dim)) * sizeof(float);
}

DecodeParams decode_params(const PagedForwardArgs& args, const PagedDeviceArrays& device) {
  const ForwardArgs& forward = args.forward;
  DecodeParams p{};
  p.q = device_tensor(forward.q);
  p.k = cache_view(forward.k);
  p.v = cache_view(forward.v);
  p.table = block_table(args, device);
  p.slices = device.slices;
  p.tiles = device.tiles;
  p.spans = device.spans;
  p.q_positions = device.q_positions;
  p.slopes = device.slopes;
  p.scale = forward.scale;
  p.softcap = forward.softcap;
  p.heads = forward.q.shape[1];
  p.group = p.heads / forward.k.shape[2];
  p.dim = forward.q.shape[2];
  p.total_q = forward.q.shape[0];
  p.pair_blocks = pair_blocks(args);
  p.splits = choose_splits(args);
  return p;
}

void merge_splits(const ForwardArgs& forward, const DecodeParams& decode, cudaStream_t stream) {
  MergeSplitsParams p{};
  p.partial_out = decode.partial_out;
  p.partial_lse = decode.partial_lse;
  p.splits = decode.splits.count;
  p.total_q = decode.total_q;
  p.heads = decode.heads;
  p.dim = decode.dim;
  p.out = device_tensor(forward.out);
  p.has_lse = forward.lse != nullptr;
  if (p.has_lse) p.lse = device_tensor(*forward.lse);
  merge_splits_kernel<<<grid_blocks(p.total_q * p.heads * 32, kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

// --------------------------------------------------------------------------- gather

struct GatherParams {
  CacheView cache;
  BlockTable table;
  int batch;
  int64_t total_k, kv_heads, dim;
  void* packed;  // (total_k, Hkv, D), contiguous, the cache's dtype
};

// The sequence whose packed keys hold `key`: the last b with key_begin[b] <= key.
__device__ int sequence_of(const BlockTable& table, int batch, int64_t key) {
  int lo = 0, hi = batch - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (table.key_begin[mid] <= key)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Copies whole elements (Word: the dtype's size), so values keep their bits.
template <class Word>
__global__ void gather_kernel(const __grid_constant__ GatherParams p) {
  const int64_t n = p.total_k * p.kv_heads * p.dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t key = i / (p.kv_heads * p.dim), head = i / p.dim % p.kv_heads, d = i % p.dim;
    const int sequence = sequence_of(p.table, p.batch, key);
    const int64_t t = key - p.table.key_begin[sequence];
    const int64_t block = p.table.block_of(sequence, t), row = t % p.table.block_size;
    static_cast<Word*>(p.packed)[i] =
        static_cast<const Word*>(p.cache.data)[p.cache.token(block, row, head) + d];
  }
}

void gather(const PagedForwardArgs& args, const PagedDeviceArrays& device, const TensorView& cache,
            void* packed, cudaStream_t stream) {
  GatherParams p{cache_view(cache), block_table(args, device), args.forward.mask->num_sequences,
                 args.forward.mask->total_k, cache.shape[2], cache.shape[3], packed};
  const int64_t n = p.total_k * p.kv_heads * p.dim;
  if (n == 0) return;
  if (dtype_size(cache.dtype) == 2)
    gather_kernel<uint16_t><<<grid_blocks(n, 256), 256, 0, stream>>>(p);
  else
    gather_kernel<uint32_t><<<grid_blocks(n, 256), 256, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace

int64_t paged_table_entries(const PagedForwardArgs& args) {
  const int64_t block_size = args.forward.k.shape[1];
  int64_t entries = 0;
  for (int b = 0; b < args.forward.mask->num_sequences; ++b) {
    const int64_t used = (args.key_begin[b + 1] - args.key_begin[b] + block_size - 1) / block_size;
    if (used > 0)
      entries = std::max(entries, b * args.table_row_stride + (used - 1) * args.table_column_stride + 1);
  }
  return entries;
}

bool paged_decode_applies(const PagedForwardArgs& args) {
  const MaskView& mask = *args.forward.mask;
  return args.forward.q.shape[2] <= kPagedDecodeMaxHeadDim && !mask.slices_share_rows &&
         mask.max_slice_rows <= kMaxDecodeRows && decode_grid_x(args) <= INT32_MAX;
}

void paged_decode(const PagedForwardArgs& args, const PagedDeviceArrays& device,
                  cudaStream_t stream, cudaMemPool_t pool) {
  const ForwardArgs& forward = args.forward;
  DecodeParams p = decode_params(args, device);
  const int64_t slots = p.splits.count * p.total_q * p.heads;
  const size_t out_bytes = size_t(slots * p.dim) * sizeof(float);
  const StreamMemory partials(out_bytes + size_t(slots) * sizeof(float), stream, pool);
  p.partial_out = partials.at<float>();
  p.partial_lse = partials.at<float>(out_bytes);
  const size_t shared = decode_shared_bytes(p.dim);
  CUDA_CHECK(cudaFuncSetAttribute(paged_decode_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  int(shared)));
  const unsigned grid_x = unsigned(decode_grid_x(args));
  for_head_runs(forward.k.shape[2], [&](int first, unsigned count) {
    p.first_kv_head = first;
    paged_decode_kernel<<<dim3(grid_x, count), kThreads, shared, stream>>>(p);
    CUDA_CHECK_LAUNCH();
  });
  merge_splits(forward, p, stream);
}

void gather_paged_keys(const PagedForwardArgs& args, const PagedDeviceArrays& device, void* k,
                       void* v, cudaStream_t stream) {
  gather(args, device, args.forward.k, k, stream);
  gather(args, device, args.forward.v, v, stream);
}

}  // namespace alibi::cuda
