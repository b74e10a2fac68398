// alibi_attention_merge on the GPU: one thread per (token, head) row, the LSE merge of
// core/kernel/attention_math.h as the CPU's (cpu/merge_cpu.cpp) computes it.
#include "core/kernel/attention_math.h"
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int kThreads = 256;

struct MergeParams {
  DeviceTensor out_a, lse_a, out_b, lse_b, out, lse;
  bool has_lse;
  int64_t tokens, heads, dim;
};

__global__ void merge_kernel(const __grid_constant__ MergeParams p) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.tokens * p.heads;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = i / p.heads, h = i % p.heads;
    const float lse_a = p.lse_a.load(p.lse_a.offset(h, t, 0));
    const float lse_b = p.lse_b.load(p.lse_b.offset(h, t, 0));
    const float max = lse_a < lse_b ? lse_b : lse_a;
    // A side of weight 0 (lse -inf) is never read: its out may hold anything.
    const float weight_a = merge_weight(lse_a, max), weight_b = merge_weight(lse_b, max);
    const float sum = weight_a + weight_b, scale = output_scale(sum);
    for (int64_t d = 0; d < p.dim; ++d) {
      float acc = 0.0f;
      if (weight_a != 0.0f) acc += weight_a * p.out_a.load(p.out_a.offset(t, h, d));
      if (weight_b != 0.0f) acc += weight_b * p.out_b.load(p.out_b.offset(t, h, d));
      p.out.store(p.out.offset(t, h, d), finished_output(acc, scale));
    }
    if (p.has_lse) p.lse.store(p.lse.offset(h, t, 0), row_lse(max, sum));
  }
}

}  // namespace

void attention_merge(const MergeArgs& args, cudaStream_t stream) {
  MergeParams p{};
  p.out_a = device_tensor(args.out_a);
  p.lse_a = device_tensor(args.lse_a);
  p.out_b = device_tensor(args.out_b);
  p.lse_b = device_tensor(args.lse_b);
  p.out = device_tensor(args.out);
  p.has_lse = args.lse != nullptr;
  if (p.has_lse) p.lse = device_tensor(*args.lse);
  p.tokens = args.out.shape[0];
  p.heads = args.out.shape[1];
  p.dim = args.out.shape[2];
  if (p.tokens * p.heads == 0) return;
  merge_kernel<<<grid_blocks(p.tokens * p.heads, kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace alibi::cuda
