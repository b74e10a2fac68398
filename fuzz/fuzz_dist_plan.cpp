// Fuzz target: the context-parallel plan (alibi_dist.h). alibi_dist_compute_pad_size with any
// total, cp_size and chunk_size (int64 and int32 edges); alibi_dist_plan_create on a mask of any
// kind (varlen, sliding window, ranges with rows shared by several slices; now and then of
// cross-attention, SHAPE_MISMATCH) with valid and invalid cp_size and chunk_size, and padded
// streams past INT32_MAX; then every getter with valid and invalid ranks and NULL arguments,
// before or after the mask is given new positions or destroyed.
//
// Checked: the chunks of all ranks are a partition of all chunks, the same count on each rank,
// ascending; each rank's workload is the visible cells of its chunks' rows (tests/reference.h,
// cell by cell), so their sum is the mask's; position ids are min(global token, max_valid - 1),
// within [-1, max_valid). Every output is poisoned with one spare element: a call that succeeds
// writes every element and not the spare, a call that fails writes nothing.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "alibi/alibi_dist.h"
#include "attention_inputs.h"
#include "fuzz_common.h"
#include "reference.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr int64_t kPoison = -7;  // no chunk id, position id or workload
constexpr int kMaxCpSize = 65536;
// Position ids are read back (one call per rank) for padded streams up to this many tokens;
// beyond (chunk sizes near INT32_MAX) the getter is called with an invalid rank only.
constexpr int64_t kMaxReadTokens = int64_t(1) << 17;

struct SelfMask {
  fuzz::MaskHandle handle;
  int64_t total_q = 0, total_k = 0;
  ref::Visibility visible;
};

// Offsets whose keys have the queries' lengths, in order or rotated (Sq != Sk per sequence with
// equal totals), or (1 in 8) lengths of their own; tokens before cu[0] now and then.
void sequence_offsets(Bytes& in, std::vector<int32_t>& cu_q, std::vector<int32_t>& cu_k) {
  const int batch = int(in.in(0, 5));
  const int32_t start = in.u8() % 8 == 0 ? int32_t(in.in(1, 4)) : 0;
  std::vector<int32_t> lengths(static_cast<size_t>(batch));
  for (int32_t& l : lengths) l = fuzz::length(in, 60);
  const uint8_t keys = in.u8() % 8;
  cu_q = {start};
  cu_k = {start};
  for (int b = 0; b < batch; ++b) {
    cu_q.push_back(cu_q.back() + lengths[size_t(b)]);
    const int32_t lk = keys == 7 ? fuzz::length(in, 60) : lengths[size_t((b + keys) % batch)];
    cu_k.push_back(cu_k.back() + lk);
  }
}

