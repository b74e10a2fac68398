// The float64 reference of the forward target and the error bounds of its comparison. Compiled
// without the fuzzer's coverage instrumentation: its loops tell libFuzzer nothing about the
// library and would take most of every run.
#pragma once

#include <vector>

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

}  // namespace fuzz
