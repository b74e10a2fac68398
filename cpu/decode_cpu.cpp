// Attention for calls whose slices have only a few query rows each (decode, speculative
// decode). Work items are (slice, chunk of keys: the mask plan's) over all heads at once. A
// slice's rows are taken as query heads of one row (RowHeads), so a thread takes its chunk's
// keys 8 tokens at a time for all rows and heads together (16 where the steps prefetch, gathered
// from four parts of the chunk: Decode::gathered_steps): each step comes from memory once, and
// each key or value vector loaded serves every query head of every row that reads it. One
// load of q serves 8 dot products and a head's accumulator stays in registers across the 8
// values (token by token with the accumulator in memory spent ~3x the compute, which from DRAM
// did not hide behind the reads). f16/bf16 k and v are widened in registers, so half caches
// are read at half the bytes. Chunk partials merge by log-sum-exp in chunk order, so results
// do not depend on the thread count.
#include <algorithm>
#include <atomic>
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

// Slices with more query rows take the tiled kernel: with the rows as row heads, the decode kernel
// ran 1.02 to 2.1x the tiled one up to 16 rows (both ISA tables), 0.56 to 1.1x from 32.
constexpr int64_t kMaxRows = 16;
constexpr int64_t kKeysPerStep = 8;  // keys scored together before the softmax update
// A gathered step (Decode::gathered_steps) takes kKeysPerStream consecutive keys from each of
// kGatherWays parts of a chunk's keys: 16 in all ran the paged GQA decode 1.03 to 1.055x 8 keys
// from 4 parts (steps not gathered keep 8: 16 cost the MHA bf16 decode 3% before it was gathered).
constexpr int64_t kKeysPerStream = 4;
constexpr int64_t kKeysPerGatheredStep = kKeysPerStream * kGatherWays;
constexpr int64_t kMaxKeysPerStep = std::max(kKeysPerStep, kKeysPerGatheredStep);
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// A slice's query rows taken as query heads of one row: query head h of row r is "row head"
// ((h / group) * rows + r) * group + h % group, so that the tile operations see rows x group
// query heads per kv head and every load of a key or value vector serves all rows (speculative
// decode reads its keys once, not once per row). One row: the query heads as they are.
struct RowHeads {
  int64_t rows, heads, group;

  int64_t count() const { return rows * heads; }
  int64_t of(int64_t r, int64_t h) const { return ((h / group) * rows + r) * group + h % group; }
  int64_t row(int64_t v) const { return v / group % rows; }
  int64_t head(int64_t v) const { return v / (group * rows) * group + v % group; }
  HeadLayout layout(int64_t dim) const { return {rows * heads, rows * group, dim}; }
};

// A chunk's partial result of every row head (RowHeads) of its slice: max, sum of exp and the
// weighted sum of values.
struct Partial {
  std::vector<float> acc, max, sum;  // [row head][dim], [row head], [row head]
};

// A chunk's buffers, per row head: the scaled queries (or, for the bf16 dot products, unscaled
// pairs of dims), a step's scores, the slopes and query positions; each row's visible keys. A
// worker keeps one set through a call, so that only its first chunk writes them from cold memory
// (with a set per chunk, the cold GQA 32/8 decode's 256-key chunks took 2 to 5% longer).
struct StepBuffers {
  std::vector<float> queries, scores, slopes, correction;
  std::vector<float> padded_scores;  // a step's scores, rows kQueryPadding apart (softmax_block)
  std::vector<int32_t> query_pos;    // per row head, not per row: softmax_block's queries
  std::vector<uint32_t> query_pairs;
  int32_t key_pos[kMaxKeysPerStep];  // the step's keys'
  KeyInterval seen[kMaxRows];        // per row, its visible keys within the chunk (slice-relative)
};

// How a slice's rows are taken: as row heads (RowHeads), with the tile operations' choices
// for that many query heads per kv head.
struct Rows {
  RowHeads heads;
  HeadLayout layout;
  // Whether a step prefetches the runs that follow it: where the kernel spends more time per
  // byte than plain f32 MHA (GQA/MQA, or several rows; half caches where the table says) the
  // hardware prefetchers fall behind (measured 1.3x to 1.5x on GQA 32/8, 1.4x on MHA bf16 on
  // Zen 5); plain MHA f32 already streams (prefetching cost it 10%).
  bool prefetches;
  bool bf16_dots;  // q.k by score_tokens_bf16_pairs
  // Whether steps are gathered from kGatherWays parts of a chunk (Decode::gathered_steps): where
  // the steps prefetch (GQA/MQA, several rows, MHA's half caches where the table says), the
  // runs fit the prefetch's list (kMaxGatheredLines) and the q.k is not by the bf16 pair
  // products (which take evenly spaced tokens).
  bool gathers;
};

