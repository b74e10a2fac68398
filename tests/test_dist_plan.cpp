// The context-parallel plan (alibi_dist.h, SPEC section 6) through the C API: pad sizes, each
// rank's workload against the mask's visible cells counted one by one, the dealing against a
// plain MinHeap written here, position ids, SPEC's and MagiAttention's worked examples, and bad
// arguments of every plan function.
#include <algorithm>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "alibi/alibi_dist.h"
#include "error_check.h"
#include "reference.h"
#include "test_util.h"

namespace {

using test::Context;
using test::make_cpu_context;
using test::Mask;

struct PlanDeleter {
  void operator()(alibi_dist_plan_s* p) const { alibi_dist_plan_destroy(p); }
};
using Plan = std::unique_ptr<alibi_dist_plan_s, PlanDeleter>;
using Chunks = std::vector<std::vector<int32_t>>;  // per rank

// What output buffers hold before a getter writes them; no chunk id, position id or workload
// takes this value.
constexpr int64_t kPoison = -7;

Plan make_plan(alibi_mask_t mask, int cp_size, int chunk_size) {
  alibi_dist_plan_t plan = nullptr;
  EXPECT_EQ(alibi_dist_plan_create(mask, cp_size, chunk_size, &plan), ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Plan(plan);
}

// ------------------------------------------------------------------------------------- masks

Mask ranges_mask(alibi_context_t ctx, const std::vector<ref::Slice>& slices, int64_t total_q,
                 int64_t total_k) {
  std::vector<int32_t> q, k, types;
  for (const ref::Slice& s : slices) {
    q.insert(q.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k.insert(k.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  alibi_mask_t m = nullptr;
  EXPECT_EQ(alibi_mask_create_ranges(ctx, int(slices.size()), q.data(), k.data(), types.data(),
                                     total_q, total_k, &m),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return Mask(m);
}

// The mask's slices as it reports them.
std::vector<ref::Slice> slices_of(alibi_mask_t mask) {
  int n = 0;
  EXPECT_EQ(alibi_mask_get_num_slices(mask, &n), ALIBI_STATUS_SUCCESS);
  std::vector<int32_t> q(size_t(2 * n)), k(size_t(2 * n)), types(static_cast<size_t>(n));
  EXPECT_EQ(alibi_mask_get_slices(mask, q.data(), k.data(), types.data()), ALIBI_STATUS_SUCCESS);
  std::vector<ref::Slice> slices;
  for (size_t s = 0; s < size_t(n); ++s)
    slices.push_back({q[2 * s], q[2 * s + 1], k[2 * s], k[2 * s + 1], types[s]});
  return slices;
}

int64_t total_of(alibi_mask_t mask) {
  int64_t total_q = -1, total_k = -1;
  EXPECT_EQ(alibi_mask_get_totals(mask, &total_q, &total_k), ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(total_q, total_k);
  return total_q;
}

// ------------------------------------------------------------------------------- references

// Visible cells of each row, counted cell by cell with SPEC's slice types (the rectangles of a
// mask never overlap, so no cell is counted twice).
std::vector<int64_t> dense_row_cells(const std::vector<ref::Slice>& slices, int64_t total) {
  std::vector<int64_t> cells(size_t(total), 0);
  for (const ref::Slice& s : slices) {
    const int64_t sq = s.q_end - s.q_begin, sk = s.k_end - s.k_begin;
    for (int64_t r = 0; r < sq; ++r)
      for (int64_t c = 0; c < sk; ++c)
        cells[size_t(s.q_begin + r)] += ref::visible_in_slice(s.type, r, c, sq, sk);
  }
  return cells;
}

// The workload of each chunk of the padded stream (padding rows see nothing).
std::vector<int64_t> chunk_sums(const std::vector<int64_t>& row_cells, int64_t padded,
                                int chunk_size) {
  std::vector<int64_t> workloads(size_t(padded / chunk_size), 0);
  for (size_t row = 0; row < row_cells.size(); ++row)
    workloads[row / size_t(chunk_size)] += row_cells[row];
  return workloads;
}

// SPEC's MinHeap dealing, written plainly: chunks by descending workload (ties: the higher chunk
// id first, as a reversed stable ascending sort gives), each to the least-loaded rank among
// those holding fewer than num_chunks / cp_size chunks (ties: the lower rank); then each rank's
// chunk ids ascending.
Chunks reference_deal(const std::vector<int64_t>& workloads, int cp_size) {
  std::vector<int32_t> order(workloads.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return workloads[size_t(a)] != workloads[size_t(b)]
               ? workloads[size_t(a)] > workloads[size_t(b)]
               : a > b;
  });
  const size_t per_rank = workloads.size() / size_t(cp_size);
  std::vector<int64_t> loads(size_t(cp_size), 0);
  Chunks chunks(static_cast<size_t>(cp_size));
  for (int32_t chunk : order) {
    size_t best = loads.size();
    for (size_t r = 0; r < loads.size(); ++r)
      if (chunks[r].size() < per_rank && (best == loads.size() || loads[r] < loads[best])) best = r;
    chunks[best].push_back(chunk);
    loads[best] += workloads[size_t(chunk)];
  }
  for (auto& rank_chunks : chunks) std::sort(rank_chunks.begin(), rank_chunks.end());
  return chunks;
}

// MagiAttention's max_valid: the largest q-range end among slices with rows and keys.
int64_t max_valid(const std::vector<ref::Slice>& slices) {
  int64_t valid = 0;
  for (const ref::Slice& s : slices)
    if (s.q_begin < s.q_end && s.k_begin < s.k_end) valid = std::max(valid, s.q_end);
  return valid;
}

// ------------------------------------------------------------------------ the plan, read back

// Everything the C API tells of a plan. Each output buffer is poisoned, one element longer than
// the call may write: every element must be written and the spare one left alone.
struct PlanView {
  int cp_size = 0, chunk_size = 0;
  int64_t padded = -1, local_tokens = -1;
  Chunks chunks;
  std::vector<std::vector<int64_t>> position_ids;
  std::vector<int64_t> workloads;
};

template <class T>
void expect_all_written(const std::vector<T>& buffer, const std::string& what) {
  EXPECT_EQ(buffer.back(), T(kPoison)) << what << ": written past the end";
  EXPECT_EQ(std::count(buffer.begin(), buffer.end() - 1, T(kPoison)), 0)
      << what << ": an element was not written";
}

PlanView read_plan(alibi_dist_plan_t plan) {
  PlanView view;
  EXPECT_EQ(alibi_dist_plan_get_info(plan, &view.cp_size, &view.chunk_size, &view.padded),
            ALIBI_STATUS_SUCCESS);
  EXPECT_EQ(alibi_dist_plan_get_num_local_tokens(plan, &view.local_tokens), ALIBI_STATUS_SUCCESS);
  if (view.cp_size < 1 || view.chunk_size < 1 || view.local_tokens < 0) return view;
  const size_t chunks_per_rank = size_t(view.local_tokens / view.chunk_size);
  for (int r = 0; r < view.cp_size; ++r) {
    std::vector<int32_t> chunks(chunks_per_rank + 1, int32_t(kPoison));
    EXPECT_EQ(alibi_dist_plan_get_chunks(plan, r, chunks.data()), ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    expect_all_written(chunks, "chunk ids of rank " + std::to_string(r));
    view.chunks.emplace_back(chunks.begin(), chunks.end() - 1);
    std::vector<int64_t> ids(size_t(view.local_tokens) + 1, kPoison);
    EXPECT_EQ(alibi_dist_plan_get_position_ids(plan, r, ids.data()), ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    expect_all_written(ids, "position ids of rank " + std::to_string(r));
    view.position_ids.emplace_back(ids.begin(), ids.end() - 1);
  }
  std::vector<int64_t> workloads(size_t(view.cp_size) + 1, kPoison);
  EXPECT_EQ(alibi_dist_plan_get_workloads(plan, workloads.data()), ALIBI_STATUS_SUCCESS);
  expect_all_written(workloads, "workloads");
  view.workloads.assign(workloads.begin(), workloads.end() - 1);
  return view;
}

// Every chunk exactly once, ascending on each rank, the same count on every rank.
void expect_partition(const Chunks& chunks, int64_t num_chunks) {
  std::vector<int> seen(size_t(num_chunks), 0);
  for (size_t r = 0; r < chunks.size(); ++r) {
    EXPECT_EQ(int64_t(chunks[r].size()) * int64_t(chunks.size()), num_chunks) << "rank " << r;
    EXPECT_TRUE(std::is_sorted(chunks[r].begin(), chunks[r].end())) << "rank " << r;
    for (int32_t c : chunks[r]) {
      ASSERT_GE(c, 0);
      ASSERT_LT(c, num_chunks);
      ++seen[size_t(c)];
    }
  }
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), num_chunks)
      << "a chunk is missing or repeated";
}

// The plan of `mask` against the references: pad, sizes, dealing, workloads, position ids.
// row_cells: the mask's visible cells per row (dense_row_cells).
void expect_plan_of(alibi_mask_t mask, const std::vector<int64_t>& row_cells, int cp_size,
                    int chunk_size) {
  SCOPED_TRACE("cp_size " + std::to_string(cp_size) + ", chunk_size " + std::to_string(chunk_size));
  const int64_t total = total_of(mask);
  const std::vector<ref::Slice> slices = slices_of(mask);
  int64_t pad = -1;
  ASSERT_OK(alibi_dist_compute_pad_size(total, cp_size, chunk_size, &pad));
  Plan plan = make_plan(mask, cp_size, chunk_size);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  ASSERT_EQ(got.cp_size, cp_size);
  ASSERT_EQ(got.chunk_size, chunk_size);
  ASSERT_EQ(got.padded, total + pad);
  ASSERT_EQ(got.padded % (int64_t(chunk_size) * cp_size), 0);
  const int64_t num_chunks = got.padded / chunk_size;
  ASSERT_EQ(got.local_tokens, num_chunks / cp_size * chunk_size);

  expect_partition(got.chunks, num_chunks);
  const std::vector<int64_t> workloads = chunk_sums(row_cells, got.padded, chunk_size);
  EXPECT_EQ(got.chunks, reference_deal(workloads, cp_size));
  for (int r = 0; r < cp_size; ++r) {
    int64_t load = 0;
    for (int32_t c : got.chunks[size_t(r)]) load += workloads[size_t(c)];
    EXPECT_EQ(got.workloads[size_t(r)], load) << "rank " << r;
  }
  const int64_t valid = max_valid(slices);
  for (int r = 0; r < cp_size; ++r)
    for (int64_t i = 0; i < got.local_tokens; ++i) {
      const int64_t token =
          int64_t(got.chunks[size_t(r)][size_t(i / chunk_size)]) * chunk_size + i % chunk_size;
      ASSERT_EQ(got.position_ids[size_t(r)][size_t(i)], std::min(token, valid - 1))
          << "rank " << r << ", local token " << i;
    }
}

void expect_plans_of(alibi_mask_t mask, const std::vector<int>& chunk_sizes) {
  const std::vector<int64_t> row_cells = dense_row_cells(slices_of(mask), total_of(mask));
  for (int cp_size = 1; cp_size <= 5; ++cp_size)
    for (int chunk_size : chunk_sizes) expect_plan_of(mask, row_cells, cp_size, chunk_size);
}

// ------------------------------------------------------------------------------ random masks

int uniform(std::mt19937& rng, int lo, int hi) {
  return std::uniform_int_distribution<int>(lo, hi)(rng);
}

// cu_seqlens of self-attention: the keys' sequence lengths are the queries' shuffled (Sq != Sk
// per sequence, equal totals); now and then tokens before cu[0], which see nothing.
std::pair<std::vector<int32_t>, std::vector<int32_t>> self_attention_offsets(std::mt19937& rng) {
  std::vector<int32_t> lengths(static_cast<size_t>(uniform(rng, 0, 6)));
  for (int32_t& l : lengths) l = uniform(rng, 0, 3) == 0 ? uniform(rng, 0, 3) : uniform(rng, 1, 40);
  std::vector<int32_t> k_lengths = lengths;
  if (uniform(rng, 0, 1)) std::shuffle(k_lengths.begin(), k_lengths.end(), rng);
  const int32_t start = uniform(rng, 0, 3) == 0 ? uniform(rng, 1, 5) : 0;
  std::vector<int32_t> cu_q{start}, cu_k{start};
  for (size_t b = 0; b < lengths.size(); ++b) {
    cu_q.push_back(cu_q.back() + lengths[b]);
    cu_k.push_back(cu_k.back() + k_lengths[b]);
  }
  return {cu_q, cu_k};
}

bool rectangles_meet(const ref::Slice& a, const ref::Slice& b) {
  return a.q_begin < b.q_end && b.q_begin < a.q_end && a.k_begin < b.k_end && b.k_begin < a.k_end;
}

// Random rectangles of all four types, empty ranges among them; rows shared by several slices
// (keys side by side), and now and then a band of rows whose keys are cut into pieces.
std::vector<ref::Slice> random_slices(std::mt19937& rng, int64_t total) {
  std::vector<ref::Slice> slices;
  const int wanted = uniform(rng, 0, 8);
  for (int s = 0; s < wanted; ++s) {
    const int64_t q_begin = uniform(rng, 0, int(total)), k_begin = uniform(rng, 0, int(total));
    const int64_t q_end =
        uniform(rng, 0, 5) == 0 ? q_begin : uniform(rng, int(q_begin), int(total));
    const int64_t k_end =
        uniform(rng, 0, 5) == 0 ? k_begin : uniform(rng, int(k_begin), int(total));
    if (uniform(rng, 0, 4) == 0) {
      int64_t k = 0;
      while (k < total) {
        const int64_t end = std::min<int64_t>(total, k + uniform(rng, 1, 30));
        const ref::Slice piece{q_begin, q_end, k, end, uniform(rng, 0, 3)};
        if (std::none_of(slices.begin(), slices.end(),
                         [&](const ref::Slice& o) { return rectangles_meet(piece, o); }))
          slices.push_back(piece);
        k = end;
      }
      continue;
    }
    const ref::Slice slice{q_begin, q_end, k_begin, k_end, uniform(rng, 0, 3)};
    if (std::none_of(slices.begin(), slices.end(),
                     [&](const ref::Slice& o) { return rectangles_meet(slice, o); }))
      slices.push_back(slice);
  }
  return slices;
}

// Chunk sizes for a stream of `total` tokens: 1, an odd one, one about the size of the stream.
std::vector<int> chunk_sizes_for(std::mt19937& rng, int64_t total) {
  return {1, 2 * uniform(rng, 1, 9) + 1, uniform(rng, 2, int(total) + 6)};
}

enum class Kind { kVarlenCausal, kVarlenFull, kSlidingWindow, kRanges };

std::string kind_name(const ::testing::TestParamInfo<Kind>& info) {
  static const char* const kNames[] = {"VarlenCausal", "VarlenFull", "SlidingWindow", "Ranges"};
  return kNames[int(info.param)];
}

class DistPlanRandom : public ::testing::TestWithParam<Kind> {};

// Random masks of each kind, cp_size 1..5, chunk sizes 1, odd, and near the stream's length
// (padding in most): every plan against the references.
TEST_P(DistPlanRandom, MatchesTheReferences) {
  Context ctx = make_cpu_context();
  std::mt19937 rng(1500 + unsigned(GetParam()));
  for (int trial = 0; trial < 100; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial));
    Mask mask;
    if (GetParam() == Kind::kRanges) {
      const int64_t total = uniform(rng, 0, 100);
      mask = ranges_mask(ctx.get(), random_slices(rng, total), total, total);
    } else {
      const auto [cu_q, cu_k] = self_attention_offsets(rng);
      if (GetParam() == Kind::kSlidingWindow)
        mask = test::make_sliding_window(ctx.get(), cu_q, cu_k, uniform(rng, -1, 9),
                                         uniform(rng, -1, 9));
      else
        mask = test::make_varlen(ctx.get(), cu_q, cu_k, GetParam() == Kind::kVarlenCausal);
    }
    ASSERT_TRUE(mask);
    expect_plans_of(mask.get(), chunk_sizes_for(rng, total_of(mask.get())));
  }
}

INSTANTIATE_TEST_SUITE_P(DistPlan, DistPlanRandom,
                         ::testing::Values(Kind::kVarlenCausal, Kind::kVarlenFull,
                                           Kind::kSlidingWindow, Kind::kRanges),
                         kind_name);

// ------------------------------------------------------------------------------ SPEC examples

TEST(DistPlanSpec, PadSizes) {
  struct Case {
    int64_t total;
    int cp_size, chunk_size;
    int64_t pad;
  };
  const Case cases[] = {
      {1024, 6, 208, 224},    {10244, 8, 451, 580}, {3840, 10, 128, 0}, {42817, 12, 892, 10703},
      {13000, 17, 369, 5819}, {1789, 2, 900, 11},   {0, 3, 5, 0}};
  for (const Case& c : cases) {
    int64_t pad = -1;
    ASSERT_OK(alibi_dist_compute_pad_size(c.total, c.cp_size, c.chunk_size, &pad));
    EXPECT_EQ(pad, c.pad) << c.total << " tokens, cp " << c.cp_size << ", chunk " << c.chunk_size;
  }
}

// A mask of chunks whose workloads are given: chunk c's first row sees keys [0, w_c) (w_c at
// most the stream's length).
Mask mask_of_workloads(alibi_context_t ctx, const std::vector<int64_t>& workloads, int chunk_size) {
  const int64_t total = int64_t(workloads.size()) * chunk_size;
  std::vector<ref::Slice> slices;
  for (size_t c = 0; c < workloads.size(); ++c) {
    const int64_t row = int64_t(c) * chunk_size;
    slices.push_back({row, row + 1, 0, workloads[c], ref::kFull});
  }
  return ranges_mask(ctx, slices, total, total);
}

TEST(DistPlanSpec, MinHeapGivesAMaximumLoadOf18) {
  Context ctx = make_cpu_context();
  Mask mask = mask_of_workloads(ctx.get(), {2, 4, 3, 16, 13, 5, 9, 10}, 2);
  Plan plan = make_plan(mask.get(), 4, 2);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  EXPECT_EQ(got.chunks, (Chunks{{0, 3}, {2, 4}, {1, 7}, {5, 6}}));
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{18, 16, 14, 14}));
  EXPECT_EQ(*std::max_element(got.workloads.begin(), got.workloads.end()), 18);
}

// Equal workloads: the higher chunk id is dealt first (a reversed stable sort), and equal loads
// go to the lower rank. [5, 5, 1, 1] on 2 ranks: 1 -> rank 0, 0 -> rank 1, 3 -> rank 0, 2 ->
// rank 1.
TEST(DistPlanSpec, TiesDealTheHigherChunkFirstToTheLowerRank) {
  Context ctx = make_cpu_context();
  Mask mask = mask_of_workloads(ctx.get(), {5, 5, 1, 1}, 2);
  Plan plan = make_plan(mask.get(), 2, 2);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  EXPECT_EQ(got.chunks, (Chunks{{1, 3}, {0, 2}}));
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{6, 6}));
}

