// Attention on the CPU, flash style: each work item is (head, block of query rows, key split).
// Scores are computed transposed (keys x queries) so that the softmax runs across queries in
// SIMD lanes; key and value tiles are packed as f32 (f16/bf16 widened) per tile.
// The ALiBi bias is computed per cell from positions and slopes; key blocks outside every
// row's visible interval are never visited and only blocks cut by the mask pay for masking.
// Working memory is a few tiles per thread, never total_q x total_k.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <vector>

#include "core/kernel/formulas.h"
#include "cpu/decode.h"
#include "cpu/host_tensor.h"
#include "cpu/kernels.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kRowBlock = 256;  // each block reads its keys and values once: 256 measured 3-7% over 128
constexpr int64_t kKeyBlock = 64;
constexpr int64_t kLanes = 8;
constexpr int64_t kTileWidth = kRowBlock + kLanes;  // query columns incl. SIMD padding
// Split keys until there are this many items, so few-row calls (decode) use every thread.
// It does not depend on the thread count, so results do not either.
constexpr int64_t kTargetItems = 32;
constexpr int64_t kMinKeysPerSplit = 4 * kKeyBlock;  // below, a split costs more than it saves
constexpr int64_t kPrefetchBytesPerRow = 256;  // measured: +4..10% for bf16, neutral for f32
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Query rows [begin, end), the slices touching them in mask order, and the work they hold.
struct RowBlock {
  int64_t begin = 0, end = 0;
  std::vector<int32_t> slices;
  int64_t cells = 0;
  int64_t widest = 0;  // the most keys a slice's rows of this block see together
};

// The visible key interval of every row of a slice that falls in a row block.
struct SliceRows {
  const Slice* slice;
  int64_t row_begin, row_end;  // global rows
  int64_t key_lo, key_hi;      // union of the rows' visible keys, slice-relative
};

SliceRows slice_rows(const Slice& slice, const RowBlock& block) {
  SliceRows s{&slice, std::max<int64_t>(block.begin, slice.q_begin),
              std::min<int64_t>(block.end, slice.q_end), 0, 0};
  const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
  s.key_lo = visible_keys(slice.type, s.row_begin - slice.q_begin, sq, sk).lo;
  s.key_hi = std::max(s.key_lo, visible_keys(slice.type, s.row_end - 1 - slice.q_begin, sq, sk).hi);
  return s;
}

std::vector<RowBlock> plan_row_blocks(const MaskPlan& plan) {
  std::vector<RowBlock> blocks(size_t((plan.total_q + kRowBlock - 1) / kRowBlock));
  for (size_t b = 0; b < blocks.size(); ++b) {
    blocks[b].begin = int64_t(b) * kRowBlock;
    blocks[b].end = std::min(plan.total_q, blocks[b].begin + kRowBlock);
  }
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    if (slice.q_begin == slice.q_end || slice.k_begin == slice.k_end) continue;
    for (int64_t b = slice.q_begin / kRowBlock; b <= (slice.q_end - 1) / kRowBlock; ++b) {
      RowBlock& block = blocks[size_t(b)];
      block.slices.push_back(int32_t(s));
      const SliceRows rows = slice_rows(slice, block);
      block.cells += (rows.row_end - rows.row_begin) * (rows.key_hi - rows.key_lo);
      block.widest = std::max(block.widest, rows.key_hi - rows.key_lo);
    }
  }
  return blocks;
}

// Keys [lo, hi) of split `split` out of `splits` of an interval.
std::pair<int64_t, int64_t> split_range(int64_t lo, int64_t hi, int split, int splits) {
  const int64_t chunk = round_up((hi - lo + splits - 1) / splits, kKeyBlock);
  return {std::min(hi, lo + split * chunk), std::min(hi, lo + (split + 1) * chunk)};
}

