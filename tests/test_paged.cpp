// alibi_attention_forward_paged against the float64 reference (reference.h) on the gathered keys,
// and against alibi_attention_forward on the gathered contiguous keys. Block ids are shuffled;
// blocks no sequence uses and the rows past each sequence's last key hold kUnusedValue, so
// reading one would show. Outputs are poisoned before every call.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "error_check.h"
#include "reference.h"
#include "test_util.h"

namespace {

using test::Tensor;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;
constexpr float kUnusedValue = 1000.0f;  // exact in every dtype; a score it enters dominates
constexpr const char* kFunction = "alibi_attention_forward_paged";

// ------------------------------------------------------------------------------------- inputs

struct PagedShape {
  std::string name;
  std::vector<std::pair<int32_t, int32_t>> lengths;  // (Lq, Lk) per sequence
  int block_size = 16;
  int heads_q = 4, heads_kv = 2, head_dim = 16;
  bool causal = true;
  int window_left = -1;
  bool interleaved = false;  // K and V of a token side by side in one pool
};

// GoogleTest prints a case's parameter by its name.
void PrintTo(const PagedShape& s, std::ostream* os) { *os << s.name; }

// A paged cache: (num_blocks, block_size, 2, Hkv, D), k then v of each token, plus the same
// keys and values gathered per sequence, packed as alibi_attention_forward takes them.
struct PagedInputs {
  PagedShape shape;
  alibi_dtype dtype = kF32;
  test::Sequences seqs;  // cu_q, and cu_k of the gathered keys
  int64_t num_blocks = 0, max_blocks = 0;
  std::vector<int32_t> table;  // (B, max_blocks), -1 in the slots a sequence does not use
  std::vector<int32_t> seqlens_k;
  std::vector<float> q, pool, k, v;
};

// The rows of q (an error test may change cu_seqlens_q alone).
int64_t total_q(const PagedInputs& in) {
  return int64_t(in.q.size()) / (in.shape.heads_q * in.shape.head_dim);
}

int64_t blocks_of(int32_t keys, int block_size) { return (keys + block_size - 1) / block_size; }

// Each sequence's blocks, in key order, drawn from a shuffled pool with two spare blocks.
void assign_blocks(PagedInputs& in, std::mt19937& rng) {
  const PagedShape& s = in.shape;
  int64_t used = 0;
  for (const auto& [lq, lk] : s.lengths) {
    used += blocks_of(lk, s.block_size);
    in.max_blocks = std::max(in.max_blocks, blocks_of(lk, s.block_size) + 1);
    in.seqlens_k.push_back(lk);
  }
  in.num_blocks = used + 2;
  std::vector<int32_t> ids(size_t(in.num_blocks));
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  in.table.assign(s.lengths.size() * size_t(in.max_blocks), -1);
  size_t next = 0;
  for (size_t b = 0; b < s.lengths.size(); ++b)
    for (int64_t j = 0; j < blocks_of(s.lengths[b].second, s.block_size); ++j)
      in.table[b * size_t(in.max_blocks) + size_t(j)] = ids[next++];
}

// Element index in the pool of head h of token t of sequence b; side 0 is k, 1 is v.
size_t pool_index(const PagedInputs& in, size_t b, int64_t t, int side, int h) {
  const PagedShape& s = in.shape;
  const int64_t block = in.table[b * size_t(in.max_blocks) + size_t(t / s.block_size)];
  const int64_t token = block * s.block_size + t % s.block_size;
  return size_t(((token * 2 + side) * s.heads_kv + h) * s.head_dim);
}

PagedInputs paged_inputs(const PagedShape& s, alibi_dtype dtype, uint32_t seed) {
  PagedInputs in;
  in.shape = s;
  in.dtype = dtype;
  in.seqs = test::sequences(s.lengths);
  std::mt19937 rng(seed);
  assign_blocks(in, rng);
  const size_t token_values = size_t(s.heads_kv * s.head_dim);
  in.q = test::random_values(size_t(in.seqs.total_q() * s.heads_q * s.head_dim), dtype, seed);
  in.k = test::random_values(size_t(in.seqs.total_k()) * token_values, dtype, seed + 1);
  in.v = test::random_values(size_t(in.seqs.total_k()) * token_values, dtype, seed + 2);
  in.pool.assign(size_t(in.num_blocks * s.block_size * 2) * token_values, kUnusedValue);
  for (size_t b = 0; b < s.lengths.size(); ++b)
    for (int64_t t = 0; t < s.lengths[b].second; ++t)
      for (int h = 0; h < s.heads_kv; ++h)
        for (int d = 0; d < s.head_dim; ++d) {
          const size_t gathered = (size_t(in.seqs.cu_k[b] + t) * s.heads_kv + h) * s.head_dim + d;
          in.pool[pool_index(in, b, t, 0, h) + d] = in.k[gathered];
          in.pool[pool_index(in, b, t, 1, h) + d] = in.v[gathered];
        }
  return in;
}

// --------------------------------------------------------------------------------- reference

// SPEC section 5, straight from its definition.
ref::Visibility paged_visibility(const PagedInputs& in) {
  const test::Sequences& seqs = in.seqs;
  ref::Visibility vis(seqs.total_q(), seqs.total_k());
  for (int b = 0; b < seqs.batch(); ++b) {
    const int64_t lq = seqs.cu_q[b + 1] - seqs.cu_q[b], lk = seqs.cu_k[b + 1] - seqs.cu_k[b];
    for (int64_t i = 0; i < lq; ++i)
      for (int64_t t = 0; t < lk; ++t) {
        const int64_t qpos = i + lk - lq;
        const bool causal_ok = !in.shape.causal || t <= qpos;
        const bool window_ok = in.shape.window_left < 0 || t >= qpos - in.shape.window_left;
        if (causal_ok && window_ok) vis.set(seqs.cu_q[b] + i, seqs.cu_k[b] + t);
      }
  }
  return vis;
}

ref::Problem reference_problem(const PagedInputs& in) {
  const PagedShape& s = in.shape;
  ref::Problem p;
  p.total_q = in.seqs.total_q();
  p.total_k = in.seqs.total_k();
  p.heads_q = s.heads_q;
  p.heads_kv = s.heads_kv;
  p.head_dim = s.head_dim;
  p.q = test::to_double(in.q);
  p.k = test::to_double(in.k);
  p.v = test::to_double(in.v);
  p.visible = paged_visibility(in);
  p.positions = ref::varlen_positions(in.seqs.cu_q, in.seqs.cu_k);
  p.slopes = ref::slopes_of_rows(ref::formula_slopes(s.heads_q, 8.0f), p.total_q);
  p.scale = 1.0 / std::sqrt(double(s.head_dim));
  return p;
}

// ------------------------------------------------------------------------------- the call

Tensor int_tensor(alibi_context_t ctx, const std::vector<int64_t>& shape,
                  const std::vector<int32_t>& values) {
  Tensor t = test::create_tensor(ctx, ALIBI_DTYPE_I32, shape);
  if (t && !values.empty())
    SUCCEEDED(alibi_tensor_copy_from_host(t.get(), values.data(), values.size() * sizeof(int32_t)));
  return t;
}

Tensor wrap(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape,
            const std::vector<int64_t>& strides, uint8_t* data) {
  alibi_tensor_t t = nullptr;
  SUCCEEDED(alibi_tensor_wrap(ctx, dtype, int(shape.size()), shape.data(), strides.data(), data, &t));
  return Tensor(t);
}

// Every tensor of one call on a context's device; outputs poisoned.
struct PagedTensors {
  test::DeviceBuffer pool;
  Tensor q, k_cache, v_cache, table, cu_q, seqlens_k, out, lse;