TEST(DistPlanSpec, CausalOver8TokensIsTheZigZag) {
  Context ctx = make_cpu_context();
  Mask mask = test::make_varlen(ctx.get(), {0, 8}, {0, 8}, true);
  Plan plan = make_plan(mask.get(), 2, 2);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  EXPECT_EQ(got.chunks, (Chunks{{0, 3}, {1, 2}}));
  EXPECT_EQ(got.position_ids, (std::vector<std::vector<int64_t>>{{0, 1, 6, 7}, {2, 3, 4, 5}}));
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{18, 18}));  // chunks of 3, 7, 11, 15 cells
  EXPECT_EQ(got.local_tokens, 4);
  EXPECT_EQ(got.padded, 8);
}

// Causal over 7 tokens, chunk 2, 2 ranks: one padding token (7), whose id is clamped to 6.
TEST(DistPlanSpec, PaddedPositionIdsAreClampedToMaxValidMinusOne) {
  Context ctx = make_cpu_context();
  Mask mask = test::make_varlen(ctx.get(), {0, 7}, {0, 7}, true);
  Plan plan = make_plan(mask.get(), 2, 2);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  EXPECT_EQ(got.padded, 8);
  EXPECT_EQ(got.chunks, (Chunks{{0, 2}, {1, 3}}));  // workloads 3, 7, 11, 7
  EXPECT_EQ(got.position_ids, (std::vector<std::vector<int64_t>>{{0, 1, 4, 5}, {2, 3, 6, 6}}));
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{14, 14}));
}

