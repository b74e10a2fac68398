// Attention backward on the CPU, flash-attention-2 style: scores and P are recomputed per tile
// from q, k and the forward's lse, never stored. Every work item owns what it writes and sums
// in a fixed order, so results do not depend on the thread count. Two schedules, chosen by the
// shape (kFusedMinKvHeads), never by the thread count:
//  - two passes (few kv heads, so that there are enough items):
//    keys: an item is (kv head, chunk of kKeyChunk keys). It visits, query head by query head
//    of its group, slice by slice in mask order, the rows that see its keys (ascending, in
//    pieces of kQueryBlock rows, each piece loaded once for all its key blocks) and
//    accumulates dK and dV of its keys in f32.
//    queries: an item is (query head, row tile of the mask's plan). It accumulates dQ of its
//    rows in f32 and each span's part of dslopes into that span's own slot; the slots are
//    summed in a fixed order at the end.
//  - fused (many kv heads): an item is a kv head. Its keys and values are packed (f32) once,
//    its dK and dV accumulate over all its keys while the query pass runs head by head of its
//    group, tile by tile in plan order: five products per cell instead of seven, and each
//    query row is read once.
// Tiles are transposed as in the forward (keys x queries) so that the cell math runs across
// queries in SIMD lanes (TileOps::gradient_block). bf16 inputs, where the CPU's bf16 dot
// products are the faster way (TileOps::gemm_bf16_pairs), recompute the scores and dP from
// bf16 keys and values against queries and dout packed in pairs of dims. Working memory: a few
// tiles per thread; in the fused schedule also keys, values, dK and dV of one kv head (f32, or
// for the bf16 dot products f32 keys and bf16 keys and values) per thread.
#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "core/kernel/attention_math.h"
#include "cpu/host_tensor.h"
#include "cpu/kernels.h"
#include "cpu/tile_ops.h"

namespace alibi::cpu {

namespace {

constexpr int64_t kKeyBlock = 64;
// Keys per item of the key pass: a query row is loaded once per chunk (rows are strided in q,
// dout and out, a page or more apart), so larger chunks read q less often; 256 keys' f32 dK and
// dV stay in L2 for head_dim 128.
constexpr int64_t kKeyChunk = 4 * kKeyBlock;
constexpr int64_t kQueryBlock = 64;
constexpr int64_t kLanes = 8;
constexpr int64_t kTileWidth = kQueryBlock + kLanes;  // query columns incl. SIMD padding
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// Below this many kv heads (items of the fused schedule) the backward runs in two passes. It
// depends on the shape only, never on the thread count.
constexpr int64_t kFusedMinKvHeads = 8;

// At most kQueryBlock consecutive rows of one slice (global row indices).
struct QueryPiece {
  const Slice* slice;
  int64_t row_begin, row_end;
};

// One thread's tiles.
struct Workspace {
  std::vector<float> queries_t, dout_t;            // head_dim x kTileWidth (queries scaled)
  std::vector<float> queries, dout;                // kQueryBlock x head_dim, row-major
  std::vector<float> scores, dscores, attn_bias;   // kKeyBlock x kTileWidth
  std::vector<float> keys, values;                 // kKeyChunk (fused: total_k) x head_dim
  std::vector<float> lse, row_dot;                 // kTileWidth
  std::vector<int32_t> query_pos, visible_lo, visible_hi;
  std::vector<float> out_row, ones;
  std::vector<float> gradient_a, gradient_b;       // the item's f32 gradient accumulators
  std::vector<float> query_gradient;               // dQ of a row tile (f32, unscaled)
  // bf16 dot products: queries (unscaled) and dout in pairs of dims (pairs x kTileWidth), and
  // the bf16 rows of keys and values (as keys and values, rows 2 x pairs elements apart)
  std::vector<uint32_t> query_pairs, dout_pairs;
  std::vector<uint16_t> key_halves, value_halves;

