// Where the CPU kernels read key and value tokens, in place: the packed (Tk, Hkv, D) k and v of
// a forward call, or the blocks of a paged cache (PagedForwardArgs), where key t of sequence b
// is row t % block_size of block block_table[b][t / block_size].
#pragma once

#include <algorithm>
#include <cstdint>

#include "core/kernel/backend.h"
#include "cpu/host_tensor.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

class KvSource {
 public:
  explicit KvSource(const ForwardArgs& args) : k_(args.k), v_(args.v) {}
  explicit KvSource(const PagedForwardArgs& args)
      : k_(args.forward.k), v_(args.forward.v), paged_(&args) {}

  int64_t kv_heads() const { return k_.shape[k_.ndim - 2]; }

  // The keys (or values) [key, key + count) (packed indices of the mask) of a slice, or as
  // many of the first of them as are consecutive in memory (up to the end of a cache block).
  TokenRun keys(const Slice& slice, int64_t key, int64_t count) const {
    return run(k_, slice, key, count);
  }
  TokenRun values(const Slice& slice, int64_t key, int64_t count) const {
    return run(v_, slice, key, count);
  }

  // Where head kv_head of a slice's key (or value) starts.
  const void* key_row(const Slice& slice, int64_t key, int64_t kv_head) const {
    return head_of(keys(slice, key, 1), kv_head);
  }
  const void* value_row(const Slice& slice, int64_t key, int64_t kv_head) const {
    return head_of(values(slice, key, 1), kv_head);
  }

 private:
  TokenRun run(const TensorView& t, const Slice& slice, int64_t key, int64_t count) const {
    const auto* base = static_cast<const char*>(t.data);
    const int64_t element = int64_t(dtype_size(t.dtype));
    if (!paged_)
      return {base + offset3(t, key, 0, 0) * element, t.dtype, t.strides[0], t.strides[1], count};
    const int64_t block_size = t.shape[1];
    const int64_t local = key - paged_->key_begin[slice.sequence];
    const int64_t row = local % block_size;
    const int64_t block = paged_->block_table[slice.sequence * paged_->table_row_stride +
                                              local / block_size * paged_->table_column_stride];
    return {base + (block * t.strides[0] + row * t.strides[1]) * element, t.dtype, t.strides[1],
            t.strides[2], std::min(count, block_size - row)};
  }

  static const void* head_of(const TokenRun& run, int64_t kv_head) {
    return static_cast<const char*>(run.data) +
           kv_head * run.head_stride * int64_t(dtype_size(run.dtype));
  }

  const TensorView& k_;
  const TensorView& v_;
  const PagedForwardArgs* paged_ = nullptr;
};

}  // namespace alibi::cpu
