#include "measure.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace bench {

namespace {

constexpr double kSecondsPerMeasurement = 1.0;
constexpr int kMinReps = 3;
constexpr int kMaxReps = 100000;

// A field of /proc/self/status in KiB (VmRSS, VmHWM), or -1.
long status_kib(const char* field) {
  std::ifstream status("/proc/self/status");
  const size_t length = std::strlen(field);
  for (std::string line; std::getline(status, line);)
    if (line.compare(0, length, field) == 0 && line.size() > length && line[length] == ':')
      return std::stol(line.substr(length + 1));
  return -1;
}

bool reset_peak_rss() {
  std::ofstream clear_refs("/proc/self/clear_refs");
  clear_refs << "5";
  clear_refs.close();
  return bool(clear_refs);
}

}  // namespace

void prepare_memory_measurement() { mallopt(M_ARENA_MAX, 1); }

double seconds_of(const Run& run) {
  const auto start = std::chrono::steady_clock::now();
  run();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

int repetitions(double seconds_per_call, int fixed) {
  if (fixed > 0) return fixed;
  const double wanted = std::ceil(kSecondsPerMeasurement / std::max(seconds_per_call, 1e-9));
  return int(std::clamp(wanted, double(kMinReps), double(kMaxReps)));
}

std::vector<double> call_seconds(const Run& run, int reps) {
  std::vector<double> times;
  for (int r = 0; r < reps; ++r) times.push_back(seconds_of(run));
  return times;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 ? values[middle] : 0.5 * (values[middle - 1] + values[middle]);
}

double median_seconds(const Run& run, int reps) { return median(call_seconds(run, reps)); }

std::vector<double> alternating_median_seconds(const std::vector<Run>& runs, int reps) {
  std::vector<std::vector<double>> times(runs.size());
  for (int r = 0; r < reps; ++r)
    for (size_t i = 0; i < runs.size(); ++i) times[i].push_back(seconds_of(runs[i]));
  std::vector<double> medians;
  for (std::vector<double>& t : times) medians.push_back(median(std::move(t)));
  return medians;
}

FirstCall measured_call(const Run& run) {
  malloc_trim(0);  // freed memory of earlier cases must not be reused unseen
  const long before = status_kib("VmRSS");
  const bool reset = before >= 0 && reset_peak_rss();
  const double seconds = seconds_of(run);
  const long peak = reset ? status_kib("VmHWM") : -1;
  const double extra =
      peak >= 0 ? double(peak - before) / 1024.0 : std::numeric_limits<double>::quiet_NaN();
  return {seconds, extra};
}

}  // namespace bench
