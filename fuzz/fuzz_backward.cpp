// Fuzz target: alibi_attention_backward on small problems against a float64 backward
// (backward_check.cpp: SPEC section 4 over tests/reference.h's problem).
//
// Every input runs alibi_attention_forward on a valid problem (varlen, sliding-window or ranges
// masks, the latter with rows shared by several slices; default or fuzzed positions; f32/f16/bf16
// q/k/v of exactly representable values; GQA/MQA with 1-2 or (now and then) 8-10 kv heads, up to
// 3 query heads each; <= 64 queries, <= 72 keys, head_dim <= 24; padded strides; scale, softcap, max_bias, user,
// per-sequence or tensor-parallel slopes; attn_bias with -inf cells; lse in either layout), then
// the backward with any subset of dq/dk/dv (each NULL, q's dtype or f32, its own padding) and
// dslopes (NULL or f32 with any strides). Now and then one argument of the backward is made
// invalid instead: the call must fail with the documented status and a message naming the
// argument, and write nothing. A successful call must leave its inputs and every byte outside
// the gradients' elements untouched, write every requested element (rows whose lse is -inf and
// keys no row sees get exact zeros), stay within the bounds of the float64 backward, and give the
// same bits on 1 and 2 threads.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "backward_check.h"
#include "backward_reference.h"
#include "fuzz_common.h"
#include "attention_inputs.h"
#include "reference.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;
using fuzz::float_dtype;
using fuzz::kPoison;
using fuzz::MaskCase;
using fuzz::MaskKinds;
using fuzz::Operand;

// The arguments the target can break; the chosen one (if any) is the input's first choice, so
// seeds for each error path are easy to write.
enum Corruption {
  kNone, kNullCtx, kNullQ, kNullMask, kNullOut, kNullLse, kNullDout, kDoutDtype, kDoutShape,
  kDoutStride, kDqDtype, kDqNdim, kDqStride, kDkHeads, kDvTokens, kDslopesDtype, kDslopesLength,
  kDslopesNdim, kLseShape, kLseDtype, kKDtype, kScale, kStructSize, kCorruptions
};

const char* dtype_label(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? "f32" : dtype == ALIBI_DTYPE_F16 ? "f16" : "bf16";
}

// The forward's params (always valid) with what they point to.
struct ParamsCase {
  alibi_attention_params params;
  std::vector<float> user_slopes;
  fuzz::TensorHandle bias;
  std::vector<uint8_t> bias_storage;
  std::vector<double> bias_values;
  int bias_heads = 0;
};

