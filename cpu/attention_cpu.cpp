// Attention on the CPU, flash style: each work item is (head, row block of the mask's plan, key
// split).
// Scores are computed transposed (keys x queries) so that the softmax runs across queries in
// SIMD lanes; key and value tiles are packed as f32 (f16/bf16 widened) per tile, except bf16
// keys where the CPU's bf16 dot products are the faster way (TileOps::gemm_bf16_pairs): those
// stay bf16, against queries packed in pairs of dims.
// The ALiBi bias is computed per cell from positions and slopes; key blocks outside every
// row's visible interval are never visited and only blocks cut by the mask pay for masking.
// Working memory is a few tiles per thread, never total_q x total_k.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "core/kernel/attention_math.h"
#include "cpu/decode.h"
#include "cpu/host_tensor.h"
#include "cpu/kernels.h"
#include "cpu/kv_source.h"
#include "cpu/merge.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kRowBlock = kPlanShape.tile_rows;
constexpr int64_t kKeyBlock = 64;
constexpr int64_t kLanes = 8;
constexpr int64_t kTileWidth = kRowBlock + kLanes;  // query columns incl. SIMD padding
// Split keys until there are this many items, so few-row calls use every thread. It does not
// depend on the thread count, so results do not either.
constexpr int64_t kTargetItems = 32;
constexpr int64_t kMinKeysPerSplit = 4 * kKeyBlock;  // below, a split costs more than it saves
constexpr int64_t kPrefetchBytesPerRow = 256;  // measured: +4..10% for bf16, neutral for f32
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Keys [lo, hi) of split `split` out of `splits` of an interval.
std::pair<int64_t, int64_t> split_range(int64_t lo, int64_t hi, int split, int splits) {
  const int64_t chunk = round_up((hi - lo + splits - 1) / splits, kKeyBlock);
  return {std::min(hi, lo + split * chunk), std::min(hi, lo + (split + 1) * chunk)};
}

// A row block's running softmax: per row, max and sum of exp, and the output sums.
struct BlockAccumulator {
  std::vector<float> acc;  // kRowBlock x head_dim
  std::vector<float> row_max, row_sum;

  explicit BlockAccumulator(int64_t head_dim)
      : acc(size_t(kRowBlock * head_dim)), row_max(kTileWidth), row_sum(kTileWidth) {}
  void reset() {
    std::fill(acc.begin(), acc.end(), 0.0f);
    std::fill(row_max.begin(), row_max.end(), kNegInf);
    std::fill(row_sum.begin(), row_sum.end(), 0.0f);
  }
};

// One thread's tiles.
struct TileBuffers {
  std::vector<float> queries_t;  // head_dim x kTileWidth: scaled queries, transposed
  std::vector<float> scores, attn_bias;  // kKeyBlock x kTileWidth
  std::vector<float> keys, values;       // kKeyBlock x head_dim, widened half inputs
  std::vector<uint32_t> query_pairs;     // pairs x kTileWidth: bf16 queries by pairs of dims
  std::vector<uint16_t> key_pairs;       // kKeyBlock x 2 pairs: bf16 keys, an odd dim padded by 0
  std::vector<uint16_t> half_values;     // kKeyBlock x head_dim: half values as stored
  std::vector<float> correction, row;
  std::vector<int32_t> query_pos, visible_lo, visible_hi;

  explicit TileBuffers(int64_t head_dim)
      : queries_t(size_t(head_dim * kTileWidth)), scores(size_t(kKeyBlock * kTileWidth)),
        keys(size_t(kKeyBlock * head_dim)), values(size_t(kKeyBlock * head_dim)),
        query_pairs(size_t(pairs_of(head_dim) * kTileWidth)), key_pairs(size_t(kKeyBlock * 2 * pairs_of(head_dim))),
        half_values(size_t(kKeyBlock * head_dim)),
        correction(kTileWidth), row(size_t(head_dim)), query_pos(kTileWidth), visible_lo(kTileWidth),
        visible_hi(kTileWidth) {}
};

