// Attention for calls whose slices have only a few query rows each (decode, speculative
// decode). Work items are (slice, chunk of keys: the mask plan's) over all heads at once. A thread takes its
// chunk's keys 8 tokens at a time, each step against every row of the slice that sees it (so a
// step comes from memory once for all of them), head by head: one load of q serves 8 dot
// products and a head's accumulator stays in registers across the 8 values (token by token with
// the accumulator in memory spent ~3x the compute, which from DRAM did not hide behind the reads).
// f16/bf16 k and v are widened in registers, so half caches are read at half the bytes.
// Chunk partials merge by log-sum-exp in chunk order, so results do not depend on the thread
// count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernel/attention_math.h"
#include "cpu/decode.h"
#include "cpu/host_tensor.h"
#include "cpu/merge.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kMaxRows = 8;         // slices with more query rows take the tiled kernel
constexpr int64_t kKeysPerStep = 8;     // keys scored together before the softmax update
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A chunk's partial result of every (row, head) of its slice: max, sum of exp and the
// weighted sum of values.
struct Partial {
  std::vector<float> acc, max, sum;  // [row][head][dim], [row][head], [row][head]
};

// One query row's part of a Partial.
struct RowAccumulator {
  float *max, *sum, *acc;
};

// A chunk's buffers: each row's scaled queries (or, for the bf16 dot products, unscaled pairs of
// dims); a step's scores, per head.
struct StepBuffers {
  std::vector<float> queries, scores, slopes, shift, correction;
  std::vector<uint32_t> query_pairs;
};

class Decode {
 public:
  Decode(const ForwardArgs& args, const KvSource& kv, const TileOps& ops)
      : args_(args), mask_(*args.mask), kv_(kv), ops_(ops), heads_(args.q.shape[1]),
        dim_(args.q.shape[2]), layout_{heads_, heads_ / kv.kv_heads(), dim_},
        prefetches_(layout_.group > 1 || (args.k.dtype != ALIBI_DTYPE_F32 && ops.decode_prefetches_mha_half)),
        bf16_dots_(ops.score_tokens_bf16_pairs && args.q.dtype == ALIBI_DTYPE_BF16 &&
                   layout_.group >= ops.bf16_pairs_from_group) {}

  int64_t heads() const { return heads_; }
  int64_t dim() const { return dim_; }

  // Scores the keys of one chunk into its partial.
  void score_chunk(const KeyChunk& chunk, Partial& out) const {
    const Slice& slice = mask_.slices[chunk.slice];
    const int64_t rows = slice.q_end - slice.q_begin;
    const int64_t width = heads_ * dim_;
    StepBuffers buffers{std::vector<float>(size_t(rows * width)), std::vector<float>(size_t(kKeysPerStep * heads_)),
                        std::vector<float>(size_t(heads_)), std::vector<float>(size_t(heads_)),
                        std::vector<float>(size_t(heads_)), std::vector<uint32_t>()};
    if (bf16_dots_) buffers.query_pairs.resize(size_t(rows * heads_ * pairs_of(dim_)));
    for (int64_t h = 0; h < heads_; ++h) buffers.slopes[size_t(h)] = args_.slopes.at(slice.sequence, int(h));
    out.acc.assign(size_t(rows * width), 0.0f);
    out.max.assign(size_t(rows * heads_), kNegInf);
    out.sum.assign(size_t(rows * heads_), 0.0f);
    KeyInterval seen[kMaxRows];
    KeyInterval all{chunk.key_end, chunk.key_begin};
    for (int64_t r = 0; r < rows; ++r) {
      const KeyInterval visible = visible_keys(slice.type, r, rows, slice.k_end - slice.k_begin);
      seen[r] = {std::max<int64_t>(visible.lo, chunk.key_begin), std::min<int64_t>(visible.hi, chunk.key_end)};
      if (seen[r].lo < seen[r].hi) all = {std::min(all.lo, seen[r].lo), std::max(all.hi, seen[r].hi)};
      load_queries(slice.q_begin + r, r, buffers);
    }
    for (int64_t j = all.lo; j < all.hi;) j = step(slice, seen, j, all.hi, buffers, out);
  }

