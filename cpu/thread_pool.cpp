#include "cpu/thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace alibi::cpu {

namespace {

constexpr std::chrono::microseconds kSpinTime{200};

// One parallel_for in progress, on its caller's stack: its items and the workers that joined it.
struct Job {
  const ThreadPool::Task* task;
  int64_t count;
  int helper_slots;  // workers that may join (worker ids 1..helper_slots)
  std::atomic<int64_t> next{0};
  int helpers_joined = 0;
  std::atomic<int> helpers_running{0};  // changed under the pool's mutex; the caller may spin on it
  std::exception_ptr error;
  std::condition_variable helpers_done;
};

class SharedWorkers {
 public:
  // Never destroyed: at exit, workers may still be waiting, and a call may still be running on
  // another thread (a JVM's, say).
  static SharedWorkers& instance() {
    static SharedWorkers* workers = new SharedWorkers();
    return *workers;
  }

  void run(Job& job) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      start_workers(job.helper_slots);
      open_.push_back(&job);
    }
    for (int w = 0; w < job.helper_slots; ++w) wake_.notify_one();
    run_items(job, 0);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      close(job);
    }
    await_helpers(job);
    if (job.error) std::rethrow_exception(job.error);
  }

 private:
  void start_workers(int count) {
    for (; started_ < count; ++started_) std::thread([this] { work(); }).detach();
  }

  // Spins (yielding the core) for up to kSpinTime before sleeping: the helpers still running
  // usually finish within an item, and waking a sleeping caller took 75 us of a 1.1 ms decode
  // (2-vCPU VM).
  void await_helpers(Job& job) {
    const auto until = std::chrono::steady_clock::now() + kSpinTime;
    while (job.helpers_running.load(std::memory_order_acquire) > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::yield();
    // The lock also waits for the last helper to be done with the job (its notify).
    std::unique_lock<std::mutex> lock(mutex_);
    job.helpers_done.wait(lock, [&] { return job.helpers_running.load(std::memory_order_relaxed) == 0; });
  }

  void close(Job& job) { open_.erase(std::remove(open_.begin(), open_.end(), &job), open_.end()); }

  void work() {
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return !open_.empty(); });
      Job& job = *open_.front();
      const int worker = ++job.helpers_joined;
      if (worker == job.helper_slots || job.next.load() >= job.count) close(job);
      ++job.helpers_running;
      lock.unlock();
      run_items(job, worker);
      lock.lock();
      // The caller may return (and its job vanish) as soon as this lock is released.
      if (--job.helpers_running == 0) job.helpers_done.notify_one();
    }
  }

  void run_items(Job& job, int worker) {
    for (int64_t item = job.next++; item < job.count; item = job.next++) {
      try {
        (*job.task)(item, worker);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!job.error) job.error = std::current_exception();
      }
    }
  }

  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<Job*> open_;  // jobs that workers may still join, oldest first
  int started_ = 0;
};

}  // namespace

void ThreadPool::parallel_for(int64_t count, const Task& task) const {
  if (count <= 0) return;
  const int helpers = int(std::min<int64_t>(num_threads_, count)) - 1;
  if (helpers <= 0) {
    for (int64_t item = 0; item < count; ++item) task(item, 0);
    return;
  }
  Job job;
  job.task = &task;
  job.count = count;
  job.helper_slots = helpers;
  SharedWorkers::instance().run(job);
}

}  // namespace alibi::cpu
