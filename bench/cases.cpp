#include "cases.h"

#include <cstring>

namespace bench {

namespace {

constexpr int64_t kMaxBaselineCells = int64_t(4096) * 4096;  // per head and sequence

std::string shape_name(int heads, int head_dim) {
  return "h" + std::to_string(heads) + "_d" + std::to_string(head_dim);
}

// kv_heads below heads: grouped-query attention, named hH_hkvK_dD.
std::string shape_name(int heads, int kv_heads, int head_dim) {
  std::string shape = shape_name(heads, head_dim);
  if (kv_heads != heads) shape.insert(shape.find('_'), "_hkv" + std::to_string(kv_heads));
  return shape;
}

Case make_case(std::string name, Kind kind, alibi_dtype dtype, int heads, int head_dim,
               std::vector<int32_t> lengths_q, std::vector<int32_t> lengths_k, bool causal) {
  Case c;
  c.name = std::move(name);
  c.kind = kind;
  c.dtype = dtype;
  c.heads = c.kv_heads = heads;
  c.head_dim = head_dim;
  c.lengths_q = std::move(lengths_q);
  c.lengths_k = std::move(lengths_k);
  c.causal = causal;
  c.backward = false;
  c.with_baseline = true;
  for (size_t b = 0; b < c.lengths_q.size(); ++b)
    if (int64_t(c.lengths_q[b]) * c.lengths_k[b] > kMaxBaselineCells) c.with_baseline = false;
  c.quick = false;
  return c;
}

Case prefill(int heads, int head_dim, int n, bool causal, alibi_dtype dtype) {
  std::string name = "prefill_" + shape_name(heads, head_dim) + "_n" + std::to_string(n) +
                     (causal ? "_causal_" : "_full_") + dtype_name(dtype);
  return make_case(name, Kind::prefill, dtype, heads, head_dim, {n}, {n}, causal);
}

Case decode(int heads, int kv_heads, int head_dim, int keys) {
  const std::string name =
      "decode_" + shape_name(heads, kv_heads, head_dim) + "_tk" + std::to_string(keys) + "_f32";
  // One query attending to every key: a causal bottom-right mask sees the whole row.
  Case c = make_case(name, Kind::decode, ALIBI_DTYPE_F32, heads, head_dim, {1}, {keys}, true);
  c.kv_heads = kv_heads;
  return c;
}

// A paged case of `batch` sequences of lq queries over lk keys each (their blocks of 16 tokens
// shuffled in the pool), bf16 as serving caches are; timed against the contiguous call. Named
// paged_{decode|prefill}_bB_..._bs16_bf16 (_qN where a decode has N > 1 queries: speculative
// decode): no filter of the contiguous cases (decode_h32_d128_tk32768, ...) selects one.
Case paged(Kind kind, int batch, int heads, int kv_heads, int head_dim, int lq, int lk) {
  constexpr int kBlockSize = 16;
  const std::string shape = shape_name(heads, kv_heads, head_dim);
  const std::string queries = kind == Kind::decode && lq == 1 ? "" : "_q" + std::to_string(lq);
  const std::string name = std::string("paged_") + (kind == Kind::decode ? "decode" : "prefill") +
                           "_b" + std::to_string(batch) + "_" + shape + queries + "_tk" +
                           std::to_string(lk) + "_bs" + std::to_string(kBlockSize) + "_bf16";
  const std::vector<int32_t> lengths_q(size_t(batch), lq), lengths_k(size_t(batch), lk);
  Case c = make_case(name, kind, ALIBI_DTYPE_BF16, heads, head_dim, lengths_q, lengths_k, true);
  c.kv_heads = kv_heads;
  c.block_size = kBlockSize;
  c.with_baseline = true;  // the contiguous call
  return c;
}

Case varlen(int heads, int head_dim, const std::vector<int32_t>& lengths) {
  std::string name = "varlen_" + shape_name(heads, head_dim) + "_";
  for (size_t b = 0; b < lengths.size(); ++b) name += (b ? "-" : "l") + std::to_string(lengths[b]);
  return make_case(name + "_causal_f32", Kind::varlen, ALIBI_DTYPE_F32, heads, head_dim, lengths,
                   lengths, true);
}

// The backward of a forward case: "prefill_X" becomes "backward_X", "varlen_X" "backward_varlen_X".
Case backward(Case c) {
  const std::string prefill_prefix = "prefill_";
  if (c.name.compare(0, prefill_prefix.size(), prefill_prefix) == 0)
    c.name.erase(0, prefill_prefix.size());
  c.name = "backward_" + c.name;
  c.backward = true;
  return c;
}

}  // namespace

size_t Case::element_size() const { return dtype == ALIBI_DTYPE_F32 ? 4 : 2; }

std::vector<Case> default_cases() {
  std::vector<Case> cases;
  const alibi_dtype dtypes[] = {ALIBI_DTYPE_F32, ALIBI_DTYPE_BF16};
  struct Shape {
    int heads, head_dim, n;
  };
  const Shape shapes[] = {
      {16, 64, 512}, {16, 64, 2048}, {32, 128, 1024}, {32, 128, 4096}, {16, 128, 2048}};
  for (const Shape& s : shapes)
    for (bool causal : {true, false})
      for (alibi_dtype dtype : dtypes)
        cases.push_back(prefill(s.heads, s.head_dim, s.n, causal, dtype));
  // f16 where issue 16 sets targets: the causal shapes it names and full H16 D128 N2048.
  for (const Shape& s : {Shape{16, 64, 512}, Shape{16, 64, 2048}, Shape{16, 128, 2048},
                         Shape{32, 128, 4096}})
    cases.push_back(prefill(s.heads, s.head_dim, s.n, true, ALIBI_DTYPE_F16));
  cases.push_back(prefill(16, 128, 2048, false, ALIBI_DTYPE_F16));
  for (int keys : {4096, 32768}) cases.push_back(decode(32, 32, 128, keys));
  cases.push_back(decode(32, 8, 128, 32768));
  cases.push_back(varlen(16, 128, {37, 512, 1999, 64}));

  Case memory = prefill(8, 128, 16384, true, ALIBI_DTYPE_F32);
  memory.name = "memory_" + memory.name.substr(std::strlen("prefill_"));
  cases.push_back(memory);

  cases.push_back(backward(prefill(16, 64, 512, true, ALIBI_DTYPE_F32)));
  for (bool causal : {true, false})
    for (alibi_dtype dtype : dtypes)
      cases.push_back(backward(prefill(16, 128, 2048, causal, dtype)));
  cases.push_back(backward(varlen(16, 128, {37, 512, 1999, 64})));
  // Few heads, long: a Tq x Tk buffer would be 1 GiB, the O(Tk x Hkv x D) term is 16 MiB.
  Case backward_memory = backward(prefill(2, 128, 16384, true, ALIBI_DTYPE_F32));
  backward_memory.name = "backward_memory_" + backward_memory.name.substr(std::strlen("backward_"));
  cases.push_back(backward_memory);

  // Issue 17: paged decode against contiguous decode, and a chunked prefill. 16 sequences of
  // 32768 keys with 32 kv heads are left out: 8 GiB of bf16 k and v, twice (pool and
  // contiguous), on a 24 GiB machine.
  for (int kv_heads : {32, 8})
    for (int batch : {1, 16})
      for (int keys : {4096, 32768})
        if (kv_heads == 8 || batch == 1 || keys == 4096)
          cases.push_back(paged(Kind::decode, batch, 32, kv_heads, 128, 1, keys));
  cases.push_back(paged(Kind::decode, 16, 32, 8, 128, 4, 4096));  // speculative decode, 4 tokens
  cases.push_back(paged(Kind::varlen, 4, 32, 8, 128, 512, 4096));

  const std::string quick[] = {"prefill_h16_d64_n512_causal_f32",
                               "prefill_h16_d64_n512_causal_bf16",
                               "prefill_h16_d128_n2048_causal_f32",
                               "decode_h32_d128_tk4096_f32",
                               "varlen_h16_d128_l37-512-1999-64_causal_f32",
                               "backward_h16_d64_n512_causal_f32"};
  for (Case& c : cases)
    c.quick = std::find(std::begin(quick), std::end(quick), c.name) != std::end(quick);
  return cases;
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::prefill:
      return "prefill";
    case Kind::decode:
      return "decode";
    case Kind::varlen:
      return "varlen";
  }
  return "?";
}

