// Fuzz target: mask creation (varlen, ranges, sliding window), explicit positions, the slice
// getters, and alibi_build_bias as the observable of what a mask means (its visible cells and
// every token's position) against tests/reference.h.
//
// Sizes are bounded (at most kMaxTokens queries and keys) so that every input runs in
// microseconds; inputs whose valid masks would be larger are not run (their validation is).
#include <algorithm>
#include <cstdint>
#include <vector>

#include "fuzz_common.h"
#include "reference.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr int64_t kMaxTokens = 80;

// cu_seqlens of `count` entries: small steps, now and then a wild value.
std::vector<int32_t> make_offsets(Bytes& in, int count) {
  std::vector<int32_t> cu(size_t(std::max(count, 0)));
  int64_t previous = 0;
  for (int i = 0; i < count; ++i) {
    const uint8_t pick = in.u8();
    int64_t value = pick < 240 ? (i == 0 ? in.in(0, 6) : previous + in.in(0, 24))
                               : in.i32_small_or_wild(-4, 100);
    if (value > INT32_MAX) value = INT32_MAX;
    cu[size_t(i)] = int32_t(value);
    previous = value;
  }
  return cu;
}

bool offsets_valid(const std::vector<int32_t>& cu) {
  if (cu.empty() || cu[0] < 0) return false;
  for (size_t i = 1; i < cu.size(); ++i)
    if (cu[i] < cu[i - 1]) return false;
  return true;
}

struct Built {
  alibi_mask_t mask = nullptr;
  int64_t total_q = 0, total_k = 0;
  ref::Visibility visible;
  ref::Positions positions;
  int expected_slices = -1;  // -1: at most 3 per sequence (windows)
  std::vector<ref::Slice> slices;  // what get_slices must return (not for windows)
  std::vector<int32_t> cu_q, cu_k;  // sequence masks
};

// Creates a varlen or sliding-window mask; false when the input is invalid or too large.
bool make_sequence_mask(Bytes& in, bool window, Built& built) {
  const char* function = window ? "alibi_mask_create_sliding_window" : "alibi_mask_create_varlen";
  const uint8_t batch_pick = in.u8();
  const int batch = batch_pick < 244 ? int(in.in(0, 5)) : batch_pick < 250 ? -1 : INT32_MIN;
  const int count = batch >= 0 ? batch + 1 : 4;
  std::vector<int32_t> cu_q = make_offsets(in, count), cu_k = make_offsets(in, count);
  const uint8_t nulls = in.u8();
  const bool null_q = nulls == 255, null_k = nulls == 254;
  const int causal = int(in.in(0, 2)) - (nulls == 253 ? 3 : 0);  // any int is a boolean
  const int left = in.i32_small_or_wild(-2, 40), right = in.i32_small_or_wild(-2, 40);

  const bool null_ctx = nulls == 252;
  Expect expect;
  if (null_ctx) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else if (batch < 0) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (null_q) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else if (!offsets_valid(cu_q)) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (null_k) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else if (!offsets_valid(cu_k)) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (window && (left < -1 || right < -1)) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (cu_q.back() > kMaxTokens || cu_k.back() > kMaxTokens) {
    return false;  // valid but too large to check quickly
  }
  alibi_context_t ctx = null_ctx ? nullptr : fuzz::cpu_context(1);
  alibi_mask_t mask = reinterpret_cast<alibi_mask_t>(&built);  // must be overwritten
  const int32_t* q = null_q ? nullptr : cu_q.data();
  const int32_t* k = null_k ? nullptr : cu_k.data();
  const alibi_status status =
      window ? alibi_mask_create_sliding_window(ctx, batch, q, k, left, right, &mask)
             : alibi_mask_create_varlen(ctx, batch, q, k, causal, &mask);
  expect.check(status, function);
  if (!expect.ok()) {
    FUZZ_REQUIRE(mask == nullptr, "%s failed but did not set *out to NULL", function);
    return false;
  }
  built.mask = mask;
  built.total_q = cu_q.back();
  built.total_k = cu_k.back();
  built.positions = ref::varlen_positions(cu_q, cu_k);
  if (window) {
    built.visible = ref::sliding_window(cu_q, cu_k, left, right);
  } else {
    built.slices = ref::varlen_slices(cu_q, cu_k, causal != 0);
    built.expected_slices = batch;
    built.visible = ref::from_slices(built.total_q, built.total_k, built.slices);
  }
  built.cu_q = cu_q;
  built.cu_k = cu_k;
  return true;
}

