/*
 * An out-of-tree consumer of an installed libalibi_mpi (used by packaging.install_adapters),
 * built through pkg-config alibi-mpi and through find_package(alibi COMPONENTS mpi): a
 * communicator over MPI_COMM_WORLD has MPI's rank and size, and MPI_COMM_NULL is refused.
 */
#include <alibi/alibi_mpi.h>

#include <stdio.h>

int main(int argc, char** argv) {
  alibi_comm_t comm = NULL, refused = NULL;
  int rank = -1, size = -1, alibi_rank = -2, alibi_size = -2, ok;
  alibi_status status;

  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  status = alibi_comm_create_mpi(MPI_COMM_WORLD, &comm);
  if (status != ALIBI_STATUS_SUCCESS)
    fprintf(stderr, "mpi_consumer: %s\n", alibi_mpi_last_error_message());
  ok = status == ALIBI_STATUS_SUCCESS &&
       alibi_comm_get_rank(comm, &alibi_rank) == ALIBI_STATUS_SUCCESS &&
       alibi_comm_get_size(comm, &alibi_size) == ALIBI_STATUS_SUCCESS && alibi_rank == rank &&
       alibi_size == size;
  ok = ok && alibi_comm_create_mpi(MPI_COMM_NULL, &refused) == ALIBI_STATUS_INVALID_ARGUMENT &&
       refused == NULL;
  alibi_comm_destroy(comm);
  MPI_Finalize();
  printf("mpi_consumer: libalibi %s, rank %d of %d (alibi: %d of %d): %s\n",
         alibi_version_string(), rank, size, alibi_rank, alibi_size, ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