// A work item's running softmax: per block row, max and sum of exp, and the output sums.
struct RowState {
  std::vector<float> acc;  // kRowBlock x head_dim
  std::vector<float> row_max, row_sum;

  explicit RowState(int64_t head_dim)
      : acc(size_t(kRowBlock * head_dim)), row_max(kTileWidth), row_sum(kTileWidth) {}
  void reset() {
    std::fill(acc.begin(), acc.end(), 0.0f);
    std::fill(row_max.begin(), row_max.end(), kNegInf);
    std::fill(row_sum.begin(), row_sum.end(), 0.0f);
  }
};

// One thread's tiles.
struct Scratch {
  std::vector<float> queries_t;  // head_dim x kTileWidth: scaled queries, transposed
  std::vector<float> scores, extra;  // kKeyBlock x kTileWidth
  std::vector<float> keys, values;   // kKeyBlock x head_dim, widened half inputs
  std::vector<float> correction, row;
  std::vector<int32_t> query_pos, visible_lo, visible_hi;

  explicit Scratch(int64_t head_dim)
      : queries_t(size_t(head_dim * kTileWidth)), scores(size_t(kKeyBlock * kTileWidth)),
        keys(size_t(kKeyBlock * head_dim)), values(size_t(kKeyBlock * head_dim)),
        correction(kTileWidth), row(size_t(head_dim)), query_pos(kTileWidth), visible_lo(kTileWidth),
        visible_hi(kTileWidth) {}
};

class Attention {
 public:
  Attention(const ForwardArgs& args, const TileOps& ops)
      : args_(args), plan_(*args.plan), ops_(ops), heads_(args.q.shape[1]),
        group_(args.q.shape[1] / args.k.shape[1]), dim_(args.q.shape[2]) {}

  // Accumulates the keys of split `split` of `splits` into state.
  void accumulate(const RowBlock& block, int64_t head, int split, int splits, Scratch& s,
                  RowState& state) const {
    state.reset();
    load_queries(block, head, s);
    for (int32_t index : block.slices) {
      const SliceRows rows = slice_rows(plan_.slices[size_t(index)], block);
      const auto keys = split_range(rows.key_lo, rows.key_hi, split, splits);
      attend(rows, keys.first, keys.second, block, head, s, state);
    }
  }

  // Writes out and lse of a block's rows from a finished state.
  void write(const RowBlock& block, int64_t head, const RowState& state) const {
    for (int64_t r = block.begin; r < block.end; ++r) {
      const size_t local = size_t(r - block.begin);
      const float sum = state.row_sum[local];
      const float inverse = sum > 0 ? 1.0f / sum : 0.0f;
      const int64_t offset = offset3(args_.out, r, head, 0);
      store_row(args_.out, offset, &state.acc[local * size_t(dim_)], dim_, inverse);
      if (args_.lse) {
        const float lse = sum > 0 ? state.row_max[local] + std::log(sum) : kNegInf;
        store_float(*args_.lse, offset2(*args_.lse, head, r), lse);
      }
    }
  }

  int64_t head_dim() const { return dim_; }

 private:
  void load_queries(const RowBlock& block, int64_t head, Scratch& s) const {
    for (int64_t r = block.begin; r < block.end; ++r) {
      load_row(args_.q, offset3(args_.q, r, head, 0), s.row.data());
      const int64_t column = r - block.begin;
      for (int64_t d = 0; d < dim_; ++d)
        s.queries_t[size_t(d * kTileWidth + column)] = args_.scale * s.row[size_t(d)];
    }
  }

