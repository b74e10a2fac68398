// Fuzz target: the distributed calls of alibi_dist.h on one rank, over an in-process
// communicator of size 1, against the single-process calls on the global tensors.
//
// Every input builds a self-attention mask (varlen or sliding window with equal query and key
// lengths, or ranges over T tokens, with or without rows shared by several slices; default or
// fuzzed positions), a plan with a fuzzed chunk size (padding tokens), f32/f16/bf16 q/k/v/dout
// of exactly representable values in padded strided buffers, GQA, formula or per-sequence
// slopes. It dispatches them, runs the distributed forward and backward (dq, dk, dv, dslopes),
// undispatches out and the gradients and compares with alibi_attention_forward / backward: lse
// -inf exactly where the single call has it, padding rows out 0 and lse -inf, every other value
// within 1e-3 of its array's magnitude plus its dtype's rounding (a key seen or missed, a wrong
// position or a lost partial moves values by far more), every output element written, the
// same bits from a second forward. Now and then one argument is made invalid instead: the call
// must fail with the documented status and write nothing.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "alibi/alibi_dist.h"
#include "attention_inputs.h"
#include "fuzz_common.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;
using fuzz::Operand;

enum Corruption {
  kNone,
  kPlanCpSize,
  kQTokens,
  kAttnBias,
  kNullComm,
  kDispatchRank,
  kNullLse,
  kCorruptions
};

// The communicator of one rank: every collective copies its input to its output.
int self_alltoallv(void*, const void* send, const int64_t* send_counts, const int64_t* send_displs,
                   void* recv, const int64_t* recv_counts, const int64_t* recv_displs) {
  if (send_counts[0] != recv_counts[0]) return 1;
  if (recv_counts[0] > 0)
    std::memcpy(static_cast<char*>(recv) + recv_displs[0],
                static_cast<const char*>(send) + send_displs[0], size_t(recv_counts[0]));
  return 0;
}
int self_allgather(void*, const void* send, void* recv, int64_t bytes) {
  if (bytes > 0) std::memcpy(recv, send, size_t(bytes));
  return 0;
}

alibi_comm_t self_comm() {
  static alibi_comm_t comm = nullptr;
  if (!comm) {
    alibi_comm_ops ops{};
    ops.struct_size = sizeof ops;
    ops.alltoallv = self_alltoallv;
    ops.allgather = self_allgather;
    fuzz::check_status_ok(alibi_comm_create(&ops, nullptr, 0, 1, &comm), "alibi_comm_create");
  }
  return comm;
}

struct PlanHandle {
  alibi_dist_plan_t p = nullptr;
  ~PlanHandle() { alibi_dist_plan_destroy(p); }
};

// A self-attention mask: total_q == total_k.
struct SelfMask {
  fuzz::MaskHandle handle;
  int64_t tokens = 0;
  int sequences = 0;         // > 0: per-sequence slopes may apply
  int64_t max_distance = 0;  // bounds every |qpos - kpos|
};

void make_self_mask(Bytes& in, alibi_context_t ctx, SelfMask& m) {
  const uint8_t kind = in.u8() % 3;
  if (kind < 2) {
    const int batch = int(in.in(0, 3));
    std::vector<int32_t> cu{0};
    for (int b = 0; b < batch; ++b)
      cu.push_back(std::min<int32_t>(cu.back() + fuzz::length(in, 40), 64));
    if (kind == 0)
      fuzz::check_status_ok(
          alibi_mask_create_varlen(ctx, batch, cu.data(), cu.data(), in.flag(), &m.handle.m),
          "alibi_mask_create_varlen");
    else
      fuzz::check_status_ok(
          alibi_mask_create_sliding_window(ctx, batch, cu.data(), cu.data(), int(in.in(-1, 12)),
                                           int(in.in(-1, 12)), &m.handle.m),
          "alibi_mask_create_sliding_window");
    m.tokens = cu.back();
    m.sequences = batch;
  } else {
    m.tokens = fuzz::length(in, 64);
    const std::vector<ref::Slice> slices = fuzz::range_slices(in, m.tokens, m.tokens, in.flag());
    std::vector<int32_t> q, k, types;
    for (const ref::Slice& s : slices) {
      q.insert(q.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
      k.insert(k.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
      types.push_back(s.type);
    }
    fuzz::check_status_ok(alibi_mask_create_ranges(ctx, int(types.size()), q.data(), k.data(),
                                                   types.data(), m.tokens, m.tokens, &m.handle.m),
                          "alibi_mask_create_ranges");
  }
  m.max_distance = m.tokens;
  if (in.u8() % 4 == 1) {  // positions far apart (ALiBi distances up to 70,000)
    m.max_distance = 70000;
    std::vector<int32_t> q(size_t(m.tokens) + 1), k(size_t(m.tokens) + 1);
    for (int32_t& x : q) x = int32_t(in.in(0, 70000));
    for (int32_t& x : k) x = int32_t(in.in(0, 70000));
    fuzz::check_status_ok(alibi_mask_set_positions(m.handle.m, q.data(), k.data()),
                          "alibi_mask_set_positions");
  }
}

struct Shapes {
  int64_t tokens, hq, hkv, dim;
  alibi_dtype dtype;
};

std::unique_ptr<Operand> operand(Bytes& in, alibi_context_t ctx, alibi_dtype dtype, int64_t tokens,
                                 int64_t heads, int64_t dim, bool fill) {
  auto op = std::make_unique<Operand>();
  op->layout(dtype, tokens, heads, dim, in.in(0, 2), in.in(0, 3));
  if (fill) {
    op->fill(in, 0);
    op->poisoned = op->storage;
  }
  op->wrap(ctx);
  return op;
}

// A poisoned packed f32 tensor.
struct F32 {
  std::vector<float> values;
  fuzz::TensorHandle tensor;
  F32(alibi_context_t ctx, std::vector<int64_t> shape) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    values.assign(size_t(std::max<int64_t>(n, 1)), fuzz::kPoison);
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, int(shape.size()), shape.data(),
                                            nullptr, values.data(), &tensor.t),
                          "alibi_tensor_wrap");
  }
};

