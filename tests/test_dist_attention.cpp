// alibi_dist.h's dispatch, undispatch and distributed attention, cp_size ranks as threads of this
// process (dist_threads.h), each with its own CPU context. Every rank dispatches the global
// tensors, runs the distributed forward and backward and undispatches the results, which must
// equal the single-process alibi_attention_forward / backward on the global tensors (themselves
// tested against the float64 reference in test_attention.cpp and test_backward.cpp) within f32
// rounding, bitwise run to run and across ranks. Outputs are poisoned before every call.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "alibi/alibi_dist.h"
#include "dist_threads.h"
#include "error_check.h"
#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct PlanDeleter {
  void operator()(alibi_dist_plan_s* p) const { alibi_dist_plan_destroy(p); }
};
struct CommDeleter {
  void operator()(alibi_comm_s* c) const { alibi_comm_destroy(c); }
};
using Plan = std::unique_ptr<alibi_dist_plan_s, PlanDeleter>;
using Comm = std::unique_ptr<alibi_comm_s, CommDeleter>;

// ------------------------------------------------------------------------------------- masks

struct MaskSpec {
  std::string name;
  std::function<Mask(alibi_context_t)> make;
  int num_sequences = 0;  // > 0: per-sequence slopes, one row of slopes per sequence
};

Mask varlen(alibi_context_t ctx, const std::vector<int32_t>& lengths, bool causal) {
  std::vector<int32_t> cu{0};
  for (int32_t n : lengths) cu.push_back(cu.back() + n);
  alibi_mask_t mask = nullptr;
  SUCCEEDED(
      alibi_mask_create_varlen(ctx, int(lengths.size()), cu.data(), cu.data(), causal, &mask));
  return Mask(mask);
}

Mask ranges(alibi_context_t ctx, const std::vector<int32_t>& q, const std::vector<int32_t>& k,
            const std::vector<int32_t>& types, int64_t total) {
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_ranges(ctx, int(types.size()), q.data(), k.data(), types.data(),
                                     total, total, &mask));
  return Mask(mask);
}

Mask sliding_window(alibi_context_t ctx, const std::vector<int32_t>& lengths, int left, int right) {
  std::vector<int32_t> cu{0};
  for (int32_t n : lengths) cu.push_back(cu.back() + n);
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_sliding_window(ctx, int(lengths.size()), cu.data(), cu.data(), left,
                                             right, &mask));
  return Mask(mask);
}

// MagiAttention's distributed test masks (MAGI-DISPATCH.md), every range divided by 64.
const std::vector<MaskSpec>& mask_specs() {
  static const std::vector<MaskSpec> specs = {
      {"varlen_causal_odd_and_empty",
       [](alibi_context_t c) {
         return varlen(c, {37, 0, 61, 5, 90}, true);
       }},
      {"varlen_block_causal_q_overlap",
       [](alibi_context_t c) {
         return ranges(c, {0, 128, 32, 128, 64, 128, 96, 128, 128, 192, 160, 192},
                       {0, 32, 32, 64, 64, 96, 96, 128, 128, 160, 160, 192}, {0, 0, 0, 0, 0, 0},
                       192);
       }},
      {"bi_causal_q_overlap",
       [](alibi_context_t c) {
         return ranges(c, {0, 32, 32, 64, 64, 96, 96, 128, 128, 160, 160, 192, 15, 62, 156, 187},
                       {0, 48, 0, 64, 0, 96, 96, 192, 128, 192, 144, 192, 125, 187, 0, 78},
                       {3, 3, 3, 3, 3, 3, 3, 3}, 192);
       }},
      {"continuous_multi_masks_q_overlap",
       [](alibi_context_t c) {
         return ranges(c, {0,  32,  0,  32,  0,   32,  0,   32,  32,  64,  48,  80,
                           80, 112, 96, 128, 128, 160, 128, 160, 128, 160, 128, 160},
                       {0, 32, 32, 64, 64, 96, 96, 160, 0,  32, 32, 64,
                        0, 32, 32, 64, 0,  32, 32, 64,  64, 96, 96, 160},
                       {2, 0, 1, 3, 2, 1, 2, 1, 2, 0, 1, 3}, 160);
       }},
      {"sliding_window",
       [](alibi_context_t c) {
         return sliding_window(c, {50, 77}, 9, 4);
       }},
      {"varlen_full_sequence_slopes",
       [](alibi_context_t c) {
         return varlen(c, {20, 33, 47}, false);
       },
       3},
  };
  return specs;
}

// --------------------------------------------------------------------------------- one case

struct Case {
  size_t mask;
  int cp_size;
  alibi_dtype dtype;
  int hq, hkv;
  int chunk_size;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << mask_specs()[c.mask].name << " cp " << c.cp_size << " chunk " << c.chunk_size;
}

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return mask_specs()[c.mask].name + "_cp" + std::to_string(c.cp_size) + "_" +
         test::dtype_name(c.dtype) + "_hq" + std::to_string(c.hq) + "_hkv" + std::to_string(c.hkv) +
         "_chunk" + std::to_string(c.chunk_size);
}

constexpr int64_t kHeadDim = 8;

struct Inputs {
  int64_t tokens;
  std::vector<float> q, k, v, dout;
  std::vector<float> slopes;  // per-sequence slopes, or empty (the formula's)
};

