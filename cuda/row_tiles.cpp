#include "cuda/row_tiles.h"

#include <algorithm>
#include <set>

namespace alibi::cuda {

namespace {

struct Edge {
  int32_t row;
  bool opens;
  int32_t slice;
};

// Where slices start and stop covering rows, sorted by row.
std::vector<Edge> slice_edges(const MaskPlan& plan) {
  std::vector<Edge> edges;
  for (size_t s = 0; s < plan.slices.size(); ++s) {
    const Slice& slice = plan.slices[s];
    if (slice.q_begin == slice.q_end || slice.k_begin == slice.k_end) continue;
    edges.push_back({slice.q_begin, true, int32_t(s)});
    edges.push_back({slice.q_end, false, int32_t(s)});
  }
  std::sort(edges.begin(), edges.end(), [](const Edge& a, const Edge& b) { return a.row < b.row; });
  return edges;
}

void add_tiles(RowTiling& tiling, int32_t begin, int32_t end, const std::set<int32_t>& slices,
               int32_t max_rows) {
  for (int32_t row = begin; row < end; row += std::min(max_rows, end - row)) {
    tiling.tiles.push_back({row, row + std::min(max_rows, end - row),
                            int32_t(tiling.slice_list.size()), int32_t(slices.size())});
    tiling.slice_list.insert(tiling.slice_list.end(), slices.begin(), slices.end());
  }
}

}  // namespace

RowTiling tile_rows(const MaskPlan& plan, int32_t max_rows) {
  RowTiling tiling;
  const std::vector<Edge> edges = slice_edges(plan);
  std::set<int32_t> active;
  int32_t row = 0;
  for (size_t e = 0; e <= edges.size(); ++e) {
    const int32_t next = e < edges.size() ? edges[e].row : int32_t(plan.total_q);
    if (next > row) {
      add_tiles(tiling, row, next, active, max_rows);
      row = next;
    }
    if (e == edges.size()) break;
    if (edges[e].opens)
      active.insert(edges[e].slice);
    else
      active.erase(edges[e].slice);
  }
  return tiling;
}

}  // namespace alibi::cuda