// max_valid counts only slices with rows and keys: rows past the last such slice read
// max_valid - 1, and with none every id is -1 (MagiAttention's clamp).
TEST(DistPlanSpec, PositionIdsFollowTheLastSliceWithRowsAndKeys) {
  Context ctx = make_cpu_context();
  Mask mask = ranges_mask(ctx.get(), {{0, 3, 0, 3, ref::kCausal}, {3, 6, 4, 4, ref::kFull}}, 6, 6);
  Plan plan = make_plan(mask.get(), 1, 3);
  ASSERT_TRUE(plan);
  EXPECT_EQ(read_plan(plan.get()).position_ids,
            (std::vector<std::vector<int64_t>>{{0, 1, 2, 2, 2, 2}}));

  Mask keyless = ranges_mask(ctx.get(), {{0, 4, 2, 2, ref::kFull}}, 4, 4);
  Plan none = make_plan(keyless.get(), 2, 1);
  ASSERT_TRUE(none);
  const PlanView got = read_plan(none.get());
  EXPECT_EQ(got.position_ids, (std::vector<std::vector<int64_t>>{{-1, -1}, {-1, -1}}));
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{0, 0}));
}

// An empty stream: no chunk, no local token; cp_size at its limit of 65536 with one token each.
TEST(DistPlanSpec, EmptyStreamAndTheLargestCpSize) {
  Context ctx = make_cpu_context();
  Mask empty = ranges_mask(ctx.get(), {}, 0, 0);
  Plan plan = make_plan(empty.get(), 3, 4);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  EXPECT_EQ(got.padded, 0);
  EXPECT_EQ(got.local_tokens, 0);
  EXPECT_EQ(got.workloads, (std::vector<int64_t>{0, 0, 0}));

  Mask one = test::make_varlen(ctx.get(), {0, 1}, {0, 1}, true);
  Plan wide = make_plan(one.get(), 65536, 1);
  ASSERT_TRUE(wide);
  const PlanView spread = read_plan(wide.get());
  EXPECT_EQ(spread.padded, 65536);
  EXPECT_EQ(spread.chunks[0], std::vector<int32_t>{0});
  EXPECT_EQ(spread.workloads[0], 1);
  EXPECT_EQ(std::accumulate(spread.workloads.begin(), spread.workloads.end(), int64_t(0)), 1);
  expect_partition(spread.chunks, 65536);
}

