// The distributed attention (alibi/alibi_dist.h) over MPI (alibi/alibi_mpi.h), under mpiexec with
// any number of ranks: dispatch, forward, backward and undispatch equal the single-process calls
// on every rank (MagiAttention's q-overlap masks scaled down, a varlen batch, GQA), bitwise run to
// run; the bytes each rank receives (test::CountingComm over the MPI communicator) are exactly
// the keys and values its rows see; and bad input. GoogleTest with an MPI main: every rank runs
// every test, and the program fails on every rank when a test failed on any.
#include <gtest/gtest.h>
#include <mpi.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <numeric>
#include <string>
#include <tuple>
#include <vector>

#include "alibi/alibi_mpi.h"
#include "counting_comm.h"
#include "mpi_world.h"
#include "error_check.h"
#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr int64_t kDim = 8;

struct PlanDeleter {
  void operator()(alibi_dist_plan_t p) const { alibi_dist_plan_destroy(p); }
};
struct CommDeleter {
  void operator()(alibi_comm_t c) const { alibi_comm_destroy(c); }
};
using Plan = std::unique_ptr<alibi_dist_plan_s, PlanDeleter>;
using Comm = std::unique_ptr<alibi_comm_s, CommDeleter>;

using test::world_rank;
using test::world_size;

Comm mpi_comm() {
  alibi_comm_t comm = nullptr;
  EXPECT_EQ(alibi_comm_create_mpi(MPI_COMM_WORLD, &comm), ALIBI_STATUS_SUCCESS);
  return Comm(comm);
}

Plan make_plan(alibi_mask_t mask, int cp_size, int chunk_size) {
  alibi_dist_plan_t plan = nullptr;
  SUCCEEDED(alibi_dist_plan_create(mask, cp_size, chunk_size, &plan));
  return Plan(plan);
}

int64_t local_tokens(alibi_dist_plan_t plan) {
  int64_t local = 0;
  SUCCEEDED(alibi_dist_plan_get_num_local_tokens(plan, &local));
  return local;
}

// ------------------------------------------------------------------- against one process

struct Problem {
  std::string name;
  std::function<Mask(alibi_context_t)> make;
  int64_t tokens;
  int hq, hkv, chunk;
};

// MagiAttention's distributed test masks (shared/MAGI-DISPATCH.md) with every range divided by
// 64, and a varlen batch with an empty sequence.
std::vector<Problem> problems() {
  return {
      {"bi_causal_q_overlap",
       [](alibi_context_t c) {
         return test::make_ranges(
             c, {0, 32, 32, 64, 64, 96, 96, 128, 128, 160, 160, 192, 15, 62, 156, 187},
             {0, 48, 0, 64, 0, 96, 96, 192, 128, 192, 144, 192, 125, 187, 0, 78},
             {3, 3, 3, 3, 3, 3, 3, 3}, 192, 192);
       },
       192, 4, 2, 16},
      {"varlen_block_causal_q_overlap",
       [](alibi_context_t c) {
         return test::make_ranges(c, {0, 128, 32, 128, 64, 128, 96, 128, 128, 192, 160, 192},
                                  {0, 32, 32, 64, 64, 96, 96, 128, 128, 160, 160, 192},
                                  {0, 0, 0, 0, 0, 0}, 192, 192);
       },
       192, 2, 2, 13},
      {"varlen_causal_with_an_empty_sequence",
       [](alibi_context_t c) {
         return test::make_varlen(c, {0, 37, 37, 98, 103, 193}, {0, 37, 37, 98, 103, 193}, true);
       },
       193, 4, 1, 7},
  };
}

struct Tensors {
  std::vector<float> out, lse, dq, dk, dv, dslopes;
};

struct Inputs {
  std::vector<float> q, k, v, dout;
};

Inputs inputs_of(const Problem& p) {
  const size_t q = size_t(p.tokens * p.hq * kDim), kv = size_t(p.tokens * p.hkv * kDim);
  return {test::random_values(q, kF32, 1), test::random_values(kv, kF32, 2),
          test::random_values(kv, kF32, 3), test::random_values(q, kF32, 4)};
}

