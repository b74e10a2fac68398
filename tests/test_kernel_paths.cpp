// The CPU kernel's code paths, each against the float64 reference: the decode kernel (slices of
// at most 16 query rows), key splits (few work items over long key ranges), the scalar fallback
// for positions more than 2^31 apart, and thread counts 1..4 on each. ctest also runs every
// test with ALIBI_MAX_CPU_ISA=generic, covering the portable tile operations.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include "reference.h"
#include "test_util.h"

namespace {

using test::Context;
using test::Mask;
using test::Tensor;

struct Case {
  std::vector<int32_t> cu_q, cu_k;
  int heads_q, heads_kv, head_dim;
  alibi_dtype dtype;
  bool causal = true;
};

using test::download;
using test::upload;

struct Run {
  std::vector<float> out, lse;
};

// Runs the forward with `threads` threads; out and lse are poisoned first.
Run forward(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
            const std::vector<float>& v, int threads, const alibi_attention_params* params,
            const std::vector<int32_t>* positions_q = nullptr,
            const std::vector<int32_t>* positions_k = nullptr) {
  Context ctx = test::make_cpu_context();
  EXPECT_EQ(alibi_context_set_num_threads(ctx.get(), threads), ALIBI_STATUS_SUCCESS);
  const int64_t tq = c.cu_q.back(), tk = c.cu_k.back();
  Tensor tq_t = upload(ctx.get(), c.dtype, {tq, c.heads_q, c.head_dim}, q);
  Tensor tk_t = upload(ctx.get(), c.dtype, {tk, c.heads_kv, c.head_dim}, k);
  Tensor tv_t = upload(ctx.get(), c.dtype, {tk, c.heads_kv, c.head_dim}, v);
  Tensor out = upload(ctx.get(), c.dtype, {tq, c.heads_q, c.head_dim},
                      std::vector<float>(size_t(tq * c.heads_q * c.head_dim), test::kPoison));
  Tensor lse = upload(ctx.get(), ALIBI_DTYPE_F32, {c.heads_q, tq},
                      std::vector<float>(size_t(tq * c.heads_q), test::kPoison));
  alibi_mask_t m = nullptr;
  EXPECT_EQ(alibi_mask_create_varlen(ctx.get(), int(c.cu_q.size()) - 1, c.cu_q.data(), c.cu_k.data(),
                                     c.causal, &m), ALIBI_STATUS_SUCCESS);
  Mask mask(m);
  if (positions_q)
    EXPECT_EQ(alibi_mask_set_positions(m, positions_q->data(), positions_k->data()), ALIBI_STATUS_SUCCESS);
  const alibi_status status =
      alibi_attention_forward(ctx.get(), tq_t.get(), tk_t.get(), tv_t.get(), m, params, out.get(), lse.get());
  EXPECT_EQ(status, ALIBI_STATUS_SUCCESS) << alibi_last_error_message();
  return {download(out.get(), c.dtype, tq * c.heads_q * c.head_dim),
          download(lse.get(), ALIBI_DTYPE_F32, tq * c.heads_q)};
}

ref::Problem problem(const Case& c, const std::vector<float>& q, const std::vector<float>& k,
                     const std::vector<float>& v, const std::vector<float>& slopes) {
  ref::Problem p;
  p.total_q = c.cu_q.back();
  p.total_k = c.cu_k.back();
  p.heads_q = c.heads_q;
  p.heads_kv = c.heads_kv;
  p.head_dim = c.head_dim;
  p.q.assign(q.begin(), q.end());
  p.k.assign(k.begin(), k.end());
  p.v.assign(v.begin(), v.end());
  p.visible = ref::from_slices(p.total_q, p.total_k, ref::varlen_slices(c.cu_q, c.cu_k, c.causal));
  p.positions = ref::varlen_positions(c.cu_q, c.cu_k);
  p.slopes = ref::slopes_of_rows(slopes, p.total_q);
  p.scale = 1.0 / std::sqrt(double(c.head_dim));
  return p;
}

// f32: accumulation error well under 1e-5 relative; halves add one output rounding.
double tolerance(double want, alibi_dtype dtype) {
  const double unit = dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -10) : dtype == ALIBI_DTYPE_BF16 ? std::ldexp(1.0, -7) : 0.0;
  return 2e-5 + (1e-5 + unit) * std::fabs(want);
}

void expect_matches(const Run& got, const ref::Result& want, alibi_dtype dtype) {
  ASSERT_EQ(got.out.size(), want.out.size());
  int bad = 0;
  std::string first;
  for (size_t i = 0; i < want.out.size(); ++i)
    if (!(std::fabs(got.out[i] - want.out[i]) <= tolerance(want.out[i], dtype)) && bad++ == 0)
      first = "out[" + std::to_string(i) + "] = " + std::to_string(got.out[i]) + ", want " + std::to_string(want.out[i]);
  for (size_t i = 0; i < want.lse.size(); ++i) {
    const bool empty = std::isinf(want.lse[i]);
    const bool ok = empty ? got.lse[i] == -INFINITY : std::fabs(got.lse[i] - want.lse[i]) <= tolerance(want.lse[i], ALIBI_DTYPE_F32);
    if (!ok && bad++ == 0) first = "lse[" + std::to_string(i) + "] = " + std::to_string(got.lse[i]);
  }
  EXPECT_EQ(bad, 0) << first;
}