// ---------------------------------------------------- MagiAttention's masks (v1.0.3's tests)

std::vector<ref::Slice> slices_from(const std::vector<std::pair<int64_t, int64_t>>& q,
                                    const std::vector<std::pair<int64_t, int64_t>>& k,
                                    const std::vector<int>& types, int64_t scale_down) {
  std::vector<ref::Slice> slices;
  for (size_t s = 0; s < q.size(); ++s)
    slices.push_back({q[s].first / scale_down, q[s].second / scale_down, k[s].first / scale_down,
                      k[s].second / scale_down, types[s]});
  return slices;
}

// The interface tests' masks with their chunk sizes (flex_full_attn_1050's 257 needs padding).
TEST(DistPlanMagi, InterfaceMasks) {
  Context ctx = make_cpu_context();
  const std::vector<std::pair<int64_t, int64_t>> blocks_1050 = {
      {0, 128}, {128, 256}, {256, 384}, {384, 512}, {512, 640}, {640, 768}, {768, 1050}};
  {
    SCOPED_TRACE("flex_full_attn_1050");
    Mask mask = ranges_mask(
        ctx.get(), slices_from(blocks_1050, blocks_1050, std::vector<int>(7, 0), 1), 1050, 1050);
    int64_t pad = 0;
    ASSERT_OK(alibi_dist_compute_pad_size(1050, 1, 257, &pad));
    EXPECT_EQ(pad, 235);
    expect_plans_of(mask.get(), {257});
  }
  {
    SCOPED_TRACE("varlen_full_attn_1050");
    const std::vector<int32_t> cu = {0, 128, 256, 384, 512, 640, 768, 1050};
    Mask mask = test::make_varlen(ctx.get(), cu, cu, false);
    expect_plans_of(mask.get(), {568});
  }
  {
    SCOPED_TRACE("varlen_block_causal_960, types 0,1,2,3,1,2,3");
    const std::vector<std::pair<int64_t, int64_t>> q = {
        {0, 128}, {128, 256}, {256, 384}, {384, 512}, {512, 640}, {640, 768}, {768, 960}};
    const std::vector<std::pair<int64_t, int64_t>> k = {{0, 128},   {0, 256},   {0, 384},  {0, 512},
                                                        {512, 640}, {512, 768}, {768, 960}};
    Mask mask = ranges_mask(ctx.get(), slices_from(q, k, {0, 1, 2, 3, 1, 2, 3}, 1), 960, 960);
    expect_plans_of(mask.get(), {568});
  }
  {
    SCOPED_TRACE("full_attn_1k_bs2 (causal)");
    Mask mask = test::make_varlen(ctx.get(), {0, 1024, 2048}, {0, 1024, 2048}, true);
    expect_plans_of(mask.get(), {1024});
  }
}