bool overlap(const ref::Slice& a, const ref::Slice& b) {
  if (a.q_begin == a.q_end || a.k_begin == a.k_end || b.q_begin == b.q_end || b.k_begin == b.k_end)
    return false;
  return a.q_begin < b.q_end && b.q_begin < a.q_end && a.k_begin < b.k_end && b.k_begin < a.k_end;
}

bool make_ranges_mask(Bytes& in, Built& built) {
  const char* function = "alibi_mask_create_ranges";
  const uint8_t slices_pick = in.u8();
  const int num_slices = slices_pick < 248 ? int(in.in(0, 5)) : slices_pick < 252 ? -1 : INT32_MIN;
  const int64_t total_q = in.i64_small_or_wild(0, 70), total_k = in.i64_small_or_wild(0, 70);
  const int n = std::max(num_slices, 0);
  std::vector<int32_t> q_ranges(size_t(2 * n)), k_ranges(size_t(2 * n)), types(static_cast<size_t>(n));
  for (int s = 0; s < n; ++s) {
    for (auto* ranges : {&q_ranges, &k_ranges}) {
      const int32_t begin = in.i32_small_or_wild(0, 64);
      const int32_t end = in.u8() < 240 ? int32_t(std::min<int64_t>(INT32_MAX, int64_t(begin) + in.in(0, 40)))
                                        : in.i32_small_or_wild(-2, 70);
      (*ranges)[size_t(2 * s)] = begin;
      (*ranges)[size_t(2 * s + 1)] = end;
    }
    types[size_t(s)] = in.u8() < 248 ? int32_t(in.in(0, 3)) : in.i32_small_or_wild(-2, 5);
  }
  const uint8_t nulls = in.u8();
  const bool null_q = nulls == 255, null_k = nulls == 254, null_types = nulls == 253;

  Expect expect;
  std::vector<ref::Slice> slices;
  auto range_ok = [](int32_t b, int32_t e, int64_t total) { return b >= 0 && e >= b && e <= total; };
  if (num_slices < 0 || total_q < 0 || total_q > INT32_MAX || total_k < 0 || total_k > INT32_MAX) {
    expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
  } else if (n > 0 && (null_q || null_k || null_types)) {
    expect.add(ALIBI_STATUS_NULL_POINTER);
  } else {
    for (int s = 0; s < n && expect.ok(); ++s) {
      const ref::Slice slice{q_ranges[size_t(2 * s)], q_ranges[size_t(2 * s + 1)],
                             k_ranges[size_t(2 * s)], k_ranges[size_t(2 * s + 1)], types[size_t(s)]};
      if (!range_ok(int32_t(slice.q_begin), int32_t(slice.q_end), total_q) ||
          !range_ok(int32_t(slice.k_begin), int32_t(slice.k_end), total_k) || slice.type < 0 ||
          slice.type > 3)
        expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
      slices.push_back(slice);
    }
    for (size_t a = 0; a < slices.size() && expect.ok(); ++a)
      for (size_t b = a + 1; b < slices.size() && expect.ok(); ++b)
        if (overlap(slices[a], slices[b])) expect.add(ALIBI_STATUS_INVALID_ARGUMENT);
    if (expect.ok() && (total_q > kMaxTokens || total_k > kMaxTokens)) return false;
  }
  alibi_mask_t mask = reinterpret_cast<alibi_mask_t>(&built);
  const alibi_status status = alibi_mask_create_ranges(
      fuzz::cpu_context(1), num_slices, null_q ? nullptr : q_ranges.data(),
      null_k ? nullptr : k_ranges.data(), null_types ? nullptr : types.data(), total_q, total_k,
      &mask);
  expect.check(status, function);
  if (!expect.ok()) {
    FUZZ_REQUIRE(mask == nullptr, "%s failed but did not set *out to NULL", function);
    return false;
  }
  built.mask = mask;
  built.total_q = total_q;
  built.total_k = total_k;
  built.slices = slices;
  built.expected_slices = n;
  built.visible = ref::from_slices(total_q, total_k, slices);
  built.positions = ref::stream_positions(total_q, total_k);
  return true;
}

