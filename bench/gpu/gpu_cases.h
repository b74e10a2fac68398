// The GPU benchmark's cases: bf16 attention problems over packed varlen batches, ALiBi with
// max_bias 8 and the bottom-right aligned positions of alibi_mask_create_varlen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gpubench {

enum class Kind { prefill, varlen, decode };

// Sequences b with lengths_q[b] queries over lengths_k[b] keys, packed token-major:
// q and out (total_q, heads, head_dim), k and v (total_k, kv_heads, head_dim), all bf16.
struct Case {
  std::string name;
  Kind kind;
  int heads, kv_heads, head_dim;
  std::vector<int32_t> lengths_q, lengths_k;
  bool causal;
  bool quick;  // part of the --quick subset

  std::vector<int32_t> cu_seqlens_q() const;
  std::vector<int32_t> cu_seqlens_k() const;
  int64_t total_q() const;
  int64_t total_k() const;
  int64_t length() const;         // the table's N_or_Tk: tokens, or keys per sequence for decode
  int64_t visible_cells() const;  // per head
  double flops() const;           // 4 * head_dim * visible cells * heads
  double io_bytes() const;        // K and V read, q read, out written
};

std::vector<Case> all_cases();

const char* kind_name(Kind kind);

// The cases as a JSON array (name, kind, heads, kv_heads, head_dim, causal, lengths_q,
// lengths_k): what bench/gpu/torch_peers.py reads, so that both tables time the same shapes.
std::string cases_json(const std::vector<Case>& cases);

}  // namespace gpubench
