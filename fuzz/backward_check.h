// The float64 backward of the backward target and the error bounds of its comparison: SPEC
// section 4 written plainly over tests/reference.h's Problem. Compiled without the fuzzer's
// coverage instrumentation, like reference_check.cpp: its loops tell libFuzzer nothing about the
// library and would take most of every run.
#pragma once

#include <cstdint>
#include <vector>

#include "reference.h"

namespace fuzz {

// What the backward call reads beyond the forward's problem, as the library holds it (the values
// stored in out's and dout's dtype). Its lse is the forward's, within the forward's error.
struct BackwardInputs {
  std::vector<double> out, dout;  // (total_q, heads_q, head_dim)
  // The dslopes element row i of query head h contributes to ([h * total_q + i]; -1: none).
  std::vector<int> slope_slot;
  int slope_slots = 0;
};

// A gradient and, per element, how far an f32 computation of it may be from the float64 value
// (the inputs' f32 score errors carried through, plus any order of f32 accumulation).
struct Gradient {
  std::vector<double> value, bound;
};

struct BackwardResult {
  Gradient dq;       // (total_q, heads_q, head_dim)
  Gradient dk, dv;   // (total_k, heads_kv, head_dim)
  Gradient dslopes;  // (slope_slots)
};

// P = exp(s - lse) (rows whose lse is -inf contribute nothing), dS = P (dP -
// Di), dx = dS (1 - tanh^2(x / softcap)) or dS; dq = scale dx k, dk = scale dx^T q, dv = P^T dout,
// dslopes = -sum dS |qpos - kpos|.
BackwardResult backward_with_bounds(const ref::Problem& p, const BackwardInputs& in);

}  // namespace fuzz