void make_mask(Bytes& in, SelfMask& m) {
  alibi_context_t ctx = fuzz::cpu_context(1);
  const uint8_t kind = in.u8() % 4;
  if (kind < 2) {
    std::vector<int32_t> cu_q, cu_k;
    sequence_offsets(in, cu_q, cu_k);
    const int batch = int(cu_q.size()) - 1;
    if (kind == 1) {
      const int left = int(in.in(-1, 12)), right = int(in.in(-1, 12));
      fuzz::check_status_ok(alibi_mask_create_sliding_window(ctx, batch, cu_q.data(), cu_k.data(),
                                                             left, right, &m.handle.m),
                            "alibi_mask_create_sliding_window");
      m.visible = ref::sliding_window(cu_q, cu_k, left, right);
    } else {
      const bool causal = in.flag();
      fuzz::check_status_ok(
          alibi_mask_create_varlen(ctx, batch, cu_q.data(), cu_k.data(), causal, &m.handle.m),
          "alibi_mask_create_varlen");
      m.visible =
          ref::from_slices(cu_q.back(), cu_k.back(), ref::varlen_slices(cu_q, cu_k, causal));
    }
    m.total_q = cu_q.back();
    m.total_k = cu_k.back();
  } else {
    m.total_q = fuzz::length(in, 160);
    m.total_k = in.u8() % 16 == 0 ? fuzz::length(in, 160) : m.total_q;
    const std::vector<ref::Slice> slices = fuzz::range_slices(in, m.total_q, m.total_k, kind == 3);
    std::vector<int32_t> q, k, types;
    for (const ref::Slice& s : slices) {
      q.insert(q.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
      k.insert(k.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
      types.push_back(s.type);
    }
    fuzz::check_status_ok(alibi_mask_create_ranges(ctx, int(slices.size()), q.data(), k.data(),
                                                   types.data(), m.total_q, m.total_k, &m.handle.m),
                          "alibi_mask_create_ranges");
    m.visible = ref::from_slices(m.total_q, m.total_k, slices);
  }
}

// MagiAttention's max_valid of the mask's slices as it reports them.
int64_t max_valid(alibi_mask_t mask) {
  int n = 0;
  fuzz::check_status_ok(alibi_mask_get_num_slices(mask, &n), "alibi_mask_get_num_slices");
  std::vector<int32_t> q(size_t(2 * n) + 1), k(size_t(2 * n) + 1);
  fuzz::check_status_ok(alibi_mask_get_slices(mask, q.data(), k.data(), nullptr),
                        "alibi_mask_get_slices");
  int64_t valid = 0;
  for (size_t s = 0; s < size_t(n); ++s)
    if (q[2 * s] < q[2 * s + 1] && k[2 * s] < k[2 * s + 1])
      valid = std::max<int64_t>(valid, q[2 * s + 1]);
  return valid;
}

// cp_size: mostly 1..6; now and then 1000, just outside 1..65536, an int32 edge or any int
// beyond 65536 (negative included). Never 65536 itself: dealing and reading back 65536 ranks
// takes a thousand times an ordinary input (tests/test_dist_plan.cpp makes that plan).
int cp_size_from(Bytes& in) {
  const uint8_t pick = in.u8();
  if (pick < 232) return int(in.in(1, 6));
  static const int wild[] = {kMaxCpSize + 1, 0, -1, INT32_MIN, INT32_MAX, 1000, 64, 7};
  if (pick < 248) return wild[pick % 8];
  return int(in.u32() | 0x20000u);
}

// chunk_size: mostly 1..40; now and then large (padding past INT32_MAX) or not positive.
int chunk_size_from(Bytes& in) {
  const uint8_t pick = in.u8();
  if (pick < 232) return int(in.in(1, 40));
  static const int wild[] = {0, -1, INT32_MIN, INT32_MAX, 1 << 30, 1 << 16, 65535, 257};
  if (pick < 248) return wild[pick % 8];
  return int(in.u32());
}

bool cp_size_valid(int cp_size) { return cp_size >= 1 && cp_size <= kMaxCpSize; }

int64_t pad_of(int64_t total, int cp_size, int chunk_size) {
  const int64_t block = int64_t(chunk_size) * cp_size;
  return (block - total % block) % block;
}

void check_pad_size(Bytes& in) {
  const int64_t total = in.i64_small_or_wild(0, 400);
  const int cp_size = cp_size_from(in), chunk_size = chunk_size_from(in);
  const bool null_out = in.u8() == 255;
  Expect expect;
  if (null_out) expect.add(ALIBI_STATUS_NULL_POINTER, "out");
  if (total < 0) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "total_seqlen");
  if (!cp_size_valid(cp_size)) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "cp_size");
  if (chunk_size < 1) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "chunk_size");
  int64_t out = kPoison;
  expect.check(alibi_dist_compute_pad_size(total, cp_size, chunk_size, null_out ? nullptr : &out),
               "alibi_dist_compute_pad_size");
  if (!expect.ok()) {
    FUZZ_REQUIRE(out == kPoison, "alibi_dist_compute_pad_size failed but wrote %lld",
                 (long long)out);
    return;
  }
  FUZZ_REQUIRE(out == pad_of(total, cp_size, chunk_size),
               "alibi_dist_compute_pad_size(%lld, %d, %d) = %lld, expected %lld", (long long)total,
               cp_size, chunk_size, (long long)out, (long long)pad_of(total, cp_size, chunk_size));
}

