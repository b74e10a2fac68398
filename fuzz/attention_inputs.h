// What the attention fuzz targets (fuzz_forward, fuzz_backward) build from the input's bytes:
// masks, with what the float64 reference needs of them, and strided operands.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "fuzz_common.h"
#include "reference.h"

namespace fuzz {

// Most lengths small (fast inputs, the decode kernel); some long enough for the tiled kernel
// (> 16 rows), several tiles, or key splits (> 64 keys).
inline int32_t length(Bytes& in, int32_t long_max) {
  const uint8_t pick = in.u8();
  return pick < 224 ? int32_t(in.in(0, 9)) : pick < 250 ? int32_t(in.in(0, long_max / 2)) : int32_t(in.in(0, long_max));
}

struct MaskCase {
  MaskHandle handle;
  int64_t total_q = 0, total_k = 0;
  bool sequences = false;
  int batch = 0;
  std::vector<int32_t> cu_q, cu_k;
  ref::Visibility visible;
  ref::Positions positions;
};

inline void sequence_mask(Bytes& in, alibi_context_t ctx, bool window, MaskCase& m) {
  m.sequences = true;
  m.batch = int(in.in(0, 3));
  m.cu_q.push_back(int32_t(in.in(0, 2)));
  m.cu_k.push_back(int32_t(in.in(0, 2)));
  for (int b = 0; b < m.batch; ++b) {
    m.cu_q.push_back(std::min<int32_t>(m.cu_q.back() + length(in, 40), 64));
    m.cu_k.push_back(std::min<int32_t>(m.cu_k.back() + length(in, 72), 72));
  }
  if (window) {
    const int left = int(in.in(-1, 12)), right = int(in.in(-1, 12));
    check_status_ok(alibi_mask_create_sliding_window(ctx, m.batch, m.cu_q.data(), m.cu_k.data(), left,
                                                           right, &m.handle.m),
                          "alibi_mask_create_sliding_window");
    m.visible = ref::sliding_window(m.cu_q, m.cu_k, left, right);
  } else {
    const bool causal = in.flag();
    check_status_ok(alibi_mask_create_varlen(ctx, m.batch, m.cu_q.data(), m.cu_k.data(), causal, &m.handle.m),
                          "alibi_mask_create_varlen");
    m.visible = ref::from_slices(m.cu_q.back(), m.cu_k.back(), ref::varlen_slices(m.cu_q, m.cu_k, causal));
  }
  m.total_q = m.cu_q.back();
  m.total_k = m.cu_k.back();
  m.positions = ref::varlen_positions(m.cu_q, m.cu_k);
}

// Random non-overlapping slices, or bands of rows whose keys are cut into pieces of different
// types (rows shared by several slices: their gradient is that of the union).
inline std::vector<ref::Slice> range_slices(Bytes& in, int64_t total_q, int64_t total_k, bool shared_rows) {
  std::vector<ref::Slice> slices;
  const int wanted = int(in.in(0, 4));
  for (int s = 0; s < wanted; ++s) {
    ref::Slice slice;
    slice.q_begin = in.in(0, total_q);
    slice.q_end = in.in(slice.q_begin, total_q);
    if (shared_rows) {
      int64_t k = 0;
      while (k < total_k && slices.size() < 8) {
        const int64_t end = in.flag() ? total_k : in.in(k, total_k);
        slices.push_back({slice.q_begin, slice.q_end, k, end, int(in.in(0, 3))});
        k = std::max(end, k + 1);
      }
      break;
    }
    slice.k_begin = in.in(0, total_k);
    slice.k_end = in.in(slice.k_begin, total_k);
    slice.type = int(in.in(0, 3));
    bool overlaps = false;
    for (const ref::Slice& o : slices)
      overlaps |= slice.q_begin < o.q_end && o.q_begin < slice.q_end && slice.k_begin < o.k_end &&
                  o.k_begin < slice.k_end;
    if (!overlaps) slices.push_back(slice);
  }
  return slices;
}

inline void ranges_mask(Bytes& in, alibi_context_t ctx, bool shared_rows, MaskCase& m) {
  m.total_q = length(in, 64);
  m.total_k = length(in, 72);
  const std::vector<ref::Slice> slices = range_slices(in, m.total_q, m.total_k, shared_rows);
  std::vector<int32_t> q_ranges, k_ranges, types;
  for (const ref::Slice& s : slices) {
    q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  check_status_ok(alibi_mask_create_ranges(ctx, int(slices.size()), q_ranges.data(), k_ranges.data(),
                                                 types.data(), m.total_q, m.total_k, &m.handle.m),
                        "alibi_mask_create_ranges");
  m.visible = ref::from_slices(m.total_q, m.total_k, slices);
  m.positions = ref::stream_positions(m.total_q, m.total_k);
}

// Which masks make_mask may build: the forward's target draws among the first three, the
// backward's among all four (a seed's bytes mean the same mask to both).
enum class MaskKinds { kWithoutSharedRows = 3, kAll = 4 };

// A valid mask from the input: varlen, sliding window, ranges, or ranges whose rows several
// slices share; then default or fuzzed positions.
inline void make_mask(Bytes& in, alibi_context_t ctx, MaskCase& m, MaskKinds kinds) {
  const uint8_t kind = in.u8() % uint8_t(kinds);
  if (kind < 2) sequence_mask(in, ctx, kind == 1, m);
  else ranges_mask(in, ctx, kind == 3, m);
  // Positions: as made, shifted far apart (ALiBi distances up to 2^16 and more), or anything.
  const uint8_t positions = in.u8() % 4;
  if (positions == 1 || positions == 2) {
    std::vector<int32_t> q(size_t(m.total_q) + 1), k(size_t(m.total_k) + 1);
    for (int32_t& x : q) x = positions == 1 ? int32_t(in.in(0, 70000)) : int32_t(in.u32());
    for (int32_t& x : k) x = positions == 1 ? int32_t(in.in(0, 70000)) : int32_t(in.u32());
    check_status_ok(alibi_mask_set_positions(m.handle.m, q.data(), k.data()), "alibi_mask_set_positions");
    m.positions.q.assign(q.begin(), q.end() - 1);
    m.positions.k.assign(k.begin(), k.end() - 1);
  }
}

// What outputs hold before a call writes them (operands of f16 and bf16: 1024).
constexpr float kPoison = 1234567.0f;

inline alibi_dtype float_dtype(Bytes& in) {
  static const alibi_dtype types[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};
  return types[in.u8() % 3];
}

// A (tokens, heads, dim) tensor in a poisoned buffer with padded row and head strides.
struct Operand {
  std::vector<uint8_t> storage, poisoned;  // the buffer, and as it was before any call
  int64_t shape[3] = {}, strides[3] = {};
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  TensorHandle tensor;

  void layout(alibi_dtype type, int64_t tokens, int64_t heads, int64_t dim, int64_t head_pad, int64_t row_pad) {
    dtype = type;
    shape[0] = tokens, shape[1] = heads, shape[2] = dim;
    strides[2] = 1;
    strides[1] = dim + head_pad;
    strides[0] = heads * strides[1] + row_pad;
    // Room for one more token and a last dim of stride 2 (invalid layouts the target tries).
    const size_t elements = size_t(std::max<int64_t>((tokens + 1) * strides[0], 1)) + size_t(dim) + 16;
    storage.assign(elements * element_size(type), 0);
    for (size_t e = 0; e < elements; ++e)
      store(storage.data(), int64_t(e), type, type == ALIBI_DTYPE_F32 ? kPoison : 1024.0f);
    poisoned = storage;
  }
  int64_t offset(int64_t t, int64_t h, int64_t d) const { return t * strides[0] + h * strides[1] + d * strides[2]; }
  float get(int64_t t, int64_t h, int64_t d) const { return load(storage.data(), offset(t, h, d), dtype); }
  void set(int64_t t, int64_t h, int64_t d, float v) { store(storage.data(), offset(t, h, d), dtype, v); }
  void fill(Bytes& in, int shift) {
    for (int64_t t = 0; t < shape[0]; ++t)
      for (int64_t h = 0; h < shape[1]; ++h)
        for (int64_t d = 0; d < shape[2]; ++d) set(t, h, d, exact_value(in, shift));
  }
  // The tensor as it is, or with one dtype, shape or stride changed (an invalid argument).
  void wrap(alibi_context_t ctx) { wrap_as(ctx, dtype); }
  void wrap_as(alibi_context_t ctx, alibi_dtype as, int ndim = 3, int grow_dim = -1, bool last_stride_2 = false) {
    int64_t s[3] = {shape[0], shape[1], shape[2]}, st[3] = {strides[0], strides[1], strides[2]};
    if (grow_dim >= 0) ++s[grow_dim];
    if (last_stride_2) st[2] = 2;
    check_status_ok(alibi_tensor_wrap(ctx, as, ndim, s, st, storage.data(), &tensor.t),
                          "alibi_tensor_wrap");
  }
  std::vector<double> values() const {
    std::vector<double> all;
    for (int64_t t = 0; t < shape[0]; ++t)
      for (int64_t h = 0; h < shape[1]; ++h)
        for (int64_t d = 0; d < shape[2]; ++d) all.push_back(get(t, h, d));
    return all;
  }
};

}  // namespace fuzz