  PagedTensors(alibi_context_t ctx, const PagedInputs& in)
      : pool(ctx, in.dtype, test::element_bytes(in.dtype), test::encode(in.pool, in.dtype)) {
    const PagedShape& s = in.shape;
    const int64_t tq = total_q(in), batch = in.seqs.batch();
    q = test::upload(ctx, in.dtype, {tq, s.heads_q, s.head_dim}, in.q);
    make_caches(ctx, in);
    table = int_tensor(ctx, {batch, in.max_blocks}, in.table);
    cu_q = int_tensor(ctx, {batch + 1}, in.seqs.cu_q);
    seqlens_k = int_tensor(ctx, {batch}, in.seqlens_k);
    out = test::poisoned(ctx, in.dtype, {tq, s.heads_q, s.head_dim});
    lse = test::poisoned(ctx, kF32, {s.heads_q, tq});
  }

  // Views of the pool, or, not interleaved, contiguous copies of its k and v halves.
  void make_caches(alibi_context_t ctx, const PagedInputs& in) {
    const PagedShape& s = in.shape;
    const std::vector<int64_t> shape{in.num_blocks, s.block_size, s.heads_kv, s.head_dim};
    const int64_t token = 2 * s.heads_kv * s.head_dim;
    const std::vector<int64_t> strides{s.block_size * token, token, s.head_dim, 1};
    const size_t half = size_t(s.heads_kv * s.head_dim) * test::element_bytes(in.dtype);
    if (in.shape.interleaved) {
      k_cache = wrap(ctx, in.dtype, shape, strides, pool.data());
      v_cache = wrap(ctx, in.dtype, shape, strides, pool.data() + half);
      return;
    }
    std::vector<float> k, v;
    for (size_t at = 0; at < in.pool.size(); at += size_t(token)) {
      k.insert(k.end(), in.pool.begin() + long(at), in.pool.begin() + long(at) + token / 2);
      v.insert(v.end(), in.pool.begin() + long(at) + token / 2, in.pool.begin() + long(at) + token);
    }
    k_cache = test::upload(ctx, in.dtype, shape, k);
    v_cache = test::upload(ctx, in.dtype, shape, v);
  }