class Attention {
 public:
  // skip_decode_slices: the decode kernel takes the slices of few rows (Route::kMixed).
  Attention(const ForwardArgs& args, const KvSource& kv, const TileOps& ops, bool skip_decode_slices)
      : args_(args), mask_(*args.mask), kv_(kv), ops_(ops),
        group_(args.q.shape[1] / kv.kv_heads()), dim_(args.q.shape[2]),
        bf16_dots_(ops.gemm_bf16_pairs && args.q.dtype == ALIBI_DTYPE_BF16),
        half_values_(ops.values_widened_in_gemm && args.v.dtype != ALIBI_DTYPE_F32),
        skip_decode_slices_(skip_decode_slices) {}

  // Accumulates the keys of split `split` of `splits` of every span of a tile (the rows of
  // skipped spans get out 0 and lse -inf, until the decode kernel writes them).
  void accumulate(const RowTile& tile, int64_t head, int split, int splits, TileBuffers& s,
                  BlockAccumulator& block) const {
    block.reset();
    load_queries(tile, head, s);
    for (int64_t i = 0; i < tile.num_spans; ++i) {
      const SliceRows& span = mask_.spans[tile.first_span + i];
      if (skip_decode_slices_ && decode_takes(mask_.slices[span.slice])) continue;
      const auto keys = split_range(span.key_lo, span.key_hi, split, splits);
      attend(span, keys.first, keys.second, tile, head, s, block);
    }
  }

  // Writes out and lse of a tile's rows from its finished accumulator.
  void write(const RowTile& tile, int64_t head, const BlockAccumulator& block) const {
    for (int64_t r = tile.row_begin; r < tile.row_end; ++r) {
      if (r + kRowsAhead < tile.row_end) prefetch_row(args_.out, r + kRowsAhead, head, dim_, true);
      const size_t local = size_t(r - tile.row_begin);
      write_row(r, head, &block.acc[local * size_t(dim_)], {block.row_max[local], block.row_sum[local]});
    }
  }

  void write_row(int64_t row, int64_t head, const float* acc, const RowTotals& totals) const {
    store_row(ops_, args_.out, offset3(args_.out, row, head, 0), acc, dim_, output_scale(totals.sum));
    if (args_.lse)
      store_float(*args_.lse, offset2(*args_.lse, head, row), row_lse(totals.max, totals.sum));
  }

  int64_t heads() const { return args_.q.shape[1]; }
  int64_t head_dim() const { return dim_; }

 private:
  void load_queries(const RowTile& tile, int64_t head, TileBuffers& s) const {
    for (int64_t r = tile.row_begin; r < tile.row_end; ++r) {
      if (r + kRowsAhead < tile.row_end) prefetch_row(args_.q, r + kRowsAhead, head, dim_, false);
      const int64_t column = r - tile.row_begin;
      if (bf16_dots_) {
        load_query_pairs(offset3(args_.q, r, head, 0), column, s);
        continue;
      }
      load_row(args_.q, offset3(args_.q, r, head, 0), s.row.data());
      for (int64_t d = 0; d < dim_; ++d)
        s.queries_t[size_t(d * kTileWidth + column)] = args_.scale * s.row[size_t(d)];
    }
  }

  // A bf16 query row into column `column` of query_pairs, unscaled (gemm_bf16_pairs scales).
  void load_query_pairs(int64_t offset, int64_t column, TileBuffers& s) const {
    pack_bf16_pairs(static_cast<const uint16_t*>(args_.q.data) + offset, dim_, &s.query_pairs[size_t(column)],
                    kTileWidth);
  }

  // One head_dim row of a float tensor as f32.
  void load_row(const TensorView& t, int64_t offset, float* dst) const {
    load_row_at(t.dtype, static_cast<const char*>(t.data) + offset * int64_t(dtype_size(t.dtype)), dst);
  }

  void load_row_at(alibi_dtype dtype, const void* row, float* dst) const {
    if (dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, row, size_t(dim_) * sizeof(float));
    else
      ops_.widen(dtype, static_cast<const uint16_t*>(row), dim_, dst);
  }

  // Positions and visible intervals of the span's rows, padded to whole SIMD groups.
  void load_row_metadata(const SliceRows& span, TileBuffers& s) const {
    const Slice& slice = mask_.slices[span.slice];
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    const int64_t n = span.row_end - span.row_begin;
    for (int64_t c = 0; c < round_up(n, kLanes); ++c) {
      const bool real = c < n;
      const KeyInterval keys = visible_keys(slice.type, span.row_begin + c - slice.q_begin, sq, sk);
      s.query_pos[size_t(c)] = real ? mask_.q_positions[span.row_begin + c] : 0;
      s.visible_lo[size_t(c)] = real ? int32_t(keys.lo) : 0;
      s.visible_hi[size_t(c)] = real ? int32_t(keys.hi) : 0;
    }
  }

