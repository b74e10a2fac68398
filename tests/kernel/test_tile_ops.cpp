// The CPU kernel's SIMD tile operations (cpu/tile_ops_simd.h, built for AVX2, AVX-512 and NEON)
// cannot call the one-home math of core/kernel/attention_math.h; here every table (generic, and
// avx2, avx512 and neon where this CPU has them) is held against it cell by cell: scores, the online-softmax step, the backward's gradient block,
// the decode products, exp, the GEMMs (f32, with half B, and bf16 pairs where AVX512-BF16 is present) and the f16/bf16 widening. The generic table calls that math, so it must match bitwise.
// Built from the kernel sources themselves (alibi_tile_ops_tests), not through the C ABI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "core/kernel/attention_math.h"
#include "core/kernel/half.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The table of that name, nullptr when this CPU lacks its instructions.
const TileOps* table(const std::string& name) {
  if (name == "generic") return &generic_tile_ops();
  if (name == "avx2") return avx2_tile_ops();
  if (name == "neon") return neon_tile_ops();
  return avx512_tile_ops();
}

const char* missing_instructions(const std::string& name) {
  if (name == "avx2") return "AVX2, FMA or F16C";
  if (name == "neon") return "aarch64's Advanced SIMD (NEON)";
  return "AVX-512 F, BW, DQ or VL";
}

class TileOpsTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    ops_ = table(GetParam());
    if (!ops_) GTEST_SKIP() << GetParam() << " tile operations: this CPU lacks " << missing_instructions(GetParam());
    ASSERT_EQ(GetParam(), ops_->name);
  }
  bool exact() const { return GetParam() == "generic"; }
  // A value the table computes through its own exp (and tanh) against the one-home math:
  // relative error `relative` of max(|want|, scale); the generic table must match bitwise.
  void expect_close(float got, float want, float relative, float scale, const std::string& where) const {
    if (exact() || std::isinf(want)) {
      EXPECT_EQ(got, want) << where;
      return;
    }
    EXPECT_NEAR(got, want, relative * std::max(std::fabs(want), scale)) << where;
  }
  const TileOps* ops_ = nullptr;
  std::mt19937 random_{1234};
};

float uniform(std::mt19937& random, float lo, float hi) {
  return std::uniform_real_distribution<float>(lo, hi)(random);
}

uint16_t random_bf16(std::mt19937& random) { return float_to_bf16(uniform(random, -1.0f, 1.0f)); }

// A key block of scores over `queries` queries, with what its cells' scores need.
struct BlockCase {
  int64_t keys, queries, ld;
  bool needs_mask;
  float slope, softcap;
  std::vector<float> slopes;  // per query (padded), or empty: slope for all
  std::vector<float> raw, attn_bias, row_max, row_sum;
  std::vector<int32_t> key_pos, query_pos, visible_lo, visible_hi;
  int32_t first_key;
};

BlockCase make_block(std::mt19937& random, int64_t keys, int64_t queries, bool masked,
                     float softcap, bool with_attn_bias, bool slope_per_query = false) {
  BlockCase b;
  b.keys = keys;
  b.queries = queries;
  b.ld = (queries + 7) / 8 * 8 + 8;
  b.needs_mask = masked;
  b.slope = uniform(random, 0.0f, 0.5f);
  b.softcap = softcap;
  b.first_key = 40;
  const size_t padded = size_t((queries + 7) / 8 * 8);
  b.raw.resize(size_t(keys * b.ld));
  for (float& x : b.raw) x = uniform(random, -6.0f, 6.0f);
  if (with_attn_bias) {
    b.attn_bias.resize(b.raw.size());
    for (float& x : b.attn_bias) x = uniform(random, -2.0f, 2.0f);
    b.attn_bias[0] = kNegInf;  // a cell hidden through attn_bias
  }
  if (slope_per_query) {
    b.slopes.assign(padded, 0.0f);
    for (int64_t c = 0; c < queries; ++c) b.slopes[size_t(c)] = uniform(random, 0.0f, 0.5f);
  }
  for (int64_t j = 0; j < keys; ++j) b.key_pos.push_back(int32_t(b.first_key + j));
  b.query_pos.assign(padded, 0);
  b.visible_lo.assign(padded, 0);
  b.visible_hi.assign(padded, 0);
  b.row_max.assign(padded, 0.0f);
  b.row_sum.assign(padded, 0.0f);
  for (int64_t c = 0; c < queries; ++c) {
    b.query_pos[size_t(c)] = int32_t(70 + 3 * c);
    const int32_t lo = int32_t(b.first_key + c);  // moves right with the query, as masks do
    b.visible_lo[size_t(c)] = masked ? lo : 0;
    b.visible_hi[size_t(c)] = masked ? lo + int32_t(c % 5 == 4 ? 0 : keys / 2) : int32_t(1 << 30);
    const bool fresh = c % 3 == 0;  // a query that has seen nothing yet
    b.row_max[size_t(c)] = fresh ? kNegInf : uniform(random, -3.0f, 8.0f);
    b.row_sum[size_t(c)] = fresh ? 0.0f : uniform(random, 1.0f, 20.0f);
  }
  return b;
}