// Outputs of one call, as the global tensors hold them (lse (Hq, T)).
struct Results {
  std::vector<float> out, lse, dq, dk, dv, dslopes;
};

alibi_attention_params params_of(const Inputs& in, const MaskSpec& spec) {
  alibi_attention_params p;
  alibi_attention_params_init(&p);
  if (spec.num_sequences > 0) {
    p.slopes = in.slopes.data();
    p.slopes_per_batch = 1;
  }
  return p;
}

std::vector<int64_t> dslopes_shape(const MaskSpec& spec, int hq) {
  if (spec.num_sequences > 0) return {spec.num_sequences, hq};
  return {hq};
}

Results single_process(const Case& c, const Inputs& in) {
  const MaskSpec& spec = mask_specs()[c.mask];
  Context ctx = test::make_cpu_context();
  Mask mask = spec.make(ctx.get());
  const int64_t t = in.tokens;
  Tensor q = test::upload(ctx.get(), c.dtype, {t, c.hq, kHeadDim}, in.q);
  Tensor k = test::upload(ctx.get(), c.dtype, {t, c.hkv, kHeadDim}, in.k);
  Tensor v = test::upload(ctx.get(), c.dtype, {t, c.hkv, kHeadDim}, in.v);
  Tensor dout = test::upload(ctx.get(), c.dtype, {t, c.hq, kHeadDim}, in.dout);
  Tensor out = test::poisoned(ctx.get(), c.dtype, {t, c.hq, kHeadDim});
  Tensor lse = test::poisoned(ctx.get(), kF32, {c.hq, t});
  Tensor dq = test::poisoned(ctx.get(), c.dtype, {t, c.hq, kHeadDim});
  Tensor dk = test::poisoned(ctx.get(), c.dtype, {t, c.hkv, kHeadDim});
  Tensor dv = test::poisoned(ctx.get(), c.dtype, {t, c.hkv, kHeadDim});
  const std::vector<int64_t> ds_shape = dslopes_shape(spec, c.hq);
  Tensor dslopes = test::poisoned(ctx.get(), kF32, ds_shape);
  const alibi_attention_params p = params_of(in, spec);
  SUCCEEDED(alibi_attention_forward(ctx.get(), q.get(), k.get(), v.get(), mask.get(), &p, out.get(),
                                    lse.get()));
  SUCCEEDED(alibi_attention_backward(ctx.get(), q.get(), k.get(), v.get(), mask.get(), &p,
                                     out.get(), lse.get(), dout.get(), dq.get(), dk.get(), dv.get(),
                                     dslopes.get()));
  Results r;
  r.out = test::download(out.get(), c.dtype, t * c.hq * kHeadDim);
  r.lse = test::download(lse.get(), kF32, c.hq * t);
  r.dq = test::download(dq.get(), c.dtype, t * c.hq * kHeadDim);
  r.dk = test::download(dk.get(), c.dtype, t * c.hkv * kHeadDim);
  r.dv = test::download(dv.get(), c.dtype, t * c.hkv * kHeadDim);
  r.dslopes = test::download(dslopes.get(), kF32, test::numel(ds_shape));
  return r;
}

// The global token of each local token of `rank` (-1: padding).
std::vector<int64_t> global_tokens(alibi_dist_plan_t plan, int rank, int64_t total) {
  int64_t local = 0, padded = 0;
  int cp = 0, chunk = 0;
  SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan, &local));
  SUCCEEDED(alibi_dist_plan_get_info(plan, &cp, &chunk, &padded));
  std::vector<int32_t> chunks(size_t(local / chunk));
  SUCCEEDED(alibi_dist_plan_get_chunks(plan, rank, chunks.data()));
  std::vector<int64_t> tokens;
  for (int32_t id : chunks)
    for (int64_t i = 0; i < chunk; ++i) {
      const int64_t token = int64_t(id) * chunk + i;
      tokens.push_back(token < total ? token : -1);
    }
  return tokens;
}

bool written(const std::vector<float>& values, alibi_dtype dtype) {
  const float poison = test::round_to(test::kPoison, dtype);
  return std::none_of(values.begin(), values.end(), [&](float x) { return x == poison; });
}

