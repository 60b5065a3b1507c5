#pragma once

// BoundedQueue<T>: a fixed-capacity multi-producer multi-consumer FIFO.
//
// Every queue in Baton is bounded and every blocking call takes a deadline
// (a std::chrono::steady_clock time point; real time, since a waiting thread
// must actually wake). close() ends the queue: pushes fail with kUnavailable
// at once, blocked waiters wake, and consumers still receive the items already
// queued until it is empty, so nothing accepted is lost.
//
// Pushes take T by rvalue or const reference and move from it only when the
// item is accepted: on failure the caller still owns it (retry, reject, log).
// All members are thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace baton {

template <typename T>
class BoundedQueue {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // capacity must be at least 1 (programmer error otherwise).
  explicit BoundedQueue(size_t capacity) : capacity_(capacity) {
    BATON_CHECK_MSG(capacity > 0, "BoundedQueue capacity must be positive");
  }
  BoundedQueue(const BoundedQueue&) = delete;
  BoundedQueue& operator=(const BoundedQueue&) = delete;

  // Enqueues when there is room and the queue is open; never blocks.
  bool try_push(T&& item) { return push_locked_if_room(std::move(item)); }
  bool try_push(const T& item) { return push_locked_if_room(T(item)); }

  // Waits until there is room, the deadline passes (kDeadlineExceeded) or the
  // queue is closed (kUnavailable). item is moved from only on success.
  Status push_until(T&& item, TimePoint deadline) { return push_wait(item, deadline); }
  Status push_until(const T& item, TimePoint deadline) {
    T copy(item);
    return push_wait(copy, deadline);
  }
  Status push_until(T&& item, const Deadline& deadline) {
    return push_wait(item, deadline.time_point());
  }

  // Dequeues the oldest item if any; never blocks. Works after close() until
  // the queue is drained.
  std::optional<T> try_pop() {
    std::unique_lock lock(mu_);
    if (items_.empty()) return std::nullopt;
    return take_front(lock);
  }

  // Waits for an item until the deadline (kDeadlineExceeded). When the queue
  // is closed and empty: kUnavailable.
  Result<T> pop_until(TimePoint deadline) {
    std::unique_lock lock(mu_);
    bool ready = wait(not_empty_, lock, deadline, [&] { return !items_.empty() || closed_; });
    if (!items_.empty()) return take_front(lock);
    if (!ready) return deadline_exceeded("timed out waiting for a queue item");
    return unavailable("queue closed");
  }
  Result<T> pop_until(const Deadline& deadline) { return pop_until(deadline.time_point()); }

  // Removes and returns everything queued, oldest first; never blocks.
  std::vector<T> pop_all() {
    std::vector<T> out;
    {
      std::lock_guard lock(mu_);
      out.reserve(items_.size());
      for (auto& item : items_) out.push_back(std::move(item));
      items_.clear();
    }
    not_full_.notify_all();
    return out;
  }

  // Refuses further pushes and wakes every waiter. Idempotent.
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  bool is_closed() const {
    std::lock_guard lock(mu_);
    return closed_;
  }
  size_t size() const {
    std::lock_guard lock(mu_);
    return items_.size();
  }
  bool empty() const { return size() == 0; }
  size_t capacity() const { return capacity_; }

 private:
  // condition_variable::wait_until with time_point::max() overflows inside
  // some standard libraries, so "no deadline" waits without one.
  template <typename Pred>
  static bool wait(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                   TimePoint deadline, Pred pred) {
    if (deadline == TimePoint::max()) {
      cv.wait(lock, pred);
      return true;
    }
    return cv.wait_until(lock, deadline, pred);
  }

  bool push_locked_if_room(T&& item) {
    {
      std::lock_guard lock(mu_);
      if (closed_ || items_.size() >= capacity_) return false;
      items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return true;
  }

  Status push_wait(T& item, TimePoint deadline) {
    {
      std::unique_lock lock(mu_);
      bool ready =
          wait(not_full_, lock, deadline, [&] { return closed_ || items_.size() < capacity_; });
      if (closed_) return unavailable("queue closed");
      if (!ready) return deadline_exceeded("timed out waiting for room in a full queue");
      items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return Status::ok();
  }

  T take_front(std::unique_lock<std::mutex>& lock) {
    T item = std::move(items_.front());
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

  const size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable not_empty_;
  std::condition_variable not_full_;
  std::deque<T> items_;
  bool closed_ = false;
};

}  // namespace baton