Tensors single_process(alibi_context_t ctx, alibi_mask_t mask, const Problem& p,
                       const Inputs& in) {
  const int64_t t = p.tokens;
  Tensor q = test::upload(ctx, kF32, {t, p.hq, kDim}, in.q);
  Tensor k = test::upload(ctx, kF32, {t, p.hkv, kDim}, in.k);
  Tensor v = test::upload(ctx, kF32, {t, p.hkv, kDim}, in.v);
  Tensor dout = test::upload(ctx, kF32, {t, p.hq, kDim}, in.dout);
  Tensor out = test::poisoned(ctx, kF32, {t, p.hq, kDim});
  Tensor lse = test::poisoned(ctx, kF32, {p.hq, t});
  Tensor dq = test::poisoned(ctx, kF32, {t, p.hq, kDim});
  Tensor dk = test::poisoned(ctx, kF32, {t, p.hkv, kDim});
  Tensor dv = test::poisoned(ctx, kF32, {t, p.hkv, kDim});
  Tensor dslopes = test::poisoned(ctx, kF32, {p.hq});
  SUCCEEDED(alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask, nullptr, out.get(),
                                    lse.get()));
  SUCCEEDED(alibi_attention_backward(ctx, q.get(), k.get(), v.get(), mask, nullptr, out.get(),
                                     lse.get(), dout.get(), dq.get(), dk.get(), dv.get(),
                                     dslopes.get()));
  return {test::download(out.get(), kF32, t * p.hq * kDim), {},
          test::download(dq.get(), kF32, t * p.hq * kDim),
          test::download(dk.get(), kF32, t * p.hkv * kDim),
          test::download(dv.get(), kF32, t * p.hkv * kDim),
          test::download(dslopes.get(), kF32, p.hq)};
}

// This rank's distributed calls, the results undispatched (lse stays local: the example and the
// thread tests check it).
Tensors distributed(alibi_context_t ctx, alibi_comm_t comm, alibi_dist_plan_t plan,
                    const Problem& p, const Inputs& in) {
  const int64_t t = p.tokens, l = local_tokens(plan);
  const int rank = world_rank();
  auto dispatched = [&](const std::vector<float>& global, int heads) {
    Tensor g = test::upload(ctx, kF32, {t, heads, kDim}, global);
    Tensor local = test::poisoned(ctx, kF32, {l, heads, kDim});
    SUCCEEDED(alibi_dist_dispatch(ctx, plan, rank, g.get(), local.get()));
    return local;
  };
  auto undispatched = [&](const Tensor& local, int heads) {
    Tensor global = test::poisoned(ctx, kF32, {t, heads, kDim});
    SUCCEEDED(alibi_dist_undispatch(ctx, comm, plan, local.get(), global.get()));
    return test::download(global.get(), kF32, t * heads * kDim);
  };
  Tensor q = dispatched(in.q, p.hq), k = dispatched(in.k, p.hkv), v = dispatched(in.v, p.hkv);
  Tensor dout = dispatched(in.dout, p.hq);
  Tensor out = test::poisoned(ctx, kF32, {l, p.hq, kDim});
  Tensor lse = test::poisoned(ctx, kF32, {p.hq, l});
  Tensor dq = test::poisoned(ctx, kF32, {l, p.hq, kDim});
  Tensor dk = test::poisoned(ctx, kF32, {l, p.hkv, kDim});
  Tensor dv = test::poisoned(ctx, kF32, {l, p.hkv, kDim});
  Tensor dslopes = test::poisoned(ctx, kF32, {p.hq});
  SUCCEEDED(alibi_dist_attention_forward(ctx, comm, plan, q.get(), k.get(), v.get(), nullptr,
                                         out.get(), lse.get()));
  SUCCEEDED(alibi_dist_attention_backward(ctx, comm, plan, q.get(), k.get(), v.get(), nullptr,
                                          out.get(), lse.get(), dout.get(), dq.get(), dk.get(),
                                          dv.get(), dslopes.get()));
  return {undispatched(out, p.hq), test::download(lse.get(), kF32, p.hq * l),
          undispatched(dq, p.hq), undispatched(dk, p.hkv), undispatched(dv, p.hkv),
          test::download(dslopes.get(), kF32, p.hq)};
}

