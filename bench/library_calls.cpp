#include "library_calls.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace bench {

namespace {

Tensor wrap(alibi_context_t ctx, alibi_dtype dtype, std::vector<int64_t> shape, void* data) {
  alibi_tensor_t tensor = nullptr;
  check(alibi_tensor_wrap(ctx, dtype, int(shape.size()), shape.data(), nullptr, data, &tensor),
        "alibi_tensor_wrap");
  return Tensor(tensor);
}

// q, out and their gradients: (total_q, heads, head_dim) in the case's dtype.
Tensor wrap_q(alibi_context_t ctx, const Case& c, void* data) {
  return wrap(ctx, c.dtype, {c.total_q(), c.heads, c.head_dim}, data);
}

// k, v and their gradients: (total_k, kv_heads, head_dim) in the case's dtype.
Tensor wrap_kv(alibi_context_t ctx, const Case& c, void* data) {
  return wrap(ctx, c.dtype, {c.total_k(), c.kv_heads, c.head_dim}, data);
}

Mask make_mask(alibi_context_t ctx, const Case& c) {
  const std::vector<int32_t> cu_q = c.cu_seqlens_q(), cu_k = c.cu_seqlens_k();
  alibi_mask_t mask = nullptr;
  check(alibi_mask_create_varlen(ctx, int(c.lengths_q.size()), cu_q.data(), cu_k.data(),
                                 c.causal ? 1 : 0, &mask),
        "alibi_mask_create_varlen");
  return Mask(mask);
}

std::vector<unsigned char> buffer(int64_t elements, const Case& c) {
  return std::vector<unsigned char>(size_t(elements) * c.element_size());
}

// The bytes of one token's k (or v): kv_heads x head_dim elements.
size_t token_bytes(const Case& c) { return size_t(c.kv_heads) * c.head_dim * c.element_size(); }

// k_cache, v_cache: (num_blocks, block_size, kv_heads, head_dim) in the case's dtype.
Tensor wrap_pool(alibi_context_t ctx, const Case& c, const bench_common::BlockTable& table, void* data) {
  return wrap(ctx, c.dtype, {table.num_blocks, c.block_size, c.kv_heads, c.head_dim}, data);
}

// Where the rows each sequence uses of its blocks lie in a pool, in table order.
std::vector<AlibiPagedForward::BlockRows> rows_in_table_order(const Case& c, const bench_common::BlockTable& table) {
  std::vector<AlibiPagedForward::BlockRows> rows;
  const size_t block_bytes = token_bytes(c) * size_t(c.block_size);
  for (const bench_common::UsedBlock& block : bench_common::blocks_in_table_order(c.lengths_k, c.block_size, table))
    rows.push_back({size_t(block.id) * block_bytes, size_t(block.keys) * token_bytes(c)});
  return rows;
}

uint64_t sum_of_words(const unsigned char* bytes, size_t count) {
  const auto* words = reinterpret_cast<const uint64_t*>(bytes);
  uint64_t sum = 0;
  for (size_t i = 0; i < count / sizeof(uint64_t); ++i) sum += words[i];
  return sum;
}

}  // namespace

void check(alibi_status status, const char* call) {
  if (status == ALIBI_STATUS_SUCCESS) return;
  std::fprintf(stderr, "alibi-bench: %s failed: %s\n  %s\n", call, alibi_status_string(status),
               alibi_last_error_message());
  std::exit(1);
}

Context make_context(int threads) {
  alibi_context_t ctx = nullptr;
  check(alibi_context_create(ALIBI_DEVICE_CPU, 0, &ctx), "alibi_context_create");
  Context owned(ctx);
  check(alibi_context_set_num_threads(ctx, threads), "alibi_context_set_num_threads");
  return owned;
}

std::vector<float> widen(const std::vector<unsigned char>& bytes, alibi_dtype dtype) {
  if (dtype == ALIBI_DTYPE_F32) {
    std::vector<float> values(bytes.size() / 4);
    std::memcpy(values.data(), bytes.data(), bytes.size());
    return values;
  }
  std::vector<float> values(bytes.size() / 2);
  for (size_t i = 0; i < values.size(); ++i) {
    uint16_t half;
    std::memcpy(&half, bytes.data() + 2 * i, 2);
    values[i] = from_half(half, dtype);
  }
  return values;
}

AlibiForward::AlibiForward(alibi_context_t ctx, const Case& c, Inputs& inputs)
    : ctx_(ctx),
      dtype_(c.dtype),
      out_bytes_(buffer(c.q_elements(), c)),
      q_(wrap_q(ctx, c, inputs.q.data())),
      k_(wrap_kv(ctx, c, inputs.k.data())),
      v_(wrap_kv(ctx, c, inputs.v.data())),
      out_(wrap_q(ctx, c, out_bytes_.data())),
      mask_(make_mask(ctx, c)) {}

void AlibiForward::run() {
  check(alibi_attention_forward(ctx_, q_.get(), k_.get(), v_.get(), mask_.get(), nullptr,
                                out_.get(), nullptr),
        "alibi_attention_forward");
}

