// Fuzz target: alibi_attention_forward_paged on small problems against the float64 reference of
// tests/reference.h on the gathered keys.
//
// Every input builds a batch of sequences (<= 4, Lq and Lk mostly <= 9, now and then up to 40
// queries and 72 keys: both CPU kernels), a block size of 1..17, a pool with spare blocks dealt
// to the sequences in a fuzzed order, table slots the sequences do not use holding any int32,
// k and v caches of f32/f16/bf16 in separate pools or interleaved in one, with padded strides,
// causal or not, a window or none, GQA, params (scale, softcap, user or per-sequence slopes),
// lse or none, 1 or 2 threads. Now and then one argument is made invalid instead (a block id
// outside the pool among the used blocks, a sequence longer than its table, Lq > Lk with causal,
// bad cu_seqlens_q or seqlens_k, window_left < -1, attn_bias, dtypes, shapes), and the call
// must fail with the documented status and leave out and lse untouched.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "attention_inputs.h"
#include "fuzz_common.h"
#include "reference.h"
#include "reference_check.h"

namespace {

using fuzz::Bytes;
using fuzz::Expect;
using fuzz::Operand;
using fuzz::TensorHandle;

struct Batch {
  int block_size = 1;
  std::vector<int32_t> lq, lk;  // per sequence
  std::vector<int32_t> cu_q{0}, cu_k{0};
  bool causal = false;
  int window_left = -1;
};

int64_t blocks_of(int64_t keys, int block_size) { return (keys + block_size - 1) / block_size; }

Batch make_batch(Bytes& in) {
  Batch batch;
  batch.block_size = in.u8() < 192 ? int(in.in(1, 5)) : int(in.in(1, 17));
  batch.causal = in.flag();
  batch.window_left = in.u8() < 160 ? -1 : int(in.in(0, 12));
  const int sequences = int(in.in(0, 4));
  for (int b = 0; b < sequences; ++b) {
    const int32_t lk = fuzz::length(in, 72);
    // Mostly Lq <= Lk; without causal now and then more queries than keys.
    const int32_t lq = in.u8() < 32 ? fuzz::length(in, 40) : int32_t(in.in(0, std::min(lk, fuzz::length(in, 40))));
    batch.lq.push_back(lq);
    batch.lk.push_back(lk);
    batch.cu_q.push_back(batch.cu_q.back() + lq);
    batch.cu_k.push_back(batch.cu_k.back() + lk);
  }
  return batch;
}

// The block table: each sequence's blocks drawn in a fuzzed order from a pool with spares; the
// slots past a sequence's blocks hold anything.
struct Table {
  int64_t num_blocks = 0, max_blocks = 0;
  std::vector<int32_t> ids;  // (B, max_blocks)
};

Table make_table(Bytes& in, const Batch& batch) {
  Table table;
  int64_t used = 0;
  for (int32_t lk : batch.lk) {
    used += blocks_of(lk, batch.block_size);
    table.max_blocks = std::max(table.max_blocks, blocks_of(lk, batch.block_size));
  }
  table.num_blocks = used + in.in(0, 3);
  table.max_blocks += in.in(0, 2);
  std::vector<int32_t> pool(size_t(table.num_blocks));
  for (int32_t i = 0; i < int32_t(pool.size()); ++i) pool[size_t(i)] = i;
  for (size_t i = pool.size(); i > 1; --i) std::swap(pool[i - 1], pool[size_t(in.in(0, int64_t(i) - 1))]);
  table.ids.assign(batch.lk.size() * size_t(table.max_blocks), 0);
  size_t next = 0;
  for (size_t b = 0; b < batch.lk.size(); ++b)
    for (int64_t j = 0; j < table.max_blocks; ++j)
      table.ids[b * size_t(table.max_blocks) + size_t(j)] =
          j < blocks_of(batch.lk[b], batch.block_size) ? pool[next++] : in.i32_small_or_wild(-1, 8);
  return table;
}

// (num_blocks, block_size, Hkv, D) caches: k and v each in a buffer of its own, or interleaved
// token by token in one; head and token strides padded.
struct Caches {
  std::vector<uint8_t> storage;
  int64_t shape[4] = {}, strides[4] = {};
  int64_t v_offset = 0;  // elements from k's first to v's first
  alibi_dtype dtype = ALIBI_DTYPE_F32;