ScoreBlock score_block(BlockCase& b, std::vector<float>& scores, std::vector<float>& correction) {
  scores = b.raw;
  correction.assign(b.row_max.size(), 0.0f);
  ScoreBlock s{};
  s.scores = scores.data();
  s.ld = b.ld;
  s.keys = b.keys;
  s.queries = b.queries;
  s.attn_bias = b.attn_bias.empty() ? nullptr : b.attn_bias.data();
  s.key_pos = b.key_pos.data();
  s.query_pos = b.query_pos.data();
  s.visible_lo = b.visible_lo.data();
  s.visible_hi = b.visible_hi.data();
  s.first_key = b.first_key;
  s.needs_mask = b.needs_mask;
  s.slope = b.slope;
  s.softcap = b.softcap;
  s.slopes = b.slopes.empty() ? nullptr : b.slopes.data();
  s.row_max = b.row_max.data();
  s.row_sum = b.row_sum.data();
  s.correction = correction.data();
  return s;
}

// The cell's score as attention_math.h defines it.
float expected_score(const BlockCase& b, int64_t j, int64_t c) {
  const int64_t key = b.first_key + j;
  if (b.needs_mask && !KeyInterval{b.visible_lo[size_t(c)], b.visible_hi[size_t(c)]}.contains(key))
    return masked_score();
  const float slope = b.slopes.empty() ? b.slope : b.slopes[size_t(c)];
  return cell_score(b.raw[size_t(j * b.ld + c)], b.softcap, slope, b.query_pos[size_t(c)],
                    b.key_pos[size_t(j)], b.attn_bias.empty() ? 0.0f : b.attn_bias[size_t(j * b.ld + c)]);
}

// Columns past the queries' padding to 8 belong to the caller: no table may write them (a
// 16-lane table's last group of 8 must not; a 4-lane table stops at its last group of queries).
void expect_untouched_past_padding(const BlockCase& b, const std::vector<float>& cells,
                                   const std::vector<float>& before, const std::string& where) {
  for (int64_t j = 0; j < b.keys; ++j)
    for (int64_t c = (b.queries + 7) / 8 * 8; c < b.ld; ++c)
      EXPECT_EQ(cells[size_t(j * b.ld + c)], before[size_t(j * b.ld + c)]) << where << " column " << c;
}

// Slopes one for the block (a tile of one head) or one per query (the decode's row heads).
TEST_P(TileOpsTest, SoftmaxBlockIsTheCellScoreAndTheSoftmaxStep) {
  for (const bool masked : {false, true})
    for (const float softcap : {0.0f, 5.0f})
      for (const bool with_attn_bias : {false, true})
        for (const bool slope_per_query : {false, true})
          for (const int64_t queries : {1, 8, 13, 24}) {
            const std::string where = "masked " + std::to_string(masked) + " softcap " +
                                      std::to_string(softcap) + " attn_bias " + std::to_string(with_attn_bias) +
                                      " slope per query " + std::to_string(slope_per_query) + " queries " +
                                      std::to_string(queries);
            BlockCase b = make_block(random_, 37, queries, masked, softcap, with_attn_bias, slope_per_query);
            const std::vector<float> old_max = b.row_max, old_sum = b.row_sum;
            std::vector<float> scores, correction;
            ops_->softmax_block(score_block(b, scores, correction));
            // exp8 is within ~2 ulp; tanh8 adds a few ulp of softcap to a score and to the shift,
            // which exp turns into that relative error of a probability.
            const float relative = 5e-7f + 1e-6f * softcap;
            for (int64_t c = 0; c < queries; ++c) {
              float block_max = kNegInf;
              for (int64_t j = 0; j < b.keys; ++j) block_max = std::max(block_max, expected_score(b, j, c));
              const SoftmaxStep step = softmax_step(old_max[size_t(c)], block_max);
              float sum = 0.0f;
              for (int64_t j = 0; j < b.keys; ++j) {
                const float p = std::exp(expected_score(b, j, c) - step.shift);
                sum += p;
                expect_close(scores[size_t(j * b.ld + c)], p, relative, 0.0f,
                             where + " cell (" + std::to_string(j) + ", " + std::to_string(c) + ")");
              }
              const std::string row = where + " query " + std::to_string(c);
              expect_close(b.row_max[size_t(c)], step.max, relative, 1.0f, row + " max");
              expect_close(correction[size_t(c)], step.correction, relative, 0.0f, row + " correction");
              expect_close(b.row_sum[size_t(c)], running_sum(old_sum[size_t(c)], step.correction, sum),
                           relative, 1.0f, row + " sum");
            }
            expect_untouched_past_padding(b, scores, b.raw, where);
          }
}

