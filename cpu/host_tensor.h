// Element access to strided host tensors of any float dtype.
#pragma once

#include <cstdint>

#include "core/kernel/attention_math.h"
#include "core/kernel/backend.h"
#include "core/kernel/half.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

inline int64_t offset2(const TensorView& t, int64_t i0, int64_t i1) {
  return i0 * t.strides[0] + i1 * t.strides[1];
}

inline int64_t offset3(const TensorView& t, int64_t i0, int64_t i1, int64_t i2) {
  return i0 * t.strides[0] + i1 * t.strides[1] + i2 * t.strides[2];
}

// Rows of (tokens, heads, dim) tensors sit a page or more apart, where hardware prefetchers
// stop: the kernels prefetch the row they will touch this many rows ahead.
constexpr int64_t kRowsAhead = 4;

// Prefetches the `dim` elements of token `row`, head `head` of t, to read or to write.
inline void prefetch_row(const TensorView& t, int64_t row, int64_t head, int64_t dim, bool for_write) {
  const int64_t element = int64_t(dtype_size(t.dtype));
  const char* start = static_cast<const char*>(t.data) + offset3(t, row, head, 0) * element;
  for (int64_t byte = 0; byte < dim * element; byte += 64) {
    if (for_write) __builtin_prefetch(start + byte, 1);
    else __builtin_prefetch(start + byte, 0);
  }
}

// The pairs of dims of a row of dim values (an odd dim's last pair padded).
inline int64_t pairs_of(int64_t dim) { return (dim + 1) / 2; }

// The dim bf16 values at row as pairs of dims for the bf16 dot products (TileOps::
// gemm_bf16_pairs, score_tokens_bf16_pairs): dst[p * stride] = row[2p] | row[2p + 1] << 16, a
// zero padding an odd dim.
inline void pack_bf16_pairs(const uint16_t* row, int64_t dim, uint32_t* dst, int64_t stride) {
  for (int64_t p = 0; p < pairs_of(dim); ++p) {
    const uint32_t high = 2 * p + 1 < dim ? row[2 * p + 1] : 0u;
    dst[p * stride] = row[2 * p] | high << 16;
  }
}

inline float load_float(const TensorView& t, int64_t offset) {
  return load_element(t.dtype, t.data, offset);
}

inline void store_float(const TensorView& t, int64_t offset, float value) {
  store_element(t.dtype, t.data, offset, value);
}

inline int64_t load_index(const TensorView& t, int64_t offset) {
  return t.dtype == ALIBI_DTYPE_I64 ? static_cast<const int64_t*>(t.data)[offset]
                                    : static_cast<const int32_t*>(t.data)[offset];
}

// Stores `count` f32 values times scale as contiguous elements of a float tensor at `offset`
// (f16 and bf16 rounded by the table's `narrow`).
inline void store_row(const TileOps& ops, const TensorView& t, int64_t offset, const float* src, int64_t count,
                      float scale) {
  if (t.dtype == ALIBI_DTYPE_F32)
    for (int64_t i = 0; i < count; ++i) static_cast<float*>(t.data)[offset + i] = src[i] * scale;
  else
    ops.narrow(t.dtype, src, scale, count, static_cast<uint16_t*>(t.data) + offset);
}

// The attn_bias cells of query head `head` for rows [row_begin, row_end) and keys [first_key,
// first_key + count), transposed as the kernels' tiles are: key j, row r at dst[j * ld + r -
// row_begin].
inline void load_attn_bias_block(const TensorView& bias, int64_t head, int64_t row_begin,
                                 int64_t row_end, int64_t first_key, int64_t count, int64_t ld,
                                 float* dst) {
  const int64_t bias_head = attn_bias_head(bias.shape[0], head);
  for (int64_t j = 0; j < count; ++j)
    for (int64_t r = row_begin; r < row_end; ++r)
      dst[j * ld + r - row_begin] = load_float(bias, offset3(bias, bias_head, r, first_key + j));
}

}  // namespace alibi::cpu