  alibi_status call(alibi_context_t ctx, const PagedShape& s,
                    const alibi_attention_params* params = nullptr) const {
    return alibi_attention_forward_paged(ctx, q.get(), k_cache.get(), v_cache.get(), table.get(),
                                         cu_q.get(), seqlens_k.get(), s.causal, s.window_left,
                                         params, out.get(), lse.get());
  }
};

struct Outputs {
  std::vector<float> out, lse;
};

Outputs read_outputs(const PagedTensors& t, const PagedInputs& in) {
  const PagedShape& s = in.shape;
  const int64_t tq = total_q(in);
  return {test::download(t.out.get(), in.dtype, tq * s.heads_q * s.head_dim),
          test::download(t.lse.get(), kF32, s.heads_q * tq)};
}

Outputs forward_paged(alibi_context_t ctx, const PagedInputs& in,
                      const alibi_attention_params* params = nullptr) {
  const PagedTensors tensors(ctx, in);
  if (!SUCCEEDED(tensors.call(ctx, in.shape, params))) return {};
  return read_outputs(tensors, in);
}

// alibi_attention_forward on the gathered keys with the equivalent varlen or sliding window mask.
Outputs forward_gathered(alibi_context_t ctx, const PagedInputs& in) {
  const PagedShape& s = in.shape;
  const int64_t tq = in.seqs.total_q(), tk = in.seqs.total_k();
  const Tensor q = test::upload(ctx, in.dtype, {tq, s.heads_q, s.head_dim}, in.q);
  const Tensor k = test::upload(ctx, in.dtype, {tk, s.heads_kv, s.head_dim}, in.k);
  const Tensor v = test::upload(ctx, in.dtype, {tk, s.heads_kv, s.head_dim}, in.v);
  const Tensor out = test::poisoned(ctx, in.dtype, {tq, s.heads_q, s.head_dim});
  const Tensor lse = test::poisoned(ctx, kF32, {s.heads_q, tq});
  const test::Mask mask =
      s.window_left < 0
          ? test::make_varlen(ctx, in.seqs.cu_q, in.seqs.cu_k, s.causal)
          : test::make_sliding_window(ctx, in.seqs.cu_q, in.seqs.cu_k, s.window_left, s.causal ? 0 : -1);
  if (!SUCCEEDED(alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask.get(), nullptr,
                                         out.get(), lse.get())))
    return {};
  return {test::download(out.get(), in.dtype, tq * s.heads_q * s.head_dim),
          test::download(lse.get(), kF32, s.heads_q * tq)};
}

// ------------------------------------------------------------------------------------ checks

// As tests/test_attention.cpp: f32 accumulation of exact inputs (2e-5 absolute, 1e-5 relative),
// plus a unit in the last place of a rounded f16/bf16 output.
double tolerance(double want, alibi_dtype dtype) {
  const double rounding = dtype == kF16 ? std::ldexp(1.0, -10) : dtype == kBF16 ? std::ldexp(1.0, -7) : 0.0;
  return 2e-5 + (1e-5 + rounding) * std::fabs(want);
}

