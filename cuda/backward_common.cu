// What both backward paths share: Di = dout . out per row before a path runs, the scaled store
// of a packed f32 gradient, and dslopes from the paths' per-span parts after it.
#include "cuda/cuda_common.cuh"

namespace alibi::cuda {

namespace {

constexpr int kThreads = 256;

struct RowDotParams {
  DeviceTensor out, dout;
  float* row_dot;
  int64_t total_q, heads, dim;
};

// One thread per (row, head), heads fastest so that a warp reads neighbouring rows of memory.
// The sum runs over d in order in double, as the CPU's load_piece does: the same f32 Di.
__global__ void row_dot_kernel(const __grid_constant__ RowDotParams p) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < p.total_q * p.heads;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.heads, head = i % p.heads;
    const int64_t dout_row = p.dout.offset(row, head, 0), out_row = p.out.offset(row, head, 0);
    double sum = 0.0;
    for (int64_t d = 0; d < p.dim; ++d)
      sum += double(p.dout.load(dout_row + d)) * p.out.load(out_row + d);
    p.row_dot[head * p.total_q + row] = float(sum);
  }
}

struct StoreParams {
  const float* packed;
  DeviceTensor gradient;
  float scale;
  int64_t tokens, heads, dim;
};

__global__ void store_gradient_kernel(const __grid_constant__ StoreParams p) {
  const int64_t n = p.tokens * p.heads * p.dim;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t token = i / (p.heads * p.dim), head = i / p.dim % p.heads, d = i % p.dim;
    p.gradient.store(p.gradient.offset(token, head, d), p.scale * p.packed[i]);
  }
}

struct SlopeGradientParams {
  MaskView mask;  // the device copy
  const double* span_slopes;
  DeviceTensor dslopes;
  bool per_sequence;
  int64_t heads, groups;
};

__device__ int64_t slope_offset(const SlopeGradientParams& p, int64_t group, int64_t head) {
  return p.per_sequence ? p.dslopes.offset(group, head, 0) : p.dslopes.offset(head, 0, 0);
}

// One thread per head. Every group gets 0 first (a sequence without spans keeps it); then the
// spans are summed in order. With per-sequence slopes a group's spans are consecutive (a row
// belongs to one sequence, and tiles follow the rows), so each group's total is stored once,
// after its last span: the CPU's sum, in the CPU's order.
__global__ void slope_gradient_kernel(const __grid_constant__ SlopeGradientParams p) {
  for (int64_t head = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; head < p.heads;
       head += int64_t(gridDim.x) * blockDim.x) {
    for (int64_t group = 0; group < p.groups; ++group)
      p.dslopes.store(slope_offset(p, group, head), 0.0f);
    const double* slots = p.span_slopes + head * p.mask.num_spans;
    double total = 0.0;
    for (int64_t span = 0; span < p.mask.num_spans; ++span) {
      const int64_t group = p.per_sequence ? p.mask.slices[p.mask.spans[span].slice].sequence : 0;
      total += slots[span];
      const bool last_of_group =
          span + 1 == p.mask.num_spans ||
          (p.per_sequence && p.mask.slices[p.mask.spans[span + 1].slice].sequence != group);
      if (!last_of_group) continue;
      p.dslopes.store(slope_offset(p, group, head), float(total));
      total = 0.0;
    }
  }
}

}  // namespace

void row_dots(const BackwardArgs& args, float* row_dot, cudaStream_t stream) {
  RowDotParams p{};
  p.out = device_tensor(args.forward.out);
  p.dout = device_tensor(args.dout);
  p.row_dot = row_dot;
  p.total_q = args.forward.q.shape[0];
  p.heads = args.forward.q.shape[1];
  p.dim = args.forward.q.shape[2];
  if (p.total_q * p.heads == 0) return;
  row_dot_kernel<<<grid_blocks(p.total_q * p.heads, kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void store_gradient(const float* packed, const TensorView& gradient, float scale,
                    cudaStream_t stream) {
  StoreParams p{};
  p.packed = packed;
  p.gradient = device_tensor(gradient);
  p.scale = scale;
  p.tokens = gradient.shape[0];
  p.heads = gradient.shape[1];
  p.dim = gradient.shape[2];
  if (gradient.numel() == 0) return;
  store_gradient_kernel<<<grid_blocks(gradient.numel(), kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

void write_slope_gradient(const BackwardArgs& args, const double* span_slopes,
                          cudaStream_t stream) {
  SlopeGradientParams p{};
  p.mask = device_mask_view(args.forward.device_mask);
  p.span_slopes = span_slopes;
  p.dslopes = device_tensor(*args.dslopes);
  p.per_sequence = args.forward.slopes.per_sequence;
  p.heads = args.forward.q.shape[1];
  p.groups = p.per_sequence ? args.forward.mask->num_sequences : 1;
  if (p.heads == 0) return;
  slope_gradient_kernel<<<grid_blocks(p.heads, kThreads), kThreads, 0, stream>>>(p);
  CUDA_CHECK_LAUNCH();
}

}  // namespace alibi::cuda