void make_params(Bytes& in, alibi_context_t ctx, const MaskCase& m, int heads, ParamsCase& c) {
  alibi_attention_params& params = c.params;
  alibi_attention_params_init(&params);
  static const float scales[] = {0.0f, 0.0f, 0.0f, 1e-3f, 0.125f, 1.0f, 4.0f, 100.0f};
  params.softmax_scale = scales[in.u8() % 8];
  static const float softcaps[] = {0.5f, 5.0f, 30.0f, 1e4f};
  const uint8_t softcap = in.u8();
  params.softcap = softcap < 160 ? 0.0f : softcaps[softcap % 4];
  static const float max_biases[] = {8.0f, 8.0f, 0.0f, 1.0f, 16.0f, 64.0f};
  params.max_bias = max_biases[in.u8() % 6];
  const uint8_t slope_mode = in.u8() % 6;
  static const float slope_table[] = {0.0f, 1e-3f, 0.0625f, 0.5f, 1.0f, 1e4f};
  if (slope_mode == 1 || (slope_mode == 2 && m.sequences)) {
    const int per = slope_mode == 2 ? std::max(m.batch, 1) : 1;
    for (int i = 0; i < per * heads; ++i) c.user_slopes.push_back(slope_table[in.u8() % 6]);
    params.slopes = c.user_slopes.data();
    params.slopes_per_batch = slope_mode == 2;
  } else if (slope_mode == 3) {  // a tensor-parallel shard
    params.total_heads = heads + int(in.in(0, 5));
    params.head_offset = int(in.in(0, params.total_heads - heads));
  }
  params.deterministic = in.flag();
  // attn_bias: none, broadcast over heads, or per head; any float dtype; some -inf cells.
  const uint8_t bias_mode = in.u8() % 4;
  c.bias_heads = bias_mode == 1 ? 1 : bias_mode == 2 ? heads : 0;
  if (c.bias_heads == 0) return;
  const alibi_dtype bias_dtype = float_dtype(in);
  const int64_t count = c.bias_heads * m.total_q * m.total_k;
  c.bias_storage.assign(size_t(std::max<int64_t>(count, 1)) * fuzz::element_size(bias_dtype), 0);
  const int shift = int(in.in(-3, 5));
  for (int64_t i = 0; i < count; ++i) {
    float x = fuzz::exact_value(in, shift);
    if (x == -2.0f * std::ldexp(1.0f, shift)) x = -INFINITY;  // k = -128: a masked cell
    fuzz::store(c.bias_storage.data(), i, bias_dtype, x);
    c.bias_values.push_back(fuzz::load(c.bias_storage.data(), i, bias_dtype));
  }
  const int64_t shape[3] = {c.bias_heads, m.total_q, m.total_k};
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, bias_dtype, 3, shape, nullptr, c.bias_storage.data(), &c.bias.t),
                        "alibi_tensor_wrap");
  params.attn_bias = c.bias.t;
}

// ref::Problem::slopes: the slope query head h uses in row i.
std::vector<float> row_slopes(const MaskCase& m, const ParamsCase& c, int heads) {
  const alibi_attention_params& params = c.params;
  if (params.slopes_per_batch) return ref::slopes_of_sequences(c.user_slopes, heads, m.cu_q);
  if (params.slopes) return ref::slopes_of_rows(c.user_slopes, m.total_q);
  std::vector<float> head_slopes(size_t(heads), 0.0f);
  const int total_heads = params.total_heads ? params.total_heads : heads;
  fuzz::check_status_ok(alibi_compute_slopes_tp(total_heads, params.head_offset, heads, params.max_bias,
                                                head_slopes.data()),
                        "alibi_compute_slopes_tp");
  return ref::slopes_of_rows(head_slopes, m.total_q);
}

// dslopes: f32 (Hq) or (num_sequences, Hq) with any strides, in a poisoned buffer.
struct SlopeGradient {
  std::vector<float> storage, poisoned;
  int64_t shape[2] = {}, strides[2] = {};
  int ndim = 1;
  fuzz::TensorHandle tensor;

  void layout(Bytes& in, bool per_sequence, int sequences, int heads) {
    const uint8_t pick = in.u8() % 3;
    ndim = per_sequence ? 2 : 1;
    if (per_sequence) {
      shape[0] = sequences, shape[1] = heads;
      strides[0] = pick == 1 ? 1 : pick == 2 ? heads + 2 : heads;
      strides[1] = pick == 1 ? std::max(sequences, 1) : 1;
    } else {
      shape[0] = heads, strides[0] = 1 + pick;
    }
    storage.assign(size_t((std::max(sequences, 1) + 2) * (heads + 2) * 3), kPoison);
    poisoned = storage;
  }
  float& at(int slot, int heads) {
    return ndim == 1 ? storage[size_t(slot * strides[0])]
                     : storage[size_t(slot / heads * strides[0] + slot % heads * strides[1])];
  }
  // The tensor as it is, or of another dtype, one more row, or the other ndim (invalid).
  void wrap(alibi_context_t ctx, alibi_dtype dtype, int64_t grow, bool wrong_ndim) {
    int64_t s[2] = {shape[0] + grow, shape[1]}, st[2] = {strides[0], strides[1]};
    int n = ndim;
    if (wrong_ndim && ndim == 1) n = 2, s[0] = 1, s[1] = shape[0], st[0] = shape[0] * strides[0], st[1] = strides[0];
    if (wrong_ndim && ndim == 2) n = 1, s[0] = shape[1], st[0] = strides[1];
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, dtype, n, s, st, storage.data(), &tensor.t), "alibi_tensor_wrap");
  }
};

}  // namespace

