// libalibi's calls as alibi-bench times them, through the public C API: the forward and the
// backward of a case, with their outputs read back as f32.
#pragma once

#include <alibi/alibi.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "baselines.h"
#include "cases.h"
#include "common/paged_pool.h"

namespace bench {

// Exits with status 1, printing the call and libalibi's message, unless status is SUCCESS.
void check(alibi_status status, const char* call);

struct ContextDeleter {
  void operator()(alibi_context_t ctx) const { alibi_context_destroy(ctx); }
};
struct TensorDeleter {
  void operator()(alibi_tensor_t t) const { alibi_tensor_destroy(t); }
};
struct MaskDeleter {
  void operator()(alibi_mask_t m) const { alibi_mask_destroy(m); }
};
using Context = std::unique_ptr<alibi_context_s, ContextDeleter>;
using Tensor = std::unique_ptr<alibi_tensor_s, TensorDeleter>;
using Mask = std::unique_ptr<alibi_mask_s, MaskDeleter>;

// A CPU context with `threads` threads.
Context make_context(int threads);

// Host values of a dtype (f32, bf16 or f16) as f32.
std::vector<float> widen(const std::vector<unsigned char>& bytes, alibi_dtype dtype);

// alibi_attention_forward of a case, default parameters, no LSE.
class AlibiForward {
 public:
  AlibiForward(alibi_context_t ctx, const Case& c, Inputs& inputs);
  void run();
  std::vector<float> output() const { return widen(out_bytes_, dtype_); }

 private:
  alibi_context_t ctx_;
  alibi_dtype dtype_;
  std::vector<unsigned char> out_bytes_;  // allocated and touched before any measurement
  Tensor q_, k_, v_, out_;
  Mask mask_;
};

// alibi_attention_forward_paged of a paged case, default parameters, no LSE: k and v
// copied at construction into pools of (num_blocks, block_size, kv_heads, head_dim), each
// sequence's blocks at shuffled places (a fixed seed), the last block of a sequence zero-padded.
class AlibiPagedForward {
 public:
  AlibiPagedForward(alibi_context_t ctx, const Case& c, Inputs& inputs);
  void run();
  std::vector<float> output() const { return widen(out_bytes_, dtype_); }
  // Sums the keys' rows of every block the sequences use, then their values' rows, block by
  // block in table order (the blocks split over the OpenMP threads): what a plain read of the
  // pools in the call's order reaches, for comparison. Reads the case's k and v bytes.
  void read_blocks();

  struct BlockRows {
    size_t offset, bytes;  // in both pools
  };

 private:
  alibi_context_t ctx_;
  alibi_dtype dtype_;
  int causal_;
  bench_common::BlockTable table_;
  std::vector<BlockRows> rows_in_order_;
  uint64_t checksum_ = 0;  // keeps read_blocks' reads
  std::vector<int32_t> cu_seqlens_q_, seqlens_k_;
  std::vector<unsigned char> k_pool_, v_pool_, out_bytes_;  // allocated and touched at once
  Tensor q_, k_cache_, v_cache_, block_table_tensor_, cu_seqlens_q_tensor_, seqlens_k_tensor_,
      out_;
};

// alibi_attention_backward of a case, default parameters: the forward (with LSE) runs once,
// untimed, at construction; each run() writes dq, dk, dv (in the case's dtype) and dslopes.
// Every buffer is allocated and touched at construction, before any measurement.
class AlibiBackward {
 public:
  AlibiBackward(alibi_context_t ctx, const Case& c, Inputs& inputs);
  void run();
  const ForwardResult& forward() const { return forward_; }
  // Fills every gradient with NaN, so that an element the call leaves unwritten shows.
  void poison();
  Gradients gradients() const;

 private:
  alibi_context_t ctx_;
  alibi_dtype dtype_;
  ForwardResult forward_;
  std::vector<unsigned char> dq_, dk_, dv_;
  std::vector<float> dslopes_;
  Tensor q_, k_, v_, out_, lse_, dout_, dq_tensor_, dk_tensor_, dv_tensor_, dslopes_tensor_;
  Mask mask_;
};

}  // namespace bench