// A row the expectation leaves empty must be exactly +0.0 with lse -inf.
int count_mismatches(const Outputs& got, const ref::Result& want, const PagedInputs& in,
                     std::string& report) {
  const PagedShape& s = in.shape;
  const int64_t tq = in.seqs.total_q();
  int bad = 0;
  auto mismatch = [&](const char* what, int h, int64_t i, double x, double w) {
    if (bad++ < 10)
      report += std::string(what) + " head " + std::to_string(h) + " row " + std::to_string(i) +
                ": got " + std::to_string(x) + ", want " + std::to_string(w) + "\n";
  };
  for (int h = 0; h < s.heads_q; ++h)
    for (int64_t i = 0; i < tq; ++i) {
      const double want_lse = want.lse[size_t(h * tq + i)];
      const float got_lse = got.lse[size_t(h * tq + i)];
      const bool empty = std::isinf(want_lse) && want_lse < 0;
      if (empty ? !(std::isinf(got_lse) && got_lse < 0) : !(std::fabs(got_lse - want_lse) <= tolerance(want_lse, kF32)))
        mismatch("lse", h, i, got_lse, want_lse);
      for (int d = 0; d < s.head_dim; ++d) {
        const size_t at = size_t((i * s.heads_q + h) * s.head_dim + d);
        const bool ok = empty ? test::float_to_bits(got.out[at]) == 0u
                              : std::fabs(got.out[at] - want.out[at]) <= tolerance(want.out[at], in.dtype);
        if (!ok) mismatch("out", h, i, got.out[at], want.out[at]);
      }
    }
  return bad;
}

void expect_matches(const Outputs& got, const ref::Result& want, const PagedInputs& in) {
  ASSERT_EQ(got.out.size(), want.out.size()) << "no output";
  ASSERT_EQ(got.lse.size(), want.lse.size()) << "no lse";
  std::string report;
  EXPECT_EQ(count_mismatches(got, want, in, report), 0) << report;
}

ref::Result as_result(const Outputs& o) { return {test::to_double(o.out), test::to_double(o.lse)}; }

void set_threads(alibi_context_t ctx, int threads) {
  SUCCEEDED(alibi_context_set_num_threads(ctx, threads));
}

// ------------------------------------------------------------------------------------- cases

std::vector<PagedShape> reference_cases() {
  std::vector<PagedShape> cases;
  auto add = [&](PagedShape s) { cases.push_back(std::move(s)); };
  add({"decode", {{1, 37}, {1, 16}, {1, 1}, {1, 100}}, 16});
  add({"decode_bs1", {{1, 9}, {1, 1}, {1, 20}}, 1, 4, 4, 8, true, -1, true});
  add({"decode_bs3_mqa", {{1, 10}, {1, 3}, {2, 7}}, 3, 4, 1, 16});
  add({"decode_long_split", {{1, 900}, {2, 700}}, 64, 2, 2, 32, true, -1, true});
  add({"speculative_bs3", {{4, 50}, {8, 8}, {3, 4}}, 3, 2, 1, 8});
  // Groups of 8 and 20 query heads per kv head (AMX tiles on Intel: 16-head chunks), odd dims.
  add({"decode_group8", {{1, 70}, {3, 40}, {1, 17}}, 16, 16, 2, 40});
  add({"speculative_group20_odd_dim", {{2, 35}, {1, 19}, {5, 6}}, 3, 20, 1, 33, true, -1, true});
  add({"chunked_prefill", {{40, 90}, {300, 300}, {17, 17}}, 16, 2, 2, 16, true, -1, true});
  add({"chunked_prefill_key_splits", {{20, 1500}, {1, 300}}, 16, 2, 1, 16});
  add({"mixed_with_empty", {{1, 50}, {64, 200}, {0, 30}, {3, 3}, {0, 0}, {5, 40}}, 3});
  add({"mixed_bs64", {{1, 130}, {20, 64}, {1, 63}, {33, 65}}, 64, 8, 2, 8, true, -1, true});
  add({"window_decode", {{1, 100}, {1, 20}, {2, 64}}, 16, 4, 2, 16, true, 20});
  add({"window_prefill", {{30, 120}, {10, 10}, {1, 7}}, 16, 2, 1, 8, true, 5, true});
  add({"window_zero", {{12, 40}, {1, 5}}, 3, 2, 2, 8, true, 0});
  add({"full_window", {{1, 50}, {20, 60}}, 16, 2, 2, 16, false, 5});
  add({"full_window_more_queries", {{12, 5}, {3, 9}}, 3, 2, 1, 8, false, 2, true});
  add({"full", {{9, 4}, {1, 30}, {16, 16}}, 16, 4, 4, 8, false});
  add({"no_keys", {{2, 0}, {0, 0}, {1, 0}}, 16, 2, 1, 8, false});
  return cases;
}

