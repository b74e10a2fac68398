// alibi_attention_merge against a float64 merge written out below, on each device and float
// dtype: random rows of many shapes, rows whose sides saw no key, large and zero lse gaps, in
// place, strided views, no lse. Then the property that matters: the keys of a forward call split
// in two and merged back give the forward call over all keys. Last, bad arguments. Outputs are
// poisoned before every call, so every element checked was written by it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <regex>
#include <string>
#include <tuple>
#include <vector>

#include "reference.h"
#include "test_util.h"

namespace {

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

using test::dtype_name;

// ------------------------------------------------------------------------------------ operands

// Where an operand's elements lie in its buffer: element (i0, i1[, i2]) at sum(i_d * strides[d]).
struct Layout {
  std::vector<int64_t> shape, strides;
};

Layout row_major(const std::vector<int64_t>& shape) {
  std::vector<int64_t> strides(shape.size(), 1);
  for (size_t d = shape.size() - 1; d > 0; --d) strides[d - 1] = strides[d] * shape[d];
  return {shape, strides};
}

// Buffer offsets of the elements, in row-major order of their indices.
std::vector<int64_t> element_offsets(const Layout& layout) {
  int64_t count = 1;
  for (int64_t size : layout.shape) count *= size;
  std::vector<int64_t> offsets(size_t(count), 0);
  for (int64_t i = 0; i < count; ++i) {
    int64_t rest = i;
    for (size_t d = layout.shape.size(); d-- > 0; rest /= layout.shape[d])
      offsets[size_t(i)] += rest % layout.shape[d] * layout.strides[d];
  }
  return offsets;
}

// test::encode, except that NaN stays NaN in f16 too (test::to_half_bits rounds finite values).
std::vector<uint8_t> encode_cells(const std::vector<float>& cells, alibi_dtype dtype) {
  std::vector<uint8_t> bytes = test::encode(cells, dtype);
  const uint16_t f16_nan = 0x7e00;
  for (size_t i = 0; i < cells.size(); ++i)
    if (dtype == kF16 && std::isnan(cells[i])) std::memcpy(&bytes[2 * i], &f16_nan, 2);
  return bytes;
}

// A tensor on the context's device over a buffer of its own: `values` (row-major) at the
// layout's elements, poison in every other cell, including one past the farthest element.
class Operand {
 public:
  Operand(alibi_context_t ctx, alibi_dtype dtype, const Layout& layout,
          const std::vector<float>& values)
      : dtype_(dtype),
        offsets_(element_offsets(layout)),
        initial_(initial_bytes(values)),
        buffer_(ctx, dtype, test::element_bytes(dtype), initial_) {
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(alibi_tensor_wrap(ctx, dtype, int(layout.shape.size()), layout.shape.data(),
                                layout.strides.data(), buffer_.data(), &t),
              ALIBI_STATUS_SUCCESS)
        << alibi_last_error_message();
    tensor_.reset(t);
  }

  alibi_tensor_t get() const { return tensor_.get(); }

  // The elements as they are now, row-major.
  std::vector<float> values() const {
    const std::vector<float> cells = test::decode(buffer_.read(), dtype_);
    std::vector<float> elements;
    for (int64_t offset : offsets_) elements.push_back(cells[size_t(offset)]);
    return elements;
  }

  // Cells outside the elements whose bytes changed since construction.
  int changed_padding() const {
    const size_t size = test::element_bytes(dtype_);
    std::vector<uint8_t> bytes = buffer_.read();
    for (int64_t offset : offsets_)
      std::memcpy(&bytes[size_t(offset) * size], &initial_[size_t(offset) * size], size);
    int changed = 0;
    for (size_t cell = 0; cell < bytes.size(); cell += size)
      changed += std::memcmp(&bytes[cell], &initial_[cell], size) != 0;
    return changed;
  }

 private:
  std::vector<uint8_t> initial_bytes(const std::vector<float>& values) const {
    int64_t end = 0;
    for (int64_t offset : offsets_) end = std::max(end, offset + 1);
    std::vector<float> cells(size_t(end + 1), test::kPoison);
    for (size_t i = 0; i < offsets_.size(); ++i) cells[size_t(offsets_[i])] = values[i];
    return encode_cells(cells, dtype_);
  }

