// Attention for calls whose slices have only a few query rows each (decode, speculative
// decode). Work items are (slice, chunk of keys) over all heads at once, so each thread
// streams whole (heads x head_dim) rows of k and v from memory in address order; chunk
// partials merge by log-sum-exp in chunk order, so results do not depend on the thread count.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/formulas.h"
#include "cpu/decode.h"
#include "cpu/host_tensor.h"
#include "cpu/tile_ops.h"

#define ALIBI_INLINE __attribute__((always_inline)) inline

// target_clones makes an ifunc, whose resolver runs while the dynamic loader relocates the
// library: before a ThreadSanitizer runtime is initialized, so an instrumented resolver crashes
// the process at load. TSan builds keep the portable clone only.
#if defined(__SANITIZE_THREAD__)
#define ALIBI_DECODE_CLONES
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ALIBI_DECODE_CLONES
#endif
#endif
#ifndef ALIBI_DECODE_CLONES
#define ALIBI_DECODE_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#endif

namespace alibi::cpu {

namespace {

constexpr int64_t kMaxRows = 8;         // slices with more query rows take the tiled kernel
constexpr int64_t kKeysPerStep = 16;    // keys scored together before the softmax update
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

ALIBI_INLINE float dot(const float* a, const float* b, int64_t n) {
  float partial[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) partial[k] += a[i + k] * b[i + k];
  for (; i < n; ++i) partial[0] += a[i] * b[i];
  float sum = 0.0f;
  for (float p : partial) sum += p;
  return sum;
}

ALIBI_INLINE void axpy(float alpha, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

class Decode {
 public:
  Decode(const ForwardArgs& args, const TileOps& ops)
      : args_(args), plan_(*args.plan), ops_(ops), heads_(args.q.shape[1]),
        kv_heads_(args.k.shape[1]), dim_(args.q.shape[2]) {}

  int64_t heads() const { return heads_; }
  int64_t dim() const { return dim_; }

  // Scores one item into its partial. target_clones compiles it for AVX2+FMA and for any
  // x86-64, picked when the library loads.
  ALIBI_DECODE_CLONES
  void run(const Item& item, Partial& out) const {
    const Slice& slice = plan_.slices[size_t(item.slice)];
    const int64_t rows = slice.q_end - slice.q_begin;
    const int64_t width = heads_ * dim_, kv_width = kv_heads_ * dim_;
    std::vector<float> queries(static_cast<size_t>(width)),
        keys(static_cast<size_t>(kv_width)), values(static_cast<size_t>(kv_width)),
        scores(static_cast<size_t>(kKeysPerStep * heads_));
    out.acc.assign(size_t(rows * width), 0.0f);
    out.max.assign(size_t(rows * heads_), kNegInf);
    out.sum.assign(size_t(rows * heads_), 0.0f);
    for (int64_t r = 0; r < rows; ++r) {
      const KeyInterval visible = visible_keys(slice.type, r, rows, slice.k_end - slice.k_begin);
      const int64_t lo = std::max(visible.lo, item.key_begin), hi = std::min(visible.hi, item.key_end);
      load_queries(slice.q_begin + r, queries.data());
      for (int64_t j = lo; j < hi; j += kKeysPerStep) {
        const int64_t count = std::min(kKeysPerStep, hi - j);
        score_keys(slice, r, j, count, queries.data(), keys.data(), scores.data());
        float* max = &out.max[size_t(r * heads_)];
        float* sum = &out.sum[size_t(r * heads_)];
        float* acc = &out.acc[size_t(r * width)];
        softmax_update(count, scores.data(), max, sum, acc);
        accumulate_values(slice.k_begin + j, count, scores.data(), values.data(), acc);
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
  ALIBI_INLINE void load_row(const TensorView& t, int64_t offset, int64_t count, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(count) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, count, dst);
  }

  // Head h of a token's keys or values is at the returned pointer + h * *head_stride: in place
  // for f32, widened into buffer (head_stride = dim) for f16/bf16.
  ALIBI_INLINE const float* token_heads(const TensorView& t, int64_t token, float* buffer,
                                        int64_t* head_stride) const {
    if (t.dtype == ALIBI_DTYPE_F32) {
      *head_stride = t.strides[1];
      return static_cast<const float*>(t.data) + offset3(t, token, 0, 0);
    }
    for (int64_t h = 0; h < kv_heads_; ++h) load_row(t, offset3(t, token, h, 0), dim_, buffer + h * dim_);
    *head_stride = dim_;
    return buffer;
  }

  ALIBI_INLINE void load_queries(int64_t row, float* dst) const {
    for (int64_t h = 0; h < heads_; ++h) {
      load_row(args_.q, offset3(args_.q, row, h, 0), dim_, dst + h * dim_);
      for (int64_t d = 0; d < dim_; ++d) dst[h * dim_ + d] *= args_.scale;
    }
  }

  // scores[j][h] for keys [first, first + count) (slice-relative) of one query row.
  ALIBI_INLINE void score_keys(const Slice& slice, int64_t r, int64_t first, int64_t count,
                               const float* queries, float* keys, float* scores) const {
    const int64_t group = heads_ / kv_heads_, row = slice.q_begin + r;
    const int32_t qpos = plan_.q_positions[size_t(row)];
    for (int64_t j = 0; j < count; ++j) {
      const int64_t key = slice.k_begin + first + j;
      int64_t stride;
      const float* key_heads = token_heads(args_.k, key, keys, &stride);
      for (int64_t h = 0; h < heads_; ++h) {
        float s = dot(queries + h * dim_, key_heads + (h / group) * stride, dim_);
        if (args_.softcap > 0) s = args_.softcap * std::tanh(s / args_.softcap);
        s += alibi_bias(args_.slopes.at(slice.sequence, int(h)), qpos, plan_.k_positions[size_t(key)]);
        if (args_.attn_bias) s += attn_bias(h, row, key);
        scores[j * heads_ + h] = s;
      }
    }
  }

  float attn_bias(int64_t head, int64_t row, int64_t key) const {
    const TensorView& bias = *args_.attn_bias;
    return load_float(bias, offset3(bias, bias.shape[0] == 1 ? 0 : head, row, key));
  }

  // Online softmax over `count` keys for every head; scores become probabilities.
  ALIBI_INLINE void softmax_update(int64_t count, float* scores, float* max, float* sum,
                                   float* acc) const {
    for (int64_t h = 0; h < heads_; ++h) {
      float block_max = kNegInf;
      for (int64_t j = 0; j < count; ++j) block_max = std::max(block_max, scores[j * heads_ + h]);
      const float new_max = std::max(max[h], block_max);
      const float shift = new_max == kNegInf ? 0.0f : new_max;
      float block_sum = 0.0f;
      for (int64_t j = 0; j < count; ++j) {
        float& s = scores[j * heads_ + h];
        s = std::exp(s - shift);
        block_sum += s;
      }
      const float correction = std::exp(max[h] - shift);
      sum[h] = sum[h] * correction + block_sum;
      max[h] = new_max;
      if (correction != 1.0f)
        for (int64_t d = 0; d < dim_; ++d) acc[h * dim_ + d] *= correction;
    }
  }

  ALIBI_INLINE void accumulate_values(int64_t first_key, int64_t count, const float* probabilities,
                                      float* values, float* acc) const {
    const int64_t group = heads_ / kv_heads_;
    for (int64_t j = 0; j < count; ++j) {
      int64_t stride;
      const float* value_heads = token_heads(args_.v, first_key + j, values, &stride);
      for (int64_t h = 0; h < heads_; ++h)
        axpy(probabilities[j * heads_ + h], value_heads + (h / group) * stride, acc + h * dim_, dim_);
    }
  }

  const ForwardArgs& args_;
  const MaskPlan& plan_;
  const TileOps& ops_;
  const int64_t heads_, kv_heads_, dim_;
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
