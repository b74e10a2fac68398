// The tile operations of cpu/tile_ops_simd.h with AVX2, FMA and F16C (8 lanes). Only functions
// carrying that target use them, so the rest of the library stays runnable on any x86-64 CPU.
// Built on x86 only: elsewhere (aarch64) the table is absent and avx2_tile_ops() says so.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>

#include "cpu/simd_avx2.h"

#define ALIBI_SIMD_TARGET __attribute__((target("avx2,fma,f16c")))
#include "cpu/tile_ops_simd.h"

namespace alibi::cpu {

namespace {

// F16C from CPUID leaf 1 (ECX bit 29): clang's __builtin_cpu_supports does not know "f16c".
bool cpu_has_f16c() {
  unsigned eax, ebx, ecx, edx;
  return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
}

// Prefetching MHA's half runs in the decode: on Sapphire Rapids 0.95 to 0.96x contiguous, 0.93 to
// 0.98x paged (blocks of 16); AMD keeps them as it had them (not measured with this table).
bool decode_prefetches_mha_half() { return __builtin_cpu_is("amd"); }

}  // namespace

const TileOps* avx2_tile_ops() {
  // The P.V GEMM widening half values (8 lanes): 0.99 to 1.01x on Zen 5, 0.96x on Sapphire Rapids.
  static const TileOps ops = simd_tile_ops<Avx2>("avx2", false, decode_prefetches_mha_half());
  const bool supported = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
  return supported ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const TileOps* avx2_tile_ops() { return nullptr; }

}  // namespace alibi::cpu

#endif
