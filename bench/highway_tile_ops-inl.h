// The forward's two hot tile operations, the register-blocked GEMM and the score-and-softmax
// step, written with Google Highway for bench/simd_highway.cpp (issue 16): the same algorithm as
// cpu/tile_ops_simd.h (register block, order of operations, exp polynomial), so that the two
// differ only in how the vectors are spelled. Included once per Highway target by that file's
// foreach_target pass, hence no include guard.

HWY_BEFORE_NAMESPACE();
namespace alibi::bench {
namespace HWY_NAMESPACE {
namespace {  // internal linkage, as in the template (it weighs in gcc's inlining choices)

namespace hn = hwy::HWY_NAMESPACE;
using cpu::ScoreBlock;

using DF = hn::ScalableTag<float>;
using DI = hn::RebindToSigned<DF>;
using VF = hn::Vec<DF>;
using VI = hn::Vec<DI>;
using MF = hn::Mask<DF>;

using cpu::kQueryPadding;
// The template's register blocks: 6 rows x 4 vectors where vectors are 64 bytes (AVX-512, 32
// registers), 6 x 2 otherwise (AVX2, 16 registers).
constexpr int kGemmRows = 6;
constexpr int kGemmVectors = HWY_MAX_BYTES >= 64 ? 4 : 2;

// How exp_lanes spells its last steps, 2^n and the zero below -87.33 (bitwise the same results):
// kPortable as one would first write it in Highway (ConvertTo, whose overflow fix-up costs four
// instructions, and IfThenZeroElse), kLean with fewer (2^n from the bits of n + 2^23 + 127, and
// the template's zero-masking select that the multiply absorbs). The template's AVX-512 layer
// scales by 2^n in one vscalefps (cpu/README.md).
enum class ExpSpelling { kPortable, kLean };

// 2^n for integral n in [-126, 127], n held as a float.
template <ExpSpelling kSpelling>
inline VF pow2(DF d, VF n) {
  const DI di;
  if constexpr (kSpelling == ExpSpelling::kPortable)
    return hn::BitCast(d, hn::ShiftLeft<23>(hn::Add(hn::ConvertTo(di, n), hn::Set(di, 127))));
  // n + 2^23 + 127 is exact, with n + 127 in its low mantissa bits; the shift drops the rest.
  return hn::BitCast(d, hn::ShiftLeft<23>(hn::BitCast(di, hn::Add(n, hn::Set(d, 8388608.0f + 127.0f)))));
}

// e^x as exp_lanes in cpu/tile_ops_simd.h: the same reduction and polynomial, 0 below -87.33.
template <ExpSpelling kSpelling>
inline VF exp_lanes(DF d, VF x) {
  const MF underflow = hn::Lt(x, hn::Set(d, -87.33f));
  x = hn::Min(hn::Max(x, hn::Set(d, -87.33f)), hn::Set(d, 88.0f));
  const VF n = hn::Round(hn::Mul(x, hn::Set(d, 1.44269504088896341f)));
  VF r = hn::NegMulAdd(n, hn::Set(d, 0.693359375f), x);
  r = hn::NegMulAdd(n, hn::Set(d, -2.12194440e-4f), r);
  VF p = hn::Set(d, 1.9875691500e-4f);
  p = hn::MulAdd(p, r, hn::Set(d, 1.3981999507e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 8.3334519073e-3f));
  p = hn::MulAdd(p, r, hn::Set(d, 4.1665795894e-2f));
  p = hn::MulAdd(p, r, hn::Set(d, 1.6666665459e-1f));
  p = hn::MulAdd(p, r, hn::Set(d, 5.0000001201e-1f));
  const VF y = hn::MulAdd(p, hn::Mul(r, r), hn::Add(r, hn::Set(d, 1.0f)));
  const VF e = hn::Mul(y, pow2<kSpelling>(d, n));
  if constexpr (kSpelling == ExpSpelling::kPortable) return hn::IfThenZeroElse(underflow, e);
  return hn::IfThenElseZero(hn::Not(underflow), e);
}

template <ExpSpelling kSpelling>
inline VF tanh_lanes(DF d, VF x) {
  const VF e = exp_lanes<kSpelling>(d, hn::Mul(hn::Set(d, -2.0f), hn::Abs(x)));
  const VF one = hn::Set(d, 1.0f);
  return hn::CopySignToAbs(hn::Div(hn::Sub(one, e), hn::Add(one, e)), x);
}

// ---- The register-blocked GEMM (kernel_wide, kernel_narrow, row_panel, gemm of the template) ----

template <int M>
void kernel_wide(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                 float* c, int64_t ldc, const float* c_scale) {
  constexpr int W = kGemmVectors;
  const DF d;
  const int64_t L = hn::Lanes(d);
  VF acc[M][W];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) {
    const VF scale = c_scale ? hn::Set(d, c_scale[i]) : hn::Zero(d);
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) acc[i][w] = c_scale ? hn::Mul(scale, hn::LoadU(d, c + i * ldc + w * L)) : scale;
  }
  for (int64_t p = 0; p < k; ++p) {
    VF row[W];
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) row[w] = hn::LoadU(d, b + p * ldb + w * L);
    const float* ap = a + p * a_col;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) {
      const VF av = hn::Set(d, ap[i * a_row]);
#pragma GCC unroll 4
      for (int w = 0; w < W; ++w) acc[i][w] = hn::MulAdd(av, row[w], acc[i][w]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
    for (int w = 0; w < W; ++w) hn::StoreU(acc[i][w], d, c + i * ldc + w * L);
}

template <int M>
void kernel_narrow(int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
                   float* c, int64_t ldc, const float* c_scale, int64_t width) {
  const DF d;
  const MF mask = hn::FirstN(d, size_t(width));
  VF acc[M];
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i)
    acc[i] = c_scale ? hn::Mul(hn::Set(d, c_scale[i]), hn::MaskedLoad(mask, d, c + i * ldc)) : hn::Zero(d);
  for (int64_t p = 0; p < k; ++p) {
    const VF b0 = hn::MaskedLoad(mask, d, b + p * ldb);
    const float* ap = a + p * a_col;
#pragma GCC unroll 16
    for (int i = 0; i < M; ++i) acc[i] = hn::MulAdd(hn::Set(d, ap[i * a_row]), b0, acc[i]);
  }
#pragma GCC unroll 16
  for (int i = 0; i < M; ++i) hn::BlendedStore(acc[i], mask, d, c + i * ldc);
}

template <int M>
void row_panel(int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b, int64_t ldb,
               float* c, int64_t ldc, const float* c_scale) {
  const int64_t L = hn::Lanes(DF()), wide = kGemmVectors * L;
  int64_t j = 0;
  for (; j + wide <= n; j += wide) kernel_wide<M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale);
  for (; j < n; j += L) kernel_narrow<M>(k, a, a_row, a_col, b + j, ldb, c + j, ldc, c_scale, std::min(L, n - j));
}