using ReferenceParam = std::tuple<PagedShape, alibi_dtype>;

class PagedReferenceTest : public test::DeviceTest<std::tuple<alibi_device, ReferenceParam>> {
 protected:
  const PagedShape& shape() const { return std::get<0>(std::get<1>(GetParam())); }
  alibi_dtype dtype() const { return std::get<1>(std::get<1>(GetParam())); }
  PagedInputs inputs(uint32_t seed = 17) const { return paged_inputs(shape(), dtype(), seed); }
};

TEST_P(PagedReferenceTest, MatchesReferenceOnGatheredKeys) {
  const PagedInputs in = inputs();
  expect_matches(forward_paged(ctx_.get(), in), ref::attention(reference_problem(in)), in);
}

// Where the sliding window mask and the paged rule agree (Lq <= Lk, or no window).
bool has_equivalent_mask(const PagedShape& s) {
  return s.window_left < 0 || std::all_of(s.lengths.begin(), s.lengths.end(),
                                          [](const auto& l) { return l.first <= l.second; });
}

TEST_P(PagedReferenceTest, EqualsForwardOnGatheredKeys) {
  if (!has_equivalent_mask(shape())) GTEST_SKIP() << "no mask of alibi_attention_forward is equivalent";
  const PagedInputs in = inputs(5);
  const Outputs gathered = forward_gathered(ctx_.get(), in);
  ASSERT_FALSE(gathered.out.empty() && in.seqs.total_q() > 0);
  expect_matches(forward_paged(ctx_.get(), in), as_result(gathered), in);
}

TEST_P(PagedReferenceTest, BitwiseIndependentOfThreadCount) {
  const PagedInputs in = inputs(9);
  set_threads(ctx_.get(), 1);
  const Outputs one = forward_paged(ctx_.get(), in);
  for (int threads = 2; threads <= 4; ++threads) {
    set_threads(ctx_.get(), threads);
    const Outputs many = forward_paged(ctx_.get(), in);
    EXPECT_EQ(test::bitwise_differences(many.out, one.out), 0) << threads << " threads: out";
    EXPECT_EQ(test::bitwise_differences(many.lse, one.lse), 0) << threads << " threads: lse";
  }
}

std::string reference_case_name(const ReferenceParam& p) {
  return std::get<0>(p).name + "_" + test::dtype_name(std::get<1>(p));
}

INSTANTIATE_TEST_SUITE_P(Paged, PagedReferenceTest,
                         ::testing::Combine(test::kDevices,
                                            ::testing::Combine(::testing::ValuesIn(reference_cases()),
                                                               ::testing::Values(kF32, kF16, kBF16))),
                         test::device_case_name<ReferenceParam>(reference_case_name));

// ------------------------------------------------------------------------------------ params

class PagedParamsTest : public test::DeviceTest<> {};

TEST_P(PagedParamsTest, AppliesScaleSoftcapAndPerSequenceSlopes) {
  const PagedShape s{"params", {{1, 40}, {20, 33}, {2, 2}}, 16, 2, 1, 8};
  const PagedInputs in = paged_inputs(s, kF32, 3);
  const std::vector<float> slopes{0.5f, 0.25f, 0.125f, 0.0f, 1.0f, 0.75f};  // b * Hq + h
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.softmax_scale = 0.3f;
  params.softcap = 2.0f;
  params.slopes = slopes.data();
  params.slopes_per_batch = 1;
  ref::Problem p = reference_problem(in);
  p.scale = 0.3;
  p.softcap = 2.0;
  p.slopes = ref::slopes_of_sequences(slopes, s.heads_q, in.seqs.cu_q);
  expect_matches(forward_paged(ctx_.get(), in, &params), ref::attention(p), in);
}

