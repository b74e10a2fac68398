// cp_size ranks as threads of one process, each with its own context, over an in-process
// alibi_comm_ops: each collective publishes every rank's buffers, waits for all ranks, copies
// what is addressed to the caller out of shared memory, and waits again before any rank moves on
// (so no buffer is reused while another rank still reads it). It counts the bytes each rank
// receives, and can be told to fail.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "alibi/alibi_dist.h"

namespace test {

class Barrier {
 public:
  explicit Barrier(int count) : count_(count) {}
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    const int64_t generation = generation_;
    if (++arrived_ == count_) {
      arrived_ = 0;
      ++generation_;
      all_arrived_.notify_all();
    } else {
      all_arrived_.wait(lock, [&] { return generation_ != generation; });
    }
  }

 private:
  std::mutex mutex_;
  std::condition_variable all_arrived_;
  const int count_;
  int arrived_ = 0;
  int64_t generation_ = 0;
};

class ThreadGroup {
 public:
  explicit ThreadGroup(int size) : size_(size), barrier_(size), ranks_(size_t(size)) {
    for (int r = 0; r < size; ++r) ranks_[size_t(r)] = {this, r};
  }

  int size() const { return size_; }

  // A communicator for `rank` (destroy it with alibi_comm_destroy).
  alibi_comm_t comm(int rank) {
    alibi_comm_ops ops{};
    ops.struct_size = sizeof ops;
    ops.alltoallv = &ThreadGroup::alltoallv;
    ops.allgather = &ThreadGroup::allgather;
    alibi_comm_t comm = nullptr;
    alibi_comm_create(&ops, &ranks_[size_t(rank)], rank, size_, &comm);
    return comm;
  }

  // Runs fn(rank) on one thread per rank and waits for all of them.
  template <class Fn>
  void run(Fn fn) {
    std::vector<std::thread> threads;
    for (int r = 0; r < size_; ++r) threads.emplace_back([&fn, r] { fn(r); });
    for (std::thread& t : threads) t.join();
  }

  // Bytes `rank` received by alltoallv / allgather since the last reset.
  int64_t alltoallv_bytes(int rank) const { return ranks_[size_t(rank)].alltoallv_bytes; }
  int64_t allgather_bytes(int rank) const { return ranks_[size_t(rank)].allgather_bytes; }
  void reset_counts() {
    for (Rank& r : ranks_) r.alltoallv_bytes = r.allgather_bytes = 0;
  }

  // From now on every collective returns `code` on every rank without moving data (0: work).
  void fail_with(int code) { failure_ = code; }

 private:
  struct Rank {
    ThreadGroup* group;
    int rank;
    const void* send = nullptr;
    const int64_t* send_counts = nullptr;
    const int64_t* send_displs = nullptr;
    int64_t alltoallv_bytes = 0, allgather_bytes = 0;
  };

  static int alltoallv(void* user, const void* send, const int64_t* send_counts,
                       const int64_t* send_displs, void* recv, const int64_t* recv_counts,
                       const int64_t* recv_displs) {
    Rank& me = *static_cast<Rank*>(user);
    ThreadGroup& group = *me.group;
    if (group.failure_) return group.failure_;
    me.send = send, me.send_counts = send_counts, me.send_displs = send_displs;
    group.barrier_.wait();
    int result = 0;
    for (int from = 0; from < group.size_; ++from) {
      const Rank& source = group.ranks_[size_t(from)];
      if (source.send_counts[me.rank] != recv_counts[from]) {
        result = 1;  // the sender and the receiver disagree on the size
        continue;
      }
      if (recv_counts[from] > 0)
        std::memcpy(static_cast<char*>(recv) + recv_displs[from],
                    static_cast<const char*>(source.send) + source.send_displs[me.rank],
                    size_t(recv_counts[from]));
      me.alltoallv_bytes += recv_counts[from];
    }
    group.barrier_.wait();
    return result;
  }

  static int allgather(void* user, const void* send, void* recv, int64_t bytes_per_rank) {
    Rank& me = *static_cast<Rank*>(user);
    ThreadGroup& group = *me.group;
    if (group.failure_) return group.failure_;
    me.send = send;
    group.barrier_.wait();
    for (int from = 0; from < group.size_; ++from)
      if (bytes_per_rank > 0)
        std::memcpy(static_cast<char*>(recv) + from * bytes_per_rank,
                    group.ranks_[size_t(from)].send, size_t(bytes_per_rank));
    me.allgather_bytes += int64_t(group.size_) * bytes_per_rank;
    group.barrier_.wait();
    return 0;
  }

  const int size_;
  Barrier barrier_;
  std::vector<Rank> ranks_;
  int failure_ = 0;
};

}  // namespace test