// A rank outside [0, cp_size): just outside, or an int32 edge.
int invalid_rank(Bytes& in, int cp_size) {
  static const int wild[] = {-1, INT32_MIN, INT32_MAX};
  const uint8_t pick = in.u8() % 4;
  return pick == 3 ? cp_size : wild[pick];
}

// A buffer (poisoned, its elements and a spare) that a successful call must fill exactly.
template <class T>
void require_filled(const std::vector<T>& buffer, const char* call) {
  FUZZ_REQUIRE(buffer.back() == T(kPoison), "%s wrote past its %zu elements", call,
               buffer.size() - 1);
  FUZZ_REQUIRE(std::find(buffer.begin(), buffer.end() - 1, T(kPoison)) == buffer.end() - 1,
               "%s left an element unwritten", call);
}

// Calls that must fail, each writing nothing: an invalid rank, NULL plan, NULL output.
void check_getters_fail(Bytes& in, alibi_dist_plan_t plan, int cp_size) {
  const int rank = invalid_rank(in, cp_size);
  int32_t chunk = int32_t(kPoison);
  int64_t value = kPoison;
  Expect bad_rank;
  bad_rank.add(ALIBI_STATUS_INVALID_ARGUMENT, "rank");
  bad_rank.check(alibi_dist_plan_get_chunks(plan, rank, &chunk), "alibi_dist_plan_get_chunks");
  bad_rank.check(alibi_dist_plan_get_position_ids(plan, rank, &value),
                 "alibi_dist_plan_get_position_ids");
  Expect null;
  null.add(ALIBI_STATUS_NULL_POINTER, "plan or output");
  switch (in.u8() % 8) {
    case 0:
      null.check(alibi_dist_plan_get_chunks(nullptr, 0, &chunk), "alibi_dist_plan_get_chunks");
      break;
    case 1:
      null.check(alibi_dist_plan_get_chunks(plan, 0, nullptr), "alibi_dist_plan_get_chunks");
      break;
    case 2:
      null.check(alibi_dist_plan_get_position_ids(nullptr, 0, &value),
                 "alibi_dist_plan_get_position_ids");
      break;
    case 3:
      null.check(alibi_dist_plan_get_position_ids(plan, 0, nullptr),
                 "alibi_dist_plan_get_position_ids");
      break;
    case 4:
      null.check(alibi_dist_plan_get_workloads(nullptr, &value), "alibi_dist_plan_get_workloads");
      break;
    case 5:
      null.check(alibi_dist_plan_get_workloads(plan, nullptr), "alibi_dist_plan_get_workloads");
      break;
    case 6:
      null.check(alibi_dist_plan_get_num_local_tokens(plan, nullptr),
                 "alibi_dist_plan_get_num_local_tokens");
      break;
    default:
      null.check(alibi_dist_plan_get_info(nullptr, nullptr, nullptr, nullptr),
                 "alibi_dist_plan_get_info");
      break;
  }
  FUZZ_REQUIRE(chunk == int32_t(kPoison) && value == kPoison, "a failed getter wrote its output");
}