double magnitude(const std::vector<double>& values) {
  double m = 0.0;
  for (double x : values)
    if (std::isfinite(x)) m = std::max(m, std::fabs(x));
  return m;
}

// floor: a bound of the terms a value sums (from the inputs' magnitudes), so that a value that
// cancels to near 0 is judged against what it summed, not against itself.
void expect_close(const char* what, const std::vector<double>& got, const std::vector<double>& want,
                  alibi_dtype dtype, double floor) {
  const double bound = 1e-3 * std::max(magnitude(want), floor) + 1e-30;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      FUZZ_REQUIRE(got[i] == want[i], "%s[%zu] = %g, single process %g", what, i, got[i], want[i]);
      continue;
    }
    const double rounding = 2 * fuzz::rounding(dtype) * std::fabs(want[i]) + std::ldexp(1.0, -24);
    FUZZ_REQUIRE(std::fabs(got[i] - want[i]) <= bound + rounding,
                 "%s[%zu] = %.9g, single process %.9g", what, i, got[i], want[i]);
  }
}

std::vector<double> as_doubles(const std::vector<float>& v, size_t n) {
  return {v.begin(), v.begin() + ptrdiff_t(n)};
}

// A call that must fail: status as expected, nothing written to `outputs`.
void expect_failure(alibi_status got, alibi_status want, const char* function,
                    const std::vector<const Operand*>& outputs) {
  Expect expect;
  expect.add(want);
  expect.check(got, function);
  for (const Operand* op : outputs)
    FUZZ_REQUIRE(op->storage == op->poisoned, "%s failed but wrote an output", function);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  alibi_context_t ctx = fuzz::cpu_context(1);
  const Corruption corruption = in.u8() < 40 ? Corruption(in.in(1, kCorruptions - 1)) : kNone;
  SelfMask mask;
  make_self_mask(in, ctx, mask);
  const int64_t hkv = in.in(1, 2), hq = hkv * in.in(1, 3), dim = in.in(1, 16), t = mask.tokens;
  const alibi_dtype dtype = fuzz::float_dtype(in);
  const int chunk = int(in.in(1, 9));

  alibi_attention_params params;
  alibi_attention_params_init(&params);
  static const float max_biases[] = {8.0f, 0.0f, 1.0f, 16.0f};
  params.max_bias = max_biases[in.u8() % 4];
  std::vector<float> slopes;
  if (mask.sequences > 0 && in.flag()) {
    for (int64_t i = 0; i < mask.sequences * hq; ++i) slopes.push_back(float(in.in(0, 64)) / 64.0f);
    params.slopes = slopes.data();
    params.slopes_per_batch = 1;
  }
  const std::vector<int64_t> dslopes_shape =
      params.slopes_per_batch ? std::vector<int64_t>{mask.sequences, hq} : std::vector<int64_t>{hq};

  PlanHandle plan;
  fuzz::check_status_ok(alibi_dist_plan_create(mask.handle.m, 1, chunk, &plan.p),
                        "alibi_dist_plan_create");
  int64_t l = 0;
  fuzz::check_status_ok(alibi_dist_plan_get_num_local_tokens(plan.p, &l),
                        "alibi_dist_plan_get_num_local_tokens");
  std::vector<int32_t> chunks(size_t(l / chunk) + 1);  // never empty: data() is not NULL
  fuzz::check_status_ok(alibi_dist_plan_get_chunks(plan.p, 0, chunks.data()),
                        "alibi_dist_plan_get_chunks");

  // Global inputs, dispatched into poisoned local tensors.
  auto gq = operand(in, ctx, dtype, t, hq, dim, true),
       gk = operand(in, ctx, dtype, t, hkv, dim, true),
       gv = operand(in, ctx, dtype, t, hkv, dim, true),
       gdout = operand(in, ctx, dtype, t, hq, dim, true);
  auto lq = operand(in, ctx, dtype, l, hq, dim, false),
       lk = operand(in, ctx, dtype, l, hkv, dim, false),
       lv = operand(in, ctx, dtype, l, hkv, dim, false),
       ldout = operand(in, ctx, dtype, l, hq, dim, false);
  alibi_comm_t comm = self_comm();
  if (corruption == kDispatchRank) {
    expect_failure(alibi_dist_dispatch(ctx, plan.p, in.flag() ? 1 : -1, gq->tensor.t, lq->tensor.t),
                   ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_dispatch", {lq.get()});
    return 0;
  }
  const std::pair<Operand*, Operand*> pairs[] = {
      {gq.get(), lq.get()}, {gk.get(), lk.get()}, {gv.get(), lv.get()}, {gdout.get(), ldout.get()}};
  for (const auto& [global, local] : pairs)
    fuzz::check_status_ok(alibi_dist_dispatch(ctx, plan.p, 0, global->tensor.t, local->tensor.t),
                          "alibi_dist_dispatch");

  auto out = operand(in, ctx, dtype, l, hq, dim, false);
  F32 lse(ctx, {hq, l});
  if (corruption == kPlanCpSize || corruption == kQTokens || corruption == kAttnBias ||
      corruption == kNullComm) {
    PlanHandle two;
    fuzz::check_status_ok(alibi_dist_plan_create(mask.handle.m, 2, chunk, &two.p),
                          "alibi_dist_plan_create");
    auto longer = operand(in, ctx, dtype, l + 1, hq, dim, true);
    F32 bias_values(ctx, {1, l, l});
    if (corruption == kAttnBias) params.attn_bias = bias_values.tensor.t;
    const alibi_status status = alibi_dist_attention_forward(
        ctx, corruption == kNullComm ? nullptr : comm, corruption == kPlanCpSize ? two.p : plan.p,
        corruption == kQTokens ? longer->tensor.t : lq->tensor.t, lk->tensor.t, lv->tensor.t,
        &params, out->tensor.t, lse.tensor.t);
    const alibi_status want = corruption == kPlanCpSize ? ALIBI_STATUS_INVALID_ARGUMENT
                              : corruption == kQTokens  ? ALIBI_STATUS_SHAPE_MISMATCH
                              : corruption == kAttnBias ? ALIBI_STATUS_UNSUPPORTED
                                                        : ALIBI_STATUS_NULL_POINTER;
    expect_failure(status, want, "alibi_dist_attention_forward", {out.get()});
    FUZZ_REQUIRE(std::all_of(lse.values.begin(), lse.values.end(),
                             [](float x) { return x == fuzz::kPoison; }),
                 "alibi_dist_attention_forward failed but wrote lse");
    return 0;
  }
  fuzz::check_status_ok(
      alibi_dist_attention_forward(ctx, comm, plan.p, lq->tensor.t, lk->tensor.t, lv->tensor.t,
                                   &params, out->tensor.t, lse.tensor.t),
      "alibi_dist_attention_forward");
  auto again = operand(in, ctx, dtype, l, hq, dim, false);
  fuzz::check_status_ok(
      alibi_dist_attention_forward(ctx, comm, plan.p, lq->tensor.t, lk->tensor.t, lv->tensor.t,
                                   &params, again->tensor.t, nullptr),
      "alibi_dist_attention_forward");
  FUZZ_REQUIRE(again->values() == out->values(), "a second forward gave other bits");

  auto dq = operand(in, ctx, dtype, l, hq, dim, false),
       dk = operand(in, ctx, dtype, l, hkv, dim, false),
       dv = operand(in, ctx, dtype, l, hkv, dim, false);
  F32 dslopes(ctx, dslopes_shape);
  if (corruption == kNullLse) {
    expect_failure(
        alibi_dist_attention_backward(ctx, comm, plan.p, lq->tensor.t, lk->tensor.t, lv->tensor.t,
                                      &params, out->tensor.t, nullptr, ldout->tensor.t,
                                      dq->tensor.t, dk->tensor.t, dv->tensor.t, dslopes.tensor.t),
        ALIBI_STATUS_NULL_POINTER, "alibi_dist_attention_backward", {dq.get(), dk.get(), dv.get()});
    return 0;
  }
  fuzz::check_status_ok(
      alibi_dist_attention_backward(ctx, comm, plan.p, lq->tensor.t, lk->tensor.t, lv->tensor.t,
                                    &params, out->tensor.t, lse.tensor.t, ldout->tensor.t,
                                    dq->tensor.t, dk->tensor.t, dv->tensor.t, dslopes.tensor.t),
      "alibi_dist_attention_backward");

  // Padding rows: out 0, lse -inf.
  for (int64_t i = 0; i < l; ++i) {
    if (int64_t(chunks[size_t(i / chunk)]) * chunk + i % chunk < t) continue;
    for (int64_t h = 0; h < hq; ++h) {
      FUZZ_REQUIRE(lse.values[size_t(h * l + i)] == -INFINITY, "padding row %lld has lse %g",
                   (long long)i, lse.values[size_t(h * l + i)]);
      for (int64_t d = 0; d < dim; ++d)
        FUZZ_REQUIRE(out->get(i, h, d) == 0.0f, "padding row %lld has out %g", (long long)i,
                     out->get(i, h, d));
    }
  }

  // The single-process calls on the global tensors.
  auto sout = operand(in, ctx, dtype, t, hq, dim, false),
       sdq = operand(in, ctx, dtype, t, hq, dim, false),
       sdk = operand(in, ctx, dtype, t, hkv, dim, false),
       sdv = operand(in, ctx, dtype, t, hkv, dim, false);
  F32 slse(ctx, {hq, t}), sdslopes(ctx, dslopes_shape);
  fuzz::check_status_ok(
      alibi_attention_forward(ctx, gq->tensor.t, gk->tensor.t, gv->tensor.t, mask.handle.m, &params,
                              sout->tensor.t, slse.tensor.t),
      "alibi_attention_forward");
  fuzz::check_status_ok(
      alibi_attention_backward(ctx, gq->tensor.t, gk->tensor.t, gv->tensor.t, mask.handle.m,
                               &params, sout->tensor.t, slse.tensor.t, gdout->tensor.t,
                               sdq->tensor.t, sdk->tensor.t, sdv->tensor.t, sdslopes.tensor.t),
      "alibi_attention_backward");

  // Bounds of what each result sums: P sums to 1 per row, |dP| and |Di| <= D |dout| |v|, so
  // |dS| sums to at most 2 D |dout| |v| per row (scale 1/sqrt(D), the default).
  const double a = magnitude(gq->values()), b = magnitude(gk->values()),
               v = magnitude(gv->values()), g = magnitude(gdout->values()),
               scale = 1.0 / std::sqrt(double(dim));
  const double ds = 2.0 * double(dim) * g * v;
  const double floors[] = {v, scale * ds * b, scale * ds * a * double(t), g * double(t)};

  // Undispatched into poisoned globals: every element written, close to the single process.
  const std::pair<Operand*, Operand*> results[] = {
      {out.get(), sout.get()}, {dq.get(), sdq.get()}, {dk.get(), sdk.get()}, {dv.get(), sdv.get()}};
  const char* const names[] = {"out", "dq", "dk", "dv"};
  for (size_t r = 0; r < 4; ++r) {
    const Operand& single = *results[r].second;
    auto global = operand(in, ctx, dtype, t, single.shape[1], dim, false);
    fuzz::check_status_ok(
        alibi_dist_undispatch(ctx, comm, plan.p, results[r].first->tensor.t, global->tensor.t),
        "alibi_dist_undispatch");
    const std::vector<double> got = global->values();
    const double poison = dtype == ALIBI_DTYPE_F32 ? fuzz::kPoison : 1024.0;
    // 1024 is also a value a gradient may take in f16/bf16: only f32's poison is told apart.
    if (dtype == ALIBI_DTYPE_F32)
      FUZZ_REQUIRE(std::none_of(got.begin(), got.end(), [&](double x) { return x == poison; }),
                   "%s: an element was not written", names[r]);
    expect_close(names[r], got, single.values(), dtype, floors[r]);
  }
  std::vector<double> lse_got;
  for (int64_t h = 0; h < hq; ++h)
    for (int64_t i = 0; i < t; ++i) {
      const int64_t c = i / chunk;  // one rank: chunk c is local chunk c
      lse_got.push_back(lse.values[size_t(h * l + c * chunk + i % chunk)]);
    }
  expect_close("lse", lse_got, as_doubles(slse.values, size_t(hq * t)), ALIBI_DTYPE_F32, 1.0);
  const size_t slope_count = sdslopes.values.size();
  expect_close("dslopes", as_doubles(dslopes.values, slope_count),
               as_doubles(sdslopes.values, slope_count), ALIBI_DTYPE_F32,
               ds * double(t) * double(mask.max_distance));
  return 0;
}