// Backward: P and the gradient of x of every cell, and the block's slope-gradient sum, from
// the one-home backward functions; queries whose lse is -inf contribute nothing.
TEST_P(TileOpsTest, GradientBlockIsTheOneHomeBackwardMath) {
  for (const bool masked : {false, true})
    for (const float softcap : {0.0f, 5.0f})
      for (const bool with_attn_bias : {false, true})
        for (const int64_t queries : {1, 8, 13, 24}) {
          const std::string where = "masked " + std::to_string(masked) + " softcap " +
                                    std::to_string(softcap) + " attn_bias " +
                                    std::to_string(with_attn_bias) + " queries " + std::to_string(queries);
          BlockCase b = make_block(random_, 37, queries, masked, softcap, with_attn_bias);
          const size_t padded = b.row_max.size();
          std::vector<float> lse(padded, 0.0f), row_dot(padded, 0.0f), dp(b.raw.size());
          for (int64_t c = 0; c < queries; ++c) {
            // Scores reach about 6 + 2 here: lse at or above the largest keeps P <= 1, as a forward's does.
            lse[size_t(c)] = c % 4 == 1 ? kNegInf : uniform(random_, 8.0f, 12.0f);
            row_dot[size_t(c)] = uniform(random_, -1.0f, 1.0f);
          }
          for (float& x : dp) x = uniform(random_, -2.0f, 2.0f);
          std::vector<float> scores = b.raw, dscores = dp;
          GradientBlock g{};
          g.scores = scores.data();
          g.dscores = dscores.data();
          g.ld = b.ld;
          g.keys = b.keys;
          g.queries = b.queries;
          g.attn_bias = b.attn_bias.empty() ? nullptr : b.attn_bias.data();
          g.key_pos = b.key_pos.data();
          g.query_pos = b.query_pos.data();
          g.visible_lo = b.visible_lo.data();
          g.visible_hi = b.visible_hi.data();
          g.first_key = b.first_key;
          g.needs_mask = b.needs_mask;
          g.slope = b.slope;
          g.softcap = b.softcap;
          g.lse = lse.data();
          g.row_dot = row_dot.data();
          const float slope_sum = ops_->gradient_block(g);
          // exp8 and tanh8 are within a few ulp; the products after them add a few more.
          const float relative = 2e-6f + 2e-6f * softcap;
          double want_slope_sum = 0.0, magnitude = 0.0;
          for (int64_t j = 0; j < b.keys; ++j)
            for (int64_t c = 0; c < queries; ++c) {
              const size_t cell = size_t(j * b.ld + c);
              const std::string at = where + " cell (" + std::to_string(j) + ", " + std::to_string(c) + ")";
              const float s = expected_score(b, j, c);
              const float p = s == masked_score() ? 0.0f : saved_probability(s, lse[size_t(c)]);
              const float ds = score_gradient(p, dp[cell], row_dot[size_t(c)]);
              expect_close(scores[cell], p, relative, 1e-30f, at + " P");
              expect_close(dscores[cell], raw_score_gradient(ds, b.raw[cell], b.softcap), relative, 1e-6f, at + " dx");
              const float term = slope_gradient_term(ds, b.query_pos[size_t(c)], b.key_pos[size_t(j)]);
              want_slope_sum += term;
              magnitude += std::fabs(term);
            }
          EXPECT_NEAR(slope_sum, want_slope_sum, 1e-5 * magnitude + 1e-6) << where << " slope sum";
          expect_untouched_past_padding(b, scores, b.raw, where + " P");
          expect_untouched_past_padding(b, dscores, dp, where + " dx");
        }
}

TEST_P(TileOpsTest, ExpIsExpfAndZeroBelowItsRange) {
  std::vector<float> x{kNegInf, -1e30f, -104.0f, -87.0f, -20.5f, -1.0f, -1e-7f, 0.0f, 1e-7f, 0.5f, 3.0f, 80.0f};
  for (int i = 0; i < 37; ++i) x.push_back(uniform(random_, -30.0f, 10.0f));
  std::vector<float> got = x;
  ops_->exp_in_place(got.data(), int64_t(got.size()));
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = std::exp(x[i]);
    if (want < std::numeric_limits<float>::min())  // the SIMD exp flushes what would be subnormal
      EXPECT_LE(got[i], std::numeric_limits<float>::min()) << "exp(" << x[i] << ")";
    else
      expect_close(got[i], want, 3e-7f, 0.0f, "exp(" + std::to_string(x[i]) + ")");
  }
  EXPECT_EQ(got[0], 0.0f) << "exp(-inf) must be exactly 0";
}