// got within `ulps` f32 ulps of the magnitude of want (f32 sums in another order).
void expect_close(const char* what, const std::vector<float>& got, const std::vector<float>& want,
                  double ulps) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double magnitude = 1.0;
  for (float x : want) magnitude = std::max(magnitude, double(std::fabs(x)));
  const double bound = ulps * FLT_EPSILON * magnitude;
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i)
    if (!(std::fabs(double(got[i]) - double(want[i])) <= bound) && bad++ < 5)
      ADD_FAILURE() << what << "[" << i << "] = " << got[i] << ", one process " << want[i]
                    << " (bound " << bound << ")";
}

TEST(DistMpi, ForwardAndBackwardEqualOneProcess) {
  Context ctx = test::make_cpu_context();
  SUCCEEDED(alibi_context_set_num_threads(ctx.get(), 1));
  Comm comm = mpi_comm();
  for (const Problem& p : problems()) {
    SCOPED_TRACE(p.name);
    Mask mask = p.make(ctx.get());
    Plan plan = make_plan(mask.get(), world_size(), p.chunk);
    const Inputs in = inputs_of(p);
    const Tensors want = single_process(ctx.get(), mask.get(), p, in);
    const Tensors got = distributed(ctx.get(), comm.get(), plan.get(), p, in);
    expect_close("out", got.out, want.out, 4);
    expect_close("dq", got.dq, want.dq, 8);
    expect_close("dk", got.dk, want.dk, 8);
    expect_close("dv", got.dv, want.dv, 8);
    expect_close("dslopes", got.dslopes, want.dslopes, 32);
    const Tensors again = distributed(ctx.get(), comm.get(), plan.get(), p, in);
    for (const auto& [a, b, what] :
         std::vector<std::tuple<const std::vector<float>*, const std::vector<float>*, const char*>>{
             {&got.out, &again.out, "out"}, {&got.lse, &again.lse, "lse"},
             {&got.dq, &again.dq, "dq"},    {&got.dk, &again.dk, "dk"},
             {&got.dv, &again.dv, "dv"},    {&got.dslopes, &again.dslopes, "dslopes"}})
      EXPECT_EQ(test::bitwise_differences(*a, *b), 0) << what << " run to run";
  }
}

// ------------------------------------------------------------------------------------ volume

// A varlen batch of many short causal sequences: this rank's forward receives (one alltoallv)
// exactly the keys and values of the tokens its rows see, counted here from the sequences and
// the plan's chunks (its own through the same alltoallv), and from the other ranks less than half
// of what an all-gather of K and V would bring.
TEST(DistMpi, EachRankReceivesOnlyTheKeysItsRowsSee) {
  std::vector<int32_t> cu{0};
  for (int s = 0; s < 48; ++s) cu.push_back(cu.back() + 3 + (s * 7) % 13);
  const int64_t t = cu.back();
  constexpr int kChunk = 8, kHq = 4, kHkv = 2;
  Context ctx = test::make_cpu_context();
  Mask mask = test::make_varlen(ctx.get(), cu, cu, true);
  Plan plan = make_plan(mask.get(), world_size(), kChunk);
  const int64_t l = local_tokens(plan.get());
  std::vector<int32_t> chunks(size_t(l / kChunk));
  SUCCEEDED(alibi_dist_plan_get_chunks(plan.get(), world_rank(), chunks.data()));
  std::vector<bool> seen(size_t(t), false);
  for (int32_t chunk : chunks)
    for (int64_t token = int64_t(chunk) * kChunk; token < (chunk + 1) * int64_t(kChunk); ++token)
      if (token < t) {
        const int32_t start = *(std::upper_bound(cu.begin(), cu.end(), int32_t(token)) - 1);
        std::fill(seen.begin() + start, seen.begin() + token + 1, true);
      }
  const int64_t row_bytes = kHkv * kDim * int64_t(sizeof(float));
  const int64_t expected = 2 * row_bytes * std::count(seen.begin(), seen.end(), true);

  Comm mpi = mpi_comm();
  test::CountingComm counting(mpi.get());
  ASSERT_NE(counting.get(), nullptr) << alibi_last_error_message();
  Tensor q = test::upload(ctx.get(), kF32, {l, kHq, kDim},
                          test::random_values(size_t(l * kHq * kDim), kF32, 5));
  Tensor kv = test::upload(ctx.get(), kF32, {l, kHkv, kDim},
                           test::random_values(size_t(l * kHkv * kDim), kF32, 6));
  Tensor out = test::poisoned(ctx.get(), kF32, {l, kHq, kDim});
  SUCCEEDED(alibi_dist_attention_forward(ctx.get(), counting.get(), plan.get(), q.get(), kv.get(),
                                         kv.get(), nullptr, out.get(), nullptr));
  ASSERT_EQ(counting.collectives().size(), 1u) << "one alltoallv per forward";
  const test::CollectiveBytes& exchange = counting.collectives()[0];
  const int64_t received =
      std::accumulate(exchange.received.begin(), exchange.received.end(), int64_t{0});
  EXPECT_EQ(received, expected);
  if (world_size() > 1) EXPECT_LT(exchange.received_from_others(world_rank()), row_bytes * t);
}

