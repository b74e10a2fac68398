// The decode kernel: attention for calls whose slices each have only a few query rows.
#pragma once

#include "core/kernel/backend.h"
#include "cpu/kv_source.h"
#include "cpu/thread_pool.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

// True when every slice has at most a few rows and no two slices share a row.
bool decode_applies(const MaskView& mask);
void decode_forward(const ForwardArgs& args, const KvSource& kv, const TileOps& ops,
                    const ThreadPool& pool);

}  // namespace alibi::cpu