// The distributed tests' masks with rows shared by several slices, scaled down 4 times (chunk
// 512 becomes 128).
TEST(DistPlanMagi, DistributedMasksWithQOverlap) {
  Context ctx = make_cpu_context();
  {
    SCOPED_TRACE("varlen_block_causal_12k_with_q_overlap");
    const auto slices = slices_from(
        {{0, 8192}, {2048, 8192}, {4096, 8192}, {6144, 8192}, {8192, 12288}, {10240, 12288}},
        {{0, 2048}, {2048, 4096}, {4096, 6144}, {6144, 8192}, {8192, 10240}, {10240, 12288}},
        std::vector<int>(6, 0), 4);
    Mask mask = ranges_mask(ctx.get(), slices, 3072, 3072);
    expect_plans_of(mask.get(), {128});
  }
  {
    SCOPED_TRACE("bi_causal_12k_with_q_overlap");
    const auto slices = slices_from({{0, 2048},
                                     {2048, 4096},
                                     {4096, 6144},
                                     {6144, 8192},
                                     {8192, 10240},
                                     {10240, 12288},
                                     {1000, 4000},
                                     {10000, 12000}},
                                    {{0, 3072},
                                     {0, 4096},
                                     {0, 6144},
                                     {6144, 12288},
                                     {8192, 12288},
                                     {9216, 12288},
                                     {8000, 12000},
                                     {0, 5000}},
                                    std::vector<int>(8, 3), 4);
    Mask mask = ranges_mask(ctx.get(), slices, 3072, 3072);
    expect_plans_of(mask.get(), {128});
  }
  {
    SCOPED_TRACE("continuous_multi_masks_10k_with_q_overlap");
    const auto slices = slices_from({{0, 2048},
                                     {0, 2048},
                                     {0, 2048},
                                     {0, 2048},
                                     {2048, 4096},
                                     {3072, 5120},
                                     {5120, 7168},
                                     {6144, 8192},
                                     {8192, 10240},
                                     {8192, 10240},
                                     {8192, 10240},
                                     {8192, 10240}},
                                    {{0, 2048},
                                     {2048, 4096},
                                     {4096, 6144},
                                     {6144, 10240},
                                     {0, 2048},
                                     {2048, 4096},
                                     {0, 2048},
                                     {2048, 4096},
                                     {0, 2048},
                                     {2048, 4096},
                                     {4096, 6144},
                                     {6144, 10240}},
                                    {2, 0, 1, 3, 2, 1, 2, 1, 2, 0, 1, 3}, 4);
    Mask mask = ranges_mask(ctx.get(), slices, 2560, 2560);
    expect_plans_of(mask.get(), {128});
  }
}

