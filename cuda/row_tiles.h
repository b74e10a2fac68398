// Query rows cut into tiles whose rows all share the same set of slices, so a kernel visits
// exactly the slices (and, per slice, the key interval) its rows see.
#pragma once

#include <cstdint>
#include <vector>

#include "core/kernel/mask_plan.h"

namespace alibi::cuda {

// Rows [row_begin, row_end) see slices slice_list[slice_begin, slice_begin + slice_count).
struct RowTile {
  int32_t row_begin, row_end;
  int32_t slice_begin, slice_count;
};

struct RowTiling {
  std::vector<RowTile> tiles;       // cover [0, total_q) in order, none longer than max_rows
  std::vector<int32_t> slice_list;  // slice indices, in mask order within a tile
};

// Slices with an empty query or key range are left out: they see nothing. Rows no slice covers
// get tiles without slices (their output is 0, their lse -inf).
RowTiling tile_rows(const MaskPlan& plan, int32_t max_rows);

}  // namespace alibi::cuda