  explicit Workspace(int64_t dim)
      : queries_t(size_t(dim * kTileWidth)), dout_t(size_t(dim * kTileWidth)),
        queries(size_t(kQueryBlock * dim)), dout(size_t(kQueryBlock * dim)),
        scores(size_t(kKeyBlock * kTileWidth)), dscores(size_t(kKeyBlock * kTileWidth)),
        keys(size_t(kKeyChunk * dim)), values(size_t(kKeyChunk * dim)), lse(kTileWidth),
        row_dot(kTileWidth), query_pos(kTileWidth), visible_lo(kTileWidth), visible_hi(kTileWidth),
        out_row(size_t(dim)), ones(size_t(std::max(kKeyBlock, kQueryBlock)), 1.0f),
        query_pairs(size_t(pairs_of(dim) * kTileWidth)), dout_pairs(size_t(pairs_of(dim) * kTileWidth)) {}
};

class Backward {
 public:
  Backward(const BackwardArgs& args, const TileOps& ops)
      : args_(args), fwd_(args.forward), mask_(*args.forward.mask), ops_(ops),
        group_(fwd_.q.shape[1] / fwd_.k.shape[1]), dim_(fwd_.q.shape[2]),
        bf16_dots_(ops.gemm_bf16_pairs && fwd_.q.dtype == ALIBI_DTYPE_BF16) {}

  int64_t head_dim() const { return dim_; }

  // Fused schedule: every gradient of a kv head and of its query heads; span_slopes as
  // query_tile's, for every head ([head * num_spans + span]).
  void kv_head(int64_t kv_head, double* span_slopes, Workspace& w) const {
    const int64_t keys = mask_.total_k;
    load_keys_and_values(0, keys, kv_head, w);
    w.gradient_a.assign(args_.dk ? size_t(keys * dim_) : 0, 0.0f);
    w.gradient_b.assign(args_.dv ? size_t(keys * dim_) : 0, 0.0f);
    for (int64_t head = kv_head * group_; head < (kv_head + 1) * group_; ++head)
      for (int64_t t = 0; t < mask_.num_tiles; ++t)
        query_tile(mask_.tiles[t], head, span_slopes + head * mask_.num_spans + mask_.tiles[t].first_span, w, true);
    for (int64_t j = 0; j < keys; ++j) {
      store_key_gradients(j, j < keys - kRowsAhead, kv_head, j, w);
    }
  }

  // dK and dV of keys [kb, ke) of a kv head, from every query row that sees them.
  void key_chunk(int64_t kv_head, int64_t kb, int64_t ke, const std::vector<int32_t>& slices,
                 Workspace& w) const {
    const int64_t count = ke - kb;
    load_keys_and_values(kb, count, kv_head, w);
    w.gradient_a.assign(size_t(count * dim_), 0.0f);  // dK
    w.gradient_b.assign(size_t(count * dim_), 0.0f);  // dV
    for (int64_t head = kv_head * group_; head < (kv_head + 1) * group_; ++head)
      for (const int32_t s : slices) key_chunk_slice(mask_.slices[s], head, kb, ke, w);
    for (int64_t j = 0; j < count; ++j) {
      store_key_gradients(kb + j, j < count - kRowsAhead, kv_head, j, w);
    }
  }

