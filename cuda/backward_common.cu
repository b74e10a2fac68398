// PLACEHOLDER (base branch only): helper h1 replaces this file.
#include "cuda/cuda_common.cuh"
namespace alibi::cuda {
void row_dots(const BackwardArgs&, float*, cudaStream_t) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
void store_gradient(const float*, const TensorView&, float, cudaStream_t) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
void write_slope_gradient(const BackwardArgs&, const double*, cudaStream_t) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
}  // namespace alibi::cuda
