// The float64 reference of the forward target and the error bounds of its comparison. Compiled
// without the fuzzer's coverage instrumentation: its loops tell libFuzzer nothing about the
// library and would take most of every run.
#pragma once

#include <functional>
#include <vector>

#include "alibi/alibi.h"
#include "reference.h"

namespace fuzz {

// Per (head, row): the largest absolute error the library's f32 scores may carry (from the dot
// product, the bias, attn_bias and softcap magnitudes) and the largest |v| the row attends to.
struct RowBound {
  double score_error = 0.0;
  double v_max = 0.0;
};

// ref::attention(p), plus bounds[h * total_q + i]. `scale` is the f32 scale the library applies.
ref::Result reference_with_bounds(const ref::Problem& p, std::vector<RowBound>* bounds);

// A forward call's results as the library wrote them: out(i, h, d) and, unless empty, lse(h, i).
struct ForwardResults {
  std::function<float(int64_t, int, int)> out;
  std::function<float(int, int64_t)> lse;
};

// Holds got against ref::attention(p) (FUZZ_REQUIRE): an absolute error E in a row's scores
// moves out by at most 2 max|v| E and lse by E; out of dtype is rounded once more; a row that
// sees nothing is exactly 0 with lse -inf. `what` ends the report (e.g. the thread count).
void check_forward_results(const ref::Problem& p, const ForwardResults& got, alibi_dtype dtype,
                           const char* what);

}  // namespace fuzz