// A rank's results (globals undispatched on it, lse gathered from its rows into (Hq, T)
// where it holds the row, else NaN), and checks of its local outputs.
Results run_rank(const Case& c, const Inputs& in, alibi_mask_t mask, test::ThreadGroup& group,
                 int rank) {
  const MaskSpec& spec = mask_specs()[c.mask];
  Context ctx = test::make_cpu_context();
  SUCCEEDED(alibi_context_set_num_threads(ctx.get(), 1));
  Comm comm(group.comm(rank));
  alibi_dist_plan_t plan_handle = nullptr;
  SUCCEEDED(alibi_dist_plan_create(mask, c.cp_size, c.chunk_size, &plan_handle));
  Plan plan(plan_handle);
  int64_t l = 0;
  SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan.get(), &l));
  const int64_t t = in.tokens;
  alibi_context_t x = ctx.get();

  // Dispatch each global input into a poisoned local tensor.
  auto dispatched = [&](const std::vector<float>& global, int heads) {
    Tensor g = test::upload(x, c.dtype, {t, heads, kHeadDim}, global);
    Tensor local = test::poisoned(x, c.dtype, {l, heads, kHeadDim});
    SUCCEEDED(alibi_dist_dispatch(x, plan.get(), rank, g.get(), local.get()));
    EXPECT_TRUE(written(test::download(local.get(), c.dtype, l * heads * kHeadDim), c.dtype));
    return local;
  };
  Tensor q = dispatched(in.q, c.hq), k = dispatched(in.k, c.hkv), v = dispatched(in.v, c.hkv);
  Tensor dout = dispatched(in.dout, c.hq);

  Tensor out = test::poisoned(x, c.dtype, {l, c.hq, kHeadDim});
  Tensor lse = test::poisoned(x, kF32, {c.hq, l});
  Tensor dq = test::poisoned(x, c.dtype, {l, c.hq, kHeadDim});
  Tensor dk = test::poisoned(x, c.dtype, {l, c.hkv, kHeadDim});
  Tensor dv = test::poisoned(x, c.dtype, {l, c.hkv, kHeadDim});
  const std::vector<int64_t> ds_shape = dslopes_shape(spec, c.hq);
  Tensor dslopes = test::poisoned(x, kF32, ds_shape);
  const alibi_attention_params p = params_of(in, spec);
  SUCCEEDED(alibi_dist_attention_forward(x, comm.get(), plan.get(), q.get(), k.get(), v.get(), &p,
                                         out.get(), lse.get()));
  SUCCEEDED(alibi_dist_attention_backward(x, comm.get(), plan.get(), q.get(), k.get(), v.get(), &p,
                                          out.get(), lse.get(), dout.get(), dq.get(), dk.get(),
                                          dv.get(), dslopes.get()));

  // Padding rows: out 0, lse -inf; every local output written.
  const std::vector<int64_t> tokens = global_tokens(plan.get(), rank, t);
  const std::vector<float> local_out = test::download(out.get(), c.dtype, l * c.hq * kHeadDim);
  const std::vector<float> local_lse = test::download(lse.get(), kF32, c.hq * l);
  EXPECT_TRUE(written(local_out, c.dtype));
  EXPECT_TRUE(written(local_lse, kF32));
  EXPECT_TRUE(written(test::download(dq.get(), c.dtype, l * c.hq * kHeadDim), c.dtype));
  EXPECT_TRUE(written(test::download(dk.get(), c.dtype, l * c.hkv * kHeadDim), c.dtype));
  EXPECT_TRUE(written(test::download(dv.get(), c.dtype, l * c.hkv * kHeadDim), c.dtype));
  Results r;
  r.lse.assign(size_t(c.hq * t), NAN);
  for (int64_t i = 0; i < l; ++i)
    for (int h = 0; h < c.hq; ++h) {
      const float row_lse = local_lse[size_t(h * l + i)];
      if (tokens[size_t(i)] >= 0) {
        r.lse[size_t(h * t + tokens[size_t(i)])] = row_lse;
        continue;
      }
      EXPECT_EQ(row_lse, kNegInf) << "padding row " << i << " head " << h;
      for (int64_t d = 0; d < kHeadDim; ++d)
        EXPECT_EQ(local_out[size_t((i * c.hq + h) * kHeadDim + d)], 0.0f) << "padding row " << i;
    }
  r.dslopes = test::download(dslopes.get(), kF32, test::numel(ds_shape));

  auto undispatched = [&](const Tensor& local, int heads) {
    Tensor global = test::poisoned(x, c.dtype, {t, heads, kHeadDim});
    SUCCEEDED(alibi_dist_undispatch(x, comm.get(), plan.get(), local.get(), global.get()));
    return test::download(global.get(), c.dtype, t * heads * kHeadDim);
  };
  r.out = undispatched(out, c.hq);
  r.dq = undispatched(dq, c.hq);
  r.dk = undispatched(dk, c.hkv);
  r.dv = undispatched(dv, c.hkv);
  return r;
}

std::vector<Results> distributed(const Case& c, const Inputs& in) {
  Context ctx = test::make_cpu_context();
  Mask mask = mask_specs()[c.mask].make(ctx.get());
  test::ThreadGroup group(c.cp_size);
  std::vector<Results> results(size_t(c.cp_size));
  group.run([&](int rank) { results[size_t(rank)] = run_rank(c, in, mask.get(), group, rank); });
  return results;
}

// The largest |x| of values (1 at least).
double magnitude(const std::vector<float>& values) {
  double m = 1.0;
  for (float x : values)
    if (std::isfinite(x)) m = std::max(m, double(std::fabs(x)));
  return m;
}

// got within `ulps` f32 ulps of the array's magnitude of want, plus, for bf16 values, one
// bf16 rounding of the element (both sides round their f32 result once).
void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                  double ulps, alibi_dtype dtype) {
  ASSERT_EQ(got.size(), want.size()) << what;
  const double bound = ulps * FLT_EPSILON * magnitude(want);
  int reported = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double rounding = dtype == kBF16 ? std::ldexp(std::fabs(double(want[i])), -7) : 0.0;
    const bool same =
        got[i] == want[i] || std::fabs(double(got[i]) - double(want[i])) <= bound + rounding;
    if (!same && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", single process " << want[i]
                    << " (bound " << bound + rounding << ")";
  }
}

class DistAttention : public ::testing::TestWithParam<Case> {};

