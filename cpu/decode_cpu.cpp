// Attention for calls whose slices have only a few query rows each (decode, speculative
// decode). Work items are (slice, chunk of keys) over all heads at once. A thread takes its
// chunk's keys 8 tokens at a time, head by head: one load of q serves 8 dot products and a
// head's accumulator stays in registers across the 8 values (token by token with the
// accumulator in memory spent ~3x the compute, which from DRAM did not hide behind the reads).
// f16/bf16 k and v are widened in registers, so half caches are read at half the bytes.
// Chunk partials merge by log-sum-exp in chunk order, so results do not depend on the thread
// count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernel/formulas.h"
#include "cpu/decode.h"
#include "cpu/host_tensor.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kMaxRows = 8;         // slices with more query rows take the tiled kernel
constexpr int64_t kKeysPerStep = 8;     // keys scored together before the softmax update
constexpr int64_t kTargetItems = 32;    // as in the tiled kernel: independent of threads
constexpr int64_t kMinChunk = 256;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct Item {
  int32_t slice;
  int64_t key_begin, key_end;  // slice-relative
};

// A (row, head) accumulator: max, sum of exp and the weighted sum of values.
struct Partial {
  std::vector<float> acc, max, sum;  // [row][head][dim], [row][head], [row][head]
};

// One query row's part of a Partial.
struct RowState {
  float *max, *sum, *acc;
};

// Per-item buffers: scaled queries, a step's scores, per head.
struct Scratch {
  std::vector<float> queries, scores, slopes, shift, correction;
};

inline void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

class Decode {
 public:
  Decode(const ForwardArgs& args, const TileOps& ops)
      : args_(args), plan_(*args.plan), ops_(ops), heads_(args.q.shape[1]),
        kv_heads_(args.k.shape[1]), dim_(args.q.shape[2]), layout_{heads_, heads_ / kv_heads_, dim_} {}

  int64_t heads() const { return heads_; }
  int64_t dim() const { return dim_; }

  // Scores one item into its partial.
  void run(const Item& item, Partial& out) const {
    const Slice& slice = plan_.slices[size_t(item.slice)];
    const int64_t rows = slice.q_end - slice.q_begin;
    const int64_t width = heads_ * dim_;
    Scratch scratch{std::vector<float>(size_t(width)), std::vector<float>(size_t(kKeysPerStep * heads_)),
                    std::vector<float>(size_t(heads_)),
                    std::vector<float>(size_t(heads_)), std::vector<float>(size_t(heads_))};
    for (int64_t h = 0; h < heads_; ++h) scratch.slopes[size_t(h)] = args_.slopes.at(slice.sequence, int(h));
    out.acc.assign(size_t(rows * width), 0.0f);
    out.max.assign(size_t(rows * heads_), kNegInf);
    out.sum.assign(size_t(rows * heads_), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const KeyInterval visible = visible_keys(slice.type, r, rows, slice.k_end - slice.k_begin);
      const int64_t lo = std::max(visible.lo, item.key_begin), hi = std::min(visible.hi, item.key_end);
      load_queries(slice.q_begin + r, scratch.queries.data());
      RowState state{&out.max[size_t(r * heads_)], &out.sum[size_t(r * heads_)], &out.acc[size_t(r * width)]};
      for (int64_t j = lo; j < hi; j += kKeysPerStep) {
        const int64_t count = std::min(kKeysPerStep, hi - j);
        score_keys(slice, r, j, count, scratch);
        softmax_update(count, scratch, state);
        accumulate_values(slice.k_begin + j, count, scratch, state.acc);
      }
    }
  }