const char* dtype_name(alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_BF16 ? "bf16" : dtype == ALIBI_DTYPE_F16 ? "f16" : "f32";
}

float from_half(uint16_t bits, alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F16 ? bench_common::from_f16(bits) : from_bf16(bits);
}

uint16_t to_half(float value, alibi_dtype dtype) {
  return dtype == ALIBI_DTYPE_F16 ? bench_common::to_f16(value) : to_bf16(value);
}

namespace {

// A fixed-seed 64-bit LCG (Knuth's MMIX constants): uniform floats in [-1, 1).
class Uniform {
 public:
  explicit Uniform(uint64_t seed) : state_(seed) {}
  float next() {
    state_ = state_ * 6364136223846793005ull + 1442695040888963407ull;
    return float(double(state_ >> 40) / double(1ull << 24) * 2.0 - 1.0);
  }

 private:
  uint64_t state_;
};

std::vector<unsigned char> random_buffer(int64_t count, alibi_dtype dtype, uint64_t seed) {
  Uniform uniform(seed);
  std::vector<unsigned char> bytes(size_t(count) * (dtype == ALIBI_DTYPE_F32 ? 4 : 2));
  for (int64_t i = 0; i < count; ++i) {
    const float value = uniform.next();
    if (dtype != ALIBI_DTYPE_F32) {
      const uint16_t half = to_half(value, dtype);
      std::memcpy(bytes.data() + 2 * i, &half, 2);
    } else {
      std::memcpy(bytes.data() + 4 * i, &value, 4);
    }
  }
  return bytes;
}

}  // namespace

Inputs make_inputs(const Case& c) {
  Inputs inputs{random_buffer(c.q_elements(), c.dtype, 1),
                random_buffer(c.kv_elements(), c.dtype, 2),
                random_buffer(c.kv_elements(), c.dtype, 3),
                {}};
  if (c.backward) inputs.dout = random_buffer(c.q_elements(), c.dtype, 4);
  return inputs;
}

}  // namespace bench