void expect_bitwise_equal(const Run& a, const Run& b) {
  ASSERT_EQ(a.out.size(), b.out.size());
  EXPECT_EQ(0, std::memcmp(a.out.data(), b.out.data(), a.out.size() * 4));
  EXPECT_EQ(0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * 4));
}

// Checks one case against the reference for threads 1..4, all bitwise identical.
void check_case(const Case& c, const alibi_attention_params* params = nullptr,
                const std::vector<float>* slopes = nullptr, uint32_t seed = 7) {
  const size_t nq = size_t(c.cu_q.back()) * c.heads_q * c.head_dim;
  const size_t nk = size_t(c.cu_k.back()) * c.heads_kv * c.head_dim;
  const auto q = test::random_values(nq, c.dtype, seed), k = test::random_values(nk, c.dtype, seed + 1),
             v = test::random_values(nk, c.dtype, seed + 2);
  const ref::Result want = ref::attention(problem(c, q, k, v, slopes ? *slopes : ref::formula_slopes(c.heads_q, 8.0f)));
  const Run first = forward(c, q, k, v, 1, params);
  expect_matches(first, want, c.dtype);
  for (int threads = 2; threads <= 4; ++threads) {
    SCOPED_TRACE("threads " + std::to_string(threads));
    expect_bitwise_equal(forward(c, q, k, v, threads, params), first);
  }
}

const alibi_dtype kDtypes[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};

TEST(KernelDecode, FewRowsPerSequenceAllDtypesAndGqa) {
  // Lq of 1..8 per sequence; an empty key set, Lq > Lk, long keys.
  const Case base{{0, 1, 3, 7, 15, 16, 17}, {0, 300, 302, 1500, 1507, 1507, 1510}, 6, 2, 37, ALIBI_DTYPE_F32};
  for (alibi_dtype dtype : kDtypes) {
    SCOPED_TRACE(int(dtype));
    Case c = base;
    c.dtype = dtype;
    check_case(c);
    c.causal = false;
    check_case(c);
  }
}

TEST(KernelDecode, WideHeadsInGroupsOfFourAndShortSteps) {
  // 32 query heads over 8 kv heads, head_dim 128: the vector path with no remainders; keys from
  // 1 (a step shorter than the 8 tokens scored together) to 600 (many steps of keys).
  const Case base{{0, 1, 2, 3, 5}, {0, 1, 40, 640, 643}, 32, 8, 128, ALIBI_DTYPE_F32};
  for (alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_BF16}) {
    SCOPED_TRACE(int(dtype));
    Case c = base;
    c.dtype = dtype;
    check_case(c);
  }
}

TEST(KernelDecode, WideGroupsOfQueryHeads) {
  // 8 and 32 query heads per kv head (bf16 q.k by AMX tiles on Intel, in chunks of 16 heads),
  // keys from 1 to 600, an odd head_dim.
  for (alibi_dtype dtype : kDtypes)
    for (const Case& c : {Case{{0, 1, 2, 3}, {0, 1, 40, 640}, 16, 2, 128, dtype},
                          Case{{0, 1, 3}, {0, 77, 300}, 32, 1, 65, dtype}}) {
      SCOPED_TRACE("dtype " + std::to_string(int(dtype)) + ", group " + std::to_string(c.heads_q / c.heads_kv));
      check_case(c);
    }
}

TEST(KernelDecode, RowsOfASliceAsQueryHeads) {
  // A slice's rows are taken as query heads of one row: rows x group query heads per kv head
  // (GQA 16/4 with 4, 2 and 11 rows: 16, 8, 44, the AMX q.k on Intel for bf16; MHA with 3, 5 and
  // 16 rows: groups of 3, 5, 16), causal (each row sees one key more than the row before) or not;
  // one slice sees fewer keys than it has rows.
  for (alibi_dtype dtype : kDtypes)
    for (bool causal : {true, false})
      for (const Case& c : {Case{{0, 4, 6, 17}, {0, 300, 302, 500}, 16, 4, 72, dtype, causal},
                            Case{{0, 3, 8, 24}, {0, 41, 45, 645}, 8, 8, 64, dtype, causal}}) {
        SCOPED_TRACE("dtype " + std::to_string(int(dtype)) + ", heads " + std::to_string(c.heads_q) +
                     (causal ? ", causal" : ", full"));
        check_case(c);
      }
}

TEST(KernelDecode, HeadDimsCutIntoEveryRegisterBlock) {
  // A head's values are accumulated 64, 32 and 8 at a time, then a tail of 1..7: 3 (tail only),
  // 8, 80 (64 + 8 + 8), 100 (64 + 32 + tail 4) and 256 (4 x 64); k and v of every dtype are
  // widened in registers.
  for (alibi_dtype dtype : kDtypes)
    for (int dim : {3, 8, 80, 100, 256}) {
      SCOPED_TRACE("dtype " + std::to_string(int(dtype)) + ", dim " + std::to_string(dim));
      check_case(Case{{0, 1, 3}, {0, 29, 300}, 4, 2, dim, dtype});
    }
}