// ------------------------------------------------------------------------ lifetime and scale

// The plan keeps its own copy of the mask: new positions or the mask's end change nothing.
TEST(DistPlanLifetime, OutlivesItsMaskAndIgnoresNewPositions) {
  Context ctx = make_cpu_context();
  Mask mask = test::make_varlen(ctx.get(), {0, 5, 13, 20}, {0, 9, 13, 20}, true);
  Plan plan = make_plan(mask.get(), 3, 3);
  ASSERT_TRUE(plan);
  const PlanView before = read_plan(plan.get());
  const std::vector<int32_t> positions = test::random_positions(20, 15, -1000, 1000);
  ASSERT_OK(alibi_mask_set_positions(mask.get(), positions.data(), positions.data()));
  const PlanView after_positions = read_plan(plan.get());
  mask.reset();
  const PlanView after_destroy = read_plan(plan.get());
  for (const PlanView* got : {&after_positions, &after_destroy}) {
    EXPECT_EQ(got->chunks, before.chunks);
    EXPECT_EQ(got->position_ids, before.position_ids);
    EXPECT_EQ(got->workloads, before.workloads);
    EXPECT_EQ(got->padded, before.padded);
  }
  alibi_dist_plan_destroy(nullptr);
}

// 1M tokens: 256 causal sequences of 4096, chunk 512, 8 ranks. Closed forms make this quick
// (the dense count would be 2^31 cells): each sequence's chunk j has rows r = 512 j .. 512 j + 511
// of its sequence, each seeing r + 1 keys.
TEST(DistPlanScale, MillionTokenVarlenCausal) {
  Context ctx = make_cpu_context();
  constexpr int kSequences = 256, kLength = 4096, kChunk = 512, kRanks = 8;
  std::vector<int32_t> cu(kSequences + 1);
  for (int b = 0; b <= kSequences; ++b) cu[size_t(b)] = b * kLength;
  Mask mask = test::make_varlen(ctx.get(), cu, cu, true);
  Plan plan = make_plan(mask.get(), kRanks, kChunk);
  ASSERT_TRUE(plan);
  const PlanView got = read_plan(plan.get());
  std::vector<int64_t> workloads;
  for (int b = 0; b < kSequences; ++b)
    for (int64_t j = 0; j < kLength / kChunk; ++j) {
      int64_t cells = 0;
      for (int64_t r = j * kChunk; r < (j + 1) * kChunk; ++r) cells += r + 1;
      workloads.push_back(cells);
    }
  EXPECT_EQ(got.chunks, reference_deal(workloads, kRanks));
  const int64_t all = std::accumulate(workloads.begin(), workloads.end(), int64_t(0));
  EXPECT_EQ(got.workloads, std::vector<int64_t>(kRanks, all / kRanks));  // perfectly balanced
  EXPECT_EQ(got.local_tokens, int64_t(kSequences) * kLength / kRanks);
}

