// alibi_dist.h's dispatch, undispatch and distributed attention, cp_size ranks as threads of this
// process (dist_threads.h), each with its own CPU context. Every rank dispatches the global
// tensors, runs the distributed forward and backward and undispatches the results, which must
// equal the single-process alibi_attention_forward / backward on the global tensors (themselves
// tested against the float64 reference in test_attention.cpp and test_backward.cpp) within f32
// rounding, bitwise run to run and across ranks. Outputs are poisoned before every call.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <set>
#include <tuple>
#include <string>
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
  SUCCEEDED(alibi_mask_create_varlen(ctx, int(lengths.size()), cu.data(), cu.data(), causal, &mask));
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
       [](alibi_context_t c) { return varlen(c, {37, 0, 61, 5, 90}, true); }},
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
         return ranges(c,
                       {0, 32, 0, 32, 0, 32, 0, 32, 32, 64, 48, 80, 80, 112, 96, 128, 128, 160,
                        128, 160, 128, 160, 128, 160},
                       {0, 32, 32, 64, 64, 96, 96, 160, 0, 32, 32, 64, 0, 32, 32, 64, 0, 32, 32, 64,
                        64, 96, 96, 160},
                       {2, 0, 1, 3, 2, 1, 2, 1, 2, 0, 1, 3}, 160);
       }},
      {"sliding_window", [](alibi_context_t c) { return sliding_window(c, {50, 77}, 9, 4); }},
      {"varlen_full_sequence_slopes",
       [](alibi_context_t c) { return varlen(c, {20, 33, 47}, false); }, 3},
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
         test::dtype_name(c.dtype) + "_hq" + std::to_string(c.hq) + "_hkv" +
         std::to_string(c.hkv) + "_chunk" + std::to_string(c.chunk_size);
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
  SUCCEEDED(alibi_attention_forward(ctx.get(), q.get(), k.get(), v.get(), mask.get(), &p,
                                    out.get(), lse.get()));
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
    const bool same = got[i] == want[i] ||
                      std::fabs(double(got[i]) - double(want[i])) <= bound + rounding;
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
             {&got.out, &again.out, "out run to run"}, {&got.dq, &again.dq, "dq run to run"},
             {&got.dk, &again.dk, "dk run to run"}, {&got.dv, &again.dv, "dv run to run"},
             {&got.dslopes, &again.dslopes, "dslopes run to run"},
             {&got.out, &rank0.out, "out vs rank 0"}, {&got.dk, &rank0.dk, "dk vs rank 0"},
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

}  // namespace