  // One head_dim row of a float tensor as f32.
  void load_row(const TensorView& t, int64_t offset, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(dim_) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, dim_, dst);
  }

  // Positions and visible intervals of the slice's rows, padded to whole SIMD groups.
  void load_row_metadata(const SliceRows& rows, Scratch& s) const {
    const Slice& slice = *rows.slice;
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    const int64_t n = rows.row_end - rows.row_begin;
    for (int64_t c = 0; c < round_up(n, kLanes); ++c) {
      const bool real = c < n;
      const KeyInterval keys = visible_keys(slice.type, rows.row_begin + c - slice.q_begin, sq, sk);
      s.query_pos[size_t(c)] = real ? plan_.q_positions[size_t(rows.row_begin + c)] : 0;
      s.visible_lo[size_t(c)] = real ? int32_t(keys.lo) : 0;
      s.visible_hi[size_t(c)] = real ? int32_t(keys.hi) : 0;
    }
  }

  void attend(const SliceRows& rows, int64_t key_lo, int64_t key_hi, const RowBlock& block,
              int64_t head, Scratch& s, RowState& state) const {
    if (key_lo >= key_hi) return;
    load_row_metadata(rows, s);
    const float slope = args_.slopes.at(rows.slice->sequence, int(head));
    // Blocks are aligned to the end so that a causal diagonal cuts only the last one.
    for (int64_t end = key_hi; end > key_lo; end -= kKeyBlock)
      attend_block(rows, std::max(key_lo, end - kKeyBlock), end, slope, block, head, s, state);
  }

  // Rows of keys or values [first, first + count) of a kv head, packed contiguously as f32:
  // reading them in place would touch a new page per row in the products. The start of each
  // row of the next block (below, as blocks run from the end) is prefetched, as rows sit a page
  // or more apart where hardware prefetchers stop; whole f32 rows stalled on full miss buffers.
  const float* kv_rows(const TensorView& t, int64_t first, int64_t count, int64_t kv_head,
                       std::vector<float>& buffer) const {
    const char* base = static_cast<const char*>(t.data);
    const int64_t element = int64_t(dtype_size(t.dtype));
    const int64_t prefetch_bytes = std::min(kPrefetchBytesPerRow, dim_ * element);
    for (int64_t i = 0; i < count; ++i) {
      if (first - count + i >= 0) {
        const char* next = base + offset3(t, first - count + i, kv_head, 0) * element;
        for (int64_t byte = 0; byte < prefetch_bytes; byte += 64) __builtin_prefetch(next + byte);
      }
      load_row(t, offset3(t, first + i, kv_head, 0), &buffer[size_t(i * dim_)]);
    }
    return buffer.data();
  }

  void load_extra(const SliceRows& rows, int64_t first_key, int64_t count, int64_t head,
                  Scratch& s) const {
    const TensorView& bias = *args_.attn_bias;
    const int64_t bias_head = bias.shape[0] == 1 ? 0 : head;
    s.extra.resize(s.scores.size());
    for (int64_t j = 0; j < count; ++j)
      for (int64_t r = rows.row_begin; r < rows.row_end; ++r)
        s.extra[size_t(j * kTileWidth + (r - rows.row_begin))] =
            load_float(bias, offset3(bias, bias_head, r, first_key + j));
  }

  // The run of the slice's rows (columns of the tile) whose visible keys meet [kb, ke): visible
  // intervals only move forward with the row, so it is contiguous (a causal diagonal block
  // is seen by half the rows).
  static std::pair<int64_t, int64_t> columns_seeing(const Scratch& s, int64_t n, int64_t kb, int64_t ke) {
    const int32_t* hi = s.visible_hi.data();
    const int32_t* lo = s.visible_lo.data();
    const int64_t begin = std::partition_point(hi, hi + n, [&](int32_t h) { return h <= kb; }) - hi;
    const int64_t end = std::partition_point(lo, lo + n, [&](int32_t l) { return l < ke; }) - lo;
    return {begin, std::max(begin, end)};
  }

  void attend_block(const SliceRows& rows, int64_t kb, int64_t ke, float slope,
                    const RowBlock& block, int64_t head, Scratch& s, RowState& state) const {
    const Slice& slice = *rows.slice;
    const auto [c0, c1] = columns_seeing(s, rows.row_end - rows.row_begin, kb, ke);
    if (c0 == c1) return;
    const int64_t count = ke - kb, n = c1 - c0;
    const int64_t r0 = rows.row_begin - block.begin + c0;  // the first row's place in the block
    const int64_t kv_head = head / group_;
    const float* keys = kv_rows(args_.k, slice.k_begin + kb, count, kv_head, s.keys);
    ops_.gemm(count, round_up(n, kLanes), dim_, keys, dim_, 1, &s.queries_t[size_t(r0)],
              kTileWidth, s.scores.data(), kTileWidth, nullptr);
    if (args_.attn_bias) load_extra(rows, slice.k_begin + kb, count, head, s);

    ScoreBlock scores{};
    scores.scores = s.scores.data();
    scores.ld = kTileWidth;
    scores.keys = count;
    scores.queries = n;
    scores.extra = args_.attn_bias ? s.extra.data() + c0 : nullptr;
    scores.key_pos = &plan_.k_positions[size_t(slice.k_begin + kb)];
    scores.query_pos = s.query_pos.data() + c0;
    scores.visible_lo = s.visible_lo.data() + c0;
    scores.visible_hi = s.visible_hi.data() + c0;
    scores.first_key = int32_t(kb);
    scores.needs_mask = kb < s.visible_lo[size_t(c1 - 1)] || ke > s.visible_hi[size_t(c0)];
    scores.slope = slope;
    scores.softcap = args_.softcap;
    scores.row_max = &state.row_max[size_t(r0)];
    scores.row_sum = &state.row_sum[size_t(r0)];
    scores.correction = s.correction.data();
    ops_.softmax_block(scores);

    const float* values = kv_rows(args_.v, slice.k_begin + kb, count, kv_head, s.values);
    ops_.gemm(n, dim_, count, s.scores.data(), 1, kTileWidth, values, dim_, &state.acc[size_t(r0 * dim_)], dim_,
              s.correction.data());
  }

  const ForwardArgs& args_;
  const MaskPlan& plan_;
  const TileOps& ops_;
  const int64_t heads_, group_, dim_;
};