// The token counts the mask reports are those it was made for; NULL skips one.
void check_totals(const Built& built) {
  int64_t total_q = -7, total_k = -7;
  fuzz::check_status_ok(alibi_mask_get_totals(built.mask, &total_q, &total_k), "alibi_mask_get_totals");
  FUZZ_REQUIRE(total_q == built.total_q && total_k == built.total_k,
               "alibi_mask_get_totals gave (%lld, %lld), expected (%lld, %lld)", (long long)total_q,
               (long long)total_k, (long long)built.total_q, (long long)built.total_k);
  fuzz::check_status_ok(alibi_mask_get_totals(built.mask, nullptr, nullptr), "alibi_mask_get_totals");
}

// The slices the mask reports: as created (varlen, ranges), or (windows) at most three per
// sequence inside its block, not overlapping, and together exactly the window's cells.
void check_slices(const Built& built) {
  int count = -1;
  fuzz::check_status_ok(alibi_mask_get_num_slices(built.mask, &count), "alibi_mask_get_num_slices");
  std::vector<int32_t> q(size_t(2 * count) + 2, -7), k(size_t(2 * count) + 2, -7),
      types(size_t(count) + 1, -7);
  fuzz::check_status_ok(alibi_mask_get_slices(built.mask, q.data(), k.data(), types.data()),
                        "alibi_mask_get_slices");
  fuzz::check_status_ok(alibi_mask_get_slices(built.mask, nullptr, nullptr, nullptr),
                        "alibi_mask_get_slices");
  FUZZ_REQUIRE(q[size_t(2 * count)] == -7 && types[size_t(count)] == -7,
               "alibi_mask_get_slices wrote past its %d slices", count);
  std::vector<ref::Slice> got;
  for (int s = 0; s < count; ++s)
    got.push_back({q[size_t(2 * s)], q[size_t(2 * s + 1)], k[size_t(2 * s)], k[size_t(2 * s + 1)],
                   types[size_t(s)]});
  if (built.expected_slices >= 0) {
    FUZZ_REQUIRE(count == built.expected_slices, "the mask has %d slices, expected %d", count,
                 built.expected_slices);
    for (int s = 0; s < count; ++s) {
      const ref::Slice& a = got[size_t(s)];
      const ref::Slice& b = built.slices[size_t(s)];
      FUZZ_REQUIRE(a.q_begin == b.q_begin && a.q_end == b.q_end && a.k_begin == b.k_begin &&
                       a.k_end == b.k_end && a.type == b.type,
                   "slice %d differs from the one created", s);
    }
  } else {
    const int batch = int(built.cu_q.size()) - 1;
    FUZZ_REQUIRE(count <= 3 * batch, "%d window slices for %d sequences", count, batch);
    for (const ref::Slice& s : got) {
      FUZZ_REQUIRE(s.type >= 0 && s.type <= 3, "window slice type %d", s.type);
      FUZZ_REQUIRE(s.q_begin < s.q_end && s.k_begin < s.k_end, "an empty window slice was kept");
      bool inside = false;
      for (int b = 0; b < batch; ++b)
        inside |= s.q_begin >= built.cu_q[size_t(b)] && s.q_end <= built.cu_q[size_t(b) + 1] &&
                  s.k_begin >= built.cu_k[size_t(b)] && s.k_end <= built.cu_k[size_t(b) + 1];
      FUZZ_REQUIRE(inside, "a window slice [%lld, %lld) x [%lld, %lld) leaves its sequence",
                   (long long)s.q_begin, (long long)s.q_end, (long long)s.k_begin, (long long)s.k_end);
    }
    for (size_t a = 0; a < got.size(); ++a)
      for (size_t b = a + 1; b < got.size(); ++b)
        FUZZ_REQUIRE(!overlap(got[a], got[b]), "window slices %zu and %zu overlap", a, b);
  }
  const ref::Visibility from_mask = ref::from_slices(built.total_q, built.total_k, got);
  FUZZ_REQUIRE(from_mask.cells == built.visible.cells,
               "the mask's slices do not cover exactly the expected cells");
}

