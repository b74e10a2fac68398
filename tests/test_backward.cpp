// alibi_attention_backward against the float64 backward reference (backward_reference.h), which is
// itself checked here by central finite differences of the float64 forward (reference.h), on the
// CPU and CUDA (skipped, saying why, without a GPU). Gradients are poisoned before every call, so
// every element checked was written by it.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iomanip>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "backward_reference.h"
#include "error_check.h"
#include "test_util.h"

namespace {

using test::Context;
using test::dtype_name;
using test::HeadCounts;
using test::heads_name;
using test::Mask;
using test::mask_type_name;
using test::random_positions;
using test::random_values;
using test::Sequences;
using test::sequences;
using test::Tensor;
using test::to_double;
using test::upload;

constexpr alibi_dtype kF32 = ALIBI_DTYPE_F32;
constexpr alibi_dtype kF16 = ALIBI_DTYPE_F16;
constexpr alibi_dtype kBF16 = ALIBI_DTYPE_BF16;
constexpr double kNegInf = -std::numeric_limits<double>::infinity();

// A forward call's results as the backward gets them: out rounded to q's dtype, lse to f32. The
// reference gradients use the same values, so that Di and P are those of the given tensors.
struct ForwardResults {
  std::vector<float> out, lse;
};

ForwardResults forward_results(const ref::Problem& p, alibi_dtype dtype) {
  const ref::Result exact = ref::attention(p);
  ForwardResults given;
  for (double x : exact.out) given.out.push_back(test::round_to(float(x), dtype));
  for (double x : exact.lse) given.lse.push_back(float(x));
  return given;
}

ref::Gradients reference_gradients(const ref::Problem& p, const ForwardResults& given,
                                   const std::vector<float>& dout,
                                   const std::vector<int32_t>& sequence_cu_q) {
  return ref::backward(p, {to_double(given.out), to_double(given.lse)}, to_double(dout),
                       sequence_cu_q);
}

// =================================================================================================
// The reference against central finite differences of the float64 forward

// L = sum(dout * out) of the float64 forward: the loss whose gradient ref::backward computes.
double loss(const ref::Problem& p, const std::vector<double>& dout) {
  const ref::Result r = ref::attention(p);
  double sum = 0.0;
  for (size_t n = 0; n < dout.size(); ++n) sum += dout[n] * r.out[n];
  return sum;
}

// (L(x + step) - L(x - step)) / (2 step), where shift(problem, delta) moves x by delta.
template <class Shift>
double central_difference(const ref::Problem& p, const std::vector<double>& dout, double step,
                          Shift shift) {
  ref::Problem plus = p, minus = p;
  shift(plus, step);
  shift(minus, -step);
  return (loss(plus, dout) - loss(minus, dout)) / (2.0 * step);
}

// A small problem for the finite differences. Slopes and slope steps are multiples of 2^-14 below 1
// and distances stay below 2^9, so that slope * distance (which SPEC computes in float32) is exact
// and the float64 loss is a smooth function of the slopes at every point the check visits.
struct DifferenceCase {
  ref::Problem problem;
  std::vector<double> dout;
  std::vector<int32_t> sequence_cu_q;  // per-sequence slopes: the queries' cu_seqlens
};

constexpr double kSlopeStep = 1.0 / 16384;  // 2^-14
constexpr double kInputStep = 1e-4;

std::vector<float> slope_grid_values(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> units(0, 16383);
  std::vector<float> slopes(n);
  for (float& s : slopes) s = float(units(rng) * kSlopeStep);
  return slopes;
}

ref::Problem small_problem(ref::Visibility visible, ref::Positions positions, int heads_q,
                           int heads_kv, int dim, uint32_t seed) {
  ref::Problem p;
  p.total_q = visible.total_q;
  p.total_k = visible.total_k;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = dim;
  p.q = to_double(test::random_floats(size_t(p.total_q * heads_q * dim), seed, -1.5f, 1.5f));
  p.k = to_double(test::random_floats(size_t(p.total_k * heads_kv * dim), seed + 1, -1.5f, 1.5f));
  p.v = to_double(test::random_floats(size_t(p.total_k * heads_kv * dim), seed + 2));
  p.visible = std::move(visible);
  p.positions = std::move(positions);
  p.scale = 1.0 / std::sqrt(double(dim));
  return p;
}

std::vector<double> random_dout(const ref::Problem& p, uint32_t seed) {
  return to_double(test::random_floats(size_t(p.total_q * p.heads_q * p.head_dim), seed));
}

// Ranges with all four slice types, rows shared by three slices, rows no slice covers; GQA 4/2,
// softcap (scale 1 so that it bites), a per-head attn_bias with -inf cells, explicit positions and
// user slopes.
DifferenceCase ranges_difference_case() {
  const std::vector<ref::Slice> slices{{0, 8, 0, 6, ref::kFull},
                                       {0, 8, 6, 12, ref::kCausal},
                                       {4, 12, 12, 16, ref::kInvCausal},
                                       {8, 12, 0, 5, ref::kBiCausal}};
  const ref::Positions positions{random_positions(14, 201, 0, 40),
                                 random_positions(16, 202, 0, 40)};
  DifferenceCase c{
      small_problem(ref::from_slices(14, 16, slices), positions, 4, 2, 5, 203), {}, {}};
  ref::Problem& p = c.problem;
  p.scale = 1.0;
  p.softcap = 1.5;
  p.slopes = ref::slopes_of_rows(slope_grid_values(4, 204), p.total_q);
  p.bias_heads = p.heads_q;
  p.attn_bias = to_double(test::random_floats(size_t(4 * 14 * 16), 205));
  for (size_t cell = 0; cell < p.attn_bias.size(); cell += 5) p.attn_bias[cell] = kNegInf;
  c.dout = random_dout(p, 206);
  return c;
}

// A sliding window over a varlen batch with empty sequences, MQA 3/1, per-sequence slopes.
DifferenceCase window_difference_case() {
  const Sequences seqs = sequences({{6, 6}, {0, 3}, {7, 4}, {3, 9}, {2, 0}});
  DifferenceCase c{small_problem(ref::sliding_window(seqs.cu_q, seqs.cu_k, 2, 1),
                                 ref::varlen_positions(seqs.cu_q, seqs.cu_k), 3, 1, 4, 211),
                   {},
                   seqs.cu_q};
  ref::Problem& p = c.problem;
  p.slopes =
      ref::slopes_of_sequences(slope_grid_values(size_t(seqs.batch() * 3), 212), 3, seqs.cu_q);
  c.dout = random_dout(p, 213);
  return c;
}

// Causal varlen with Lq > Lk (leading rows see nothing), explicit positions, formula slopes (powers
// of 2 for 2 heads), a broadcast attn_bias with one row all -inf.
DifferenceCase varlen_difference_case() {
  const Sequences seqs = sequences({{5, 5}, {4, 0}, {6, 3}, {2, 7}});
  const ref::Positions positions{random_positions(size_t(seqs.total_q()), 221, -20, 30),
                                 random_positions(size_t(seqs.total_k()), 222, -20, 30)};
  DifferenceCase c{small_problem(ref::from_slices(seqs.total_q(), seqs.total_k(),
                                                  ref::varlen_slices(seqs.cu_q, seqs.cu_k, true)),
                                 positions, 2, 2, 3, 223),
                   {},
                   {}};
  ref::Problem& p = c.problem;
  p.slopes = ref::slopes_of_rows(ref::formula_slopes(2, 8.0f), p.total_q);
  p.bias_heads = 1;
  p.attn_bias = to_double(test::random_floats(size_t(p.total_q * p.total_k), 224));
  for (int64_t j = 0; j < p.total_k; ++j) p.attn_bias[size_t(2 * p.total_k + j)] = kNegInf;
  c.dout = random_dout(p, 225);
  return c;
}

// Compares analytic and numeric derivatives; keeps the worst error relative to the bound.
class DerivativeCheck {
 public:
  DerivativeCheck(double relative, double absolute) : relative_(relative), absolute_(absolute) {}

  void add(const std::string& what, size_t index, double analytic, double numeric) {
    const double error = std::fabs(analytic - numeric);
    const double bound = absolute_ + relative_ * std::fabs(numeric);
    worst_ = std::max(worst_, error / bound);
    ++checked_;
    if (error > bound && failures_++ < 10)
      report_ += what + "[" + std::to_string(index) + "]: reference " + std::to_string(analytic) +
                 ", finite difference " + std::to_string(numeric) + "\n";
  }
  void expect_passed() const {
    EXPECT_EQ(failures_, 0) << report_;
    EXPECT_GT(checked_, 0);
  }
  double worst() const { return worst_; }

 private:
  double relative_, absolute_;
  double worst_ = 0.0;
  int checked_ = 0, failures_ = 0;
  std::string report_;
};

// Every entry of one input array (q, k or v) of the problem.
void check_input_gradient(const DifferenceCase& c, std::vector<double> ref::Problem::*input,
                          const std::vector<double>& gradient, const std::string& name,
                          DerivativeCheck& check) {
  for (size_t n = 0; n < gradient.size(); ++n) {
    const double numeric =
        central_difference(c.problem, c.dout, kInputStep,
                           [&](ref::Problem& p, double delta) { (p.*input)[n] += delta; });
    check.add(name, n, gradient[n], numeric);
  }
}

// Every slope: all rows of head h (of sequence b with per-sequence slopes) move together.
void check_slope_gradient(const DifferenceCase& c, const std::vector<double>& dslopes,
                          DerivativeCheck& check) {
  for (size_t n = 0; n < dslopes.size(); ++n) {
    bool exact = true;
    const double numeric =
        central_difference(c.problem, c.dout, kSlopeStep, [&](ref::Problem& p, double delta) {
          for (int h = 0; h < p.heads_q; ++h)
            for (int64_t i = 0; i < p.total_q; ++i) {
              if (ref::slope_index(p, c.sequence_cu_q, h, i) != int64_t(n)) continue;
              float& slope = p.slopes[size_t(h * p.total_q + i)];
              const double moved = double(slope) + delta;
              slope = float(moved);
              exact = exact && double(slope) == moved;
            }
        });
    ASSERT_TRUE(exact) << "slope " << n << " left the float grid";
    check.add("dslopes", n, dslopes[n], numeric);
  }
}

// Bounds: the inputs' steps leave a truncation error of about step^2 |L'''| / 6 ~ 1e-9 and a
// rounding error of about 1e-16 |L| / step ~ 1e-11; the slopes' ~ (step * distance)^2 / 6 < 1e-6
// relative. Measured: at most 1/8 of each bound. A wrong term (no Di, no softcap derivative, a lost
// sign or head) is off by 1e-2 or more.
void check_against_finite_differences(const DifferenceCase& c) {
  const ref::Result forward = ref::attention(c.problem);
  const ref::Gradients g = ref::backward(c.problem, forward, c.dout, c.sequence_cu_q);
  DerivativeCheck inputs(1e-7, 1e-9), slopes(2e-6, 1e-8);
  check_input_gradient(c, &ref::Problem::q, g.dq, "dq", inputs);
  check_input_gradient(c, &ref::Problem::k, g.dk, "dk", inputs);
  check_input_gradient(c, &ref::Problem::v, g.dv, "dv", inputs);
  check_slope_gradient(c, g.dslopes, slopes);
  inputs.expect_passed();
  slopes.expect_passed();
  ::testing::Test::RecordProperty("worst_input_error_over_bound", std::to_string(inputs.worst()));
  ::testing::Test::RecordProperty("worst_slope_error_over_bound", std::to_string(slopes.worst()));
}

TEST(BackwardReference, MatchesFiniteDifferencesOnRangesWithSoftcapAndAttnBias) {
  check_against_finite_differences(ranges_difference_case());
}

TEST(BackwardReference, MatchesFiniteDifferencesOnSlidingWindowWithPerSequenceSlopes) {
  check_against_finite_differences(window_difference_case());
}

TEST(BackwardReference, MatchesFiniteDifferencesOnCausalVarlenWithPositions) {
  check_against_finite_differences(varlen_difference_case());
}

// =================================================================================================
// The library against the reference

// A mask, its visible cells and positions as the reference sees them; cu_q of sequence masks.
struct MaskCase {
  Mask mask;
  ref::Visibility visible;
  ref::Positions positions;
  std::vector<int32_t> cu_q;  // empty for ranges masks
};

MaskCase ranges_case(alibi_context_t ctx, const std::vector<ref::Slice>& slices, int64_t total_q,
                     int64_t total_k) {
  std::vector<int32_t> q_ranges, k_ranges, types;
  for (const ref::Slice& s : slices) {
    q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_ranges(ctx, int(slices.size()), q_ranges.data(), k_ranges.data(),
                                     types.data(), total_q, total_k, &mask));
  return {Mask(mask),
          ref::from_slices(total_q, total_k, slices),
          ref::stream_positions(total_q, total_k),
          {}};
}

MaskCase varlen_case(alibi_context_t ctx, const Sequences& seqs, bool causal) {
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_varlen(ctx, seqs.batch(), seqs.cu_q.data(), seqs.cu_k.data(),
                                     causal ? 1 : 0, &mask));
  return {Mask(mask),
          ref::from_slices(seqs.total_q(), seqs.total_k(),
                           ref::varlen_slices(seqs.cu_q, seqs.cu_k, causal)),
          ref::varlen_positions(seqs.cu_q, seqs.cu_k), seqs.cu_q};
}

