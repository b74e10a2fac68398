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
  alibi_dtype dtype;   // f32 or bf16
  bool with_baseline;  // false where the unfused per-head Lq x Lk buffers get unreasonable
  bool quick;          // part of the --quick subset

  size_t element_size() const;
  double decode_bytes() const { return io_bytes(element_size()); }
};

std::vector<Case> default_cases();

const char* kind_name(Kind kind);
const char* dtype_name(alibi_dtype dtype);

using bench_common::from_bf16;
using bench_common::to_bf16;

// Host inputs of a case in its dtype, filled with fixed-seed uniform values in [-1, 1).
struct Inputs {
  std::vector<unsigned char> q, k, v;
};
Inputs make_inputs(const Case& c);

}  // namespace bench