// ------------------------------------------------------------------------------ bad arguments

using test::expect_error;

template <typename Handle>
Handle garbage_handle() {
  return reinterpret_cast<Handle>(uintptr_t(0xdeadbeef));
}

TEST(DistPlanErrors, ComputePadSize) {
  int64_t out = kPoison;
  const char* f = "alibi_dist_compute_pad_size";
  EXPECT_FAILS(alibi_dist_compute_pad_size(-1, 2, 4, &out), ALIBI_STATUS_INVALID_ARGUMENT, f,
               "total_seqlen", "-1");
  EXPECT_FAILS(alibi_dist_compute_pad_size(INT64_MIN, 2, 4, &out), ALIBI_STATUS_INVALID_ARGUMENT, f,
               "total_seqlen", "-9223372036854775808");
  for (int cp_size : {0, -3, 65537, INT32_MIN})
    EXPECT_FAILS(alibi_dist_compute_pad_size(10, cp_size, 4, &out), ALIBI_STATUS_INVALID_ARGUMENT,
                 f, "cp_size", std::to_string(cp_size));
  for (int chunk_size : {0, -1, INT32_MIN})
    EXPECT_FAILS(alibi_dist_compute_pad_size(10, 2, chunk_size, &out),
                 ALIBI_STATUS_INVALID_ARGUMENT, f, "chunk_size", std::to_string(chunk_size));
  EXPECT_FAILS(alibi_dist_compute_pad_size(10, 2, 4, nullptr), ALIBI_STATUS_NULL_POINTER, f, "out");
  EXPECT_EQ(out, kPoison);
  // The largest arguments: B = 2^47 - 65536 fits int64.
  ASSERT_OK(alibi_dist_compute_pad_size(INT64_MAX, 65536, INT32_MAX, &out));
  EXPECT_EQ(out, 65536 * int64_t(INT32_MAX) - INT64_MAX % (65536 * int64_t(INT32_MAX)));
}