MaskCase window_case(alibi_context_t ctx, const Sequences& seqs, int left, int right) {
  alibi_mask_t mask = nullptr;
  SUCCEEDED(alibi_mask_create_sliding_window(ctx, seqs.batch(), seqs.cu_q.data(), seqs.cu_k.data(),
                                             left, right, &mask));
  return {Mask(mask), ref::sliding_window(seqs.cu_q, seqs.cu_k, left, right),
          ref::varlen_positions(seqs.cu_q, seqs.cu_k), seqs.cu_q};
}

void set_random_positions(MaskCase& m, uint32_t seed, int32_t lo, int32_t hi) {
  m.positions = {random_positions(size_t(m.visible.total_q), seed, lo, hi),
                 random_positions(size_t(m.visible.total_k), seed + 1, lo, hi)};
  SUCCEEDED(alibi_mask_set_positions(m.mask.get(), m.positions.q.data(), m.positions.k.data()));
}

// One backward problem: host inputs (exact in dtype), the library's mask and params, and the same
// problem for the reference. Built in place (params may point into it): not copyable.
struct Case {
  Case() = default;
  Case(const Case&) = delete;
  Case& operator=(const Case&) = delete;

  int64_t total_q = 0, total_k = 0;
  int heads_q = 1, heads_kv = 1, head_dim = 1;
  alibi_dtype dtype = kF32;
  std::vector<float> q, k, v, dout;
  MaskCase mask;
  alibi_attention_params params{};
  std::vector<float> user_slopes;  // params.slopes points here when set
  Tensor attn_bias;
  ref::Problem reference;
  std::vector<int32_t> sequence_cu_q;  // per-sequence slopes: dslopes is (batch, heads_q)

  int64_t dslopes_rows() const {
    return sequence_cu_q.empty() ? 1 : int64_t(sequence_cu_q.size()) - 1;
  }
};

// Random inputs; the defaults: formula slopes (max_bias 8), scale 1/sqrt(head_dim).
std::unique_ptr<Case> make_case(MaskCase mask, int heads_q, int heads_kv, int head_dim,
                                alibi_dtype dtype, uint32_t seed) {
  auto c = std::make_unique<Case>();
  c->total_q = mask.visible.total_q;
  c->total_k = mask.visible.total_k;
  c->heads_q = heads_q;
  c->heads_kv = heads_kv;
  c->head_dim = head_dim;
  c->dtype = dtype;
  const size_t q_size = size_t(c->total_q * heads_q * head_dim);
  const size_t kv_size = size_t(c->total_k * heads_kv * head_dim);
  c->q = random_values(q_size, dtype, seed);
  c->k = random_values(kv_size, dtype, seed + 1);
  c->v = random_values(kv_size, dtype, seed + 2);
  c->dout = random_values(q_size, dtype, seed + 3);
  alibi_attention_params_init(&c->params);

  ref::Problem& p = c->reference;
  p.total_q = c->total_q;
  p.total_k = c->total_k;
  p.heads_q = heads_q;
  p.heads_kv = heads_kv;
  p.head_dim = head_dim;
  p.q = to_double(c->q);
  p.k = to_double(c->k);
  p.v = to_double(c->v);
  p.visible = mask.visible;
  p.positions = mask.positions;
  p.slopes = ref::slopes_of_rows(ref::formula_slopes(heads_q, 8.0f), c->total_q);
  p.scale = 1.0 / std::sqrt(double(head_dim));
  c->mask = std::move(mask);
  return c;
}

void set_softcap(Case& c, float softcap, float scale) {
  c.params.softcap = softcap;
  c.params.softmax_scale = scale;
  c.reference.softcap = softcap;
  if (scale > 0) c.reference.scale = scale;
}

void set_user_slopes(Case& c, std::vector<float> slopes, bool per_sequence) {
  c.user_slopes = std::move(slopes);
  c.params.slopes = c.user_slopes.data();
  c.params.slopes_per_batch = per_sequence ? 1 : 0;
  if (per_sequence) {
    c.sequence_cu_q = c.mask.cu_q;
    c.reference.slopes = ref::slopes_of_sequences(c.user_slopes, c.heads_q, c.mask.cu_q);
  } else {
    c.reference.slopes = ref::slopes_of_rows(c.user_slopes, c.total_q);
  }
}

void set_max_bias(Case& c, float max_bias) {
  c.params.max_bias = max_bias;
  c.reference.slopes = ref::slopes_of_rows(ref::formula_slopes(c.heads_q, max_bias), c.total_q);
}

// Tensor parallelism: this case's heads are [offset, offset + heads_q) of total_heads.
void set_shard(Case& c, int total_heads, int offset) {
  c.params.total_heads = total_heads;
  c.params.head_offset = offset;
  const std::vector<float> all = ref::formula_slopes(total_heads, 8.0f);
  c.reference.slopes = ref::slopes_of_rows(
      std::vector<float>(all.begin() + offset, all.begin() + offset + c.heads_q), c.total_q);
}

// An additive bias (heads, total_q, total_k) exact in bias_dtype, with -inf on every 7th cell and
// on all of row 1 (which then sees nothing: lse -inf).
void set_attn_bias(alibi_context_t ctx, Case& c, int heads, alibi_dtype bias_dtype, uint32_t seed) {
  std::vector<float> bias =
      random_values(size_t(heads * c.total_q * c.total_k), bias_dtype, seed, -2.0f, 2.0f);
  for (size_t cell = 0; cell < bias.size(); ++cell) {
    const int64_t row = int64_t(cell / size_t(std::max<int64_t>(c.total_k, 1))) % c.total_q;
    if (row == 1 || cell % 7 == 0) bias[cell] = -std::numeric_limits<float>::infinity();
  }
  c.attn_bias = upload(ctx, bias_dtype, {heads, c.total_q, c.total_k}, bias);
  c.params.attn_bias = c.attn_bias.get();
  c.reference.bias_heads = heads;
  c.reference.attn_bias = to_double(bias);
}

// ---------------------------------------------------------------------------------- placed tensors

// A view into a flat buffer: element (i0, i1, ...) at base + sum(i_d * strides[d]).
struct View {
  std::vector<int64_t> shape, strides;
  int64_t base = 0;
};

// Contiguous, or strided with gaps everywhere (last dim contiguous for the 3-d tensors; 2-d
// column-major; 1-d every third element), after a few leading elements.
View layout(const std::vector<int64_t>& shape, bool strided) {
  View view{shape, std::vector<int64_t>(shape.size(), 1), 0};
  if (!strided) {
    for (size_t d = shape.size(); d-- > 1;) view.strides[d - 1] = view.strides[d] * shape[d];
    return view;
  }
  view.base = 3;
  if (shape.size() == 1) view.strides = {3};
  if (shape.size() == 2) view.strides = {1, shape[0] + 2};
  if (shape.size() == 3) view.strides = {shape[1] * (shape[2] + 3) + 5, shape[2] + 3, 1};
  return view;
}

std::vector<int64_t> offsets_of(const View& view) {
  std::vector<int64_t> offsets{view.base};
  for (size_t d = 0; d < view.shape.size(); ++d) {
    std::vector<int64_t> next;
    for (int64_t o : offsets)
      for (int64_t i = 0; i < view.shape[d]; ++i) next.push_back(o + i * view.strides[d]);
    offsets = std::move(next);
  }
  return offsets;
}

// A tensor wrapping a view into a buffer on the context's device; every buffer element outside the
// view holds poison, and so does the view when no values are given.
class Placed {
 public:
  Placed(alibi_context_t ctx, alibi_dtype dtype, const std::vector<int64_t>& shape, bool strided,
         const std::vector<float>& values = {})
      : dtype_(dtype), view_(layout(shape, strided)), offsets_(offsets_of(view_)) {
    int64_t size = offsets_.empty() ? 0 : *std::max_element(offsets_.begin(), offsets_.end()) + 1;
    if (strided) size += 4;
    std::vector<float> host(size_t(size), test::kPoison);
    for (size_t n = 0; n < values.size(); ++n) host[size_t(offsets_[n])] = values[n];
    buffer_ = std::make_unique<test::DeviceBuffer>(ctx, dtype, test::element_bytes(dtype),
                                                   test::encode(host, dtype));
    alibi_tensor_t t = nullptr;
    uint8_t* data =
        buffer_->data() ? buffer_->data() + view_.base * test::element_bytes(dtype) : nullptr;
    SUCCEEDED(alibi_tensor_wrap(ctx, dtype, int(shape.size()), shape.data(), view_.strides.data(),
                                data, &t));
    tensor_.reset(t);
  }

  alibi_tensor_t get() const { return tensor_.get(); }

  // The view's values, in row-major order.
  std::vector<float> values() const {
    const std::vector<float> all = test::decode(buffer_->read(), dtype_);
    std::vector<float> picked;
    for (int64_t o : offsets_) picked.push_back(all[size_t(o)]);
    return picked;
  }

