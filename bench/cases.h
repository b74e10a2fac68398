// The benchmark's cases: attention problems over packed varlen batches, and their host inputs.
#pragma once

#include <alibi/alibi.h>

#include <cstdint>
#include <string>
#include <vector>

namespace bench {

enum class Kind { prefill, decode, varlen };

// One attention problem: sequences b with Lq_b queries over Lk_b keys, packed token-major
// (q: total_q x heads x head_dim, k/v: total_k x kv_heads x head_dim), ALiBi with max_bias 8,
// bottom-right aligned positions as alibi_mask_create_varlen makes them.
struct Case {
  std::string name;
  Kind kind;
  alibi_dtype dtype;  // f32 or bf16
  int heads, kv_heads, head_dim;
  std::vector<int32_t> lengths_q, lengths_k;
  bool causal;
  bool with_baseline;  // false where the unfused per-head Lq x Lk buffers get unreasonable
  bool quick;          // part of the --quick subset

  std::vector<int32_t> cu_seqlens_q() const;
  std::vector<int32_t> cu_seqlens_k() const;
  int64_t total_q() const;
  int64_t total_k() const;
  int64_t visible_cells() const;  // per head
  double flops() const;           // 4 * head_dim * visible cells * heads
  double decode_bytes() const;    // K and V read + q read + out written
  size_t element_size() const;
};

std::vector<Case> default_cases();

const char* kind_name(Kind kind);
const char* dtype_name(alibi_dtype dtype);

// f32 <-> bf16, round to nearest even (inputs are finite).
uint16_t to_bf16(float value);
float from_bf16(uint16_t value);

// Host inputs of a case in its dtype, filled with fixed-seed uniform values in [-1, 1).
struct Inputs {
  std::vector<unsigned char> q, k, v;
};
Inputs make_inputs(const Case& c);

}  // namespace bench