  // Scores up to kKeysPerStep keys from slice-relative key j (< end) into the rows that see
  // them (`seen`: each row's keys in the chunk); a step stops at the end of a cache block, so
  // that its keys are one run. The first of those rows prefetches the step's values and the next
  // step's keys. Returns the key after the step.
  int64_t step(const Slice& slice, const KeyInterval* seen, int64_t j, int64_t end, StepBuffers& buffers,
               Partial& out) const {
    const int64_t next = j + kv_.keys(slice, slice.k_begin + j, std::min(kKeysPerStep, end - j)).count;
    TokenRun next_keys{};
    if (prefetches_ && next < end) next_keys = kv_.keys(slice, slice.k_begin + next, std::min(kKeysPerStep, end - next));
    bool fetches = prefetches_;
    for (int64_t r = 0; r < slice.q_end - slice.q_begin; ++r) {
      const int64_t lo = std::max(seen[r].lo, j), hi = std::min(seen[r].hi, next);
      if (lo >= hi) continue;
      const TokenRun keys = kv_.keys(slice, slice.k_begin + lo, hi - lo);
      const TokenRun values = kv_.values(slice, slice.k_begin + lo, keys.count);
      const RowAccumulator row{&out.max[size_t(r * heads_)], &out.sum[size_t(r * heads_)],
                               &out.acc[size_t(r * heads_ * dim_)]};
      score_keys(slice, r, lo, keys, fetches ? &values : nullptr, buffers);
      softmax_update(keys.count, buffers, row);
      ops_.accumulate_tokens(buffers.scores.data(), values, fetches && next_keys.count > 0 ? &next_keys : nullptr,
                             layout_, buffers.correction.data(), row.acc);
      fetches = false;
    }
    return next;
  }

  // Out and lse of a slice's rows from its chunks' partials, merged in chunk order.
  void write(const Slice& slice, const Partial* parts, int64_t num_parts) const {
    const int64_t rows = slice.q_end - slice.q_begin;
    std::vector<float> acc(static_cast<size_t>(dim_));
    std::vector<PartialRow> row_parts(static_cast<size_t>(num_parts));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads_; ++h) {
        const size_t state = size_t(r * heads_ + h);
        for (int64_t p = 0; p < num_parts; ++p)
          row_parts[size_t(p)] = {parts[p].max[state], parts[p].sum[state], &parts[p].acc[state * size_t(dim_)]};
        write_row(slice.q_begin + r, h, acc.data(), merge_rows(row_parts.data(), num_parts, dim_, acc.data()));
      }
  }

  void write_row(int64_t row, int64_t head, const float* acc, const RowTotals& totals) const {
    store_row(ops_, args_.out, offset3(args_.out, row, head, 0), acc, dim_, output_scale(totals.sum));
    if (args_.lse)
      store_float(*args_.lse, offset2(*args_.lse, head, row), row_lse(totals.max, totals.sum));
  }

 private:
  void load_row(const TensorView& t, int64_t offset, int64_t count, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(count) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, count, dst);
  }

  // Where the slice's row r keeps its queries in `buffers`.
  float* row_queries(StepBuffers& buffers, int64_t r) const { return &buffers.queries[size_t(r * heads_ * dim_)]; }
  uint32_t* row_query_pairs(StepBuffers& buffers, int64_t r) const {
    return &buffers.query_pairs[size_t(r * heads_ * pairs_of(dim_))];
  }

  // The queries of packed row `row`, the slice's row r.
  void load_queries(int64_t row, int64_t r, StepBuffers& buffers) const {
    if (bf16_dots_) {
      const auto* q = static_cast<const uint16_t*>(args_.q.data);
      uint32_t* dst = row_query_pairs(buffers, r);
      const int64_t pairs = pairs_of(dim_);
      for (int64_t h = 0; h < heads_; ++h) {
        const uint16_t* src = q + offset3(args_.q, row, h, 0);
        if (ops_.bf16_queries_by_key_head)
          pack_bf16_pairs(src, dim_, dst + by_key_head(layout_, pairs, h, 0), layout_.group);
        else
          pack_bf16_pairs(src, dim_, dst + h * pairs, 1);
      }
      return;
    }
    float* dst = row_queries(buffers, r);
    for (int64_t h = 0; h < heads_; ++h) {
      load_row(args_.q, offset3(args_.q, row, h, 0), dim_, dst + h * dim_);
      for (int64_t d = 0; d < dim_; ++d) dst[h * dim_ + d] *= args_.scale;
    }
  }

  // scores[j][h] for the run of keys from `first` (slice-relative) of one query row: the dot
  // products by the SIMD table (prefetching `ahead`, if given), the rest by cell_score.
  void score_keys(const Slice& slice, int64_t r, int64_t first, const TokenRun& keys, const TokenRun* ahead,
                  StepBuffers& buffers) const {
    const int64_t row = slice.q_begin + r;
    const int32_t qpos = mask_.q_positions[row];
    if (bf16_dots_)
      ops_.score_tokens_bf16_pairs(row_query_pairs(buffers, r), keys, ahead, layout_, buffers.scores.data());
    else
      ops_.score_tokens(row_queries(buffers, r), keys, ahead, layout_, buffers.scores.data());
    // Locals: stores to scores cannot change them. The bf16 dot products are unscaled.
    const float softcap = args_.softcap, dot_scale = bf16_dots_ ? args_.scale : 1.0f;
    for (int64_t j = 0; j < keys.count; ++j) {
      const int64_t key = slice.k_begin + first + j;
      const int32_t kpos = mask_.k_positions[key];
      float* scores = &buffers.scores[size_t(j * heads_)];
      const float* slopes = buffers.slopes.data();
      if (args_.attn_bias)
        for (int64_t h = 0; h < heads_; ++h)
          scores[h] = cell_score(dot_scale * scores[h], softcap, slopes[h], qpos, kpos, attn_bias(h, row, key));
      else
        for (int64_t h = 0; h < heads_; ++h)
          scores[h] = cell_score(dot_scale * scores[h], softcap, slopes[h], qpos, kpos, 0.0f);
    }
  }

  float attn_bias(int64_t head, int64_t row, int64_t key) const {
    const TensorView& bias = *args_.attn_bias;
    return load_float(bias, offset3(bias, attn_bias_head(bias.shape[0], head), row, key));
  }

  // Online softmax over `count` keys for every head at once (softmax_step, with the SIMD
  // table's exp); scores become probabilities and buffers.correction the factor of each head's
  // accumulator (applied by accumulate_values).
  void softmax_update(int64_t count, StepBuffers& buffers, const RowAccumulator& row) const {
    float* scores = buffers.scores.data();
    float* shift = buffers.shift.data();
    float* correction = buffers.correction.data();
    for (int64_t h = 0; h < heads_; ++h) correction[h] = row.max[h];
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) row.max[h] = std::max(row.max[h], scores[j * heads_ + h]);
    for (int64_t h = 0; h < heads_; ++h) {
      shift[h] = softmax_shift(row.max[h]);
      correction[h] -= shift[h];
    }
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) scores[j * heads_ + h] -= shift[h];
    ops_.exp_in_place(scores, count * heads_);
    ops_.exp_in_place(correction, heads_);
    for (int64_t h = 0; h < heads_; ++h) row.sum[h] *= correction[h];
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) row.sum[h] += scores[j * heads_ + h];
  }

  const ForwardArgs& args_;
  const MaskView& mask_;
  const KvSource& kv_;
  const TileOps& ops_;
  const int64_t heads_, dim_;
  const HeadLayout layout_;
  // Whether a step prefetches the runs that follow it: where the kernel spends more time per
  // byte than plain f32 MHA (GQA/MQA; half caches where the table says) the hardware
  // prefetchers fall behind (measured 1.3x to 1.5x on GQA 32/8, 1.4x on MHA bf16 on Zen 5);
  // plain MHA f32 already streams (prefetching cost it 10%).
  const bool prefetches_;
  const bool bf16_dots_;  // q.k by score_tokens_bf16_pairs
};