  // Buffer elements outside the view that no longer hold poison.
  int changed_outside() const {
    const std::vector<float> all = test::decode(buffer_->read(), dtype_);
    std::vector<bool> inside(all.size(), false);
    for (int64_t o : offsets_) inside[size_t(o)] = true;
    const float poison = test::round_to(test::kPoison, dtype_);
    int changed = 0;
    for (size_t n = 0; n < all.size(); ++n) changed += !inside[n] && all[n] != poison;
    return changed;
  }

 private:
  alibi_dtype dtype_;
  View view_;
  std::vector<int64_t> offsets_;
  std::unique_ptr<test::DeviceBuffer> buffer_;
  Tensor tensor_;
};

// ---------------------------------------------------------------------------------------- the call

// What a call asks for: each gradient's dtype (nullopt: NULL, not computed), and the layout.
struct Request {
  std::optional<alibi_dtype> dq, dk, dv;
  bool dslopes = true;
  bool strided = false;
};

Request all_gradients(alibi_dtype dtype) { return {dtype, dtype, dtype, true, false}; }

// Gradients read back (empty when not asked for).
struct Gradients {
  std::vector<float> dq, dk, dv, dslopes;
};

std::optional<Placed> gradient_tensor(alibi_context_t ctx, std::optional<alibi_dtype> dtype,
                                      const std::vector<int64_t>& shape, bool strided) {
  if (!dtype) return std::nullopt;
  return std::make_optional<Placed>(ctx, *dtype, shape, strided);
}

// An alibi_attention_backward call: its status and message, and the gradients asked for, read
// back whether it succeeded or not.
struct Call {
  alibi_status status;
  std::string message;
  Gradients gradients;
};

// Calls alibi_attention_backward with the forward results `given`; every gradient poisoned first,
// and every buffer element outside the gradients' views must stay poisoned.
Call call_backward(alibi_context_t ctx, const Case& c, const ForwardResults& given,
                   const Request& r) {
  const std::vector<int64_t> q_shape{c.total_q, c.heads_q, c.head_dim};
  const std::vector<int64_t> kv_shape{c.total_k, c.heads_kv, c.head_dim};
  const Placed q(ctx, c.dtype, q_shape, r.strided, c.q);
  const Placed k(ctx, c.dtype, kv_shape, r.strided, c.k);
  const Placed v(ctx, c.dtype, kv_shape, r.strided, c.v);
  const Placed out(ctx, c.dtype, q_shape, r.strided, given.out);
  const Placed lse(ctx, kF32, {c.heads_q, c.total_q}, r.strided, given.lse);
  const Placed dout(ctx, c.dtype, q_shape, r.strided, c.dout);
  const std::optional<Placed> dq = gradient_tensor(ctx, r.dq, q_shape, r.strided);
  const std::optional<Placed> dk = gradient_tensor(ctx, r.dk, kv_shape, r.strided);
  const std::optional<Placed> dv = gradient_tensor(ctx, r.dv, kv_shape, r.strided);
  const std::vector<int64_t> dslopes_shape =
      c.sequence_cu_q.empty() ? std::vector<int64_t>{c.heads_q}
                              : std::vector<int64_t>{c.dslopes_rows(), c.heads_q};
  const std::optional<Placed> dslopes = gradient_tensor(
      ctx, r.dslopes ? std::optional(kF32) : std::nullopt, dslopes_shape, r.strided);
  auto tensor = [](const std::optional<Placed>& t) { return t ? t->get() : nullptr; };
  Call call{alibi_attention_backward(ctx, q.get(), k.get(), v.get(), c.mask.mask.get(), &c.params,
                                     out.get(), lse.get(), dout.get(), tensor(dq), tensor(dk),
                                     tensor(dv), tensor(dslopes)),
            alibi_last_error_message(),
            {}};
  Gradients& got = call.gradients;
  for (auto [placed, values, name] :
       {std::tuple{&dq, &got.dq, "dq"}, std::tuple{&dk, &got.dk, "dk"},
        std::tuple{&dv, &got.dv, "dv"}, std::tuple{&dslopes, &got.dslopes, "dslopes"}}) {
    if (!*placed) continue;
    *values = (*placed)->values();
    EXPECT_EQ((*placed)->changed_outside(), 0) << name << " wrote outside its view";
  }
  return call;
}

// The gradients of a call that must succeed (none when it fails).
Gradients run_backward(alibi_context_t ctx, const Case& c, const ForwardResults& given,
                       const Request& r) {
  Call call = call_backward(ctx, c, given, r);
  if (call.status == ALIBI_STATUS_SUCCESS) return std::move(call.gradients);
  ADD_FAILURE() << "alibi_attention_backward: " << alibi_status_string(call.status) << ": "
                << call.message;
  return {};
}

// -------------------------------------------------------------------------------------- comparison

// Tolerances. The library accumulates in f32 from exact inputs (f16/bf16 convert exactly): an f32
// gradient's error is f32 rounding in the scores, P, dP - Di and the sums, a multiple of eps =
// 2^-24 times the sum of the magnitudes of the terms (magnitude, from the reference, which also
// scales P's error by the size of the score's terms and the lse, and the softcap's 1 - tanh^2 by 1
// + tanh^2). Rows that see one key (dS = 0 in exact arithmetic) and dslopes (whose terms cancel)
// are rounding noise on that scale. Allowed: 64 eps times the magnitude; measured at most 7.1 eps
// on the CPU over every case here and 400 random problems, AVX2 and generic. CUDA's cuBLAS path
// accumulates the same way (f32 GEMMs, no TF32); its fused path also feeds P and dX to its f16/bf16
// tensor-core products as a high and a low part, about 22 (f16) or 16 (bf16) significant bits
// (flash_backward.cu): one more rounding of each term, allowed at twice that, 2^-21 or 2^-15 more
// of the magnitude. A gradient stored as f16/bf16 is rounded once more: one unit in the last
// place, 2^-10 or 2^-7 relative. Below that, smallest: for f16 the spacing of its subnormals,
// 2^-24; for f32 and bf16 2^-100, since a P below f32's normal range (2^-126) may flush to 0 and
// the sums of such terms stay below 2^-100 here.
double tolerance(double want, double magnitude, alibi_dtype gradient_dtype, double per_magnitude) {
  const double rounding = gradient_dtype == kF16    ? std::ldexp(1.0, -10)
                          : gradient_dtype == kBF16 ? std::ldexp(1.0, -7)
                                                    : 0.0;
  const double smallest = gradient_dtype == kF16 ? std::ldexp(1.0, -24) : std::ldexp(1.0, -100);
  return per_magnitude * magnitude + rounding * std::fabs(want) + smallest;
}

// Whether ctx's device runs c's backward with CUDA's fused kernels: where ALIBI_CUDA_PATH (read on
// every call) says fused, and by default for f16/bf16 inputs with head_dim <= 256 and no attn_bias
// (alibi.h).
bool runs_fused(alibi_context_t ctx, const Case& c) {
  alibi_device device = ALIBI_DEVICE_CPU;
  SUCCEEDED(alibi_context_get_device(ctx, &device));
  if (device != ALIBI_DEVICE_CUDA) return false;
  const char* forced = std::getenv("ALIBI_CUDA_PATH");
  const std::string path = forced ? forced : "";
  if (path == "fused" || path == "cublas") return path == "fused";
  return c.dtype != kF32 && c.head_dim <= 256 && !c.attn_bias;
}

// The error allowed per unit of magnitude (see tolerance) on ctx's device for c's inputs.
double error_per_magnitude(alibi_context_t ctx, const Case& c) {
  const double f32_terms = std::ldexp(1.0, -18);
  if (!runs_fused(ctx, c)) return f32_terms;
  return f32_terms + (c.dtype == kF16 ? std::ldexp(1.0, -21) : std::ldexp(1.0, -15));
}

// What the reference expects on ctx's device: its gradients, the error allowed per unit of their
// magnitude, and which elements get no contribution at all (a row whose lse is -inf, a key no such
// row sees, a slope of a head or sequence without one): those must be exactly 0, whatever the
// rounding.
struct Expected {
  ref::Gradients gradients;
  double per_magnitude;
  std::vector<bool> silent_dq, silent_dk, silent_dslopes;  // dv is silent where dk is
};

Expected expected_gradients(alibi_context_t ctx, const Case& c, const ForwardResults& given) {
  const ref::Problem& p = c.reference;
  const size_t dim = size_t(c.head_dim);
  Expected e{reference_gradients(p, given, c.dout, c.sequence_cu_q),
             error_per_magnitude(ctx, c),
             std::vector<bool>(size_t(c.total_q * c.heads_q) * dim, true),
             std::vector<bool>(size_t(c.total_k * c.heads_kv) * dim, true),
             std::vector<bool>(size_t(c.dslopes_rows() * c.heads_q), true)};
  for (int h = 0; h < c.heads_q; ++h)
    for (int64_t i = 0; i < c.total_q; ++i) {
      if (given.lse[size_t(h * c.total_q + i)] == -std::numeric_limits<float>::infinity()) continue;
      const size_t row = size_t(i * c.heads_q + h) * dim;
      std::fill_n(e.silent_dq.begin() + long(row), dim, false);
      e.silent_dslopes[size_t(ref::slope_index(p, c.sequence_cu_q, h, i))] = false;
      for (int64_t j = 0; j < c.total_k; ++j)
        if (p.visible.at(i, j))
          std::fill_n(
              e.silent_dk.begin() + long(size_t(j * c.heads_kv + ref::kv_head_of(p, h)) * dim), dim,
              false);
    }
  return e;
}

std::string precise(double x) {
  std::ostringstream text;
  text << std::setprecision(9) << x;
  return text.str();
}

void expect_close(const std::vector<float>& got, const std::vector<double>& want,
                  const std::vector<double>& magnitude, const std::vector<bool>& silent,
                  alibi_dtype gradient_dtype, double per_magnitude, const std::string& name) {
  ASSERT_EQ(got.size(), want.size()) << name << ": no result";
  int bad = 0;
  std::string report;
  for (size_t n = 0; n < want.size(); ++n) {
    const double error = std::fabs(got[n] - want[n]);
    const double allowed = tolerance(want[n], magnitude[n], gradient_dtype, per_magnitude);
    const bool ok = silent[n] ? got[n] == 0.0f : error <= allowed;
    if (!ok && bad++ < 8)
      report += name + "[" + std::to_string(n) + "]: got " + precise(got[n]) + ", want " +
                precise(want[n]) +
                (silent[n] ? " (no contribution)" : ", allowed error " + precise(allowed)) + "\n";
  }
  EXPECT_EQ(bad, 0) << name << " (" << dtype_name(gradient_dtype) << "):\n" << report;
}