// --------------------------------------------------------------------------------- bad input

TEST(DistMpi, BadInputIsRefusedOnEveryRankAndWritesNothing) {
  Context ctx = test::make_cpu_context();
  Comm comm = mpi_comm();
  Mask mask = test::make_varlen(ctx.get(), {0, 10, 17}, {0, 10, 17}, true);
  const int size = world_size();
  Plan other = make_plan(mask.get(), size + 1, 4);
  Plan plan = make_plan(mask.get(), size, 4);
  const int64_t l = local_tokens(plan.get()), other_l = local_tokens(other.get());
  Tensor q = test::upload(ctx.get(), kF32, {other_l, 2, kDim},
                          std::vector<float>(size_t(other_l * 2 * kDim), 0.5f));
  test::PoisonedOutput out(ctx.get(), kF32, {other_l, 2, kDim});
  EXPECT_FAILS(alibi_dist_attention_forward(ctx.get(), comm.get(), other.get(), q.get(), q.get(),
                                            q.get(), nullptr, out.get(), nullptr),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_attention_forward", "plan|comm",
               "cp_size = " + std::to_string(size + 1));
  EXPECT_TRUE(out.untouched());

  Tensor longer = test::poisoned(ctx.get(), kF32, {l + 1, 2, kDim});
  test::PoisonedOutput right(ctx.get(), kF32, {l, 2, kDim});
  EXPECT_FAILS(alibi_dist_attention_forward(ctx.get(), comm.get(), plan.get(), longer.get(),
                                            longer.get(), longer.get(), nullptr, right.get(),
                                            nullptr),
               ALIBI_STATUS_SHAPE_MISMATCH, "alibi_dist_attention_forward", "q",
               std::to_string(l + 1), std::to_string(l));
  EXPECT_TRUE(right.untouched());

  Tensor global = test::poisoned(ctx.get(), kF32, {17, 2, kDim});
  EXPECT_FAILS(alibi_dist_dispatch(ctx.get(), plan.get(), size, global.get(), right.get()),
               ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_dispatch", "rank", std::to_string(size));
  EXPECT_TRUE(right.untouched());
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  if (world_rank() != 0) GTEST_FLAG_SET(brief, true);  // the other ranks print their failures only
  ::testing::InitGoogleTest(&argc, argv);
  const int failed_here = RUN_ALL_TESTS() == 0 ? 0 : 1;
  int failed_anywhere = 0;
  MPI_Allreduce(&failed_here, &failed_anywhere, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (world_rank() == 0)
    std::printf("test_dist_mpi: %d ranks: %s\n", world_size(), failed_anywhere ? "FAIL" : "PASS");
  MPI_Finalize();
  return failed_anywhere;
}