  // dQ of a row tile's rows for one head (if wanted); span_slopes[i] gets the dslopes part of
  // the tile's span i. Fused: keys and values are the kv head's packed ones, and dK and dV
  // (w.gradient_a, w.gradient_b) get the tile's part.
  void query_tile(const RowTile& tile, int64_t head, double* span_slopes, Workspace& w, bool fused) const {
    const int64_t rows = tile.row_end - tile.row_begin;
    if (args_.dq) w.query_gradient.assign(size_t(rows * dim_), 0.0f);
    for (int64_t i = 0; i < tile.num_spans; ++i) {
      const SliceRows& span = mask_.spans[tile.first_span + i];
      const Slice& slice = mask_.slices[span.slice];
      span_slopes[i] = 0.0;
      for (int64_t r = span.row_begin; r < span.row_end; r += kQueryBlock) {
        const QueryPiece piece{&slice, r, std::min<int64_t>(span.row_end, r + kQueryBlock)};
        float* dq = args_.dq ? &w.query_gradient[size_t((r - tile.row_begin) * dim_)] : nullptr;
        span_slopes[i] += query_piece(piece, head, dq, w, fused);
      }
    }
    if (args_.dq)
      for (int64_t r = tile.row_begin; r < tile.row_end; ++r) {
        if (r + kRowsAhead < tile.row_end) prefetch_row(*args_.dq, r + kRowsAhead, head, dim_, true);
        store_gradient(*args_.dq, r, head, &w.query_gradient[size_t((r - tile.row_begin) * dim_)], fwd_.scale);
      }
  }

 private:
  // The rows of a slice that see keys [kb, ke) (global), piece by piece, each piece against
  // the key blocks it sees.
  void key_chunk_slice(const Slice& slice, int64_t head, int64_t kb, int64_t ke, Workspace& w) const {
    const int64_t gk0 = std::max<int64_t>(kb, slice.k_begin), gk1 = std::min<int64_t>(ke, slice.k_end);
    if (gk0 >= gk1) return;
    const auto [rb, re] = rows_seeing(slice, gk0 - slice.k_begin, gk1 - slice.k_begin);
    for (int64_t r = rb; r < re; r += kQueryBlock) {
      const QueryPiece piece{&slice, r, std::min(re, r + kQueryBlock)};
      load_piece(piece, head, w);
      for (int64_t k = gk0; k < gk1; k += kKeyBlock)
        key_block(piece, head, k - slice.k_begin, std::min(gk1, k + kKeyBlock) - slice.k_begin, k - kb, w);
    }
  }

  // The slice-local keys [k0, k1) (at `row` of the loaded keys and the accumulators) against
  // a loaded piece: dK and dV; nothing if no row sees them.
  void key_block(const QueryPiece& piece, int64_t head, int64_t k0, int64_t k1, int64_t row, Workspace& w) const {
    const int64_t n = piece.row_end - piece.row_begin;
    if (w.visible_hi[size_t(n - 1)] <= k0 || w.visible_lo[0] >= k1) return;
    gradient_step(piece, head, k0, k1, row, w);
    add_key_gradients(n, k1 - k0, size_t(row * dim_), w);
  }

  // dV += P^T dout and dK += dX^T (scale q) for `count` keys at `first` in the accumulators,
  // from the piece's n rows: scores and dscores are (keys x queries).
  void add_key_gradients(int64_t n, int64_t count, size_t first, Workspace& w) const {
    if (args_.dv)
      ops_.gemm(count, dim_, n, w.scores.data(), kTileWidth, 1, w.dout.data(), dim_, &w.gradient_b[first], dim_,
                w.ones.data());
    if (args_.dk)
      ops_.gemm(count, dim_, n, w.dscores.data(), kTileWidth, 1, w.queries.data(), dim_, &w.gradient_a[first], dim_,
                w.ones.data());
  }

