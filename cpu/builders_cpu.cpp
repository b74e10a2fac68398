// The bias builders on the CPU: plain loops over the output.
#include <vector>

#include "core/kernel/attention_math.h"
#include "cpu/host_tensor.h"
#include "cpu/kernels.h"

namespace alibi::cpu {
namespace {

// The batch whose block holds each row, or -1.
std::vector<int> row_batches(const int64_t* starts, int batch) {
  std::vector<int> owner(size_t(starts[batch]), -1);
  for (int b = 0; b < batch; ++b)
    for (int64_t r = starts[b]; r < starts[b + 1]; ++r) owner[size_t(r)] = b;
  return owner;
}

}  // namespace

void build_bias(const BiasArgs& args) {
  const MaskView& mask = *args.mask;
  const TensorView& out = args.out;
  const int64_t heads = out.shape[0];
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < mask.total_q; ++i)
      for (int64_t j = 0; j < mask.total_k; ++j) store_float(out, offset3(out, h, i, j), masked_score());
  for (int64_t s = 0; s < mask.num_slices; ++s) {
    const Slice& slice = mask.slices[s];
    const int64_t sq = slice.q_end - slice.q_begin, sk = slice.k_end - slice.k_begin;
    for (int64_t h = 0; h < heads; ++h) {
      const float slope = args.slopes.at(slice.sequence, int(h));
      for (int64_t r = 0; r < sq; ++r) {
        const int64_t i = slice.q_begin + r;
        const KeyInterval visible = visible_keys(slice.type, r, sq, sk);
        for (int64_t c = visible.lo; c < visible.hi; ++c) {
          const int64_t j = slice.k_begin + c;
          float value = alibi_bias(slope, mask.q_positions[i], mask.k_positions[j]);
          if (args.attn_bias) {
            const TensorView& bias = *args.attn_bias;
            value += load_float(bias, offset3(bias, attn_bias_head(bias.shape[0], h), i, j));
          }
          store_float(out, offset3(out, h, i, j), value);
        }
      }
    }
  }
}

void build_dynamic_batching_mask(const DynamicBatchingArgs& args) {
  const TensorView& out = args.out;
  const int64_t heads = out.shape[0], rows = out.shape[1], width = out.shape[2];
  const int64_t total_k = args.kvstarts[args.batch];
  const std::vector<int> owner = row_batches(args.seqstarts, args.batch);
  const TensorView* mask = args.attn_mask;
  for (int64_t h = 0; h < heads; ++h) {
    const float slope = args.slopes.at(0, int(h));
    for (int64_t r = 0; r < rows; ++r) {
      const int b = owner[size_t(r)];
      const int64_t block_rows = b < 0 ? 0 : args.seqstarts[b + 1] - args.seqstarts[b];
      const int64_t k_begin = b < 0 ? 0 : args.kvstarts[b];
      const int64_t k_end = b < 0 ? 0 : args.kvstarts[b + 1];
      const int64_t i = b < 0 ? 0 : r - args.seqstarts[b];
      for (int64_t c = 0; c < width; ++c) {
        float value = 0.0f;
        if (c >= k_begin && c < k_end)
          value = dynamic_batching_value(slope, (c - k_begin) - i - ((k_end - k_begin) - block_rows));
        if (mask && c < total_k)
          value += load_float(*mask, mask->ndim == 3 ? offset3(*mask, h, r, c) : offset2(*mask, r, c));
        store_float(out, offset3(out, h, r, c), value);
      }
    }
  }
}

void build_bloom_bias(const BloomArgs& args) {
  const TensorView& mask = args.attention_mask;
  const TensorView& out = args.out;
  const int64_t batch = mask.shape[0], length = mask.shape[1];
  const int heads = args.slopes.num_heads;
  std::vector<int64_t> positions(static_cast<size_t>(length));
  for (int64_t b = 0; b < batch; ++b) {
    uint64_t cumulative = 0;
    for (int64_t s = 0; s < length; ++s) {
      const uint64_t keep = uint64_t(load_index(mask, offset2(mask, b, s)));
      cumulative += keep;
      positions[size_t(s)] = bloom_position(cumulative, keep);
    }
    for (int h = 0; h < heads; ++h) {
      const float slope = args.slopes.at(0, h);
      for (int64_t s = 0; s < length; ++s)
        store_float(out, offset3(out, b * heads + h, 0, s), slope * float(positions[size_t(s)]));
    }
  }
}

}  // namespace alibi::cpu
