// PLACEHOLDER (base branch only): replaced by the plan's engineer.
#include "core/dist/dist.h"
#include "core/kernel/status.h"

namespace alibi::dist {
int64_t compute_pad_size(int64_t, int, int) { fail(ALIBI_STATUS_UNSUPPORTED, "placeholder"); }
alibi_dist_plan_s* plan_create(const alibi_mask_s*, int, int) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
void plan_get_chunks(const alibi_dist_plan_s*, int, int32_t*) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
void plan_get_position_ids(const alibi_dist_plan_s*, int, int64_t*) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
void plan_get_workloads(const alibi_dist_plan_s*, int64_t*) {
  fail(ALIBI_STATUS_UNSUPPORTED, "placeholder");
}
}  // namespace alibi::dist