void expect_matches(const Gradients& got, const Expected& want, const Request& r) {
  const ref::Gradients& g = want.gradients;
  const double per = want.per_magnitude;
  if (r.dq) expect_close(got.dq, g.dq, g.dq_abs, want.silent_dq, *r.dq, per, "dq");
  if (r.dk) expect_close(got.dk, g.dk, g.dk_abs, want.silent_dk, *r.dk, per, "dk");
  if (r.dv) expect_close(got.dv, g.dv, g.dv_abs, want.silent_dk, *r.dv, per, "dv");
  if (r.dslopes)
    expect_close(got.dslopes, g.dslopes, g.dslopes_abs, want.silent_dslopes, kF32, per, "dslopes");
}

// The library's gradients against the reference's, for the forward results of the reference
// (rounded as a forward call returns them).
void check_backward(alibi_context_t ctx, const Case& c, const Request& r) {
  const ForwardResults given = forward_results(c.reference, c.dtype);
  expect_matches(run_backward(ctx, c, given, r), expected_gradients(ctx, c, given), r);
}

void check_backward(alibi_context_t ctx, const Case& c) {
  check_backward(ctx, c, all_gradients(c.dtype));
}

void expect_bitwise_equal(const Gradients& got, const Gradients& want) {
  auto same = [](const std::vector<float>& a, const std::vector<float>& b, const char* name) {
    ASSERT_EQ(a.size(), b.size()) << name;
    EXPECT_EQ(test::bitwise_differences(a, b), 0) << name << ": elements not bitwise identical";
  };
  same(got.dq, want.dq, "dq");
  same(got.dk, want.dk, "dk");
  same(got.dv, want.dv, "dv");
  same(got.dslopes, want.dslopes, "dslopes");
}

const auto kAllDtypes = ::testing::Values(kF32, kF16, kBF16);

class BackwardFixture : public test::DeviceTest<> {};

template <class Param>
class BackwardParamFixture : public test::DeviceTest<std::tuple<alibi_device, Param>> {
 public:
  using CaseParam = Param;

 protected:
  const Param& param() const { return std::get<1>(this->GetParam()); }
};


// Few kv heads and 8 or more (the CPU kernel's two schedules).
const auto kScheduleHeads = ::testing::Values(HeadCounts{4, 2}, HeadCounts{16, 8});

// -------------------------------------------------------------------------------------- mask types

using LengthPair = std::pair<int, int>;

class BackwardMaskTypeTest : public BackwardParamFixture<std::tuple<alibi_dtype, int, LengthPair>> {
};

// One slice of each type, Sq < Sk, Sq == Sk and Sq > Sk, inside a larger stream whose rows outside
// the slice see nothing (lse -inf) and whose keys outside it are seen by no row.
TEST_P(BackwardMaskTypeTest, SliceInsideStreamMatchesReference) {
  const auto [dtype, type, lengths] = param();
  const auto [sq, sk] = lengths;
  MaskCase mask = ranges_case(ctx_.get(), {{2, 2 + sq, 3, 3 + sk, type}}, sq + 5, sk + 4);
  const auto c = make_case(std::move(mask), 4, 2, 24, dtype, uint32_t(sq * 131 + sk * 7 + type));
  check_backward(ctx_.get(), *c);
}

std::string mask_type_case_name(const BackwardMaskTypeTest::CaseParam& param) {
  const auto& [dtype, type, lengths] = param;
  return dtype_name(dtype) + "_" + mask_type_name(type) + "_" + std::to_string(lengths.first) +
         "x" + std::to_string(lengths.second);
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardMaskTypeTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(kAllDtypes, ::testing::Values(0, 1, 2, 3),
                                          ::testing::Values(LengthPair{7, 19}, LengthPair{16, 16},
                                                            LengthPair{23, 9}))),
    test::device_case_name<BackwardMaskTypeTest::CaseParam>(mask_type_case_name));

// ------------------------------------------------------------------------------------ ranges masks

class BackwardRanges : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, BackwardRanges, test::kDevices, test::name_by_device);

// Several slices of all four types share rows, listed out of key order; rows 24, 25 see nothing.
TEST_P(BackwardRanges, SharedRowsWithAllFourTypes) {
  const std::vector<ref::Slice> slices{{5, 15, 20, 30, ref::kInvCausal},
                                       {0, 20, 10, 20, ref::kCausal},
                                       {0, 20, 0, 10, ref::kFull},
                                       {15, 24, 20, 35, ref::kBiCausal}};
  for (alibi_dtype dtype : {kF32, kF16, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto c = make_case(ranges_case(ctx_.get(), slices, 26, 35), 6, 3, 24, dtype, 14);
    check_backward(ctx_.get(), *c);
  }
}

// Slices sharing rows use the merged lse: two key pieces give the gradient of their union.
TEST_P(BackwardRanges, RowSplitIntoKeyPiecesEqualsUnion) {
  const std::vector<ref::Slice> pieces{{0, 12, 9, 17, ref::kFull}, {0, 12, 0, 9, ref::kFull}};
  const auto split = make_case(ranges_case(ctx_.get(), pieces, 12, 17), 4, 2, 32, kF32, 13);
  const auto whole =
      make_case(ranges_case(ctx_.get(), {{0, 12, 0, 17, ref::kFull}}, 12, 17), 4, 2, 32, kF32, 13);
  const ForwardResults given = forward_results(whole->reference, kF32);
  const Request r = all_gradients(kF32);
  const Gradients from_split = run_backward(ctx_.get(), *split, given, r);
  const Gradients from_whole = run_backward(ctx_.get(), *whole, given, r);
  const Expected want = expected_gradients(ctx_.get(), *whole, given);
  expect_matches(from_split, want, r);
  expect_matches(from_whole, want, r);
}

// Empty ranges, causal Sq > Sk (leading rows see nothing), bi-causal Sq > Sk (sees nothing),
// inverse causal Sq > Sk (trailing rows see nothing) and rows no slice covers.
TEST_P(BackwardRanges, EmptyRangesAndRowsWithoutKeys) {
  const std::vector<ref::Slice> slices{
      {2, 2, 0, 7, ref::kFull},       {0, 5, 3, 3, ref::kCausal},
      {0, 3, 0, 3, ref::kCausal},     {3, 12, 4, 8, ref::kCausal},
      {3, 12, 8, 11, ref::kBiCausal}, {12, 18, 11, 14, ref::kInvCausal}};
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto c = make_case(ranges_case(ctx_.get(), slices, 20, 14), 3, 3, 16, dtype, 12);
    check_backward(ctx_.get(), *c);
  }
}

TEST_P(BackwardRanges, NoSlicesGivesZeroGradients) {
  const auto c = make_case(ranges_case(ctx_.get(), {}, 6, 9), 2, 1, 16, kF32, 11);
  check_backward(ctx_.get(), *c);
}

// ------------------------------------------------------------------------------------------ varlen

// Equal lengths, empty sequences of every kind, Lq > Lk, Lq < Lk.
const Sequences kVarlenSeqs =
    sequences({{5, 5}, {0, 0}, {9, 4}, {3, 11}, {0, 6}, {6, 0}, {17, 17}, {1, 1}, {2, 30}});

class BackwardVarlenTest : public BackwardParamFixture<std::tuple<bool, alibi_dtype>> {};

TEST_P(BackwardVarlenTest, BottomRightPositionsMatchReference) {
  const auto [causal, dtype] = param();
  const auto c =
      make_case(varlen_case(ctx_.get(), kVarlenSeqs, causal), 4, 4, 24, dtype, causal ? 16 : 17);
  check_backward(ctx_.get(), *c);
}

std::string varlen_case_name(const BackwardVarlenTest::CaseParam& param) {
  return std::string(std::get<0>(param) ? "causal_" : "full_") + dtype_name(std::get<1>(param));
}

INSTANTIATE_TEST_SUITE_P(All, BackwardVarlenTest,
                         ::testing::Combine(test::kDevices,
                                            ::testing::Combine(::testing::Bool(), kAllDtypes)),
                         test::device_case_name<BackwardVarlenTest::CaseParam>(varlen_case_name));

class BackwardVarlen : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, BackwardVarlen, test::kDevices, test::name_by_device);

// Tokens before cu_seqlens[0] see nothing; empty sequences and a batch without keys.
TEST_P(BackwardVarlen, TokensOutsideSequencesAndSequencesWithoutKeys) {
  Sequences seqs;
  seqs.cu_q = {2, 7, 12};
  seqs.cu_k = {3, 8, 15};
  const auto c = make_case(varlen_case(ctx_.get(), seqs, true), 2, 2, 16, kF32, 18);
  check_backward(ctx_.get(), *c);
  const auto no_keys = make_case(varlen_case(ctx_.get(), sequences({{3, 0}, {0, 0}, {4, 0}}), true),
                                 2, 2, 8, kBF16, 19);
  check_backward(ctx_.get(), *no_keys);
}

// --------------------------------------------------------------------------------- sliding windows

// Sq > Sk, empty q, Sq < Sk, Sq == Sk, empty k, a single query.
const Sequences kWindowSeqs =
    sequences({{9, 5}, {0, 7}, {5, 14}, {19, 7}, {12, 12}, {4, 0}, {1, 27}});

class BackwardSlidingWindowTest : public BackwardParamFixture<std::tuple<LengthPair, alibi_dtype>> {
};

TEST_P(BackwardSlidingWindowTest, MatchesDefinition) {
  const auto [window, dtype] = param();
  const auto [left, right] = window;
  const auto c = make_case(window_case(ctx_.get(), kWindowSeqs, left, right), 6, 2, 16, dtype,
                           uint32_t(100 + left * 7 + right));
  check_backward(ctx_.get(), *c);
}

std::string window_case_name(const BackwardSlidingWindowTest::CaseParam& param) {
  const auto& [window, dtype] = param;
  auto side = [](int w) { return w < 0 ? std::string("inf") : std::to_string(w); };
  return "left_" + side(window.first) + "_right_" + side(window.second) + "_" + dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardSlidingWindowTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(LengthPair{-1, -1}, LengthPair{-1, 0},
                                                            LengthPair{0, -1}, LengthPair{3, 2},
                                                            LengthPair{0, 0}, LengthPair{5, 0}),
                                          ::testing::Values(kF32, kBF16))),
    test::device_case_name<BackwardSlidingWindowTest::CaseParam>(window_case_name));

// --------------------------------------------------------------------------------------- positions

class BackwardPositions : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, BackwardPositions, test::kDevices, test::name_by_device);

TEST_P(BackwardPositions, RandomPositionsOnVarlenMask) {
  MaskCase mask = varlen_case(ctx_.get(), sequences({{11, 11}, {7, 19}, {13, 5}}), false);
  set_random_positions(mask, 20, -20, 43);
  const auto c = make_case(std::move(mask), 4, 2, 16, kF32, 21);
  check_backward(ctx_.get(), *c);
}

TEST_P(BackwardPositions, RandomPositionsOnRangesAndWindowMasks) {
  MaskCase ranges =
      ranges_case(ctx_.get(), {{0, 10, 0, 10, ref::kCausal}, {10, 25, 0, 30, ref::kFull}}, 25, 30);
  set_random_positions(ranges, 23, 0, 47);
  check_backward(ctx_.get(), *make_case(std::move(ranges), 3, 3, 16, kBF16, 22));
  MaskCase window = window_case(ctx_.get(), sequences({{9, 14}, {12, 12}}), 4, 2);
  set_random_positions(window, 25, 0, 40);
  check_backward(ctx_.get(), *make_case(std::move(window), 2, 1, 16, kF32, 24));
}