TEST(DistPlanErrors, PlanCreate) {
  Context ctx = make_cpu_context();
  const char* f = "alibi_dist_plan_create";
  Mask mask = test::make_varlen(ctx.get(), {0, 6}, {0, 6}, true);
  alibi_dist_plan_t plan = garbage_handle<alibi_dist_plan_t>();
  EXPECT_FAILS(alibi_dist_plan_create(nullptr, 2, 2, &plan), ALIBI_STATUS_NULL_POINTER, f, "mask");
  EXPECT_EQ(plan, nullptr);
  EXPECT_FAILS(alibi_dist_plan_create(mask.get(), 2, 2, nullptr), ALIBI_STATUS_NULL_POINTER, f,
               "out");
  for (int cp_size : {0, -1, 65537, INT32_MAX}) {
    plan = garbage_handle<alibi_dist_plan_t>();
    EXPECT_FAILS(alibi_dist_plan_create(mask.get(), cp_size, 2, &plan),
                 ALIBI_STATUS_INVALID_ARGUMENT, f, "cp_size", std::to_string(cp_size));
    EXPECT_EQ(plan, nullptr);
  }
  for (int chunk_size : {0, -5, INT32_MIN}) {
    plan = garbage_handle<alibi_dist_plan_t>();
    EXPECT_FAILS(alibi_dist_plan_create(mask.get(), 2, chunk_size, &plan),
                 ALIBI_STATUS_INVALID_ARGUMENT, f, "chunk_size", std::to_string(chunk_size));
    EXPECT_EQ(plan, nullptr);
  }
  // Padded past INT32_MAX tokens: 6 tokens padded to 4 * 2^30.
  EXPECT_FAILS(alibi_dist_plan_create(mask.get(), 4, 1 << 30, &plan), ALIBI_STATUS_INVALID_ARGUMENT,
               f, "chunk_size|cp_size", "1073741824", "4294967296");
  EXPECT_EQ(plan, nullptr);
  // Cross-attention masks.
  Mask cross = ranges_mask(ctx.get(), {{0, 5, 0, 6, ref::kFull}}, 5, 6);
  EXPECT_FAILS(alibi_dist_plan_create(cross.get(), 2, 2, &plan), ALIBI_STATUS_SHAPE_MISMATCH, f,
               "total_q", "total_q = 5", "total_k = 6");
  Mask varlen_cross = test::make_varlen(ctx.get(), {0, 3}, {0, 4}, false);
  EXPECT_FAILS(alibi_dist_plan_create(varlen_cross.get(), 1, 1, &plan), ALIBI_STATUS_SHAPE_MISMATCH,
               f, "total_k", "3", "4");
  EXPECT_EQ(plan, nullptr);
}

class DistPlanGetterErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    ctx_ = make_cpu_context();
    mask_ = test::make_varlen(ctx_.get(), {0, 12}, {0, 12}, true);
    plan_ = make_plan(mask_.get(), 3, 2);
  }
  Context ctx_;
  Mask mask_;
  Plan plan_;
};

TEST_F(DistPlanGetterErrors, RanksOutsideTheCpSize) {
  std::vector<int32_t> chunks(8, int32_t(kPoison));
  std::vector<int64_t> ids(8, kPoison);
  for (int rank : {-1, 3, 4, INT32_MIN, INT32_MAX}) {
    EXPECT_FAILS(alibi_dist_plan_get_chunks(plan_.get(), rank, chunks.data()),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_plan_get_chunks", "rank",
                 "rank = " + std::to_string(rank), "cp_size = 3");
    EXPECT_FAILS(alibi_dist_plan_get_position_ids(plan_.get(), rank, ids.data()),
                 ALIBI_STATUS_INVALID_ARGUMENT, "alibi_dist_plan_get_position_ids", "rank",
                 "rank = " + std::to_string(rank), "cp_size = 3");
  }
  EXPECT_EQ(std::count(chunks.begin(), chunks.end(), int32_t(kPoison)), 8);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), kPoison), 8);
}

TEST_F(DistPlanGetterErrors, NullPointers) {
  int64_t value = kPoison;
  int32_t chunk = int32_t(kPoison);
  int cp_size = -1;
  EXPECT_FAILS(alibi_dist_plan_get_num_local_tokens(nullptr, &value), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_num_local_tokens", "plan");
  EXPECT_FAILS(alibi_dist_plan_get_num_local_tokens(plan_.get(), nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_plan_get_num_local_tokens", "out");
  EXPECT_FAILS(alibi_dist_plan_get_info(nullptr, &cp_size, nullptr, nullptr),
               ALIBI_STATUS_NULL_POINTER, "alibi_dist_plan_get_info", "plan");
  EXPECT_FAILS(alibi_dist_plan_get_chunks(nullptr, 0, &chunk), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_chunks", "plan");
  EXPECT_FAILS(alibi_dist_plan_get_chunks(plan_.get(), 0, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_chunks", "chunk_ids");
  EXPECT_FAILS(alibi_dist_plan_get_position_ids(nullptr, 0, &value), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_position_ids", "plan");
  EXPECT_FAILS(alibi_dist_plan_get_position_ids(plan_.get(), 0, nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_position_ids", "out");
  EXPECT_FAILS(alibi_dist_plan_get_workloads(nullptr, &value), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_workloads", "plan");
  EXPECT_FAILS(alibi_dist_plan_get_workloads(plan_.get(), nullptr), ALIBI_STATUS_NULL_POINTER,
               "alibi_dist_plan_get_workloads", "out");
  EXPECT_EQ(value, kPoison);
  EXPECT_EQ(chunk, int32_t(kPoison));
  EXPECT_EQ(cp_size, -1);
  // Any of get_info's outputs may be NULL.
  ASSERT_OK(alibi_dist_plan_get_info(plan_.get(), nullptr, nullptr, nullptr));
  ASSERT_OK(alibi_dist_plan_get_info(plan_.get(), &cp_size, nullptr, nullptr));
  EXPECT_EQ(cp_size, 3);
}

}  // namespace