// A gathered step: its keys (slice-relative) and their key and value runs, whose rows it holds.
struct GatheredStep {
  int64_t key[kKeysPerGatheredStep];
  const void* key_rows[kKeysPerGatheredStep];
  const void* value_rows[kKeysPerGatheredStep];
  TokenRun keys, values;
};

class Decode {
 public:
  Decode(const ForwardArgs& args, const KvSource& kv, const TileOps& ops)
      : args_(args), mask_(*args.mask), kv_(kv), ops_(ops), heads_(args.q.shape[1]), dim_(args.q.shape[2]),
        group_(heads_ / kv.kv_heads()) {}

  int64_t heads() const { return heads_; }
  int64_t dim() const { return dim_; }

  // Scores the keys of one chunk into its partial, with a worker's buffers.
  void score_chunk(const KeyChunk& chunk, StepBuffers& buffers, Partial& out) const {
    const Slice& slice = mask_.slices[chunk.slice];
    const Rows rows = rows_of(slice);
    const int64_t n = rows.heads.count();
    out.acc.assign(size_t(n * dim_), 0.0f);
    out.max.assign(size_t(n), kNegInf);
    out.sum.assign(size_t(n), 0.0f);
    fit(rows, buffers);
    const KeyInterval all = load_rows(slice, chunk, rows, buffers);
    const int64_t rest = rows.gathers ? gathered_steps(slice, rows, all, buffers, out) : all.lo;
    for (int64_t j = rest; j < all.hi;) j = step(slice, rows, j, all.hi, buffers, out);
  }

  // The first kGatherWays * part keys of `all` in gathered steps: step i takes keys [i, i +
  // kKeysPerStream) of each of kGatherWays parts of `part` keys (token t of a step from part t %
  // kGatherWays), so that a thread reads kGatherWays places of the cache side by side and its
  // prefetch asks for a line of each in turn (RunPrefetch). One place at a time, a throwaway
  // model of the GQA 32/8 bf16 step read shuffled 16-token blocks at 0.6 of the read-only
  // stream, contiguous keys at 0.8; four places side by side read the blocks at 0.85. Paired
  // (H32/Hkv8 D128 bf16, Tk 32768): paged blocks of 16 1.35x, contiguous 1.13x; from L3 (Tk
  // 4096) paged 1.27x, contiguous 0.95 to 1.03x (bench/RESULTS.md). Returns the first key left.
  int64_t gathered_steps(const Slice& slice, const Rows& rows, const KeyInterval& all, StepBuffers& buffers,
                         Partial& out) const {
    const int64_t part = (all.hi - all.lo) / kKeysPerGatheredStep * kKeysPerStream, end = all.lo + kGatherWays * part;
    GatheredStep steps[2];
    if (part > 0) gather(slice, all.lo, part, 0, steps[0]);
    for (int64_t i = 0; i < part; i += kKeysPerStream) {
      const GatheredStep& current = steps[i / kKeysPerStream % 2];
      GatheredStep& next = steps[(i / kKeysPerStream + 1) % 2];
      TokenRun next_keys{};
      if (i + kKeysPerStream < part) {
        gather(slice, all.lo, part, i + kKeysPerStream, next);
        next_keys = next.keys;
      } else if (end < all.hi) {
        next_keys = kv_.keys(slice, slice.k_begin + end, std::min(kKeysPerStep, all.hi - end));
      }
      run_step(rows, slice, current.key, current.keys, current.values, next_keys.count > 0 ? &next_keys : nullptr,
               buffers, out);
    }
    return end;
  }

  // Step i of the gathered steps over parts of `part` keys from lo: way w's keys [lo + w * part
  // + i, + kKeysPerStream), as tokens w, w + kGatherWays, ... of its runs.
  void gather(const Slice& slice, int64_t lo, int64_t part, int64_t i, GatheredStep& step) const {
    for (int64_t w = 0; w < kGatherWays; ++w)
      for (int64_t t = w, key = lo + w * part + i; t < kKeysPerGatheredStep;) {
        const int64_t left = (kKeysPerGatheredStep - t + kGatherWays - 1) / kGatherWays;
        const TokenRun keys = kv_.keys(slice, slice.k_begin + key, left);
        const TokenRun values = kv_.values(slice, slice.k_begin + key, keys.count);
        if (t == 0) {  // the gathered runs take the dtype and strides of the first
          step.keys = keys;
          step.values = values;
        }
        for (int64_t j = 0; j < keys.count; ++j, ++key, t += kGatherWays) {
          step.key[t] = key;
          step.key_rows[t] = keys.row(j);
          step.value_rows[t] = values.row(j);
        }
      }
    step.keys.count = step.values.count = kKeysPerGatheredStep;
    step.keys.rows = step.key_rows;
    step.values.rows = step.value_rows;
  }

