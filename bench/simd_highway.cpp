// alibi-simd-highway (issue 16): the forward's register-blocked GEMM and score-and-softmax step
// written with Google Highway (bench/highway_tile_ops-inl.h, dispatched at run time by
// HWY_DYNAMIC_DISPATCH) against the same operations of the in-house template (the avx2 and
// avx512 TileOps tables of cpu/tile_ops_simd.h), on one core, in interleaved rounds; outputs are
// compared too. Usage: alibi-simd-highway [--rounds N]. Prints a markdown table; exits 1 when
// outputs disagree (GEMM not bitwise equal, softmax past 4 ulps).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <new>
#include <random>
#include <string>
#include <vector>

#include "cpu/tile_ops.h"

// AVX2 and AVX-512 (and the fallback Highway must have); SSSE3 and SSE4 would only cost build time.
#define HWY_DISABLED_TARGETS (HWY_SSSE3 | HWY_SSE4)
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "bench/simd_highway.cpp"
#include "hwy/foreach_target.h"  // re-includes this file once per Highway target
#include "hwy/highway.h"

#include "bench/highway_tile_ops-inl.h"

#if HWY_ONCE

namespace alibi::bench {

HWY_EXPORT(gemm);
HWY_EXPORT(softmax_block_portable);
HWY_EXPORT(softmax_block_lean);
HWY_EXPORT(target_name);

namespace {

using cpu::ScoreBlock;
using cpu::TileOps;
using Clock = std::chrono::steady_clock;

constexpr int64_t kTileWidth = 264;      // cpu/attention_cpu.cpp: 256 query rows + 8 of padding
// Each timed sample repeats its call for about this long: short, so that most samples run between
// the preemptions of a shared machine, and the medians over many rounds skip the others.
constexpr double kSampleSeconds = 2e-4;

// Floats on 64-byte boundaries, so that both sides load whole cache lines wherever the heap puts them.
template <class T>
struct CacheLineAllocator {
  using value_type = T;
  CacheLineAllocator() = default;
  template <class U>
  CacheLineAllocator(const CacheLineAllocator<U>&) {}
  T* allocate(size_t count) {
    void* p = std::aligned_alloc(64, (count * sizeof(T) + 63) / 64 * 64);
    if (!p) throw std::bad_alloc();
    return static_cast<T*>(p);
  }
  void deallocate(T* p, size_t) { std::free(p); }
  bool operator==(const CacheLineAllocator&) const { return true; }
  bool operator!=(const CacheLineAllocator&) const { return false; }
};
using Floats = std::vector<float, CacheLineAllocator<float>>;

Floats random_floats(size_t count, float lo, float hi, std::mt19937& random) {
  std::uniform_real_distribution<float> uniform(lo, hi);
  Floats values(count);
  for (float& x : values) x = uniform(random);
  return values;
}

// ---- The cases ----

// One TileOps::gemm call as the kernels make it (cpu/attention_cpu.cpp).
struct GemmCase {
  const char* name;
  int64_t m, n, k;
  bool a_transposed;  // A read down columns (P^T of the transposed scores), with c_scale
};

const GemmCase kGemmCases[] = {
    {"GEMM 64 x 64 x 128 (scores: keys x queries x dim)", 64, 64, 128, false},
    {"GEMM 64 x 128 x 64 (P.V, with correction)", 64, 128, 64, true},
    {"GEMM 256 x 128 x 64 (P.V, with correction)", 256, 128, 64, true},
};

struct GemmData {
  GemmCase shape;
  int64_t a_row, a_col, ldb, ldc;
  Floats a, b, c_start, c_scale;
};

GemmData make_gemm(const GemmCase& shape, std::mt19937& random) {
  GemmData g{shape, shape.a_transposed ? 1 : shape.k, shape.a_transposed ? kTileWidth : 1,
             shape.a_transposed ? shape.n : kTileWidth, shape.a_transposed ? shape.n : kTileWidth, {}, {}, {}, {}};
  const int64_t a_size = shape.a_transposed ? shape.k * kTileWidth : shape.m * shape.k;
  g.a = random_floats(size_t(a_size), -1.0f, 1.0f, random);
  g.b = random_floats(size_t(shape.k * g.ldb), -1.0f, 1.0f, random);
  g.c_start = random_floats(size_t(shape.m * g.ldc), -1.0f, 1.0f, random);
  if (shape.a_transposed) g.c_scale = random_floats(size_t(shape.m), 0.5f, 1.0f, random);
  return g;
}

// One 64-key block of scores over `queries` queries (ScoreBlock), and the running state it updates.
struct SoftmaxData {
  int64_t keys, queries;
  bool needs_mask;
  float softcap;
  Floats raw, attn_bias, row_max, row_sum;
  std::vector<int32_t> key_pos, query_pos, visible_lo, visible_hi;
};

// Queries see keys [0, c + 1) when masked (the diagonal block of a causal mask), all otherwise.
SoftmaxData make_softmax(int64_t queries, bool needs_mask, float softcap, bool with_bias, std::mt19937& random) {
  SoftmaxData s{64, queries, needs_mask, softcap, {}, {}, {}, {}, {}, {}, {}, {}};
  s.raw = random_floats(size_t(s.keys * kTileWidth), -6.0f, 6.0f, random);
  if (with_bias) s.attn_bias = random_floats(size_t(s.keys * kTileWidth), -1.0f, 1.0f, random);
  s.row_max = random_floats(size_t(kTileWidth), -2.0f, 2.0f, random);
  s.row_sum = random_floats(size_t(kTileWidth), 1.0f, 20.0f, random);
  for (int64_t j = 0; j < s.keys; ++j) s.key_pos.push_back(int32_t(1000 + j));
  for (int64_t c = 0; c < kTileWidth; ++c) {
    s.query_pos.push_back(int32_t(1000 + c));
    s.visible_lo.push_back(0);
    s.visible_hi.push_back(needs_mask ? int32_t(c + 1) : int32_t(s.keys));
  }
  return s;
}

// A fresh copy of the block's inputs and state, written by one implementation.
struct SoftmaxRun {
  Floats scores, row_max, row_sum, correction;
  ScoreBlock block;
};

void reset(const SoftmaxData& s, SoftmaxRun& run) {
  run.scores = s.raw;
  run.row_max = s.row_max;
  run.row_sum = s.row_sum;
  run.correction.assign(size_t(kTileWidth), 0.0f);
  run.block = ScoreBlock{run.scores.data(), kTileWidth, s.keys, s.queries,
                         s.attn_bias.empty() ? nullptr : s.attn_bias.data(), s.key_pos.data(), s.query_pos.data(),
                         s.visible_lo.data(), s.visible_hi.data(), 0, s.needs_mask, 0.35f, s.softcap,
                         run.row_max.data(), run.row_sum.data(), run.correction.data(), nullptr};
}

// ---- The two implementations behind one interface ----

using GemmFn = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*,
                        int64_t, const float*);
using SoftmaxFn = void (*)(const ScoreBlock&);

void highway_gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
                  int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  HWY_DYNAMIC_DISPATCH(gemm)(m, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
}

void highway_softmax_portable(const ScoreBlock& block) { HWY_DYNAMIC_DISPATCH(softmax_block_portable)(block); }
void highway_softmax_lean(const ScoreBlock& block) { HWY_DYNAMIC_DISPATCH(softmax_block_lean)(block); }

// Highway's softmax_block in each spelling of exp's last steps (bench/highway_tile_ops-inl.h).
struct HighwaySoftmax {
  const char* spelling;
  SoftmaxFn call;
};

const HighwaySoftmax kHighwaySoftmax[] = {
    {"portable exp", highway_softmax_portable},
    {"lean exp", highway_softmax_lean},
};

void call_gemm(GemmFn gemm, const GemmData& g, Floats& c) {
  gemm(g.shape.m, g.shape.n, g.shape.k, g.a.data(), g.a_row, g.a_col, g.b.data(), g.ldb, c.data(), g.ldc,
       g.c_scale.empty() ? nullptr : g.c_scale.data());
}

// ---- Agreement ----

// Distance in units in the last place between two floats of the same sign (0 when equal,
// infinities included); a sign disagreement counts as the largest distance.
int64_t ulps(float x, float y) {
  if (x == y) return 0;
  if (std::signbit(x) != std::signbit(y) || std::isnan(x) || std::isnan(y)) return INT64_MAX;
  int32_t ix, iy;
  std::memcpy(&ix, &x, 4);
  std::memcpy(&iy, &y, 4);
  return std::abs(int64_t(ix) - int64_t(iy));
}

int64_t max_ulps(const Floats& x, const Floats& y) {
  int64_t worst = 0;
  for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, ulps(x[i], y[i]));
  return worst;
}