  // Out and lse of a slice's rows from its chunk partials, merged in chunk order.
  void write(const Slice& slice, const Partial* parts, int64_t num_parts) const {
    const int64_t rows = slice.q_end - slice.q_begin;
    std::vector<float> acc(static_cast<size_t>(dim_));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads_; ++h) {
        const size_t state = size_t(r * heads_ + h);
        float max = kNegInf;
        for (int64_t p = 0; p < num_parts; ++p) max = std::max(max, parts[p].max[state]);
        float sum = 0.0f;
        std::fill(acc.begin(), acc.end(), 0.0f);
        for (int64_t p = 0; p < num_parts && max != kNegInf; ++p) {
          const float weight = std::exp(parts[p].max[state] - max);
          sum += parts[p].sum[state] * weight;
          axpy(weight, &parts[p].acc[state * size_t(dim_)], acc.data(), dim_);
        }
        write_row(slice.q_begin + r, h, acc.data(), max, sum);
      }
  }

  void write_row(int64_t row, int64_t head, const float* acc, float max, float sum) const {
    store_row(args_.out, offset3(args_.out, row, head, 0), acc, dim_, sum > 0 ? 1.0f / sum : 0.0f);
    if (args_.lse)
      store_float(*args_.lse, offset2(*args_.lse, head, row), sum > 0 ? max + std::log(sum) : kNegInf);
  }

 private:
  void load_row(const TensorView& t, int64_t offset, int64_t count, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(count) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, count, dst);
  }

  // Tokens [first, first + count) of k or v, in place.
  TokenRun tokens(const TensorView& t, int64_t first, int64_t count) const {
    const auto* bytes = static_cast<const char*>(t.data) + offset3(t, first, 0, 0) * int64_t(dtype_size(t.dtype));
    return {bytes, t.dtype, t.strides[0], t.strides[1], count};
  }

  void load_queries(int64_t row, float* dst) const {
    for (int64_t h = 0; h < heads_; ++h) {
      load_row(args_.q, offset3(args_.q, row, h, 0), dim_, dst + h * dim_);
      for (int64_t d = 0; d < dim_; ++d) dst[h * dim_ + d] *= args_.scale;
    }
  }

  // scores[j][h] for keys [first, first + count) (slice-relative) of one query row.
  void score_keys(const Slice& slice, int64_t r, int64_t first, int64_t count, Scratch& scratch) const {
    const int64_t row = slice.q_begin + r;
    const int32_t qpos = plan_.q_positions[size_t(row)];
    const TokenRun keys = tokens(args_.k, slice.k_begin + first, count);
    ops_.score_tokens(scratch.queries.data(), keys, layout_, scratch.scores.data());
    for (int64_t j = 0; j < count; ++j) {
      const int64_t key = slice.k_begin + first + j;
      const int32_t kpos = plan_.k_positions[size_t(key)];
      float* scores = &scratch.scores[size_t(j * heads_)];
      if (args_.softcap > 0)
        for (int64_t h = 0; h < heads_; ++h) scores[h] = args_.softcap * std::tanh(scores[h] / args_.softcap);
      for (int64_t h = 0; h < heads_; ++h) scores[h] += alibi_bias(scratch.slopes[size_t(h)], qpos, kpos);
      if (args_.attn_bias)
        for (int64_t h = 0; h < heads_; ++h) scores[h] += attn_bias(h, row, key);
    }
  }

  float attn_bias(int64_t head, int64_t row, int64_t key) const {
    const TensorView& bias = *args_.attn_bias;
    return load_float(bias, offset3(bias, bias.shape[0] == 1 ? 0 : head, row, key));
  }

  // Online softmax over `count` keys for every head at once; scores become probabilities and
  // scratch.correction the factor of each head's accumulator (applied by accumulate_values).
  void softmax_update(int64_t count, Scratch& scratch, const RowState& state) const {
    float* scores = scratch.scores.data();
    float* shift = scratch.shift.data();
    float* correction = scratch.correction.data();
    for (int64_t h = 0; h < heads_; ++h) correction[h] = state.max[h];
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) state.max[h] = std::max(state.max[h], scores[j * heads_ + h]);
    for (int64_t h = 0; h < heads_; ++h) {
      shift[h] = state.max[h] == kNegInf ? 0.0f : state.max[h];  // nothing seen yet: p = 0
      correction[h] -= shift[h];
    }
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) scores[j * heads_ + h] -= shift[h];
    ops_.exp_in_place(scores, count * heads_);
    ops_.exp_in_place(correction, heads_);
    for (int64_t h = 0; h < heads_; ++h) state.sum[h] *= correction[h];
    for (int64_t j = 0; j < count; ++j)
      for (int64_t h = 0; h < heads_; ++h) state.sum[h] += scores[j * heads_ + h];
  }

  void accumulate_values(int64_t first_key, int64_t count, Scratch& scratch, float* acc) const {
    const TokenRun values = tokens(args_.v, first_key, count);
    ops_.accumulate_tokens(scratch.scores.data(), values, layout_, scratch.correction.data(), acc);
  }

  const ForwardArgs& args_;
  const MaskPlan& plan_;
  const TileOps& ops_;
  const int64_t heads_, kv_heads_, dim_;
  const HeadLayout layout_;
};