  alibi_dtype dtype_;
  std::vector<int64_t> offsets_;
  std::vector<uint8_t> initial_;
  test::DeviceBuffer buffer_;
  test::Tensor tensor_;
};

std::vector<float> poison(size_t count) { return std::vector<float>(count, test::kPoison); }

// ---------------------------------------------------------------------------- the float64 merge

struct Dims {
  int64_t tokens, heads, dim;
  size_t rows() const { return size_t(heads * tokens); }
  size_t elements() const { return size_t(tokens * heads * dim); }
  // Of out's (T, H, D) row-major elements, the first of lse's row (h, t).
  size_t first_element(size_t row) const {
    return (row % size_t(tokens) * size_t(heads) + row / size_t(tokens)) * size_t(dim);
  }
};

// Two partial results: out_* (T, H, D) row-major, lse_* (H, T) row-major (row = h * T + t).
struct Partials {
  Dims dims;
  std::vector<float> out_a, lse_a, out_b, lse_b;
};

// What a call must give: out and lse, each element with its tolerance. A row whose lse is -inf
// must hold exactly +0 and -inf.
struct Expected {
  std::vector<double> out, out_tolerance, lse, lse_tolerance;
};

double log_add_exp(double a, double b) {
  const double high = std::max(a, b), low = std::min(a, b);
  return high == kNegInf ? kNegInf : high + std::log1p(std::exp(low - high));
}

// side_weight * side_out, where a side with lse -inf adds nothing, whatever its out holds.
double contribution(double side_lse, double lse, float side_out) {
  return side_lse == kNegInf ? 0.0 : std::exp(side_lse - lse) * side_out;
}

// f32 arithmetic: two exponentials, a sum, a reciprocal and the products, each rounded once
// (2^-24), give an error below ~5e-7 of the larger contributing input; 2e-6 of it leaves a margin
// of 4x (every case here passes with a bound 8x tighter). f16/bf16 round the result once more:
// half a unit in the last place, 2^-11 (f16) or 2^-8 (bf16) of the result, plus 2^-25 absolute
// below f16's smallest normal.
double out_tolerance(double want, double inputs, alibi_dtype dtype) {
  const double rounding = dtype == kF16    ? std::ldexp(1.0, -11)
                          : dtype == kBF16 ? std::ldexp(1.0, -8)
                                           : 0.0;
  return 2e-6 * inputs + rounding * std::fabs(want) + (dtype == kF16 ? std::ldexp(1.0, -25) : 0.0);
}

// lse = max + logf(sum) with sum in [1, 2]: the logarithm is within ~1e-7, the addition rounds
// once (2^-24 relative); allowed: 1e-6 plus 2^-22 relative (here 1.2e-7 plus 2^-24 passes too).
double lse_tolerance(double want) { return 1e-6 + std::ldexp(std::fabs(want), -22); }

Expected reference_merge(const Partials& p, alibi_dtype dtype) {
  const Dims& dims = p.dims;
  Expected want{std::vector<double>(dims.elements(), 0.0),
                std::vector<double>(dims.elements(), 0.0), std::vector<double>(dims.rows()),
                std::vector<double>(dims.rows())};
  for (size_t row = 0; row < dims.rows(); ++row) {
    const double lse_a = p.lse_a[row], lse_b = p.lse_b[row], lse = log_add_exp(lse_a, lse_b);
    want.lse[row] = lse;
    want.lse_tolerance[row] = lse_tolerance(lse);
    if (lse == kNegInf) continue;
    for (size_t e = dims.first_element(row); e < dims.first_element(row) + size_t(dims.dim); ++e) {
      want.out[e] = contribution(lse_a, lse, p.out_a[e]) + contribution(lse_b, lse, p.out_b[e]);
      const double inputs = std::max(lse_a == kNegInf ? 0.0 : std::fabs(p.out_a[e]),
                                     lse_b == kNegInf ? 0.0 : std::fabs(p.out_b[e]));
      want.out_tolerance[e] = out_tolerance(want.out[e], inputs, dtype);
    }
  }
  return want;
}

// ------------------------------------------------------------------------------------ checking

struct Result {
  std::vector<float> out, lse;  // lse empty when the call had none
};

// Failed comparisons, the first few spelled out.
class Failures {
 public:
  void add(const std::string& what, size_t index, double got, double want) {
    if (++count_ <= 8)
      text_ += what + "[" + std::to_string(index) + "] = " + std::to_string(got) + ", want " +
               std::to_string(want) + "\n";
  }
  int count() const { return count_; }
  const std::string& text() const { return text_; }