namespace {

// The gradients a call asks for, in poisoned buffers.
struct Gradients {
  Operand dq, dk, dv;
  SlopeGradient dslopes;
  bool want_dq = false, want_dk = false, want_dv = false, want_dslopes = false;
};

// A gradient's dtype: q's or f32.
alibi_dtype gradient_dtype(uint8_t choice, alibi_dtype input) { return choice & 2 ? ALIBI_DTYPE_F32 : input; }

// Another dtype than `dtype` among the float ones (an invalid choice for a gradient or dout).
alibi_dtype other_dtype(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? ALIBI_DTYPE_F16 : dtype == ALIBI_DTYPE_F16 ? ALIBI_DTYPE_BF16 : ALIBI_DTYPE_F16;
}

// The status and the argument a corruption calls for.
struct Broken {
  alibi_status status;
  const char* argument;
};
Broken broken(Corruption c) {
  switch (c) {
    case kNullCtx: return {ALIBI_STATUS_NULL_POINTER, "ctx"};
    case kNullQ: return {ALIBI_STATUS_NULL_POINTER, "q"};
    case kNullMask: return {ALIBI_STATUS_NULL_POINTER, "mask"};
    case kNullOut: return {ALIBI_STATUS_NULL_POINTER, "out"};
    case kNullLse: return {ALIBI_STATUS_NULL_POINTER, "lse"};
    case kNullDout: return {ALIBI_STATUS_NULL_POINTER, "dout"};
    case kDoutDtype: return {ALIBI_STATUS_DTYPE_MISMATCH, "dout"};
    case kDoutShape: return {ALIBI_STATUS_SHAPE_MISMATCH, "dout"};
    case kDoutStride: return {ALIBI_STATUS_INVALID_ARGUMENT, "dout"};
    case kDqDtype: return {ALIBI_STATUS_DTYPE_MISMATCH, "dq"};
    case kDqNdim: return {ALIBI_STATUS_SHAPE_MISMATCH, "dq"};
    case kDqStride: return {ALIBI_STATUS_INVALID_ARGUMENT, "dq"};
    case kDkHeads: return {ALIBI_STATUS_SHAPE_MISMATCH, "dk"};
    case kDvTokens: return {ALIBI_STATUS_SHAPE_MISMATCH, "dv"};
    case kDslopesDtype: return {ALIBI_STATUS_DTYPE_MISMATCH, "dslopes"};
    case kDslopesLength: return {ALIBI_STATUS_SHAPE_MISMATCH, "dslopes"};
    case kDslopesNdim: return {ALIBI_STATUS_SHAPE_MISMATCH, "dslopes"};
    case kLseShape: return {ALIBI_STATUS_SHAPE_MISMATCH, "lse"};
    case kLseDtype: return {ALIBI_STATUS_DTYPE_MISMATCH, "lse"};
    case kKDtype: return {ALIBI_STATUS_DTYPE_MISMATCH, "k"};
    case kScale: return {ALIBI_STATUS_INVALID_ARGUMENT, "softmax_scale"};
    case kStructSize: return {ALIBI_STATUS_INVALID_ARGUMENT, "struct_size"};
    default: return {ALIBI_STATUS_SUCCESS, ""};
  }
}

// A stored gradient element against the float64 value and its bound (plus the rounding to the
// gradient's dtype); past the dtype's range the element may be an infinity of the right sign.
void check_element(float got, double want, double bound, alibi_dtype dtype, const char* what) {
  const double tiny = dtype == ALIBI_DTYPE_F16 ? std::ldexp(1.0, -24) : 1e-37;
  const double tolerance = bound + fuzz::rounding(dtype) * (std::fabs(want) + bound) + tiny;
  const double limit = dtype == ALIBI_DTYPE_F16 ? 65504.0 : 3.4e38;
  FUZZ_REQUIRE(!std::isnan(got), "%s is NaN (reference %.9g)", what, want);
  if (std::isinf(got)) {
    FUZZ_REQUIRE(std::fabs(want) + tolerance > limit && std::signbit(got) == std::signbit(want),
                 "%s = %g, reference %.9g (tolerance %g)", what, got, want, tolerance);
    return;
  }
  FUZZ_REQUIRE(std::fabs(double(got) - want) <= tolerance, "%s = %.9g, reference %.9g (tolerance %g, %s)", what, got,
               want, tolerance, fuzz::rounding(dtype) > 1e-7 ? "rounded" : "f32");
}

// Every element of a (tokens, heads, dim) gradient against the reference; the bytes around the
// elements as poisoned.
void check_gradient(const char* name, const Operand& got, const fuzz::Gradient& want) {
  std::vector<uint8_t> expected = got.poisoned;
  const size_t esize = fuzz::element_size(got.dtype);
  size_t n = 0;
  for (int64_t t = 0; t < got.shape[0]; ++t)
    for (int64_t h = 0; h < got.shape[1]; ++h)
      for (int64_t d = 0; d < got.shape[2]; ++d, ++n) {
        char what[96];
        std::snprintf(what, sizeof what, "%s[%lld, %lld, %lld] (%s)", name, (long long)t, (long long)h, (long long)d,
                      dtype_label(got.dtype));
        check_element(got.get(t, h, d), want.value[n], want.bound[n], got.dtype, what);
        const size_t at = size_t(got.offset(t, h, d)) * esize;
        std::memcpy(&expected[at], &got.storage[at], esize);
      }
  FUZZ_REQUIRE(expected == got.storage, "the backward wrote outside %s's elements", name);
}

// dslopes (slot b * Hq + h) against the reference; the floats around the elements as poisoned.
void check_slope_gradient(SlopeGradient& got, const fuzz::Gradient& want, int heads) {
  std::vector<float> expected = got.poisoned;
  for (size_t slot = 0; slot < want.value.size(); ++slot) {
    char what[64];
    std::snprintf(what, sizeof what, "dslopes[%zu] (slot b * Hq + h)", slot);
    const float& element = got.at(int(slot), heads);
    check_element(element, want.value[slot], want.bound[slot], ALIBI_DTYPE_F32, what);
    expected[size_t(&element - got.storage.data())] = element;
  }
  FUZZ_REQUIRE(std::memcmp(expected.data(), got.storage.data(), expected.size() * sizeof(float)) == 0,
               "the backward wrote outside dslopes' elements");
}

// One problem: the mask, q/k/v/dout, params, and the forward's out and lse.
struct Case {
  MaskCase m;
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  int heads = 1, heads_kv = 1, dim = 1;
  ParamsCase pc;
  Operand q, k, v, out, dout;
  std::vector<float> lse_storage;
  bool lse_transposed = false;
  fuzz::TensorHandle lse;

