// alibi-bench's f32 GEMM ceiling: every sgemm this build and machine offer, each timed in the
// same run; the ceiling of a case is the fastest of them around that case.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace bench {

// One sgemm implementation, C = A B with square n x n f32 matrices, timed call by call.
class Sgemm {
 public:
  virtual ~Sgemm() = default;
  // Names the implementation in the table: eigen_sgemm, openblas_<core>_sgemm.
  virtual const std::string& name() const = 0;
  virtual std::vector<double> call_seconds(int reps) = 0;
};

double sgemm_flops(int n);

// Eigen's sgemm; OpenBLAS's where alibi-bench was built with it, with the core OpenBLAS picks;
// and where the CPU has AVX-512 but that core lacks it, OpenBLAS again with
// OPENBLAS_CORETYPE=SkylakeX. Each OpenBLAS runs in a child process of its own (OpenBLAS reads
// the core type as it loads). Says on stderr what it found and what it set.
std::vector<std::unique_ptr<Sgemm>> available_sgemms(int n, int threads);

// In a child process that available_sgemms started: serves its timing requests on stdin and
// stdout and gives the exit status. Elsewhere: nullopt.
std::optional<int> serve_as_openblas_worker();

}  // namespace bench
