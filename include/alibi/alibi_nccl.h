/*
 * libalibi_nccl: an alibi_comm_t (alibi/alibi_dist.h) over an NCCL communicator, for CUDA
 * contexts. Link with -lalibi_nccl -lalibi, NCCL and the CUDA runtime (pkg-config alibi-nccl;
 * CMake alibi::nccl).
 *
 * Errors: libalibi_nccl is a library of its own and cannot set libalibi's per-thread message, so
 * it keeps one of its own: alibi_nccl_last_error_message() says why the last failed
 * alibi_comm_create_nccl call, or the last failed collective of one of its communicators, failed
 * on this thread.
 */
#ifndef ALIBI_ALIBI_NCCL_H
#define ALIBI_ALIBI_NCCL_H

#include <nccl.h>

#include "alibi/alibi_dist.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the communicator's alltoallv or allgather returns besides 0 (the libalibi call then fails
   with ALIBI_STATUS_COMMUNICATION_ERROR naming the value; alibi_nccl_last_error_message() has the
   detail). A positive value is the ncclResult_t of the NCCL call that failed. */
/** alibi_context_synchronize(cuda_ctx) failed before the collective. */
#define ALIBI_NCCL_CONTEXT_FAILED (-1)
/** A CUDA runtime call failed (cudaStreamSynchronize after the collective). */
#define ALIBI_NCCL_CUDA_FAILED (-2)
/** A count or displacement is negative. */
#define ALIBI_NCCL_NEGATIVE_COUNT (-3)

/**
 * A communicator over `comm`, for data of the CUDA context cuda_ctx, which must be on comm's GPU
 * (ncclCommCuDevice). rank is ncclCommUserRank, size ncclCommCount. comm and cuda_ctx stay the
 * caller's: keep them alive until alibi_comm_destroy, which frees only the adapter's own stream.
 *
 * Streams: libalibi's public API does not show the context's stream, so every collective is
 * synchronous three times over: alibi_context_synchronize(cuda_ctx) first (the buffers are
 * written), then the NCCL calls on a stream of the adapter's own (created on comm's GPU, made
 * non-blocking), then cudaStreamSynchronize of that stream (the data has arrived, as
 * alibi_dist.h asks). alltoallv is one ncclGroupStart/ncclGroupEnd of an ncclSend and an ncclRecv
 * (ncclChar) per peer with a nonzero count; allgather is ncclAllGather (ncclChar). One call at a
 * time per communicator.
 * @return NULL_POINTER when comm, cuda_ctx or out is NULL; INVALID_ARGUMENT when cuda_ctx is not
 *         a CUDA context; COMMUNICATION_ERROR when NCCL or CUDA fails (named in the message);
 *         OUT_OF_MEMORY. *out is NULL unless the call succeeds.
 */
ALIBI_API alibi_status alibi_comm_create_nccl(ncclComm_t comm, alibi_context_t cuda_ctx,
                                              alibi_comm_t* out);

/**
 * @return why the last failed call of this library failed on this thread
 *         (alibi_comm_create_nccl, or a collective of one of its communicators), or "" when the
 *         last such call succeeded. Valid until the next such call on this thread.
 */
ALIBI_API const char* alibi_nccl_last_error_message(void);

#ifdef __cplusplus
}
#endif

#endif /* ALIBI_ALIBI_NCCL_H */
