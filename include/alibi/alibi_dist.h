/*
 * libalibi context parallelism: one packed token stream split across ranks (MagiAttention's
 * dispatch API, with ALiBi). The stream is cut into chunks of chunk_size tokens, the chunks are
 * dealt to cp_size ranks so that every rank gets about the same number of visible cells, and
 * attention runs where the queries live: each rank fetches only the remote key/value tokens its
 * queries see. ALiBi positions stay global, so after undispatch the results equal the
 * single-process calls (within f32 rounding: the sums run in another order).
 *
 * libalibi itself links no communication library. It talks through a communicator made from an
 * alibi_comm_ops table, which an existing engine supplies: alibi/alibi_mpi.h (libalibi_mpi, over
 * MPI, for CPU contexts) and alibi/alibi_nccl.h (libalibi_nccl, over NCCL, for CUDA contexts)
 * make one from the engine's own communicator; a program may also fill the table itself.
 *
 * Collective calls: every rank of the communicator makes the same calls with the same plan (and
 * equal arguments but for its local tensors), in the same order, as with MPI collectives. A call
 * that fails validation on one rank fails on every rank that got the same arguments; ranks that
 * disagree (another plan, other local shapes) are a caller's error that the library reports
 * where it can (INVALID_ARGUMENT / SHAPE_MISMATCH naming the value) and otherwise leaves to the
 * engine (which may hang, as MPI does).
 *
 * Staging: dispatch, undispatch and the attention calls pack token rows, and sum the partial
 * gradients, in host memory; the buffers handed to the collectives are the context's device
 * memory. On a CUDA context every such step is a copy to the host and back: correct, not fast.
 */
#ifndef ALIBI_ALIBI_DIST_H
#define ALIBI_ALIBI_DIST_H

#include "alibi/alibi.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct alibi_comm_s* alibi_comm_t;
typedef struct alibi_dist_plan_s* alibi_dist_plan_t;

/**
 * The collectives libalibi needs. Buffers are memory of the context's device (host memory for a
 * CPU context, device memory for a CUDA context); counts and displacements are in bytes, one per
 * rank. Every function returns 0 on success; anything else fails the libalibi call with
 * ALIBI_STATUS_COMMUNICATION_ERROR (the value in the message). Each is called by every rank of
 * the communicator together, and returns when the data has arrived (synchronous). Every argument
 * is checked before the first collective, so a bad argument writes nothing; a collective that
 * fails midway may leave the call's outputs on this rank partly written.
 *
 * Growth: struct_size is the caller's sizeof(alibi_comm_ops); fields are only appended. A table
 * whose struct_size is below this first version's or above the library's gives
 * INVALID_ARGUMENT.
 */
typedef struct alibi_comm_ops {
  size_t struct_size;
  /** Rank r sends send_counts[r] bytes from send + send_displs[r] to rank r, and receives
      recv_counts[r] bytes from rank r at recv + recv_displs[r] (MPI_Alltoallv). */
  int (*alltoallv)(void* user, const void* send, const int64_t* send_counts,
                   const int64_t* send_displs, void* recv, const int64_t* recv_counts,
                   const int64_t* recv_displs);
  /** Every rank's bytes_per_rank bytes at send, gathered in rank order into recv on every rank
      (MPI_Allgather). */
  int (*allgather)(void* user, const void* send, void* recv, int64_t bytes_per_rank);
  /** Optional (NULL: nothing): called once by alibi_comm_destroy with `user`, for an adapter
      that owns what `user` points to. */
  void (*release)(void* user);
} alibi_comm_ops;

/**
 * A communicator over an engine's collectives. The table is copied; `user` is passed to every
 * call (and to release). rank is this process's rank, 0 <= rank < size, size >= 1; the same
 * rank and size as the engine's communicator.
 */
ALIBI_API alibi_status alibi_comm_create(const alibi_comm_ops* ops, void* user, int rank,
                                         int size, alibi_comm_t* out);
ALIBI_API alibi_status alibi_comm_get_rank(alibi_comm_t comm, int* out);
ALIBI_API alibi_status alibi_comm_get_size(alibi_comm_t comm, int* out);
/** Calls ops->release(user) when given. NULL is a no-op. */
ALIBI_API void alibi_comm_destroy(alibi_comm_t comm);

/**
 * MagiAttention's compute_pad_size: with B = chunk_size * cp_size, 0 if total_seqlen % B == 0,
 * else B - total_seqlen % B. total_seqlen >= 0, cp_size 1..65536, chunk_size >= 1.
 */
ALIBI_API alibi_status alibi_dist_compute_pad_size(int64_t total_seqlen, int cp_size,
                                                   int chunk_size, int64_t* out);

/**
 * The plan of a self-attention mask (total_q == total_k = T, else SHAPE_MISMATCH) over cp_size
 * ranks: pure arithmetic, no communication, the same on every rank. The stream is padded to
 * T + pad tokens (alibi_dist_compute_pad_size); padding tokens see no key and are seen by none.
 * Chunk c is tokens [c * chunk_size, (c + 1) * chunk_size); its workload is the number of visible
 * cells of its rows (closed forms per slice type, never a dense count). Chunks are dealt by
 * MagiAttention's MinHeap: chunk ids sorted by workload ascending (stable), then reversed; each
 * goes to the least-loaded rank (ties: the lower rank) among those holding fewer than
 * num_chunks / cp_size chunks; each rank's chunk ids are then sorted ascending. A rank's local
 * tokens are its chunks' tokens in that order.
 * The plan keeps a copy of the mask's slices and positions (as they are now): the mask may be
 * destroyed or given new positions afterwards without changing the plan. Any mask kind (varlen,
 * ranges with any slice types and shared rows, sliding window, explicit positions).
 * Tokens are int32 throughout the library, so the padded stream must be too: T + pad <=
 * INT32_MAX, else INVALID_ARGUMENT (naming chunk_size and cp_size).
 * @param cp_size 1..65536.  @param chunk_size >= 1.
 */
