// The benchmark's table: one row per (case, implementation), as CSV or markdown on stdout, and
// the optional PNG chart (bench/plot.sh, gnuplot).
#pragma once

#include <cmath>
#include <string>
#include <vector>

namespace bench {

enum class Format { csv, markdown };

// Text fields describe the case (empty where they do not apply); numbers are NaN where they do
// not apply (printed empty).
struct Row {
  std::string case_name, kind, dtype, heads, kv_heads, head_dim, length, mask, implementation;
  int reps = 0;
  double median_seconds = NAN, gflop_per_s = NAN, frac_of_gemm = NAN, speedup_vs_unfused = NAN,
         gb_per_s = NAN, frac_of_copy = NAN, peak_extra_mib = NAN,
         memory_bound_mib = NAN;  // backward: what peak_extra_mib should stay within
};

class Report {
 public:
  explicit Report(Format format);
  void add(const Row& row);  // prints it at once (header first)
  // Writes the rows as CSV to a temporary file and runs plot.sh on it; says on stderr when
  // gnuplot is missing or the plot fails, and then writes nothing.
  void plot(const std::string& png_path) const;

 private:
  Format format_;
  std::vector<Row> rows_;
};

}  // namespace bench
