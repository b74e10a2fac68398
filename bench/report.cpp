#include "report.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#ifndef ALIBI_BENCH_PLOT_SCRIPT
#error "ALIBI_BENCH_PLOT_SCRIPT must name bench/plot.sh"
#endif

namespace bench {

namespace {

const char* const kCsvHeader =
    "case,kind,dtype,H,Hkv,D,N_or_Tk,mask,implementation,reps,median_s,gflop_per_s,frac_of_gemm,"
    "speedup_vs_unfused,gb_per_s,frac_of_copy,peak_extra_mib,memory_bound_mib";
const char* const kMarkdownHeader =
    "| case | implementation | reps | median s | GFLOP/s | of GEMM | vs unfused | GB/s | of copy "
    "| peak extra MiB | bound MiB |\n"
    "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|";

std::string number(double value, const char* format) {
  if (std::isnan(value)) return "";
  char text[64];
  std::snprintf(text, sizeof text, format, value);
  return text;
}

void print_csv(const Row& r, FILE* file) {
  std::fprintf(file, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%d,%s,%s,%s,%s,%s,%s,%s,%s\n", r.case_name.c_str(),
               r.kind.c_str(), r.dtype.c_str(), r.heads.c_str(), r.kv_heads.c_str(),
               r.head_dim.c_str(), r.length.c_str(), r.mask.c_str(), r.implementation.c_str(),
               r.reps, number(r.median_seconds, "%.6g").c_str(),
               number(r.gflop_per_s, "%.2f").c_str(), number(r.frac_of_gemm, "%.3f").c_str(),
               number(r.speedup_vs_unfused, "%.2f").c_str(), number(r.gb_per_s, "%.2f").c_str(),
               number(r.frac_of_copy, "%.3f").c_str(), number(r.peak_extra_mib, "%.1f").c_str(),
               number(r.memory_bound_mib, "%.1f").c_str());
}

void print_markdown(const Row& r, FILE* file) {
  std::fprintf(file, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.case_name.c_str(),
               r.implementation.c_str(), r.reps, number(r.median_seconds, "%.4g").c_str(),
               number(r.gflop_per_s, "%.1f").c_str(), number(r.frac_of_gemm, "%.2f").c_str(),
               number(r.speedup_vs_unfused, "%.2f").c_str(), number(r.gb_per_s, "%.1f").c_str(),
               number(r.frac_of_copy, "%.2f").c_str(), number(r.peak_extra_mib, "%.1f").c_str(),
               number(r.memory_bound_mib, "%.1f").c_str());
}

// A temporary CSV file holding the rows; removed when destroyed.
class TemporaryCsv {
 public:
  explicit TemporaryCsv(const std::vector<Row>& rows) {
    int descriptor = mkstemp(path_);
    FILE* file = descriptor >= 0 ? fdopen(descriptor, "w") : nullptr;
    if (!file) {
      path_[0] = '\0';
      return;
    }
    std::fprintf(file, "%s\n", kCsvHeader);
    for (const Row& row : rows) print_csv(row, file);
    std::fclose(file);
  }
  ~TemporaryCsv() {
    if (path_[0]) unlink(path_);
  }
  TemporaryCsv(const TemporaryCsv&) = delete;
  TemporaryCsv& operator=(const TemporaryCsv&) = delete;
  const char* path() const { return path_[0] ? path_ : nullptr; }

 private:
  char path_[32] = "/tmp/alibi-bench-XXXXXX";
};

std::string quoted(const std::string& text) {
  std::string result = "'";
  for (char ch : text) result += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return result + "'";
}

}  // namespace

Report::Report(Format format) : format_(format) {}

void Report::add(const Row& row) {
  if (rows_.empty()) std::printf("%s\n", format_ == Format::csv ? kCsvHeader : kMarkdownHeader);
  rows_.push_back(row);
  format_ == Format::csv ? print_csv(row, stdout) : print_markdown(row, stdout);
  std::fflush(stdout);
}

void Report::plot(const std::string& png_path) const {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
    std::fprintf(stderr,
                 "alibi-bench: gnuplot not found, no plot written (apt-get install gnuplot-nox)\n");
    return;
  }
  TemporaryCsv csv(rows_);
  if (!csv.path()) {
    std::fprintf(stderr, "alibi-bench: cannot write a temporary CSV for the plot\n");
    return;
  }
  const std::string command =
      "sh " + quoted(ALIBI_BENCH_PLOT_SCRIPT) + " " + quoted(csv.path()) + " " + quoted(png_path);
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "alibi-bench: %s failed, no plot written\n", command.c_str());
    return;
  }
  std::fprintf(stderr, "alibi-bench: plot written to %s\n", png_path.c_str());
}

}  // namespace bench
