// Fuzz target: alibi_attention_backward on small problems against a float64 backward
// (backward_check.cpp: SPEC section 4 over tests/reference.h's problem).
//
// Every input runs alibi_attention_forward on a valid problem (varlen, sliding-window or ranges
// masks, the latter with rows shared by several slices; default or fuzzed positions; f32/f16/bf16
// q/k/v of exactly representable values; GQA; padded strides; scale, softcap, max_bias, user,
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
#include "reference.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;

constexpr float kPoison = 1234567.0f;

// The arguments the target can break; the chosen one (if any) is the input's first choice, so
// seeds for each error path are easy to write.
enum Corruption {
  kNone, kNullCtx, kNullQ, kNullMask, kNullOut, kNullLse, kNullDout, kDoutDtype, kDoutShape,
  kDoutStride, kDqDtype, kDqNdim, kDqStride, kDkHeads, kDvTokens, kDslopesDtype, kDslopesLength,
  kDslopesNdim, kLseShape, kLseDtype, kKDtype, kScale, kStructSize, kCorruptions
};

// Most lengths small (fast inputs, the decode paths); some long enough for several tiles.
int32_t length(Bytes& in, int32_t long_max) {
  const uint8_t pick = in.u8();
  return pick < 224 ? int32_t(in.in(0, 9)) : pick < 250 ? int32_t(in.in(0, long_max / 2)) : int32_t(in.in(0, long_max));
}

struct MaskCase {
  fuzz::MaskHandle handle;
  int64_t total_q = 0, total_k = 0;
  bool sequences = false;
  int batch = 0;
  std::vector<int32_t> cu_q, cu_k;
  ref::Visibility visible;
  ref::Positions positions;
};

void sequence_mask(Bytes& in, alibi_context_t ctx, bool window, MaskCase& m) {
  m.sequences = true;
  m.batch = int(in.in(0, 3));
  m.cu_q.push_back(int32_t(in.in(0, 2)));
  m.cu_k.push_back(int32_t(in.in(0, 2)));
  for (int b = 0; b < m.batch; ++b) {
    m.cu_q.push_back(std::min<int32_t>(m.cu_q.back() + length(in, 40), 64));
    m.cu_k.push_back(std::min<int32_t>(m.cu_k.back() + length(in, 72), 72));
  }
  if (window) {
    const int left = int(in.in(-1, 12)), right = int(in.in(-1, 12));
    fuzz::check_status_ok(alibi_mask_create_sliding_window(ctx, m.batch, m.cu_q.data(), m.cu_k.data(), left,
                                                           right, &m.handle.m),
                          "alibi_mask_create_sliding_window");
    m.visible = ref::sliding_window(m.cu_q, m.cu_k, left, right);
  } else {
    const bool causal = in.flag();
    fuzz::check_status_ok(alibi_mask_create_varlen(ctx, m.batch, m.cu_q.data(), m.cu_k.data(), causal, &m.handle.m),
                          "alibi_mask_create_varlen");
    m.visible = ref::from_slices(m.cu_q.back(), m.cu_k.back(), ref::varlen_slices(m.cu_q, m.cu_k, causal));
  }
  m.total_q = m.cu_q.back();
  m.total_k = m.cu_k.back();
  m.positions = ref::varlen_positions(m.cu_q, m.cu_k);
}

// Random non-overlapping slices, or bands of rows whose keys are cut into pieces of different
// types (rows shared by several slices: their gradient is that of the union).
std::vector<ref::Slice> range_slices(Bytes& in, int64_t total_q, int64_t total_k, bool shared_rows) {
  std::vector<ref::Slice> slices;
  const int wanted = int(in.in(0, 4));
  for (int s = 0; s < wanted; ++s) {
    ref::Slice slice;
    slice.q_begin = in.in(0, total_q);
    slice.q_end = in.in(slice.q_begin, total_q);
    if (shared_rows) {
      int64_t k = 0;
      while (k < total_k && slices.size() < 8) {
        const int64_t end = in.flag() ? total_k : in.in(k, total_k);
        slices.push_back({slice.q_begin, slice.q_end, k, end, int(in.in(0, 3))});
        k = std::max(end, k + 1);
      }
      break;
    }
    slice.k_begin = in.in(0, total_k);
    slice.k_end = in.in(slice.k_begin, total_k);
    slice.type = int(in.in(0, 3));
    bool overlaps = false;
    for (const ref::Slice& o : slices)
      overlaps |= slice.q_begin < o.q_end && o.q_begin < slice.q_end && slice.k_begin < o.k_end &&
                  o.k_begin < slice.k_end;
    if (!overlaps) slices.push_back(slice);
  }
  return slices;
}

