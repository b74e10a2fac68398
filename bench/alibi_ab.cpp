// alibi-ab: two builds of libalibi.so in one process (each in its own dlmopen namespace), timed
// call by call in alternating order on the same inputs. On a machine whose speed drifts from
// minute to minute, separate runs cannot tell a 5% change from noise; paired calls can.
// Prints each build's best and median GFLOP/s (decode: GB/s of k and v), the ratio of medians
// and in how many rounds B was faster, and checks that both builds give the same output (with
// --backward: the same dq, each build's backward fed by its own forward's out and lse).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "alibi/alibi.h"
#include "common/attention_shape.h"
#include "common/bf16.h"
#include "common/command_line.h"
#include "common/library.h"
#include "common/paged_pool.h"
#include "common/random_values.h"

namespace {

const char kUsage[] =
    "usage: alibi-ab LIB_A LIB_B [--tokens N] [--queries Q] [--batch B] [--heads H] [--kv-heads HKV]\n"
    "                [--dim D] [--full] [--bf16 | --f16] [--b-dtype f32|bf16|f16] [--backward]\n"
    "                [--block-size BS] [--threads T] [--rounds R] [--cold]\n"
    "  B sequences (default 1) of N keys (default 2048) and Q queries (default N; 1 = decode), causal\n"
    "  unless --full, H = HKV = 16 heads of D = 128, f32 unless --bf16 or --f16, T = 2 threads, R = 16\n"
    "  rounds of one call to each build, alternating which goes first. --b-dtype: B's inputs in\n"
    "  that dtype (the same values, rounded), to pair two dtypes of one build (LIB_A = LIB_B).\n"
    "  --backward times alibi_attention_backward (dq, dk, dv, dslopes; FLOPs counted as 2.5\n"
    "  forwards'). --block-size times alibi_attention_forward_paged instead, k and v in a pool of\n"
    "  BS-token blocks, each sequence's at shuffled places (the pool alibi-bench's paged cases use).\n"
    "  --cold reads 1 GiB (T OpenMP threads) before every call, so that each starts from memory,\n"
    "  as alibi-bench's decode calls do after its read-only stream.\n";

// One build's entry points and its context, mask and tensors.
struct Build {
  explicit Build(const char* path) : library("alibi-ab", path) {}
  bench_common::Library library;
  decltype(&alibi_context_create) context_create;
  decltype(&alibi_context_set_num_threads) set_num_threads;
  decltype(&alibi_mask_create_varlen) mask_create_varlen;
  decltype(&alibi_tensor_wrap) tensor_wrap;
  decltype(&alibi_attention_forward) attention_forward;
  decltype(&alibi_attention_backward) attention_backward;
  decltype(&alibi_attention_forward_paged) attention_forward_paged;
  alibi_context_t context = nullptr;
  alibi_mask_t mask = nullptr;
  alibi_tensor_t q = nullptr, k = nullptr, v = nullptr, out = nullptr, lse = nullptr;
  alibi_tensor_t dout = nullptr, dq = nullptr, dk = nullptr, dv = nullptr, dslopes = nullptr;
  alibi_tensor_t block_table = nullptr, cu_seqlens_q = nullptr, seqlens_k = nullptr;  // --block-size
};

// One build's output buffers: `compared` (out, or dq with --backward) is checked across builds.
struct Outputs {
  std::vector<unsigned char> compared, out, lse, dk, dv, dslopes;
};

// One build's inputs.
struct Values {
  alibi_dtype dtype;
  std::vector<unsigned char> q, k, v, dout;
  std::vector<unsigned char> k_pool, v_pool;  // --block-size: k and v as the table places them
  size_t element_bytes() const { return bench_common::element_bytes(dtype); }
};

struct Inputs {
  bench_common::AttentionShape shape;
  int threads, rounds;
  bool backward;
  bool cold;
  int block_size;  // 0: alibi_attention_forward
  bench_common::BlockTable table;
  std::vector<int32_t> cu_seqlens_q, seqlens_k;
  Values values[2];  // A's and B's dtypes; B's values are empty where it reads A's
  bool paged() const { return block_size > 0; }
  // B reads A's inputs where the dtypes agree: the same pages, as a self-pair of decode calls on
  // copies of their own differed by up to 6% with where the copies landed.
  const Values& of(int which) const { return values[which].q.empty() ? values[0] : values[which]; }
};

Build open_build(const char* path, const Inputs& in, const Values& values, Outputs& out) {
  Build build(path);
  const bench_common::Library& library = build.library;
  library.resolve("alibi_context_create", build.context_create);
  library.resolve("alibi_context_set_num_threads", build.set_num_threads);
  library.resolve("alibi_mask_create_varlen", build.mask_create_varlen);
  library.resolve("alibi_tensor_wrap", build.tensor_wrap);
  library.resolve("alibi_attention_forward", build.attention_forward);
  if (in.backward) library.resolve("alibi_attention_backward", build.attention_backward);
  library.check(build.context_create(ALIBI_DEVICE_CPU, 0, &build.context), "alibi_context_create");
  library.check(build.set_num_threads(build.context, in.threads), "alibi_context_set_num_threads");
  const std::vector<int32_t> cu_q = in.shape.cu_seqlens_q(), cu_k = in.shape.cu_seqlens_k();
  library.check(build.mask_create_varlen(build.context, int(in.shape.lengths_q.size()), cu_q.data(), cu_k.data(),
                                         in.shape.causal, &build.mask),
                "alibi_mask_create_varlen");
  const int64_t q_shape[3] = {in.shape.total_q(), in.shape.heads, in.shape.head_dim};
  const int64_t kv_shape[3] = {in.shape.total_k(), in.shape.kv_heads, in.shape.head_dim};
  auto wrap_as = [&](alibi_dtype dtype, int ndim, const int64_t* shape, const void* data, alibi_tensor_t* tensor) {
    library.check(build.tensor_wrap(build.context, dtype, ndim, shape, nullptr, const_cast<void*>(data), tensor),
                  "alibi_tensor_wrap");
  };
  auto wrap = [&](const int64_t* shape, const void* data, alibi_tensor_t* tensor) {
    wrap_as(values.dtype, 3, shape, data, tensor);
  };
  wrap(q_shape, values.q.data(), &build.q);
  if (in.paged()) {
    library.resolve("alibi_attention_forward_paged", build.attention_forward_paged);
    const int64_t pool_shape[4] = {in.table.num_blocks, in.block_size, in.shape.kv_heads, in.shape.head_dim};
    const int64_t table_shape[2] = {int64_t(in.seqlens_k.size()), in.table.max_blocks};
    const int64_t cu_shape[1] = {int64_t(in.cu_seqlens_q.size())}, seqlens_shape[1] = {int64_t(in.seqlens_k.size())};
    wrap_as(values.dtype, 4, pool_shape, values.k_pool.data(), &build.k);
    wrap_as(values.dtype, 4, pool_shape, values.v_pool.data(), &build.v);
    wrap_as(ALIBI_DTYPE_I32, 2, table_shape, in.table.ids.data(), &build.block_table);
    wrap_as(ALIBI_DTYPE_I32, 1, cu_shape, in.cu_seqlens_q.data(), &build.cu_seqlens_q);
    wrap_as(ALIBI_DTYPE_I32, 1, seqlens_shape, in.seqlens_k.data(), &build.seqlens_k);
  } else {
    wrap(kv_shape, values.k.data(), &build.k);
    wrap(kv_shape, values.v.data(), &build.v);
  }
  if (!in.backward) {
    wrap(q_shape, out.compared.data(), &build.out);
    return build;
  }
  const int64_t lse_shape[2] = {in.shape.heads, in.shape.total_q()};
  wrap(q_shape, out.out.data(), &build.out);
  wrap_as(ALIBI_DTYPE_F32, 2, lse_shape, out.lse.data(), &build.lse);
  wrap(q_shape, values.dout.data(), &build.dout);
  wrap(q_shape, out.compared.data(), &build.dq);
  wrap(kv_shape, out.dk.data(), &build.dk);
  wrap(kv_shape, out.dv.data(), &build.dv);
  wrap_as(ALIBI_DTYPE_F32, 1, lse_shape, out.dslopes.data(), &build.dslopes);
  library.check(build.attention_forward(build.context, build.q, build.k, build.v, build.mask, nullptr,
                                        build.out, build.lse),
                "alibi_attention_forward");
  return build;
}

Outputs output_buffers(const Inputs& in, const Values& values) {
  Outputs out{std::vector<unsigned char>(values.q.size()), {}, {}, {}, {}, {}};
  if (!in.backward) return out;
  out.out.resize(values.q.size());
  out.lse.resize(size_t(in.shape.heads * in.shape.total_q()) * sizeof(float));
  out.dk.resize(values.k.size());
  out.dv.resize(values.v.size());
  out.dslopes.resize(size_t(in.shape.heads) * sizeof(float));
  return out;
}

double seconds_of_call(const Build& build, const Inputs& in) {
  const auto start = std::chrono::steady_clock::now();
  if (in.paged())
    build.library.check(build.attention_forward_paged(build.context, build.q, build.k, build.v, build.block_table,
                                                      build.cu_seqlens_q, build.seqlens_k, in.shape.causal,
                                                      /*window_left=*/-1, nullptr, build.out, nullptr),
                        "alibi_attention_forward_paged");
  else if (in.backward)
    build.library.check(build.attention_backward(build.context, build.q, build.k, build.v, build.mask, nullptr,
                                                 build.out, build.lse, build.dout, build.dq, build.dk,
                                                 build.dv, build.dslopes),
                        "alibi_attention_backward");
  else
    build.library.check(build.attention_forward(build.context, build.q, build.k, build.v, build.mask, nullptr,
                                                build.out, nullptr),
                        "alibi_attention_forward");
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

alibi_dtype dtype_named(const bench_common::CommandLine& line, const std::string& name) {
  if (name == "f32") return ALIBI_DTYPE_F32;
  if (name == "bf16") return ALIBI_DTYPE_BF16;
  if (name == "f16") return ALIBI_DTYPE_F16;
  line.fail("--b-dtype is f32, bf16 or f16, not '" + name + "'");
}

// For --block-size: the block table and each build's k and v pools.
void page(Inputs& in) {
  const std::vector<int32_t>& lengths_k = in.shape.lengths_k;
  in.table = bench_common::shuffled_block_table(lengths_k, in.block_size);
  in.cu_seqlens_q = in.shape.cu_seqlens_q();
  in.seqlens_k = lengths_k;
  for (Values& values : in.values) {
    if (values.q.empty()) continue;
    const size_t token_bytes = size_t(in.shape.kv_heads * in.shape.head_dim) * values.element_bytes();
    values.k_pool = bench_common::fill_pool(lengths_k, in.block_size, token_bytes, in.table, values.k);
    values.v_pool = bench_common::fill_pool(lengths_k, in.block_size, token_bytes, in.table, values.v);
  }
}

// The options after LIB_A LIB_B (CommandLine skips its first argument, here LIB_B).
Inputs read_options(int argc, char** argv) {
  bench_common::CommandLine line(argc - 2, argv + 2, "alibi-ab", kUsage);
  Inputs in{{16, 16, 128, {}, {}, true}, 2, 16, false, false, 0, {}, {}, {}, {}};
  alibi_dtype dtype = ALIBI_DTYPE_F32, b_dtype = alibi_dtype(-1);
  int tokens = 2048, queries = 0, batch = 1;
  while (line.next()) {
    if (line.is("--tokens")) tokens = line.positive_value();
    else if (line.is("--queries")) queries = line.positive_value();
    else if (line.is("--batch")) batch = line.positive_value();
    else if (line.is("--block-size")) in.block_size = line.positive_value();
    else if (line.is("--heads")) in.shape.heads = in.shape.kv_heads = line.positive_value();
    else if (line.is("--kv-heads")) in.shape.kv_heads = line.positive_value();
    else if (line.is("--dim")) in.shape.head_dim = line.positive_value();
    else if (line.is("--full")) in.shape.causal = false;
    else if (line.is("--bf16")) dtype = ALIBI_DTYPE_BF16;
    else if (line.is("--f16")) dtype = ALIBI_DTYPE_F16;
    else if (line.is("--b-dtype")) b_dtype = dtype_named(line, line.value());
    else if (line.is("--backward")) in.backward = true;
    else if (line.is("--threads")) in.threads = line.positive_value();
    else if (line.is("--rounds")) in.rounds = line.positive_value();
    else if (line.is("--cold")) in.cold = true;
    else line.help_or_fail();
  }
  if (in.shape.heads % in.shape.kv_heads != 0)
    line.fail("--heads " + std::to_string(in.shape.heads) + " is not a multiple of --kv-heads " +
              std::to_string(in.shape.kv_heads));
  if (in.paged() && in.backward) line.fail("--block-size times the paged forward; it has no --backward");
  in.shape.lengths_q.assign(size_t(batch), queries > 0 ? queries : tokens);
  in.shape.lengths_k.assign(size_t(batch), tokens);
  const int64_t q_count = in.shape.total_q() * in.shape.heads * in.shape.head_dim;
  const int64_t kv_count = in.shape.total_k() * in.shape.kv_heads * in.shape.head_dim;
  for (int which = 0; which < 2; ++which) {
    Values& values = in.values[which];
    values.dtype = which == 1 && b_dtype != alibi_dtype(-1) ? b_dtype : dtype;
    if (which == 1 && values.dtype == in.values[0].dtype) break;
    values.q = bench_common::random_values(q_count, values.dtype, 1);
    values.k = bench_common::random_values(kv_count, values.dtype, 2);
    values.v = bench_common::random_values(kv_count, values.dtype, 3);
    if (in.backward) values.dout = bench_common::random_values(q_count, values.dtype, 4);
  }
  if (in.paged()) page(in);
  return in;
}

float value_at(const std::vector<unsigned char>& bytes, size_t i, alibi_dtype dtype) {
  if (dtype == ALIBI_DTYPE_F32) {
    float value;
    std::memcpy(&value, &bytes[i * 4], 4);
    return value;
  }
  uint16_t half;
  std::memcpy(&half, &bytes[i * 2], 2);
  return dtype == ALIBI_DTYPE_F16 ? bench_common::from_f16(half) : bench_common::from_bf16(half);
}

// The largest |a - b| over the two builds' outputs (their summation orders may differ).
double max_difference(const Outputs* out, const Inputs& in) {
  const std::vector<unsigned char>&a = out[0].compared, &b = out[1].compared;
  const Values *va = &in.values[0], *vb = &in.values[1];
  double largest = 0.0;
  for (size_t i = 0; i < a.size() / va->element_bytes(); ++i)
    largest = std::max(largest, double(std::fabs(value_at(a, i, va->dtype) - value_at(b, i, vb->dtype))));
  return largest;
}

// --cold: 1 GiB read before each call by `threads` OpenMP threads (one where the build has no
// OpenMP), as alibi-bench's read-only stream: it evicts what the last call left in the caches,
// the last level's too (up to 1 GiB).
class Eviction {
 public:
  explicit Eviction(int threads) : words_(size_t(1) << 27, 1), threads_(threads) {}

  void run() {
    const int64_t count = int64_t(words_.size());
    uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static) num_threads(threads_)
    for (int64_t i = 0; i < count; ++i) sum += words_[size_t(i)];
    checksum_ += sum;
  }

 private:
  std::vector<uint64_t> words_;
  int threads_;
  uint64_t checksum_ = 0;  // keeps the reads
};

// Per round both builds run once, which goes first alternating; seconds[which] per round.
int time_rounds(const Build* builds, const Inputs& in, std::vector<double>* seconds) {
  std::optional<Eviction> eviction;
  if (in.cold) eviction.emplace(in.threads);
  int b_faster = 0;
  for (int round = 0; round < in.rounds; ++round) {
    double taken[2];
    for (int turn = 0; turn < 2; ++turn) {
      const int which = (round + turn) % 2;
      if (eviction) eviction->run();
      taken[which] = seconds_of_call(builds[which], in);
    }
    for (int which = 0; which < 2; ++which) seconds[which].push_back(taken[which]);
    b_faster += taken[1] < taken[0];
  }
  return b_faster;
}

}  // namespace