  // A piece of rows against all its keys, block by block: dQ (unscaled) into dq if given, and
  // fused, dK and dV; returns the piece's part of dslopes.
  double query_piece(const QueryPiece& piece, int64_t head, float* dq, Workspace& w, bool fused) const {
    const int64_t n = piece.row_end - piece.row_begin;
    load_piece(piece, head, w);
    const int64_t lo = w.visible_lo[0], hi = w.visible_hi[size_t(n - 1)];
    const int64_t kv_head = head / group_;
    double slope_sum = 0.0;
    // Blocks are aligned to the end so that a causal diagonal cuts only the last one.
    for (int64_t end = hi; end > lo; end -= kKeyBlock) {
      const int64_t k0 = std::max(lo, end - kKeyBlock), count = end - k0;
      const int64_t row = fused ? piece.slice->k_begin + k0 : 0;  // of the loaded keys
      const size_t first = size_t(row * dim_);
      if (!fused) load_keys_and_values(piece.slice->k_begin + k0, count, kv_head, w);
      slope_sum += gradient_step(piece, head, k0, end, row, w);
      // dQ += dX k: dscores read transposed.
      if (dq) ops_.gemm(n, dim_, count, w.dscores.data(), 1, kTileWidth, &w.keys[first], dim_, dq, dim_, w.ones.data());
      if (fused) add_key_gradients(n, count, first, w);
    }
    return slope_sum;
  }

  // P into w.scores and the gradient of x into w.dscores for the piece's rows against the
  // slice-local keys [k0, k1), whose rows are at `row` of the loaded keys and values; returns
  // the block's part of dslopes.
  float gradient_step(const QueryPiece& piece, int64_t head, int64_t k0, int64_t k1, int64_t row,
                      Workspace& w) const {
    const int64_t n = piece.row_end - piece.row_begin, count = k1 - k0;
    score_and_dp(count, round_up(n, kLanes), row, w);
    const Slice& slice = *piece.slice;
    if (fwd_.attn_bias) load_attn_bias(piece, slice.k_begin + k0, count, head, w);
    GradientBlock block{};
    block.scores = w.scores.data();
    block.dscores = w.dscores.data();
    block.ld = kTileWidth;
    block.keys = count;
    block.queries = n;
    block.attn_bias = fwd_.attn_bias ? w.attn_bias.data() : nullptr;
    block.key_pos = &mask_.k_positions[slice.k_begin + k0];
    block.query_pos = w.query_pos.data();
    block.visible_lo = w.visible_lo.data();
    block.visible_hi = w.visible_hi.data();
    block.first_key = int32_t(k0);
    block.needs_mask = k0 < w.visible_lo[size_t(n - 1)] || k1 > w.visible_hi[0];
    block.slope = fwd_.slopes.at(slice.sequence, int(head));
    block.softcap = fwd_.softcap;
    block.lse = w.lse.data();
    block.row_dot = w.row_dot.data();
    return ops_.gradient_block(block);
  }

  // w.scores = the scaled q.k and w.dscores = dout.v of `count` keys from loaded row `row` against
  // the piece's first `columns` query columns.
  void score_and_dp(int64_t count, int64_t columns, int64_t row, Workspace& w) const {
    if (bf16_dots_) {
      const int64_t lda = 2 * pairs_of(dim_);
      ops_.gemm_bf16_pairs(count, columns, pairs_of(dim_), &w.key_halves[size_t(row * lda)], lda,
                           w.query_pairs.data(), kTileWidth, fwd_.scale, w.scores.data(), kTileWidth);
      ops_.gemm_bf16_pairs(count, columns, pairs_of(dim_), &w.value_halves[size_t(row * lda)], lda,
                           w.dout_pairs.data(), kTileWidth, 1.0f, w.dscores.data(), kTileWidth);
      return;
    }
    ops_.gemm(count, columns, dim_, &w.keys[size_t(row * dim_)], dim_, 1, w.queries_t.data(), kTileWidth,
              w.scores.data(), kTileWidth, nullptr);
    ops_.gemm(count, columns, dim_, &w.values[size_t(row * dim_)], dim_, 1, w.dout_t.data(), kTileWidth,
              w.dscores.data(), kTileWidth, nullptr);
  }

