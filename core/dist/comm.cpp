#include <cstring>

#include "core/dist/dist.h"
#include "core/kernel/status.h"

namespace alibi::dist {

namespace {

// The table as this library knows it: the caller's struct_size bytes, the rest null.
alibi_comm_ops known_fields(const alibi_comm_ops& ops) {
  constexpr size_t first_version = offsetof(alibi_comm_ops, release) + sizeof ops.release;
  if (ops.struct_size < first_version || ops.struct_size > sizeof(alibi_comm_ops))
    fail(ALIBI_STATUS_INVALID_ARGUMENT,
         "ops->struct_size = %zu is not a size of alibi_comm_ops (%zu in this library)",
         ops.struct_size, sizeof(alibi_comm_ops));
  alibi_comm_ops known{};
  std::memcpy(&known, &ops, ops.struct_size);
  return known;
}

void check_result(int result, const char* collective) {
  if (result != 0)
    fail(ALIBI_STATUS_COMMUNICATION_ERROR, "the communicator's %s returned %d", collective,
         result);
}

}  // namespace

alibi_comm_s* comm_create(const alibi_comm_ops* ops, void* user, int rank, int size) {
  if (!ops) fail(ALIBI_STATUS_NULL_POINTER, "ops is NULL");
  const alibi_comm_ops known = known_fields(*ops);
  if (!known.alltoallv) fail(ALIBI_STATUS_NULL_POINTER, "ops->alltoallv is NULL");
  if (!known.allgather) fail(ALIBI_STATUS_NULL_POINTER, "ops->allgather is NULL");
  if (size < 1) fail(ALIBI_STATUS_INVALID_ARGUMENT, "size = %d is below 1", size);
  if (rank < 0 || rank >= size)
    fail(ALIBI_STATUS_INVALID_ARGUMENT, "rank = %d is outside [0, size = %d)", rank, size);
  return new alibi_comm_s{known, user, rank, size};
}

void comm_destroy(alibi_comm_s* comm) {
  if (!comm) return;
  if (comm->ops.release) comm->ops.release(comm->user);
  delete comm;
}

void alltoallv(const alibi_comm_s& comm, const void* send, const int64_t* send_counts,
               const int64_t* send_displs, void* recv, const int64_t* recv_counts,
               const int64_t* recv_displs) {
  check_result(comm.ops.alltoallv(comm.user, send, send_counts, send_displs, recv, recv_counts,
                                  recv_displs),
               "alltoallv");
}

void allgather(const alibi_comm_s& comm, const void* send, void* recv, int64_t bytes_per_rank) {
  check_result(comm.ops.allgather(comm.user, send, recv, bytes_per_rank), "allgather");
}

}  // namespace alibi::dist