// The GEMM accumulates in the same order on both sides; softmax may differ by a few ulps.
constexpr int64_t kGemmUlps = 0, kSoftmaxUlps = 4;
int disagreements = 0;  // comparisons past their allowance: the exit status

std::string describe(int64_t worst_ulps, int64_t allowed) {
  if (worst_ulps > allowed) ++disagreements;
  const std::string verdict = worst_ulps == 0 ? "bitwise equal" : "max " + std::to_string(worst_ulps) + " ulp";
  return worst_ulps > allowed ? verdict + " (DISAGREE)" : verdict;
}

std::string gemm_agreement(GemmFn gemm, const GemmData& g) {
  Floats ours = g.c_start, theirs = g.c_start;
  call_gemm(gemm, g, ours);
  call_gemm(highway_gemm, g, theirs);
  return describe(max_ulps(ours, theirs), kGemmUlps);
}

std::string softmax_agreement(SoftmaxFn softmax, SoftmaxFn highway, const SoftmaxData& s) {
  SoftmaxRun ours, theirs;
  reset(s, ours);
  reset(s, theirs);
  softmax(ours.block);
  highway(theirs.block);
  return describe(std::max({max_ulps(ours.scores, theirs.scores), max_ulps(ours.row_max, theirs.row_max),
                            max_ulps(ours.row_sum, theirs.row_sum),
                            max_ulps(ours.correction, theirs.correction)}),
                  kSoftmaxUlps);
}