// Rows that see no key get out = 0 and lse = -inf.
void write_uncovered_rows(const Decode& decode, const MaskView& mask) {
  const std::vector<float> zeros(size_t(decode.dim()), 0.0f);
  const RowTotals nothing{kNegInf, 0.0f};
  for (int64_t u = 0; u < mask.num_uncovered; ++u)
    for (int32_t r = mask.uncovered[u].begin; r < mask.uncovered[u].end; ++r)
      for (int64_t h = 0; h < decode.heads(); ++h) decode.write_row(r, h, zeros.data(), nothing);
}

}  // namespace

bool decode_takes(const Slice& slice) { return slice.q_end - slice.q_begin <= kMaxRows; }

Route route(const MaskView& mask) {
  if (mask.slices_share_rows) return Route::kTiled;
  if (mask.max_slice_rows <= kMaxRows) return Route::kDecode;
  const bool any_small = std::any_of(mask.slices, mask.slices + mask.num_slices, [](const Slice& slice) {
    return slice.q_begin < slice.q_end && slice.k_begin < slice.k_end && decode_takes(slice);
  });
  return any_small ? Route::kMixed : Route::kTiled;
}

void decode_forward(const ForwardArgs& args, const KvSource& kv, const TileOps& ops,
                    const ThreadPool& pool) {
  const Decode decode(args, kv, ops);
  const MaskView& mask = *args.mask;
  const int64_t num_chunks = mask.first_chunk[mask.num_slices];
  std::vector<Partial> partials(static_cast<size_t>(num_chunks));
  pool.parallel_for(num_chunks, [&](int64_t c, int) {
    if (decode_takes(mask.slices[mask.chunks[c].slice])) decode.score_chunk(mask.chunks[c], partials[size_t(c)]);
  });
  pool.parallel_for(mask.num_slices, [&](int64_t s, int) {
    const int64_t first = mask.first_chunk[s], count = mask.first_chunk[s + 1] - first;
    if (count > 0 && decode_takes(mask.slices[s])) decode.write(mask.slices[s], partials.data() + first, count);
  });
  write_uncovered_rows(decode, mask);
}

}  // namespace alibi::cpu