TEST_P(TileOpsTest, GemmIsThePlainProduct) {
  for (const bool scaled : {false, true})
    for (const int64_t m : {1, 5, 6, 12, 13, 25})  // around the SIMD tables' panels of 6 rows
      for (const int64_t n : {3, 8, 16, 21, 32, 37, 70}) {  // and their 16 (avx2, neon) and 64 columns
        const int64_t k = 19, ldb = n + 2, ldc = n + 3;
        std::vector<float> a(size_t(m * k)), b(size_t(k * ldb)), c(size_t(m * ldc)), scale(static_cast<size_t>(m));
        for (float& x : a) x = uniform(random_, -1.0f, 1.0f);
        for (float& x : b) x = uniform(random_, -1.0f, 1.0f);
        for (float& x : c) x = uniform(random_, -1.0f, 1.0f);
        for (float& x : scale) x = uniform(random_, 0.0f, 1.0f);
        const std::vector<float> before = c;
        // A read transposed (a_row 1, a_col m), as the kernel reads its probabilities.
        ops_->gemm(m, n, k, a.data(), 1, m, b.data(), ldb, c.data(), ldc, scaled ? scale.data() : nullptr);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double want = scaled ? double(scale[size_t(i)]) * before[size_t(i * ldc + j)] : 0.0;
            for (int64_t p = 0; p < k; ++p) want += double(a[size_t(p * m + i)]) * b[size_t(p * ldb + j)];
            EXPECT_NEAR(c[size_t(i * ldc + j)], want, 1e-5) << "m " << m << " n " << n << " (" << i << ", " << j << ")";
          }
      }
}

// gemm_half_b widens B as it loads it: bitwise the f32 gemm on B widened first.
TEST_P(TileOpsTest, GemmWithHalfBIsTheGemmOfBWidened) {
  if (!ops_->gemm_half_b) GTEST_SKIP() << GetParam() << " has no gemm_half_b (callers widen B first)";
  for (const alibi_dtype dtype : {ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16})
    for (const int64_t m : {1, 6, 13})
      for (const int64_t n : {3, 16, 21, 64, 70}) {
        const int64_t k = 19, ldb = n + 2, ldc = n + 3;
        std::vector<float> a(size_t(m * k)), b(size_t(k * ldb)), scale(static_cast<size_t>(m));
        std::vector<uint16_t> halves(b.size());
        for (float& x : a) x = uniform(random_, -1.0f, 1.0f);
        for (uint16_t& x : halves) x = dtype == ALIBI_DTYPE_F16 ? float_to_f16(uniform(random_, -1.0f, 1.0f)) : random_bf16(random_);
        ops_->widen(dtype, halves.data(), int64_t(halves.size()), b.data());
        for (float& x : scale) x = uniform(random_, 0.0f, 1.0f);
        std::vector<float> want(size_t(m * ldc)), got;
        for (float& x : want) x = uniform(random_, -1.0f, 1.0f);
        got = want;
        ops_->gemm(m, n, k, a.data(), 1, m, b.data(), ldb, want.data(), ldc, scale.data());
        ops_->gemm_half_b(dtype, m, n, k, a.data(), 1, m, halves.data(), ldb, got.data(), ldc, scale.data());
        for (size_t i = 0; i < want.size(); ++i)
          ASSERT_EQ(got[i], want[i]) << "dtype " << dtype << " m " << m << " n " << n << " at " << i;
      }
}

TEST_P(TileOpsTest, WidenIsExact) {
  for (const alibi_dtype dtype : {ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16}) {
    std::vector<uint16_t> bits(77);
    for (size_t i = 0; i < bits.size(); ++i) bits[i] = uint16_t(random_());
    bits[0] = dtype == ALIBI_DTYPE_F16 ? 0x7c00 : 0x7f80;  // +inf
    bits[1] = 0x8001;                                      // smallest negative subnormal
    std::vector<float> got(bits.size());
    ops_->widen(dtype, bits.data(), int64_t(bits.size()), got.data());
    for (size_t i = 0; i < bits.size(); ++i) {
      const float want = load_element(dtype, bits.data(), int64_t(i));
      if (std::isnan(want))
        EXPECT_TRUE(std::isnan(got[i]));
      else
        EXPECT_EQ(got[i], want) << "bits " << bits[i];
    }
  }
}