TEST_P(DistAttention, EqualsSingleProcess) {
  const Case& c = GetParam();
  const MaskSpec& spec = mask_specs()[c.mask];
  Inputs in;
  {
    Context ctx = test::make_cpu_context();
    Mask mask = spec.make(ctx.get());
    int64_t tk = 0;
    SUCCEEDED(alibi_mask_get_totals(mask.get(), &in.tokens, &tk));
  }
  const int64_t t = in.tokens;
  const uint32_t seed = uint32_t(c.mask * 131 + c.cp_size * 17 + c.chunk_size);
  in.q = test::random_values(size_t(t * c.hq * kHeadDim), c.dtype, seed + 1);
  in.k = test::random_values(size_t(t * c.hkv * kHeadDim), c.dtype, seed + 2);
  in.v = test::random_values(size_t(t * c.hkv * kHeadDim), c.dtype, seed + 3);
  in.dout = test::random_values(size_t(t * c.hq * kHeadDim), c.dtype, seed + 4);
  if (spec.num_sequences > 0)
    in.slopes = test::random_floats(size_t(spec.num_sequences * c.hq), seed + 5, 0.01f, 0.5f);

  const Results want = single_process(c, in);
  const std::vector<Results> first = distributed(c, in);
  const std::vector<Results> second = distributed(c, in);
  for (int rank = 0; rank < c.cp_size; ++rank) {
    SCOPED_TRACE("rank " + std::to_string(rank));
    const Results& got = first[size_t(rank)];
    expect_close("out", got.out, want.out, 4, c.dtype);
    expect_close("dq", got.dq, want.dq, 8, c.dtype);
    expect_close("dk", got.dk, want.dk, 8, c.dtype);
    expect_close("dv", got.dv, want.dv, 8, c.dtype);
    expect_close("dslopes", got.dslopes, want.dslopes, 32, kF32);
    std::vector<float> lse_want = want.lse, lse_got = got.lse;
    for (size_t i = 0; i < lse_got.size(); ++i)
      if (std::isnan(lse_got[i])) lse_got[i] = lse_want[i];  // a row another rank holds
    for (size_t i = 0; i < lse_got.size(); ++i)
      if (std::isinf(lse_want[i])) EXPECT_EQ(lse_got[i], lse_want[i]) << "lse[" << i << "]";
    expect_close("lse", lse_got, lse_want, 4, kF32);
    // Bitwise: run to run, and the undispatched tensors and dslopes equal on every rank.
    const Results& again = second[size_t(rank)];
    const Results& rank0 = first[0];
    for (const auto& [a, b, what] :
         std::vector<std::tuple<const std::vector<float>*, const std::vector<float>*, const char*>>{
             {&got.out, &again.out, "out run to run"},
             {&got.dq, &again.dq, "dq run to run"},
             {&got.dk, &again.dk, "dk run to run"},
             {&got.dv, &again.dv, "dv run to run"},
             {&got.dslopes, &again.dslopes, "dslopes run to run"},
             {&got.out, &rank0.out, "out vs rank 0"},
             {&got.dk, &rank0.dk, "dk vs rank 0"},
             {&got.dslopes, &rank0.dslopes, "dslopes vs rank 0"}})
      EXPECT_EQ(test::bitwise_differences(*a, *b), 0) << what;
  }
}

std::vector<Case> cases() {
  std::vector<Case> all;
  const int chunks[] = {7, 16, 13, 32, 5};
  size_t n = 0;
  for (size_t m = 0; m < mask_specs().size(); ++m)
    for (int cp = 1; cp <= 4; ++cp)
      for (alibi_dtype dtype : {kF32, kBF16}) {
        const bool gqa = n % 2 == 0;
        all.push_back({m, cp, dtype, gqa ? 4 : 2, 2, chunks[n % 5]});
        ++n;
      }
  return all;
}

INSTANTIATE_TEST_SUITE_P(Dist, DistAttention, ::testing::ValuesIn(cases()), case_name);

// ------------------------------------------------------------- forward only, one head, f32

struct ForwardResults {
  std::vector<float> out, lse;  // (T, 1, D), (1, T)
};

constexpr int64_t kSmallDim = 4;

ForwardResults single_forward(alibi_mask_t mask, int64_t t, const std::vector<float>& qkv) {
  Context ctx = test::make_cpu_context();
  const size_t n = size_t(t * kSmallDim);
  const std::vector<float> q(qkv.begin(), qkv.begin() + n), k(qkv.begin() + n, qkv.begin() + 2 * n),
      v(qkv.begin() + 2 * n, qkv.end());
  Tensor tq = test::upload(ctx.get(), kF32, {t, 1, kSmallDim}, q);
  Tensor tk = test::upload(ctx.get(), kF32, {t, 1, kSmallDim}, k);
  Tensor tv = test::upload(ctx.get(), kF32, {t, 1, kSmallDim}, v);
  Tensor out = test::poisoned(ctx.get(), kF32, {t, 1, kSmallDim});
  Tensor lse = test::poisoned(ctx.get(), kF32, {1, t});
  SUCCEEDED(alibi_attention_forward(ctx.get(), tq.get(), tk.get(), tv.get(), mask, nullptr,
                                    out.get(), lse.get()));
  return {test::download(out.get(), kF32, int64_t(n)), test::download(lse.get(), kF32, t)};
}