  // The piece's queries (scaled) and dout, row-major, and transposed (or, for the bf16 dot
  // products, in pairs of dims), with each row's lse, Di, position and visible keys; padding
  // columns see nothing.
  void load_piece(const QueryPiece& piece, int64_t head, Workspace& w) const {
    const Slice& slice = *piece.slice;
    const int64_t n = piece.row_end - piece.row_begin;
    for (int64_t c = 0; c < n; ++c) {
      const int64_t r = piece.row_begin + c;
      if (c + kRowsAhead < n)
        for (const TensorView* t : {&fwd_.q, &args_.dout, &fwd_.out}) prefetch_row(*t, r + kRowsAhead, head, dim_, false);
      float* q = &w.queries[size_t(c * dim_)];
      float* dout = &w.dout[size_t(c * dim_)];
      load_row(fwd_.q, offset3(fwd_.q, r, head, 0), q);
      load_row(args_.dout, offset3(args_.dout, r, head, 0), dout);
      load_row(fwd_.out, offset3(fwd_.out, r, head, 0), w.out_row.data());
      if (bf16_dots_) load_pairs(r, c, head, w);
      double row_dot = 0.0;
      for (int64_t d = 0; d < dim_; ++d) {
        q[d] *= fwd_.scale;
        row_dot += double(dout[d]) * w.out_row[size_t(d)];
        if (bf16_dots_) continue;
        w.queries_t[size_t(d * kTileWidth + c)] = q[d];
        w.dout_t[size_t(d * kTileWidth + c)] = dout[d];
      }
      const KeyInterval keys = keys_of_row(slice, r);
      w.row_dot[size_t(c)] = float(row_dot);
      w.lse[size_t(c)] = load_float(*fwd_.lse, offset2(*fwd_.lse, head, r));
      w.query_pos[size_t(c)] = mask_.q_positions[r];
      w.visible_lo[size_t(c)] = int32_t(keys.lo);
      w.visible_hi[size_t(c)] = int32_t(keys.hi);
    }
    for (int64_t c = n; c < round_up(n, kLanes); ++c) {
      w.row_dot[size_t(c)] = 0.0f;
      w.lse[size_t(c)] = kNegInf;
      w.query_pos[size_t(c)] = w.visible_lo[size_t(c)] = w.visible_hi[size_t(c)] = 0;
    }
  }

  // Row r's bf16 query (unscaled) and dout into column c of query_pairs and dout_pairs.
  void load_pairs(int64_t r, int64_t c, int64_t head, Workspace& w) const {
    pack_bf16_pairs(static_cast<const uint16_t*>(fwd_.q.data) + offset3(fwd_.q, r, head, 0), dim_,
                    &w.query_pairs[size_t(c)], kTileWidth);
    pack_bf16_pairs(static_cast<const uint16_t*>(args_.dout.data) + offset3(args_.dout, r, head, 0), dim_,
                    &w.dout_pairs[size_t(c)], kTileWidth);
  }

  void load_attn_bias(const QueryPiece& piece, int64_t first_key, int64_t count, int64_t head,
                      Workspace& w) const {
    w.attn_bias.resize(w.scores.size());
    load_attn_bias_block(*fwd_.attn_bias, head, piece.row_begin, piece.row_end, first_key, count,
                         kTileWidth, w.attn_bias.data());
  }

  // One head_dim row of a float tensor as f32.
  void load_row(const TensorView& t, int64_t offset, float* dst) const {
    if (t.dtype == ALIBI_DTYPE_F32)
      std::memcpy(dst, static_cast<const float*>(t.data) + offset, size_t(dim_) * sizeof(float));
    else
      ops_.widen(t.dtype, static_cast<const uint16_t*>(t.data) + offset, dim_, dst);
  }

  // Keys and values [first, first + count) of a kv head from row 0 of the workspace: keys as f32
  // (dQ's product); for the bf16 dot products keys and values also as bf16 rows (values only
  // so), else values as f32.
  void load_keys_and_values(int64_t first, int64_t count, int64_t kv_head, Workspace& w) const {
    w.keys.resize(std::max(w.keys.size(), size_t(count * dim_)));
    load_rows(fwd_.k, first, count, kv_head, w.keys.data());
    if (!bf16_dots_) {
      w.values.resize(std::max(w.values.size(), size_t(count * dim_)));
      load_rows(fwd_.v, first, count, kv_head, w.values.data());
      return;
    }
    copy_halves(fwd_.k, first, count, kv_head, w.key_halves);
    copy_halves(fwd_.v, first, count, kv_head, w.value_halves);
  }

