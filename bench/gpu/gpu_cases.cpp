#include "gpu_cases.h"


namespace gpubench {

namespace {

constexpr int kBf16Bytes = 2;
constexpr int kDecodeSequences = 64;

// Mixed document lengths of a packed batch of 16384 tokens; the 65536-token batch scales each
// by 4. Long, short and odd lengths, so that tiles straddle sequence boundaries.
const std::vector<int32_t> kVarlenMix = {8000, 4096, 2048, 1111, 512, 333, 200, 64, 17, 3};
constexpr int32_t kVarlenMixTokens = 16384;

struct Heads {
  int q, kv;
};
const Heads kHeadConfigs[] = {{16, 16}, {32, 8}};  // MHA, and GQA with groups of 4
const int kHeadDims[] = {64, 128};

std::string shape_name(Heads heads, int head_dim) {
  return "h" + std::to_string(heads.q) + "kv" + std::to_string(heads.kv) + "_d" +
         std::to_string(head_dim);
}

Case make_case(std::string name, Kind kind, Heads heads, int head_dim,
               std::vector<int32_t> lengths_q, std::vector<int32_t> lengths_k, bool causal) {
  Case c;
  c.heads = heads.q;
  c.kv_heads = heads.kv;
  c.head_dim = head_dim;
  c.lengths_q = std::move(lengths_q);
  c.lengths_k = std::move(lengths_k);
  c.causal = causal;
  c.name = std::move(name);
  c.kind = kind;
  c.quick = false;
  return c;
}

const char* mask_name(bool causal) { return causal ? "causal" : "full"; }

Case prefill(Heads heads, int head_dim, int32_t n, bool causal) {
  const std::string name = "prefill_" + shape_name(heads, head_dim) + "_n" + std::to_string(n) +
                           "_" + mask_name(causal);
  return make_case(name, Kind::prefill, heads, head_dim, {n}, {n}, causal);
}

Case varlen(Heads heads, int head_dim, int32_t tokens, bool causal) {
  std::vector<int32_t> lengths = kVarlenMix;
  for (int32_t& length : lengths) length *= tokens / kVarlenMixTokens;
  const std::string name = "varlen_" + shape_name(heads, head_dim) + "_t" +
                           std::to_string(tokens) + "_" + mask_name(causal);
  return make_case(name, Kind::varlen, heads, head_dim, lengths, lengths, causal);
}

// One new token per sequence over its whole cache: bottom-right causal shows it every key.
Case decode(Heads heads, int head_dim, int32_t keys) {
  const std::string name = "decode_" + shape_name(heads, head_dim) + "_b" +
                           std::to_string(kDecodeSequences) + "_tk" + std::to_string(keys);
  return make_case(name, Kind::decode, heads, head_dim, std::vector<int32_t>(kDecodeSequences, 1),
                   std::vector<int32_t>(kDecodeSequences, keys), true);
}

const char* const kQuickCases[] = {
    "prefill_h16kv16_d128_n4096_causal",   "prefill_h16kv16_d128_n16384_causal",
    "prefill_h16kv16_d128_n16384_full",    "prefill_h32kv8_d128_n16384_causal",
    "varlen_h16kv16_d128_t16384_causal",   "decode_h16kv16_d128_b64_tk16384",
    "decode_h32kv8_d128_b64_tk16384"};

bool is_quick(const std::string& name) {
  return std::find(std::begin(kQuickCases), std::end(kQuickCases), name) != std::end(kQuickCases);
}

std::string json_array(const std::vector<int32_t>& values) {
  std::string text = "[";
  for (size_t i = 0; i < values.size(); ++i) text += (i ? "," : "") + std::to_string(values[i]);
  return text + "]";
}

}  // namespace

int64_t Case::length() const { return kind == Kind::decode ? lengths_k.front() : total_q(); }

double Case::io_bytes() const { return AttentionShape::io_bytes(kBf16Bytes); }

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (int head_dim : kHeadDims)
    for (Heads heads : kHeadConfigs)
      for (int32_t n : {1024, 4096, 16384, 65536})
        for (bool causal : {true, false}) cases.push_back(prefill(heads, head_dim, n, causal));
  for (int head_dim : kHeadDims)
    for (Heads heads : kHeadConfigs)
      for (int32_t tokens : {16384, 65536})
        for (bool causal : {true, false}) cases.push_back(varlen(heads, head_dim, tokens, causal));
  for (int head_dim : kHeadDims)
    for (Heads heads : kHeadConfigs)
      for (int32_t keys : {1024, 4096, 16384, 65536, 131072})
        cases.push_back(decode(heads, head_dim, keys));
  for (Case& c : cases) c.quick = is_quick(c.name);
  return cases;
}

const char* kind_name(Kind kind) {
  switch (kind) {
    case Kind::prefill:
      return "prefill";
    case Kind::varlen:
      return "varlen";
    case Kind::decode:
      return "decode";
  }
  return "?";
}

std::string cases_json(const std::vector<Case>& cases) {
  std::string text = "[\n";
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    text += std::string(i ? ",\n" : "") + "  {\"name\": \"" + c.name + "\", \"kind\": \"" +
            kind_name(c.kind) + "\", \"heads\": " + std::to_string(c.heads) +
            ", \"kv_heads\": " + std::to_string(c.kv_heads) +
            ", \"head_dim\": " + std::to_string(c.head_dim) +
            ", \"causal\": " + (c.causal ? "true" : "false") +
            ", \"lengths_q\": " + json_array(c.lengths_q) +
            ", \"lengths_k\": " + json_array(c.lengths_k) + "}";
  }
  return text + "\n]\n";
}

}  // namespace gpubench