// Replaces positions (q, k, both, or neither: NULL_POINTER) with fuzzed values.
void set_positions(Bytes& in, Built& built) {
  const uint8_t mode = in.u8() % 8;
  if (mode >= 4) return;
  // One spare entry: an empty side still passes a non-NULL pointer.
  std::vector<int32_t> q(size_t(built.total_q) + 1), k(size_t(built.total_k) + 1);
  const bool wild = in.flag();
  for (auto* v : {&q, &k})
    for (int32_t& x : *v) x = wild ? in.i32_small_or_wild(-100000, 100000) : int32_t(in.in(-70000, 70000));
  const bool set_q = mode & 1, set_k = mode & 2;
  Expect expect;
  if (!set_q && !set_k) expect.add(ALIBI_STATUS_NULL_POINTER);
  expect.check(alibi_mask_set_positions(built.mask, set_q ? q.data() : nullptr, set_k ? k.data() : nullptr),
               "alibi_mask_set_positions");
  if (set_q) built.positions.q.assign(q.begin(), q.end() - 1);
  if (set_k) built.positions.k.assign(k.begin(), k.end() - 1);
}

// build_bias must give -(slope * |qpos - kpos|) on visible cells and -inf elsewhere, bitwise.
void check_bias(Bytes& in, const Built& built) {
  const int heads = int(in.in(1, 3));
  alibi_attention_params params;
  alibi_attention_params_init(&params);
  std::vector<float> slopes(static_cast<size_t>(heads));
  const uint8_t mode = in.u8() % 4;
  if (mode == 0) {
    static const float table[] = {0.0f, 1e-3f, 0.25f, 1.0f, 1e4f, 3e38f};
    for (float& s : slopes) s = table[in.u8() % 6];
    params.slopes = slopes.data();
  } else {
    static const float max_biases[] = {8.0f, 0.0f, 1.0f, 16.0f};
    params.max_bias = max_biases[mode];
    fuzz::check_status_ok(alibi_compute_slopes(heads, params.max_bias, slopes.data()),
                          "alibi_compute_slopes");
  }
  std::vector<float> out(size_t(heads * built.total_q * built.total_k), 1234.5f);
  const int64_t shape[3] = {heads, built.total_q, built.total_k};
  fuzz::TensorHandle t;
  fuzz::check_status_ok(alibi_tensor_wrap(fuzz::cpu_context(1), ALIBI_DTYPE_F32, 3, shape, nullptr,
                                          out.data(), &t.t),
                        "alibi_tensor_wrap");
  fuzz::check_status_ok(alibi_build_bias(fuzz::cpu_context(1), built.mask, heads, &params, t.t),
                        "alibi_build_bias");
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < built.total_q; ++i)
      for (int64_t j = 0; j < built.total_k; ++j) {
        const int64_t distance =
            std::llabs(int64_t(built.positions.q[size_t(i)]) - built.positions.k[size_t(j)]);
        const float want = built.visible.at(i, j) ? -(slopes[size_t(h)] * float(distance))
                                                  : -std::numeric_limits<float>::infinity();
        const float got = out[size_t((h * built.total_q + i) * built.total_k + j)];
        FUZZ_REQUIRE(got == want, "build_bias[%d, %lld, %lld] = %g, expected %g", h, (long long)i,
                     (long long)j, got, want);
      }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  Built built;
  const uint8_t kind = in.u8() % 3;
  const bool made = kind == 2 ? make_ranges_mask(in, built) : make_sequence_mask(in, kind == 1, built);
  if (!made) return 0;
  fuzz::MaskHandle owner{built.mask};
  check_slices(built);
  check_totals(built);
  set_positions(in, built);
  check_bias(in, built);
  return 0;
}