  // Scores `keys` (their runs' tokens, slice-relative) into every row head and adds up their
  // values, prefetching the values while scoring and `next` (if any) while adding up.
  void run_step(const Rows& rows, const Slice& slice, const int64_t* keys, const TokenRun& key_run,
                const TokenRun& value_run, const TokenRun* next, StepBuffers& buffers, Partial& out) const {
    score_dots(rows, key_run, rows.prefetches ? &value_run : nullptr, buffers);
    softmax_step(slice, rows, keys, key_run.count, buffers, out);
    ops_.accumulate_tokens(buffers.scores.data(), value_run, rows.prefetches ? next : nullptr, rows.layout,
                           buffers.correction.data(), out.acc.data());
  }

  // Scores up to kKeysPerStep keys from slice-relative key j (< end) into every row head, those
  // a row does not see masked; a step stops at the end of a cache block, so that its keys are
  // one run. Prefetches the step's values while scoring and the next step's keys while adding
  // up the values. Returns the key after the step.
  int64_t step(const Slice& slice, const Rows& rows, int64_t j, int64_t end, StepBuffers& buffers,
               Partial& out) const {
    const TokenRun keys = kv_.keys(slice, slice.k_begin + j, std::min(kKeysPerStep, end - j));
    const TokenRun values = kv_.values(slice, slice.k_begin + j, keys.count);
    const int64_t next = j + keys.count;
    TokenRun next_keys{};
    if (rows.prefetches && next < end)
      next_keys = kv_.keys(slice, slice.k_begin + next, std::min(kKeysPerStep, end - next));
    int64_t indices[kKeysPerStep];
    for (int64_t i = 0; i < keys.count; ++i) indices[i] = j + i;
    run_step(rows, slice, indices, keys, values, next_keys.count > 0 ? &next_keys : nullptr, buffers, out);
    return next;
  }

