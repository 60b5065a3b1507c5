#include "kernels/cpu/fork_join_pool.h"

#include "common/status.h"

namespace baton::kernels {
namespace {

// Roughly 50-100 us of polling: long enough to bridge the gap between two ops
// of one decode step, short enough not to burn a shared core when idle.
constexpr int kSpinIterations = 4000;

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

ForkJoinPool::ForkJoinPool(int threads) : size_(threads < 1 ? 1 : threads) {
  threads_.reserve(static_cast<size_t>(size_ - 1));
  for (int w = 1; w < size_; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
}

ForkJoinPool::~ForkJoinPool() {
  stop_.store(true, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();
  for (std::thread& t : threads_) t.join();
}

void ForkJoinPool::dispatch(int64_t num_tasks, Thunk thunk, void* ctx) {
  if (num_tasks <= 0) return;
  if (size_ == 1 || num_tasks == 1) {
    // Waking workers for a single task only adds latency.
    for (int64_t t = 0; t < num_tasks; ++t) thunk(ctx, t, 0);
    return;
  }
  BATON_CHECK_MSG(pending_.load(std::memory_order_relaxed) == 0,
                  "ForkJoinPool::run is not reentrant");
  thunk_ = thunk;
  ctx_ = ctx;
  num_tasks_ = num_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  pending_.store(size_ - 1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  generation_.notify_all();

  work(0);

  int spins = 0;
  for (int left = pending_.load(std::memory_order_acquire); left != 0;
       left = pending_.load(std::memory_order_acquire)) {
    if (++spins < kSpinIterations) {
      cpu_relax();
    } else {
      pending_.wait(left, std::memory_order_acquire);
    }
  }
}

void ForkJoinPool::work(int worker) {
  for (;;) {
    const int64_t t = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (t >= num_tasks_) return;
    thunk_(ctx_, t, worker);
  }
}

void ForkJoinPool::worker_loop(int worker) {
  uint64_t seen = 0;
  for (;;) {
    int spins = 0;
    uint64_t gen;
    while ((gen = generation_.load(std::memory_order_acquire)) == seen) {
      if (++spins < kSpinIterations) {
        cpu_relax();
      } else {
        generation_.wait(seen, std::memory_order_acquire);
      }
    }
    seen = gen;
    if (stop_.load(std::memory_order_relaxed)) return;
    work(worker);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) pending_.notify_one();
  }
}

}  // namespace baton::kernels
