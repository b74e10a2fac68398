// The decode kernel: attention for slices of only a few query rows.
#pragma once

#include "core/kernel/backend.h"
#include "cpu/kv_source.h"
#include "cpu/thread_pool.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

// Which kernel takes a mask's slices: the decode kernel all of them (each has at most a few
// rows), the tiled kernel all of them (some share rows, or none is that small), or each its own
// (mixed: the decode kernel those of few rows, decode and chunked prefill in one call).
enum class Route { kDecode, kTiled, kMixed };
Route route(const MaskView& mask);
// Whether a slice is one the decode kernel takes (of a mask not routed kTiled).
bool decode_takes(const Slice& slice);
// Out and lse of the rows of the slices the decode kernel takes, and of the rows no slice
// covers (0 and -inf).
void decode_forward(const ForwardArgs& args, const KvSource& kv, const TileOps& ops,
                    const ThreadPool& pool);

}  // namespace alibi::cpu