  // Rows [first, first + count) of a kv head of a bf16 tensor, 2 pairs of dims apart (an odd
  // dim's padding stays zero).
  void copy_halves(const TensorView& t, int64_t first, int64_t count, int64_t kv_head,
                   std::vector<uint16_t>& dst) const {
    const int64_t lda = 2 * pairs_of(dim_);
    dst.resize(std::max(dst.size(), size_t(count * lda)));
    const auto* data = static_cast<const uint16_t*>(t.data);
    for (int64_t i = 0; i < count; ++i)
      std::memcpy(&dst[size_t(i * lda)], data + offset3(t, first + i, kv_head, 0), size_t(dim_) * sizeof(uint16_t));
  }

  // Rows [first, first + count) of a kv head, packed as f32.
  void load_rows(const TensorView& t, int64_t first, int64_t count, int64_t kv_head, float* dst) const {
    for (int64_t i = 0; i < count; ++i) {
      if (i + kRowsAhead < count) prefetch_row(t, first + i + kRowsAhead, kv_head, dim_, false);
      load_row(t, offset3(t, first + i, kv_head, 0), dst + i * dim_);
    }
  }

  // Key `token`'s dK and dV (gradient_a, gradient_b row `local`), prefetching the row kRowsAhead
  // tokens on when `more` rows follow.
  void store_key_gradients(int64_t token, bool more, int64_t kv_head, int64_t local, Workspace& w) const {
    for (const auto& [gradient, acc] : {std::pair{args_.dk, &w.gradient_a}, std::pair{args_.dv, &w.gradient_b}}) {
      if (!gradient) continue;
      if (more) prefetch_row(*gradient, token + kRowsAhead, kv_head, dim_, true);
      store_gradient(*gradient, token, kv_head, &(*acc)[size_t(local * dim_)], 1.0f);
    }
  }

  // A gradient row, rounded once to the gradient's dtype.
  void store_gradient(const TensorView& t, int64_t token, int64_t head, const float* acc, float scale) const {
    store_row(ops_, t, offset3(t, token, head, 0), acc, dim_, scale);
  }

