#pragma once

// A fork-join pool for the CPU backend: the calling thread and size() - 1
// workers run the tasks of one parallel region, then the call returns. Built
// for many small regions (a decode step issues hundreds of ops): idle workers
// spin briefly before sleeping, so back-to-back regions wake them without a
// syscall, and a region never allocates.
//
// Thread-safety: run() is called from one thread at a time (the backend's
// owner) and is not reentrant: a task must not call run() on the same pool.

#include <atomic>
#include <cstdint>
#include <thread>
#include <type_traits>
#include <vector>

namespace baton::kernels {

class ForkJoinPool {
 public:
  // threads >= 1 counts the caller; threads - 1 workers are started.
  explicit ForkJoinPool(int threads);
  ~ForkJoinPool();
  ForkJoinPool(const ForkJoinPool&) = delete;
  ForkJoinPool& operator=(const ForkJoinPool&) = delete;

  int size() const { return size_; }

  // Runs fn(task, worker) once for every task in [0, num_tasks) and returns
  // when all have finished. Tasks are claimed dynamically, so uneven tasks
  // balance; worker is in [0, size()) and identifies the running thread
  // (0 is the caller), for per-worker scratch memory.
  template <typename F>
  void run(int64_t num_tasks, F&& fn) {
    using Fn = std::remove_reference_t<F>;
    dispatch(
        num_tasks,
        [](void* ctx, int64_t task, int worker) { (*static_cast<Fn*>(ctx))(task, worker); },
        const_cast<void*>(static_cast<const void*>(&fn)));
  }

  // fn(begin, end, worker) over [0, n) in chunks of at least `grain` items.
  template <typename F>
  void parallel_for(int64_t n, int64_t grain, F&& fn) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t chunks = (n + grain - 1) / grain;
    // A few chunks per thread absorb uneven progress without much claiming.
    const int64_t max_chunks = static_cast<int64_t>(size_) * 4;
    if (chunks > max_chunks) chunks = max_chunks;
    const int64_t step = (n + chunks - 1) / chunks;
    chunks = (n + step - 1) / step;
    run(chunks, [&](int64_t c, int worker) {
      const int64_t begin = c * step;
      const int64_t end = begin + step < n ? begin + step : n;
      fn(begin, end, worker);
    });
  }

 private:
  using Thunk = void (*)(void* ctx, int64_t task, int worker);

  void dispatch(int64_t num_tasks, Thunk thunk, void* ctx);
  void work(int worker);
  void worker_loop(int worker);

  const int size_;
  std::vector<std::thread> threads_;

  // The current region; written by the caller before generation_ is bumped
  // and read by workers only after they observe the new generation.
  Thunk thunk_ = nullptr;
  void* ctx_ = nullptr;
  int64_t num_tasks_ = 0;

  alignas(64) std::atomic<uint64_t> generation_{0};
  alignas(64) std::atomic<int64_t> next_task_{0};
  alignas(64) std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace baton::kernels