TEST_P(TileOpsTest, NarrowIsTheScalarRounding) {
  // Random values over the whole range and the edges: ties, subnormal results, overflow, inf, NaN.
  std::vector<float> values(83);
  for (float& x : values) x = bits_float(uint32_t(random_()));
  const float edges[] = {0.0f, -0.0f, 65504.0f, 65520.0f, -65519.99f, 1.0f + 0x1p-11f, 1.0f + 0x1p-8f, 0x1p-25f,
                         0x1.8p-24f, -0x1p-20f, 1e-40f, std::numeric_limits<float>::infinity(),
                         -std::numeric_limits<float>::infinity(), bits_float(0x7fa00001u), bits_float(0xffc12345u)};
  std::copy(std::begin(edges), std::end(edges), values.begin());
  for (const alibi_dtype dtype : {ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16})
    for (const float scale : {1.0f, 0.37f}) {
      std::vector<uint16_t> got(values.size(), 0xdead);
      ops_->narrow(dtype, values.data(), scale, int64_t(values.size()), got.data());
      for (size_t i = 0; i < values.size(); ++i) {
        const float x = values[i] * scale;
        EXPECT_EQ(got[i], dtype == ALIBI_DTYPE_F16 ? float_to_f16(x) : float_to_bf16(x))
            << "value " << values[i] << " (bits " << float_bits(values[i]) << ") scale " << scale;
      }
    }
}

// Decode: k and v tokens in place (f32, f16, bf16), strided, GQA.
struct Tokens {
  std::vector<uint8_t> bytes;
  TokenRun run;
  float at(int64_t token, int64_t head, int64_t d) const {
    return load_element(run.dtype, run.data, token * run.token_stride + head * run.head_stride + d);
  }
};

Tokens make_tokens(std::mt19937& random, alibi_dtype dtype, int64_t count, int64_t kv_heads, int64_t dim) {
  Tokens t;
  const int64_t head_stride = dim + 3, token_stride = kv_heads * head_stride + 5;
  const size_t size = dtype == ALIBI_DTYPE_F32 ? 4 : 2;
  t.bytes.resize(size_t(count * token_stride) * size);
  for (int64_t i = 0; i < count * token_stride; ++i)
    store_element(dtype, t.bytes.data(), i, uniform(random, -1.0f, 1.0f));
  t.run = {t.bytes.data(), dtype, token_stride, head_stride, count};
  return t;
}

// A decode step's random queries, probabilities, corrections and accumulators.
struct StepInputs {
  std::vector<float> q, p, correction, acc;
};

StepInputs random_step(std::mt19937& random, const HeadLayout& layout, int64_t count) {
  StepInputs in{std::vector<float>(size_t(layout.heads * layout.dim)), std::vector<float>(size_t(count * layout.heads)),
                std::vector<float>(size_t(layout.heads)), std::vector<float>(size_t(layout.heads * layout.dim))};
  for (float& x : in.q) x = uniform(random, -1.0f, 1.0f);
  for (float& x : in.p) x = uniform(random, 0.0f, 1.0f);
  for (float& x : in.correction) x = uniform(random, 0.0f, 1.0f);
  for (float& x : in.acc) x = uniform(random, -1.0f, 1.0f);
  return in;
}

TEST_P(TileOpsTest, DecodeProductsAreThePlainSums) {
  // MHA, and GQA groups below, at and above the kernels' 4-head blocks (6: one block and 2 heads);
  // with a run to prefetch and without one (the SIMD loops differ)
  for (const bool prefetch : {false, true})
    for (const int64_t group : {1, 3, 4, 6})
      for (const alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16})
        for (const int64_t dim : {1, 7, 8, 40, 80, 128})
          for (const int64_t count : {1, 5, 8, 19}) {
            const HeadLayout layout{2 * group, group, dim};  // 2 kv heads
            const Tokens k = make_tokens(random_, dtype, count, 2, dim);
            const Tokens v = make_tokens(random_, dtype, count, 2, dim);
            std::vector<float> q(size_t(layout.heads * dim)), scores(size_t(count * layout.heads));
            for (float& x : q) x = uniform(random_, -1.0f, 1.0f);
            ops_->score_tokens(q.data(), k.run, prefetch ? &v.run : nullptr, layout, scores.data());
            std::vector<float> p(scores.size()), correction(size_t(layout.heads)), acc(q.size());
            for (float& x : p) x = uniform(random_, 0.0f, 1.0f);
            for (float& x : correction) x = uniform(random_, 0.0f, 1.0f);
            for (float& x : acc) x = uniform(random_, -1.0f, 1.0f);
            const std::vector<float> acc_before = acc;
            ops_->accumulate_tokens(p.data(), v.run, prefetch ? &k.run : nullptr, layout, correction.data(),
                                    acc.data());
            for (int64_t h = 0; h < layout.heads; ++h) {
              for (int64_t j = 0; j < count; ++j) {
                double dot = 0.0;
                for (int64_t d = 0; d < dim; ++d) dot += double(q[size_t(h * dim + d)]) * k.at(j, h / layout.group, d);
                EXPECT_NEAR(scores[size_t(j * layout.heads + h)], dot, 1e-5 * double(dim)) << "score " << j << " head " << h;
              }
              for (int64_t d = 0; d < dim; ++d) {
                double want = double(correction[size_t(h)]) * acc_before[size_t(h * dim + d)];
                for (int64_t j = 0; j < count; ++j) want += double(p[size_t(j * layout.heads + h)]) * v.at(j, h / layout.group, d);
                EXPECT_NEAR(acc[size_t(h * dim + d)], want, 1e-5 * double(count)) << "acc head " << h << " dim " << d;
              }
            }
          }
}