void ranges_mask(Bytes& in, alibi_context_t ctx, bool shared_rows, MaskCase& m) {
  m.total_q = length(in, 64);
  m.total_k = length(in, 72);
  const std::vector<ref::Slice> slices = range_slices(in, m.total_q, m.total_k, shared_rows);
  std::vector<int32_t> q_ranges, k_ranges, types;
  for (const ref::Slice& s : slices) {
    q_ranges.insert(q_ranges.end(), {int32_t(s.q_begin), int32_t(s.q_end)});
    k_ranges.insert(k_ranges.end(), {int32_t(s.k_begin), int32_t(s.k_end)});
    types.push_back(s.type);
  }
  fuzz::check_status_ok(alibi_mask_create_ranges(ctx, int(slices.size()), q_ranges.data(), k_ranges.data(),
                                                 types.data(), m.total_q, m.total_k, &m.handle.m),
                        "alibi_mask_create_ranges");
  m.visible = ref::from_slices(m.total_q, m.total_k, slices);
  m.positions = ref::stream_positions(m.total_q, m.total_k);
}

void make_mask(Bytes& in, alibi_context_t ctx, MaskCase& m) {
  const uint8_t kind = in.u8() % 4;
  if (kind < 2) sequence_mask(in, ctx, kind == 1, m);
  else ranges_mask(in, ctx, kind == 3, m);
  // Positions: as made, shifted far apart (distances up to ~2^16), or anything.
  const uint8_t positions = in.u8() % 4;
  if (positions == 1 || positions == 2) {
    std::vector<int32_t> q(size_t(m.total_q) + 1), k(size_t(m.total_k) + 1);
    for (int32_t& x : q) x = positions == 1 ? int32_t(in.in(0, 70000)) : int32_t(in.u32());
    for (int32_t& x : k) x = positions == 1 ? int32_t(in.in(0, 70000)) : int32_t(in.u32());
    fuzz::check_status_ok(alibi_mask_set_positions(m.handle.m, q.data(), k.data()), "alibi_mask_set_positions");
    m.positions.q.assign(q.begin(), q.end() - 1);
    m.positions.k.assign(k.begin(), k.end() - 1);
  }
}

// A (tokens, heads, dim) tensor in a poisoned buffer with padded row and head strides.
struct Operand {
  std::vector<uint8_t> storage;
  int64_t shape[3] = {}, strides[3] = {};
  alibi_dtype dtype = ALIBI_DTYPE_F32;
  fuzz::TensorHandle tensor;

  void layout(alibi_dtype type, int64_t tokens, int64_t heads, int64_t dim, int64_t head_pad, int64_t row_pad) {
    dtype = type;
    shape[0] = tokens, shape[1] = heads, shape[2] = dim;
    strides[2] = 1;
    strides[1] = dim + head_pad;
    strides[0] = heads * strides[1] + row_pad;
    // Room for one more token and a last dim of stride 2 (invalid layouts the target tries).
    const size_t elements = size_t(std::max<int64_t>((tokens + 1) * strides[0], 1)) + size_t(dim) + 16;
    storage.assign(elements * fuzz::element_size(type), 0);
    for (size_t e = 0; e < elements; ++e)
      fuzz::store(storage.data(), int64_t(e), type, type == ALIBI_DTYPE_F32 ? kPoison : 1024.0f);
  }
  int64_t offset(int64_t t, int64_t h, int64_t d) const { return t * strides[0] + h * strides[1] + d * strides[2]; }
  float get(int64_t t, int64_t h, int64_t d) const { return fuzz::load(storage.data(), offset(t, h, d), dtype); }
  void set(int64_t t, int64_t h, int64_t d, float v) { fuzz::store(storage.data(), offset(t, h, d), dtype, v); }
  void fill(Bytes& in, int shift) {
    for (int64_t t = 0; t < shape[0]; ++t)
      for (int64_t h = 0; h < shape[1]; ++h)
        for (int64_t d = 0; d < shape[2]; ++d) set(t, h, d, fuzz::exact_value(in, shift));
  }
  // The tensor as it is, or with one dtype, shape or stride changed (an invalid argument).
  void wrap(alibi_context_t ctx) { wrap_as(ctx, dtype); }
  void wrap_as(alibi_context_t ctx, alibi_dtype as, int ndim = 3, int grow_dim = -1, bool last_stride_2 = false) {
    int64_t s[3] = {shape[0], shape[1], shape[2]}, st[3] = {strides[0], strides[1], strides[2]};
    if (grow_dim >= 0) ++s[grow_dim];
    if (last_stride_2) st[2] = 2;
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, as, ndim, s, st, storage.data(), &tensor.t),
                          "alibi_tensor_wrap");
  }
  std::vector<double> values() const {
    std::vector<double> all;
    for (int64_t t = 0; t < shape[0]; ++t)
      for (int64_t h = 0; h < shape[1]; ++h)
        for (int64_t d = 0; d < shape[2]; ++d) all.push_back(get(t, h, d));
    return all;
  }
};