// --------------------------------------------------------------------------------------------- GQA

class BackwardGqaTest : public BackwardParamFixture<std::tuple<HeadCounts, alibi_dtype>> {};

// A kv head's dk and dv sum over the query heads that read it.
TEST_P(BackwardGqaTest, KvGradientsSumOverTheGroup) {
  const auto [heads, dtype] = param();
  const auto c =
      make_case(varlen_case(ctx_.get(), sequences({{13, 13}, {7, 20}, {10, 3}}), true), heads.first,
                heads.second, 16, dtype, uint32_t(heads.first * 10 + heads.second));
  check_backward(ctx_.get(), *c);
}

std::string gqa_case_name(const BackwardGqaTest::CaseParam& param) {
  return heads_name(std::get<0>(param)) + "_" + dtype_name(std::get<1>(param));
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardGqaTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(HeadCounts{5, 5}, HeadCounts{1, 1},
                                                            HeadCounts{6, 3}, HeadCounts{12, 3},
                                                            HeadCounts{8, 1}, HeadCounts{8, 8},
                                                            HeadCounts{27, 9}),
                                          ::testing::Values(kF32, kF16))),
    test::device_case_name<BackwardGqaTest::CaseParam>(gqa_case_name));

// ---------------------------------------------------------------------------------------- head_dim

class BackwardHeadDimTest : public BackwardParamFixture<std::tuple<int, alibi_dtype>> {};

TEST_P(BackwardHeadDimTest, MatchesReference) {
  const auto [head_dim, dtype] = param();
  const auto c = make_case(varlen_case(ctx_.get(), sequences({{21, 21}, {6, 30}}), true), 2, 1,
                           head_dim, dtype, uint32_t(head_dim));
  check_backward(ctx_.get(), *c);
}

std::string head_dim_case_name(const BackwardHeadDimTest::CaseParam& param) {
  return "d" + std::to_string(std::get<0>(param)) + "_" + dtype_name(std::get<1>(param));
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardHeadDimTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(1, 37, 80, 128, 256), kAllDtypes)),
    test::device_case_name<BackwardHeadDimTest::CaseParam>(head_dim_case_name));

// ------------------------------------------------------------------------------------------ params

class BackwardParams : public BackwardFixture {
 protected:
  const Sequences seqs_ = sequences({{15, 15}, {4, 22}, {9, 6}, {0, 3}});

  std::unique_ptr<Case> causal_case(int heads_q, int heads_kv, alibi_dtype dtype,
                                    uint32_t seed) const {
    return make_case(varlen_case(ctx_.get(), seqs_, true), heads_q, heads_kv, 32, dtype, seed);
  }
};
INSTANTIATE_TEST_SUITE_P(Device, BackwardParams, test::kDevices, test::name_by_device);

TEST_P(BackwardParams, ExplicitSoftmaxScale) {
  const auto c = causal_case(4, 2, kF32, 30);
  set_softcap(*c, 0.0f, 0.37f);
  check_backward(ctx_.get(), *c);
}

// The softcap's derivative applies to x = scale q.k; scale 1 makes it bite.
TEST_P(BackwardParams, Softcap) {
  for (alibi_dtype dtype : {kF32, kBF16}) {
    for (float scale : {1.0f, 0.0f}) {
      SCOPED_TRACE(dtype_name(dtype) + " scale " + std::to_string(scale));
      const auto c = causal_case(4, 4, dtype, 31);
      set_softcap(*c, 2.5f, scale);
      check_backward(ctx_.get(), *c);
    }
  }
}

// max_bias 0 (slopes 0: the gradient at slope 0 is still -sum dS |qpos - kpos|), the non-power-of-2
// interleave of 6 heads.
TEST_P(BackwardParams, FormulaSlopesForEveryMaxBias) {
  for (float max_bias : {0.0f, 1.0f, 8.0f, 16.0f}) {
    SCOPED_TRACE("max_bias " + std::to_string(max_bias));
    const auto c = causal_case(6, 3, kF32, 32);
    set_max_bias(*c, max_bias);
    check_backward(ctx_.get(), *c);
  }
}

// User slopes replace the formula; with them total_heads/head_offset are unused.
TEST_P(BackwardParams, UserSlopes) {
  std::vector<float> slopes = test::random_floats(5, 33, 0.0f, 1.0f);
  slopes[2] = 0.0f;
  const auto c = causal_case(5, 5, kF32, 34);
  set_user_slopes(*c, slopes, false);
  check_backward(ctx_.get(), *c);
  c->params.total_heads = 12;
  c->params.head_offset = 3;
  check_backward(ctx_.get(), *c);
}

// Tensor parallelism: the shard [6, 9) of 12 heads straddles the power-of-2 boundary at 8; its
// dslopes are those of the global heads 6, 7, 8.
TEST_P(BackwardParams, TensorParallelShard) {
  for (int offset : {0, 6, 9}) {
    SCOPED_TRACE("head_offset " + std::to_string(offset));
    const auto c = causal_case(3, 3, kF32, 37);
    set_shard(*c, 12, offset);
    check_backward(ctx_.get(), *c);
  }
}

// slopes_per_batch: dslopes is (batch, Hq), each sequence's own (the empty one gets 0).
TEST_P(BackwardParams, PerSequenceSlopesOnVarlenAndWindowMasks) {
  const int heads = 4;
  const std::vector<float> slopes =
      test::random_floats(size_t(seqs_.batch() * heads), 35, 0.0f, 1.0f);
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto varlen = causal_case(heads, 2, dtype, 36);
    set_user_slopes(*varlen, slopes, true);
    check_backward(ctx_.get(), *varlen);
    const auto window = make_case(window_case(ctx_.get(), seqs_, 3, 1), heads, 2, 32, dtype, 36);
    set_user_slopes(*window, slopes, true);
    check_backward(ctx_.get(), *window);
  }
}

// --------------------------------------------------------------------------------------- attn_bias

class BackwardAttnBiasTest
    : public BackwardParamFixture<std::tuple<bool, alibi_dtype, alibi_dtype>> {};

// attn_bias takes part in the scores (an input: no gradient), -inf cells and a -inf row too.
TEST_P(BackwardAttnBiasTest, InTheScores) {
  const auto [per_head, bias_dtype, dtype] = param();
  const auto c =
      make_case(varlen_case(ctx_.get(), sequences({{13, 13}, {6, 20}}), true), 4, 2, 16, dtype, 41);
  set_attn_bias(ctx_.get(), *c, per_head ? 4 : 1, bias_dtype, 42);
  check_backward(ctx_.get(), *c);
}

std::string attn_bias_case_name(const BackwardAttnBiasTest::CaseParam& param) {
  const auto& [per_head, bias_dtype, dtype] = param;
  return std::string(per_head ? "per_head" : "broadcast") + "_bias_" + dtype_name(bias_dtype) +
         "_q_" + dtype_name(dtype);
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardAttnBiasTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Bool(), ::testing::Values(kF32, kBF16),
                                          kAllDtypes)),
    test::device_case_name<BackwardAttnBiasTest::CaseParam>(attn_bias_case_name));

// ----------------------------------------------------------------------- gradient dtypes and NULLs

class BackwardOutputsTest : public BackwardParamFixture<HeadCounts> {
 protected:
  std::unique_ptr<Case> mixed_case(alibi_dtype dtype) const {
    const std::vector<ref::Slice> slices{{0, 20, 0, 10, ref::kFull},
                                         {0, 20, 10, 20, ref::kCausal},
                                         {20, 31, 5, 27, ref::kInvCausal}};
    return make_case(ranges_case(ctx_.get(), slices, 33, 27), param().first, param().second, 24,
                     dtype, 80);
  }
};

// f16/bf16 inputs: each gradient in the input dtype or f32 (then no rounding at all: the f32
// tolerance), in every mix.
TEST_P(BackwardOutputsTest, GradientsInTheInputDtypeOrF32) {
  for (alibi_dtype dtype : {kF16, kBF16}) {
    const auto c = mixed_case(dtype);
    for (int mix = 0; mix < 8; ++mix) {
      auto pick = [&](int bit) { return (mix >> bit) & 1 ? kF32 : dtype; };
      const Request r{pick(0), pick(1), pick(2), true, false};
      SCOPED_TRACE(dtype_name(dtype) + ": dq " + dtype_name(*r.dq) + ", dk " + dtype_name(*r.dk) +
                   ", dv " + dtype_name(*r.dv));
      check_backward(ctx_.get(), *c, r);
    }
  }
}

// Any subset of the four gradients may be NULL (all four: nothing to do, success).
TEST_P(BackwardOutputsTest, AnySubsetOfGradients) {
  const auto c = mixed_case(kF32);
  for (int subset = 0; subset < 16; ++subset) {
    auto wanted = [&](int bit) { return (subset >> bit) & 1 ? std::optional(kF32) : std::nullopt; };
    const Request r{wanted(0), wanted(1), wanted(2), ((subset >> 3) & 1) != 0, false};
    SCOPED_TRACE("subset " + std::to_string(subset));
    check_backward(ctx_.get(), *c, r);
  }
}

// q, k, v, out, lse, dout and every gradient as views with gaps into bigger buffers (the gaps must
// stay poisoned), dslopes with a non-unit stride ((Hq) stride 3, (B, Hq) column-major).
TEST_P(BackwardOutputsTest, StridedTensors) {
  const auto [heads_q, heads_kv] = param();
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    Request r = all_gradients(dtype);
    r.strided = true;
    check_backward(ctx_.get(), *mixed_case(dtype), r);
    const auto per_sequence =
        make_case(varlen_case(ctx_.get(), sequences({{12, 12}, {5, 17}, {9, 4}}), true), heads_q,
                  heads_kv, 16, dtype, 81);
    set_user_slopes(*per_sequence, test::random_floats(size_t(3 * heads_q), 82, 0.0f, 1.0f), true);
    check_backward(ctx_.get(), *per_sequence, r);
  }
}

INSTANTIATE_TEST_SUITE_P(All, BackwardOutputsTest,
                         ::testing::Combine(test::kDevices, kScheduleHeads),
                         test::device_case_name<HeadCounts>(heads_name));

// ------------------------------------------------------------------------------------- block edges

class BackwardBlockEdgeTest : public BackwardParamFixture<std::tuple<HeadCounts, LengthPair, int>> {
};

// Odd lengths around typical tile sizes (64 keys, 256 rows), one slice over the whole stream, both
// CPU schedules.
TEST_P(BackwardBlockEdgeTest, MatchesReference) {
  const auto [heads, lengths, type] = param();
  const auto [tq, tk] = lengths;
  const auto c =
      make_case(ranges_case(ctx_.get(), {{0, tq, 0, tk, type}}, tq, tk), heads.first, heads.second,
                heads.second < 8 ? 16 : 4, kF32, uint32_t(tq * 1000 + tk * 4 + type));
  check_backward(ctx_.get(), *c);
}

