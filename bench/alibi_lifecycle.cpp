// alibi-lifecycle: what a CPU context costs in two builds of libalibi.so, paired in one process
// (each build in its own dlmopen namespace, rounds alternating): create + destroy; create, a small
// forward, destroy (a binding's object per call); and the threads that contexts left open hold
// (a binding's forgotten close).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "common/command_line.h"
#include "common/library.h"

namespace {

constexpr const char* kProgram = "alibi-lifecycle";
constexpr const char* kUsage =
    "usage: alibi-lifecycle OLD/libalibi.so NEW/libalibi.so [--cycles N] [--rounds R] [--open N]\n"
    "  --cycles N  context cycles per timing (default 2000)\n"
    "  --rounds R  alternating rounds; medians are printed (default 7)\n"
    "  --open N    contexts left open, each after a forward, to count threads (default 256)\n";

constexpr int64_t kTokens = 16, kHeads = 2, kDim = 16;

struct Api {
  decltype(&alibi_context_create) context_create;
  decltype(&alibi_context_destroy) context_destroy;
  decltype(&alibi_context_set_num_threads) set_num_threads;
  decltype(&alibi_tensor_wrap) tensor_wrap;
  decltype(&alibi_tensor_destroy) tensor_destroy;
  decltype(&alibi_mask_create_varlen) mask_create_varlen;
  decltype(&alibi_mask_destroy) mask_destroy;
  decltype(&alibi_attention_forward) forward;
};

// One build and the inputs of its small forward: one causal sequence of kTokens tokens.
class Build {
 public:
  explicit Build(const char* path) : library_(kProgram, path) {
    library_.resolve("alibi_context_create", api_.context_create);
    library_.resolve("alibi_context_destroy", api_.context_destroy);
    library_.resolve("alibi_context_set_num_threads", api_.set_num_threads);
    library_.resolve("alibi_tensor_wrap", api_.tensor_wrap);
    library_.resolve("alibi_tensor_destroy", api_.tensor_destroy);
    library_.resolve("alibi_mask_create_varlen", api_.mask_create_varlen);
    library_.resolve("alibi_mask_destroy", api_.mask_destroy);
    library_.resolve("alibi_attention_forward", api_.forward);
  }

  alibi_context_t create() const {
    alibi_context_t ctx = nullptr;
    library_.check(api_.context_create(ALIBI_DEVICE_CPU, 0, &ctx), "alibi_context_create");
    library_.check(api_.set_num_threads(ctx, 2), "alibi_context_set_num_threads");
    return ctx;
  }

  void destroy(alibi_context_t ctx) const { api_.context_destroy(ctx); }

  // q, k, v and out wrap `data` (all alike: only the cost matters); the mask is made per call.
  void forward(alibi_context_t ctx) {
    const int32_t cu[2] = {0, int32_t(kTokens)};
    const int64_t shape[3] = {kTokens, kHeads, kDim};
    alibi_mask_t mask = nullptr;
    alibi_tensor_t t[4] = {};
    library_.check(api_.mask_create_varlen(ctx, 1, cu, cu, 1, &mask), "alibi_mask_create_varlen");
    for (alibi_tensor_t& tensor : t)
      library_.check(api_.tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, nullptr, data_.data(), &tensor),
                     "alibi_tensor_wrap");
    library_.check(api_.forward(ctx, t[0], t[1], t[2], mask, nullptr, t[3], nullptr),
                   "alibi_attention_forward");
    for (alibi_tensor_t tensor : t) api_.tensor_destroy(tensor);
    api_.mask_destroy(mask);
  }

 private:
  bench_common::Library library_;
  Api api_{};
  std::vector<float> data_ = std::vector<float>(size_t(kTokens * kHeads * kDim), 0.25f);
};

double microseconds_per_cycle(Build& build, int cycles, bool with_forward) {
  const auto start = std::chrono::steady_clock::now();
  for (int c = 0; c < cycles; ++c) {
    alibi_context_t ctx = build.create();
    if (with_forward) build.forward(ctx);
    build.destroy(ctx);
  }
  const std::chrono::duration<double, std::micro> elapsed = std::chrono::steady_clock::now() - start;
  return elapsed.count() / cycles;
}

int process_threads() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("Threads:", 0) == 0) return std::stoi(line.substr(8));
  return -1;
}

// Threads added while `count` contexts that each ran a forward stay open.
int threads_of_open_contexts(Build& build, int count) {
  const int before = process_threads();
  std::vector<alibi_context_t> open;
  for (int c = 0; c < count; ++c) {
    open.push_back(build.create());
    build.forward(open.back());
  }
  const int added = process_threads() - before;
  for (alibi_context_t ctx : open) build.destroy(ctx);
  return added;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

struct Options {
  int cycles = 2000, rounds = 7, open = 256;
};

// argv[1] and argv[2] are the libraries; CommandLine skips its first argument, the last of them.
Options parse(int argc, char** argv) {
  bench_common::CommandLine line(argc - 2, argv + 2, kProgram, kUsage);
  if (argc < 3 || argv[1][0] == '-' || argv[2][0] == '-') line.fail("wants OLD and NEW libraries first");
  Options options;
  while (line.next()) {
    if (line.is("--cycles")) options.cycles = line.positive_value();
    else if (line.is("--rounds")) options.rounds = line.positive_value();
    else if (line.is("--open")) options.open = line.positive_value();
    else line.help_or_fail();
  }
  return options;
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = parse(argc, argv);
  Build builds[2] = {Build(argv[1]), Build(argv[2])};
  const char* measures[2] = {"create + destroy", "create + forward + destroy"};
  std::vector<double> times[2][2];
  for (int round = 0; round < options.rounds; ++round)
    for (int m = 0; m < 2; ++m)
      for (int b = 0; b < 2; ++b) {
        const int which = round % 2 == 0 ? b : 1 - b;
        times[m][which].push_back(microseconds_per_cycle(builds[which], options.cycles, m == 1));
      }
  std::printf("alibi-lifecycle: %d cycles x %d rounds, 2 threads per context, forward over %lld tokens, "
              "H=%lld, D=%lld, f32\n", options.cycles, options.rounds, (long long)kTokens,
              (long long)kHeads, (long long)kDim);
  std::printf("%-28s %12s %12s %9s\n", "median us per cycle", "old", "new", "new/old");
  for (int m = 0; m < 2; ++m) {
    const double old_us = median(times[m][0]), new_us = median(times[m][1]);
    std::printf("%-28s %12.2f %12.2f %9.3f\n", measures[m], old_us, new_us, new_us / old_us);
  }
  std::printf("threads added by %d open contexts that ran a forward: old %d, new %d\n", options.open,
              threads_of_open_contexts(builds[0], options.open),
              threads_of_open_contexts(builds[1], options.open));
  return 0;
}
