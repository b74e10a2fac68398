// The CPU backend's parallelism: one set of worker threads for the whole process, shared by every
// context. A context holds only its thread count, so creating one starts no thread; the workers
// start on the first parallel call that needs them (as many as the largest count asked for, less
// one, since each caller works on its own call) and live as long as the process.
#pragma once

#include <cstdint>
#include <functional>

namespace alibi::cpu {

class ThreadPool {
 public:
  using Task = std::function<void(int64_t item, int worker)>;

  // num_threads participants in every parallel_for: the caller plus up to num_threads - 1
  // shared workers (fewer while other contexts' calls keep them busy).
  explicit ThreadPool(int num_threads) : num_threads_(num_threads) {}

  int size() const { return num_threads_; }

  // Runs task(item, worker) for every item in [0, count), items handed out dynamically;
  // worker is in [0, size()) and no two participants of one call share it. Rethrows the first
  // exception a task threw. Calls from several threads (several contexts) may overlap. A caller
  // out of items waits for the workers still running by yielding its core for up to 200 us,
  // then sleeping.
  void parallel_for(int64_t count, const Task& task) const;

 private:
  int num_threads_;
};

}  // namespace alibi::cpu