ALIBI_API alibi_status alibi_dist_plan_create(alibi_mask_t mask, int cp_size, int chunk_size,
                                              alibi_dist_plan_t* out);
/** The tokens of every rank: (num_chunks / cp_size) * chunk_size. */
ALIBI_API alibi_status alibi_dist_plan_get_num_local_tokens(alibi_dist_plan_t plan, int64_t* out);
/** cp_size, chunk_size and the padded stream's length (T + pad) of the plan. */
ALIBI_API alibi_status alibi_dist_plan_get_info(alibi_dist_plan_t plan, int* cp_size,
                                                int* chunk_size, int64_t* padded_total);
/** The chunk ids of `rank`, ascending: num_local_tokens / chunk_size int32. */
ALIBI_API alibi_status alibi_dist_plan_get_chunks(alibi_dist_plan_t plan, int rank,
                                                  int32_t* chunk_ids);
/**
 * MagiAttention's get_position_ids for `rank`: the global token index of each local token,
 * clamped to max_valid - 1, where max_valid is the largest q-range end among the slices with
 * non-empty q and k ranges (0 when there is none: every id is then -1, as MagiAttention's clamp
 * gives). num_local_tokens int64. These are indices into the stream, not ALiBi positions (the
 * plan uses the mask's positions).
 */
ALIBI_API alibi_status alibi_dist_plan_get_position_ids(alibi_dist_plan_t plan, int rank,
                                                        int64_t* out);
/** The workload (visible cells) of each rank: cp_size int64. */
ALIBI_API alibi_status alibi_dist_plan_get_workloads(alibi_dist_plan_t plan, int64_t* out);
/** NULL is a no-op. */
ALIBI_API void alibi_dist_plan_destroy(alibi_dist_plan_t plan);

/**
 * Copies this rank's chunks of global_x ((T, ...) any dtype, any trailing dims, any strides) into
 * local_x ((num_local_tokens, ...), same dtype and trailing dims); padding tokens get zeros. No
 * communication. 0 <= rank < cp_size.
 */
ALIBI_API alibi_status alibi_dist_dispatch(alibi_context_t ctx, alibi_dist_plan_t plan, int rank,
                                           alibi_tensor_t global_x, alibi_tensor_t local_x);
/**
 * The inverse, collective: every rank's local_x gathered (allgather) and written, in the global
 * order without padding, into global_x ((T, ...)) on every rank.
 */
ALIBI_API alibi_status alibi_dist_undispatch(alibi_context_t ctx, alibi_comm_t comm,
                                             alibi_dist_plan_t plan, alibi_tensor_t local_x,
                                             alibi_tensor_t global_x);

/**
 * Distributed alibi_attention_forward, collective. q (num_local_tokens, Hq, D), k and v
 * (num_local_tokens, Hkv, D): this rank's dispatched tokens. out like q, lse NULL or (Hq,
 * num_local_tokens) f32: this rank's rows (padding rows: out 0, lse -inf). Each rank receives,
 * in one alltoallv, exactly the key/value tokens its rows see, and runs the single-process kernel
 * on them with the global ALiBi positions. params as for alibi_attention_forward, except that
 * attn_bias is UNSUPPORTED (a global (H, T, T) tensor has no place here); per-sequence slopes
 * need a varlen or sliding-window mask, as there. The plan's cp_size must be the communicator's
 * size (INVALID_ARGUMENT). Results are bitwise reproducible run to run.
 */
ALIBI_API alibi_status alibi_dist_attention_forward(alibi_context_t ctx, alibi_comm_t comm,
                                                    alibi_dist_plan_t plan, alibi_tensor_t q,
                                                    alibi_tensor_t k, alibi_tensor_t v,
                                                    const alibi_attention_params* params,
                                                    alibi_tensor_t out, alibi_tensor_t lse);
/**
 * Distributed alibi_attention_backward, collective; arguments as there, local like the
 * forward's (lse required). dq, dk, dv are this rank's tokens' gradients: the partial dk and dv
 * of the remote keys a rank's rows saw go back to their owners (alltoallv) and are summed in
 * rank order, in f32, then rounded once to the gradient's dtype. dslopes is the global gradient,
 * equal on every rank: each rank's f32 partial is all-gathered and summed in rank order.
 * Bitwise reproducible run to run.
 */
ALIBI_API alibi_status alibi_dist_attention_backward(
    alibi_context_t ctx, alibi_comm_t comm, alibi_dist_plan_t plan, alibi_tensor_t q,
    alibi_tensor_t k, alibi_tensor_t v, const alibi_attention_params* params, alibi_tensor_t out,
    alibi_tensor_t lse, alibi_tensor_t dout, alibi_tensor_t dq, alibi_tensor_t dk,
    alibi_tensor_t dv, alibi_tensor_t dslopes);

#ifdef __cplusplus
}
#endif

#endif /* ALIBI_ALIBI_DIST_H */