// Rank `rank`'s forward on its dispatched tokens; its rows' results at their global places
// (others left NaN).
void rank_forward(alibi_mask_t mask, int cp, int chunk, int64_t t, const std::vector<float>& qkv,
                  test::ThreadGroup& group, int rank, ForwardResults& into) {
  Context ctx = test::make_cpu_context();
  SUCCEEDED(alibi_context_set_num_threads(ctx.get(), 1));
  Comm comm(group.comm(rank));
  alibi_dist_plan_t handle = nullptr;
  SUCCEEDED(alibi_dist_plan_create(mask, cp, chunk, &handle));
  Plan plan(handle);
  int64_t l = 0;
  SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan.get(), &l));
  const size_t n = size_t(t * kSmallDim);
  Tensor local[3];
  for (int i = 0; i < 3; ++i) {
    const std::vector<float> part(qkv.begin() + ptrdiff_t(i * n),
                                  qkv.begin() + ptrdiff_t((i + 1) * n));
    Tensor global = test::upload(ctx.get(), kF32, {t, 1, kSmallDim}, part);
    local[i] = test::poisoned(ctx.get(), kF32, {l, 1, kSmallDim});
    SUCCEEDED(alibi_dist_dispatch(ctx.get(), plan.get(), rank, global.get(), local[i].get()));
  }
  Tensor out = test::poisoned(ctx.get(), kF32, {l, 1, kSmallDim});
  Tensor lse = test::poisoned(ctx.get(), kF32, {1, l});
  SUCCEEDED(alibi_dist_attention_forward(ctx.get(), comm.get(), plan.get(), local[0].get(),
                                         local[1].get(), local[2].get(), nullptr, out.get(),
                                         lse.get()));
  const std::vector<float> o = test::download(out.get(), kF32, l * kSmallDim);
  const std::vector<float> e = test::download(lse.get(), kF32, l);
  const std::vector<int64_t> tokens = global_tokens(plan.get(), rank, t);
  for (int64_t i = 0; i < l; ++i) {
    const int64_t token = tokens[size_t(i)];
    if (token < 0) continue;
    into.lse[size_t(token)] = e[size_t(i)];
    for (int64_t d = 0; d < kSmallDim; ++d)
      into.out[size_t(token * kSmallDim + d)] = o[size_t(i * kSmallDim + d)];
  }
}

ForwardResults dist_forward(alibi_mask_t mask, int cp, int chunk, int64_t t,
                            const std::vector<float>& qkv) {
  ForwardResults got{std::vector<float>(size_t(t * kSmallDim), NAN),
                     std::vector<float>(size_t(t), NAN)};
  test::ThreadGroup group(cp);
  group.run([&](int rank) { rank_forward(mask, cp, chunk, t, qkv, group, rank, got); });
  return got;
}

// Every slice type and shape (Sk below, equal to and above Sq) cut by chunks of 1 to 3 rows over
// 2 and 3 ranks: each rank's piece of the slice must see exactly the keys the slice's rows see
// (lse -inf exactly where the slice's rows see nothing).
TEST(DistCut, EverySliceTypeAndShape) {
  Context ctx = test::make_cpu_context();
  constexpr int64_t t = 16;
  const std::vector<float> qkv = test::random_values(size_t(3 * t * kSmallDim), kF32, 99);
  for (int type = 0; type < 4; ++type)
    for (int32_t sq : {1, 2, 3, 5, 8})
      for (int32_t sk : {1, 2, 3, 5, 8, 13}) {
        const int32_t q[] = {2, 2 + sq}, k[] = {1, 1 + sk};
        alibi_mask_t handle = nullptr;
        ASSERT_OK(alibi_mask_create_ranges(ctx.get(), 1, q, k, &type, t, t, &handle));
        Mask mask(handle);
        const ForwardResults want = single_forward(mask.get(), t, qkv);
        for (int cp : {2, 3})
          for (int chunk : {1, 2, 3}) {
            SCOPED_TRACE(test::mask_type_name(type) + " " + std::to_string(sq) + "x" +
                         std::to_string(sk) + " cp " + std::to_string(cp) + " chunk " +
                         std::to_string(chunk));
            const ForwardResults got = dist_forward(mask.get(), cp, chunk, t, qkv);
            for (int64_t i = 0; i < t; ++i)
              if (std::isinf(want.lse[size_t(i)]))
                EXPECT_EQ(got.lse[size_t(i)], want.lse[size_t(i)]) << "row " << i;
            expect_close("lse", got.lse, want.lse, 4, kF32);
            expect_close("out", got.out, want.out, 4, kF32);
          }
      }
}

// ------------------------------------------------------------------------------------ volume