  // Every byte the backward reads (it must write none of them).
  std::vector<uint8_t> inputs() const {
    std::vector<uint8_t> all;
    for (const Operand* o : {&q, &k, &v, &out, &dout}) all.insert(all.end(), o->storage.begin(), o->storage.end());
    const auto* lse_bytes = reinterpret_cast<const uint8_t*>(lse_storage.data());
    all.insert(all.end(), lse_bytes, lse_bytes + lse_storage.size() * sizeof(float));
    return all;
  }
};

// Builds a valid problem and runs the forward on it.
void run_forward(Bytes& in, alibi_context_t ctx, int heads_kv, Case& c) {
  fuzz::make_mask(in, ctx, c.m, MaskKinds::kAll);
  c.dtype = float_dtype(in);
  c.heads_kv = heads_kv;
  c.heads = c.heads_kv * int(in.in(1, 3));
  c.dim = in.u8() < 224 ? int(in.in(1, 8)) : int(in.in(1, 24));
  const int q_shift = int(in.in(-4, 4)), k_shift = int(in.in(-4, 4)), v_shift = int(in.in(-2, 4));
  const int dout_shift = int(in.in(-4, 4));
  const bool packed = in.flag();
  const int64_t head_pad = packed ? in.in(0, 3) : 0, row_pad = packed ? in.in(0, 5) : 0;
  make_params(in, ctx, c.m, c.heads, c.pc);
  c.q.layout(c.dtype, c.m.total_q, c.heads, c.dim, head_pad, row_pad);
  c.k.layout(c.dtype, c.m.total_k, c.heads_kv, c.dim, head_pad, row_pad);
  c.v.layout(c.dtype, c.m.total_k, c.heads_kv, c.dim, head_pad, row_pad);
  c.out.layout(c.dtype, c.m.total_q, c.heads, c.dim, head_pad, row_pad);
  c.dout.layout(c.dtype, c.m.total_q, c.heads, c.dim, head_pad, row_pad);
  c.q.fill(in, q_shift);
  c.k.fill(in, k_shift);
  c.v.fill(in, v_shift);
  c.dout.fill(in, dout_shift);
  c.lse_transposed = in.flag();
  c.lse_storage.assign(size_t(c.heads * c.m.total_q) + 1, kPoison);
  const int64_t lse_shape[2] = {c.heads, c.m.total_q}, lse_strides[2] = {1, c.heads};
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, c.lse_transposed ? lse_strides : nullptr,
                                          c.lse_storage.data(), &c.lse.t),
                        "alibi_tensor_wrap");
  for (Operand* o : {&c.q, &c.k, &c.v, &c.out}) o->wrap(ctx);
  fuzz::check_status_ok(alibi_attention_forward(ctx, c.q.tensor.t, c.k.tensor.t, c.v.tensor.t, c.m.handle.m,
                                                &c.pc.params, c.out.tensor.t, c.lse.t),
                        "alibi_attention_forward");
}

