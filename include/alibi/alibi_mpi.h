/*
 * libalibi_mpi: an alibi_comm_t (alibi/alibi_dist.h) over an MPI communicator, for CPU contexts.
 * Link with -lalibi_mpi -lalibi and the MPI library (pkg-config alibi-mpi; CMake alibi::mpi).
 *
 * Errors: libalibi_mpi is a library of its own and cannot set libalibi's per-thread message, so
 * it keeps one of its own: alibi_mpi_last_error_message() says why the last failed
 * alibi_comm_create_mpi call, or the last failed collective of one of its communicators, failed
 * on this thread ("alibi_comm_create_mpi: comm = MPI_COMM_NULL ...").
 */
#ifndef ALIBI_ALIBI_MPI_H
#define ALIBI_ALIBI_MPI_H

#include <mpi.h>

#include "alibi/alibi_dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * What the communicator's alltoallv or allgather returns when a count or a displacement is
 * negative or above INT_MAX (MPI's counts are int): the bytes are not sent, and the libalibi
 * call fails with ALIBI_STATUS_COMMUNICATION_ERROR ("returned -1"). Every rank that sees such a
 * value returns it without entering MPI; an allgather's bytes_per_rank is the same on every rank,
 * so all of them fail together, but in an alltoallv a rank whose own counts all fit enters
 * MPI_Alltoallv and waits there: on ALIBI_STATUS_COMMUNICATION_ERROR, call MPI_Abort.
 * Any other nonzero value is the MPI error code of the collective (MPI_Error_string).
 */
#define ALIBI_MPI_COUNT_OUT_OF_RANGE (-1)

/**
 * A communicator over `comm` (an intracommunicator; rank and size are comm's). It works on a
 * duplicate of comm (MPI_Comm_dup, collective over comm), so its messages never match the
 * application's; the duplicate returns MPI errors instead of aborting (MPI_ERRORS_RETURN), and
 * alibi_comm_destroy frees it (MPI_Comm_free): destroy the alibi_comm_t before MPI_Finalize.
 * Collectives run MPI_Alltoallv / MPI_Allgather over MPI_BYTE on host memory, one call at a time
 * per communicator (as MPI requires of collectives on one communicator).
 * @return INVALID_ARGUMENT when MPI is not initialized or already finalized, when comm is
 *         MPI_COMM_NULL or an intercommunicator; NULL_POINTER when out is NULL;
 *         COMMUNICATION_ERROR when MPI fails (the MPI error in the message); OUT_OF_MEMORY.
 *         *out is NULL unless the call succeeds.
 */
ALIBI_API alibi_status alibi_comm_create_mpi(MPI_Comm comm, alibi_comm_t* out);

/**
 * @return why the last failed call of this library failed on this thread (alibi_comm_create_mpi,
 *         or a collective of one of its communicators: then the libalibi call that ran it fails
 *         with COMMUNICATION_ERROR), or "" when the last such call succeeded. Valid until the
 *         next such call on this thread.
 */
ALIBI_API const char* alibi_mpi_last_error_message(void);

#ifdef __cplusplus
}
#endif

#endif /* ALIBI_ALIBI_MPI_H */