// Chunks: a partition of all chunks, per_rank ascending ids on each rank. Returns them by rank.
std::vector<std::vector<int32_t>> check_chunks(alibi_dist_plan_t plan, int cp_size,
                                               int64_t num_chunks) {
  const int64_t per_rank = num_chunks / cp_size;
  std::vector<uint8_t> seen(size_t(num_chunks), 0);
  std::vector<std::vector<int32_t>> chunks;
  for (int r = 0; r < cp_size; ++r) {
    std::vector<int32_t> ids(size_t(per_rank) + 1, int32_t(kPoison));
    fuzz::check_status_ok(alibi_dist_plan_get_chunks(plan, r, ids.data()),
                          "alibi_dist_plan_get_chunks");
    require_filled(ids, "alibi_dist_plan_get_chunks");
    ids.pop_back();
    for (size_t i = 0; i < ids.size(); ++i) {
      FUZZ_REQUIRE(ids[i] >= 0 && ids[i] < num_chunks, "rank %d holds chunk %d of %lld", r, ids[i],
                   (long long)num_chunks);
      FUZZ_REQUIRE(i == 0 || ids[i - 1] < ids[i], "rank %d's chunk ids are not ascending", r);
      FUZZ_REQUIRE(!seen[size_t(ids[i])], "chunk %d is dealt twice", ids[i]);
      seen[size_t(ids[i])] = 1;
    }
    chunks.push_back(ids);
  }
  // cp_size * per_rank distinct ids in [0, num_chunks), and num_chunks = cp_size * per_rank.
  FUZZ_REQUIRE(per_rank * cp_size == num_chunks, "%lld chunks do not split into %d equal shares",
               (long long)num_chunks, cp_size);
  return chunks;
}

void check_workloads(alibi_dist_plan_t plan, const std::vector<std::vector<int32_t>>& chunks,
                     const std::vector<int64_t>& row_cells, int chunk_size) {
  const int cp_size = int(chunks.size());
  std::vector<int64_t> got(size_t(cp_size) + 1, kPoison);
  fuzz::check_status_ok(alibi_dist_plan_get_workloads(plan, got.data()),
                        "alibi_dist_plan_get_workloads");
  require_filled(got, "alibi_dist_plan_get_workloads");
  int64_t sum = 0, all = 0;
  for (int r = 0; r < cp_size; ++r) {
    int64_t want = 0;
    for (int32_t c : chunks[size_t(r)])
      for (int64_t row = int64_t(c) * chunk_size;
           row < std::min<int64_t>((int64_t(c) + 1) * chunk_size, int64_t(row_cells.size())); ++row)
        want += row_cells[size_t(row)];
    FUZZ_REQUIRE(got[size_t(r)] == want,
                 "rank %d's workload is %lld, its chunks have %lld visible cells", r,
                 (long long)got[size_t(r)], (long long)want);
    sum += got[size_t(r)];
  }
  for (int64_t cells : row_cells) all += cells;
  FUZZ_REQUIRE(sum == all, "the ranks' workloads add up to %lld, the mask has %lld visible cells",
               (long long)sum, (long long)all);
}

void check_position_ids(alibi_dist_plan_t plan, const std::vector<std::vector<int32_t>>& chunks,
                        int chunk_size, int64_t local_tokens, int64_t valid) {
  for (size_t r = 0; r < chunks.size(); ++r) {
    std::vector<int64_t> ids(size_t(local_tokens) + 1, kPoison);
    fuzz::check_status_ok(alibi_dist_plan_get_position_ids(plan, int(r), ids.data()),
                          "alibi_dist_plan_get_position_ids");
    require_filled(ids, "alibi_dist_plan_get_position_ids");
    for (int64_t i = 0; i < local_tokens; ++i) {
      const int64_t token =
          int64_t(chunks[r][size_t(i / chunk_size)]) * chunk_size + i % chunk_size;
      const int64_t id = ids[size_t(i)];
      FUZZ_REQUIRE(id >= -1 && id < valid, "position id %lld outside [-1, max_valid = %lld)",
                   (long long)id, (long long)valid);
      FUZZ_REQUIRE(id == std::min(token, valid - 1),
                   "rank %zu's local token %lld (global %lld) has id %lld", r, (long long)i,
                   (long long)token, (long long)id);
    }
  }
}

