#include "common/thread_pool.h"

#include <pthread.h>

#include <exception>

#include "common/logging.h"

namespace baton {

namespace {
// Linux limits thread names to 15 characters plus the terminator.
constexpr size_t kMaxThreadName = 15;
}  // namespace

ThreadPool::ThreadPool(size_t num_threads, size_t queue_capacity, std::string name)
    : name_(std::move(name)), queue_(queue_capacity) {
  BATON_CHECK_MSG(num_threads > 0, "ThreadPool needs at least one thread");
  running_workers_ = num_threads;
  workers_.reserve(num_threads);
  for (size_t i = 0; i < num_threads; ++i) {
    workers_.emplace_back([this] { worker_loop(); });
    std::string thread_name = name_.substr(0, kMaxThreadName);
    pthread_setname_np(workers_.back().native_handle(), thread_name.c_str());
  }
}

ThreadPool::~ThreadPool() {
  (void)shutdown(TimePoint::max());
  std::lock_guard lock(mu_);
  if (!joined_) {
    // shutdown() gave up at its deadline; the workers exit after their current
    // task because the queue was closed and emptied.
    for (auto& w : workers_) w.join();
    joined_ = true;
  }
}

Status ThreadPool::submit(Task task) {
  if (!task) return invalid_argument("ThreadPool::submit: empty task");
  if (queue_.try_push(std::move(task))) return Status::ok();
  if (queue_.is_closed()) return unavailable(fmt::format("thread pool '{}' is shut down", name_));
  return resource_exhausted(
      fmt::format("thread pool '{}' queue is full ({} tasks)", name_, queue_.capacity()));
}

Status ThreadPool::shutdown(TimePoint deadline) {
  queue_.close();
  std::unique_lock lock(mu_);
  if (joined_) return Status::ok();
  bool done = true;
  if (deadline == TimePoint::max()) {
    all_exited_.wait(lock, [&] { return running_workers_ == 0; });
  } else {
    done = all_exited_.wait_until(lock, deadline, [&] { return running_workers_ == 0; });
  }
  if (!done) {
    lock.unlock();
    size_t dropped = queue_.pop_all().size();
    return deadline_exceeded(fmt::format(
        "thread pool '{}' did not drain before its shutdown deadline; {} queued tasks dropped",
        name_, dropped));
  }
  if (joined_) return Status::ok();  // another shutdown() joined while we waited
  // Every worker has left its loop, so these joins return at once.
  for (auto& w : workers_) w.join();
  joined_ = true;
  return Status::ok();
}

uint64_t ThreadPool::failed_tasks() const {
  std::lock_guard lock(mu_);
  return failed_;
}

void ThreadPool::worker_loop() {
  while (true) {
    // No deadline: a worker idles until work arrives or close() wakes it.
    Result<Task> task = queue_.pop_until(TimePoint::max());
    if (!task.is_ok()) break;  // closed and drained
    try {
      (*task)();
    } catch (const std::exception& e) {
      BATON_LOG_ERROR("thread pool '{}': task threw: {}", name_, e.what());
      std::lock_guard lock(mu_);
      ++failed_;
    } catch (...) {
      BATON_LOG_ERROR("thread pool '{}': task threw a non-standard exception", name_);
      std::lock_guard lock(mu_);
      ++failed_;
    }
  }
  std::lock_guard lock(mu_);
  --running_workers_;
  all_exited_.notify_all();
}

}  // namespace baton