// ---- Timing ----

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// Seconds per call of `call`, over `repeats` calls.
template <class Call>
double seconds_per_call(Call&& call, int repeats) {
  const auto start = Clock::now();
  for (int r = 0; r < repeats; ++r) call();
  return seconds_since(start) / repeats;
}

// How many calls fill a sample of about kSampleSeconds.
template <class Call>
int repeats_for_sample(Call&& call) {
  const double once = seconds_per_call(call, 20);
  return std::max(1, int(kSampleSeconds / std::max(once, 1e-9)));
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t mid = values.size() / 2;
  return values.size() % 2 ? values[mid] : 0.5 * (values[mid - 1] + values[mid]);
}

// Per-round seconds per call of the template and of Highway, taking turns (which goes first
// alternates from round to round).
struct Paired {
  std::vector<double> ours, theirs;
};

template <class Ours, class Theirs>
Paired time_paired(Ours&& ours, Theirs&& theirs, int rounds) {
  const int repeats = std::min(repeats_for_sample(ours), repeats_for_sample(theirs));
  Paired p;
  for (int round = 0; round < rounds; ++round) {
    if (round % 2 == 0) {
      p.ours.push_back(seconds_per_call(ours, repeats));
      p.theirs.push_back(seconds_per_call(theirs, repeats));
    } else {
      p.theirs.push_back(seconds_per_call(theirs, repeats));
      p.ours.push_back(seconds_per_call(ours, repeats));
    }
  }
  return p;
}

// A table row: rates from medians of the per-call times; the ratio is the median of the
// per-round ratios of Highway's rate to the template's.
void print_row(const std::string& op, const char* isa, const Paired& p, double work, const char* unit,
               const std::string& agreement) {
  std::vector<double> ratios;
  int faster = 0;
  for (size_t r = 0; r < p.ours.size(); ++r) {
    ratios.push_back(p.ours[r] / p.theirs[r]);
    faster += p.theirs[r] < p.ours[r];
  }
  std::printf("| %s | %s | %.2f | %.2f | %s | %.3f | %d of %zu | %s |\n", op.c_str(), isa, work / median(p.ours) * 1e-9,
              work / median(p.theirs) * 1e-9, unit, median(ratios), faster, p.ours.size(), agreement.c_str());
  std::fflush(stdout);
}