  void attend(const SliceRows& span, int64_t key_lo, int64_t key_hi, const RowTile& tile,
              int64_t head, TileBuffers& s, BlockAccumulator& block) const {
    if (key_lo >= key_hi) return;
    load_row_metadata(span, s);
    const float slope = args_.slopes.at(mask_.slices[span.slice].sequence, int(head));
    // Blocks are aligned to the end so that a causal diagonal cuts only the last one.
    for (int64_t end = key_hi; end > key_lo; end -= kKeyBlock)
      attend_block(span, std::max(key_lo, end - kKeyBlock), end, slope, tile, head, s, block);
  }

  // Rows of keys or values [first, first + count) of a slice's kv head, packed contiguously as
  // f32: reading them in place would touch a new page per row in the products. The start of
  // each row of the next block (below, as blocks run from the end) is prefetched, as rows sit a
  // page or more apart where hardware prefetchers stop; whole f32 rows stalled on full miss
  // buffers.
  template <class RowOf>
  const float* kv_rows(alibi_dtype dtype, RowOf row_of, const Slice& slice, int64_t first,
                       int64_t count, std::vector<float>& buffer) const {
    pack_rows(dtype, row_of, slice, first, count,
              [&](int64_t i, const void* row) { load_row_at(dtype, row, &buffer[size_t(i * dim_)]); });
    return buffer.data();
  }

  // pack(i, row i) for each row; the rows of the next block are prefetched.
  template <class RowOf, class Pack>
  void pack_rows(alibi_dtype dtype, RowOf row_of, const Slice& slice, int64_t first, int64_t count,
                 Pack pack) const {
    const int64_t prefetch_bytes = std::min(kPrefetchBytesPerRow, dim_ * int64_t(dtype_size(dtype)));
    for (int64_t i = 0; i < count; ++i) {
      if (first - count + i >= slice.k_begin) {
        const char* next = static_cast<const char*>(row_of(first - count + i));
        for (int64_t byte = 0; byte < prefetch_bytes; byte += 64) __builtin_prefetch(next + byte);
      }
      pack(i, row_of(first + i));
    }
  }

  // s.scores (count keys from first_key x columns queries from tile column r0) = the scaled q.k.
  void score_keys(const Slice& slice, int64_t first_key, int64_t count, int64_t columns, int64_t r0,
                  int64_t kv_head, TileBuffers& s) const {
    const auto key_row = [&](int64_t key) { return kv_.key_row(slice, key, kv_head); };
    if (bf16_dots_) {
      const int64_t lda = 2 * pairs_of(dim_);
      pack_rows(ALIBI_DTYPE_BF16, key_row, slice, first_key, count, [&](int64_t i, const void* row) {
        std::memcpy(&s.key_pairs[size_t(i * lda)], row, size_t(dim_) * sizeof(uint16_t));
      });
      ops_.gemm_bf16_pairs(count, columns, pairs_of(dim_), s.key_pairs.data(), lda, &s.query_pairs[size_t(r0)],
                           kTileWidth, args_.scale, s.scores.data(), kTileWidth);
      return;
    }
    const float* keys = kv_rows(args_.k.dtype, key_row, slice, first_key, count, s.keys);
    ops_.gemm(count, columns, dim_, keys, dim_, 1, &s.queries_t[size_t(r0)], kTileWidth, s.scores.data(),
              kTileWidth, nullptr);
  }

  void load_attn_bias(const SliceRows& span, int64_t first_key, int64_t count, int64_t head,
                      TileBuffers& s) const {
    s.attn_bias.resize(s.scores.size());
    load_attn_bias_block(*args_.attn_bias, head, span.row_begin, span.row_end, first_key, count,
                         kTileWidth, s.attn_bias.data());
  }