std::string block_edge_case_name(const BackwardBlockEdgeTest::CaseParam& param) {
  const auto& [heads, lengths, type] = param;
  return heads_name(heads) + "_" + std::to_string(lengths.first) + "x" +
         std::to_string(lengths.second) + "_" + mask_type_name(type);
}

INSTANTIATE_TEST_SUITE_P(
    All, BackwardBlockEdgeTest,
    ::testing::Combine(test::kDevices,
                       ::testing::Combine(::testing::Values(HeadCounts{2, 1}, HeadCounts{8, 8}),
                                          ::testing::Values(LengthPair{1, 300}, LengthPair{65, 129},
                                                            LengthPair{257, 257},
                                                            LengthPair{300, 63}, LengthPair{129, 1},
                                                            LengthPair{2, 2}),
                                          ::testing::Values(0, 1, 2, 3))),
    test::device_case_name<BackwardBlockEdgeTest::CaseParam>(block_edge_case_name));

// ----------------------------------------------------------------------------------- empty tensors

class BackwardEmptyTensors : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, BackwardEmptyTensors, test::kDevices, test::name_by_device);

TEST_P(BackwardEmptyTensors, ZeroQueries) {
  check_backward(ctx_.get(), *make_case(ranges_case(ctx_.get(), {{0, 0, 0, 6, ref::kFull}}, 0, 6),
                                        2, 2, 16, kF32, 70));
}

// Every row sees nothing: all gradients 0.
TEST_P(BackwardEmptyTensors, ZeroKeys) {
  for (alibi_dtype dtype : {kF32, kF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    check_backward(ctx_.get(),
                   *make_case(ranges_case(ctx_.get(), {{0, 5, 0, 0, ref::kCausal}}, 5, 0), 2, 1, 16,
                              dtype, 71));
  }
}

TEST_P(BackwardEmptyTensors, EmptyBatch) {
  check_backward(ctx_.get(),
                 *make_case(varlen_case(ctx_.get(), Sequences{}, false), 2, 2, 16, kF32, 73));
}

// ----------------------------------------------------------------------------------------- threads

class BackwardThreadsTest : public BackwardParamFixture<HeadCounts> {
 protected:
  // Medium shapes, so that both the key blocks and the query blocks are split between threads.
  std::unique_ptr<Case> medium_case(alibi_dtype dtype) const {
    const auto [heads_q, heads_kv] = param();
    return make_case(
        varlen_case(ctx_.get(), sequences({{300, 300}, {64, 200}, {1, 77}, {40, 13}}), true),
        heads_q, heads_kv, heads_q > 4 ? 16 : 64, dtype, 60);
  }
};

TEST_P(BackwardThreadsTest, ThreadCountsGiveBitwiseIdenticalResults) {
  for (alibi_dtype dtype : {kF32, kBF16}) {
    SCOPED_TRACE(dtype_name(dtype));
    const auto c = medium_case(dtype);
    const ForwardResults given = forward_results(c->reference, dtype);
    const Request r = all_gradients(dtype);
    ASSERT_OK(alibi_context_set_num_threads(ctx_.get(), 1));
    const Gradients single = run_backward(ctx_.get(), *c, given, r);
    expect_matches(single, expected_gradients(ctx_.get(), *c, given), r);
    for (int threads : {2, 3, 4}) {
      SCOPED_TRACE(std::to_string(threads) + " threads");
      ASSERT_OK(alibi_context_set_num_threads(ctx_.get(), threads));
      expect_bitwise_equal(run_backward(ctx_.get(), *c, given, r), single);
    }
  }
}

TEST_P(BackwardThreadsTest, RunsAreBitwiseIdentical) {
  const auto c = medium_case(kF32);
  c->params.deterministic = 1;
  const ForwardResults given = forward_results(c->reference, kF32);
  const Request r = all_gradients(kF32);
  const Gradients first = run_backward(ctx_.get(), *c, given, r);
  for (int run = 0; run < 2; ++run)
    expect_bitwise_equal(run_backward(ctx_.get(), *c, given, r), first);
}

// Thread counts concern the CPU only.
INSTANTIATE_TEST_SUITE_P(All, BackwardThreadsTest,
                         ::testing::Combine(::testing::Values(ALIBI_DEVICE_CPU), kScheduleHeads),
                         test::device_case_name<HeadCounts>(heads_name));

// ------------------------------------------------------------------------------- random problems

// A problem drawn from a seed: 1..4 sequences of 0..40 queries and 0..40 keys; Hkv 1..9 with
// groups of 1..3; head_dim 1..72; the mask (varlen causal or full, a sliding window, or ranges with
// two slices of random types per sequence sharing its rows), explicit positions or not; q's dtype;
// softcap, attn_bias, the slopes (formula, tensor-parallel, user, per sequence); each gradient's
// dtype or NULL; contiguous or strided.
struct RandomProblem {
  std::unique_ptr<Case> c;
  Request request;
  std::string description;
};

class Draw {
 public:
  explicit Draw(uint32_t seed) : rng_(seed) {}
  int operator()(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng_); }
  bool chance(int in) { return (*this)(1, in) == 1; }  // 1 in `in`

 private:
  std::mt19937 rng_;
};

// Per sequence: its rows see keys [ks, split) with one type and [split, ke) with another.
std::vector<ref::Slice> shared_row_slices(const Sequences& seqs, Draw& draw) {
  std::vector<ref::Slice> slices;
  for (int b = 0; b < seqs.batch(); ++b) {
    const int32_t qs = seqs.cu_q[size_t(b)], qe = seqs.cu_q[size_t(b) + 1];
    const int32_t ks = seqs.cu_k[size_t(b)], ke = seqs.cu_k[size_t(b) + 1];
    const int32_t split = draw(ks, ke);
    slices.push_back({qs, qe, ks, split, draw(0, 3)});
    slices.push_back({qs, qe, split, ke, draw(0, 3)});
  }
  return slices;
}

RandomProblem random_problem(alibi_context_t ctx, uint32_t seed) {
  Draw draw(seed);
  std::vector<std::pair<int32_t, int32_t>> lengths(size_t(draw(1, 4)));
  for (auto& [lq, lk] : lengths) {
    lq = draw(0, 40);
    lk = draw(0, 40);
  }
  const Sequences seqs = sequences(lengths);
  std::string text = "seed " + std::to_string(seed) + ", " + std::to_string(seqs.batch()) +
                     " sequences, total " + std::to_string(seqs.total_q()) + " x " +
                     std::to_string(seqs.total_k());
  MaskCase mask;
  switch (draw(0, 3)) {
    case 0:
    case 1: {
      const bool causal = draw.chance(2);
      mask = varlen_case(ctx, seqs, causal);
      text += causal ? ", varlen causal" : ", varlen full";
      break;
    }
    case 2: {
      const int left = draw(-1, 6), right = draw(-1, 6);
      mask = window_case(ctx, seqs, left, right);
      text += ", window (" + std::to_string(left) + ", " + std::to_string(right) + ")";
      break;
    }
    default:
      mask = ranges_case(ctx, shared_row_slices(seqs, draw), seqs.total_q(), seqs.total_k());
      text += ", ranges sharing rows";
  }
  if (draw.chance(3)) {
    set_random_positions(mask, seed, -30, 60);
    text += ", explicit positions";
  }
  const bool sequence_mask = !mask.cu_q.empty();
  const int heads_kv = draw(1, 9), heads_q = heads_kv * draw(1, 3), dim = draw(1, 72);
  const alibi_dtype dtype = std::vector<alibi_dtype>{kF32, kF16, kBF16}[size_t(draw(0, 2))];
  text += ", Hq " + std::to_string(heads_q) + ", Hkv " + std::to_string(heads_kv) + ", D " +
          std::to_string(dim) + ", " + dtype_name(dtype);
  RandomProblem problem{
      make_case(std::move(mask), heads_q, heads_kv, dim, dtype, seed * 7), {}, ""};
  Case& c = *problem.c;
  if (draw.chance(3)) {
    const float softcap = 0.5f + 0.25f * float(draw(0, 12));
    const float scale = draw.chance(2) ? 1.0f : 0.0f;
    set_softcap(c, softcap, scale);
    text += ", softcap " + std::to_string(softcap) + (scale > 0 ? " scale 1" : "");
  }
  if (c.total_q > 0 && draw.chance(4)) {
    const int heads = draw.chance(2) ? heads_q : 1;
    const alibi_dtype bias_dtype = draw.chance(2) ? kF32 : kBF16;
    set_attn_bias(ctx, c, heads, bias_dtype, seed + 1);
    text += ", attn_bias (" + std::to_string(heads) + " heads, " + dtype_name(bias_dtype) + ")";
  }
  switch (draw(0, 3)) {
    case 0:
      text += ", formula slopes";
      break;
    case 1: {
      const int total = heads_q + draw(0, 8), offset = draw(0, total - heads_q);
      set_shard(c, total, offset);
      text += ", heads [" + std::to_string(offset) + ", +" + std::to_string(heads_q) + ") of " +
              std::to_string(total);
      break;
    }
    default: {
      const bool per_sequence = sequence_mask && draw.chance(2);
      const size_t count = size_t(heads_q * (per_sequence ? seqs.batch() : 1));
      set_user_slopes(c, test::random_floats(count, seed + 2, 0.0f, 1.0f), per_sequence);
      text += per_sequence ? ", per-sequence slopes" : ", user slopes";
    }
  }
  auto gradient = [&](const char* name) -> std::optional<alibi_dtype> {
    const int choice = draw(0, 3);
    if (choice == 0) return std::nullopt;
    text += std::string(", ") + name + " " + dtype_name(choice == 1 ? kF32 : dtype);
    return choice == 1 ? kF32 : dtype;
  };
  Request& r = problem.request;
  r.dq = gradient("dq");
  r.dk = gradient("dk");
  r.dv = gradient("dv");
  r.dslopes = !draw.chance(4);
  r.strided = draw.chance(2);
  text += std::string(r.dslopes ? ", dslopes" : "") + (r.strided ? ", strided" : "");
  problem.description = text;
  return problem;
}

class BackwardRandom : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, BackwardRandom, test::kDevices, test::name_by_device);

TEST_P(BackwardRandom, ProblemsMatchReference) {
  for (uint32_t seed = 1; seed <= 40; ++seed) {
    const RandomProblem problem = random_problem(ctx_.get(), seed);
    SCOPED_TRACE(problem.description);
    check_backward(ctx_.get(), *problem.c, problem.request);
  }
}

