// alibi-same: two builds of libalibi.so in one process (each in its own dlmopen namespace) run
// alibi_attention_forward on the same inputs, case by case, and their out and lse are compared
// bit for bit: the check for changes that must not change results. Prints one line per case.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "alibi/alibi.h"
#include "common/command_line.h"
#include "common/library.h"
#include "common/random_values.h"

namespace {

const char kUsage[] =
    "usage: alibi-same LIB_A LIB_B [--threads N] [--case SUBSTRING]... [--list]\n"
    "  Runs alibi_attention_forward of both builds on the same inputs over varlen, sliding-window\n"
    "  and ranges masks, f32, bf16 and f16, with 1, 2 and 3 threads (--threads N: N only), and\n"
    "  compares out and lse bitwise, one line per case.\n"
    "  --case S   only cases whose name contains S (repeatable: any of them)\n"
    "  --list     print the selected case names and exit (LIB_A and LIB_B may be left out)\n"
    "  Exit status: 0 when every case is bitwise equal; 1 when one differs, or a build does not\n"
    "  load or a call fails (the message names it); 2 for bad arguments.\n";

const char kProgram[] = "alibi-same";

enum class MaskKind { varlen, sliding_window, ranges };

// A case's mask, as the arguments of the call that creates it.
struct Mask {
  MaskKind kind;
  std::vector<int32_t> cu_q, cu_k;  // varlen and sliding_window
  int causal, window_left, window_right;
  std::vector<int32_t> q_ranges, k_ranges, types;  // ranges
  int64_t total_q, total_k;
};

Mask varlen(std::vector<int32_t> cu_q, std::vector<int32_t> cu_k, bool causal) {
  const int64_t total_q = cu_q.back(), total_k = cu_k.back();
  return {MaskKind::varlen, std::move(cu_q), std::move(cu_k), causal, 0, 0, {}, {}, {}, total_q, total_k};
}

Mask sliding_window(std::vector<int32_t> cu_q, std::vector<int32_t> cu_k, int left, int right) {
  const int64_t total_q = cu_q.back(), total_k = cu_k.back();
  return {MaskKind::sliding_window, std::move(cu_q), std::move(cu_k), 0, left, right, {}, {}, {},
          total_q, total_k};
}

Mask ranges(std::vector<int32_t> q_ranges, std::vector<int32_t> k_ranges, std::vector<int32_t> types,
            int64_t total_q, int64_t total_k) {
  return {MaskKind::ranges, {}, {}, 0, 0, 0, std::move(q_ranges), std::move(k_ranges), std::move(types),
          total_q, total_k};
}

// What a shape adds to the plain call, as flags.
enum Extra : unsigned { kNone = 0, kAttnBias = 1, kPositions = 2, kSequenceSlopes = 4 };

struct Shape {
  std::string name;
  Mask mask;
  int heads, kv_heads, head_dim;
  float softcap;
  unsigned extras;
};

// Varlen batches hold sequences with Lq > Lk and Lq < Lk; the decode batches (1 to 3 queries
// over long keys) take the decode kernel; the ranges slices share query rows.
std::vector<Shape> shapes() {
  return {
      {"varlen_causal",
       varlen({0, 70, 75, 205, 700, 701, 1000}, {0, 70, 205, 269, 900, 1000, 1400}, true),
       4, 2, 64, 0.0f, kNone},
      {"varlen_full_softcap_positions_slopes", varlen({0, 300, 301, 650}, {0, 310, 400, 700}, false),
       6, 3, 40, 2.0f, kPositions | kSequenceSlopes},
      {"decode", varlen({0, 1, 2, 3, 5, 8}, {0, 900, 2000, 2001, 4000, 4500}, true),
       8, 2, 128, 0.0f, kNone},
      {"sliding_window_bias", sliding_window({0, 400, 777}, {0, 500, 800}, 60, 5),
       4, 4, 32, 0.0f, kAttnBias},
      {"ranges_bias_positions",
       ranges({5, 285, 0, 300, 0, 300, 285, 440}, {120, 500, 60, 120, 0, 60, 120, 610},
              {ALIBI_MASK_INV_CAUSAL, ALIBI_MASK_CAUSAL, ALIBI_MASK_FULL, ALIBI_MASK_BI_CAUSAL},
              450, 615),
       4, 2, 64, 0.0f, kAttnBias | kPositions},
      {"ranges_decode_softcap",
       ranges({0, 3, 0, 3, 5, 9}, {0, 800, 800, 1600, 100, 3000},
              {ALIBI_MASK_FULL, ALIBI_MASK_CAUSAL, ALIBI_MASK_INV_CAUSAL}, 9, 3000),
       4, 4, 16, 1.0f, kNone},
      {"varlen_long_causal", varlen({0, 2100}, {0, 2100}, true), 2, 1, 80, 0.0f, kNone},
  };
}

const char* dtype_name(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? "f32" : dtype == ALIBI_DTYPE_BF16 ? "bf16" : "f16";
}

struct Case {
  std::string name;
  Shape shape;
  alibi_dtype dtype;
  int threads;
  uint32_t seed;  // the case's place in the whole list, so that --case keeps its inputs
};

std::vector<Case> all_cases(const std::vector<int>& thread_counts) {
  std::vector<Case> cases;
  for (alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_BF16, ALIBI_DTYPE_F16})
    for (const Shape& shape : shapes())
      for (int threads : thread_counts) {
        const std::string name = shape.name + "_" + dtype_name(dtype) + "_t" + std::to_string(threads);
        cases.push_back({name, shape, dtype, threads, uint32_t(cases.size())});
      }
  return cases;
}