int main(int argc, char** argv) {
  const bool help = argc >= 2 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0);
  if (help || argc < 3) {
    std::fputs(kUsage, help ? stdout : stderr);
    return help ? 0 : 2;
  }
  // libgomp reads OMP_WAIT_POLICY as it loads: --cold's readers, spinning idle, would take the
  // cores from the call that follows, so run again with them sleeping (as alibi-bench does).
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
  }
  const Inputs in = read_options(argc, argv);
  Outputs out[2] = {output_buffers(in, in.of(0)), output_buffers(in, in.of(1))};
  const Build builds[2] = {open_build(argv[1], in, in.of(0), out[0]), open_build(argv[2], in, in.of(1), out[1])};
  std::vector<double> seconds[2];
  const int b_faster = time_rounds(builds, in, seconds);

  // Decode (one query per sequence) reads k and v once: GB/s; otherwise GFLOP/s as alibi-bench
  // counts them.
  const bool decode = in.shape.total_q() == int64_t(in.shape.lengths_q.size());
  const double flops = in.shape.flops() * (in.backward ? 2.5 : 1.0);
  double medians[2];
  for (int which = 0; which < 2; ++which) {
    const double work = 1e-9 * (decode ? in.shape.io_bytes(in.values[which].element_bytes()) : flops);
    std::sort(seconds[which].begin(), seconds[which].end());
    medians[which] = seconds[which][seconds[which].size() / 2];
    std::printf("%s: best %.1f, median %.1f %s\n", which == 0 ? "A" : "B", work / seconds[which].front(),
                work / medians[which], decode ? "GB/s" : "GFLOP/s");
  }
  std::printf("B / A (medians): %.3f; B faster in %d of %d rounds; %s: max |A - B| = %.3g\n",
              medians[0] / medians[1], b_faster, in.rounds, in.backward ? "dq" : "outputs",
              max_difference(out, in));
  return 0;
}
