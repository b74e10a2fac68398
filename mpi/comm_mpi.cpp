// libalibi_mpi: alibi_comm_ops over a duplicate of an MPI communicator (include/alibi/alibi_mpi.h).
// It uses libalibi's public API only.
#include <climits>
#include <cstdio>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "alibi/alibi_mpi.h"
#include "core/dist/adapter_message.h"

namespace {

using alibi::adapter::last_error;
using alibi::adapter::record;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "unknown MPI error";
  return std::string(text, size_t(length));
}

// Records a failed MPI call and passes its code on.
int mpi_failed(const char* where, const char* call, int code) {
  record(where, "%s returned %d (%s)", call, code, mpi_error_text(code).c_str());
  return code;
}

bool mpi_finalized() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  return finalized != 0;
}

// What `user` points to: the duplicate, freed with it. The int arrays are the collectives' MPI
// arguments, sized at creation so that a collective allocates nothing.
struct MpiComm {
  MPI_Comm comm = MPI_COMM_NULL;
  int size = 0;
  std::vector<int> send_counts, send_displs, recv_counts, recv_displs;

  MpiComm() = default;
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;
  // After MPI_Finalize the duplicate is gone with the rest of MPI and may not be freed.
  ~MpiComm() {
    if (comm != MPI_COMM_NULL && !mpi_finalized()) MPI_Comm_free(&comm);
  }
};

// Copies to.size() int64 values into `to`; false (recorded) when one is negative or above INT_MAX.
bool to_int(const char* name, const int64_t* from, std::vector<int>& to) {
  for (size_t r = 0; r < to.size(); ++r) {
    if (from[r] < 0 || from[r] > INT_MAX) {
      record("alltoallv", "%s[%zu] = %lld is outside [0, INT_MAX = %d]", name, r,
             static_cast<long long>(from[r]), INT_MAX);
      return false;
    }
    to[r] = int(from[r]);
  }
  return true;
}

int mpi_alltoallv(void* user, const void* send, const int64_t* send_counts,
                  const int64_t* send_displs, void* recv, const int64_t* recv_counts,
                  const int64_t* recv_displs) {
  last_error.clear();
  MpiComm& c = *static_cast<MpiComm*>(user);
  if (!to_int("send_counts", send_counts, c.send_counts) ||
      !to_int("send_displs", send_displs, c.send_displs) ||
      !to_int("recv_counts", recv_counts, c.recv_counts) ||
      !to_int("recv_displs", recv_displs, c.recv_displs))
    return ALIBI_MPI_COUNT_OUT_OF_RANGE;
  const int code = MPI_Alltoallv(send, c.send_counts.data(), c.send_displs.data(), MPI_BYTE, recv,
                                 c.recv_counts.data(), c.recv_displs.data(), MPI_BYTE, c.comm);
  return code == MPI_SUCCESS ? 0 : mpi_failed("alltoallv", "MPI_Alltoallv", code);
}

int mpi_allgather(void* user, const void* send, void* recv, int64_t bytes_per_rank) {
  last_error.clear();
  const MpiComm& c = *static_cast<const MpiComm*>(user);
  if (bytes_per_rank < 0 || bytes_per_rank > INT_MAX) {
    record("allgather", "bytes_per_rank = %lld is outside [0, INT_MAX = %d]",
           static_cast<long long>(bytes_per_rank), INT_MAX);
    return ALIBI_MPI_COUNT_OUT_OF_RANGE;
  }
  const int count = int(bytes_per_rank);
  const int code = MPI_Allgather(send, count, MPI_BYTE, recv, count, MPI_BYTE, c.comm);
  return code == MPI_SUCCESS ? 0 : mpi_failed("allgather", "MPI_Allgather", code);
}

void mpi_release(void* user) { delete static_cast<MpiComm*>(user); }

constexpr const char* kCreate = "alibi_comm_create_mpi";