  int64_t offset(int64_t block, int64_t row, int64_t h, int64_t d) const {
    return block * strides[0] + row * strides[1] + h * strides[2] + d;
  }
};

Caches make_caches(Bytes& in, alibi_dtype dtype, const Table& table, int block_size, int heads_kv, int dim) {
  Caches c;
  c.dtype = dtype;
  const bool interleaved = in.flag();
  const int64_t head_pad = in.in(0, 2), token_pad = in.in(0, 3);
  c.shape[0] = table.num_blocks, c.shape[1] = block_size, c.shape[2] = heads_kv, c.shape[3] = dim;
  c.strides[3] = 1;
  c.strides[2] = dim + head_pad;
  const int64_t token = heads_kv * c.strides[2];
  c.strides[1] = (interleaved ? 2 * token : token) + token_pad;
  c.strides[0] = block_size * c.strides[1];
  const int64_t one_pool = std::max<int64_t>(table.num_blocks * c.strides[0], 1);
  c.v_offset = interleaved ? token : one_pool;
  const size_t elements = size_t(interleaved ? one_pool : 2 * one_pool);
  c.storage.assign(elements * fuzz::element_size(dtype), 0);
  // Rows no sequence uses keep a value that would dominate any score it entered.
  for (size_t e = 0; e < elements; ++e) fuzz::store(c.storage.data(), int64_t(e), dtype, 1024.0f);
  return c;
}

// The k and v values of every used token, gathered per sequence as the reference takes them.
void fill_caches(Bytes& in, Caches& c, const Batch& batch, const Table& table, int shift,
                 ref::Problem& p) {
  for (size_t b = 0; b < batch.lk.size(); ++b)
    for (int64_t t = 0; t < batch.lk[b]; ++t) {
      const int64_t block = table.ids[b * size_t(table.max_blocks) + size_t(t / batch.block_size)];
      for (int h = 0; h < p.heads_kv; ++h)
        for (int d = 0; d < p.head_dim; ++d) {
          const int64_t at = c.offset(block, t % batch.block_size, h, d);
          const float k = fuzz::exact_value(in, shift), v = fuzz::exact_value(in, 0);
          fuzz::store(c.storage.data(), at, c.dtype, k);
          fuzz::store(c.storage.data(), at + c.v_offset, c.dtype, v);
          p.k.push_back(k);
          p.v.push_back(v);
        }
    }
}

// SPEC section 5: key t of a sequence is visible to its query at qpos = i + Lk - Lq when
// (!causal || t <= qpos) and (window_left < 0 || t >= qpos - window_left).
ref::Visibility paged_visibility(const Batch& batch) {
  ref::Visibility vis(batch.cu_q.back(), batch.cu_k.back());
  for (size_t b = 0; b < batch.lk.size(); ++b)
    for (int64_t i = 0; i < batch.lq[b]; ++i)
      for (int64_t t = 0; t < batch.lk[b]; ++t) {
        const int64_t qpos = i + batch.lk[b] - batch.lq[b];
        if ((!batch.causal || t <= qpos) && (batch.window_left < 0 || t >= qpos - batch.window_left))
          vis.set(batch.cu_q[b] + i, batch.cu_k[b] + t);
      }
  return vis;
}

void wrap_int32(alibi_context_t ctx, int ndim, const int64_t* shape, std::vector<int32_t>& values,
                TensorHandle& handle) {
  if (values.empty()) values.push_back(0);  // a valid pointer for empty tensors
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_I32, ndim, shape, nullptr, values.data(), &handle.t),
                        "alibi_tensor_wrap");
}

