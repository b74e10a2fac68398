// PLACEHOLDER (base branch only): helper h3 replaces this file.
#include "cuda/cuda_common.cuh"
namespace alibi::cuda {
std::string fused_backward_unsupported(const BackwardArgs&) { return "placeholder"; }
void fused_backward(const BackwardArgs&, const SlopeTable&, const BackwardWork&, cudaStream_t) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
}  // namespace alibi::cuda
