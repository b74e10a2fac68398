// Fuzz target: alibi_attention_merge on small strided problems against a float64 merge.
//
// Every input makes two partial results (T <= 140, H <= 4, D <= 40, f32/f16/bf16), each operand
// in a buffer of its own with fuzzed strides (dims in any order, padded, inputs now and then
// broadcast along a dim of stride 0); out and lse go to tensors of their own or, in place, to
// out_a/lse_a or out_b/lse_b; lse is now and then NULL. lse values: small, equal on both sides,
// 100 or 1000 apart, around 1e4, 1e30 and FLT_MAX, -inf (that side's out then holds NaN, or inf
// in f16), and now and then NaN or +inf. Now and then one argument is made invalid.
//
// Checked: the status the header documents, with a message starting "alibi_attention_merge: ";
// on failure no byte of any buffer changed; on success no byte outside out's and lse's elements
// changed, and per row: an lse of NaN or +inf gives NaN out and lse; both lse -inf give out +0
// and lse -inf; otherwise out and lse equal the float64 merge (a side of lse -inf weighs 0,
// whatever its out holds) wherever the sides that weigh are finite.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "fuzz_common.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kMax = std::numeric_limits<float>::max();

// A (T, H, D) or (H, T) operand over bytes of its own. The dims lie in a fuzzed order, the
// innermost with stride 1 or 2, each padded; the tensor is wrapped with wrap_dtype, wrap_shape,
// which a bad argument may change.
struct Operand {
  alibi_dtype dtype = ALIBI_DTYPE_F32, wrap_dtype = ALIBI_DTYPE_F32;
  std::vector<int64_t> shape, strides, wrap_shape;
  std::vector<uint8_t> storage, before;
  fuzz::TensorHandle tensor;

  void lay_out(Bytes& in, alibi_dtype type, const std::vector<int64_t>& dims, bool may_broadcast) {
    dtype = wrap_dtype = type;
    shape = wrap_shape = dims;
    strides.assign(dims.size(), 0);
    std::vector<size_t> order(dims.size());
    for (size_t d = 0; d < order.size(); ++d) order[d] = d;
    for (int turns = in.u8() % 6; turns > 0; --turns) std::next_permutation(order.begin(), order.end());
    int64_t stride = in.in(1, 2), reach = 0;
    for (size_t d : order) {
      strides[d] = stride;
      stride = stride * std::max<int64_t>(shape[d], 1) + in.in(0, 3);
    }
    if (may_broadcast && in.u8() < 24) strides[in.u8() % dims.size()] = 0;
    for (size_t d = 0; d < dims.size(); ++d) reach += (shape[d] - 1) * strides[d];
    const bool empty = std::find(dims.begin(), dims.end(), 0) != dims.end();
    storage.assign(size_t((empty ? 0 : reach + 1) + 1) * fuzz::element_size(type), 0);  // + a guard cell
  }
  int64_t offset(int64_t i0, int64_t i1, int64_t i2 = 0) const {
    return i0 * strides[0] + i1 * strides[1] + (strides.size() > 2 ? i2 * strides[2] : 0);
  }
  float get(int64_t i0, int64_t i1, int64_t i2 = 0) const {
    return fuzz::load(storage.data(), offset(i0, i1, i2), dtype);
  }
  // An input's value as it was before the call (in place, the call overwrites it).
  float input(int64_t i0, int64_t i1, int64_t i2 = 0) const {
    return fuzz::load(before.data(), offset(i0, i1, i2), dtype);
  }
  void set(int64_t i0, int64_t i1, int64_t i2, float v) { fuzz::store(storage.data(), offset(i0, i1, i2), dtype, v); }
  void wrap(alibi_context_t ctx) {
    std::vector<int64_t> wrap_strides = strides;
    wrap_strides.resize(wrap_shape.size(), 1);
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, wrap_dtype, int(wrap_shape.size()), wrap_shape.data(),
                                            wrap_strides.data(), storage.data(), &tensor.t),
                          "alibi_tensor_wrap");
    before = storage;
  }
};

// Where out and lse go: tensors of their own, the very tensors of side a or b, or (lse) nowhere.
enum Into { kOwn, kSideA, kSideB, kNowhere };

template <class T>
T* chosen(Into into, T& a, T& b, T& own) {
  return into == kNowhere ? nullptr : into == kSideA ? &a : into == kSideB ? &b : &own;
}

struct Problem {
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  int64_t tokens = 0, heads = 0, dim = 0;
  Into out_into = kOwn, lse_into = kOwn;
};