// n objects built in place for head_dim (copying a prototype would cost a memcpy each).
template <typename T>
std::vector<T> built_in_place(size_t n, int64_t head_dim) {
  std::vector<T> objects;
  objects.reserve(n);
  for (size_t i = 0; i < n; ++i) objects.emplace_back(head_dim);
  return objects;
}

// Folds split partials into the first, in split order (deterministic).
void merge_splits(std::vector<RowState>& parts, int64_t head_dim) {
  RowState& total = parts[0];
  for (size_t r = 0; r < size_t(kRowBlock); ++r) {
    float m = kNegInf;
    for (const RowState& p : parts) m = std::max(m, p.row_max[r]);
    if (m == kNegInf) continue;
    float sum = 0.0f;
    std::vector<float> acc(size_t(head_dim), 0.0f);
    for (const RowState& p : parts) {
      const float weight = std::exp(p.row_max[r] - m);
      sum += p.row_sum[r] * weight;
      for (int64_t d = 0; d < head_dim; ++d) acc[size_t(d)] += p.acc[r * size_t(head_dim) + size_t(d)] * weight;
    }
    total.row_max[r] = m;
    total.row_sum[r] = sum;
    std::copy(acc.begin(), acc.end(), total.acc.begin() + std::ptrdiff_t(r * size_t(head_dim)));
  }
}

// True when every |qpos - kpos| fits int32, as the SIMD bias needs.
bool positions_fit_int32(const MaskPlan& plan) {
  int64_t lo = 0, hi = 0;
  for (const auto* positions : {&plan.q_positions, &plan.k_positions}) {
    if (positions->empty()) continue;
    const auto [min, max] = std::minmax_element(positions->begin(), positions->end());
    lo = std::min<int64_t>(lo, *min);
    hi = std::max<int64_t>(hi, *max);
  }
  return hi - lo <= std::numeric_limits<int32_t>::max();
}

