#pragma once

// ThreadPool: a fixed set of worker threads fed from a bounded task queue.
//
// submit() never blocks: a full queue is kResourceExhausted (the caller sheds
// or retries), a pool that is shutting down is kUnavailable. Tasks run in
// submission order per queue, on any worker. A task that throws does not kill
// its worker: the exception is caught and logged (submit_with_result instead
// delivers it through the future).
//
// shutdown(deadline) stops accepting, lets the workers finish every task
// already queued and joins them. If the deadline passes first, the tasks not
// yet started are dropped (destroyed unrun) and kDeadlineExceeded is returned;
// the workers then exit after their current task, and the destructor joins
// them. Tasks must therefore finish in bounded time.
//
// All members are thread-safe, except that the destructor must not run
// concurrently with other calls. A task may call submit() on its own pool.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "common/bounded_queue.h"
#include "common/status.h"

namespace baton {

class ThreadPool {
 public:
  using Task = std::function<void()>;
  using TimePoint = std::chrono::steady_clock::time_point;

  // num_threads >= 1 and queue_capacity >= 1 (programmer errors otherwise).
  // name (at most 15 characters are kept) labels the threads and log lines.
  ThreadPool(size_t num_threads, size_t queue_capacity, std::string name = "pool");
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // Queues a task. kResourceExhausted when the queue is full, kUnavailable
  // after shutdown() began. On error the task is not run.
  Status submit(Task task);

  // Queues f and returns a future for its result (or its exception).
  template <typename F>
  Result<std::future<std::invoke_result_t<F>>> submit_with_result(F f) {
    using R = std::invoke_result_t<F>;
    auto job = std::make_shared<std::packaged_task<R()>>(std::move(f));
    std::future<R> future = job->get_future();
    BATON_RETURN_IF_ERROR(submit([job] { (*job)(); }));
    return future;
  }

  // See the file comment. Idempotent; later calls wait for the same workers.
  // Must not be called from one of this pool's tasks (it would wait for itself).
  Status shutdown(TimePoint deadline);

  size_t num_threads() const { return workers_.size(); }
  size_t queue_capacity() const { return queue_.capacity(); }
  // Tasks queued and not yet started.
  size_t queued() const { return queue_.size(); }
  // Tasks that threw (and were logged) since construction.
  uint64_t failed_tasks() const;

 private:
  void worker_loop();

  const std::string name_;
  BoundedQueue<Task> queue_;
  std::vector<std::thread> workers_;

  mutable std::mutex mu_;
  std::condition_variable all_exited_;
  size_t running_workers_ = 0;  // guarded by mu_
  uint64_t failed_ = 0;         // guarded by mu_
  bool joined_ = false;         // guarded by mu_
};

}  // namespace baton