// A GQA group's heads (the 4-head blocks, and the heads past them) get bitwise the scores and
// sums of MHA heads reading the same key and value head: the same products in the same order.
TEST_P(TileOpsTest, GroupedDecodeProductsAreThoseOfOneHeadAtATime) {
  for (const bool prefetch : {false, true})
    for (const int64_t group : {4, 6, 8, 12, 16, 20})
      for (const alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16})
        for (const int64_t dim : {7, 40, 128})
          for (const int64_t count : {1, 5, 8, 19}) {
            const HeadLayout grouped{2 * group, group, dim};  // 2 kv heads
            const Tokens k = make_tokens(random_, dtype, count, 2, dim);
            const Tokens v = make_tokens(random_, dtype, count, 2, dim);
            const auto [q, p, correction, acc] = random_step(random_, grouped, count);
            std::vector<float> scores(p.size()), sums = acc;
            ops_->score_tokens(q.data(), k.run, prefetch ? &v.run : nullptr, grouped, scores.data());
            ops_->accumulate_tokens(p.data(), v.run, prefetch ? &k.run : nullptr, grouped, correction.data(),
                                    sums.data());
            for (int64_t h = 0; h < grouped.heads; ++h) {  // head h alone, on its kv head's tokens
              const size_t head_offset = size_t((h / group) * k.run.head_stride) * (dtype == ALIBI_DTYPE_F32 ? 4 : 2);
              TokenRun k_head = k.run, v_head = v.run;
              k_head.data = &k.bytes[head_offset];
              v_head.data = &v.bytes[head_offset];
              const HeadLayout alone{1, 1, dim};
              std::vector<float> p_head(static_cast<size_t>(count)), one_score(static_cast<size_t>(count));
              for (int64_t j = 0; j < count; ++j) p_head[size_t(j)] = p[size_t(j * grouped.heads + h)];
              std::vector<float> one_sum(&acc[size_t(h * dim)], &acc[size_t((h + 1) * dim)]);
              ops_->score_tokens(&q[size_t(h * dim)], k_head, nullptr, alone, one_score.data());
              ops_->accumulate_tokens(p_head.data(), v_head, nullptr, alone, &correction[size_t(h)], one_sum.data());
              for (int64_t j = 0; j < count; ++j)
                EXPECT_EQ(float_bits(scores[size_t(j * grouped.heads + h)]), float_bits(one_score[size_t(j)]))
                    << "group " << group << " dim " << dim << " count " << count << " head " << h << " token " << j;
              for (int64_t d = 0; d < dim; ++d)
                EXPECT_EQ(float_bits(sums[size_t(h * dim + d)]), float_bits(one_sum[size_t(d)]))
                    << "group " << group << " dim " << dim << " count " << count << " head " << h << " dim " << d;
            }
          }
}

// A run's tokens gathered from shuffled places (TokenRun::rows), with the token and head strides
// of the run they came from.
struct GatheredTokens {
  std::vector<uint8_t> bytes;
  std::vector<const void*> rows;
  TokenRun run;
};

GatheredTokens gather_tokens(std::mt19937& random, const Tokens& from) {
  const size_t size = from.run.dtype == ALIBI_DTYPE_F32 ? 4 : 2, row = size_t(from.run.token_stride) * size;
  const size_t count = size_t(from.run.count);
  std::vector<size_t> place(count);
  std::iota(place.begin(), place.end(), size_t(0));
  std::shuffle(place.begin(), place.end(), random);
  GatheredTokens g{std::vector<uint8_t>(count * row), std::vector<const void*>(count), from.run};
  for (size_t j = 0; j < count; ++j) {
    std::memcpy(&g.bytes[place[j] * row], &from.bytes[j * row], row);
    g.rows[j] = &g.bytes[place[j] * row];
  }
  g.run.data = g.rows.empty() ? nullptr : g.rows[0];
  g.run.rows = g.rows.data();
  return g;
}