// Work items head by head (consecutive items share the head's keys and values in cache),
// within a head the blocks with the most work first, so the last items to run are small.
// Items are numbered head * blocks + block.
std::vector<int64_t> items_by_work(const std::vector<RowBlock>& blocks, int64_t heads) {
  std::vector<int64_t> by_work(blocks.size());
  std::iota(by_work.begin(), by_work.end(), 0);
  std::stable_sort(by_work.begin(), by_work.end(), [&](int64_t a, int64_t b) {
    return blocks[size_t(a)].cells > blocks[size_t(b)].cells;
  });
  std::vector<int64_t> order;
  order.reserve(blocks.size() * size_t(heads));
  for (int64_t head = 0; head < heads; ++head)
    for (int64_t block : by_work) order.push_back(head * int64_t(blocks.size()) + block);
  return order;
}

int choose_splits(const std::vector<RowBlock>& blocks, int64_t heads) {
  const int64_t items = int64_t(blocks.size()) * heads;
  if (items == 0 || items >= kTargetItems) return 1;
  int64_t widest = 0;
  for (const RowBlock& block : blocks) widest = std::max(widest, block.widest);
  const int64_t by_items = (kTargetItems + items - 1) / items;
  return int(std::max<int64_t>(1, std::min(by_items, widest / kMinKeysPerSplit)));
}

}  // namespace

void attention_forward(const ForwardArgs& args, ThreadPool& pool) {
  const TileOps& ops = positions_fit_int32(*args.plan) ? tile_ops() : generic_tile_ops();
  if (decode_applies(*args.plan)) return decode_forward(args, ops, pool);
  const Attention attention(args, ops);
  const int64_t heads = args.q.shape[1], head_dim = attention.head_dim();
  const std::vector<RowBlock> blocks = plan_row_blocks(*args.plan);
  const std::vector<int64_t> order = items_by_work(blocks, heads);
  const int splits = choose_splits(blocks, heads);
  std::vector<Scratch> scratch = built_in_place<Scratch>(size_t(pool.size()), head_dim);
  const int64_t num_blocks = int64_t(blocks.size());
  auto block_of = [&](int64_t item) -> const RowBlock& { return blocks[size_t(item % num_blocks)]; };
  auto head_of = [&](int64_t item) { return item / num_blocks; };

  if (splits == 1) {
    std::vector<RowState> states = built_in_place<RowState>(size_t(pool.size()), head_dim);
    pool.parallel_for(int64_t(order.size()), [&](int64_t index, int worker) {
      const int64_t item = order[size_t(index)];
      RowState& state = states[size_t(worker)];
      attention.accumulate(block_of(item), head_of(item), 0, 1, scratch[size_t(worker)], state);
      attention.write(block_of(item), head_of(item), state);
    });
    return;
  }
  // Few items (decode): each item's keys are split; partials merge by LSE in split order.
  std::vector<std::vector<RowState>> partials;
  partials.reserve(order.size());
  for (size_t i = 0; i < order.size(); ++i) partials.push_back(built_in_place<RowState>(size_t(splits), head_dim));
  pool.parallel_for(int64_t(order.size()) * splits, [&](int64_t task, int worker) {
    const int64_t index = task / splits, item = order[size_t(index)];
    const int split = int(task % splits);
    attention.accumulate(block_of(item), head_of(item), split, splits, scratch[size_t(worker)],
                         partials[size_t(index)][size_t(split)]);
  });
  pool.parallel_for(int64_t(order.size()), [&](int64_t index, int) {
    const int64_t item = order[size_t(index)];
    merge_splits(partials[size_t(index)], head_dim);
    attention.write(block_of(item), head_of(item), partials[size_t(index)][0]);
  });
}

}  // namespace alibi::cpu