// An lse value: mostly small, some far out, -inf, now and then NaN or +inf.
float lse_value(Bytes& in) {
  const uint8_t pick = in.u8();
  const float sign = in.flag() ? -1.0f : 1.0f;
  if (pick < 140) return fuzz::exact_value(in, int(in.in(-4, 6)));
  if (pick < 195) return -kInf;
  if (pick < 215) return sign * 1e4f + fuzz::exact_value(in, 2);
  if (pick < 228) return sign * 1e30f;
  if (pick < 240) return sign * kMax;
  return pick < 248 ? std::numeric_limits<float>::quiet_NaN() : kInf;
}

// lse_b: independent of lse_a, equal to it, or 100 or 1000 away.
float other_lse(Bytes& in, float lse_a) {
  const uint8_t pick = in.u8();
  const float sign = in.flag() ? -1.0f : 1.0f;
  if (pick < 110) return lse_value(in);
  if (pick < 160) return lse_a;
  return lse_a + sign * (pick < 210 ? 100.0f : 1000.0f);
}

// A side of lse -inf: its out row holds NaN (inf in f16, which has no NaN encoding here).
void fill_side(Bytes& in, const Problem& p, Operand& out, const Operand& lse) {
  const int shift = int(in.in(-6, 8));
  for (int64_t t = 0; t < p.tokens; ++t)
    for (int64_t h = 0; h < p.heads; ++h)
      for (int64_t d = 0; d < p.dim; ++d)
        out.set(t, h, d,
                lse.get(h, t) == -kInf ? std::numeric_limits<float>::quiet_NaN() : fuzz::exact_value(in, shift));
}

// The merged lse and each side's weight (0 for lse -inf), computed against the larger lse so that
// lse values of 1e30 keep the logarithm of the sum.
struct Merged {
  double lse, weight_a, weight_b;
};

Merged merged(double lse_a, double lse_b) {
  const double high = std::max(lse_a, lse_b), inf = std::numeric_limits<double>::infinity();
  if (high == -inf) return {-inf, 0.0, 0.0};
  const double a = std::exp(lse_a - high), b = std::exp(lse_b - high);
  return {high + std::log(a + b), a / (a + b), b / (a + b)};
}

// Values of a merged row whose out (from a side of weight > 0) are finite: f32 arithmetic is
// within ~5e-7 of the larger weighing input (tests/test_merge.cpp), allowed 2e-6; f16/bf16 add
// half an ulp of the result and 2^-25 below f16's smallest normal.
void check_element(float got, double want, double inputs, alibi_dtype dtype, int64_t t, int64_t h, int64_t d) {
  const double tolerance =
      2e-6 * inputs + fuzz::rounding(dtype) * std::fabs(want) + (dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -25) : 0.0);
  FUZZ_REQUIRE(std::fabs(got - want) <= tolerance, "out[%lld, %lld, %lld] = %.9g, reference %.9g (tolerance %g)",
               (long long)t, (long long)h, (long long)d, got, want, tolerance);
}

struct Operands {
  Operand out_a, lse_a, out_b, lse_b, out, lse;
};

// A row with an lse of NaN or +inf: NaN out and lse, as the header says.
void check_not_a_number(const Problem& p, const Operand& out, const Operand* lse, int64_t t, int64_t h) {
  if (lse)
    FUZZ_REQUIRE(std::isnan(lse->get(h, t)), "lse[%lld, %lld] = %.9g from a NaN or +inf lse, not NaN",
                 (long long)h, (long long)t, lse->get(h, t));
  for (int64_t d = 0; d < p.dim; ++d)
    FUZZ_REQUIRE(std::isnan(out.get(t, h, d)), "out[%lld, %lld, %lld] = %g from a NaN or +inf lse, not NaN",
                 (long long)t, (long long)h, (long long)d, out.get(t, h, d));
}

void check_row(const Problem& p, const Operands& in, const Operand& out, const Operand* lse, int64_t t, int64_t h) {
  const float lse_a = in.lse_a.input(h, t), lse_b = in.lse_b.input(h, t);
  if (std::isnan(lse_a) || std::isnan(lse_b) || lse_a == kInf || lse_b == kInf) {
    check_not_a_number(p, out, lse, t, h);
    return;
  }
  const Merged m = merged(lse_a, lse_b);
  if (lse)
    FUZZ_REQUIRE(std::isinf(m.lse) ? lse->get(h, t) == -kInf
                                   : std::fabs(lse->get(h, t) - m.lse) <= 1e-6 + std::ldexp(std::fabs(m.lse), -22),
                 "lse[%lld, %lld] = %.9g, reference %.9g (lse_a %.9g, lse_b %.9g)", (long long)h, (long long)t,
                 lse->get(h, t), m.lse, lse_a, lse_b);
  for (int64_t d = 0; d < p.dim; ++d) {
    const float got = out.get(t, h, d);
    if (std::isinf(m.lse)) {
      FUZZ_REQUIRE(got == 0.0f && !std::signbit(got), "out[%lld, %lld, %lld] = %g of a row without keys, not +0",
                   (long long)t, (long long)h, (long long)d, got);
      continue;
    }
    const float a = in.out_a.input(t, h, d), b = in.out_b.input(t, h, d);
    if ((m.weight_a > 0 && !std::isfinite(a)) || (m.weight_b > 0 && !std::isfinite(b))) continue;
    const double want = (m.weight_a > 0 ? m.weight_a * a : 0.0) + (m.weight_b > 0 ? m.weight_b * b : 0.0);
    const double inputs = std::max(m.weight_a > 0 ? std::fabs(a) : 0.0, m.weight_b > 0 ? std::fabs(b) : 0.0);
    check_element(got, want, inputs, p.dtype, t, h, d);
  }
}

