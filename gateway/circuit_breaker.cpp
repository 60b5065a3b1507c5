#include "gateway/circuit_breaker.h"

#include <algorithm>

namespace baton::gateway {

std::string_view breaker_state_name(BreakerState s) {
  switch (s) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(int failure_threshold, std::chrono::milliseconds open_time)
    : threshold_(std::max(1, failure_threshold)), open_time_(open_time) {}

BreakerState CircuitBreaker::state_locked(TimePoint now) const {
  if (!open_) return BreakerState::kClosed;
  return now - opened_at_ >= open_time_ ? BreakerState::kHalfOpen : BreakerState::kOpen;
}

BreakerState CircuitBreaker::state(TimePoint now) const {
  std::lock_guard lock(mu_);
  return state_locked(now);
}

bool CircuitBreaker::available(TimePoint now) const {
  std::lock_guard lock(mu_);
  BreakerState s = state_locked(now);
  return s == BreakerState::kClosed || (s == BreakerState::kHalfOpen && !probing_);
}

bool CircuitBreaker::try_acquire(TimePoint now) {
  std::lock_guard lock(mu_);
  switch (state_locked(now)) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      return false;
    case BreakerState::kHalfOpen:
      if (probing_) return false;
      probing_ = true;
      return true;
  }
  return false;
}

void CircuitBreaker::on_success() {
  std::lock_guard lock(mu_);
  failures_ = 0;
  open_ = false;
  probing_ = false;
}

void CircuitBreaker::on_cancel() {
  std::lock_guard lock(mu_);
  probing_ = false;
}

void CircuitBreaker::on_failure(TimePoint now) {
  std::lock_guard lock(mu_);
  if (open_) {
    // A failed probe (or a late failure of a request sent before opening)
    // restarts the open period.
    probing_ = false;
    opened_at_ = now;
    return;
  }
  if (++failures_ >= threshold_) {
    open_ = true;
    opened_at_ = now;
  }
}

}  // namespace baton::gateway