// Gathered runs give bitwise the scores and sums of the same tokens in place, whether they are
// read or prefetched (the prefetch of a gathered run lists its lines).
TEST_P(TileOpsTest, GatheredRunsScoreAndAddUpAsTheirTokensInPlace) {
  for (const int64_t group : {1, 4, 6})
    for (const alibi_dtype dtype : {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16})
      for (const int64_t dim : {7, 40, 128})
        for (const int64_t count : {1, 5, 8, 16, 19}) {
          const HeadLayout layout{2 * group, group, dim};  // 2 kv heads
          const Tokens k = make_tokens(random_, dtype, count, 2, dim);
          const Tokens v = make_tokens(random_, dtype, count, 2, dim);
          const GatheredTokens gk = gather_tokens(random_, k), gv = gather_tokens(random_, v);
          const auto [q, p, correction, acc] = random_step(random_, layout, count);
          std::vector<float> scores(p.size()), gathered_scores(p.size()), sums = acc, gathered_sums = acc;
          ops_->score_tokens(q.data(), k.run, &v.run, layout, scores.data());
          ops_->score_tokens(q.data(), gk.run, &gv.run, layout, gathered_scores.data());
          ops_->accumulate_tokens(p.data(), v.run, &k.run, layout, correction.data(), sums.data());
          ops_->accumulate_tokens(p.data(), gv.run, &gk.run, layout, correction.data(), gathered_sums.data());
          for (size_t i = 0; i < scores.size(); ++i)
            EXPECT_EQ(float_bits(gathered_scores[i]), float_bits(scores[i]))
                << "group " << group << " dim " << dim << " count " << count << " score " << i;
          for (size_t i = 0; i < sums.size(); ++i)
            EXPECT_EQ(float_bits(gathered_sums[i]), float_bits(sums[i]))
                << "group " << group << " dim " << dim << " count " << count << " sum " << i;
        }
}

// gemm_bf16_pairs against the plain sums of products, every column past n left untouched.
void expect_scaled_products_of_pairs(decltype(TileOps::gemm_bf16_pairs) gemm_bf16_pairs) {
  std::mt19937 random(99);
  for (const int64_t m : {1, 5, 6, 7, 13, 32, 64, 70})  // around the panels of 6 rows and blocks of 32
    for (const int64_t n : {3, 8, 16, 21, 32, 64, 70, 100})  // and of 64, 32 and 16 columns
      for (const int64_t dim : {1, 7, 64, 80, 128}) {  // an odd dim: a zero pads the last pair
        const int64_t pairs = (dim + 1) / 2, lda = 2 * pairs + 4, ldb = n + 5, ldc = n + 3;
        std::vector<uint16_t> a(size_t(m * lda), 0), b(size_t(2 * pairs * ldb), 0);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t d = 0; d < dim; ++d) a[size_t(i * lda + d)] = random_bf16(random);
        for (int64_t d = 0; d < dim; ++d)
          for (int64_t j = 0; j < n; ++j) b[size_t(d * ldb + j)] = random_bf16(random);
        std::vector<uint32_t> b_pairs(size_t(pairs * ldb));
        for (int64_t p = 0; p < pairs; ++p)
          for (int64_t j = 0; j < ldb; ++j)
            b_pairs[size_t(p * ldb + j)] = b[size_t(2 * p * ldb + j)] | uint32_t(b[size_t((2 * p + 1) * ldb + j)]) << 16;
        const float scale = 0.125f;
        std::vector<float> c(size_t(m * ldc), std::numeric_limits<float>::quiet_NaN());
        gemm_bf16_pairs(m, n, pairs, a.data(), lda, b_pairs.data(), ldb, scale, c.data(), ldc);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < ldc; ++j) {
            const float got = c[size_t(i * ldc + j)];
            if (j >= n) {
              EXPECT_TRUE(std::isnan(got)) << "column " << j << " past n " << n << " was written";
              continue;
            }
            double want = 0.0;
            for (int64_t d = 0; d < dim; ++d)
              want += double(bf16_to_float(a[size_t(i * lda + d)])) * bf16_to_float(b[size_t(d * ldb + j)]);
            ASSERT_NEAR(got, scale * want, 1e-6 * double(dim)) << "m " << m << " n " << n << " dim " << dim << " (" << i << ", " << j << ")";
          }
      }
}

// The bf16 q.k of the AVX-512 table on AMD, wherever this CPU has AVX512-BF16.
TEST(Bf16Dots, GemmIsTheScaledProductOfPairs) {
  const Bf16PairOps* pairs_ops = avx512_bf16_ops();
  if (!pairs_ops) GTEST_SKIP() << "AVX512-BF16 dot products: this CPU lacks AVX512-BF16 (or AVX-512)";
  expect_scaled_products_of_pairs(pairs_ops->gemm);
}