  // The run of the span's rows (columns of the tile) whose visible keys meet [kb, ke): visible
  // intervals only move forward with the row, so it is contiguous (a causal diagonal block
  // is seen by half the rows).
  static std::pair<int64_t, int64_t> columns_seeing(const TileBuffers& s, int64_t n, int64_t kb,
                                                    int64_t ke) {
    const int32_t* hi = s.visible_hi.data();
    const int32_t* lo = s.visible_lo.data();
    const int64_t begin = std::partition_point(hi, hi + n, [&](int32_t h) { return h <= kb; }) - hi;
    const int64_t end = std::partition_point(lo, lo + n, [&](int32_t l) { return l < ke; }) - lo;
    return {begin, std::max(begin, end)};
  }

  void attend_block(const SliceRows& span, int64_t kb, int64_t ke, float slope,
                    const RowTile& tile, int64_t head, TileBuffers& s, BlockAccumulator& block) const {
    const Slice& slice = mask_.slices[span.slice];
    const auto [c0, c1] = columns_seeing(s, span.row_end - span.row_begin, kb, ke);
    if (c0 == c1) return;
    const int64_t count = ke - kb, n = c1 - c0;
    const int64_t r0 = span.row_begin - tile.row_begin + c0;  // the first row's place in the tile
    const int64_t kv_head = head / group_;
    score_keys(slice, slice.k_begin + kb, count, round_up(n, kLanes), r0, kv_head, s);
    if (args_.attn_bias) load_attn_bias(span, slice.k_begin + kb, count, head, s);

    ScoreBlock scores{};
    scores.scores = s.scores.data();
    scores.ld = kTileWidth;
    scores.keys = count;
    scores.queries = n;
    scores.attn_bias = args_.attn_bias ? s.attn_bias.data() + c0 : nullptr;
    scores.key_pos = &mask_.k_positions[slice.k_begin + kb];
    scores.query_pos = s.query_pos.data() + c0;
    scores.visible_lo = s.visible_lo.data() + c0;
    scores.visible_hi = s.visible_hi.data() + c0;
    scores.first_key = int32_t(kb);
    scores.needs_mask = kb < s.visible_lo[size_t(c1 - 1)] || ke > s.visible_hi[size_t(c0)];
    scores.slope = slope;
    scores.softcap = args_.softcap;
    scores.row_max = &block.row_max[size_t(r0)];
    scores.row_sum = &block.row_sum[size_t(r0)];
    scores.correction = s.correction.data();
    ops_.softmax_block(scores);

    accumulate_values(slice, slice.k_begin + kb, count, n, r0, kv_head, s, block);
  }

  // block.acc (rows r0.. of the tile) = correction * block.acc + P V for the block's values.
  void accumulate_values(const Slice& slice, int64_t first_key, int64_t count, int64_t n, int64_t r0,
                         int64_t kv_head, TileBuffers& s, BlockAccumulator& block) const {
    const auto value_row = [&](int64_t key) { return kv_.value_row(slice, key, kv_head); };
    float* acc = &block.acc[size_t(r0 * dim_)];
    if (half_values_) {
      pack_rows(args_.v.dtype, value_row, slice, first_key, count, [&](int64_t i, const void* row) {
        std::memcpy(&s.half_values[size_t(i * dim_)], row, size_t(dim_) * sizeof(uint16_t));
      });
      ops_.gemm_half_b(args_.v.dtype, n, dim_, count, s.scores.data(), 1, kTileWidth, s.half_values.data(), dim_,
                       acc, dim_, s.correction.data());
      return;
    }
    const float* values = kv_rows(args_.v.dtype, value_row, slice, first_key, count, s.values);
    ops_.gemm(n, dim_, count, s.scores.data(), 1, kTileWidth, values, dim_, acc, dim_, s.correction.data());
  }

  const ForwardArgs& args_;
  const MaskView& mask_;
  const KvSource& kv_;
  const TileOps& ops_;
  const int64_t group_, dim_;
  const bool bf16_dots_;    // q.k by gemm_bf16_pairs
  const bool half_values_;  // P v by gemm_half_b
  const bool skip_decode_slices_;
};

// n objects built in place for head_dim (copying a prototype would cost a memcpy each).
template <typename T>
std::vector<T> built_in_place(size_t n, int64_t head_dim) {
  std::vector<T> objects;
  objects.reserve(n);
  for (size_t i = 0; i < n; ++i) objects.emplace_back(head_dim);
  return objects;
}

