#pragma once

// CircuitBreaker: per-instance failure isolation. Closed: requests flow and
// consecutive failures are counted; at `failure_threshold` it opens. Open:
// no request goes to the instance until `open_time` has passed; then it is
// half-open and lets exactly one probe request through; the probe's success
// closes it, its failure opens it again for another `open_time`.
//
// Time comes in as arguments (no clock inside). Thread-safe (one mutex).

#include <chrono>
#include <mutex>
#include <string_view>

namespace baton::gateway {

enum class BreakerState { kClosed, kOpen, kHalfOpen };
std::string_view breaker_state_name(BreakerState s);

class CircuitBreaker {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  CircuitBreaker(int failure_threshold, std::chrono::milliseconds open_time);

  // Whether a request may be sent now, without taking the probe slot; for
  // building routing snapshots.
  bool available(TimePoint now) const;
  // Claims permission to send one request: true when closed, or when
  // half-open and the probe slot is free (the caller's request becomes the
  // probe). Every true must be followed by on_success or on_failure.
  bool try_acquire(TimePoint now);
  void on_success();
  void on_failure(TimePoint now);
  // The request ended without a verdict (cancelled): frees the probe slot.
  void on_cancel();

  BreakerState state(TimePoint now) const;

 private:
  BreakerState state_locked(TimePoint now) const;

  const int threshold_;
  const std::chrono::milliseconds open_time_;
  mutable std::mutex mu_;
  int failures_ = 0;
  bool open_ = false;
  bool probing_ = false;
  TimePoint opened_at_{};
};

}  // namespace baton::gateway