// The bytes of a written operand outside its elements are as they were.
void check_padding(const Problem& p, const Operand& o, bool is_out) {
  std::vector<uint8_t> expected = o.before;
  const size_t size = fuzz::element_size(o.dtype);
  auto keep = [&](int64_t offset) {
    std::copy_n(o.storage.begin() + long(size_t(offset) * size), size, expected.begin() + long(size_t(offset) * size));
  };
  for (int64_t t = 0; t < p.tokens; ++t)
    for (int64_t h = 0; h < p.heads; ++h)
      if (is_out)
        for (int64_t d = 0; d < p.dim; ++d) keep(o.offset(t, h, d));
      else
        keep(o.offset(h, t));
  FUZZ_REQUIRE(expected == o.storage, "a merge wrote outside %s's elements", is_out ? "out" : "lse");
}

alibi_dtype other_float(alibi_dtype dtype) { return dtype == ALIBI_DTYPE_F32 ? ALIBI_DTYPE_BF16 : ALIBI_DTYPE_F32; }

Problem read_problem(Bytes& in) {
  static const alibi_dtype kDtypes[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};
  Problem p;
  p.dtype = kDtypes[in.u8() % 3];
  const uint8_t length = in.u8();
  p.tokens = length < 224 ? in.in(0, 9) : length < 250 ? in.in(0, 40) : in.in(0, 140);
  p.heads = in.u8() < 16 ? 0 : in.in(1, 4);
  p.dim = in.u8() < 224 ? in.in(1, 8) : in.in(0, 40);
  static const Into kOutInto[] = {kOwn, kOwn, kSideA, kSideB}, kLseInto[] = {kOwn, kOwn, kSideA, kSideB, kNowhere};
  p.out_into = kOutInto[in.u8() % 4];
  p.lse_into = kLseInto[in.u8() % 5];
  return p;
}

// Lays out the operands (an operand that is also out or lse is never broadcast) and fills them:
// the inputs with values, out and lse with 1024.
void make_operands(Bytes& in, const Problem& p, Operands& ops) {
  const std::vector<int64_t> out_dims{p.tokens, p.heads, p.dim}, lse_dims{p.heads, p.tokens};
  ops.out_a.lay_out(in, p.dtype, out_dims, p.out_into != kSideA);
  ops.lse_a.lay_out(in, ALIBI_DTYPE_F32, lse_dims, p.lse_into != kSideA);
  ops.out_b.lay_out(in, p.dtype, out_dims, p.out_into != kSideB);
  ops.lse_b.lay_out(in, ALIBI_DTYPE_F32, lse_dims, p.lse_into != kSideB);
  ops.out.lay_out(in, p.dtype, out_dims, false);
  ops.lse.lay_out(in, ALIBI_DTYPE_F32, lse_dims, false);
  for (int64_t h = 0; h < p.heads; ++h)
    for (int64_t t = 0; t < p.tokens; ++t) {
      ops.lse_a.set(h, t, 0, lse_value(in));
      ops.lse_b.set(h, t, 0, other_lse(in, ops.lse_a.get(h, t)));
    }
  fill_side(in, p, ops.out_a, ops.lse_a);
  fill_side(in, p, ops.out_b, ops.lse_b);
  for (Operand* o : {&ops.out, &ops.lse})
    for (size_t cell = 0; cell < o->storage.size() / fuzz::element_size(o->dtype); ++cell)
      fuzz::store(o->storage.data(), int64_t(cell), o->dtype, 1024.0f);
}

// An argument made NULL instead of passed.
struct Nulls {
  bool ctx = false;
  const Operand* operand = nullptr;
};

