// ALIBI_HD marks the formulas shared by host and device code (compiled by nvcc for CUDA).
#pragma once

#if defined(__CUDACC__)
#define ALIBI_HD __host__ __device__ inline
#else
#define ALIBI_HD inline
#endif
