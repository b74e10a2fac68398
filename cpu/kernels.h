// The CPU kernels behind the CPU backend's table (cpu_backend.cpp).
#pragma once

#include "core/kernel/backend.h"
#include "cpu/thread_pool.h"

namespace alibi::cpu {

// How the CPU kernels want masks planned: row blocks of 256 queries (attention_cpu.cpp: each
// block reads its keys and values once; 256 measured 3-7% faster than 128) and, for decode, key
// chunks of at least 512 keys, 32 over the whole mask (a number independent of the thread
// count, so results are too). Each chunk costs ~10 us (its partial zeroed and merged, its first
// keys not prefetched): 512 ran the 2-thread paged GQA 32/8 bf16 decode at Tk 4096 1.03 to 1.07x
// 256 (cold and warm; MHA within noise), and still lets 8 threads share a 4096-key sequence.
constexpr PlanShape kPlanShape{256, false, 512, 32};

void attention_forward(const ForwardArgs& args, const ThreadPool& pool);
// The same over the blocks of a paged cache, read in place.
void attention_forward_paged(const PagedForwardArgs& args, const ThreadPool& pool);
void attention_merge(const MergeArgs& args, const ThreadPool& pool);
// Gradients of a forward call (backward_cpu.cpp).
void attention_backward(const BackwardArgs& args, const ThreadPool& pool);
void build_bias(const BiasArgs& args);
void build_dynamic_batching_mask(const DynamicBatchingArgs& args);
void build_bloom_bias(const BloomArgs& args);

}  // namespace alibi::cpu