TEST(KernelDecode, AttnBiasWithMaskedCellsAndRows) {
  // Every 5th bias cell is -inf and query row 1 sees only -inf: out 0, lse -inf there.
  const Case c{{0, 1, 2, 4}, {0, 90, 200, 333}, 6, 3, 40, ALIBI_DTYPE_F32};
  const int64_t tq = c.cu_q.back(), tk = c.cu_k.back();
  std::vector<float> bias = test::random_floats(size_t(c.heads_q * tq * tk), 11, -2.f, 2.f);
  for (size_t cell = 0; cell < bias.size(); ++cell)
    if (cell % 5 == 0 || (cell / size_t(tk)) % size_t(tq) == 1) bias[cell] = -INFINITY;
  Context ctx = test::make_cpu_context();
  Tensor bias_tensor = upload(ctx.get(), ALIBI_DTYPE_F32, {c.heads_q, tq, tk}, bias);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.attn_bias = bias_tensor.get();
  const size_t nq = size_t(tq) * c.heads_q * c.head_dim, nk = size_t(tk) * c.heads_kv * c.head_dim;
  const auto q = test::random_values(nq, c.dtype, 12), k = test::random_values(nk, c.dtype, 13), v = test::random_values(nk, c.dtype, 14);
  ref::Problem p = problem(c, q, k, v, ref::formula_slopes(c.heads_q, 8.0f));
  p.bias_heads = c.heads_q;
  p.attn_bias.assign(bias.begin(), bias.end());
  const ref::Result want = ref::attention(p);
  for (int threads = 1; threads <= 4; ++threads) {
    SCOPED_TRACE(threads);
    expect_matches(forward(c, q, k, v, threads, &params), want, c.dtype);
  }
}

TEST(KernelDecode, SoftcapAndPerSequenceSlopes) {
  const Case c{{0, 1, 2, 4}, {0, 700, 701, 1333}, 4, 4, 64, ALIBI_DTYPE_BF16};
  std::vector<float> per_sequence(12);
  for (size_t i = 0; i < per_sequence.size(); ++i) per_sequence[i] = 0.01f * float(i + 1);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.softcap = 3.0f;
  params.slopes = per_sequence.data();
  params.slopes_per_batch = 1;
  const size_t nq = 4 * 4 * 64, nk = 1333 * 4 * 64;
  const auto q = test::random_values(nq, c.dtype, 3), k = test::random_values(nk, c.dtype, 4), v = test::random_values(nk, c.dtype, 5);
  ref::Problem p = problem(c, q, k, v, {0, 0, 0, 0});
  p.slopes = ref::slopes_of_sequences(per_sequence, 4, c.cu_q);
  p.softcap = 3.0;
  expect_matches(forward(c, q, k, v, 2, &params), ref::attention(p), c.dtype);
}

TEST(KernelSplit, FewItemsSplitTheirKeys) {
  // One block of 100 rows and one head: the keys are split and merged by LSE.
  for (alibi_dtype dtype : kDtypes) {
    SCOPED_TRACE(int(dtype));
    check_case({{0, 100}, {0, 3001}, 1, 1, 48, dtype, false});
    check_case({{0, 97}, {0, 2500}, 2, 1, 64, dtype, true});
  }
}

TEST(KernelTiles, RowBlocksAndKeyBlocksWithRemainders) {
  // Row blocks are 256 rows and key blocks 64: slices start and end inside blocks and cross them.
  check_case({{0, 129, 260, 391, 700}, {0, 129, 389, 520, 901}, 3, 1, 80, ALIBI_DTYPE_F32, true});
  check_case({{0, 255, 257}, {0, 257, 400}, 2, 2, 96, ALIBI_DTYPE_BF16, false});
}

TEST(KernelPositions, DistancesBeyondInt32UseTheExactPath) {
  const Case c{{0, 40}, {0, 70}, 2, 2, 16, ALIBI_DTYPE_F32, false};
  std::vector<int32_t> qpos(40), kpos(70);
  for (int i = 0; i < 40; ++i) qpos[size_t(i)] = 2000000000 - i;
  for (int j = 0; j < 70; ++j) kpos[size_t(j)] = -2000000000 + 3 * j;
  const std::vector<float> slopes{1e-9f, 2e-9f};
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.slopes = slopes.data();
  const auto q = test::random_values(40 * 32, c.dtype, 9), k = test::random_values(70 * 32, c.dtype, 10),
             v = test::random_values(70 * 32, c.dtype, 11);
  ref::Problem p = problem(c, q, k, v, slopes);
  p.positions.q = qpos;
  p.positions.k = kpos;
  expect_matches(forward(c, q, k, v, 2, &params, &qpos, &kpos), ref::attention(p), c.dtype);
}

}  // namespace
