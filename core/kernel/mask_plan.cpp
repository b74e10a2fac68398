#include "core/kernel/mask_plan.h"

#include <algorithm>
#include <numeric>

#include "core/kernel/formulas.h"

namespace alibi {

namespace {

bool sees_keys(const Slice& slice) {
  return slice.q_begin < slice.q_end && slice.k_begin < slice.k_end;
}

// Tiles of at most tile_rows rows, from row 0 and, when tiles share slices, from every edge of
// a slice that sees keys.
std::vector<RowTile> cut_tiles(const MaskPlan& plan, const PlanShape& shape) {
  std::vector<int64_t> edges{0, plan.total_q};
  if (shape.tiles_share_slices)
    for (const Slice& slice : plan.slices)
      if (sees_keys(slice)) edges.insert(edges.end(), {slice.q_begin, slice.q_end});
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  std::vector<RowTile> tiles;
  for (size_t e = 0; e + 1 < edges.size(); ++e)
    for (int64_t row = edges[e]; row < edges[e + 1]; row += shape.tile_rows)
      tiles.push_back({int32_t(row), int32_t(std::min(row + shape.tile_rows, edges[e + 1])), 0, 0, 0, 0});
  return tiles;
}

// Calls fn(tile, rows of the slice in it) for every tile a slice's rows fall in.
template <class Fn>
void for_each_tile_of(const std::vector<RowTile>& tiles, const Slice& slice, Fn&& fn) {
  auto first = std::partition_point(tiles.begin(), tiles.end(),
                                    [&](const RowTile& t) { return t.row_end <= slice.q_begin; });
  for (auto tile = first; tile != tiles.end() && tile->row_begin < slice.q_end; ++tile)
    fn(size_t(tile - tiles.begin()), std::max(tile->row_begin, slice.q_begin),
       std::min(tile->row_end, slice.q_end));
}

// Spans grouped by tile, in mask order within a tile, with each tile's work.
void plan_spans(MaskPlan& plan) {
  for (const Slice& slice : plan.slices)
    if (sees_keys(slice))
      for_each_tile_of(plan.tiles, slice, [&](size_t tile, int32_t, int32_t) { ++plan.tiles[tile].num_spans; });
  int64_t next = 0;
  for (RowTile& tile : plan.tiles) {
    tile.first_span = next;
    next += tile.num_spans;
    tile.num_spans = 0;
  }
  plan.spans.assign(size_t(next), SliceRows{});
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    if (!sees_keys(slice)) continue;
    for_each_tile_of(plan.tiles, slice, [&](size_t t, int32_t row_begin, int32_t row_end) {
      RowTile& tile = plan.tiles[t];
      const int64_t lo = keys_of_row(slice, row_begin).lo;
      const int64_t hi = std::max(lo, keys_of_row(slice, row_end - 1).hi);
      plan.spans[size_t(tile.first_span + tile.num_spans++)] =
          {int32_t(s), row_begin, row_end, int32_t(lo), int32_t(hi)};
      tile.cells += int64_t(row_end - row_begin) * (hi - lo);
      tile.widest = std::max(tile.widest, hi - lo);
    });
  }
}

std::vector<int32_t> order_by_work(const std::vector<RowTile>& tiles) {
  std::vector<int32_t> order(tiles.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return tiles[size_t(a)].cells > tiles[size_t(b)].cells;
  });
  return order;
}

std::vector<RowRange> uncovered_rows(const MaskPlan& plan) {
  std::vector<RowRange> covered;
  for (const SliceRows& span : plan.spans) covered.push_back({span.row_begin, span.row_end});
  std::sort(covered.begin(), covered.end(),
            [](const RowRange& a, const RowRange& b) { return a.begin < b.begin; });
  std::vector<RowRange> gaps;
  int32_t row = 0;
  for (const RowRange& range : covered) {
    if (range.begin > row) gaps.push_back({row, range.begin});
    row = std::max(row, range.end);
  }
  if (row < plan.total_q) gaps.push_back({row, int32_t(plan.total_q)});
  return gaps;
}

// Each slice's visible keys (the union over its rows) cut into chunks of equal size.
void plan_key_chunks(MaskPlan& plan, const PlanShape& shape) {
  if (shape.min_chunk_keys == 0) return;
  std::vector<KeyInterval> keys(plan.slices.size(), KeyInterval{0, 0});
  int64_t total_keys = 0;
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    if (!sees_keys(slice)) continue;
    keys[s] = {keys_of_row(slice, slice.q_begin).lo, keys_of_row(slice, slice.q_end - 1).hi};
    total_keys += std::max<int64_t>(0, keys[s].hi - keys[s].lo);
  }
  const int64_t chunk = std::max<int64_t>(
      shape.min_chunk_keys, (total_keys + shape.target_chunks - 1) / shape.target_chunks);
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    plan.first_chunk.push_back(int64_t(plan.chunks.size()));
    for (int64_t k = keys[s].lo; k < keys[s].hi; k += chunk)
      plan.chunks.push_back({int32_t(s), int32_t(k), int32_t(std::min(keys[s].hi, k + chunk))});
  }
  plan.first_chunk.push_back(int64_t(plan.chunks.size()));
}

bool share_rows(const std::vector<Slice>& slices) {
  std::vector<const Slice*> with_rows;
  for (const Slice& slice : slices)
    if (slice.q_begin < slice.q_end) with_rows.push_back(&slice);
  std::sort(with_rows.begin(), with_rows.end(),
            [](const Slice* a, const Slice* b) { return a->q_begin < b->q_begin; });
  for (size_t i = 1; i < with_rows.size(); ++i)
    if (with_rows[i]->q_begin < with_rows[i - 1]->q_end) return true;
  return false;
}

}  // namespace

void plan_rows_and_keys(MaskPlan& plan, const PlanShape& shape) {
  plan.tiles = cut_tiles(plan, shape);
  plan_spans(plan);
  plan.tiles_by_work = order_by_work(plan.tiles);
  plan.uncovered = uncovered_rows(plan);
  plan_key_chunks(plan, shape);
  plan.max_slice_rows = 0;
  for (const Slice& slice : plan.slices)
    plan.max_slice_rows = std::max(plan.max_slice_rows, slice.q_end - slice.q_begin);
  plan.slices_share_rows = share_rows(plan.slices);
}

void plan_positions(MaskPlan& plan) {
  int64_t lo = 0, hi = 0;
  for (const auto* positions : {&plan.q_positions, &plan.k_positions}) {
    if (positions->empty()) continue;
    const auto [min, max] = std::minmax_element(positions->begin(), positions->end());
    lo = std::min<int64_t>(lo, *min);
    hi = std::max<int64_t>(hi, *max);
  }
  plan.position_span = hi - lo;
}

MaskView MaskPlan::view() const {
  MaskView v{};
  v.total_q = total_q;
  v.total_k = total_k;
  v.from_sequences = from_sequences;
  v.num_sequences = num_sequences;
  v.slices = slices.data();
  v.num_slices = int64_t(slices.size());
  v.q_positions = q_positions.data();
  v.k_positions = k_positions.data();
  v.position_span = position_span;
  v.tiles = tiles.data();
  v.num_tiles = int64_t(tiles.size());
  v.spans = spans.data();
  v.num_spans = int64_t(spans.size());
  v.tiles_by_work = tiles_by_work.data();
  v.uncovered = uncovered.data();
  v.num_uncovered = int64_t(uncovered.size());
  v.chunks = chunks.data();
  v.first_chunk = first_chunk.data();
  v.max_slice_rows = max_slice_rows;
  v.slices_share_rows = slices_share_rows;
  return v;
}

}  // namespace alibi