// Every getter of a valid plan against what the mask implies.
void check_plan(Bytes& in, alibi_dist_plan_t plan, int cp_size, int chunk_size, int64_t total,
                const std::vector<int64_t>& row_cells, int64_t valid) {
  int got_cp = -1, got_chunk = -1;
  int64_t padded = kPoison, local_tokens = kPoison;
  fuzz::check_status_ok(alibi_dist_plan_get_info(plan, &got_cp, &got_chunk, &padded),
                        "alibi_dist_plan_get_info");
  fuzz::check_status_ok(alibi_dist_plan_get_num_local_tokens(plan, &local_tokens),
                        "alibi_dist_plan_get_num_local_tokens");
  const int64_t want_padded = total + pad_of(total, cp_size, chunk_size);
  FUZZ_REQUIRE(got_cp == cp_size && got_chunk == chunk_size && padded == want_padded,
               "alibi_dist_plan_get_info gave (%d, %d, %lld), expected (%d, %d, %lld)", got_cp,
               got_chunk, (long long)padded, cp_size, chunk_size, (long long)want_padded);
  FUZZ_REQUIRE(local_tokens == padded / cp_size, "%lld local tokens of %lld over %d ranks",
               (long long)local_tokens, (long long)padded, cp_size);
  const auto chunks = check_chunks(plan, cp_size, padded / chunk_size);
  check_workloads(plan, chunks, row_cells, chunk_size);
  if (padded <= kMaxReadTokens) check_position_ids(plan, chunks, chunk_size, local_tokens, valid);
  check_getters_fail(in, plan, cp_size);
}

std::vector<int64_t> row_cells_of(const ref::Visibility& visible) {
  std::vector<int64_t> cells(size_t(visible.total_q), 0);
  for (int64_t i = 0; i < visible.total_q; ++i)
    for (int64_t j = 0; j < visible.total_k; ++j) cells[size_t(i)] += visible.at(i, j);
  return cells;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  check_pad_size(in);
  SelfMask m;
  make_mask(in, m);
  const int cp_size = cp_size_from(in), chunk_size = chunk_size_from(in);
  const uint8_t nulls = in.u8();
  const bool null_mask = nulls == 255, null_out = nulls == 254;

  Expect expect;
  if (null_mask) expect.add(ALIBI_STATUS_NULL_POINTER, "mask");
  if (null_out) expect.add(ALIBI_STATUS_NULL_POINTER, "out");
  if (m.total_q != m.total_k) expect.add(ALIBI_STATUS_SHAPE_MISMATCH, "total_q != total_k");
  if (!cp_size_valid(cp_size)) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "cp_size");
  if (chunk_size < 1) expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "chunk_size");
  if (cp_size_valid(cp_size) && chunk_size >= 1 &&
      m.total_q + pad_of(m.total_q, cp_size, chunk_size) > INT32_MAX)
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "padded stream past INT32_MAX");
  alibi_dist_plan_t plan = reinterpret_cast<alibi_dist_plan_t>(&m);  // must be overwritten
  expect.check(alibi_dist_plan_create(null_mask ? nullptr : m.handle.m, cp_size, chunk_size,
                                      null_out ? nullptr : &plan),
               "alibi_dist_plan_create");
  if (!expect.ok()) {
    FUZZ_REQUIRE(null_out || plan == nullptr,
                 "alibi_dist_plan_create failed but did not set *out to NULL");
    return 0;
  }
  const std::vector<int64_t> row_cells = row_cells_of(m.visible);
  const int64_t valid = max_valid(m.handle.m);
  // The plan holds its own copy: new positions, or the mask's end, change nothing.
  const uint8_t after = in.u8() % 4;
  if (after == 1) {
    const std::vector<int32_t> positions(size_t(m.total_q) + 1, int32_t(in.u32()));
    fuzz::check_status_ok(alibi_mask_set_positions(m.handle.m, positions.data(), positions.data()),
                          "alibi_mask_set_positions");
  } else if (after == 2) {
    alibi_mask_destroy(m.handle.m);
    m.handle.m = nullptr;
  }
  check_plan(in, plan, cp_size, chunk_size, m.total_q, row_cells, valid);
  alibi_dist_plan_destroy(plan);
  return 0;
}