// One invalid argument (which 1..5), or none (0), and the status it calls for.
void corrupt(Bytes& in, Batch& batch, Table& table, std::vector<int32_t>& seqlens_k, Expect& expect,
             int which) {
  const int sequences = int(batch.lk.size());
  switch (which) {
    case 1:  // a used block outside the pool
      for (int b = 0; b < sequences; ++b)
        if (batch.lk[size_t(b)] > 0) {
          const int64_t j = in.in(0, blocks_of(batch.lk[size_t(b)], batch.block_size) - 1);
          table.ids[size_t(b * table.max_blocks + j)] = in.flag() ? -1 - int32_t(in.in(0, 3)) : int32_t(table.num_blocks + in.in(0, 3));
          expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "a used block outside the pool");
          return;
        }
      return;
    case 2:  // a sequence longer than its table
      if (sequences > 0) {
        seqlens_k[0] = int32_t(table.max_blocks * batch.block_size + in.in(1, 4));
        expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "a sequence longer than its table");
      }
      return;
    case 3:  // a negative key count
      if (sequences > 0) seqlens_k[size_t(sequences - 1)] = -1 - int32_t(in.in(0, 5)),
                         expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "negative seqlens_k");
      return;
    case 4:  // cu_seqlens_q not starting at 0 (total_q kept)
      batch.cu_q[0] = 1;
      expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "cu_seqlens_q[0] != 0");
      return;
    case 5:
      batch.window_left = -2 - int(in.in(0, 100));
      expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "window_left < -1");
      return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Bytes in(data, size);
  const int threads = in.u8() % 16 == 15 ? 2 : 1;
  alibi_context_t ctx = fuzz::cpu_context(threads);
  Batch batch = make_batch(in);
  Table table = make_table(in, batch);
  const alibi_dtype dtype = fuzz::float_dtype(in);
  const int heads_kv = int(in.in(1, 2)), group = int(in.in(1, 3)), heads = heads_kv * group;
  const int dim = in.u8() < 224 ? int(in.in(1, 8)) : int(in.in(1, 24));
  const int q_shift = int(in.in(-4, 5)), k_shift = int(in.in(-4, 5));
  const int64_t total_q = batch.cu_q.back();

  ref::Problem p;
  p.total_q = total_q, p.total_k = batch.cu_k.back();
  p.heads_q = heads, p.heads_kv = heads_kv, p.head_dim = dim;
  Operand q, out;
  q.layout(dtype, total_q, heads, dim, in.in(0, 2), in.in(0, 3));
  out.layout(dtype, total_q, heads, dim, in.in(0, 2), in.in(0, 3));
  q.fill(in, q_shift);
  p.q = q.values();
  Caches caches = make_caches(in, dtype, table, batch.block_size, heads_kv, dim);
  fill_caches(in, caches, batch, table, k_shift, p);

  alibi_attention_params params;
  alibi_attention_params_init(&params);
  Expect expect;
  static const float scales[] = {0.0f, 0.0f, 0.125f, 1.0f, 4.0f};
  params.softmax_scale = scales[in.u8() % 5];
  params.softcap = in.u8() < 200 ? 0.0f : 5.0f;
  std::vector<float> user_slopes;
  const uint8_t slope_mode = in.u8() % 4;
  if (slope_mode >= 2) {  // user slopes, per head or per sequence
    const size_t count = size_t(heads) * (slope_mode == 3 ? std::max<size_t>(batch.lk.size(), 1) : 1);
    for (size_t i = 0; i < count; ++i) user_slopes.push_back(float(in.in(0, 8)) / 8.0f);
    params.slopes = user_slopes.data();
    params.slopes_per_batch = slope_mode == 3;
  }
  std::vector<float> bias_values(1, 0.0f);
  TensorHandle bias;
  if (in.u8() == 255) {  // rejected: paged attention takes no attn_bias
    const int64_t shape[3] = {1, total_q, p.total_k};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 3, shape, nullptr, bias_values.data(), &bias.t),
                          "alibi_tensor_wrap");
    params.attn_bias = bias.t;
    expect.add(ALIBI_STATUS_UNSUPPORTED, "attn_bias");
  }

  std::vector<int32_t> seqlens_k = batch.lk;
  const uint8_t pick = in.u8();
  corrupt(in, batch, table, seqlens_k, expect, pick < 216 ? 0 : 1 + pick % 5);
  for (size_t b = 0; b < batch.lk.size(); ++b)
    if (batch.causal && batch.lq[b] > seqlens_k[b] && seqlens_k[b] >= 0)
      expect.add(ALIBI_STATUS_INVALID_ARGUMENT, "Lq > Lk with causal");
  const bool wrong_table_dtype = in.u8() == 254;
  if (wrong_table_dtype) expect.add(ALIBI_STATUS_DTYPE_MISMATCH, "block_table of i64");

  TensorHandle tq, tout, tk, tv, ttable, tcu, tseq, tlse;
  q.wrap(ctx);
  out.wrap(ctx);
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, dtype, 4, caches.shape, caches.strides, caches.storage.data(), &tk.t),
                        "alibi_tensor_wrap");
  fuzz::check_status_ok(alibi_tensor_wrap(ctx, dtype, 4, caches.shape, caches.strides,
                                          caches.storage.data() + caches.v_offset * int64_t(fuzz::element_size(dtype)),
                                          &tv.t),
                        "alibi_tensor_wrap");
  const int64_t sequences = int64_t(batch.lk.size());
  const int64_t table_shape[2] = {sequences, table.max_blocks}, cu_shape[1] = {sequences + 1},
                seq_shape[1] = {sequences};
  if (wrong_table_dtype) {
    std::vector<int64_t> wide(table.ids.begin(), table.ids.end());
    wide.push_back(0);
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_I64, 2, table_shape, nullptr, wide.data(), &ttable.t),
                          "alibi_tensor_wrap");
  } else {
    wrap_int32(ctx, 2, table_shape, table.ids, ttable);
  }
  wrap_int32(ctx, 1, cu_shape, batch.cu_q, tcu);
  wrap_int32(ctx, 1, seq_shape, seqlens_k, tseq);
  std::vector<float> lse_storage(size_t(heads * total_q) + 1, fuzz::kPoison);
  const bool with_lse = in.flag();
  if (with_lse) {
    const int64_t shape[2] = {heads, total_q};
    fuzz::check_status_ok(alibi_tensor_wrap(ctx, ALIBI_DTYPE_F32, 2, shape, nullptr, lse_storage.data(), &tlse.t),
                          "alibi_tensor_wrap");
  }
  const std::vector<float> lse_before = lse_storage;
  const alibi_status status =
      alibi_attention_forward_paged(ctx, q.tensor.t, tk.t, tv.t, ttable.t, tcu.t, tseq.t, batch.causal,
                                    batch.window_left, &params, out.tensor.t, tlse.t);
  expect.check(status, "alibi_attention_forward_paged");
  if (!expect.ok()) {
    FUZZ_REQUIRE(out.storage == out.poisoned && lse_storage == lse_before, "a failed paged call wrote to out or lse");
    return 0;
  }

  p.visible = paged_visibility(batch);
  p.positions = ref::varlen_positions(batch.cu_q, batch.cu_k);
  p.scale = params.softmax_scale > 0 ? params.softmax_scale : float(1.0 / std::sqrt(double(dim)));
  p.softcap = params.softcap;
  std::vector<float> head_slopes(static_cast<size_t>(heads));
  fuzz::check_status_ok(alibi_compute_slopes(heads, params.max_bias, head_slopes.data()), "alibi_compute_slopes");
  if (params.slopes && !params.slopes_per_batch) head_slopes = user_slopes;
  p.slopes = params.slopes_per_batch ? ref::slopes_of_sequences(user_slopes, heads, batch.cu_q)
                                     : ref::slopes_of_rows(head_slopes, total_q);
  const std::string what = std::to_string(threads) + " threads, block size " + std::to_string(batch.block_size);
  fuzz::check_forward_results(
      p, {[&](int64_t i, int h, int d) { return out.get(i, h, d); },
          with_lse ? std::function<float(int, int64_t)>([&](int h, int64_t i) { return lse_storage[size_t(h * total_q + i)]; })
                   : nullptr},
      dtype, what.c_str());
  return 0;
}