  // Out and lse of a slice's rows from its chunks' partials, merged in chunk order.
  void write(const Slice& slice, const Partial* parts, int64_t num_parts) const {
    const RowHeads heads = rows_of(slice).heads;
    std::vector<float> acc(static_cast<size_t>(dim_));
    std::vector<PartialRow> row_parts(static_cast<size_t>(num_parts));
    for (int64_t r = 0; r < heads.rows; ++r)
      for (int64_t h = 0; h < heads_; ++h) {
        const size_t state = size_t(heads.of(r, h));
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
  Rows rows_of(const Slice& slice) const {
    const RowHeads heads{slice.q_end - slice.q_begin, heads_, group_};
    const HeadLayout layout = heads.layout(dim_);
    const bool prefetches = layout.group > 1 || (args_.k.dtype != ALIBI_DTYPE_F32 && ops_.decode_prefetches_mha_half);
    const bool bf16_dots = ops_.score_tokens_bf16_pairs && args_.q.dtype == ALIBI_DTYPE_BF16 &&
                           layout.group >= ops_.bf16_pairs_from_group;
    return {heads, layout, prefetches, bf16_dots, prefetches && !bf16_dots && gathered_runs_are_listed()};
  }

  // Whether a gathered step's runs fit the prefetch's list of lines.
  bool gathered_runs_are_listed() const {
    const int64_t lines_per_head = (dim_ * int64_t(dtype_size(args_.k.dtype)) + 63) / 64;
    return kKeysPerGatheredStep * kv_.kv_heads() * lines_per_head <= kMaxGatheredLines;
  }

  // Sizes `buffers` for a chunk of these rows; every element a chunk reads, it writes first, but
  // the padding of the arrays by row head (zeros or an earlier chunk's values), which
  // softmax_block's lanes past the last row head load and leave unused.
  void fit(const Rows& rows, StepBuffers& buffers) const {
    const size_t n = size_t(rows.heads.count()), padded = size_t(padded_queries(rows.heads.count()));
    buffers.queries.resize(n * size_t(dim_));
    buffers.scores.resize(size_t(kMaxKeysPerStep) * n);
    if (padded != n) buffers.padded_scores.resize(size_t(kMaxKeysPerStep) * padded);
    buffers.slopes.resize(padded);
    buffers.correction.resize(n);
    buffers.query_pos.resize(padded);
    if (rows.bf16_dots) buffers.query_pairs.resize(n * size_t(pairs_of(dim_)));
  }

  // Each row's visible keys in the chunk and its queries into `buffers`; returns the keys any
  // row sees (empty: lo >= hi).
  KeyInterval load_rows(const Slice& slice, const KeyChunk& chunk, const Rows& rows, StepBuffers& buffers) const {
    KeyInterval all{chunk.key_end, chunk.key_begin};
    for (int64_t r = 0; r < rows.heads.rows; ++r) {
      const KeyInterval visible = visible_keys(slice.type, r, rows.heads.rows, slice.k_end - slice.k_begin);
      KeyInterval& seen = buffers.seen[r];
      seen = {std::max<int64_t>(visible.lo, chunk.key_begin), std::min<int64_t>(visible.hi, chunk.key_end)};
      if (seen.lo < seen.hi) all = {std::min(all.lo, seen.lo), std::max(all.hi, seen.hi)};
      load_queries(slice, r, rows, buffers);
    }
    return all;
  }

  void load_row(const TensorView& t, int64_t offset, int64_t count, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(count) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, count, dst);
  }

  // The queries, slopes and positions of the slice's row r, at its row heads.
  void load_queries(const Slice& slice, int64_t r, const Rows& rows, StepBuffers& buffers) const {
    const int64_t row = slice.q_begin + r;
    for (int64_t h = 0; h < heads_; ++h) {
      const int64_t v = rows.heads.of(r, h);
      buffers.slopes[size_t(v)] = args_.slopes.at(slice.sequence, int(h));
      buffers.query_pos[size_t(v)] = mask_.q_positions[row];
      if (rows.bf16_dots) {
        const auto* src = static_cast<const uint16_t*>(args_.q.data) + offset3(args_.q, row, h, 0);
        const int64_t pairs = pairs_of(dim_);
        if (ops_.bf16_queries_by_key_head)
          pack_bf16_pairs(src, dim_, &buffers.query_pairs[size_t(by_key_head(rows.layout, pairs, v, 0))],
                          rows.layout.group);
        else
          pack_bf16_pairs(src, dim_, &buffers.query_pairs[size_t(v * pairs)], 1);
        continue;
      }
      float* dst = &buffers.queries[size_t(v * dim_)];
      load_row(args_.q, offset3(args_.q, row, h, 0), dim_, dst);
      for (int64_t d = 0; d < dim_; ++d) dst[d] *= args_.scale;
    }
  }

  // scores[j][v] = the dot product of row head v's query and key j of the run (unscaled for the
  // bf16 dot products), by the SIMD table (prefetching `ahead`, if given).
  void score_dots(const Rows& rows, const TokenRun& keys, const TokenRun* ahead, StepBuffers& buffers) const {
    if (rows.bf16_dots)
      ops_.score_tokens_bf16_pairs(buffers.query_pairs.data(), keys, ahead, rows.layout, buffers.scores.data());
    else
      ops_.score_tokens(buffers.queries.data(), keys, ahead, rows.layout, buffers.scores.data());
  }

  // The step's cell scores (attention_math.h) and online-softmax step for every row head at
  // once, by the table's softmax_block with the row heads as its queries: scores become
  // probabilities, buffers.correction the factor of each row head's accumulator (applied by
  // accumulate_tokens). Where every row sees every key of the step and there is no attn_bias
  // (a decode's steps), softmax_block adds the ALiBi bias and softcap too; otherwise the cells
  // are scored one by one first, and the block adds nothing (slope 0, no softcap).
  void softmax_step(const Slice& slice, const Rows& rows, const int64_t* key, int64_t count, StepBuffers& buffers,
                    Partial& out) const {
    const int64_t n = rows.heads.count();
    float* scores = buffers.scores.data();
    if (rows.bf16_dots)
      for (int64_t i = 0; i < count * n; ++i) scores[i] *= args_.scale;
    bool cells_in_block = !args_.attn_bias;
    for (int64_t j = 0; j < count; ++j) {
      buffers.key_pos[j] = mask_.k_positions[slice.k_begin + key[j]];
      cells_in_block = cells_in_block && seen_by_every_row(rows.heads.rows, buffers.seen, key[j]);
    }
    if (!cells_in_block)
      for (int64_t j = 0; j < count; ++j) score_cells_one_by_one(slice, rows, key[j], buffers, scores + j * n);
    ScoreBlock block = step_block(rows, count, buffers, out);
    if (cells_in_block) {
      block.slopes = buffers.slopes.data();
      block.softcap = args_.softcap;
    }
    if (block.scores == scores) return ops_.softmax_block(block);
    copy_rows(scores, n, block.scores, block.ld, count, n);
    ops_.softmax_block(block);
    copy_rows(block.scores, block.ld, scores, n, count, n);
  }

  // The step's ScoreBlock with no cell terms (slope 0, no softcap, nothing masked): in place
  // where the row heads are a multiple of kQueryPadding, else in buffers.padded_scores.
  ScoreBlock step_block(const Rows& rows, int64_t count, StepBuffers& buffers, Partial& out) const {
    const int64_t n = rows.heads.count(), padded = padded_queries(n);
    ScoreBlock block{};
    block.scores = padded == n ? buffers.scores.data() : buffers.padded_scores.data();
    block.ld = padded;
    block.keys = count;
    block.queries = n;
    block.key_pos = buffers.key_pos;
    block.query_pos = buffers.query_pos.data();
    block.row_max = out.max.data();
    block.row_sum = out.sum.data();
    block.correction = buffers.correction.data();
    return block;
  }

  static void copy_rows(const float* src, int64_t src_ld, float* dst, int64_t dst_ld, int64_t rows, int64_t width) {
    for (int64_t j = 0; j < rows; ++j) std::memcpy(dst + j * dst_ld, src + j * src_ld, size_t(width) * sizeof(float));
  }

  // One key's cells one by one: each its row's visibility and its attn_bias.
  void score_cells_one_by_one(const Slice& slice, const Rows& rows, int64_t key, const StepBuffers& buffers,
                              float* scores) const {
    const int32_t kpos = mask_.k_positions[slice.k_begin + key];
    for (int64_t v = 0; v < rows.heads.count(); ++v) {
      const int64_t r = rows.heads.row(v);
      if (!buffers.seen[r].contains(key)) {
        scores[v] = masked_score();
        continue;
      }
      const float bias = args_.attn_bias ? attn_bias(rows.heads.head(v), slice.q_begin + r, slice.k_begin + key) : 0.0f;
      scores[v] = cell_score(scores[v], args_.softcap, buffers.slopes[size_t(v)], buffers.query_pos[size_t(v)], kpos, bias);
    }
  }

  static bool seen_by_every_row(int64_t rows, const KeyInterval* seen, int64_t key) {
    for (int64_t r = 0; r < rows; ++r)
      if (!seen[r].contains(key)) return false;
    return true;
  }

  float attn_bias(int64_t head, int64_t row, int64_t key) const {
    const TensorView& bias = *args_.attn_bias;
    return load_float(bias, offset3(bias, attn_bias_head(bias.shape[0], head), row, key));
  }

  const ForwardArgs& args_;
  const MaskView& mask_;
  const KvSource& kv_;
  const TileOps& ops_;
  const int64_t heads_, dim_, group_;
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

// One parallel_for: whoever scores a slice's last chunk writes the slice (a second parallel_for
// for the writes woke the workers again: short decode calls ran 1.03 to 1.06x without it).
void decode_forward(const ForwardArgs& args, const KvSource& kv, const TileOps& ops,
                    const ThreadPool& pool) {
  const Decode decode(args, kv, ops);
  const MaskView& mask = *args.mask;
  const int64_t num_chunks = mask.first_chunk[mask.num_slices];
  std::vector<Partial> partials(static_cast<size_t>(num_chunks));
  std::vector<StepBuffers> buffers(static_cast<size_t>(pool.size()));
  std::vector<std::atomic<int64_t>> chunks_left(static_cast<size_t>(mask.num_slices));
  for (int64_t s = 0; s < mask.num_slices; ++s)
    chunks_left[size_t(s)].store(mask.first_chunk[s + 1] - mask.first_chunk[s], std::memory_order_relaxed);
  pool.parallel_for(num_chunks, [&](int64_t c, int worker) {
    const int32_t s = mask.chunks[c].slice;
    if (!decode_takes(mask.slices[s])) return;
    decode.score_chunk(mask.chunks[c], buffers[size_t(worker)], partials[size_t(c)]);
    // acq_rel: the last chunk's thread sees every other chunk's partial
    if (chunks_left[size_t(s)].fetch_sub(1, std::memory_order_acq_rel) > 1) return;
    const int64_t first = mask.first_chunk[s];
    decode.write(mask.slices[s], partials.data() + first, mask.first_chunk[s + 1] - first);
  });
  write_uncovered_rows(decode, mask);
}

}  // namespace alibi::cpu
