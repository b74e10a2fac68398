// The operations behind alibi_dist.h, and what its handles hold. Each validates every argument
// before any work and throws alibi::Error (function name excluded: the C shim adds it).
#pragma once

#include <cstdint>

#include "alibi/alibi_dist.h"
#include "core/abi/objects.h"
#include "core/dist/plan.h"

struct alibi_comm_s {
  alibi_comm_ops ops;  // the caller's table; fields past its struct_size are null
  void* user;
  int rank;
  int size;
};

struct alibi_dist_plan_s {
  alibi::dist::Plan plan;
};

namespace alibi::dist {

// Communicators (comm.cpp)
alibi_comm_s* comm_create(const alibi_comm_ops* ops, void* user, int rank, int size);
void comm_destroy(alibi_comm_s* comm);
// The engine's collectives; a nonzero return throws ALIBI_STATUS_COMMUNICATION_ERROR naming the
// collective and the value. Counts and displacements in bytes, comm.size entries each.
void alltoallv(const alibi_comm_s& comm, const void* send, const int64_t* send_counts,
               const int64_t* send_displs, void* recv, const int64_t* recv_counts,
               const int64_t* recv_displs);
void allgather(const alibi_comm_s& comm, const void* send, void* recv, int64_t bytes_per_rank);

// Plans (plan_api.cpp)
int64_t compute_pad_size(int64_t total, int cp_size, int chunk_size);
alibi_dist_plan_s* plan_create(const alibi_mask_s* mask, int cp_size, int chunk_size);
void plan_get_chunks(const alibi_dist_plan_s* plan, int rank, int32_t* chunk_ids);
void plan_get_position_ids(const alibi_dist_plan_s* plan, int rank, int64_t* out);
void plan_get_workloads(const alibi_dist_plan_s* plan, int64_t* out);

// Dispatch and attention (dispatch.cpp, attention.cpp)
void dispatch(alibi_context_s* ctx, const alibi_dist_plan_s* plan, int rank,
              alibi_tensor_s* global_x, alibi_tensor_s* local_x);
void undispatch(alibi_context_s* ctx, const alibi_comm_s* comm, const alibi_dist_plan_s* plan,
                alibi_tensor_s* local_x, alibi_tensor_s* global_x);
void attention_forward(alibi_context_s* ctx, const alibi_comm_s* comm,
                       const alibi_dist_plan_s* plan, alibi_tensor_s* q, alibi_tensor_s* k,
                       alibi_tensor_s* v, const alibi_attention_params* params,
                       alibi_tensor_s* out, alibi_tensor_s* lse);
void attention_backward(alibi_context_s* ctx, const alibi_comm_s* comm,
                        const alibi_dist_plan_s* plan, alibi_tensor_s* q, alibi_tensor_s* k,
                        alibi_tensor_s* v, const alibi_attention_params* params,
                        alibi_tensor_s* out, alibi_tensor_s* lse, alibi_tensor_s* dout,
                        alibi_tensor_s* dq, alibi_tensor_s* dk, alibi_tensor_s* dv,
                        alibi_tensor_s* dslopes);

}  // namespace alibi::dist