// row_panel<rows> for a run-time rows in 1..M.
template <int M>
void row_panel_of(int64_t rows, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col,
                  const float* b, int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  if constexpr (M > 1) {
    if (rows < M) return row_panel_of<M - 1>(rows, n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
  }
  row_panel<M>(n, k, a, a_row, a_col, b, ldb, c, ldc, c_scale);
}

// TileOps::gemm's contract (cpu/tile_ops.h).
void gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t a_row, int64_t a_col, const float* b,
          int64_t ldb, float* c, int64_t ldc, const float* c_scale) {
  constexpr int64_t panel = 64;  // as the template's kColumnPanel
  for (int64_t j = 0; j < n; j += panel)
    for (int64_t i = 0; i < m; i += kGemmRows)
      row_panel_of<kGemmRows>(std::min<int64_t>(kGemmRows, m - i), std::min(panel, n - j), k, a + i * a_row, a_row,
                              a_col, b + j, ldb, c + i * ldc + j, ldc, c_scale ? c_scale + i : nullptr);
}

// ---- The score-and-softmax step (QueryLanes, finish_scores, SoftmaxLanes of the template) ----

// Queries [c0, c0 + Lanes) of a block; with kPart (a 16-lane group past the arrays padded to 8)
// they are read and written under `inside` only.
template <bool kPart>
struct QueryLanes {
  int64_t c0;
  MF valid;   // real queries
  MF inside;  // columns inside the padded arrays (kPart only)

  VF load(DF d, const float* row) const {
    if constexpr (kPart) return hn::MaskedLoad(inside, d, row + c0);
    else return hn::LoadU(d, row + c0);
  }
  VI load(DI di, const int32_t* row) const {
    if constexpr (kPart) return hn::MaskedLoad(hn::RebindMask(di, inside), di, row + c0);
    else return hn::LoadU(di, row + c0);
  }
  void store(DF d, float* row, VF x) const {
    if constexpr (kPart) hn::BlendedStore(x, inside, d, row + c0);
    else hn::StoreU(x, d, row + c0);
  }
};

