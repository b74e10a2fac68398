// The tile operations of cpu/tile_ops_simd.h with AVX-512 F, BW, DQ and VL (16 lanes). Only
// functions carrying that target use them, so the rest of the library stays runnable on any
// x86-64 CPU. Built on x86 only: elsewhere (aarch64) the table is absent and avx512_tile_ops()
// says so.
#include "cpu/tile_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#if defined(__GNUC__) && !defined(__clang__)
// g++ 12 flags the self-initialised _mm512_undefined_* inside its own intrinsics (GCC bug 105593);
// the pragma must precede immintrin.h, where the warnings are located.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#include "cpu/simd_avx512.h"

#define ALIBI_SIMD_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,f16c")))
#include "cpu/tile_ops_simd.h"

namespace alibi::cpu {

namespace {

// bf16 q.k by pairs where they outrun widening: vdpbf16ps runs at about FMA's instruction rate
// on AMD Zen 4 and 5 (twice the multiply-adds); on Sapphire Rapids a tile with it ran 0.67x the
// widened f32 GEMM, AMX-BF16's tiles 4.7x (cpu/README.md).
const Bf16PairOps* bf16_pairs() { return __builtin_cpu_is("amd") ? avx512_bf16_ops() : amx_bf16_ops(); }

// Widening half values as the P.V GEMM loads them: 1.01 to 1.02x per call on Zen 5; 0.91x on
// Sapphire Rapids, where vcvtph2ps and the bf16 shifts take the FMA ports, once per row panel.
bool values_widened_in_gemm() { return __builtin_cpu_is("amd"); }

// Prefetching MHA's half runs in the decode: 1.4x on Zen 5; on Sapphire Rapids 1.02 to 1.04x paged
// (blocks of 16; 1.0 at batch 1 Tk 4096), 0.98x contiguous.
constexpr bool decode_prefetches_mha_half = true;

}  // namespace

// The table also uses AVX2, FMA and F16C instructions (the 8-lane sums, the widening).
bool cpu_runs_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") && avx2_tile_ops() != nullptr;
}

const TileOps* avx512_tile_ops() {
  static const TileOps ops =
      simd_tile_ops<Avx512>("avx512", values_widened_in_gemm(), decode_prefetches_mha_half, bf16_pairs());
  return cpu_runs_avx512() ? &ops : nullptr;
}

}  // namespace alibi::cpu

#else

namespace alibi::cpu {

const TileOps* avx512_tile_ops() { return nullptr; }
bool cpu_runs_avx512() { return false; }

}  // namespace alibi::cpu

#endif