alibi_dtype float_dtype(Bytes& in) {
  static const alibi_dtype types[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_F16, ALIBI_DTYPE_BF16};
  return types[in.u8() % 3];
}

const char* dtype_label(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F32 ? "f32" : dtype == ALIBI_DTYPE_F16 ? "f16" : "bf16";
}

// The forward's params (always valid) and the slopes each row uses.
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
  std::vector<float> storage;
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
void check_gradient(const char* name, const Operand& got, const fuzz::Gradient& want,
                    const std::vector<uint8_t>& poisoned) {
  std::vector<uint8_t> expected = poisoned;
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
  const uint8_t grad_choice[4] = {in.u8(), in.u8(), in.u8(), in.u8()};  // dq, dk, dv, dslopes
  alibi_context_t ctx = fuzz::cpu_context(threads);

  MaskCase m;
  make_mask(in, ctx, m);
  const alibi_dtype dtype = float_dtype(in);
  const int heads_kv = int(in.in(1, 2)), group = int(in.in(1, 3)), heads = heads_kv * group;
  const int dim = in.u8() < 224 ? int(in.in(1, 8)) : int(in.in(1, 24));
  const int q_shift = int(in.in(-4, 4)), k_shift = int(in.in(-4, 4)), v_shift = int(in.in(-2, 4));
  const int dout_shift = int(in.in(-4, 4));
  const bool packed = in.flag();
  const int64_t head_pad = packed ? in.in(0, 3) : 0, row_pad = packed ? in.in(0, 5) : 0;
  ParamsCase pc;
  make_params(in, ctx, m, heads, pc);
  alibi_attention_params& params = pc.params;

  Operand q, k, v, out, dout;
  q.layout(dtype, m.total_q, heads, dim, head_pad, row_pad);
  k.layout(dtype, m.total_k, heads_kv, dim, head_pad, row_pad);
  v.layout(dtype, m.total_k, heads_kv, dim, head_pad, row_pad);
  out.layout(dtype, m.total_q, heads, dim, head_pad, row_pad);
  dout.layout(dtype, m.total_q, heads, dim, head_pad, row_pad);
  q.fill(in, q_shift);
  k.fill(in, k_shift);
  v.fill(in, v_shift);
  dout.fill(in, dout_shift);
  const bool lse_transposed = in.flag();
  std::vector<float> lse_storage(size_t(heads * m.total_q) + 1, kPoison);
  const int64_t lse_shape[2] = {heads, m.total_q}, lse_strides[2] = {1, heads};
  fuzz::TensorHandle lse;
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, lse_shape, lse_transposed ? lse_strides : nullptr,
                                          lse_storage.data(), &lse.t),
                        "alibi_tensor_wrap");
  for (Operand* o : {&q, &k, &v, &out}) o->wrap(ctx);
  fuzz::check_status_ok(alibi_attention_forward(ctx, q.tensor.t, k.tensor.t, v.tensor.t, m.handle.m, &params,
                                                out.tensor.t, lse.t),
                        "alibi_attention_forward");

  // The gradients asked for (a corrupted one always), each with its dtype and padding.
  Gradients g;
  g.want_dq = grad_choice[0] % 4 != 0 || corruption == kDqDtype || corruption == kDqNdim || corruption == kDqStride;
  g.want_dk = grad_choice[1] % 4 != 0 || corruption == kDkHeads;
  g.want_dv = grad_choice[2] % 4 != 0 || corruption == kDvTokens;
  g.want_dslopes = grad_choice[3] % 4 != 0 || corruption == kDslopesDtype || corruption == kDslopesLength ||
                   corruption == kDslopesNdim;
  const int64_t grad_head_pad = (grad_choice[0] >> 4) % 3, grad_row_pad = (grad_choice[1] >> 4) % 4;
  g.dq.layout(gradient_dtype(grad_choice[0], dtype), m.total_q, heads, dim, grad_head_pad, grad_row_pad);
  g.dk.layout(gradient_dtype(grad_choice[1], dtype), m.total_k, heads_kv, dim, grad_row_pad, grad_head_pad);
  g.dv.layout(gradient_dtype(grad_choice[2], dtype), m.total_k, heads_kv, dim, 0, grad_row_pad);
  g.dslopes.layout(in, params.slopes_per_batch != 0, m.batch, heads);

  // The backward's arguments, one of them broken now and then.
  if ((corruption == kDoutStride || corruption == kDqStride) && dim < 2) corruption = kNone;
  Expect expect;
  const Broken problem = broken(corruption);
  if (corruption != kNone) expect.add(problem.status, problem.argument);
  alibi_attention_params backward_params = params;
  if (corruption == kScale) backward_params.softmax_scale = NAN;
  if (corruption == kStructSize) backward_params.struct_size -= 8;
  fuzz::TensorHandle bad_lse, bad_k;
  if (corruption == kLseShape || corruption == kLseDtype) {
    const int64_t swapped[2] = {heads == m.total_q ? heads + 1 : m.total_q, heads == m.total_q ? m.total_q : heads};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, corruption == kLseDtype ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32, 2,
                                            corruption == kLseDtype ? lse_shape : swapped, nullptr, lse_storage.data(),
                                            &bad_lse.t),
                          "alibi_tensor_wrap");
  }
  if (corruption == kKDtype) {
    const int64_t strides[3] = {k.strides[0], k.strides[1], 1};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, other_dtype(dtype), 3, k.shape, strides, k.storage.data(), &bad_k.t),
                          "alibi_tensor_wrap");
  }
  dout.wrap_as(ctx, corruption == kDoutDtype ? other_dtype(dtype) : dtype, 3, corruption == kDoutShape ? 2 : -1,
               corruption == kDoutStride);
  if (g.want_dq)
    g.dq.wrap_as(ctx, corruption == kDqDtype ? other_dtype(dtype) : g.dq.dtype, corruption == kDqNdim ? 2 : 3, -1,
                 corruption == kDqStride);
  if (g.want_dk) g.dk.wrap_as(ctx, g.dk.dtype, 3, corruption == kDkHeads ? 1 : -1);
  if (g.want_dv) g.dv.wrap_as(ctx, g.dv.dtype, 3, corruption == kDvTokens ? 0 : -1);
  if (g.want_dslopes)
    g.dslopes.wrap(ctx, corruption == kDslopesDtype ? ALIBI_DTYPE_F16 : ALIBI_DTYPE_F32,
                   corruption == kDslopesLength ? 1 : 0, corruption == kDslopesNdim);

  const std::vector<uint8_t> inputs_before[] = {q.storage, k.storage, v.storage, out.storage, dout.storage};
  const std::vector<float> lse_before = lse_storage;
  const std::vector<uint8_t> dq_poisoned = g.dq.storage, dk_poisoned = g.dk.storage, dv_poisoned = g.dv.storage;
  const std::vector<float> dslopes_poisoned = g.dslopes.storage;
  auto backward = [&](alibi_context_t context) {
    return alibi_attention_backward(
        corruption == kNullCtx ? nullptr : context, corruption == kNullQ ? nullptr : q.tensor.t,
        bad_k.t ? bad_k.t : k.tensor.t, v.tensor.t, corruption == kNullMask ? nullptr : m.handle.m, &backward_params,
        corruption == kNullOut ? nullptr : out.tensor.t, corruption == kNullLse ? nullptr : bad_lse.t ? bad_lse.t : lse.t,
        corruption == kNullDout ? nullptr : dout.tensor.t, g.want_dq ? g.dq.tensor.t : nullptr,
        g.want_dk ? g.dk.tensor.t : nullptr, g.want_dv ? g.dv.tensor.t : nullptr,
        g.want_dslopes ? g.dslopes.tensor.t : nullptr);
  };
  const alibi_status status = backward(ctx);
  expect.check(status, "alibi_attention_backward");
  const std::vector<uint8_t>* inputs_after[] = {&q.storage, &k.storage, &v.storage, &out.storage, &dout.storage};
  for (int i = 0; i < 5; ++i) FUZZ_REQUIRE(inputs_before[i] == *inputs_after[i], "the backward wrote to an input (%d)", i);
  FUZZ_REQUIRE(std::memcmp(lse_before.data(), lse_storage.data(), lse_storage.size() * 4) == 0,
               "the backward wrote to lse");
  if (!expect.ok()) {
    FUZZ_REQUIRE(std::strstr(alibi_last_error_message(), problem.argument) != nullptr,
                 "the message does not name %s", problem.argument);
    FUZZ_REQUIRE(g.dq.storage == dq_poisoned && g.dk.storage == dk_poisoned && g.dv.storage == dv_poisoned &&
                     std::memcmp(g.dslopes.storage.data(), dslopes_poisoned.data(), dslopes_poisoned.size() * 4) == 0,
                 "a failed backward wrote to a gradient");
    return 0;
  }

  // The float64 backward of the same (exactly representable) inputs and the library's out/lse.
  ref::Problem p;
  p.total_q = m.total_q, p.total_k = m.total_k;
  p.heads_q = heads, p.heads_kv = heads_kv, p.head_dim = dim;
  p.q = q.values(), p.k = k.values(), p.v = v.values();
  p.visible = m.visible;
  p.positions = m.positions;
  p.scale = params.softmax_scale > 0 ? params.softmax_scale : float(1.0 / std::sqrt(double(dim)));
  p.softcap = params.softcap;
  p.bias_heads = pc.bias_heads;
  p.attn_bias = pc.bias_values;
  p.slopes = row_slopes(m, pc, heads);
  fuzz::BackwardInputs bi;
  bi.out = out.values(), bi.dout = dout.values();
  bi.slope_slots = params.slopes_per_batch ? m.batch * heads : heads;
  const std::vector<int32_t> no_sequences;
  for (int h = 0; h < heads; ++h)
    for (int64_t i = 0; i < m.total_q; ++i)
      bi.slope_slot.push_back(int(ref::slope_index(p, params.slopes_per_batch ? m.cu_q : no_sequences, h, i)));
  const fuzz::BackwardResult want = fuzz::backward_with_bounds(p, bi);
  if (g.want_dq) check_gradient("dq", g.dq, want.dq, dq_poisoned);
  if (g.want_dk) check_gradient("dk", g.dk, want.dk, dk_poisoned);
  if (g.want_dv) check_gradient("dv", g.dv, want.dv, dv_poisoned);
  if (g.want_dslopes) {
    std::vector<float> expected = dslopes_poisoned;
    for (int slot = 0; slot < bi.slope_slots; ++slot) {
      char what[64];
      std::snprintf(what, sizeof what, "dslopes[%d] (slot b * Hq + h)", slot);
      float& got = g.dslopes.at(slot, heads);
      check_element(got, want.dslopes.value[size_t(slot)], want.dslopes.bound[size_t(slot)], ALIBI_DTYPE_F32, what);
      expected[size_t(&got - g.dslopes.storage.data())] = got;
    }
    FUZZ_REQUIRE(std::memcmp(expected.data(), g.dslopes.storage.data(), expected.size() * 4) == 0,
                 "the backward wrote outside dslopes' elements");
  }

  // The same call on the other thread count gives the same bits.
  if (rerun) {
    const std::vector<uint8_t> dq = g.dq.storage, dk = g.dk.storage, dv = g.dv.storage;
    const std::vector<float> dslopes = g.dslopes.storage;
    fuzz::check_status_ok(backward(fuzz::cpu_context(3 - threads)), "alibi_attention_backward");
    FUZZ_REQUIRE(dq == g.dq.storage && dk == g.dk.storage && dv == g.dv.storage &&
                     std::memcmp(dslopes.data(), g.dslopes.storage.data(), dslopes.size() * 4) == 0,
                 "1 and 2 threads give different gradient bits");
  }
  return 0;
}
