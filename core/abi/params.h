// alibi_attention_params validated and resolved into what the backends need.
#pragma once

#include <cstddef>
#include <vector>

#include "core/kernel/backend.h"
#include "core/abi/objects.h"

namespace alibi {

// sizeof(alibi_attention_params) in 0.1.0, the first version: up to `deterministic`, padded to
// the alignment of its pointer and size_t fields. The smallest struct_size a caller may pass.
constexpr size_t kFirstParamsSize =
    (offsetof(alibi_attention_params, deterministic) + sizeof(int) + alignof(void*) - 1) /
    alignof(void*) * alignof(void*);
static_assert(alignof(void*) >= alignof(size_t), "the struct's alignment is a pointer's");

// The defaults alibi_attention_params_init writes.
alibi_attention_params default_params();

struct ResolvedParams {
  float scale = 1.0f;
  float softcap = 0.0f;
  std::vector<float> slopes;  // num_heads, or num_sequences * num_heads when per_sequence
  bool per_sequence = false;
  const alibi_tensor_s* attn_bias = nullptr;
  bool deterministic = false;
  SlopeTable slope_table(int num_heads) const { return {slopes.data(), per_sequence, num_heads}; }
};

// params may be NULL (defaults). head_dim gives the default scale.
ResolvedParams resolve_params(const alibi_attention_params* params, int num_heads,
                              int64_t head_dim, const MaskPlan& plan);

// Checks attn_bias against (num_heads|1, total_q, total_k) on the context's device.
void check_attn_bias(const alibi_context_s& ctx, const alibi_tensor_s& bias, int64_t num_heads,
                     const MaskPlan& plan);

}  // namespace alibi