TEST_P(PagedParamsTest, UsesTensorParallelSlopes) {
  const PagedShape s{"tp", {{1, 40}, {12, 33}}, 16, 2, 2, 8};
  const PagedInputs in = paged_inputs(s, kF32, 4);
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.total_heads = 8;
  params.head_offset = 4;
  ref::Problem p = reference_problem(in);
  const std::vector<float> all = ref::formula_slopes(8, 8.0f);
  p.slopes = ref::slopes_of_rows({all[4], all[5]}, p.total_q);
  expect_matches(forward_paged(ctx_.get(), in, &params), ref::attention(p), in);
}

TEST_P(PagedParamsTest, LseIsOptional) {
  const PagedShape s{"no_lse", {{1, 20}, {9, 9}}, 3};
  const PagedInputs in = paged_inputs(s, kF32, 6);
  const PagedTensors t(ctx_.get(), in);
  ASSERT_OK(alibi_attention_forward_paged(ctx_.get(), t.q.get(), t.k_cache.get(), t.v_cache.get(),
                                          t.table.get(), t.cu_q.get(), t.seqlens_k.get(), 1, -1,
                                          nullptr, t.out.get(), nullptr));
  const Outputs got = read_outputs(t, in);
  const ref::Result want = ref::attention(reference_problem(in));
  for (size_t i = 0; i < want.out.size(); ++i)
    EXPECT_NEAR(got.out[i], want.out[i], tolerance(want.out[i], kF32)) << "element " << i;
}

TEST_P(PagedParamsTest, AttnBiasIsUnsupportedAndNothingIsWritten) {
  const PagedShape s{"attn_bias", {{1, 20}}, 16};
  const PagedInputs in = paged_inputs(s, kF32, 7);
  const PagedTensors t(ctx_.get(), in);
  const Tensor bias = test::upload(ctx_.get(), kF32, {1, 1, 20}, std::vector<float>(20, 0.0f));
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  params.attn_bias = bias.get();
  EXPECT_FAILS(t.call(ctx_.get(), s, &params), ALIBI_STATUS_UNSUPPORTED, kFunction, "attn_bias",
               "not NULL");
  const Outputs after = read_outputs(t, in);
  EXPECT_TRUE(std::all_of(after.out.begin(), after.out.end(), [](float x) { return x == test::kPoison; }));
}

// max_blocks * block_size past int64 (a stride-0 view of one id): validation must not overflow.
TEST_P(PagedParamsTest, HugeTableRowsAreFine) {
  if (device() != ALIBI_DEVICE_CPU)
    GTEST_SKIP() << "wraps a host int as the table; a CUDA context would copy all 2^60 entries";
  const PagedShape s{"huge_rows", {{1, 5}, {2, 3}}, 1024, 2, 1, 8};
  PagedInputs in = paged_inputs(s, kF32, 8);
  const PagedTensors t(ctx_.get(), in);
  int32_t block = in.table[0];
  const int64_t shape[2] = {2, int64_t(1) << 59}, strides[2] = {0, 0};  // 2^59 x 1024 keys
  alibi_tensor_t table = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx_.get(), ALIBI_DTYPE_I32, 2, shape, strides, &block, &table));
  const Tensor owned(table);
  ASSERT_OK(alibi_attention_forward_paged(ctx_.get(), t.q.get(), t.k_cache.get(), t.v_cache.get(),
                                          table, t.cu_q.get(), t.seqlens_k.get(), 1, -1, nullptr,
                                          t.out.get(), t.lse.get()));
}