void bench_gemm(const TileOps& ops, const GemmCase& shape, int rounds, std::mt19937& random) {
  const GemmData g = make_gemm(shape, random);
  // Both sides write the same C (the work per call does not depend on the values); with c_scale
  // each call rescales it, and it stays bounded (c_scale <= 1).
  Floats c = g.c_start;
  const Paired p = time_paired([&] { call_gemm(ops.gemm, g, c); }, [&] { call_gemm(highway_gemm, g, c); }, rounds);
  print_row(shape.name, ops.name, p, 2.0 * double(shape.m * shape.n * shape.k), "GFLOP/s",
            gemm_agreement(ops.gemm, g));
}

void bench_softmax(const TileOps& ops, const HighwaySoftmax& highway, bool needs_mask, int rounds,
                   std::mt19937& random) {
  const SoftmaxData s = make_softmax(64, needs_mask, 0.0f, false, random);
  SoftmaxRun run;
  reset(s, run);
  // Both sides work on the same block, each call on the outputs of the one before: the
  // instructions per call do not depend on the values.
  const Paired p = time_paired([&] { ops.softmax_block(run.block); }, [&] { highway.call(run.block); }, rounds);
  const std::string name = std::string("softmax_block 64 x 64, needs_mask ") + (needs_mask ? "true" : "false") +
                           ", Highway's " + highway.spelling;
  print_row(name, ops.name, p, double(s.keys * s.queries), "Gcell/s",
            softmax_agreement(ops.softmax_block, highway.call, s));
}

// Cases timed above plus the paths they skip (partial groups, softcap, attn_bias), compared only.
void check_softmax_variants(const TileOps& ops, std::mt19937& random) {
  for (int64_t queries : {64, 60, 40, 8})
    for (float softcap : {0.0f, 30.0f})
      for (bool with_bias : {false, true}) {
        const SoftmaxData s = make_softmax(queries, true, softcap, with_bias, random);
        std::printf("- %s, %lld queries, softcap %g, attn_bias %s:", ops.name, (long long)queries, double(softcap),
                    with_bias ? "yes" : "no");
        for (const HighwaySoftmax& highway : kHighwaySoftmax)
          std::printf(" %s %s;", highway.spelling, softmax_agreement(ops.softmax_block, highway.call, s).c_str());
        std::printf("\n");
      }
}

// The Highway target the dispatch now picks, limited to `target` (a mask of one HWY_* bit).
std::string choose_highway_target(int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
  return HWY_DYNAMIC_DISPATCH(target_name)();
}

std::string load_average() {
  std::ifstream file("/proc/loadavg");
  std::string one_minute;
  file >> one_minute;
  return one_minute;
}

int rounds_from(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--rounds") return std::max(1, std::atoi(argv[i + 1]));
  return 1001;
}

struct Isa {
  const TileOps* table;
  int64_t highway_target;
};

}  // namespace
}  // namespace alibi::bench

int main(int argc, char** argv) {
  using namespace alibi::bench;
  const int rounds = rounds_from(argc, argv);
  std::mt19937 random(16);
  const Isa isas[] = {{alibi::cpu::avx2_tile_ops(), HWY_AVX2}, {alibi::cpu::avx512_tile_ops(), HWY_AVX3}};
  std::printf("%d interleaved rounds per row, one thread; load average at start %s\n\n", rounds,
              load_average().c_str());
  std::printf("| operation | ISA | template | Highway | unit | Highway / template | rounds Highway faster | outputs |\n");
  std::printf("|---|---|--:|--:|---|--:|--:|---|\n");
  std::vector<std::string> checks;
  for (const Isa& isa : isas) {
    if (!isa.table) continue;
    const std::string chosen = choose_highway_target(isa.highway_target);
    for (const GemmCase& shape : kGemmCases) bench_gemm(*isa.table, shape, rounds, random);
    for (const HighwaySoftmax& highway : kHighwaySoftmax)
      for (bool needs_mask : {true, false}) bench_softmax(*isa.table, highway, needs_mask, rounds, random);
    checks.push_back(std::string(isa.table->name) + " against Highway's " + chosen);
  }
  std::printf("\nload average at end %s\n\nsoftmax_block outputs on other shapes and options:\n", load_average().c_str());
  for (const Isa& isa : isas) {
    if (!isa.table) continue;
    choose_highway_target(isa.highway_target);
    check_softmax_variants(*isa.table, random);
  }
  for (const std::string& line : checks) std::printf("pairs: %s\n", line.c_str());
  hwy::SetSupportedTargetsForTest(0);
  return disagreements ? 1 : 0;
}

#endif  // HWY_ONCE