// The bf16 q.k of the AVX-512 table on Intel CPUs with AMX-BF16 (tiles, the rest by AVX512-BF16).
TEST(Bf16Dots, AmxGemmIsTheScaledProductOfPairs) {
  const Bf16PairOps* amx_ops = amx_bf16_ops();
  if (!amx_ops) GTEST_SKIP() << "AMX-BF16 tiles: this CPU lacks AMX-BF16 (or AVX512-BF16)";
  expect_scaled_products_of_pairs(amx_ops->gemm);
}

// ops.score_tokens against the plain sums: MHA and GQA groups around the 4-head blocks and the
// 16-head tiles, dims around the 32-dim steps (odd ones too), runs around the 16-token tiles, the
// queries packed as ops.query_by_key_head says.
void expect_decode_scores_are_plain_sums(const Bf16PairOps& ops) {
  std::mt19937 random(7);
  for (const bool prefetch : {false, true})
    for (const int64_t group : {1, 3, 4, 6, 16, 20})
      for (const int64_t dim : {1, 7, 32, 40, 63, 128})
        for (const int64_t count : {1, 5, 8, 19}) {
          const HeadLayout layout{2 * group, group, dim};  // 2 kv heads
          const Tokens k = make_tokens(random, ALIBI_DTYPE_BF16, count, 2, dim);
          const Tokens v = make_tokens(random, ALIBI_DTYPE_BF16, count, 2, dim);
          const int64_t pairs = (dim + 1) / 2;
          std::vector<uint16_t> q(size_t(layout.heads * dim));
          for (uint16_t& x : q) x = random_bf16(random);
          std::vector<uint32_t> q_pairs(size_t(layout.heads * pairs));
          for (int64_t h = 0; h < layout.heads; ++h)
            for (int64_t p = 0; p < pairs; ++p) {
              const uint32_t high = 2 * p + 1 < dim ? q[size_t(h * dim + 2 * p + 1)] : 0u;
              const int64_t at = ops.query_by_key_head ? ((h / group) * pairs + p) * group + h % group : h * pairs + p;
              q_pairs[size_t(at)] = q[size_t(h * dim + 2 * p)] | high << 16;
            }
          std::vector<float> scores(size_t(count * layout.heads), std::numeric_limits<float>::quiet_NaN());
          ops.score_tokens(q_pairs.data(), k.run, prefetch ? &v.run : nullptr, layout, scores.data());
          for (int64_t h = 0; h < layout.heads; ++h)
            for (int64_t j = 0; j < count; ++j) {
              double dot = 0.0;
              for (int64_t d = 0; d < dim; ++d) dot += double(bf16_to_float(q[size_t(h * dim + d)])) * k.at(j, h / layout.group, d);
              EXPECT_NEAR(scores[size_t(j * layout.heads + h)], dot, 1e-6 * double(dim))
                  << "group " << group << " dim " << dim << " count " << count << " score " << j << " head " << h;
            }
        }
}

// The decode's bf16 q.k by pairs (the AVX-512 table takes it on AMD only) wherever this CPU has
// AVX512-BF16.
TEST(Bf16Dots, DecodeScoresAreThePlainSums) {
  const Bf16PairOps* pairs_ops = avx512_bf16_ops();
  if (!pairs_ops) GTEST_SKIP() << "AVX512-BF16 dot products: this CPU lacks AVX512-BF16 (or AVX-512)";
  expect_decode_scores_are_plain_sums(*pairs_ops);
}

// The decode's bf16 q.k on Intel CPUs with AMX-BF16: a key head's query heads as one tile.
TEST(Bf16Dots, AmxDecodeScoresAreThePlainSums) {
  const Bf16PairOps* amx_ops = amx_bf16_ops();
  if (!amx_ops) GTEST_SKIP() << "AMX-BF16 tiles: this CPU lacks AMX-BF16 (or AVX512-BF16)";
  expect_decode_scores_are_plain_sums(*amx_ops);
}

// Uncapped, tile_ops() takes the widest table this CPU runs: neon on aarch64, avx512 or avx2 on x86.
TEST(TileOpsChoice, UncappedIsTheWidestTableThisCpuRuns) {
  if (std::getenv("ALIBI_MAX_CPU_ISA")) GTEST_SKIP() << "ALIBI_MAX_CPU_ISA is set";
  const TileOps* widest = &generic_tile_ops();
  for (const char* name : {"avx2", "avx512", "neon"})
    if (const TileOps* ops = table(name)) widest = ops;
  EXPECT_STREQ(tile_ops().name, widest->name);
}

INSTANTIATE_TEST_SUITE_P(Tables, TileOpsTest, ::testing::Values("generic", "avx2", "avx512", "neon"),
                         [](const ::testing::TestParamInfo<std::string>& info) { return info.param; });

}  // namespace
}  // namespace alibi::cpu
