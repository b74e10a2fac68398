// alibi-bench: libalibi's CPU attention against an unfused Eigen baseline, the f32 GEMM ceiling
// and the memory copy bandwidth. Progress on stderr, one table row per (case, implementation)
// on stdout (CSV, or markdown with --markdown). Run with --help for the options.
#include <alibi/alibi.h>
#include <omp.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "baselines.h"
#include "common/command_line.h"
#include "cases.h"
#include "measure.h"
#include "report.h"

namespace bench {

namespace {

constexpr int kGemmSize = 2048;
constexpr size_t kCopyBytes = size_t(1) << 30;  // far beyond the 32 MiB L3
constexpr double kTolerance = 1e-3;
constexpr double kBf16Ulp = 1.0 / 128;  // of a value in [1, 2): output rounding of bf16 cases
constexpr int kCeilingReps = 3;  // before and after each case

const char* const kUsage =
    "usage: alibi-bench [--quick] [--case SUBSTRING]... [--threads N] [--reps N]\n"
    "                   [--plot FILE.png] [--markdown] [--list]\n"
    "  --quick       a short subset of the cases\n"
    "  --case S      only cases whose name contains S (repeatable: any of them)\n"
    "  --threads N   threads of libalibi, Eigen and the baselines (default 2)\n"
    "  --reps N      timed calls per measurement (default: enough for >= 1 s, at least 3)\n"
    "  --plot F      write a PNG chart of GFLOP/s by case to F (needs gnuplot)\n"
    "  --markdown    print the table as markdown instead of CSV\n"
    "  --list        print the selected case names and exit\n";

struct Options {
  bool markdown = false, list = false;
  std::vector<Case> cases;  // those --quick and --case select
  int threads = 2, reps = 0;
  std::string plot;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bool quick = false;
  std::vector<std::string> filters;
  bench_common::CommandLine args(argc, argv, "alibi-bench", kUsage);
  while (args.next()) {
    if (args.is("--quick"))
      quick = true;
    else if (args.is("--markdown"))
      options.markdown = true;
    else if (args.is("--list"))
      options.list = true;
    else if (args.is("--case"))
      filters.push_back(args.value());
    else if (args.is("--threads"))
      options.threads = args.positive_value();
    else if (args.is("--reps"))
      options.reps = args.positive_value();
    else if (args.is("--plot"))
      options.plot = args.value();
    else
      args.help_or_fail();
  }
  for (const Case& c : default_cases())
    if (bench_common::selected(c.name, c.quick, quick, filters)) options.cases.push_back(c);
  if (options.cases.empty()) args.fail("no case matches");
  return options;
}

void check(alibi_status status, const char* call) {
  if (status == ALIBI_STATUS_SUCCESS) return;
  std::fprintf(stderr, "alibi-bench: %s failed: %s\n  %s\n", call, alibi_status_string(status),
               alibi_last_error_message());
  std::exit(1);
}

struct ContextDeleter {
  void operator()(alibi_context_t ctx) const { alibi_context_destroy(ctx); }
};
struct TensorDeleter {
  void operator()(alibi_tensor_t t) const { alibi_tensor_destroy(t); }
};
struct MaskDeleter {
  void operator()(alibi_mask_t m) const { alibi_mask_destroy(m); }
};
using Context = std::unique_ptr<alibi_context_s, ContextDeleter>;
using Tensor = std::unique_ptr<alibi_tensor_s, TensorDeleter>;
using Mask = std::unique_ptr<alibi_mask_s, MaskDeleter>;

Context make_context(int threads) {
  alibi_context_t ctx = nullptr;
  check(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), "alibi_context_create");
  Context owned(ctx);
  check(alibi_context_set_num_threads(ctx, threads), "alibi_context_set_num_threads");
  return owned;
}

Tensor wrap(alibi_context_t ctx, const Case& c, int64_t tokens, int heads, void* data) {
  const int64_t shape[3] = {tokens, heads, c.head_dim};
  alibi_tensor_t tensor = nullptr;
  check(alibi_tensor_wrap(ctx, c.dtype, 3, shape, nullptr, data, &tensor), "alibi_tensor_wrap");
  return Tensor(tensor);
}

// alibi_attention_forward of a case through the public C API, default parameters, no LSE.
class AlibiForward {
 public:
  AlibiForward(alibi_context_t ctx, const Case& c, Inputs& inputs)
      : ctx_(ctx),
        dtype_(c.dtype),
        out_bytes_(size_t(c.total_q() * c.heads * c.head_dim) * c.element_size()),
        q_(wrap(ctx, c, c.total_q(), c.heads, inputs.q.data())),
        k_(wrap(ctx, c, c.total_k(), c.kv_heads, inputs.k.data())),
        v_(wrap(ctx, c, c.total_k(), c.kv_heads, inputs.v.data())),
        out_(wrap(ctx, c, c.total_q(), c.heads, out_bytes_.data())) {
    const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
    alibi_mask_t mask = nullptr;
    check(alibi_mask_create_varlen(ctx, int(c.lengths_q.size()), cu_q.data(), cu_k.data(),
                                   c.causal ? 1 : 0, &mask),
          "alibi_mask_create_varlen");
    mask_.reset(mask);
  }

