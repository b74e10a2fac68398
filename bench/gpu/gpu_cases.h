// The GPU benchmark's cases: bf16 attention problems over packed varlen batches, ALiBi with
// max_bias 8 and the bottom-right aligned positions of alibi_mask_create_varlen.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/attention_shape.h"

namespace gpubench {

enum class Kind { prefill, varlen, decode };

// A packed batch (bench_common::AttentionShape), all tensors bf16.
struct Case : bench_common::AttentionShape {
  std::string name;
  Kind kind;
  bool quick;  // part of the --quick subset

  int64_t length() const;  // the table's N_or_Tk: tokens, or keys per sequence for decode
  double io_bytes() const;
};

std::vector<Case> all_cases();

const char* kind_name(Kind kind);

// The cases as a JSON array (name, kind, heads, kv_heads, head_dim, causal, lengths_q,
// lengths_k): what bench/gpu/torch_peers.py reads, so that both tables time the same shapes.
std::string cases_json(const std::vector<Case>& cases);

}  // namespace gpubench
