// alibi-gpu-bench: libalibi's two CUDA paths (the fused kernel and the cuBLAS path) on bf16
// prefill, varlen and decode cases, against a device-to-device copy. One CSV row per (case,
// implementation) on stdout, progress on stderr. Run with --help for the options.
//
// The path is chosen per call by ALIBI_CUDA_PATH, which the CUDA backend reads on every call
// (cuda/cuda_backend.cu, choose_path), so setting it before a batch of calls is enough.
#include <alibi/alibi.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "common/command_line.h"
#include "gpu_cases.h"
#include "gpu_device.h"

namespace gpubench {

namespace {

constexpr int kExitSkip = 77;  // the automake / ctest convention for "skipped"
constexpr int kWarmupCalls = 2;
constexpr double kSecondsPerImplementation = 0.25;  // of timed calls, when --reps is not given
constexpr int kMinReps = 3, kMaxReps = 200;
constexpr size_t kCopyBytes = size_t(1) << 30;  // far beyond the 50 MiB L2 of an H100
constexpr int kCopyReps = 20;
// Fused and cuBLAS outputs may differ by this much times max(1, |value|): a few bf16 output
// roundings (2^-8 relative each) and f32 summation orders.
constexpr double kTolerance = 2e-2;

const char* const kUsage =
    "usage: alibi-gpu-bench [--quick] [--case SUBSTRING]... [--reps N] [--list] [--spec]\n"
    "  --quick       a short subset of the cases\n"
    "  --case S      only cases whose name contains S (repeatable: any of them)\n"
    "  --reps N      timed calls per implementation (default: enough for 0.25 s, 3 to 200)\n"
    "  --list        print the selected case names and exit (needs no GPU)\n"
    "  --spec        print the selected cases as JSON for torch_peers.py and exit (no GPU)\n"
    "Exit status: 0, 1 when a case failed or the paths disagreed, 2 for bad arguments,\n"
    "77 when there is no CUDA device (or no CUDA backend).\n";

const char* const kCsvHeader =
    "case,kind,dtype,H,Hkv,D,N_or_Tk,mask,implementation,reps,median_ms,tflops,gb_per_s,"
    "frac_of_copy,max_abs_diff,note";

struct Options {
  bool list = false, spec = false;
  std::vector<Case> cases;  // those --quick and --case select
  int reps = 0;
};

Options parse_options(int argc, char** argv) {
  Options options;
  bool quick = false;
  std::vector<std::string> filters;
  bench_common::CommandLine args(argc, argv, "alibi-gpu-bench", kUsage);
  while (args.next()) {
    if (args.is("--quick"))
      quick = true;
    else if (args.is("--list"))
      options.list = true;
    else if (args.is("--spec"))
      options.spec = true;
    else if (args.is("--case"))
      filters.push_back(args.value());
    else if (args.is("--reps"))
      options.reps = args.positive_value();
    else
      args.help_or_fail();
  }
  for (const Case& c : all_cases())
    if (bench_common::selected(c.name, c.quick, quick, filters)) options.cases.push_back(c);
  if (options.cases.empty()) args.fail("no case matches");
  return options;
}

// ----------------------------------------------------------------------------- libalibi handles

void alibi_check(alibi_status status, const char* call) {
  if (status == ALIBI_STATUS_SUCCESS) return;
  throw Failure(std::string(call) + ": " + alibi_status_string(status) + ": " +
                    alibi_last_error_message(),
                status == ALIBI_STATUS_OUT_OF_MEMORY);
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

Tensor device_tensor(alibi_context_t ctx, int64_t tokens, int heads, int head_dim) {
  const int64_t shape[3] = {tokens, heads, head_dim};
  alibi_tensor_t tensor = nullptr;
  alibi_check(alibi_tensor_create(ctx, ALIBI_DTYPE_BF16, 3, shape, &tensor), "alibi_tensor_create");
  return Tensor(tensor);
}

void* data_of(alibi_tensor_t t) {
  void* data = nullptr;
  alibi_check(alibi_tensor_get_data(t, &data), "alibi_tensor_get_data");
  return data;
}

// ----------------------------------------------------------------------------- the two paths

enum class Path { fused, cublas };
const Path kPaths[] = {Path::fused, Path::cublas};

const char* path_variable(Path path) { return path == Path::fused ? "fused" : "cublas"; }
const char* implementation_name(Path path) {
  return path == Path::fused ? "libalibi_fused" : "libalibi_cublas";
}

// A case on the device: q, k, v filled with fixed-seed values, its mask, one output per path.
class DeviceCase {
 public:
  DeviceCase(alibi_context_t ctx, const Case& c, cudaStream_t stream)
      : ctx_(ctx),
        q_(device_tensor(ctx, c.total_q(), c.heads, c.head_dim)),
        k_(device_tensor(ctx, c.total_k(), c.kv_heads, c.head_dim)),
        v_(device_tensor(ctx, c.total_k(), c.kv_heads, c.head_dim)),
        out_fused_(device_tensor(ctx, c.total_q(), c.heads, c.head_dim)),
        out_cublas_(device_tensor(ctx, c.total_q(), c.heads, c.head_dim)),
        out_words_(size_t(c.total_q()) * c.heads * c.head_dim) {
    const size_t q_words = out_words_, kv_words = size_t(c.total_k()) * c.kv_heads * c.head_dim;
    fill_uniform_bf16(data_of(q_.get()), q_words, 1, stream);
    fill_uniform_bf16(data_of(k_.get()), kv_words, 2, stream);
    fill_uniform_bf16(data_of(v_.get()), kv_words, 3, stream);
    const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
    alibi_mask_t mask = nullptr;
    alibi_check(alibi_mask_create_varlen(ctx, int(c.lengths_q.size()), cu_q.data(), cu_k.data(),
                                         c.causal ? 1 : 0, &mask),
                "alibi_mask_create_varlen");
    mask_.reset(mask);
  }

  // Enqueues one forward call on the context's stream; the path is ALIBI_CUDA_PATH's.
  void forward(Path path) const {
    alibi_check(alibi_attention_forward(ctx_, q_.get(), k_.get(), v_.get(), mask_.get(), nullptr,
                                        output(path), nullptr),
                "alibi_attention_forward");
  }

  std::vector<float> host_output(Path path) const {
    std::vector<uint16_t> words(out_words_);
    alibi_check(alibi_tensor_copy_to_host(output(path), words.data(), words.size() * 2),
                "alibi_tensor_copy_to_host");
    std::vector<float> values(words.size());
    for (size_t i = 0; i < words.size(); ++i) values[i] = from_bf16(words[i]);
    return values;
  }

 private:
  alibi_tensor_t output(Path path) const {
    return path == Path::fused ? out_fused_.get() : out_cublas_.get();
  }

  alibi_context_t ctx_;
  Tensor q_, k_, v_, out_fused_, out_cublas_;
  size_t out_words_;
  Mask mask_;
};

// ----------------------------------------------------------------------------- the table

struct Row {
  std::string implementation;
  int reps = 0;
  double median_ms = NAN, tflops = NAN, gb_per_s = NAN, frac_of_copy = NAN, max_abs_diff = NAN;
  std::string note;
};

std::string number(double value, const char* format) {
  if (std::isnan(value)) return "";
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

// Notes are free text inside a CSV field: no commas or line breaks.
std::string csv_safe(std::string text) {
  for (char& ch : text)
    if (ch == ',' || ch == '\n' || ch == '\r') ch = ';';
  return text;
}

struct CaseColumns {
  std::string name, kind, heads, kv_heads, head_dim, length, mask;
};

CaseColumns case_columns(const Case& c) {
  return {c.name, kind_name(c.kind), std::to_string(c.heads), std::to_string(c.kv_heads),
          std::to_string(c.head_dim), std::to_string(c.length()), c.causal ? "causal" : "full"};
}

void print_row(const CaseColumns& c, const Row& r) {
  std::printf("%s,%s,bf16,%s,%s,%s,%s,%s,%s,%d,%s,%s,%s,%s,%s,%s\n", c.name.c_str(),
              c.kind.c_str(), c.heads.c_str(), c.kv_heads.c_str(), c.head_dim.c_str(),
              c.length.c_str(), c.mask.c_str(), r.implementation.c_str(), r.reps,
              number(r.median_ms, "%.4f").c_str(), number(r.tflops, "%.2f").c_str(),
              number(r.gb_per_s, "%.1f").c_str(), number(r.frac_of_copy, "%.3f").c_str(),
              number(r.max_abs_diff, "%.3g").c_str(), csv_safe(r.note).c_str());
  std::fflush(stdout);  // rows survive a run cut short
}

void print_copy_row(const CopyCeiling& copy) {
  const std::string name = "copy_d2d_" + std::to_string(copy.bytes >> 20) + "mib";
  Row row;
  row.implementation = "cuda_memcpy_d2d";
  row.reps = copy.reps;
  row.median_ms = copy.median_ms;
  row.gb_per_s = copy.gb_per_s;
  row.frac_of_copy = 1.0;
  row.note = "read + write bytes";
  print_row({name, "ceiling", "", "", "", std::to_string(copy.bytes), ""}, row);
}

// ----------------------------------------------------------------------------- one case

// Max |fused - cuBLAS| over the output, and whether every element is within tolerance.
struct Agreement {
  double max_abs_diff = 0.0;
  bool ok = true;
};

Agreement compare(const std::vector<float>& fused, const std::vector<float>& cublas) {
  Agreement agreement;
  for (size_t i = 0; i < fused.size(); ++i) {
    const double diff = std::fabs(double(fused[i]) - cublas[i]);
    agreement.max_abs_diff = std::max(agreement.max_abs_diff, diff);
    if (!(diff <= kTolerance * std::max(1.0, std::fabs(double(cublas[i]))))) agreement.ok = false;
  }
  return agreement;
}

int repetitions(double ms_per_call, int fixed) {
  if (fixed > 0) return fixed;
  const double wanted = std::ceil(kSecondsPerImplementation * 1e3 / std::max(ms_per_call, 1e-6));
  return int(std::min(std::max(wanted, double(kMinReps)), double(kMaxReps)));
}

Row timed_row(const Case& c, const DeviceCase& data, Path path, cudaStream_t stream,
              double copy_gb_per_s, int fixed_reps) {
  setenv("ALIBI_CUDA_PATH", path_variable(path), 1);
  const auto call = [&] { data.forward(path); };
  const std::vector<double> warmup = back_to_back_ms(stream, call, kWarmupCalls);
  Row row;
  row.implementation = implementation_name(path);
  row.reps = repetitions(warmup.back(), fixed_reps);
  row.median_ms = median(back_to_back_ms(stream, call, row.reps));
  const double seconds = row.median_ms * 1e-3;
  row.tflops = c.flops() / seconds * 1e-12;
  if (c.kind == Kind::decode) {
    row.gb_per_s = c.io_bytes() / seconds * 1e-9;
    row.frac_of_copy = row.gb_per_s / copy_gb_per_s;
  }
  return row;
}

void print_skipped(const CaseColumns& columns, const std::string& why) {
  for (Path path : kPaths) {
    Row row;
    row.implementation = implementation_name(path);
    row.note = why;
    print_row(columns, row);
  }
}

void report_progress(const Row& row) {
  std::fprintf(stderr, "  %-16s %.4f ms (median of %d), %.1f TFLOP/s", row.implementation.c_str(),
               row.median_ms, row.reps, row.tflops);
  if (!std::isnan(row.gb_per_s))
    std::fprintf(stderr, ", %.1f GB/s = %.2f of copy", row.gb_per_s, row.frac_of_copy);
  std::fprintf(stderr, "\n");
}

// Runs both paths once, compares their outputs, then times each. False when the case failed
// (an error, or the paths disagree); a case that does not fit in memory is skipped, not failed.
bool run_case(const Case& c, alibi_context_t ctx, cudaStream_t stream, double copy_gb_per_s,
              const Options& options) {
  const CaseColumns columns = case_columns(c);
  try {
    const DeviceCase data(ctx, c, stream);
    for (Path path : kPaths) {
      setenv("ALIBI_CUDA_PATH", path_variable(path), 1);
      data.forward(path);
    }
    const Agreement agreement =
        compare(data.host_output(Path::fused), data.host_output(Path::cublas));
    std::fprintf(stderr, "  max |fused - cublas| = %.3g (tolerance %.0e x max(1, |value|))%s\n",
                 agreement.max_abs_diff, kTolerance, agreement.ok ? "" : ": MISMATCH");
    std::vector<Row> rows;
    for (Path path : kPaths) {
      rows.push_back(timed_row(c, data, path, stream, copy_gb_per_s, options.reps));
      rows.back().max_abs_diff = agreement.max_abs_diff;
      if (!agreement.ok) rows.back().note = "mismatch: fused and cublas disagree";
      report_progress(rows.back());
    }
    for (const Row& row : rows) print_row(columns, row);
    return agreement.ok;
  } catch (const Failure& failure) {
    const std::string why =
        (failure.out_of_memory ? "skipped: " : "error: ") + std::string(failure.what());
    std::fprintf(stderr, "  %s\n", why.c_str());
    print_skipped(columns, why);
    return failure.out_of_memory;
  }
}

// ----------------------------------------------------------------------------- the run

std::string command_line(int argc, char** argv) {
  std::string text;
  for (int i = 0; i < argc; ++i) text += (i ? " " : "") + std::string(argv[i]);
  return text;
}

// A stream of the benchmark's own as the context's stream; unbound again before it goes.
class BoundStream {
 public:
  explicit BoundStream(alibi_context_t ctx) : ctx_(ctx) {
    alibi_check(alibi_context_set_stream(ctx, stream_.get()), "alibi_context_set_stream");
  }
  ~BoundStream() {
    alibi_context_synchronize(ctx_);
    alibi_context_set_stream(ctx_, nullptr);
  }
  BoundStream(const BoundStream&) = delete;
  BoundStream& operator=(const BoundStream&) = delete;
  cudaStream_t get() const { return stream_.get(); }

 private:
  alibi_context_t ctx_;
  Stream stream_;
};

// The table: header lines, the copy ceiling, then every case. False when a case failed.
bool run_cases(const std::vector<Case>& cases, alibi_context_t ctx, const Options& options,
               const std::string& command) {
  const BoundStream stream(ctx);
  const std::string gpu = device_description(0);
  std::printf("# %s\n# gpu: %s; libalibi %s\n%s\n", command.c_str(), gpu.c_str(),
              alibi_version_string(), kCsvHeader);
  std::fprintf(stderr, "alibi-gpu-bench: %s; libalibi %s; %zu cases\n", gpu.c_str(),
               alibi_version_string(), cases.size());
  const CopyCeiling copy = measure_copy(stream.get(), kCopyBytes, kWarmupCalls, kCopyReps);
  std::fprintf(stderr, "ceiling: device-to-device copy of %zu MiB: %.1f GB/s (read + write)\n",
               copy.bytes >> 20, copy.gb_per_s);
  print_copy_row(copy);
  bool all_ok = true;
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    std::fprintf(stderr, "[%zu/%zu] %s: %.3g TFLOP, %.3g GB of q, k, v and out\n", i + 1,
                 cases.size(), c.name.c_str(), c.flops() * 1e-12, c.io_bytes() * 1e-9);
    all_ok = run_case(c, ctx, stream.get(), copy.gb_per_s, options) && all_ok;
    alibi_check(alibi_context_synchronize(ctx), "alibi_context_synchronize");
  }
  return all_ok;
}

int run(const Options& options, const std::string& command) {
  const std::vector<Case>& cases = options.cases;
  if (options.list) {
    for (const Case& c : cases) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  if (options.spec) {
    std::fputs(cases_json(cases).c_str(), stdout);
    return 0;
  }
  alibi_context_t ctx = nullptr;
  const alibi_status status = alibi_context_create(ALIBI_DEVICE_CUDA, 0, &ctx);
  if (status == ALIBI_STATUS_BACKEND_UNAVAILABLE) {
    std::fprintf(stderr, "alibi-gpu-bench: no CUDA device: %s\n", alibi_last_error_message());
    return kExitSkip;
  }
  try {
    alibi_check(status, "alibi_context_create");
    const Context owned(ctx);
    return run_cases(cases, ctx, options, command) ? 0 : 1;
  } catch (const Failure& failure) {
    std::fprintf(stderr, "alibi-gpu-bench: %s\n", failure.what());
    return 1;
  }
}

}  // namespace

}  // namespace gpubench

int main(int argc, char** argv) {
  return gpubench::run(gpubench::parse_options(argc, argv), gpubench::command_line(argc, argv));
}
