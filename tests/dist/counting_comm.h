// A communicator that counts: it forwards every collective to another communicator's table and
// records, per collective, the bytes this rank sends to and receives from each rank. For the
// distributed tests' volume checks (a rank receives only the keys its queries see).
//
//   test::CountingComm counting(mpi_comm);   // mpi_comm stays the caller's
//   alibi_dist_attention_forward(ctx, counting.get(), ...);
//   counting.collectives()[0].received[r]    // bytes from rank r in the first collective
#pragma once

#include <cstdint>
#include <numeric>
#include <vector>

#include "alibi/alibi_dist.h"
#include "core/dist/dist.h"  // alibi_comm_s: the wrapped communicator's table, user, rank, size

namespace test {

// What one collective moved on this rank. sent[r] and received[r] are bytes to and from rank r
// (this rank's own entry included: a copy, not traffic).
struct CollectiveBytes {
  enum class Kind { alltoallv, allgather };
  Kind kind;
  int result;  // what the wrapped collective returned
  std::vector<int64_t> sent;
  std::vector<int64_t> received;

  int64_t received_from_others(int self) const {
    return std::accumulate(received.begin(), received.end(), int64_t{0}) - received[size_t(self)];
  }
  int64_t sent_to_others(int self) const {
    return std::accumulate(sent.begin(), sent.end(), int64_t{0}) - sent[size_t(self)];
  }
};

class CountingComm {
 public:
  // inner must outlive this object; it is not destroyed with it.
  explicit CountingComm(alibi_comm_t inner) : inner_(inner) {
    alibi_comm_ops ops{};
    ops.struct_size = sizeof ops;
    ops.alltoallv = forward_alltoallv;
    ops.allgather = forward_allgather;
    if (alibi_comm_create(&ops, this, inner->rank, inner->size, &comm_) != ALIBI_STATUS_SUCCESS)
      comm_ = nullptr;
  }
  ~CountingComm() { alibi_comm_destroy(comm_); }
  CountingComm(const CountingComm&) = delete;
  CountingComm& operator=(const CountingComm&) = delete;

  // NULL if alibi_comm_create failed (alibi_last_error_message() says why).
  alibi_comm_t get() const { return comm_; }
  int rank() const { return inner_->rank; }
  const std::vector<CollectiveBytes>& collectives() const { return log_; }
  void clear() { log_.clear(); }

  // Over every collective so far: bytes from and to the other ranks.
  int64_t received_from_others() const {
    int64_t total = 0;
    for (const auto& c : log_) total += c.received_from_others(rank());
    return total;
  }
  int64_t sent_to_others() const {
    int64_t total = 0;
    for (const auto& c : log_) total += c.sent_to_others(rank());
    return total;
  }

 private:
  static int forward_alltoallv(void* user, const void* send, const int64_t* send_counts,
                               const int64_t* send_displs, void* recv,
                               const int64_t* recv_counts, const int64_t* recv_displs) {
    auto& self = *static_cast<CountingComm*>(user);
    const alibi_comm_s& inner = *self.inner_;
    const int result = inner.ops.alltoallv(inner.user, send, send_counts, send_displs, recv,
                                           recv_counts, recv_displs);
    const size_t n = size_t(inner.size);
    self.log_.push_back({CollectiveBytes::Kind::alltoallv, result,
                         std::vector<int64_t>(send_counts, send_counts + n),
                         std::vector<int64_t>(recv_counts, recv_counts + n)});
    return result;
  }

  static int forward_allgather(void* user, const void* send, void* recv,
                               int64_t bytes_per_rank) {
    auto& self = *static_cast<CountingComm*>(user);
    const alibi_comm_s& inner = *self.inner_;
    const int result = inner.ops.allgather(inner.user, send, recv, bytes_per_rank);
    const std::vector<int64_t> each(size_t(inner.size), bytes_per_rank);
    self.log_.push_back({CollectiveBytes::Kind::allgather, result, each, each});
    return result;
  }

  const alibi_comm_s* inner_;
  alibi_comm_t comm_ = nullptr;
  std::vector<CollectiveBytes> log_;
};

}  // namespace test