// For a varlen batch of many short causal sequences, each rank receives exactly the keys and
// values of the tokens its rows see (counted here from the sequences), far less than an
// all-gather of K and V.
TEST(DistVolume, EachRankReceivesOnlyTheKeysItsRowsSee) {
  std::mt19937 rng(7);
  std::vector<int32_t> lengths;
  for (int s = 0; s < 40; ++s) lengths.push_back(3 + int32_t(rng() % 15));
  std::vector<int32_t> cu{0};
  for (int32_t n : lengths) cu.push_back(cu.back() + n);
  const int64_t t = cu.back();
  Context ctx = test::make_cpu_context();
  Mask mask = varlen(ctx.get(), lengths, true);
  constexpr int cp = 4, chunk = 8, hkv = 2;
  const int64_t row_bytes = hkv * kHeadDim * int64_t(sizeof(float));
  test::ThreadGroup group(cp);
  std::vector<int64_t> expected(cp);
  group.run([&](int rank) {
    Context rctx = test::make_cpu_context();
    Comm comm(group.comm(rank));
    alibi_dist_plan_t handle = nullptr;
    SUCCEEDED(alibi_dist_plan_create(mask.get(), cp, chunk, &handle));
    Plan plan(handle);
    int64_t l = 0;
    SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan.get(), &l));
    std::vector<bool> seen(size_t(t), false);
    for (int64_t token : global_tokens(plan.get(), rank, t)) {
      if (token < 0) continue;
      const int32_t start = *(std::upper_bound(cu.begin(), cu.end(), int32_t(token)) - 1);
      for (int64_t key = start; key <= token; ++key) seen[size_t(key)] = true;
    }
    expected[size_t(rank)] = 2 * row_bytes * std::count(seen.begin(), seen.end(), true);
    Tensor q = test::upload(rctx.get(), kF32, {l, 4, kHeadDim},
                            test::random_values(size_t(l * 4 * kHeadDim), kF32, 1));
    Tensor k = test::upload(rctx.get(), kF32, {l, hkv, kHeadDim},
                            test::random_values(size_t(l * hkv * kHeadDim), kF32, 2));
    Tensor out = test::poisoned(rctx.get(), kF32, {l, 4, kHeadDim});
    SUCCEEDED(alibi_dist_attention_forward(rctx.get(), comm.get(), plan.get(), q.get(), k.get(),
                                           k.get(), nullptr, out.get(), nullptr));
  });
  const int64_t all_gather = 2 * row_bytes * t;
  for (int rank = 0; rank < cp; ++rank) {
    EXPECT_EQ(group.alltoallv_bytes(rank), expected[size_t(rank)]) << "rank " << rank;
    // Its own quarter of the tokens and the start of the sequences they begin in.
    EXPECT_LT(group.alltoallv_bytes(rank), all_gather / 2) << "rank " << rank;
  }
}

// ------------------------------------------------------------------------- dispatch, undispatch

// Any dtype, trailing dims and strides: each rank's tokens in chunk order, padding zero; the
// undispatch on every rank gives back the global tensor.
TEST(DistDispatch, AnyDtypeTrailingDimsAndStridesRoundTrip) {
  constexpr int64_t t = 23;
  constexpr int cp = 3, chunk = 4;
  Context ctx = test::make_cpu_context();
  Mask mask = varlen(ctx.get(), {int32_t(t)}, false);
  // (23, 2, 3) int64 with gaps: strides (12, 6, 2).
  std::vector<int64_t> storage(size_t(t * 12), -1);
  for (int64_t i = 0; i < t; ++i)
    for (int64_t a = 0; a < 2; ++a)
      for (int64_t b = 0; b < 3; ++b)
        storage[size_t(i * 12 + a * 6 + b * 2)] = 1000 * i + 10 * a + b + 1;
  test::ThreadGroup group(cp);
  group.run([&](int rank) {
    Context rctx = test::make_cpu_context();
    Comm comm(group.comm(rank));
    alibi_dist_plan_t handle = nullptr;
    SUCCEEDED(alibi_dist_plan_create(mask.get(), cp, chunk, &handle));
    Plan plan(handle);
    int64_t l = 0;
    SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan.get(), &l));
    const int64_t shape[] = {t, 2, 3}, strides[] = {12, 6, 2}, local_shape[] = {l, 2, 3};
    alibi_tensor_t g = nullptr, lx = nullptr, back = nullptr;
    SUCCEEDED(
        alibi_tensor_wrap(rctx.get(), ALIBI_DTYPE_I64, 3, shape, strides, storage.data(), &g));
    Tensor global(g);
    std::vector<int64_t> local(size_t(l * 6), -7);
    SUCCEEDED(
        alibi_tensor_wrap(rctx.get(), ALIBI_DTYPE_I64, 3, local_shape, nullptr, local.data(), &lx));
    Tensor local_x(lx);
    SUCCEEDED(alibi_dist_dispatch(rctx.get(), plan.get(), rank, global.get(), local_x.get()));
    const std::vector<int64_t> tokens = global_tokens(plan.get(), rank, t);
    for (int64_t i = 0; i < l; ++i)
      for (int64_t e = 0; e < 6; ++e) {
        const int64_t token = tokens[size_t(i)];
        const int64_t want = token < 0 ? 0 : 1000 * token + 10 * (e / 3) + e % 3 + 1;
        EXPECT_EQ(local[size_t(i * 6 + e)], want) << "rank " << rank << " local " << i;
      }
    std::vector<int64_t> gathered(size_t(t * 6), -7);
    SUCCEEDED(
        alibi_tensor_wrap(rctx.get(), ALIBI_DTYPE_I64, 3, shape, nullptr, gathered.data(), &back));
    Tensor global_back(back);
    SUCCEEDED(alibi_dist_undispatch(rctx.get(), comm.get(), plan.get(), local_x.get(),
                                    global_back.get()));
    for (int64_t i = 0; i < t; ++i)
      for (int64_t e = 0; e < 6; ++e)
        EXPECT_EQ(gathered[size_t(i * 6 + e)], 1000 * i + 10 * (e / 3) + e % 3 + 1)
            << "rank " << rank << " token " << i;
  });
}