// Now and then one invalid argument, in an operand that is passed; expect gets its status.
Nulls corrupt(Bytes& in, const Problem& p, Operands& ops, Expect& expect) {
  const uint8_t pick = in.u8();
  const int which = pick < 200 ? 0 : 1 + pick % 17;
  const alibi_status null = ALIBI_STATUS_NULL_POINTER, shape = ALIBI_STATUS_SHAPE_MISMATCH,
                     dtype = ALIBI_STATUS_DTYPE_MISMATCH;
  const bool own_out = p.out_into == kOwn, own_lse = p.lse_into == kOwn;
  Nulls nulls;
  switch (which) {
    case 1: nulls.ctx = true; expect.add(null, "ctx"); break;
    case 2: nulls.operand = &ops.out_a; expect.add(null, "out_a"); break;
    case 3: nulls.operand = &ops.lse_a; expect.add(null, "lse_a"); break;
    case 4: nulls.operand = &ops.out_b; expect.add(null, "out_b"); break;
    case 5: nulls.operand = &ops.lse_b; expect.add(null, "lse_b"); break;
    case 6: if (own_out) nulls.operand = &ops.out, expect.add(null, "out"); break;
    case 7: ops.out_a.wrap_shape = {p.tokens, p.heads * p.dim}; expect.add(shape, "out_a ndim 2"); break;
    case 8: ++ops.out_b.wrap_shape[in.u8() % 3]; expect.add(shape, "out_b shape"); break;
    case 9: if (own_out) ++ops.out.wrap_shape[in.u8() % 3], expect.add(shape, "out shape"); break;
    case 10: ++ops.lse_a.wrap_shape[0]; expect.add(shape, "lse_a (H + 1, T)"); break;
    case 11: ++ops.lse_b.wrap_shape[1]; expect.add(shape, "lse_b (H, T + 1)"); break;
    case 12: if (own_lse) ops.lse.wrap_shape.push_back(1), expect.add(shape, "lse ndim 3"); break;
    case 13: ops.out_b.wrap_dtype = other_float(p.dtype); expect.add(dtype, "out_b dtype"); break;
    case 14: if (own_out) ops.out.wrap_dtype = other_float(p.dtype), expect.add(dtype, "out dtype"); break;
    case 15: ops.lse_a.wrap_dtype = ALIBI_DTYPE_F16; expect.add(dtype, "lse_a f16"); break;
    case 16: ops.out_a.wrap_dtype = ALIBI_DTYPE_I32; expect.add(dtype, "out_a i32"); break;
    case 17: if (own_lse) ops.lse.wrap_dtype = ALIBI_DTYPE_I32, expect.add(dtype, "lse i32"); break;
  }
  return nulls;
}

// After a successful merge: only out's and lse's elements changed, and they hold the merge.
void check_success(const Problem& p, const Operands& ops, const Operand& out, const Operand* lse) {
  for (const Operand* o : {&ops.out_a, &ops.lse_a, &ops.out_b, &ops.lse_b, &ops.out, &ops.lse})
    FUZZ_REQUIRE(o == &out || o == lse || o->storage == o->before,
                 "a merge wrote to a buffer that is neither out nor lse");
  check_padding(p, out, true);
  if (lse) check_padding(p, *lse, false);
  for (int64_t t = 0; t < p.tokens; ++t)
    for (int64_t h = 0; h < p.heads; ++h) check_row(p, ops, out, lse, t, h);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  alibi_context_t ctx = fuzz::cpu_context(in.u8() % 16 == 15 ? 2 : 1);
  const Problem p = read_problem(in);
  Operands ops;
  make_operands(in, p, ops);
  Expect expect;
  const Nulls nulls = corrupt(in, p, ops, expect);
  for (Operand* o : {&ops.out_a, &ops.lse_a, &ops.out_b, &ops.lse_b, &ops.out, &ops.lse}) o->wrap(ctx);

  const Operand* out = chosen(p.out_into, ops.out_a, ops.out_b, ops.out);
  const Operand* lse = chosen(p.lse_into, ops.lse_a, ops.lse_b, ops.lse);
  auto handle = [&](const Operand* o) { return o && o != nulls.operand ? o->tensor.t : nullptr; };
  expect.check(alibi_attention_merge(nulls.ctx ? nullptr : ctx, handle(&ops.out_a), handle(&ops.lse_a),
                                     handle(&ops.out_b), handle(&ops.lse_b), handle(out), handle(lse)),
               "alibi_attention_merge");
  if (expect.ok()) {
    check_success(p, ops, *out, lse);
  } else {
    for (const Operand* o : {&ops.out_a, &ops.lse_a, &ops.out_b, &ops.lse_b, &ops.out, &ops.lse})
      FUZZ_REQUIRE(o->storage == o->before, "a failed merge wrote to a buffer");
  }
  return 0;
}