template <class Visit>
void for_query_lanes(DF d, int64_t queries, Visit&& visit) {
  const int64_t L = hn::Lanes(d);
  const int64_t padded = (queries + kQueryPadding - 1) / kQueryPadding * kQueryPadding;
  int64_t c0 = 0;
  for (; c0 + L <= padded; c0 += L)
    visit(QueryLanes<false>{c0, hn::FirstN(d, size_t(std::min(L, queries - c0))), hn::FirstN(d, 0)});
  if (L > kQueryPadding && c0 < queries)
    visit(QueryLanes<true>{c0, hn::FirstN(d, size_t(queries - c0)), hn::FirstN(d, size_t(padded - c0))});
}

// The final scores of a group written back; returns their max over the block's keys.
template <ExpSpelling kSpelling, bool kPart>
VF finish_scores(DF d, const ScoreBlock& b, const QueryLanes<kPart>& q) {
  const DI di;
  const VF neg_inf = hn::Set(d, -HUGE_VALF);
  const VF slope = hn::Set(d, b.slope);
  const VF cap = hn::Set(d, b.softcap), inverse_cap = hn::Set(d, 1.0f / b.softcap);
  const VI qpos = q.load(di, b.query_pos), lo = q.load(di, b.visible_lo), hi = q.load(di, b.visible_hi);
  VF block_max = neg_inf;
  for (int64_t j = 0; j < b.keys; ++j) {
    float* row = b.scores + j * b.ld;
    VF s = q.load(d, row);
    if (b.softcap > 0) s = hn::Mul(cap, tanh_lanes<kSpelling>(d, hn::Mul(s, inverse_cap)));
    const VF distance = hn::ConvertTo(d, hn::Abs(hn::Sub(qpos, hn::Set(di, b.key_pos[j]))));
    s = hn::Add(s, hn::Neg(hn::Mul(slope, distance)));
    if (b.attn_bias) s = hn::Add(s, q.load(d, b.attn_bias + j * b.ld));
    if (b.needs_mask) {
      const VI key = hn::Set(di, int32_t(b.first_key + j));
      const MF visible = hn::RebindMask(d, hn::AndNot(hn::Gt(lo, key), hn::Gt(hi, key)));
      s = hn::IfThenElse(hn::And(visible, q.valid), s, neg_inf);
    }
    q.store(d, row, s);
    block_max = hn::Max(block_max, s);
  }
  return block_max;
}

template <ExpSpelling kSpelling, bool kPart>
void softmax_lanes(DF d, const ScoreBlock& b, const QueryLanes<kPart>& q) {
  const VF neg_inf = hn::Set(d, -HUGE_VALF);
  const VF block_max = finish_scores<kSpelling>(d, b, q);
  const VF old_max = hn::MaskedLoad(q.valid, d, b.row_max + q.c0);
  const VF new_max = hn::Max(old_max, block_max);
  // Lanes that have seen nothing but -inf shift by 0, so their probabilities are exactly 0.
  const VF shift = hn::IfThenZeroElse(hn::Eq(new_max, neg_inf), new_max);
  VF sum = hn::Zero(d);
  for (int64_t j = 0; j < b.keys; ++j) {
    float* row = b.scores + j * b.ld;
    const VF p = exp_lanes<kSpelling>(d, hn::Sub(q.load(d, row), shift));
    q.store(d, row, p);
    sum = hn::Add(sum, p);
  }
  const VF correction = exp_lanes<kSpelling>(d, hn::Sub(old_max, shift));
  const VF old_sum = hn::MaskedLoad(q.valid, d, b.row_sum + q.c0);
  hn::BlendedStore(new_max, q.valid, d, b.row_max + q.c0);
  hn::BlendedStore(hn::MulAdd(old_sum, correction, sum), q.valid, d, b.row_sum + q.c0);
  hn::BlendedStore(correction, q.valid, d, b.correction + q.c0);
}

// TileOps::softmax_block's contract (cpu/tile_ops.h).
template <ExpSpelling kSpelling>
void softmax_block(const ScoreBlock& b) {
  const DF d;
  for_query_lanes(d, b.queries, [&](const auto& q) { softmax_lanes<kSpelling>(d, b, q); });
}

void softmax_block_portable(const ScoreBlock& b) { softmax_block<ExpSpelling::kPortable>(b); }
void softmax_block_lean(const ScoreBlock& b) { softmax_block<ExpSpelling::kLean>(b); }

const char* target_name() { return hwy::TargetName(HWY_TARGET); }

}  // namespace
}  // namespace HWY_NAMESPACE
}  // namespace alibi::bench
HWY_AFTER_NAMESPACE();