AlibiPagedForward::AlibiPagedForward(alibi_context_t ctx, const Case& c, Inputs& inputs)
    : ctx_(ctx),
      dtype_(c.dtype),
      causal_(c.causal ? 1 : 0),
      table_(bench_common::shuffled_block_table(c.lengths_k, c.block_size)),
      rows_in_order_(rows_in_table_order(c, table_)),
      cu_seqlens_q_(c.cu_seqlens_q()),
      seqlens_k_(c.lengths_k),
      k_pool_(bench_common::fill_pool(c.lengths_k, c.block_size, token_bytes(c), table_, inputs.k)),
      v_pool_(bench_common::fill_pool(c.lengths_k, c.block_size, token_bytes(c), table_, inputs.v)),
      out_bytes_(buffer(c.q_elements(), c)),
      q_(wrap_q(ctx, c, inputs.q.data())),
      k_cache_(wrap_pool(ctx, c, table_, k_pool_.data())),
      v_cache_(wrap_pool(ctx, c, table_, v_pool_.data())),
      block_table_tensor_(wrap(ctx, ALIBI_DTYPE_I32, {int64_t(c.lengths_k.size()), table_.max_blocks},
                               table_.ids.data())),
      cu_seqlens_q_tensor_(wrap(ctx, ALIBI_DTYPE_I32, {int64_t(cu_seqlens_q_.size())},
                                cu_seqlens_q_.data())),
      seqlens_k_tensor_(
          wrap(ctx, ALIBI_DTYPE_I32, {int64_t(seqlens_k_.size())}, seqlens_k_.data())),
      out_(wrap_q(ctx, c, out_bytes_.data())) {}

void AlibiPagedForward::read_blocks() {
  const int64_t count = int64_t(rows_in_order_.size());
  uint64_t sum = 0;
#pragma omp parallel for reduction(+ : sum) schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const BlockRows& rows = rows_in_order_[size_t(i)];
    sum += sum_of_words(k_pool_.data() + rows.offset, rows.bytes) +
           sum_of_words(v_pool_.data() + rows.offset, rows.bytes);
  }
  checksum_ += sum;
}

void AlibiPagedForward::run() {
  check(alibi_attention_forward_paged(ctx_, q_.get(), k_cache_.get(), v_cache_.get(),
                                      block_table_tensor_.get(), cu_seqlens_q_tensor_.get(),
                                      seqlens_k_tensor_.get(), causal_, /*window_left=*/-1,
                                      nullptr, out_.get(), nullptr),
        "alibi_attention_forward_paged");
}

AlibiBackward::AlibiBackward(alibi_context_t ctx, const Case& c, Inputs& inputs)
    : ctx_(ctx),
      dtype_(c.dtype),
      forward_{buffer(c.q_elements(), c), std::vector<float>(size_t(c.heads * c.total_q()))},
      dq_(buffer(c.q_elements(), c)),
      dk_(buffer(c.kv_elements(), c)),
      dv_(buffer(c.kv_elements(), c)),
      dslopes_(size_t(c.heads)),
      q_(wrap_q(ctx, c, inputs.q.data())),
      k_(wrap_kv(ctx, c, inputs.k.data())),
      v_(wrap_kv(ctx, c, inputs.v.data())),
      out_(wrap_q(ctx, c, forward_.out.data())),
      lse_(wrap(ctx, ALIBI_DTYPE_F32, {c.heads, c.total_q()}, forward_.lse.data())),
      dout_(wrap_q(ctx, c, inputs.dout.data())),
      dq_tensor_(wrap_q(ctx, c, dq_.data())),
      dk_tensor_(wrap_kv(ctx, c, dk_.data())),
      dv_tensor_(wrap_kv(ctx, c, dv_.data())),
      dslopes_tensor_(wrap(ctx, ALIBI_DTYPE_F32, {c.heads}, dslopes_.data())),
      mask_(make_mask(ctx, c)) {
  check(alibi_attention_forward(ctx, q_.get(), k_.get(), v_.get(), mask_.get(), nullptr, out_.get(),
                                lse_.get()),
        "alibi_attention_forward");
  poison();
}

void AlibiBackward::run() {
  check(alibi_attention_backward(ctx_, q_.get(), k_.get(), v_.get(), mask_.get(), nullptr,
                                 out_.get(), lse_.get(), dout_.get(), dq_tensor_.get(),
                                 dk_tensor_.get(), dv_tensor_.get(), dslopes_tensor_.get()),
        "alibi_attention_backward");
}

void AlibiBackward::poison() {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const uint16_t nan_bf16 = to_bf16(nan);  // 0x7fc0: a NaN in f16 as well
  for (std::vector<unsigned char>* gradient : {&dq_, &dk_, &dv_}) {
    if (dtype_ == ALIBI_DTYPE_F32)
      for (size_t i = 0; i < gradient->size(); i += 4) std::memcpy(gradient->data() + i, &nan, 4);
    else
      for (size_t i = 0; i < gradient->size(); i += 2)
        std::memcpy(gradient->data() + i, &nan_bf16, 2);
  }
  std::fill(dslopes_.begin(), dslopes_.end(), nan);
}

Gradients AlibiBackward::gradients() const {
  return {widen(dq_, dtype_), widen(dk_, dtype_), widen(dv_, dtype_), dslopes_};
}

}  // namespace bench
