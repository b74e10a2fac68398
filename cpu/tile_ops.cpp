#include <cstdlib>
#include <cstring>

#include "cpu/tile_ops.h"

namespace alibi::cpu {

const TileOps& tile_ops() {
  static const TileOps& chosen = [] () -> const TileOps& {
    const char* cap = std::getenv("ALIBI_MAX_CPU_ISA");
    const bool generic_only = cap && std::strcmp(cap, "generic") == 0;
    const TileOps* avx2 = avx2_tile_ops();
    return avx2 && !generic_only ? *avx2 : generic_tile_ops();
  }();
  return chosen;
}

}  // namespace alibi::cpu
