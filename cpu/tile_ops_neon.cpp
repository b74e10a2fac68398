// The tile operations of cpu/tile_ops_simd.h with aarch64's Advanced SIMD (NEON, 4 lanes), which
// every aarch64 CPU has: no target attribute, no run-time check. Built on aarch64 only:
// elsewhere (x86) the table is absent and neon_tile_ops() says so.
#include "cpu/tile_ops.h"

#if defined(__aarch64__)
#include "cpu/simd_neon.h"

#define ALIBI_SIMD_TARGET
#include "cpu/tile_ops_simd.h"

namespace alibi::cpu {

const TileOps* neon_tile_ops() {
  static const TileOps ops = simd_tile_ops<Neon>("neon", true, true);  // as first written: not measured
  return &ops;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const TileOps* neon_tile_ops() { return nullptr; }

}  // namespace alibi::cpu

#endif