// Writes a tile's rows from its key splits, merged by LSE in split order (deterministic).
void write_merged(const Attention& attention, const RowTile& tile, int64_t head,
                  const std::vector<BlockAccumulator>& splits) {
  const int64_t dim = attention.head_dim();
  std::vector<PartialRow> parts(splits.size());
  std::vector<float> acc(static_cast<size_t>(dim));
  for (int64_t r = tile.row_begin; r < tile.row_end; ++r) {
    const size_t local = size_t(r - tile.row_begin);
    for (size_t p = 0; p < splits.size(); ++p)
      parts[p] = {splits[p].row_max[local], splits[p].row_sum[local], &splits[p].acc[local * size_t(dim)]};
    attention.write_row(r, head, acc.data(), merge_rows(parts.data(), int64_t(parts.size()), dim, acc.data()));
  }
}

int choose_splits(const MaskView& mask, int64_t heads) {
  const int64_t items = mask.num_tiles * heads;
  if (items == 0 || items >= kTargetItems) return 1;
  int64_t widest = 0;
  for (int64_t t = 0; t < mask.num_tiles; ++t) widest = std::max(widest, mask.tiles[t].widest);
  const int64_t by_items = (kTargetItems + items - 1) / items;
  return int(std::max<int64_t>(1, std::min(by_items, widest / kMinKeysPerSplit)));
}

void tiled_forward(const Attention& attention, const MaskView& mask, const ThreadPool& pool) {
  const int64_t heads = attention.heads(), head_dim = attention.head_dim();
  const int splits = choose_splits(mask, heads);
  std::vector<TileBuffers> buffers = built_in_place<TileBuffers>(size_t(pool.size()), head_dim);
  // Items head by head (consecutive items share the head's keys and values in cache), within a
  // head the tiles with the most work first, so the last items to run are small.
  auto tile_of = [&](int64_t index) -> const RowTile& {
    return mask.tiles[mask.tiles_by_work[index % mask.num_tiles]];
  };
  auto head_of = [&](int64_t index) { return index / mask.num_tiles; };
  const int64_t items = mask.num_tiles * heads;

  if (splits == 1) {
    std::vector<BlockAccumulator> blocks = built_in_place<BlockAccumulator>(size_t(pool.size()), head_dim);
    pool.parallel_for(items, [&](int64_t index, int worker) {
      BlockAccumulator& block = blocks[size_t(worker)];
      attention.accumulate(tile_of(index), head_of(index), 0, 1, buffers[size_t(worker)], block);
      attention.write(tile_of(index), head_of(index), block);
    });
    return;
  }
  // Few items (few rows, many keys): each item's keys are split; the splits merge by LSE.
  std::vector<std::vector<BlockAccumulator>> partials;
  partials.reserve(size_t(items));
  for (int64_t i = 0; i < items; ++i) partials.push_back(built_in_place<BlockAccumulator>(size_t(splits), head_dim));
  pool.parallel_for(items * splits, [&](int64_t task, int worker) {
    const int64_t index = task / splits;
    const int split = int(task % splits);
    attention.accumulate(tile_of(index), head_of(index), split, splits, buffers[size_t(worker)],
                         partials[size_t(index)][size_t(split)]);
  });
  pool.parallel_for(items, [&](int64_t index, int) {
    write_merged(attention, tile_of(index), head_of(index), partials[size_t(index)]);
  });
}

void forward(const ForwardArgs& args, const KvSource& kv, const ThreadPool& pool) {
  const MaskView& mask = *args.mask;
  // The SIMD bias takes |qpos - kpos| as int32.
  const bool int32_distances = mask.position_span <= std::numeric_limits<int32_t>::max();
  const TileOps& ops = int32_distances ? tile_ops() : generic_tile_ops();
  const Route routed = route(mask);
  if (routed == Route::kDecode) return decode_forward(args, kv, ops, pool);
  tiled_forward(Attention(args, kv, ops, routed == Route::kMixed), mask, pool);
  if (routed == Route::kMixed) decode_forward(args, kv, ops, pool);
}

}  // namespace

void attention_forward(const ForwardArgs& args, const ThreadPool& pool) {
  forward(args, KvSource(args), pool);
}

void attention_forward_paged(const PagedForwardArgs& args, const ThreadPool& pool) {
  forward(args.forward, KvSource(args), pool);
}

}  // namespace alibi::cpu