// No sequences (an empty batch: B = 0, total_q = 0) is a call that succeeds, whatever max_blocks,
// the caches, causal and the window; the bindings' array forms do as this.
TEST_P(PagedParamsTest, NoSequencesSucceed) {
  alibi_context_t ctx = ctx_.get();
  const Tensor q = test::create_tensor(ctx, kF32, {0, 2, 8}), out = test::create_tensor(ctx, kF32, {0, 2, 8});
  const Tensor cache = test::create_tensor(ctx, kF32, {3, 4, 1, 8});
  const Tensor lse = test::create_tensor(ctx, kF32, {2, 0});
  const Tensor cu_q = int_tensor(ctx, {1}, {0}), seqlens_k = int_tensor(ctx, {0}, {});
  for (const int64_t max_blocks : {0, 5}) {
    const Tensor table = int_tensor(ctx, {0, max_blocks}, {});
    ASSERT_OK(alibi_attention_forward_paged(ctx, q.get(), cache.get(), cache.get(), table.get(),
                                            cu_q.get(), seqlens_k.get(), 1, -1, nullptr, out.get(),
                                            lse.get()));
    ASSERT_OK(alibi_attention_forward_paged(ctx, q.get(), cache.get(), cache.get(), table.get(),
                                            cu_q.get(), seqlens_k.get(), 0, 3, nullptr, out.get(),
                                            nullptr));
  }
}

INSTANTIATE_TEST_SUITE_P(Paged, PagedParamsTest, test::kDevices, test::name_by_device);

// ---------------------------------------------------------------------------------- bad tables

// Validation runs on every device: the tables are read to the host first.
class PagedErrorTest : public test::DeviceTest<> {
 protected:
  // Two sequences of block size 4: (1 query, 10 keys: 3 blocks) and (3 queries, 6 keys: 2 blocks).
  PagedInputs inputs() const {
    return paged_inputs({"bad", {{1, 10}, {3, 6}}, 4, 2, 1, 8}, kF32, 11);
  }

  // The call fails with status, the message names argument and shows values, and out and lse
  // keep their poison.
  void expect_rejected(const PagedInputs& in, alibi_status status, const std::string& argument,
                       const std::vector<std::string>& values) {
    const PagedTensors t(ctx_.get(), in);
    test::expect_error(t.call(ctx_.get(), in.shape), status, kFunction, argument, values);
    const Outputs after = read_outputs(t, in);
    EXPECT_TRUE(std::all_of(after.out.begin(), after.out.end(), [](float x) { return x == test::kPoison; }));
    EXPECT_TRUE(std::all_of(after.lse.begin(), after.lse.end(), [](float x) { return x == test::kPoison; }));
  }
};

TEST_P(PagedErrorTest, BlockIdOutsideThePoolAmongUsedBlocks) {
  PagedInputs in = inputs();
  in.table[size_t(in.max_blocks) + 1] = int32_t(in.num_blocks);
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "block_table",
                  {"sequence 1", "block_table[1][1] = " + std::to_string(in.num_blocks)});
  in.table[size_t(in.max_blocks) + 1] = -1;
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "block_table", {"sequence 1", "block_table[1][1] = -1"});
}

TEST_P(PagedErrorTest, AnyIdInAnUnusedSlotIsFine) {
  PagedInputs in = inputs();
  in.table[size_t(in.max_blocks) + 2] = 1 << 30;  // sequence 1 uses 2 blocks of its 4 slots
  in.table[size_t(in.max_blocks) + 3] = -7;
  const PagedTensors t(ctx_.get(), in);
  ASSERT_OK(t.call(ctx_.get(), in.shape));
  expect_matches(read_outputs(t, in), ref::attention(reference_problem(in)), in);
}

TEST_P(PagedErrorTest, SequenceLongerThanItsTable) {
  PagedInputs in = inputs();
  in.seqlens_k[0] = int32_t(in.max_blocks * 4 + 1);
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "seqlens_k",
                  {"sequence 0", "seqlens_k[0] = " + std::to_string(in.seqlens_k[0])});
}

TEST_P(PagedErrorTest, MoreQueriesThanKeysWhenCausal) {
  PagedInputs in = inputs();
  in.seqlens_k[1] = 2;
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "seqlens_k", {"sequence 1", "3 queries", "= 2"});
  in.shape.causal = false;  // allowed without causal
  const PagedTensors t(ctx_.get(), in);
  EXPECT_EQ(t.call(ctx_.get(), in.shape), ALIBI_STATUS_SUCCESS) << alibi_last_error_message();
}

TEST_P(PagedErrorTest, NegativeKeyCount) {
  PagedInputs in = inputs();
  in.seqlens_k[1] = -3;
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "seqlens_k", {"seqlens_k[1] = -3"});
}