// The gradients asked for (a corrupted one always), each with its dtype and padding.
void choose_gradients(Bytes& in, const uint8_t choice[4], Corruption corruption, const Case& c, Gradients& g) {
  g.want_dq = choice[0] % 4 != 0 || corruption == kDqDtype || corruption == kDqNdim || corruption == kDqStride;
  g.want_dk = choice[1] % 4 != 0 || corruption == kDkHeads;
  g.want_dv = choice[2] % 4 != 0 || corruption == kDvTokens;
  g.want_dslopes = choice[3] % 4 != 0 || corruption == kDslopesDtype || corruption == kDslopesLength ||
                   corruption == kDslopesNdim;
  const int64_t head_pad = (choice[0] >> 4) % 3, row_pad = (choice[1] >> 4) % 4;
  g.dq.layout(gradient_dtype(choice[0], c.dtype), c.m.total_q, c.heads, c.dim, head_pad, row_pad);
  g.dk.layout(gradient_dtype(choice[1], c.dtype), c.m.total_k, c.heads_kv, c.dim, row_pad, head_pad);
  g.dv.layout(gradient_dtype(choice[2], c.dtype), c.m.total_k, c.heads_kv, c.dim, 0, row_pad);
  g.dslopes.layout(in, c.pc.params.slopes_per_batch != 0, c.m.batch, c.heads);
}

// The backward's arguments, one of them broken for `corruption`.
struct BackwardCall {
  Corruption corruption = kNone;
  alibi_attention_params params;
  fuzz::TensorHandle bad_lse, bad_k;