// Positions 2^31 and more apart (|qpos - kpos| beyond int32): slopes of about 2^-31 make such
// distances a bias of -1 to -2.
TEST_P(BackwardRandom, PositionsFarApart) {
  const Sequences seqs = sequences({{9, 12}, {7, 5}});
  MaskCase mask = varlen_case(ctx_.get(), seqs, false);
  const int32_t top = std::numeric_limits<int32_t>::max(),
                bottom = std::numeric_limits<int32_t>::min();
  mask.positions.q = random_positions(size_t(seqs.total_q()), 130, top - 40, top);
  mask.positions.k = random_positions(size_t(seqs.total_k()), 131, bottom, bottom + 40);
  for (size_t j = 0; j < mask.positions.k.size(); j += 2) mask.positions.k[j] += top / 2 + 1;
  ASSERT_OK(
      alibi_mask_set_positions(mask.mask.get(), mask.positions.q.data(), mask.positions.k.data()));
  const auto c = make_case(std::move(mask), 4, 2, 16, kF32, 132);
  set_user_slopes(*c, {0.0f, std::ldexp(1.0f, -31), std::ldexp(1.5f, -32), std::ldexp(1.0f, -33)},
                  false);
  check_backward(ctx_.get(), *c);
}

// =================================================================================================
// Bad arguments: the status, a message naming alibi_attention_backward, the argument and its value,
// and nothing written (every gradient keeps its poison bytes).

using test::PoisonedOutput;

// q (5, 4, 8), k and v (7, 2, 8) f32, a causal varlen mask of two sequences; out, lse and dout
// valid; dq, dk, dv, dslopes poisoned.
class BackwardErrors : public ::testing::Test {
 protected:
  struct Args {
    alibi_context_t ctx;
    alibi_tensor_t q, k, v;
    alibi_mask_t mask;
    const alibi_attention_params* params;
    alibi_tensor_t out, lse, dout, dq, dk, dv, dslopes;
  };

  void SetUp() override {
    ctx_ = test::make_cpu_context();
    q_ = upload(ctx_.get(), kF32, {5, 4, 8}, random_values(160, kF32, 90));
    k_ = upload(ctx_.get(), kF32, {7, 2, 8}, random_values(112, kF32, 91));
    v_ = upload(ctx_.get(), kF32, {7, 2, 8}, random_values(112, kF32, 92));
    out_ = upload(ctx_.get(), kF32, {5, 4, 8}, random_values(160, kF32, 93));
    lse_ = upload(ctx_.get(), kF32, {4, 5}, random_values(20, kF32, 94));
    dout_ = upload(ctx_.get(), kF32, {5, 4, 8}, random_values(160, kF32, 95));
    const std::vector<int32_t> cu_q{0, 2, 5}, cu_k{0, 3, 7};
    alibi_mask_t mask = nullptr;
    ASSERT_OK(alibi_mask_create_varlen(ctx_.get(), 2, cu_q.data(), cu_k.data(), 1, &mask));
    mask_.reset(mask);
    alibi_attention_params_init(&params_);
    args_ = {ctx_.get(),
             q_.get(),
             k_.get(),
             v_.get(),
             mask_.get(),
             &params_,
             out_.get(),
             lse_.get(),
             dout_.get(),
             poisoned(kF32, {5, 4, 8}),
             poisoned(kF32, {7, 2, 8}),
             poisoned(kF32, {7, 2, 8}),
             poisoned(kF32, {4})};
  }

  alibi_tensor_t poisoned(alibi_dtype dtype, const std::vector<int64_t>& shape) {
    outputs_.push_back(std::make_unique<PoisonedOutput>(ctx_.get(), dtype, shape));
    return outputs_.back()->get();
  }

  static alibi_status backward(const Args& a) {
    return alibi_attention_backward(a.ctx, a.q, a.k, a.v, a.mask, a.params, a.out, a.lse, a.dout,
                                    a.dq, a.dk, a.dv, a.dslopes);
  }

  // The call fails with `want`; the message names the function, the argument and each value;
  // nothing was written.
  void expect_fails(const Args& a, alibi_status want, const std::string& argument,
                    const std::vector<std::string>& values = {}) {
    SCOPED_TRACE("argument " + argument);
    test::expect_error(backward(a), want, "alibi_attention_backward", argument, values);
    for (size_t n = 0; n < outputs_.size(); ++n)
      EXPECT_TRUE(outputs_[n]->untouched()) << "output " << n << " was written";
  }

  template <typename Value>
  Args with(alibi_tensor_t Args::*field, Value value) const {
    Args a = args_;
    a.*field = value;
    return a;
  }

  Context ctx_;
  Tensor q_, k_, v_, out_, lse_, dout_;
  Mask mask_;
  alibi_attention_params params_{};
  Args args_{};
  std::vector<std::unique_ptr<PoisonedOutput>> outputs_;
};

TEST_F(BackwardErrors, ValidArgumentsSucceed) {
  ASSERT_OK(backward(args_));
  EXPECT_STREQ(alibi_last_error_message(), "");
}

TEST_F(BackwardErrors, MissingLseOrDout) {
  expect_fails(with(&Args::lse, nullptr), ALIBI_STATUS_NULL_POINTER, "lse", {"NULL"});
  expect_fails(with(&Args::dout, nullptr), ALIBI_STATUS_NULL_POINTER, "dout", {"NULL"});
}

// The forward's arguments are checked as by alibi_attention_forward.
TEST_F(BackwardErrors, ForwardArgumentsAreCheckedAsByTheForward) {
  expect_fails(with(&Args::q, nullptr), ALIBI_STATUS_NULL_POINTER, "q", {"NULL"});
  expect_fails(with(&Args::out, nullptr), ALIBI_STATUS_NULL_POINTER, "out", {"NULL"});
  expect_fails(with(&Args::lse, poisoned(kF32, {4, 6})), ALIBI_STATUS_SHAPE_MISMATCH, "lse", {"6"});
  expect_fails(with(&Args::lse, poisoned(kF16, {4, 5})), ALIBI_STATUS_DTYPE_MISMATCH, "lse",
               {"f16"});
  expect_fails(with(&Args::out, poisoned(kF32, {5, 4, 9})), ALIBI_STATUS_SHAPE_MISMATCH, "out",
               {"9"});
  Args a = args_;
  a.mask = nullptr;
  expect_fails(a, ALIBI_STATUS_NULL_POINTER, "mask", {"NULL"});
}

TEST_F(BackwardErrors, DoutOfTheWrongShapeOrDtype) {
  expect_fails(with(&Args::dout, poisoned(kF32, {5, 4, 9})), ALIBI_STATUS_SHAPE_MISMATCH, "dout",
               {"9"});
  expect_fails(with(&Args::dout, poisoned(kF32, {6, 4, 8})), ALIBI_STATUS_SHAPE_MISMATCH, "dout",
               {"6"});
  expect_fails(with(&Args::dout, poisoned(kF32, {5, 32})), ALIBI_STATUS_SHAPE_MISMATCH, "dout",
               {"2"});
  expect_fails(with(&Args::dout, poisoned(kBF16, {5, 4, 8})), ALIBI_STATUS_DTYPE_MISMATCH, "dout",
               {"bf16"});
}

// dq (q's shape), dk and dv (k's shape): each dim wrong, ndim wrong, a dtype neither q's nor f32.
TEST_F(BackwardErrors, GradientsOfTheWrongShapeOrDtype) {
  const std::vector<std::pair<alibi_tensor_t Args::*, std::vector<int64_t>>> gradients{
      {&Args::dq, {5, 4, 8}}, {&Args::dk, {7, 2, 8}}, {&Args::dv, {7, 2, 8}}};
  const char* const names[] = {"dq", "dk", "dv"};
  for (size_t g = 0; g < gradients.size(); ++g) {
    const auto& [field, shape] = gradients[g];
    for (int d = 0; d < 3; ++d) {
      std::vector<int64_t> wrong = shape;
      wrong[size_t(d)] += 3;
      expect_fails(with(field, poisoned(kF32, wrong)), ALIBI_STATUS_SHAPE_MISMATCH, names[g],
                   {std::to_string(wrong[size_t(d)])});
    }
    expect_fails(with(field, poisoned(kF32, {shape[0], shape[1] * shape[2]})),
                 ALIBI_STATUS_SHAPE_MISMATCH, names[g], {"2"});
    expect_fails(with(field, poisoned(kF16, shape)), ALIBI_STATUS_DTYPE_MISMATCH, names[g],
                 {"f16"});
    expect_fails(with(field, poisoned(ALIBI_DTYPE_I32, shape)), ALIBI_STATUS_DTYPE_MISMATCH,
                 names[g], {"i32"});
  }
}

// A gradient whose last dim is not contiguous.
TEST_F(BackwardErrors, GradientWithAStridedLastDim) {
  std::vector<float> memory(5 * 4 * 8 * 2, test::kPoison);
  const std::vector<float> before = memory;
  const int64_t shape[3] = {5, 4, 8}, strides[3] = {64, 16, 2};
  alibi_tensor_t t = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx_.get(), kF32, 3, shape, strides, memory.data(), &t));
  Tensor dq(t);
  expect_fails(with(&Args::dq, dq.get()), ALIBI_STATUS_INVALID_ARGUMENT, "dq", {"strides[2] = 2"});
  EXPECT_EQ(memory, before);
}

// A gradient may share no memory with an input or another gradient.
TEST_F(BackwardErrors, GradientsSharingMemoryWithInputsOrEachOther) {
  expect_fails(with(&Args::dq, q_.get()), ALIBI_STATUS_INVALID_ARGUMENT, "dq", {"overlaps q"});
  expect_fails(with(&Args::dk, v_.get()), ALIBI_STATUS_INVALID_ARGUMENT, "dk", {"overlaps v"});
  Args both = args_;
  both.dv = both.dk;
  expect_fails(both, ALIBI_STATUS_INVALID_ARGUMENT, "dk", {"overlaps dv"});
  void* lse_memory = nullptr;
  ASSERT_OK(alibi_tensor_get_data(lse_.get(), &lse_memory));
  const int64_t four[1] = {4};
  alibi_tensor_t t = nullptr;
  ASSERT_OK(alibi_tensor_wrap(ctx_.get(), kF32, 1, four, nullptr,
                              static_cast<float*>(lse_memory) + 16, &t));
  Tensor inside_lse(t);
  expect_fails(with(&Args::dslopes, inside_lse.get()), ALIBI_STATUS_INVALID_ARGUMENT, "dslopes",
               {"overlaps lse"});
}

TEST_F(BackwardErrors, DslopesOfTheWrongShapeOrDtype) {
  expect_fails(with(&Args::dslopes, poisoned(kF32, {5})), ALIBI_STATUS_SHAPE_MISMATCH, "dslopes",
               {"5"});
  expect_fails(with(&Args::dslopes, poisoned(kF32, {2, 4})), ALIBI_STATUS_SHAPE_MISMATCH, "dslopes",
               {"2"});
  expect_fails(with(&Args::dslopes, poisoned(kF16, {4})), ALIBI_STATUS_DTYPE_MISMATCH, "dslopes",
               {"f16"});
  expect_fails(with(&Args::dslopes, poisoned(kBF16, {4})), ALIBI_STATUS_DTYPE_MISMATCH, "dslopes",
               {"bf16"});
}