// Rows of no elements ((T, 0)): nothing to copy, and both calls succeed.
TEST(DistDispatch, RowsOfNoElements) {
  constexpr int64_t t = 9;
  Context ctx = test::make_cpu_context();
  Mask mask = varlen(ctx.get(), {int32_t(t)}, true);
  test::ThreadGroup group(2);
  group.run([&](int rank) {
    Context rctx = test::make_cpu_context();
    Comm comm(group.comm(rank));
    alibi_dist_plan_t handle = nullptr;
    SUCCEEDED(alibi_dist_plan_create(mask.get(), 2, 4, &handle));
    Plan plan(handle);
    Tensor global = test::create_tensor(rctx.get(), kF32, {t, 0});
    Tensor local = test::create_tensor(rctx.get(), kF32, {8, 0});
    SUCCEEDED(alibi_dist_dispatch(rctx.get(), plan.get(), rank, global.get(), local.get()));
    SUCCEEDED(alibi_dist_undispatch(rctx.get(), comm.get(), plan.get(), local.get(), global.get()));
  });
}

// ------------------------------------------------------------------------------- bad input

class DistErrors : public ::testing::Test {
 protected:
  static constexpr int64_t kTokens = 17;  // padded to 20 by chunks of 4
  static constexpr int64_t kLocal = 20;

  void SetUp() override {
    ctx_ = test::make_cpu_context();
    mask_ = varlen(ctx_.get(), {10, 7}, true);
    plan_ = make_plan(1);
    comm_.reset(group_.comm(0));
    q_ = test::upload(ctx_.get(), kF32, {kLocal, 2, kHeadDim},
                      std::vector<float>(size_t(kLocal * 2 * kHeadDim), 0.5f));
    out_ = std::make_unique<test::PoisonedOutput>(ctx_.get(), kF32,
                                                  std::vector<int64_t>{kLocal, 2, kHeadDim});
    lse_ =
        std::make_unique<test::PoisonedOutput>(ctx_.get(), kF32, std::vector<int64_t>{2, kLocal});
  }

  bool outputs_untouched() const { return out_->untouched() && lse_->untouched(); }

  Plan make_plan(int cp) {
    alibi_dist_plan_t handle = nullptr;
    SUCCEEDED(alibi_dist_plan_create(mask_.get(), cp, 4, &handle));
    return Plan(handle);
  }

  alibi_status forward(alibi_dist_plan_t plan, alibi_tensor_t q, const alibi_attention_params* p) {
    return alibi_dist_attention_forward(ctx_.get(), comm_.get(), plan, q, q_.get(), q_.get(), p,
                                        out_->get(), lse_->get());
  }

  Context ctx_;
  Mask mask_;
  Plan plan_;
  test::ThreadGroup group_{1};
  Comm comm_;
  Tensor q_;
  std::unique_ptr<test::PoisonedOutput> out_, lse_;
};