struct Options {
  std::vector<Case> cases;
  bool list = false;
};

// `paths` of the arguments are LIB_A and LIB_B (CommandLine skips its first argument, the last
// of them or the program's name).
Options read_options(int argc, char** argv, int paths) {
  bench_common::CommandLine line(argc - paths, argv + paths, kProgram, kUsage);
  Options options;
  std::vector<int> thread_counts = {1, 2, 3};
  std::vector<std::string> filters;
  while (line.next()) {
    if (line.is("--threads")) thread_counts = {line.positive_value()};
    else if (line.is("--case")) filters.push_back(line.value());
    else if (line.is("--list")) options.list = true;
    else line.help_or_fail();
  }
  if (paths != 2 && !options.list) line.fail("wants LIB_A and LIB_B");
  for (const Case& c : all_cases(thread_counts))
    if (bench_common::selected(c.name, true, false, filters)) options.cases.push_back(c);
  if (options.cases.empty()) line.fail("no case matches");
  return options;
}

// How many of the leading arguments (two at most) are not options.
int leading_paths(int argc, char** argv) {
  int paths = 0;
  while (paths < 2 && paths + 1 < argc && argv[paths + 1][0] != '-') ++paths;
  return paths;
}

// One build's entry points and a CPU context.
struct Build {
  explicit Build(const char* path) : library(kProgram, path) {
    library.resolve("alibi_context_create", context_create);
    library.resolve("alibi_context_set_num_threads", set_num_threads);
    library.resolve("alibi_mask_create_varlen", mask_create_varlen);
    library.resolve("alibi_mask_create_sliding_window", mask_create_sliding_window);
    library.resolve("alibi_mask_create_ranges", mask_create_ranges);
    library.resolve("alibi_mask_set_positions", mask_set_positions);
    library.resolve("alibi_mask_destroy", mask_destroy);
    library.resolve("alibi_tensor_wrap", tensor_wrap);
    library.resolve("alibi_tensor_destroy", tensor_destroy);
    library.resolve("alibi_attention_forward", attention_forward);
    // Older builds have only the 0.1.0 init.
    params_init_v2 = library.find<decltype(params_init_v2)>("alibi_attention_params_init_v2");
    if (params_init_v2 == nullptr) library.resolve("alibi_attention_params_init", params_init);
    library.check(context_create(ALIBI_DEVICE_CPU, 0, &context), "alibi_context_create");
  }

  alibi_attention_params default_params() const {
    alibi_attention_params params{};
    if (params_init_v2 != nullptr) params_init_v2(&params, sizeof params);
    else params_init(&params);
    return params;
  }