// With per-sequence slopes dslopes is (num_sequences, Hq) = (2, 4).
TEST_F(BackwardErrors, PerSequenceDslopesShape) {
  const std::vector<float> slopes(8, 0.25f);
  params_.slopes = slopes.data();
  params_.slopes_per_batch = 1;
  expect_fails(args_, ALIBI_STATUS_SHAPE_MISMATCH, "dslopes", {"1"});
  expect_fails(with(&Args::dslopes, poisoned(kF32, {3, 4})), ALIBI_STATUS_SHAPE_MISMATCH, "dslopes",
               {"3", "2"});
  expect_fails(with(&Args::dslopes, poisoned(kF32, {2, 5})), ALIBI_STATUS_SHAPE_MISMATCH, "dslopes",
               {"5"});
  ASSERT_OK(backward(with(&Args::dslopes, poisoned(kF32, {2, 4}))));
}

// =================================================================================================
// CUDA's two paths, forced by ALIBI_CUDA_PATH, beyond the device suites above: skipped, saying why,
// without a GPU.

using test::ForcedPath;

const auto kCuda = ::testing::Values(ALIBI_DEVICE_CUDA);

enum CudaMaskKind { kVarlenCausal, kSharedRows, kSlidingWindow, kVarlenWithEmpty };

std::string cuda_mask_kind_name(int kind) {
  static const char* const kNames[] = {"varlen_causal", "shared_rows", "sliding_window",
                                       "varlen_with_empty"};
  return kNames[kind];
}

// Sequences longer than a 64-row tile, Lq > Lk and Lq < Lk.
const Sequences kLongSeqs = sequences({{70, 70}, {5, 135}, {130, 64}});
// The same with sequences without keys, without queries, and without either between them.
const Sequences kLongSeqsWithEmpty =
    sequences({{70, 70}, {0, 20}, {5, 135}, {5, 0}, {130, 64}, {0, 0}});
// Several slices of every type share rows, out of key order.
const std::vector<ref::Slice> kLongSharedSlices{{5, 85, 120, 200, ref::kInvCausal},
                                                {0, 100, 60, 120, ref::kCausal},
                                                {0, 100, 0, 60, ref::kFull},
                                                {85, 140, 120, 210, ref::kBiCausal}};

// GQA 4/2 on a mask of the kind: per-sequence slopes on the varlen masks, softcap 2 with scale 1
// (so that it bites) on the shared rows, random positions in [-300, 300] set after the sliding
// window's creation.
std::unique_ptr<Case> cuda_case(alibi_context_t ctx, int kind, int head_dim, alibi_dtype dtype) {
  const uint32_t seed = uint32_t(head_dim * 10 + kind);
  if (kind == kSharedRows) {
    auto c = make_case(ranges_case(ctx, kLongSharedSlices, 150, 215), 4, 2, head_dim, dtype, seed);
    set_softcap(*c, 2.0f, 1.0f);
    return c;
  }
  if (kind == kSlidingWindow) {
    MaskCase window = window_case(ctx, kLongSeqs, 40, 7);
    set_random_positions(window, 31, -300, 300);
    return make_case(std::move(window), 4, 2, head_dim, dtype, seed);
  }
  const Sequences& seqs = kind == kVarlenCausal ? kLongSeqs : kLongSeqsWithEmpty;
  auto c = make_case(varlen_case(ctx, seqs, true), 4, 2, head_dim, dtype, seed);
  set_user_slopes(*c, test::random_floats(size_t(seqs.batch() * 4), seed, 0.0f, 1.0f), true);
  return c;
}

// An f32 gradient rounded to dtype is the dtype gradient, bit for bit: each is the same f32 sum,
// rounded once (or not at all).
void expect_rounds_to(const std::vector<float>& f32, const std::vector<float>& rounded,
                      alibi_dtype dtype, const std::string& name) {
  ASSERT_EQ(f32.size(), rounded.size()) << name;
  std::vector<float> f32_rounded = f32;
  for (float& x : f32_rounded) x = test::round_to(x, dtype);
  EXPECT_EQ(test::bitwise_differences(f32_rounded, rounded), 0)
      << name << ": the f32 gradient does not round to the " << dtype_name(dtype) << " one";
}

// One path's gradients as what the other's must match: each path is within its bound of the
// reference, so the two are within the sum of both bounds of each other, which the looser bound
// (that of `reference`, the fused path's) over twice the magnitudes covers.
Expected as_expected(const Gradients& other, const Expected& reference) {
  Expected e = reference;
  ref::Gradients& g = e.gradients;
  g.dq = to_double(other.dq);
  g.dk = to_double(other.dk);
  g.dv = to_double(other.dv);
  g.dslopes = to_double(other.dslopes);
  for (std::vector<double>* magnitude : {&g.dq_abs, &g.dk_abs, &g.dv_abs, &g.dslopes_abs})
    for (double& x : *magnitude) x *= 2.0;
  return e;
}

class CudaBackwardPathsTest : public BackwardParamFixture<std::tuple<alibi_dtype, int, int>> {};

// Both paths against the float64 reference and each other: all gradients in the input dtype; then
// dq and dv in f32 with dk and dslopes NULL, whose values must round to the first call's.
TEST_P(CudaBackwardPathsTest, FusedAndCublasMatchTheReferenceAndEachOther) {
  const auto [dtype, head_dim, kind] = param();
  const auto c = cuda_case(ctx_.get(), kind, head_dim, dtype);
  const ForwardResults given = forward_results(c->reference, dtype);
  const Request in_dtype = all_gradients(dtype);
  const Request in_f32{kF32, std::nullopt, kF32, false, false};
  const char* const paths[] = {"fused", "cublas"};
  Gradients results[2];
  for (int n = 0; n < 2; ++n) {
    SCOPED_TRACE(paths[n]);
    const ForcedPath path(paths[n]);
    const Expected want = expected_gradients(ctx_.get(), *c, given);
    results[n] = run_backward(ctx_.get(), *c, given, in_dtype);
    expect_matches(results[n], want, in_dtype);
    const Gradients some = run_backward(ctx_.get(), *c, given, in_f32);
    expect_matches(some, want, in_f32);
    expect_rounds_to(some.dq, results[n].dq, dtype, "dq");
    expect_rounds_to(some.dv, results[n].dv, dtype, "dv");
  }
  SCOPED_TRACE("fused against cublas");
  const ForcedPath fused("fused");
  expect_matches(results[0], as_expected(results[1], expected_gradients(ctx_.get(), *c, given)),
                 in_dtype);
}

std::string cuda_paths_case_name(const CudaBackwardPathsTest::CaseParam& param) {
  const auto& [dtype, head_dim, kind] = param;
  return dtype_name(dtype) + "_d" + std::to_string(head_dim) + "_" + cuda_mask_kind_name(kind);
}

INSTANTIATE_TEST_SUITE_P(
    All, CudaBackwardPathsTest,
    ::testing::Combine(kCuda, ::testing::Combine(::testing::Values(kF16, kBF16),
                                                 ::testing::Values(64, 80, 128, 256),
                                                 ::testing::Values(kVarlenCausal, kSharedRows,
                                                                   kSlidingWindow,
                                                                   kVarlenWithEmpty))),
    test::device_case_name<CudaBackwardPathsTest::CaseParam>(cuda_paths_case_name));

class CudaBackward : public BackwardFixture {};
INSTANTIATE_TEST_SUITE_P(Device, CudaBackward, kCuda, test::name_by_device);

// What the fused kernels do not take runs on the cuBLAS path by default: f32 inputs with a
// per-head attn_bias (-inf cells, a -inf row), head_dim 320 in bf16.
TEST_P(CudaBackward, WhatOnlyCublasTakes) {
  const auto with_bias =
      make_case(ranges_case(ctx_.get(), kLongSharedSlices, 150, 215), 4, 2, 48, kF32, 41);
  set_attn_bias(ctx_.get(), *with_bias, 4, kF32, 42);
  check_backward(ctx_.get(), *with_bias);
  check_backward(ctx_.get(),
                 *make_case(ranges_case(ctx_.get(), kLongSharedSlices, 150, 215), 4, 2, 320, kBF16,
                            43));
}

// A call that fails with `want`, its message naming `what`, every gradient keeping its poison.
void expect_rejected(alibi_context_t ctx, const Case& c, alibi_status want,
                     const std::string& what) {
  const Call call =
      call_backward(ctx, c, forward_results(c.reference, c.dtype), all_gradients(c.dtype));
  EXPECT_EQ(call.status, want) << call.message;
  EXPECT_NE(call.message.find(what), std::string::npos) << call.message;
  const Gradients& g = call.gradients;
  for (const auto& [values, dtype] : {std::pair{&g.dq, c.dtype}, std::pair{&g.dk, c.dtype},
                                      std::pair{&g.dv, c.dtype}, std::pair{&g.dslopes, kF32}})
    EXPECT_EQ(std::count(values->begin(), values->end(), test::round_to(test::kPoison, dtype)),
              long(values->size()))
        << "a gradient was written";
}

TEST_P(CudaBackward, ForcedFusedPathRejectsWhatItDoesNotTake) {
  const ForcedPath path("fused");
  const auto f32 = make_case(varlen_case(ctx_.get(), kLongSeqs, true), 4, 2, 64, kF32, 51);
  expect_rejected(ctx_.get(), *f32, ALIBI_STATUS_UNSUPPORTED, "f32");
  const auto with_bias = make_case(varlen_case(ctx_.get(), kLongSeqs, true), 4, 2, 64, kF16, 52);
  set_attn_bias(ctx_.get(), *with_bias, 4, kF32, 53);
  expect_rejected(ctx_.get(), *with_bias, ALIBI_STATUS_UNSUPPORTED, "attn_bias");
  const ForcedPath bogus("fastest");
  expect_rejected(ctx_.get(), *with_bias, ALIBI_STATUS_INVALID_ARGUMENT, "fastest");
}

// Without params->deterministic too: neither path uses atomics.
TEST_P(CudaBackward, RunsAreBitwiseIdenticalOnBothPaths) {
  const auto c = cuda_case(ctx_.get(), kSharedRows, 128, kBF16);
  const ForwardResults given = forward_results(c->reference, kBF16);
  const Request r = all_gradients(kBF16);
  for (const char* which : {"fused", "cublas"}) {
    SCOPED_TRACE(which);
    const ForcedPath path(which);
    const Gradients first = run_backward(ctx_.get(), *c, given, r);
    for (int run = 0; run < 2; ++run)
      expect_bitwise_equal(run_backward(ctx_.get(), *c, given, r), first);
  }
}

// Masks with no query rows or no keys at all: every wanted gradient is written (0), and a call
// that wants none succeeds.
TEST_P(CudaBackward, MasksWithoutRowsOrKeysWriteZeros) {
  const Request none{std::nullopt, std::nullopt, std::nullopt, false, false};
  for (const char* which : {"fused", "cublas"}) {
    const ForcedPath path(which);
    for (const Sequences& seqs : {sequences({{0, 75}}), sequences({{70, 0}})}) {
      SCOPED_TRACE(std::string(which) + " Tq " + std::to_string(seqs.total_q()) + " Tk " +
                   std::to_string(seqs.total_k()));
      const auto c = make_case(varlen_case(ctx_.get(), seqs, true), 4, 2, 64, kF16, 61);
      check_backward(ctx_.get(), *c);
      run_backward(ctx_.get(), *c, forward_results(c->reference, kF16), none);
    }
  }
}

}  // namespace