  BackwardCall(alibi_context_t ctx, Corruption broken_argument, Case& c, Gradients& g)
      : corruption(broken_argument), params(c.pc.params) {
    if (corruption == kScale) params.softmax_scale = NAN;
    if (corruption == kStructSize) params.struct_size -= 8;
    if (corruption == kLseShape || corruption == kLseDtype) {
      const bool square = c.heads == c.m.total_q;  // then (heads + 1, total_q) rather than transposed
      const int64_t shape[2] = {corruption == kLseDtype ? c.heads : square ? c.heads + 1 : c.m.total_q,
                                corruption == kLseDtype || square ? c.m.total_q : c.heads};
      fuzz::check_status_ok(alibi_tensor_wrap(ctx, corruption == kLseDtype ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32, 2,
                                              shape, nullptr, c.lse_storage.data(), &bad_lse.t),
                            "alibi_tensor_wrap");
    }
    if (corruption == kKDtype) {
      const int64_t strides[3] = {c.k.strides[0], c.k.strides[1], 1};
      fuzz::check_status_ok(
          alibi_tensor_wrap(ctx, other_dtype(c.dtype), 3, c.k.shape, strides, c.k.storage.data(), &bad_k.t),
          "alibi_tensor_wrap");
    }
    c.dout.wrap_as(ctx, corruption == kDoutDtype ? other_dtype(c.dtype) : c.dtype, 3,
                   corruption == kDoutShape ? 2 : -1, corruption == kDoutStride);
    if (g.want_dq)
      g.dq.wrap_as(ctx, corruption == kDqDtype ? other_dtype(c.dtype) : g.dq.dtype, corruption == kDqNdim ? 2 : 3, -1,
                   corruption == kDqStride);
    if (g.want_dk) g.dk.wrap_as(ctx, g.dk.dtype, 3, corruption == kDkHeads ? 1 : -1);
    if (g.want_dv) g.dv.wrap_as(ctx, g.dv.dtype, 3, corruption == kDvTokens ? 0 : -1);
    if (g.want_dslopes)
      g.dslopes.wrap(ctx, corruption == kDslopesDtype ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32,
                     corruption == kDslopesLength ? 1 : 0, corruption == kDslopesNdim);
  }

  alibi_status run(alibi_context_t ctx, const Case& c, const Gradients& g) const {
    auto unless = [&](Corruption broken_here, auto* argument) { return corruption == broken_here ? nullptr : argument; };
    return alibi_attention_backward(
        unless(kNullCtx, ctx), unless(kNullQ, c.q.tensor.t), bad_k.t ? bad_k.t : c.k.tensor.t, c.v.tensor.t,
        unless(kNullMask, c.m.handle.m), &params, unless(kNullOut, c.out.tensor.t),
        unless(kNullLse, bad_lse.t ? bad_lse.t : c.lse.t), unless(kNullDout, c.dout.tensor.t),
        g.want_dq ? g.dq.tensor.t : nullptr, g.want_dk ? g.dk.tensor.t : nullptr,
        g.want_dv ? g.dv.tensor.t : nullptr, g.want_dslopes ? g.dslopes.tensor.t : nullptr);
  }
};

// The float64 backward of the same (exactly representable) inputs and the library's out.
fuzz::BackwardResult reference_backward(const Case& c) {
  const alibi_attention_params& params = c.pc.params;
  ref::Problem p;
  p.total_q = c.m.total_q, p.total_k = c.m.total_k;
  p.heads_q = c.heads, p.heads_kv = c.heads_kv, p.head_dim = c.dim;
  p.q = c.q.values(), p.k = c.k.values(), p.v = c.v.values();
  p.visible = c.m.visible;
  p.positions = c.m.positions;
  p.scale = params.softmax_scale > 0 ? params.softmax_scale : float(1.0 / std::sqrt(double(c.dim)));
  p.softcap = params.softcap;
  p.bias_heads = c.pc.bias_heads;
  p.attn_bias = c.pc.bias_values;
  p.slopes = row_slopes(c.m, c.pc, c.heads);
  fuzz::BackwardInputs bi;
  bi.out = c.out.values(), bi.dout = c.dout.values();
  bi.slope_slots = params.slopes_per_batch ? c.m.batch * c.heads : c.heads;
  const std::vector<int32_t> no_sequences;
  for (int h = 0; h < c.heads; ++h)
    for (int64_t i = 0; i < c.m.total_q; ++i)
      bi.slope_slot.push_back(int(ref::slope_index(p, params.slopes_per_batch ? c.m.cu_q : no_sequences, h, i)));
  return fuzz::backward_with_bounds(p, bi);
}

