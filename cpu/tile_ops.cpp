#include <cstdlib>
#include <cstring>

#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

bool capped_at(const char* cap, const char* isa) { return cap && std::strcmp(cap, isa) == 0; }

}  // namespace

const TileOps& tile_ops() {
  static const TileOps& chosen = [] () -> const TileOps& {
    const char* cap = std::getenv("ALIBI_MAX_CPU_ISA");
    if (capped_at(cap, "generic")) return generic_tile_ops();
    if (const TileOps* neon = neon_tile_ops()) return *neon;  // aarch64: nothing above it
    const TileOps* avx512 = avx512_tile_ops();
    if (avx512 && !capped_at(cap, "avx2")) return *avx512;
    const TileOps* avx2 = avx2_tile_ops();
    return avx2 ? *avx2 : generic_tile_ops();
  }();
  return chosen;
}

}  // namespace alibi::cpu
