// A fixed set of worker threads that share the items of one parallel_for at a time.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace alibi::cpu {

class ThreadPool {
 public:
  using Task = std::function<void(int64_t item, int worker)>;

  // num_threads participants in every parallel_for: the caller plus num_threads - 1 workers.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Runs task(item, worker) for every item in [0, count), items handed out dynamically;
  // worker is in [0, size()). Rethrows the first exception a task threw.
  void parallel_for(int64_t count, const Task& task);

 private:
  void worker_loop(int worker);
  void run_items(int worker);

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const Task* task_ = nullptr;
  int64_t count_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  int running_ = 0;
  bool stopping_ = false;
  std::exception_ptr error_;
};

}  // namespace alibi::cpu
