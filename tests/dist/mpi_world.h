// This process's rank in MPI_COMM_WORLD and its size, for the MPI test programs.
#pragma once

#include <mpi.h>

namespace test {

inline int world_rank() {
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  return rank;
}

inline int world_size() {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  return size;
}

}  // namespace test