  void run() {
    check(alibi_attention_forward(ctx_, q_.get(), k_.get(), v_.get(), mask_.get(), nullptr,
                                  out_.get(), nullptr),
          "alibi_attention_forward");
  }

  float output(size_t i) const {
    if (dtype_ == ALIBI_DTYPE_F32) {
      float value;
      std::memcpy(&value, out_bytes_.data() + 4 * i, 4);
      return value;
    }
    uint16_t half;
    std::memcpy(&half, out_bytes_.data() + 2 * i, 2);
    return from_bf16(half);
  }

 private:
  alibi_context_t ctx_;
  alibi_dtype dtype_;
  std::vector<unsigned char> out_bytes_;  // allocated and touched before any measurement
  Tensor q_, k_, v_, out_;
  Mask mask_;
};

// Max |libalibi - unfused| over the output, and whether every element is within tolerance:
// 1e-3, plus the bf16 rounding of libalibi's output (at most 2^-8 |value|) for bf16 cases.
struct Agreement {
  double max_abs_diff;
  bool ok;
};

Agreement compare(const AlibiForward& library, const std::vector<float>& reference,
                  alibi_dtype dtype) {
  Agreement agreement{0.0, true};
  const double relative = dtype == ALIBI_DTYPE_BF16 ? kBf16Ulp / 2 : 0.0;
  for (size_t i = 0; i < reference.size(); ++i) {
    const double diff = std::fabs(double(library.output(i)) - reference[i]);
    agreement.max_abs_diff = std::max(agreement.max_abs_diff, diff);
    if (!(diff <= kTolerance + relative * std::fabs(reference[i]))) agreement.ok = false;
  }
  return agreement;
}

// The ceilings, kept ready: each case times its own ceiling just before and just after its
// calls, so that a drift of the (shared, virtual) machine moves a case and its ceiling together.
struct Ceilings {
  Gemm gemm{kGemmSize};
  Copy copy{kCopyBytes};
};

Row ceiling_row(const std::string& name, const std::string& kind, const std::string& implementation,
                int reps, double median_seconds) {
  Row row;
  row.case_name = name;
  row.kind = kind;
  row.dtype = "f32";
  row.implementation = implementation;
  row.reps = reps;
  row.median_seconds = median_seconds;
  return row;
}

Row gemm_row(const std::string& name, const std::string& kind, Gemm& gemm, int reps, double seconds) {
  Row row = ceiling_row(name, kind, "eigen_sgemm", reps, seconds);
  row.gflop_per_s = gemm.flops() / seconds * 1e-9;
  row.frac_of_gemm = 1.0;
  return row;
}

Row copy_row(const std::string& name, const std::string& kind, Copy& copy, int reps, double seconds) {
  Row row = ceiling_row(name, kind, "memcpy", reps, seconds);
  row.gb_per_s = copy.bytes_moved() / seconds * 1e-9;
  row.frac_of_copy = 1.0;
  return row;
}

// The read-only stream, as a fraction of the copy row measured with it.
Row read_row(const std::string& name, const std::string& kind, Copy& copy, int reps, double seconds,
             const Row& copy_result) {
  Row row = ceiling_row(name, kind, "read_stream", reps, seconds);
  row.gb_per_s = copy.bytes_read() / seconds * 1e-9;
  row.frac_of_copy = row.gb_per_s / copy_result.gb_per_s;
  return row;
}

// The ceilings alone, once, before the cases.
void report_ceilings(Ceilings& ceilings, const Options& options, Report& report) {
  std::fprintf(stderr, "ceilings: f32 GEMM %dx%dx%d (Eigen), memcpy of %zu MiB, %d threads\n",
               kGemmSize, kGemmSize, kGemmSize, kCopyBytes >> 20, options.threads);
  const Run gemm = [&] { ceilings.gemm.run(); }, copy = [&] { ceilings.copy.run(); };
  const double gemm_first = seconds_of(gemm), copy_first = seconds_of(copy);
  const int gemm_reps = repetitions(gemm_first, options.reps), copy_reps = repetitions(copy_first, options.reps);
  const std::string gemm_name = "gemm_f32_n" + std::to_string(kGemmSize);
  const Row gemm_result = gemm_row(gemm_name, "ceiling", ceilings.gemm, gemm_reps, median_seconds(gemm, gemm_reps));
  const Row copy_result = copy_row("copy_" + std::to_string(kCopyBytes >> 20) + "mib", "ceiling", ceilings.copy,
                                   copy_reps, median_seconds(copy, copy_reps));
  report.add(gemm_result);
  report.add(copy_result);
  std::fprintf(stderr, "  GEMM %.1f GFLOP/s, copy %.1f GB/s (read + write)\n", gemm_result.gflop_per_s,
               copy_result.gb_per_s);
}

Row case_row(const Case& c, const std::string& implementation, int reps, double median_seconds) {
  Row row;
  row.case_name = c.name;
  row.kind = kind_name(c.kind);
  row.dtype = dtype_name(c.dtype);
  row.heads = std::to_string(c.heads);
  row.kv_heads = std::to_string(c.kv_heads);
  row.head_dim = std::to_string(c.head_dim);
  row.length = std::to_string(c.kind == Kind::decode ? c.total_k() : c.total_q());
  row.mask = c.causal ? "causal" : "full";
  row.implementation = implementation;
  row.reps = reps;
  row.median_seconds = median_seconds;
  row.gflop_per_s = c.flops() / median_seconds * 1e-9;
  if (c.kind == Kind::decode) row.gb_per_s = c.decode_bytes() / median_seconds * 1e-9;
  return row;
}

// Reports a case's row with its fractions of the ceiling timed with the case.
void add_case_row(Row row, const Row& ceiling, Report& report) {
  if (std::isnan(row.gb_per_s))
    row.frac_of_gemm = row.gflop_per_s / ceiling.gflop_per_s;
  else
    row.frac_of_copy = row.gb_per_s / ceiling.gb_per_s;
  std::fprintf(stderr, "  %-9s %.4g s (median of %d), %.1f GFLOP/s", row.implementation.c_str(),
               row.median_seconds, row.reps, row.gflop_per_s);
  if (!std::isnan(row.frac_of_gemm)) std::fprintf(stderr, " = %.2f of GEMM", row.frac_of_gemm);
  if (!std::isnan(row.gb_per_s))
    std::fprintf(stderr, ", %.1f GB/s = %.2f of copy", row.gb_per_s, row.frac_of_copy);
  std::fprintf(stderr, ", peak +%.1f MiB\n", row.peak_extra_mib);
  report.add(row);
}

// Measures libalibi and the unfused baseline where the case has it, their calls alternating, and
// the case's ceiling (GEMM, or copy for decode) timed kCeilingReps times before and after them,
// and adds their rows.
// False when libalibi and the baseline disagree.
bool run_case(const Case& c, alibi_context_t ctx, Ceilings& ceilings, const Options& options,
              Report& report) {
  const bool decode = c.kind == Kind::decode;
  const Run ceiling_run = decode ? Run([&] { ceilings.copy.run(); }) : Run([&] { ceilings.gemm.run(); });
  const Run read_run = [&] { ceilings.copy.read(); };
  std::vector<double> ceiling_seconds = call_seconds(ceiling_run, kCeilingReps), read_seconds;
  if (decode) read_seconds = call_seconds(read_run, kCeilingReps);

  Inputs inputs = make_inputs(c);
  AlibiForward library(ctx, c, inputs);
  const Run library_run = [&] { library.run(); };
  const FirstCall library_first = measured_call(library_run);
  std::vector<Run> runs{library_run};
  double round_seconds = library_first.seconds;
  std::vector<float> reference;
  FirstCall baseline_first{};
  if (c.with_baseline) {
    reference.assign(size_t(c.total_q() * c.heads * c.head_dim), 0.0f);
    const Run baseline_run = [&] { unfused_attention(c, inputs, reference.data()); };
    baseline_first = measured_call(baseline_run);
    const Agreement agreement = compare(library, reference, c.dtype);
    std::fprintf(stderr, "  max |libalibi - unfused| = %.3g%s\n", agreement.max_abs_diff,
                 c.dtype == ALIBI_DTYPE_BF16 ? " (bf16 output; tolerance 1e-3 + 2^-8 |value|)"
                                             : " (tolerance 1e-3)");
    if (!agreement.ok) {
      std::fprintf(stderr, "alibi-bench: %s: libalibi and the unfused baseline disagree\n",
                   c.name.c_str());
      return false;
    }
    runs.push_back(baseline_run);
    round_seconds += baseline_first.seconds;
  }

  const int reps = repetitions(round_seconds, options.reps);
  const std::vector<double> medians = alternating_median_seconds(runs, reps);
  Row library_row = case_row(c, "libalibi", reps, medians[0]);
  library_row.peak_extra_mib = library_first.peak_extra_mib;
  Row baseline_row;
  if (c.with_baseline) {
    baseline_row = case_row(c, "unfused", reps, medians[1]);
    baseline_row.peak_extra_mib = baseline_first.peak_extra_mib;
    library_row.speedup_vs_unfused = baseline_row.median_seconds / library_row.median_seconds;
  }

  for (double seconds : call_seconds(ceiling_run, kCeilingReps)) ceiling_seconds.push_back(seconds);
  if (decode)
    for (double seconds : call_seconds(read_run, kCeilingReps)) read_seconds.push_back(seconds);
  const std::string kind = kind_name(c.kind);
  const int ceiling_reps = int(ceiling_seconds.size());
  const Row ceiling = decode ? copy_row(c.name, kind, ceilings.copy, ceiling_reps, median(ceiling_seconds))
                             : gemm_row(c.name, kind, ceilings.gemm, ceiling_reps, median(ceiling_seconds));
  add_case_row(library_row, ceiling, report);
  if (c.with_baseline) add_case_row(baseline_row, ceiling, report);
  report.add(ceiling);
  if (decode) report.add(read_row(c.name, kind, ceilings.copy, int(read_seconds.size()), median(read_seconds), ceiling));
  return true;
}

int run(const Options& options) {
  const std::vector<Case>& cases = options.cases;
  if (options.list) {
    for (const Case& c : cases) std::printf("%s\n", c.name.c_str());
    return 0;
  }

  prepare_memory_measurement();
  omp_set_num_threads(options.threads);
  Eigen::setNbThreads(options.threads);
  const Context ctx = make_context(options.threads);
  std::fprintf(stderr, "alibi-bench: libalibi %s, threads: %d, cases: %zu\n",
               alibi_version_string(), options.threads, cases.size());

  Report report(options.markdown ? Format::markdown : Format::csv);
  Ceilings ceilings;
  report_ceilings(ceilings, options, report);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::fprintf(stderr, "[%zu/%zu] %s: %.3g GFLOP%s\n", i + 1, cases.size(), c.name.c_str(),
                 c.flops() * 1e-9, c.with_baseline ? "" : ", libalibi only");
    if (!run_case(c, ctx.get(), ceilings, options, report)) return 1;
  }
  if (!options.plot.empty()) report.plot(options.plot);
  return 0;
}

}  // namespace

}  // namespace bench

int main(int argc, char** argv) {
  // libgomp reads OMP_WAIT_POLICY as it loads. Idle OpenMP threads of the baselines would spin
  // for milliseconds into libalibi's next call, so run again with them sleeping.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
  }
  return bench::run(bench::parse_options(argc, argv));
}