TEST_F(DistErrors, PlanOfAnotherCpSize) {
  Plan two = make_plan(2);
  EXPECT_FAILS(forward(two.get(), q_.get(), nullptr), ALIBI_STATUS_INVALID_ARGUMENT,
               "alibi_dist_attention_forward", "plan|comm", "cp_size = 2", "size 1");
  Tensor global = test::poisoned(ctx_.get(), kF32, {kTokens, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_undispatch(ctx_.get(), comm_.get(), two.get(), q_.get(), global.get()),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_undispatch", "plan|comm", "cp_size = 2");
  EXPECT_TRUE(outputs_untouched());
}

TEST_F(DistErrors, LocalShapesThatDoNotMatchTheLocalTokens) {
  Tensor longer = test::poisoned(ctx_.get(), kF32, {kLocal + 1, 2, kHeadDim});
  EXPECT_FAILS(forward(plan_.get(), longer.get(), nullptr), ALIBI_STATUS_SHAPE_MISMATCH,
               "alibi_dist_attention_forward", "q", "21", "20");
  test::PoisonedOutput short_out(ctx_.get(), kF32, {kLocal - 1, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_attention_forward(ctx_.get(), comm_.get(), plan_.get(), q_.get(),
                                            q_.get(), q_.get(), nullptr, short_out.get(), nullptr),
               ALIBI_STATUS_SHAPE_MISMATCH, "alibi_dist_attention_forward", "out", "19", "20");
  EXPECT_TRUE(short_out.untouched() && outputs_untouched());
  test::PoisonedOutput local(ctx_.get(), kF32, {kLocal - 4, 2, kHeadDim});
  Tensor global = test::poisoned(ctx_.get(), kF32, {kTokens, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_dispatch(ctx_.get(), plan_.get(), 0, global.get(), local.get()),
               ALIBI_STATUS_SHAPE_MISMATCH, "alibi_dist_dispatch", "local_x", "16", "20");
  Tensor shorter_global = test::poisoned(ctx_.get(), kF32, {kTokens - 1, 2, kHeadDim});
  test::PoisonedOutput right(ctx_.get(), kF32, {kLocal, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_dispatch(ctx_.get(), plan_.get(), 0, shorter_global.get(), right.get()),
               ALIBI_STATUS_SHAPE_MISMATCH, "alibi_dist_dispatch", "global_x", "16", "17");
  test::PoisonedOutput half(ctx_.get(), ALIBI_DTYPE_BF16, {kLocal, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_dispatch(ctx_.get(), plan_.get(), 0, global.get(), half.get()),
               ALIBI_STATUS_DTYPE_MISMATCH, "alibi_dist_dispatch", "local_x", "bf16", "f32");
  EXPECT_TRUE(local.untouched() && right.untouched() && half.untouched());
}

TEST_F(DistErrors, RankOutOfRange) {
  Tensor global = test::poisoned(ctx_.get(), kF32, {kTokens, 2, kHeadDim});
  test::PoisonedOutput local(ctx_.get(), kF32, {kLocal, 2, kHeadDim});
  for (int rank : {1, -1, 5})
    EXPECT_FAILS(alibi_dist_dispatch(ctx_.get(), plan_.get(), rank, global.get(), local.get()),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_dispatch", "rank",
                 "rank = " + std::to_string(rank), "cp_size = 1");
  EXPECT_TRUE(local.untouched());
}

TEST_F(DistErrors, AttnBiasIsUnsupported) {
  Tensor bias = test::poisoned(ctx_.get(), kF32, {2, kLocal, kLocal});
  alibi_attention_params p;
  alibi_attention_params_init(&p);
  p.attn_bias = bias.get();
  EXPECT_FAILS(forward(plan_.get(), q_.get(), &p), ALIBI_STATUS_UNSUPPORTED,
               "alibi_dist_attention_forward", "attn_bias");
  test::PoisonedOutput dq(ctx_.get(), kF32, {kLocal, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_attention_backward(ctx_.get(), comm_.get(), plan_.get(), q_.get(),
                                             q_.get(), q_.get(), &p, q_.get(), lse_->get(),
                                             q_.get(), dq.get(), nullptr, nullptr, nullptr),
               ALIBI_STATUS_UNSUPPORTED, "alibi_dist_attention_backward", "attn_bias");
  EXPECT_TRUE(outputs_untouched() && dq.untouched());
}

TEST_F(DistErrors, NullArguments) {
  EXPECT_FAILS(alibi_dist_attention_forward(ctx_.get(), nullptr, plan_.get(), q_.get(), q_.get(),
                                            q_.get(), nullptr, out_->get(), nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_attention_forward", "comm");
  EXPECT_FAILS(forward(nullptr, q_.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_attention_forward", "plan");
  EXPECT_FAILS(forward(plan_.get(), nullptr, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_attention_forward", "q");
  EXPECT_FAILS(alibi_dist_attention_forward(nullptr, comm_.get(), plan_.get(), q_.get(), q_.get(),
                                            q_.get(), nullptr, out_->get(), nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_attention_forward", "ctx");
  test::PoisonedOutput dq(ctx_.get(), kF32, {kLocal, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_attention_backward(ctx_.get(), comm_.get(), plan_.get(), q_.get(),
                                             q_.get(), q_.get(), nullptr, q_.get(), nullptr,
                                             q_.get(), dq.get(), nullptr, nullptr, nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_attention_backward", "lse");
  EXPECT_FAILS(alibi_dist_attention_backward(ctx_.get(), comm_.get(), plan_.get(), q_.get(),
                                             q_.get(), q_.get(), nullptr, q_.get(), lse_->get(),
                                             nullptr, dq.get(), nullptr, nullptr, nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_attention_backward", "dout");
  Tensor global = test::poisoned(ctx_.get(), kF32, {kTokens, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_dispatch(ctx_.get(), plan_.get(), 0, global.get(), nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_dispatch", "local_x");
  EXPECT_FAILS(alibi_dist_undispatch(ctx_.get(), comm_.get(), plan_.get(), nullptr, global.get()),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_undispatch", "local_x");
  EXPECT_TRUE(outputs_untouched() && dq.untouched());
}

TEST_F(DistErrors, GradientOfAnotherShape) {
  test::PoisonedOutput dk(ctx_.get(), kF32, {kLocal, 1, kHeadDim});
  test::PoisonedOutput dq(ctx_.get(), kF32, {kLocal, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_attention_backward(ctx_.get(), comm_.get(), plan_.get(), q_.get(),
                                             q_.get(), q_.get(), nullptr, q_.get(), lse_->get(),
                                             q_.get(), dq.get(), dk.get(), nullptr, nullptr),
               ALIBI_STATUS_SHAPE_MISMATCH, "alibi_dist_attention_backward", "dk", "1", "2");
  EXPECT_TRUE(dk.untouched() && dq.untouched());
}

// A collective returning nonzero fails the call with COMMUNICATION_ERROR and that value.
TEST_F(DistErrors, CollectiveFailure) {
  group_.fail_with(7);
  EXPECT_FAILS(forward(plan_.get(), q_.get(), nullptr), ALIBI_STATUS_COMMUNICATION_ERROR,
               "alibi_dist_attention_forward", "alltoallv", "returned 7");
  EXPECT_TRUE(outputs_untouched());
  Tensor global = test::poisoned(ctx_.get(), kF32, {kTokens, 2, kHeadDim});
  EXPECT_FAILS(alibi_dist_undispatch(ctx_.get(), comm_.get(), plan_.get(), q_.get(), global.get()),
               ALIBI_STATUS_COMMUNICATION_ERROR, "alibi_dist_undispatch", "allgather",
               "returned 7");
}

}  // namespace