// Every byte of the gradients' buffers.
std::vector<uint8_t> gradient_bytes(const Gradients& g) {
  std::vector<uint8_t> all;
  for (const Operand* o : {&g.dq, &g.dk, &g.dv}) all.insert(all.end(), o->storage.begin(), o->storage.end());
  const auto* slopes = reinterpret_cast<const uint8_t*>(g.dslopes.storage.data());
  all.insert(all.end(), slopes, slopes + g.dslopes.storage.size() * sizeof(float));
  return all;
}

bool gradients_poisoned(const Gradients& g) {
  return g.dq.storage == g.dq.poisoned && g.dk.storage == g.dk.poisoned && g.dv.storage == g.dv.poisoned &&
         std::memcmp(g.dslopes.storage.data(), g.dslopes.poisoned.data(), g.dslopes.storage.size() * sizeof(float)) == 0;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  // The choices first, at fixed offsets: a seed for each error path is a few bytes.
  const uint8_t corrupt = in.u8();
  Corruption corruption = corrupt < 192 ? kNone : Corruption(1 + corrupt % (kCorruptions - 1));
  // Mostly one thread: waking a second one costs more than a small problem; 1 input in 16 is
  // also run on the other thread count.
  const uint8_t thread_choice = in.u8();
  const int threads = thread_choice % 16 == 15 ? 2 : 1;
  const bool rerun = thread_choice / 16 == 0;
  const uint8_t gradient_choice[4] = {in.u8(), in.u8(), in.u8(), in.u8()};  // dq, dk, dv, dslopes
  // Mostly 1 or 2 kv heads; now and then 8 to 10 (the CPU's schedule for many kv heads).
  const uint8_t kv_choice = in.u8();
  const int heads_kv = kv_choice < 224 ? 1 + kv_choice % 2 : 8 + kv_choice % 3;
  alibi_context_t ctx = fuzz::cpu_context(threads);

  Case c;
  run_forward(in, ctx, heads_kv, c);
  Gradients g;
  choose_gradients(in, gradient_choice, corruption, c, g);
  if ((corruption == kDoutStride || corruption == kDqStride) && c.dim < 2) corruption = kNone;  // valid then
  const BackwardCall call(ctx, corruption, c, g);
  Expect expect;
  const Broken problem = broken(corruption);
  if (corruption != kNone) expect.add(problem.status, problem.argument);

  const std::vector<uint8_t> inputs = c.inputs();
  expect.check(call.run(ctx, c, g), "alibi_attention_backward");
  FUZZ_REQUIRE(inputs == c.inputs(), "the backward wrote to one of its inputs");
  if (!expect.ok()) {
    FUZZ_REQUIRE(std::strstr(alibi_last_error_message(), problem.argument) != nullptr, "the message does not name %s",
                 problem.argument);
    FUZZ_REQUIRE(gradients_poisoned(g), "a failed backward wrote to a gradient");
    return 0;
  }

  const fuzz::BackwardResult want = reference_backward(c);
  if (g.want_dq) check_gradient("dq", g.dq, want.dq);
  if (g.want_dk) check_gradient("dk", g.dk, want.dk);
  if (g.want_dv) check_gradient("dv", g.dv, want.dv);
  if (g.want_dslopes) check_slope_gradient(g.dslopes, want.dslopes, c.heads);

  // The same call on the other thread count gives the same bits.
  if (rerun) {
    const std::vector<uint8_t> first = gradient_bytes(g);
    fuzz::check_status_ok(call.run(fuzz::cpu_context(3 - threads), c, g), "alibi_attention_backward");
    FUZZ_REQUIRE(first == gradient_bytes(g), "1 and 2 threads give different gradient bits");
  }
  return 0;
}
