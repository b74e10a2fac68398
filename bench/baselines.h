// What libalibi is compared with: the attention a user would write by hand with Eigen, and the
// machine's ceilings (f32 GEMM rate, memory copy bandwidth). Threads: OpenMP (and Eigen's
// OpenMP GEMM), set by the caller with omp_set_num_threads / Eigen::setNbThreads.
#pragma once

#include <Eigen/Core>
#include <cstdint>
#include <vector>

#include "cases.h"

namespace bench {

// Unfused attention, per (sequence, head) in parallel: materialize the ALiBi bias (-inf where
// masked) as an Lq x Lk matrix, S = scale * Q K^T (Eigen GEMM), S += bias, row softmax,
// O = P V (Eigen GEMM). bf16 and f16 inputs are converted to f32 first. out: total_q x heads x
// head_dim f32.
void unfused_attention(const Case& c, const Inputs& inputs, float* out);

// What a forward call gave, as a backward call takes it: out in the case's dtype, lse
// (heads, total_q) f32.
struct ForwardResult {
  std::vector<unsigned char> out;
  std::vector<float> lse;
};

// Gradients in f32: dq (total_q, heads, head_dim), dk and dv (total_k, kv_heads, head_dim),
// dslopes (heads).
struct Gradients {
  std::vector<float> dq, dk, dv, dslopes;
};

// Unfused attention backward, per (sequence, kv head) in parallel, for each of its query heads:
// materialize P = exp(scale Q K^T + bias - lse) (0 where masked) as an Lq x Lk matrix, then
// dV += P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)), dslopes = -sum dS |qpos - kpos|,
// dQ = scale dS K, dK += scale dS^T Q (Eigen GEMMs). bf16 and f16 inputs are converted to f32
// first.
// grads must have the sizes above; every element is overwritten.
void unfused_attention_backward(const Case& c, const Inputs& inputs, const ForwardResult& forward,
                                Gradients& grads);

// C = A B with square f32 matrices: the GEMM ceiling.
class Gemm {
 public:
  explicit Gemm(int n);
  void run();
  double flops() const;

 private:
  using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic>;
  Matrix a_, b_, c_;
};

// memcpy of a buffer far larger than the caches, split over the OpenMP threads: the bandwidth
// ceiling. Counted as STREAM counts "Copy": bytes read + bytes written.
class Copy {
 public:
  explicit Copy(size_t bytes);
  void run();
  double bytes_moved() const;
  // Reads the source once (a sum of its words): what a read-only stream such as decode's
  // reading of k and v reaches, for comparison.
  void read();
  double bytes_read() const;

 private:
  std::vector<unsigned char> source_, target_;
  uint64_t checksum_ = 0;  // keeps the reads
};

}  // namespace bench