TEST_P(PagedErrorTest, BadQueryOffsets) {
  PagedInputs in = inputs();
  in.seqs.cu_q = {1, 1, 4};
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q", {"cu_seqlens_q[0] = 1"});
  in.seqs.cu_q = {0, 3, 1};
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q", {"cu_seqlens_q[2] = 1", "sequence 1"});
  in.seqs.cu_q = {0, 1, 3};
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q", {"cu_seqlens_q[2] = 3", "4"});
}

TEST_P(PagedErrorTest, WindowBelowMinusOne) {
  PagedInputs in = inputs();
  in.shape.window_left = -2;
  expect_rejected(in, ALIBI_STATUS_INVALID_ARGUMENT, "window_left", {"-2"});
}

TEST_P(PagedErrorTest, ShapesAndDtypes) {
  const PagedInputs in = inputs();
  const PagedTensors t(ctx_.get(), in);
  alibi_context_t ctx = ctx_.get();
  const Tensor wide_cache = test::create_tensor(ctx, kF32, {in.num_blocks, 4, 1, 16});
  const Tensor three_kv_heads = test::create_tensor(ctx, kF32, {in.num_blocks, 4, 3, 8});
  const Tensor half_cache = test::create_tensor(ctx, kF16, {in.num_blocks, 4, 1, 8});
  const Tensor wide_table = test::create_tensor(ctx, ALIBI_DTYPE_I64, {2, in.max_blocks});
  const Tensor short_seqlens = int_tensor(ctx, {1}, {10});
  auto call = [&](alibi_tensor_t k, alibi_tensor_t v, alibi_tensor_t table, alibi_tensor_t seqlens) {
    return alibi_attention_forward_paged(ctx, t.q.get(), k, v, table, t.cu_q.get(), seqlens, 1, -1,
                                         nullptr, t.out.get(), t.lse.get());
  };
  const auto k = t.k_cache.get(), v = t.v_cache.get(), table = t.table.get(), seqlens = t.seqlens_k.get();
  EXPECT_FAILS(call(wide_cache.get(), wide_cache.get(), table, seqlens), ALIBI_STATUS_SHAPE_MISMATCH,
               kFunction, "k_cache", "16");
  EXPECT_FAILS(call(three_kv_heads.get(), three_kv_heads.get(), table, seqlens),
               ALIBI_STATUS_SHAPE_MISMATCH, kFunction, "k_cache", "3");
  EXPECT_FAILS(call(k, half_cache.get(), table, seqlens), ALIBI_STATUS_DTYPE_MISMATCH, kFunction,
               "v_cache", "f16");
  EXPECT_FAILS(call(k, v, wide_table.get(), seqlens), ALIBI_STATUS_DTYPE_MISMATCH, kFunction,
               "block_table", "i64");
  EXPECT_FAILS(call(k, v, table, short_seqlens.get()), ALIBI_STATUS_SHAPE_MISMATCH, kFunction,
               "seqlens_k", "1");
  EXPECT_FAILS(call(k, v, nullptr, seqlens), ALIBI_STATUS_NULL_POINTER, kFunction, "block_table");
  EXPECT_FAILS(call(k, nullptr, table, seqlens), ALIBI_STATUS_NULL_POINTER, kFunction, "v_cache");
  const Outputs after = read_outputs(t, in);
  EXPECT_TRUE(std::all_of(after.out.begin(), after.out.end(), [](float x) { return x == test::kPoison; }));
}

TEST_P(PagedErrorTest, CacheLastDimMustBeContiguous) {
  const PagedInputs in = inputs();
  const PagedTensors t(ctx_.get(), in);
  const test::DeviceBuffer buffer(ctx_.get(), kF32, 4, std::vector<uint8_t>(size_t(in.num_blocks * 4 * 16) * 4));
  const Tensor strided = wrap(ctx_.get(), kF32, {in.num_blocks, 4, 1, 8}, {64, 16, 16, 2}, buffer.data());
  EXPECT_FAILS(alibi_attention_forward_paged(ctx_.get(), t.q.get(), strided.get(), t.v_cache.get(),
                                             t.table.get(), t.cu_q.get(), t.seqlens_k.get(), 1, -1,
                                             nullptr, t.out.get(), t.lse.get()),
               ALIBI_STATUS_INVALID_ARGUMENT, kFunction, "k_cache", "strides[3] = 2");
}

INSTANTIATE_TEST_SUITE_P(Paged, PagedErrorTest, test::kDevices, test::name_by_device);

}  // namespace