 private:
  int count_ = 0;
  std::string text_;
};

bool near(float got, double want, double tolerance) { return std::fabs(got - want) <= tolerance; }

void check_row(const Result& got, const Expected& want, const Dims& dims, size_t row,
               Failures& bad) {
  const bool empty = want.lse[row] == kNegInf;
  if (!got.lse.empty() && !(empty ? got.lse[row] == kNegInf
                                  : near(got.lse[row], want.lse[row], want.lse_tolerance[row])))
    bad.add("lse", row, got.lse[row], want.lse[row]);
  for (size_t e = dims.first_element(row); e < dims.first_element(row) + size_t(dims.dim); ++e)
    if (!(empty ? test::float_to_bits(got.out[e]) == 0u
                : near(got.out[e], want.out[e], want.out_tolerance[e])))
      bad.add(empty ? "out (row without keys)" : "out", e, got.out[e], want.out[e]);
}

void expect_within(const Result& got, const Expected& want, const Dims& dims) {
  ASSERT_EQ(got.out.size(), want.out.size()) << "no out";
  Failures bad;
  for (size_t row = 0; row < dims.rows(); ++row) check_row(got, want, dims, row, bad);
  EXPECT_EQ(bad.count(), 0) << bad.text();
}

// ------------------------------------------------------------------------------------- calling

// Where out and lse are written: tensors of their own, the very tensors of side a or b, or (lse)
// nowhere.
enum class Into { kOwn, kSideA, kSideB, kNowhere };

struct Layouts {
  Layout out_a, lse_a, out_b, lse_b, out, lse;
};

Layouts row_major_layouts(const Dims& d) {
  const Layout out = row_major({d.tokens, d.heads, d.dim}), lse = row_major({d.heads, d.tokens});
  return {out, lse, out, lse, out, lse};
}

const Operand* chosen(Into into, const Operand& a, const Operand& b, const Operand& own) {
  return into == Into::kNowhere ? nullptr
         : into == Into::kSideA ? &a
         : into == Into::kSideB ? &b
                                : &own;
}

// Runs alibi_attention_merge and reads back what it wrote; no padding cell may change.
Result merge(alibi_context_t ctx, alibi_dtype dtype, const Partials& p, const Layouts& layouts,
             Into out_into = Into::kOwn, Into lse_into = Into::kOwn) {
  const Operand out_a(ctx, dtype, layouts.out_a, p.out_a);
  const Operand out_b(ctx, dtype, layouts.out_b, p.out_b);
  const Operand lse_a(ctx, kF32, layouts.lse_a, p.lse_a);
  const Operand lse_b(ctx, kF32, layouts.lse_b, p.lse_b);
  const Operand own_out(ctx, dtype, layouts.out, poison(p.dims.elements()));
  const Operand own_lse(ctx, kF32, layouts.lse, poison(p.dims.rows()));
  const Operand* out = chosen(out_into, out_a, out_b, own_out);
  const Operand* lse = chosen(lse_into, lse_a, lse_b, own_lse);
  const alibi_status status =
      alibi_attention_merge(ctx, out_a.get(), lse_a.get(), out_b.get(), lse_b.get(), out->get(),
                            lse ? lse->get() : nullptr);
  EXPECT_EQ(status, ALIBI_STATUS_SUCCESS) << alibi_last_error_message();
  for (const Operand* o : {&out_a, &out_b, &lse_a, &lse_b, &own_out, &own_lse})
    EXPECT_EQ(o->changed_padding(), 0) << "a cell outside an operand's elements was written";
  return {out->values(), lse ? lse->values() : std::vector<float>{}};
}

// ------------------------------------------------------------------------------------- inputs

// What a row (h, t) of random partials holds.
enum RowKind {
  kBothSaw,     // lse_a, lse_b random
  kOnlyBSaw,    // lse_a -inf, out_a garbage (NaN, +-inf)
  kOnlyASaw,    // lse_b -inf, out_b garbage
  kNeitherSaw,  // both -inf, both outs garbage
  kAFarAbove,   // lse_a = lse_b + 100: b's weight, e^-100, is below FLT_MIN (counts as 0)
  kBFarAbove,   // lse_b = lse_a + 1000: a's weight is exactly 0
  kEqual,       // lse_a = lse_b: out is the mean
  kRowKinds,
  kMixed = kRowKinds  // row r: kind r % kRowKinds
};

float garbage(size_t element) {
  static const float kGarbage[] = {kNaN, std::numeric_limits<float>::infinity(),
                                   -std::numeric_limits<float>::infinity()};
  return kGarbage[element % 3];
}

void shape_row(Partials& p, size_t row, RowKind kind) {
  float& lse_a = p.lse_a[row];
  float& lse_b = p.lse_b[row];
  const bool a_empty = kind == kOnlyBSaw || kind == kNeitherSaw;
  const bool b_empty = kind == kOnlyASaw || kind == kNeitherSaw;
  if (a_empty) lse_a = -INFINITY;
  if (b_empty) lse_b = -INFINITY;
  if (kind == kAFarAbove) lse_a = lse_b + 100.0f;
  if (kind == kBFarAbove) lse_b = lse_a + 1000.0f;
  if (kind == kEqual) lse_b = lse_a;
  const size_t first = p.dims.first_element(row);
  for (size_t e = first; e < first + size_t(p.dims.dim); ++e) {
    if (a_empty) p.out_a[e] = garbage(e);
    if (b_empty) p.out_b[e] = garbage(e + 1);
  }
}

// out_* uniform in [-1, 1] and exact in dtype, lse_* uniform in [base - 8, base + 8]; every row
// of `kind` (or, for kMixed, each kind in turn).
Partials random_partials(const Dims& dims, alibi_dtype dtype, uint32_t seed, RowKind kind,
                         float base = 0.0f) {
  Partials p{dims, test::random_floats(dims.elements(), seed),
             test::random_floats(dims.rows(), seed + 1, base - 8, base + 8),
             test::random_floats(dims.elements(), seed + 2),
             test::random_floats(dims.rows(), seed + 3, base - 8, base + 8)};
  for (float& x : p.out_a) x = test::round_to(x, dtype);
  for (float& x : p.out_b) x = test::round_to(x, dtype);
  for (size_t row = 0; row < dims.rows(); ++row)
    shape_row(p, row, kind == kMixed ? RowKind(row % kRowKinds) : kind);
  return p;
}

// ------------------------------------------------------------------------- merge vs reference

class MergeTest : public test::DeviceTest<std::tuple<alibi_device, alibi_dtype>> {
 protected:
  alibi_dtype dtype() const { return std::get<1>(GetParam()); }

