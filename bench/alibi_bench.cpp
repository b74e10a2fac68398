// alibi-bench: libalibi's CPU attention (forward and backward; paged against contiguous) against
// an unfused Eigen baseline, the f32 GEMM ceiling (the fastest of Eigen's and OpenBLAS's sgemm)
// and the memory copy bandwidth. Progress on stderr, one table row per (case, implementation) on stdout (CSV,
// or markdown with --markdown). Run with --help for the options.
#include <alibi/alibi.h>
#include <omp.h>
#include <unistd.h>

#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "baselines.h"
#include "cases.h"
#include "common/command_line.h"
#include "gemm_ceiling.h"
#include "library_calls.h"
#include "measure.h"
#include "report.h"

namespace bench {

namespace {

constexpr int kGemmSize = 2048;
constexpr size_t kCopyBytes = size_t(1) << 30;  // far beyond the 32 MiB L3
constexpr double kTolerance = 1e-3;
constexpr int kCeilingReps = 3;  // before and after each case
constexpr int kTilesPerThread = 8;  // the memory bound's allowance (backward_memory_bound_mib)
constexpr int kTileRows = 256;      // the CPU kernels' row tile (the mask plan's tile_rows)

const char* const kUsage =
    "usage: alibi-bench [--quick] [--case SUBSTRING]... [--threads N] [--reps N]\n"
    "                   [--plot FILE.png] [--markdown] [--list]\n"
    "  --quick       a short subset of the cases\n"
    "  --case S      only cases whose name contains S (repeatable: any of them);\n"
    "                --case backward: the alibi_attention_backward cases\n"
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

// The ceilings, kept ready: each case times its own ceilings just before and just after its
// calls, so that a drift of the (shared, virtual) machine moves a case and its ceilings together.
struct Ceilings {
  explicit Ceilings(int threads) : sgemms(available_sgemms(kGemmSize, threads)) {}
  std::vector<std::unique_ptr<Sgemm>> sgemms;
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

// One sgemm's row; frac_of_gemm is filled in once every sgemm of the case is timed.
Row gemm_row(const std::string& name, const std::string& kind, const Sgemm& sgemm,
             const std::vector<double>& seconds) {
  Row row = ceiling_row(name, kind, sgemm.name(), int(seconds.size()), median(seconds));
  row.gflop_per_s = sgemm_flops(kGemmSize) / row.median_seconds * 1e-9;
  return row;
}

// The fastest of the sgemm rows (the ceiling); sets each row's fraction of it.
const Row& best_gemm(std::vector<Row>& rows) {
  const Row& best = *std::max_element(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return a.gflop_per_s < b.gflop_per_s;
  });
  for (Row& row : rows) row.frac_of_gemm = row.gflop_per_s / best.gflop_per_s;
  return best;
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
  std::fprintf(stderr, "ceilings: f32 GEMM %dx%dx%d, memcpy of %zu MiB, %d threads\n", kGemmSize,
               kGemmSize, kGemmSize, kCopyBytes >> 20, options.threads);
  std::vector<Row> gemm_rows;
  for (const std::unique_ptr<Sgemm>& sgemm : ceilings.sgemms) {
    const int reps = repetitions(sgemm->call_seconds(1)[0], options.reps);
    gemm_rows.push_back(gemm_row("gemm_f32_n" + std::to_string(kGemmSize), "ceiling", *sgemm,
                                 sgemm->call_seconds(reps)));
  }
  const Row& best = best_gemm(gemm_rows);
  const Run copy = [&] { ceilings.copy.run(); };
  const int copy_reps = repetitions(seconds_of(copy), options.reps);
  const Row copy_result = copy_row("copy_" + std::to_string(kCopyBytes >> 20) + "mib", "ceiling",
                                   ceilings.copy, copy_reps, median_seconds(copy, copy_reps));
  for (const Row& row : gemm_rows) {
    std::fprintf(stderr, "  %-24s %.1f GFLOP/s\n", row.implementation.c_str(), row.gflop_per_s);
    report.add(row);
  }
  report.add(copy_result);
  std::fprintf(stderr, "  ceiling: %s; copy %.1f GB/s (read + write)\n",
               best.implementation.c_str(), copy_result.gb_per_s);
}

// The seconds of a case's ceilings: each sgemm and (decode) the copy timed kCeilingReps times
// before its calls and again after; (decode) the read-only streams in the rounds of its calls:
// the copy's source read (last), and for a paged case, between two of those, its blocks read in
// table order.
struct CeilingSeconds {
  std::vector<std::vector<double>> sgemms;  // one list per sgemm (cases other than decode)
  std::vector<double> copy;                 // decode
  int stream_reps = 0;                      // decode: the streams' calls, and their medians
  std::vector<double> stream_medians;
};

void time_ceilings(const Case& c, Ceilings& ceilings, CeilingSeconds& seconds) {
  const auto append = [](std::vector<double>& list, const std::vector<double>& more) {
    list.insert(list.end(), more.begin(), more.end());
  };
  if (c.kind == Kind::decode) {
    append(seconds.copy, call_seconds([&] { ceilings.copy.run(); }, kCeilingReps));
    return;
  }
  seconds.sgemms.resize(ceilings.sgemms.size());
  for (size_t i = 0; i < ceilings.sgemms.size(); ++i)
    append(seconds.sgemms[i], ceilings.sgemms[i]->call_seconds(kCeilingReps));
}

// What a case times, and what it compares it with: the unfused baseline, or for a paged case
// the contiguous call on the same keys.
const char* library_name(const Case& c) { return c.paged() ? "libalibi_paged" : "libalibi"; }
const char* baseline_name(const Case& c) { return c.paged() ? "libalibi" : "unfused"; }

Row case_row(const Case& c, const std::string& implementation, int reps, double median_seconds) {
  Row row;
  row.case_name = c.name;
  row.kind = c.backward ? "backward" : kind_name(c.kind);
  row.dtype = dtype_name(c.dtype);
  row.heads = std::to_string(c.heads);
  row.kv_heads = std::to_string(c.kv_heads);
  row.head_dim = std::to_string(c.head_dim);
  row.length = std::to_string(c.kind == Kind::decode ? c.total_k() : c.total_q());
  row.mask = c.causal ? "causal" : "full";
  row.implementation = implementation;
  row.reps = reps;
  row.median_seconds = median_seconds;
  row.gflop_per_s = c.counted_flops() / median_seconds * 1e-9;
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
  std::fprintf(stderr, ", peak +%.1f MiB", row.peak_extra_mib);
  if (!std::isnan(row.memory_bound_mib))
    std::fprintf(stderr, " (bound %.1f MiB)", row.memory_bound_mib);
  std::fprintf(stderr, "\n");
  report.add(row);
}

// The memory a backward may add beyond its inputs and gradients, O(tiles x threads + Tk x Hkv x D
// f32), made a figure: one f32 copy of k's size plus kTilesPerThread tiles of kTileRows x D f32 per
// thread.
double backward_memory_bound_mib(const Case& c, int threads) {
  const double tiles = double(threads) * kTilesPerThread * kTileRows * c.head_dim;
  return (double(c.kv_elements()) + tiles) * sizeof(float) / (1024.0 * 1024.0);
}

// Half an ulp of a value in [1, 2) in the dtype a result is rounded to (none for f32).
double half_ulp(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_BF16 ? 0x1p-8 : dtype == ALIBI_DTYPE_F16 ? 0x1p-11 : 0.0;
}

// Whether libalibi's `result` matches the case's baseline's `reference` (printing the largest
// difference): within kTolerance times the larger of 1 and the reference's largest magnitude
// (gradients are sums of many terms), plus half an ulp of the value where libalibi rounds its
// result to bf16 or f16.
bool agree(const Case& c, const char* what, const std::vector<float>& result,
           const std::vector<float>& reference, alibi_dtype rounded_to) {
  double largest = 1.0;
  for (float value : reference) largest = std::max(largest, double(std::fabs(value)));
  const double absolute = kTolerance * largest, relative = half_ulp(rounded_to);
  double max_abs_diff = 0.0;
  bool ok = result.size() == reference.size();
  for (size_t i = 0; ok && i < reference.size(); ++i) {
    const double diff = std::fabs(double(result[i]) - reference[i]);
    if (!(diff <= max_abs_diff)) max_abs_diff = diff;  // NaN (an unwritten element) sticks
    if (!(diff <= absolute + relative * std::fabs(reference[i]))) ok = false;
  }
  std::fprintf(stderr, "  max |%s - %s| %-7s = %.3g (tolerance %.3g + %.3g |value|)\n",
               library_name(c), baseline_name(c), what, max_abs_diff, absolute, relative);
  return ok;
}

bool all_finite(const std::vector<float>& values) {
  return std::all_of(values.begin(), values.end(),
                     [](float value) { return std::isfinite(value); });
}

// The measurements of libalibi's call and the baseline's.
struct Timings {
  FirstCall library_first, baseline_first;
  int reps;
  std::vector<double> medians;         // libalibi's, then the baseline's where there is one
  std::vector<double> stream_medians;  // the streams timed with them, in their order
};

// One measured call of libalibi and of the baseline (an empty Run where the case has none), then
// `check` (false: the results disagree, and nothing is timed), then rounds of a call of each of
// `streams` (decode: the read-only streams), of libalibi, and where there are streams, of the
// last stream again and of the baseline, so that a ceiling sees the machine the calls saw. The
// last stream must evict the caches (the 1 GiB read-only stream does), so that both calls of a
// round start from memory alike: data, code and sleeping threads. (With the baseline right after
// libalibi, whichever of a paged decode and its contiguous call ran second read 10 to 13%
// faster: bench/RESULTS.md.)
std::optional<Timings> time_calls(const Run& library, const Run& baseline, const std::vector<Run>& streams,
                                  const std::function<bool()>& check, const Options& options) {
  Timings timings{};
  timings.library_first = measured_call(library);
  double round_seconds = timings.library_first.seconds;
  if (baseline) {
    timings.baseline_first = measured_call(baseline);
    round_seconds += timings.baseline_first.seconds;
  }
  if (!check()) return std::nullopt;
  std::vector<Run> runs = streams;
  for (const Run& stream : streams) round_seconds += seconds_of(stream);
  runs.push_back(library);
  const bool evict_between = baseline && !streams.empty();
  if (evict_between) {
    runs.push_back(streams.back());
    round_seconds += seconds_of(streams.back());
  }
  if (baseline) runs.push_back(baseline);
  timings.reps = repetitions(round_seconds, options.reps);
  timings.medians = alternating_median_seconds(runs, timings.reps);
  const auto first_call = timings.medians.begin() + std::ptrdiff_t(streams.size());
  timings.stream_medians.assign(timings.medians.begin(), first_call);
  timings.medians.erase(timings.medians.begin(), first_call);
  if (evict_between) timings.medians.erase(timings.medians.begin() + 1);
  return timings;
}

std::optional<Timings> time_forward(const Case& c, alibi_context_t ctx, Inputs& inputs,
                                    const std::vector<Run>& streams, const Options& options) {
  AlibiForward library(ctx, c, inputs);
  std::vector<float> reference;
  if (c.with_baseline) reference.assign(size_t(c.q_elements()), 0.0f);
  const Run baseline = [&] { unfused_attention(c, inputs, reference.data()); };
  const auto check = [&] {
    return !c.with_baseline ||
           agree(c, "out", library.output(), reference, c.dtype);
  };
  return time_calls([&] { library.run(); }, c.with_baseline ? baseline : Run(), streams, check, options);
}

// A paged case: alibi_attention_forward_paged against alibi_attention_forward on the same keys
// and values, contiguous; a decode also times a plain read of the pools' blocks in table order,
// after a read-only stream as the calls are, so that it too starts from memory.
std::optional<Timings> time_paged(const Case& c, alibi_context_t ctx, Inputs& inputs,
                                  std::vector<Run> streams, const Options& options) {
  AlibiPagedForward paged(ctx, c, inputs);
  AlibiForward contiguous(ctx, c, inputs);
  const auto check = [&] { return agree(c, "out", paged.output(), contiguous.output(), c.dtype); };
  if (!streams.empty()) streams = {streams[0], [&] { paged.read_blocks(); }, streams[0]};
  return time_calls([&] { paged.run(); }, [&] { contiguous.run(); }, streams, check, options);
}

// Backward cases check dq, dk, dv and dslopes against the baseline's, or without a baseline that
// the call wrote every element (poisoned with NaN before it).
std::optional<Timings> time_backward(const Case& c, alibi_context_t ctx, Inputs& inputs,
                                     const Options& options) {
  AlibiBackward library(ctx, c, inputs);
  Gradients reference;
  if (c.with_baseline)
    reference = {std::vector<float>(size_t(c.q_elements())),
                 std::vector<float>(size_t(c.kv_elements())),
                 std::vector<float>(size_t(c.kv_elements())), std::vector<float>(size_t(c.heads))};
  const Run baseline = [&] { unfused_attention_backward(c, inputs, library.forward(), reference); };
  const auto check = [&] {
    const Gradients result = library.gradients();
    if (!c.with_baseline) {
      const bool written = all_finite(result.dq) && all_finite(result.dk) &&
                           all_finite(result.dv) && all_finite(result.dslopes);
      std::fprintf(stderr, "  gradients %s\n",
                   written ? "all written (finite)" : "NOT all written");
      return written;
    }
    const bool dq = agree(c, "dq", result.dq, reference.dq, c.dtype),
               dk = agree(c, "dk", result.dk, reference.dk, c.dtype),
               dv = agree(c, "dv", result.dv, reference.dv, c.dtype),
               dslopes = agree(c, "dslopes", result.dslopes, reference.dslopes, ALIBI_DTYPE_F32);
    return dq && dk && dv && dslopes;
  };
  return time_calls([&] { library.run(); }, c.with_baseline ? baseline : Run(), {}, check, options);
}

// Decode: a row's GB/s as a fraction of a read-only stream's (`what`), timed with the case (stderr).
void print_of_read_stream(const Row& row, const Row& read, const char* what = "read-only stream") {
  std::fprintf(stderr, "  %s: %.2f of the %s (%.1f GB/s)\n", row.implementation.c_str(),
               row.gb_per_s / read.gb_per_s, what, read.gb_per_s);
}

// A paged decode's plain read of its blocks in table order (AlibiPagedForward::read_blocks).
Row read_blocks_row(const Case& c, const std::string& kind, int reps, double seconds,
                    const Row& copy_result) {
  Row row = ceiling_row(c.name, kind, "read_blocks", reps, seconds);
  row.gb_per_s = 2.0 * double(c.kv_elements()) * double(c.element_size()) / seconds * 1e-9;
  row.frac_of_copy = row.gb_per_s / copy_result.gb_per_s;
  return row;
}

// Adds a case's rows as fractions of its ceiling: the copy (decode: with the read-only streams
// as context), else the fastest sgemm (with every sgemm's row).
void add_case_rows(const Case& c, const Row& library_row, const std::optional<Row>& baseline_row,
                   Ceilings& ceilings, const CeilingSeconds& seconds, Report& report) {
  const std::string& kind = library_row.kind;
  if (c.kind == Kind::decode) {
    const Row copy = copy_row(c.name, kind, ceilings.copy, int(seconds.copy.size()), median(seconds.copy));
    add_case_row(library_row, copy, report);
    if (baseline_row) add_case_row(*baseline_row, copy, report);
    report.add(copy);
    const Row read =
        read_row(c.name, kind, ceilings.copy, seconds.stream_reps, seconds.stream_medians.back(), copy);
    report.add(read);
    print_of_read_stream(library_row, read);
    if (baseline_row) print_of_read_stream(*baseline_row, read);
    if (c.paged()) {
      const Row blocks = read_blocks_row(c, kind, seconds.stream_reps, seconds.stream_medians[1], copy);
      report.add(blocks);
      print_of_read_stream(library_row, blocks, "plain read of its blocks");
    }
    return;
  }
  std::vector<Row> gemm_rows;
  for (size_t i = 0; i < ceilings.sgemms.size(); ++i)
    gemm_rows.push_back(gemm_row(c.name, kind, *ceilings.sgemms[i], seconds.sgemms[i]));
  const Row& ceiling = best_gemm(gemm_rows);
  std::fprintf(stderr, "  ceiling   %s, %.1f GFLOP/s\n", ceiling.implementation.c_str(), ceiling.gflop_per_s);
  add_case_row(library_row, ceiling, report);
  if (baseline_row) add_case_row(*baseline_row, ceiling, report);
  for (const Row& row : gemm_rows) report.add(row);
}

// Measures libalibi and the unfused baseline where the case has it (a paged case: the paged call
// and the contiguous one), their calls alternating, and the case's ceilings: every sgemm (the
// fastest is the case's GEMM ceiling) timed kCeilingReps times before and after them, or for
// decode the copy (so timed) and the read-only streams (in their rounds); adds their rows. False
// when the two disagree.
bool run_case(const Case& c, alibi_context_t ctx, Ceilings& ceilings, const Options& options,
              Report& report) {
  CeilingSeconds ceiling_seconds;
  time_ceilings(c, ceilings, ceiling_seconds);
  Inputs inputs = make_inputs(c);
  std::vector<Run> streams;
  if (c.kind == Kind::decode) streams.push_back([&] { ceilings.copy.read(); });
  const std::optional<Timings> timings = c.backward ? time_backward(c, ctx, inputs, options)
                                         : c.paged() ? time_paged(c, ctx, inputs, streams, options)
                                                     : time_forward(c, ctx, inputs, streams, options);
  if (!timings) {
    std::fprintf(stderr, "alibi-bench: %s: %s and %s disagree\n", c.name.c_str(),
                 library_name(c), baseline_name(c));
    return false;
  }
  Row library_row = case_row(c, library_name(c), timings->reps, timings->medians[0]);
  library_row.peak_extra_mib = timings->library_first.peak_extra_mib;
  if (c.backward) library_row.memory_bound_mib = backward_memory_bound_mib(c, options.threads);
  std::optional<Row> baseline_row;
  if (c.with_baseline) {
    baseline_row = case_row(c, baseline_name(c), timings->reps, timings->medians[1]);
    baseline_row->peak_extra_mib = timings->baseline_first.peak_extra_mib;
    if (!c.paged())
      library_row.speedup_vs_unfused = baseline_row->median_seconds / library_row.median_seconds;
  }
  time_ceilings(c, ceilings, ceiling_seconds);
  ceiling_seconds.stream_reps = timings->reps;
  ceiling_seconds.stream_medians = timings->stream_medians;
  add_case_rows(c, library_row, baseline_row, ceilings, ceiling_seconds, report);
  if (c.paged())
    std::fprintf(stderr, "  paged / contiguous: %.3f (of the contiguous call's speed)\n",
                 baseline_row->median_seconds / library_row.median_seconds);
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
  Ceilings ceilings(options.threads);
  report_ceilings(ceilings, options, report);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::fprintf(stderr, "[%zu/%zu] %s: %.3g GFLOP%s\n", i + 1, cases.size(), c.name.c_str(),
                 c.counted_flops() * 1e-9, c.with_baseline ? "" : ", libalibi only");
    if (!run_case(c, ctx.get(), ceilings, options, report)) return 1;
  }
  if (!options.plot.empty()) report.plot(options.plot);
  return 0;
}

}  // namespace

}  // namespace bench

int main(int argc, char** argv) {
  if (const std::optional<int> status = bench::serve_as_openblas_worker()) return *status;
  // libgomp reads OMP_WAIT_POLICY as it loads. Idle OpenMP threads of the baselines would spin
  // for milliseconds into libalibi's next call, so run again with them sleeping.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
  }
  return bench::run(bench::parse_options(argc, argv));
}