// Items per slice: its union of visible keys cut into chunks of equal size.
std::vector<Item> plan_items(const MaskPlan& plan, std::vector<int64_t>* first_item) {
  int64_t total_keys = 0;
  std::vector<KeyInterval> spans(plan.slices.size(), KeyInterval{0, 0});
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    const int64_t rows = slice.q_end - slice.q_begin, keys = slice.k_end - slice.k_begin;
    if (rows == 0 || keys == 0) continue;
    spans[s] = {visible_keys(slice.type, 0, rows, keys).lo, visible_keys(slice.type, rows - 1, rows, keys).hi};
    total_keys += std::max<int64_t>(0, spans[s].hi - spans[s].lo);
  }
  const int64_t chunk = std::max(kMinChunk, (total_keys + kTargetItems - 1) / kTargetItems);
  std::vector<Item> items;
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    first_item->push_back(int64_t(items.size()));
    for (int64_t k = spans[s].lo; k < spans[s].hi; k += chunk)
      items.push_back({int32_t(s), k, std::min(spans[s].hi, k + chunk)});
  }
  first_item->push_back(int64_t(items.size()));
  return items;
}

// Rows that no slice covers get out = 0 and lse = -inf.
void write_uncovered_rows(const Decode& decode, const MaskPlan& plan) {
  std::vector<bool> covered(size_t(plan.total_q), false);
  for (const Slice& slice : plan.slices)
    for (int64_t r = slice.q_begin; r < slice.q_end; ++r) covered[size_t(r)] = true;
  const std::vector<float> zeros(size_t(decode.dim()), 0.0f);
  for (int64_t r = 0; r < plan.total_q; ++r)
    if (!covered[size_t(r)])
      for (int64_t h = 0; h < decode.heads(); ++h) decode.write_row(r, h, zeros.data(), kNegInf, 0.0f);
}

}  // namespace

bool decode_applies(const MaskPlan& plan) {
  std::vector<const Slice*> slices;
  for (const Slice& slice : plan.slices) {
    if (slice.q_end - slice.q_begin > kMaxRows) return false;
    if (slice.q_begin < slice.q_end) slices.push_back(&slice);
  }
  std::sort(slices.begin(), slices.end(), [](const Slice* a, const Slice* b) { return a->q_begin < b->q_begin; });
  for (size_t i = 1; i < slices.size(); ++i)
    if (slices[i]->q_begin < slices[i - 1]->q_end) return false;  // rows shared by two slices
  return true;
}

void decode_forward(const ForwardArgs& args, const TileOps& ops, ThreadPool& pool) {
  const Decode decode(args, ops);
  const MaskPlan& plan = *args.plan;
  std::vector<int64_t> first_item;
  const std::vector<Item> items = plan_items(plan, &first_item);
  std::vector<Partial> partials(items.size());
  pool.parallel_for(int64_t(items.size()), [&](int64_t i, int) { decode.run(items[size_t(i)], partials[size_t(i)]); });
  pool.parallel_for(int64_t(plan.slices.size()), [&](int64_t s, int) {
    const int64_t first = first_item[size_t(s)], count = first_item[size_t(s) + 1] - first;
    decode.write(plan.slices[size_t(s)], partials.data() + first, count);
  });
  write_uncovered_rows(decode, plan);
}

}  // namespace alibi::cpu
