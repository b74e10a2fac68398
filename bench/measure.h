// Timing and peak-memory measurement.
#pragma once

#include <functional>
#include <vector>

namespace bench {

using Run = std::function<void()>;

// Wall-clock seconds of one call.
double seconds_of(const Run& run);

// Repetitions for a measurement: `fixed` when > 0, else enough for >= 1 s in total given the
// time of one call, at least 3.
int repetitions(double seconds_per_call, int fixed);

// Median wall-clock seconds over `reps` calls.
double median_seconds(const Run& run, int reps);

// Wall-clock seconds of each of `reps` calls.
std::vector<double> call_seconds(const Run& run, int reps);

double median(std::vector<double> values);

// Median seconds of each run over `reps` calls each, calling them in turn (0, 1, 0, 1, ...), so
// that a drift of the machine hits all of them alike.
std::vector<double> alternating_median_seconds(const std::vector<Run>& runs, int reps);

// Call first, before any thread starts: puts every thread's allocations in glibc's main arena,
// which malloc_trim empties completely, so that memory freed by an earlier call (even in another
// thread) is neither counted as resident before a measured call nor reused unseen by it.
void prepare_memory_measurement();

// One call, measured: its seconds and the peak resident memory it adds (MiB) beyond what is
// resident before it. Linux: malloc_trim, then reset the peak (write 5 to /proc/self/clear_refs),
// call, and read VmHWM - VmRSS(before) from /proc/self/status. NaN where that is unavailable.
struct FirstCall {
  double seconds;
  double peak_extra_mib;
};
FirstCall measured_call(const Run& run);

}  // namespace bench