  bench_common::Library library;
  decltype(&alibi_context_create) context_create;
  decltype(&alibi_context_set_num_threads) set_num_threads;
  decltype(&alibi_mask_create_varlen) mask_create_varlen;
  decltype(&alibi_mask_create_sliding_window) mask_create_sliding_window;
  decltype(&alibi_mask_create_ranges) mask_create_ranges;
  decltype(&alibi_mask_set_positions) mask_set_positions;
  decltype(&alibi_mask_destroy) mask_destroy;
  decltype(&alibi_tensor_wrap) tensor_wrap;
  decltype(&alibi_tensor_destroy) tensor_destroy;
  decltype(&alibi_attention_forward) attention_forward;
  decltype(&alibi_attention_params_init_v2) params_init_v2 = nullptr;
  decltype(&alibi_attention_params_init) params_init = nullptr;
  alibi_context_t context = nullptr;
};

struct Inputs {
  std::vector<unsigned char> q, k, v, attn_bias;  // attn_bias: f32 (heads, total_q, total_k)
  std::vector<int32_t> q_positions, k_positions;
  std::vector<float> slopes;  // (sequences, heads)
};

std::vector<int32_t> random_positions(int64_t count, std::mt19937& engine) {
  std::uniform_int_distribution<int32_t> uniform(-5000, 5000);
  std::vector<int32_t> positions(static_cast<size_t>(count));
  for (int32_t& position : positions) position = uniform(engine);
  return positions;
}

std::vector<float> random_slopes(size_t count, std::mt19937& engine) {
  std::uniform_real_distribution<float> uniform(0.0f, 0.3f);
  std::vector<float> slopes(count);
  for (float& slope : slopes) slope = uniform(engine);
  return slopes;
}

Inputs make_inputs(const Case& c) {
  const Shape& s = c.shape;
  const Mask& m = s.mask;
  const uint32_t seed = 8 * c.seed;
  Inputs in;
  in.q = bench_common::random_values(m.total_q * s.heads * s.head_dim, c.dtype, seed + 1);
  in.k = bench_common::random_values(m.total_k * s.kv_heads * s.head_dim, c.dtype, seed + 2);
  in.v = bench_common::random_values(m.total_k * s.kv_heads * s.head_dim, c.dtype, seed + 3);
  if (s.extras & kAttnBias)
    in.attn_bias =
        bench_common::random_values(s.heads * m.total_q * m.total_k, ALIBI_DTYPE_F32, seed + 4);
  std::mt19937 engine(seed + 5);
  if (s.extras & kPositions) {
    in.q_positions = random_positions(m.total_q, engine);
    in.k_positions = random_positions(m.total_k, engine);
  }
  if (s.extras & kSequenceSlopes)
    in.slopes = random_slopes((m.cu_q.size() - 1) * size_t(s.heads), engine);
  return in;
}

alibi_mask_t create_mask(const Build& build, const Mask& m) {
  const int sequences = int(m.cu_q.size()) - 1;
  alibi_mask_t mask = nullptr;
  switch (m.kind) {
    case MaskKind::varlen:
      build.library.check(build.mask_create_varlen(build.context, sequences, m.cu_q.data(), m.cu_k.data(),
                                                   m.causal, &mask),
                          "alibi_mask_create_varlen");
      break;
    case MaskKind::sliding_window:
      build.library.check(build.mask_create_sliding_window(build.context, sequences, m.cu_q.data(),
                                                           m.cu_k.data(), m.window_left, m.window_right,
                                                           &mask),
                          "alibi_mask_create_sliding_window");
      break;
    case MaskKind::ranges:
      build.library.check(build.mask_create_ranges(build.context, int(m.types.size()), m.q_ranges.data(),
                                                   m.k_ranges.data(), m.types.data(), m.total_q, m.total_k,
                                                   &mask),
                          "alibi_mask_create_ranges");
      break;
  }
  return mask;
}

struct Outputs {
  std::vector<unsigned char> out, lse;  // lse: f32 (heads, total_q)
};

