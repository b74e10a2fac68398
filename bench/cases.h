// The benchmark's cases: attention problems over packed varlen batches, and their host inputs.
#pragma once

#include <alibi/alibi.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/attention_shape.h"
#include "common/bf16.h"

namespace bench {

enum class Kind { prefill, decode, varlen };

// One attention problem over a packed batch (bench_common::AttentionShape), ALiBi with
// max_bias 8, bottom-right aligned positions as alibi_mask_create_varlen makes them.
struct Case : bench_common::AttentionShape {
  std::string name;
  Kind kind;
  alibi_dtype dtype;   // f32, bf16 or f16
  bool backward;       // times alibi_attention_backward (of a forward made once, untimed)
  bool with_baseline;  // false where the unfused per-head Lq x Lk buffers get unreasonable
  bool quick;          // part of the --quick subset
  // > 0: a paged case. alibi_attention_forward_paged reads k and v from a pool of blocks of
  // block_size tokens, each sequence's blocks shuffled in it, and its baseline is
  // alibi_attention_forward on the same keys and values, contiguous.
  int block_size = 0;

  bool paged() const { return block_size > 0; }

  size_t element_size() const;
  double decode_bytes() const { return io_bytes(element_size()); }
  // The forward's FLOPs; a backward counts 2.5 times them: five GEMMs of the forward's size
  // (S = Q K^T, dP = dO V^T, dV = P^T dO, dQ = dS K, dK = dS^T Q) against its two.
  double counted_flops() const { return (backward ? 2.5 : 1.0) * flops(); }
  int64_t q_elements() const { return total_q() * heads * head_dim; }
  int64_t kv_elements() const { return total_k() * kv_heads * head_dim; }
};

std::vector<Case> default_cases();

const char* kind_name(Kind kind);
const char* dtype_name(alibi_dtype dtype);

using bench_common::from_bf16;
using bench_common::to_bf16;

// A bf16 or f16 value's bits to f32 and back.
float from_half(uint16_t bits, alibi_dtype dtype);
uint16_t to_half(float value, alibi_dtype dtype);

// Host inputs of a case in its dtype, filled with fixed-seed uniform values in [-1, 1); dout
// (the gradient of out, q's shape) for backward cases only.
struct Inputs {
  std::vector<unsigned char> q, k, v, dout;
};
Inputs make_inputs(const Case& c);

}  // namespace bench