  // Merges p with row-major operands unless told otherwise, and compares with the reference.
  Result check(const Partials& p, Into out_into = Into::kOwn, Into lse_into = Into::kOwn) {
    return check(p, row_major_layouts(p.dims), out_into, lse_into);
  }
  Result check(const Partials& p, const Layouts& layouts, Into out_into = Into::kOwn,
               Into lse_into = Into::kOwn) {
    const Result got = merge(ctx_.get(), dtype(), p, layouts, out_into, lse_into);
    expect_within(got, reference_merge(p, dtype()), p.dims);
    return got;
  }
};

// No tokens, single elements, odd sizes, D = 1 and 257, more tokens than a CPU work item (64).
TEST_P(MergeTest, RandomRowsOfManyShapesMatchReference) {
  for (const Dims& dims : {Dims{0, 3, 8}, Dims{1, 1, 1}, Dims{3, 2, 1}, Dims{7, 3, 5},
                           Dims{2, 1, 257}, Dims{65, 2, 16}, Dims{130, 5, 33}, Dims{9, 7, 3}}) {
    SCOPED_TRACE("T " + std::to_string(dims.tokens) + ", H " + std::to_string(dims.heads) + ", D " +
                 std::to_string(dims.dim));
    check(random_partials(dims, dtype(), uint32_t(dims.elements() + 1), kMixed));
  }
}

// Weight 1 for the side that saw keys, 0 for the other: its out and lse come through exactly.
TEST_P(MergeTest, SideWithoutKeysContributesNothing) {
  const Dims dims{6, 3, 10};
  for (RowKind kind : {kOnlyASaw, kOnlyBSaw}) {
    SCOPED_TRACE(kind == kOnlyASaw ? "lse_b -inf" : "lse_a -inf");
    const Partials p = random_partials(dims, dtype(), 10, kind);
    const Result got = check(p);
    EXPECT_EQ(got.out, kind == kOnlyASaw ? p.out_a : p.out_b);
    EXPECT_EQ(got.lse, kind == kOnlyASaw ? p.lse_a : p.lse_b);
  }
}

TEST_P(MergeTest, RowsWhereNeitherSideSawAKeyGetZeroAndNegInf) {
  check(random_partials({5, 4, 9}, dtype(), 20, kNeitherSaw));
}

// An lse the forward never writes (NaN, +inf) on either side: NaN out and lse, on every device.
TEST_P(MergeTest, NanOrInfiniteLseGivesNan) {
  const Dims dims{4, 2, 6};
  for (const float bad : {kNaN, std::numeric_limits<float>::infinity()})
    for (const bool on_a : {true, false}) {
      SCOPED_TRACE(std::string(std::isnan(bad) ? "NaN" : "+inf") + (on_a ? " lse_a" : " lse_b"));
      Partials p = random_partials(dims, dtype(), 30, kBothSaw);
      (on_a ? p.lse_a : p.lse_b)[1] = bad;
      const Result got = merge(ctx_.get(), dtype(), p, row_major_layouts(dims), Into::kOwn, Into::kOwn);
      EXPECT_TRUE(std::isnan(got.lse[1]));
      const size_t first = dims.first_element(1);
      for (size_t e = first; e < first + size_t(dims.dim); ++e) EXPECT_TRUE(std::isnan(got.out[e])) << e;
    }
}

// Gaps of 100 (the smaller weight, e^-100, would be an f32 subnormal: merge_weight makes it 0)
// and 1000 (exactly 0), around lse 0 and 1e4: the larger side comes through unchanged, its
// zeros too (a subnormal weight would have left e^-100 times the other side there).
TEST_P(MergeTest, LargeGapsLeaveTheLargerSide) {
  for (float base : {0.0f, 1e4f}) {
    for (RowKind kind : {kAFarAbove, kBFarAbove}) {
      SCOPED_TRACE("base " + std::to_string(base) +
                   (kind == kAFarAbove ? ", a 100 above" : ", b 1000 above"));
      Partials p = random_partials({11, 3, 7}, dtype(), 30, kind, base);
      std::vector<float>& larger = kind == kAFarAbove ? p.out_a : p.out_b;
      for (size_t e = 0; e < larger.size(); e += 5) larger[e] = 0.0f;
      const Result got = check(p);
      EXPECT_EQ(got.out, kind == kAFarAbove ? p.out_a : p.out_b);
      EXPECT_EQ(got.lse, kind == kAFarAbove ? p.lse_a : p.lse_b);
    }
  }
}

TEST_P(MergeTest, EqualLseAverageTheOutputs) {
  for (float base : {-5.0f, 1e4f}) {
    SCOPED_TRACE("base " + std::to_string(base));
    check(random_partials({8, 5, 12}, dtype(), 40, kEqual, base));
  }
}

TEST_P(MergeTest, InPlaceIntoSideA) {
  const Partials p = random_partials({70, 3, 9}, dtype(), 50, kMixed);
  check(p, Into::kSideA, Into::kSideA);
  check(p, Into::kSideA, Into::kSideB);
}

TEST_P(MergeTest, InPlaceIntoSideB) {
  const Partials p = random_partials({70, 3, 9}, dtype(), 51, kMixed);
  check(p, Into::kSideB, Into::kSideB);
  check(p, Into::kSideB, Into::kSideA);
}

// Views into larger buffers with padding, dims stored in other orders, lse transposed; the
// padding must stay poisoned (merge() checks it). Then in place through such views.
TEST_P(MergeTest, StridedViews) {
  const int64_t t = 13, h = 3, d = 6;
  const Layouts layouts{{{t, h, d}, {h * (d + 3) + 5, d + 3, 1}},  // padded rows and heads
                        {{h, t}, {1, h}},                          // transposed
                        {{t, h, d}, {1, t, t * h}},                // stored (D, H, T)
                        {{h, t}, {t + 3, 1}},                      // padded
                        {{t, h, d}, {2 * d, 2 * d * t, 2}},  // stored (H, T, D), every other cell
                        {{h, t}, {1, h + 2}}};               // transposed and padded
  const Partials p = random_partials({t, h, d}, dtype(), 60, kMixed);
  check(p, layouts);
  check(p, layouts, Into::kSideB, Into::kSideA);
}

TEST_P(MergeTest, LseMayBeNull) {
  const Partials p = random_partials({20, 2, 17}, dtype(), 70, kMixed);
  const Result with_lse = check(p);
  const Result without_lse = check(p, Into::kOwn, Into::kNowhere);
  int differing = 0;
  for (size_t i = 0; i < with_lse.out.size(); ++i)
    differing += test::float_to_bits(with_lse.out[i]) != test::float_to_bits(without_lse.out[i]);
  EXPECT_EQ(differing, 0) << "out differs bitwise without lse";
}

std::string merge_case_name(const alibi_dtype& dtype) { return dtype_name(dtype); }

INSTANTIATE_TEST_SUITE_P(All, MergeTest,
                         ::testing::Combine(test::kDevices, ::testing::Values(kF32, kF16, kBF16)),
                         test::device_case_name<alibi_dtype>(merge_case_name));

// ------------------------------------------------------------------- split keys, merged back

// 22 queries and 30 keys with explicit positions; keys split at 12. Every slice lies on one side
// of the split, so each side's mask holds its slices with keys counted from the side's first.
// Rows 10..15 see only keys of side a, rows 16..19 only keys of side b, rows 20 and 21 none.
constexpr int64_t kQueries = 22, kKeys = 30, kSplit = 12;
const std::vector<ref::Slice> kSlices{{0, 10, 0, 12, ref::kCausal},
                                      {0, 10, 12, 30, ref::kFull},
                                      {10, 16, 0, 12, ref::kBiCausal},
                                      {16, 20, 12, 30, ref::kInvCausal}};

// alibi_mask_create_ranges's arrays for the slices within keys [begin, end), keys counted from
// begin.
struct RangeArrays {
  std::vector<int32_t> q, k, types;
};

RangeArrays ranges_within(int64_t begin, int64_t end) {
  RangeArrays r;
  for (const ref::Slice& s : kSlices)
    if (s.k_begin >= begin && s.k_end <= end) {
      r.q.push_back(int32_t(s.q_begin));
      r.q.push_back(int32_t(s.q_end));
      r.k.push_back(int32_t(s.k_begin - begin));
      r.k.push_back(int32_t(s.k_end - begin));
      r.types.push_back(s.type);
    }
  return r;
}

struct Attention {
  int heads, heads_kv, dim;
  std::vector<float> q, k, v;  // (tokens, heads, dim) row-major
  ref::Positions positions;
};

std::vector<float> key_rows(const std::vector<float>& x, const Attention& a, int64_t begin,
                            int64_t end) {
  const size_t row = size_t(a.heads_kv * a.dim);
  return {x.begin() + long(size_t(begin) * row), x.begin() + long(size_t(end) * row)};
}

test::Mask keys_mask(alibi_context_t ctx, const Attention& a, int64_t begin, int64_t end) {
  const RangeArrays ranges = ranges_within(begin, end);
  alibi_mask_t mask = nullptr;
  EXPECT_EQ(
      alibi_mask_create_ranges(ctx, int(ranges.types.size()), ranges.q.data(), ranges.k.data(),
                               ranges.types.data(), kQueries, end - begin, &mask),
      ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  const std::vector<int32_t> k_positions(a.positions.k.begin() + begin,
                                         a.positions.k.begin() + end);
  EXPECT_EQ(alibi_mask_set_positions(mask, a.positions.q.data(), k_positions.data()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return test::Mask(mask);
}

// alibi_attention_forward of all queries against keys [begin, end) only (their own k and v
// tensors), at the keys' global positions.
Result forward_over_keys(alibi_context_t ctx, const Attention& a, int64_t begin, int64_t end) {
  const Layout q_layout = row_major({kQueries, a.heads, a.dim});
  const Layout kv_layout = row_major({end - begin, a.heads_kv, a.dim});
  const Operand q(ctx, kF32, q_layout, a.q);
  const Operand k(ctx, kF32, kv_layout, key_rows(a.k, a, begin, end));
  const Operand v(ctx, kF32, kv_layout, key_rows(a.v, a, begin, end));
  const Operand out(ctx, kF32, q_layout, poison(a.q.size()));
  const Operand lse(ctx, kF32, row_major({a.heads, kQueries}), poison(size_t(a.heads * kQueries)));
  const test::Mask mask = keys_mask(ctx, a, begin, end);
  EXPECT_EQ(alibi_attention_forward(ctx, q.get(), k.get(), v.get(), mask.get(), nullptr, out.get(),
                                    lse.get()),
            ALIBI_STATUS_SUCCESS)
      << alibi_last_error_message();
  return {out.values(), lse.values()};
}

std::vector<int32_t> random_positions(int64_t count, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int32_t> position(0, 40);
  std::vector<int32_t> positions(static_cast<size_t>(count));
  for (int32_t& x : positions) x = position(rng);
  return positions;
}

// The reference over all keys, with the defaults: formula slopes (max_bias 8), scale 1/sqrt(D).
ref::Problem whole_problem(const Attention& a) {
  return {kQueries,
          kKeys,
          a.heads,
          a.heads_kv,
          a.dim,
          {a.q.begin(), a.q.end()},
          {a.k.begin(), a.k.end()},
          {a.v.begin(), a.v.end()},
          ref::from_slices(kQueries, kKeys, kSlices),
          a.positions,
          ref::slopes_of_rows(ref::formula_slopes(a.heads, 8.0f), kQueries),
          1.0 / std::sqrt(double(a.dim))};
}

// Forward's f32 accuracy (tests/test_attention.cpp): 2e-5 absolute plus 1e-5 relative, for out
// and lse alike; a merge of two forward results stays within it.
Expected within_f32(const std::vector<double>& out, const std::vector<double>& lse) {
  auto tolerances = [](const std::vector<double>& x) {
    std::vector<double> t;
    for (double w : x) t.push_back(2e-5 + 1e-5 * std::fabs(w));
    return t;
  };
  return {out, tolerances(out), lse, tolerances(lse)};
}

Expected as_expected(const Result& r) {
  return within_f32({r.out.begin(), r.out.end()}, {r.lse.begin(), r.lse.end()});
}

class MergeSplitKeys : public test::DeviceTest<> {};
INSTANTIATE_TEST_SUITE_P(Device, MergeSplitKeys, test::kDevices, test::name_by_device);

TEST_P(MergeSplitKeys, MergedHalvesEqualOneForwardCallOverAllKeys) {
  const Attention a{4,
                    2,
                    16,
                    test::random_floats(size_t(kQueries * 4 * 16), 80),
                    test::random_floats(size_t(kKeys * 2 * 16), 81),
                    test::random_floats(size_t(kKeys * 2 * 16), 82),
                    {random_positions(kQueries, 83), random_positions(kKeys, 84)}};
  const Dims dims{kQueries, a.heads, a.dim};
  const Result whole = forward_over_keys(ctx_.get(), a, 0, kKeys);
  const Result side_a = forward_over_keys(ctx_.get(), a, 0, kSplit);
  const Result side_b = forward_over_keys(ctx_.get(), a, kSplit, kKeys);
  const ref::Result want = ref::attention(whole_problem(a));
  expect_within(whole, within_f32(want.out, want.lse), dims);
  const Partials halves{dims, side_a.out, side_a.lse, side_b.out, side_b.lse};
  const Result merged = merge(ctx_.get(), kF32, halves, row_major_layouts(dims));
  expect_within(merged, as_expected(whole), dims);
  expect_within(merged, within_f32(want.out, want.lse), dims);
  for (int64_t row = 10; row < 20; ++row)
    EXPECT_TRUE(std::isinf(row < 16 ? side_b.lse[size_t(row)] : side_a.lse[size_t(row)]))
        << "row " << row << " should see keys of one side only";
}

// ------------------------------------------------------------------------------ bad arguments

struct Args {
  alibi_context_t ctx;
  alibi_tensor_t out_a, lse_a, out_b, lse_b, out, lse;
};

// Host tensors of (T, H, D) = (5, 3, 4) on a CPU context, every byte 0x7f: a failed call must
// leave every one of them as it was.
class MergeErrors : public ::testing::Test {
 protected:
  static constexpr int64_t kT = 5, kH = 3, kD = 4;
  static constexpr uint8_t kPattern = 0x7f;

  void SetUp() override { ctx_ = test::make_cpu_context(); }

  alibi_tensor_t tensor(alibi_dtype dtype, const std::vector<int64_t>& shape) {
    int64_t count = 1;
    for (int64_t size : shape) count *= size;
    const size_t size = dtype == kF16 || dtype == kBF16 ? 2 : 4;
    buffers_.push_back(std::make_unique<std::vector<uint8_t>>(size_t(count) * size, kPattern));
    alibi_tensor_t t = nullptr;
    EXPECT_EQ(alibi_tensor_wrap(ctx_.get(), dtype, int(shape.size()), shape.data(), nullptr,
                                buffers_.back()->data(), &t),
              ALIBI_STATUS_SUCCESS);
    tensors_.emplace_back(t);
    return t;
  }
  alibi_tensor_t out_like(alibi_dtype dtype = kF32) { return tensor(dtype, {kT, kH, kD}); }
  alibi_tensor_t lse_like() { return tensor(kF32, {kH, kT}); }

  Args valid() {
    return {ctx_.get(), out_like(), lse_like(), out_like(), lse_like(), out_like(), lse_like()};
  }

  static alibi_status merge(const Args& a) {
    return alibi_attention_merge(a.ctx, a.out_a, a.lse_a, a.out_b, a.lse_b, a.out, a.lse);
  }

  // The status, and a message "alibi_attention_merge: ..." naming the argument (as a whole
  // word) and showing the bad value; then no buffer may have changed.
  void expect_rejected(const Args& args, alibi_status want, const std::string& argument,
                       const std::string& value) {
    const alibi_status got = merge(args);
    const std::string message = alibi_last_error_message();
    EXPECT_EQ(got, want) << alibi_status_string(got) << ": " << message;
    EXPECT_EQ(message.rfind("alibi_attention_merge: ", 0), 0u) << message;
    EXPECT_TRUE(std::regex_search(message, std::regex("\\b" + argument + "\\b")))
        << "no " << argument << " in: " << message;
    EXPECT_NE(message.find(value), std::string::npos) << "no " << value << " in: " << message;
    for (const auto& buffer : buffers_)
      EXPECT_TRUE(std::all_of(buffer->begin(), buffer->end(), [](uint8_t b) {
        return b == kPattern;
      })) << "a failed call wrote to a tensor";
  }

  test::Context ctx_;
  std::vector<std::unique_ptr<std::vector<uint8_t>>> buffers_;
  std::vector<test::Tensor> tensors_;
};

TEST_F(MergeErrors, ValidArgumentsSucceedAndClearTheMessage) {
  ASSERT_EQ(alibi_context_set_num_threads(ctx_.get(), -1), ALIBI_STATUS_INVALID_ARGUMENT);
  ASSERT_OK(merge(valid()));
  EXPECT_STREQ(alibi_last_error_message(), "");
}

TEST_F(MergeErrors, NullPointers) {
  const Args ok = valid();
  for (const auto& [field, name] : {std::pair{&Args::out_a, "out_a"},
                                    {&Args::lse_a, "lse_a"},
                                    {&Args::out_b, "out_b"},
                                    {&Args::lse_b, "lse_b"},
                                    {&Args::out, "out"}}) {
    Args args = ok;
    args.*field = nullptr;
    expect_rejected(args, ALIBI_STATUS_NULL_POINTER, name, "NULL");
  }
  Args args = ok;
  args.ctx = nullptr;
  expect_rejected(args, ALIBI_STATUS_NULL_POINTER, "ctx", "NULL");
}

// One argument replaced by a tensor of another dtype or shape.
struct BadTensor {
  alibi_tensor_t Args::*field;
  const char* name;
  alibi_dtype dtype;
  std::vector<int64_t> shape;
  alibi_status status;
  const char* value;
};

class MergeBadTensors : public MergeErrors {
 protected:
  void expect_all_rejected(const std::vector<BadTensor>& cases) {
    const Args ok = valid();
    for (const BadTensor& c : cases) {
      SCOPED_TRACE(std::string(c.name) + " " + c.value);
      Args args = ok;
      args.*c.field = tensor(c.dtype, c.shape);
      expect_rejected(args, c.status, c.name, c.value);
    }
  }
};

TEST_F(MergeBadTensors, WrongNdim) {
  const alibi_status s = ALIBI_STATUS_SHAPE_MISMATCH;
  expect_all_rejected({{&Args::out_a, "out_a", kF32, {kT, kH * kD}, s, "ndim = 2"},
                       {&Args::out_b, "out_b", kF32, {kT, kH, kD, 1}, s, "ndim = 4"},
                       {&Args::out, "out", kF32, {kT * kH * kD}, s, "ndim = 1"},
                       {&Args::lse_a, "lse_a", kF32, {kH, kT, 1}, s, "ndim = 3"},
                       {&Args::lse_b, "lse_b", kF32, {kH * kT}, s, "ndim = 1"},
                       {&Args::lse, "lse", kF32, {kH, kT, 1}, s, "ndim = 3"}});
}

TEST_F(MergeBadTensors, ShapesThatDisagree) {
  const alibi_status s = ALIBI_STATUS_SHAPE_MISMATCH;
  expect_all_rejected({{&Args::out_b, "out_b", kF32, {kT + 1, kH, kD}, s, "shape[0] = 6"},
                       {&Args::out_b, "out_b", kF32, {kT, kH - 1, kD}, s, "shape[1] = 2"},
                       {&Args::out_b, "out_b", kF32, {kT, kH, kD + 3}, s, "shape[2] = 7"},
                       {&Args::out, "out", kF32, {kT - 1, kH, kD}, s, "shape[0] = 4"},
                       {&Args::out, "out", kF32, {kT, kH + 5, kD}, s, "shape[1] = 8"},
                       {&Args::out, "out", kF32, {kT, kH, 1}, s, "shape[2] = 1"},
                       {&Args::lse_a, "lse_a", kF32, {kH + 1, kT}, s, "shape[0] = 4"},
                       {&Args::lse_a, "lse_a", kF32, {kT, kH}, s, "shape[0] = 5"},
                       {&Args::lse_b, "lse_b", kF32, {kH, kT + 4}, s, "shape[1] = 9"},
                       {&Args::lse, "lse", kF32, {kH, kT + 1}, s, "shape[1] = 6"}});
}

TEST_F(MergeBadTensors, DtypesThatDisagreeOrAreNotAccepted) {
  const alibi_status s = ALIBI_STATUS_DTYPE_MISMATCH;
  expect_all_rejected({{&Args::out_b, "out_b", kF16, {kT, kH, kD}, s, "f16"},
                       {&Args::out, "out", kBF16, {kT, kH, kD}, s, "bf16"},
                       {&Args::out_a, "out_a", ALIBI_DTYPE_I32, {kT, kH, kD}, s, "i32"},
                       {&Args::lse_a, "lse_a", kF16, {kH, kT}, s, "f16"},
                       {&Args::lse_b, "lse_b", kBF16, {kH, kT}, s, "bf16"},
                       {&Args::lse, "lse", ALIBI_DTYPE_I32, {kH, kT}, s, "i32"}});
}

// out_a fixes the dtype: with out_a and out f16, an f32 out_b is the odd one.
TEST_F(MergeBadTensors, OutAFixesTheDtype) {
  Args args = valid();
  args.out_a = out_like(kF16);
  args.out = out_like(kF16);
  expect_rejected(args, ALIBI_STATUS_DTYPE_MISMATCH, "out_b", "f32");
}

// A tensor of another device is INVALID_ARGUMENT, as for alibi_attention_forward.
TEST_F(MergeErrors, TensorOfAnotherDevice) {
  const std::string why = test::unavailable_reason(ALIBI_DEVICE_CUDA);
  if (!why.empty()) GTEST_SKIP() << "no CUDA device: " << why;
  const test::Context cuda = test::make_context(ALIBI_DEVICE_CUDA);
  const int64_t out_shape[3] = {kT, kH, kD}, lse_shape[2] = {kH, kT};
  alibi_tensor_t out_b = nullptr, lse = nullptr;
  ASSERT_OK(alibi_tensor_create(cuda.get(), kF32, 3, out_shape, &out_b));
  tensors_.emplace_back(out_b);
  ASSERT_OK(alibi_tensor_create(cuda.get(), kF32, 2, lse_shape, &lse));
  tensors_.emplace_back(lse);
  Args args = valid();
  args.out_b = out_b;
  expect_rejected(args, ALIBI_STATUS_INVALID_ARGUMENT, "out_b", "CUDA");
  args = valid();
  args.lse = lse;
  expect_rejected(args, ALIBI_STATUS_INVALID_ARGUMENT, "lse", "CUDA");
}

}  // namespace