  const BackwardArgs& args_;
  const ForwardArgs& fwd_;
  const MaskView& mask_;
  const TileOps& ops_;
  const int64_t group_, dim_;
  const bool bf16_dots_;  // scores and dP by gemm_bf16_pairs
};

// n objects built in place for head_dim.
std::vector<Workspace> workspaces(int n, int64_t head_dim) {
  std::vector<Workspace> all;
  all.reserve(size_t(n));
  for (int i = 0; i < n; ++i) all.emplace_back(head_dim);
  return all;
}

// For each chunk of kKeyChunk keys, the slices (in mask order) with rows and keys in it.
std::vector<std::vector<int32_t>> slices_by_key_chunk(const MaskView& mask, int64_t chunks) {
  std::vector<std::vector<int32_t>> by_chunk(static_cast<size_t>(chunks));
  for (int64_t s = 0; s < mask.num_slices; ++s) {
    const Slice& slice = mask.slices[s];
    if (slice.q_begin >= slice.q_end || slice.k_begin >= slice.k_end) continue;
    for (int64_t b = slice.k_begin / kKeyChunk; b <= (slice.k_end - 1) / kKeyChunk; ++b)
      by_chunk[size_t(b)].push_back(int32_t(s));
  }
  return by_chunk;
}

void key_pass(const Backward& backward, const MaskView& mask, int64_t kv_heads, std::vector<Workspace>& w,
              const ThreadPool& pool) {
  const int64_t chunks = (mask.total_k + kKeyChunk - 1) / kKeyChunk;
  const std::vector<std::vector<int32_t>> slices = slices_by_key_chunk(mask, chunks);
  pool.parallel_for(kv_heads * chunks, [&](int64_t item, int worker) {
    const int64_t chunk = item % chunks, kb = chunk * kKeyChunk;
    backward.key_chunk(item / chunks, kb, std::min(mask.total_k, kb + kKeyChunk), slices[size_t(chunk)],
                       w[size_t(worker)]);
  });
}

// The number of dslopes rows: sequences with per-sequence slopes, else 1.
int64_t slope_groups(const BackwardArgs& args) {
  return args.forward.slopes.per_sequence ? args.forward.mask->num_sequences : 1;
}

// dslopes from its f32-rounded totals, totals[head * slope_groups + group].
void write_slope_gradient(const BackwardArgs& args, const std::vector<double>& totals, int64_t heads) {
  const TensorView& dslopes = *args.dslopes;
  const int64_t groups = slope_groups(args);
  for (int64_t g = 0; g < groups; ++g)
    for (int64_t h = 0; h < heads; ++h) {
      const int64_t offset = args.forward.slopes.per_sequence ? offset2(dslopes, g, h) : h * dslopes.strides[0];
      store_float(dslopes, offset, float(totals[size_t(h * groups + g)]));
    }
}

// The dslopes totals: each head's span slots summed in plan order.
std::vector<double> slope_totals(const BackwardArgs& args, const std::vector<double>& span_slopes, int64_t heads) {
  const MaskView& mask = *args.forward.mask;
  const int64_t groups = slope_groups(args);
  std::vector<double> totals(size_t(groups * heads), 0.0);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < mask.num_spans; ++i) {
      const int64_t group = args.forward.slopes.per_sequence ? mask.slices[mask.spans[i].slice].sequence : 0;
      totals[size_t(h * groups + group)] += span_slopes[size_t(h * mask.num_spans + i)];
    }
  return totals;
}

}  // namespace

void attention_backward(const BackwardArgs& args, const ThreadPool& pool) {
  const ForwardArgs& fwd = args.forward;
  const MaskView& mask = *fwd.mask;
  if (!args.dq && !args.dk && !args.dv && !args.dslopes) return;
  // The SIMD bias takes |qpos - kpos| as int32.
  const bool int32_distances = mask.position_span <= std::numeric_limits<int32_t>::max();
  const Backward backward(args, int32_distances ? tile_ops() : generic_tile_ops());
  const int64_t heads = fwd.q.shape[1], kv_heads = fwd.k.shape[1];
  std::vector<Workspace> w = workspaces(pool.size(), backward.head_dim());
  std::vector<double> span_slopes(size_t(heads * mask.num_spans), 0.0);
  if (kv_heads >= kFusedMinKvHeads) {
    pool.parallel_for(kv_heads, [&](int64_t kv_head, int worker) {
      backward.kv_head(kv_head, span_slopes.data(), w[size_t(worker)]);
    });
  } else {
    if (args.dk || args.dv) key_pass(backward, mask, kv_heads, w, pool);
    if (args.dq || args.dslopes)
      pool.parallel_for(mask.num_tiles * heads, [&](int64_t item, int worker) {
        const RowTile& tile = mask.tiles[mask.tiles_by_work[item % mask.num_tiles]];
        const int64_t head = item / mask.num_tiles;
        // data() + index: the mask may have no spans (an empty vector has no element to name).
        double* slopes_of_tile = span_slopes.data() + size_t(head * mask.num_spans + tile.first_span);
        backward.query_tile(tile, head, slopes_of_tile, w[size_t(worker)], false);
      });
  }
  if (args.dslopes) write_slope_gradient(args, slope_totals(args, span_slopes, heads), heads);
}

}  // namespace alibi::cpu