// `fill` is the byte out and lse start as: with a different one per build, an element a build
// leaves unwritten differs.
Outputs forward(const Build& build, const Case& c, const Inputs& in, unsigned char fill) {
  const Shape& s = c.shape;
  const Mask& m = s.mask;
  const bench_common::Library& library = build.library;
  library.check(build.set_num_threads(build.context, c.threads), "alibi_context_set_num_threads");
  alibi_mask_t mask = create_mask(build, m);
  if (s.extras & kPositions)
    library.check(build.mask_set_positions(mask, in.q_positions.data(), in.k_positions.data()),
                  "alibi_mask_set_positions");
  Outputs result{std::vector<unsigned char>(in.q.size(), fill),
                 std::vector<unsigned char>(size_t(s.heads * m.total_q) * sizeof(float), fill)};
  std::vector<alibi_tensor_t> tensors;
  auto wrap = [&](alibi_dtype dtype, std::vector<int64_t> shape, const void* data) {
    alibi_tensor_t tensor = nullptr;
    library.check(build.tensor_wrap(build.context, dtype, int(shape.size()), shape.data(), nullptr,
                                    const_cast<void*>(data), &tensor),
                  "alibi_tensor_wrap");
    tensors.push_back(tensor);
    return tensor;
  };
  const std::vector<int64_t> q_shape = {m.total_q, s.heads, s.head_dim};
  const std::vector<int64_t> kv_shape = {m.total_k, s.kv_heads, s.head_dim};
  const alibi_tensor_t q = wrap(c.dtype, q_shape, in.q.data());
  const alibi_tensor_t k = wrap(c.dtype, kv_shape, in.k.data()), v = wrap(c.dtype, kv_shape, in.v.data());
  const alibi_tensor_t out = wrap(c.dtype, q_shape, result.out.data());
  const alibi_tensor_t lse = wrap(ALIBI_DTYPE_F32, {s.heads, m.total_q}, result.lse.data());
  alibi_attention_params params = build.default_params();
  params.softcap = s.softcap;
  if (s.extras & kAttnBias)
    params.attn_bias = wrap(ALIBI_DTYPE_F32, {s.heads, m.total_q, m.total_k}, in.attn_bias.data());
  if (s.extras & kSequenceSlopes) {
    params.slopes = in.slopes.data();
    params.slopes_per_batch = 1;
  }
  library.check(build.attention_forward(build.context, q, k, v, mask, &params, out, lse),
                "alibi_attention_forward");
  for (alibi_tensor_t tensor : tensors) build.tensor_destroy(tensor);
  build.mask_destroy(mask);
  return result;
}

// How many elements of `width` bytes differ bit for bit.
size_t differing(const std::vector<unsigned char>& a, const std::vector<unsigned char>& b, size_t width) {
  size_t count = 0;
  for (size_t i = 0; i < a.size(); i += width) count += std::memcmp(&a[i], &b[i], width) != 0;
  return count;
}

// Prints the case's line; true when out and lse are bitwise equal.
bool compare(const Case& c, const Outputs& a, const Outputs& b) {
  const size_t out_width = bench_common::element_bytes(c.dtype);
  const size_t out_differ = differing(a.out, b.out, out_width), lse_differ = differing(a.lse, b.lse, 4);
  if (out_differ == 0 && lse_differ == 0) {
    std::printf("%-46s bitwise equal\n", c.name.c_str());
    return true;
  }
  std::printf("%-46s DIFFERS: out %zu of %zu, lse %zu of %zu\n", c.name.c_str(), out_differ,
              a.out.size() / out_width, lse_differ, a.lse.size() / 4);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  const int paths = leading_paths(argc, argv);
  const Options options = read_options(argc, argv, paths);
  if (options.list) {
    for (const Case& c : options.cases) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  const Build builds[2] = {Build(argv[1]), Build(argv[2])};
  size_t differ = 0;
  for (const Case& c : options.cases) {
    const Inputs in = make_inputs(c);
    differ += !compare(c, forward(builds[0], c, in, 0x00), forward(builds[1], c, in, 0xff));
  }
  if (differ == 0) std::printf("all %zu cases bitwise equal\n", options.cases.size());
  else std::printf("%zu of %zu cases differ\n", differ, options.cases.size());
  return differ == 0 ? 0 : 1;
}
