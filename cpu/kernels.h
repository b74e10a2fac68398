// The CPU implementations behind CpuContext.
#pragma once

#include "core/kernel/backend.h"
#include "cpu/thread_pool.h"

namespace alibi::cpu {

void attention_forward(const ForwardArgs& args, ThreadPool& pool);
void build_bias(const BiasArgs& args);
void build_dynamic_batching_mask(const DynamicBatchingArgs& args);
void build_bloom_bias(const BloomArgs& args);

}  // namespace alibi::cpu