// Why `comm` cannot be used (status; message recorded), or ALIBI_STATUS_SUCCESS.
alibi_status check_comm(MPI_Comm comm) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    record(kCreate, "MPI is not initialized (MPI_Initialized gives 0): call MPI_Init first");
    return ALIBI_STATUS_INVALID_ARGUMENT;
  }
  if (mpi_finalized()) {
    record(kCreate, "MPI is finalized (MPI_Finalized gives 1)");
    return ALIBI_STATUS_INVALID_ARGUMENT;
  }
  if (comm == MPI_COMM_NULL) {
    record(kCreate, "comm = MPI_COMM_NULL");
    return ALIBI_STATUS_INVALID_ARGUMENT;
  }
  int inter = 0;
  if (const int code = MPI_Comm_test_inter(comm, &inter); code != MPI_SUCCESS) {
    mpi_failed(kCreate, "MPI_Comm_test_inter(comm)", code);
    return ALIBI_STATUS_COMMUNICATION_ERROR;
  }
  if (inter) {
    record(kCreate, "comm is an intercommunicator (MPI_Comm_test_inter gives 1)");
    return ALIBI_STATUS_INVALID_ARGUMENT;
  }
  return ALIBI_STATUS_SUCCESS;
}

// False (recorded) when an MPI call of alibi_comm_create_mpi failed.
bool succeeded(int code, const char* call) {
  if (code == MPI_SUCCESS) return true;
  mpi_failed(kCreate, call, code);
  return false;
}

// Duplicates comm into *made, with its rank, size and argument arrays.
alibi_status duplicate(MPI_Comm comm, MpiComm* made, int* rank) {
  if (!succeeded(MPI_Comm_dup(comm, &made->comm), "MPI_Comm_dup(comm)")) {
    made->comm = MPI_COMM_NULL;
    return ALIBI_STATUS_COMMUNICATION_ERROR;
  }
  if (!succeeded(MPI_Comm_set_errhandler(made->comm, MPI_ERRORS_RETURN),
                 "MPI_Comm_set_errhandler(MPI_ERRORS_RETURN)") ||
      !succeeded(MPI_Comm_rank(made->comm, rank), "MPI_Comm_rank") ||
      !succeeded(MPI_Comm_size(made->comm, &made->size), "MPI_Comm_size"))
    return ALIBI_STATUS_COMMUNICATION_ERROR;
  for (auto* v : {&made->send_counts, &made->send_displs, &made->recv_counts, &made->recv_displs})
    v->resize(size_t(made->size));
  return ALIBI_STATUS_SUCCESS;
}

// alibi_comm_create over made, which the communicator then owns.
alibi_status create(std::unique_ptr<MpiComm> made, int rank, alibi_comm_t* out) {
  alibi_comm_ops ops{};
  ops.struct_size = sizeof ops;
  ops.alltoallv = mpi_alltoallv;
  ops.allgather = mpi_allgather;
  ops.release = mpi_release;
  const alibi_status status = alibi_comm_create(&ops, made.get(), rank, made->size, out);
  if (status != ALIBI_STATUS_SUCCESS) {
    record(kCreate, "%s", alibi_last_error_message());
    return status;
  }
  made.release();
  return status;
}

}  // namespace

extern "C" alibi_status alibi_comm_create_mpi(MPI_Comm comm, alibi_comm_t* out) {
  last_error.clear();
  if (!out) {
    record(kCreate, "out is NULL");
    return ALIBI_STATUS_NULL_POINTER;
  }
  *out = nullptr;
  if (const alibi_status status = check_comm(comm); status != ALIBI_STATUS_SUCCESS) return status;
  try {
    auto made = std::make_unique<MpiComm>();
    int rank = 0;
    const alibi_status status = duplicate(comm, made.get(), &rank);
    if (status != ALIBI_STATUS_SUCCESS) return status;
    return create(std::move(made), rank, out);
  } catch (const std::bad_alloc&) {
    record(kCreate, "cannot allocate the communicator's state");
    return ALIBI_STATUS_OUT_OF_MEMORY;
  }
}

extern "C" const char* alibi_mpi_last_error_message(void) { return last_error.c_str(); }
