#include <gtest/gtest.h>

#include "gateway/circuit_breaker.h"
#include "gateway/rate_limiter.h"

namespace baton::gateway {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

TEST(CircuitBreakerTest, OpensAfterConsecutiveFailuresAndProbesOnceWhenHalfOpen) {
  CircuitBreaker b(3, 1000ms);
  TimePoint t{std::chrono::hours(1)};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(b.try_acquire(t));
    b.on_failure(t);
  }
  ASSERT_TRUE(b.try_acquire(t));
  b.on_success();  // a success resets the count
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(b.try_acquire(t));
    b.on_failure(t);
  }
  EXPECT_EQ(b.state(t), BreakerState::kOpen);
  EXPECT_FALSE(b.available(t + 999ms));
  EXPECT_FALSE(b.try_acquire(t + 999ms));
  EXPECT_EQ(b.state(t + 1000ms), BreakerState::kHalfOpen);
  EXPECT_TRUE(b.try_acquire(t + 1000ms));   // the probe
  EXPECT_FALSE(b.try_acquire(t + 1000ms));  // only one
  b.on_failure(t + 1500ms);                 // probe failed: open again from now
  EXPECT_FALSE(b.try_acquire(t + 2400ms));
  EXPECT_TRUE(b.try_acquire(t + 2500ms));
  b.on_success();
  EXPECT_EQ(b.state(t + 2500ms), BreakerState::kClosed);
}

TEST(CircuitBreakerTest, ACancelledProbeFreesTheSlot) {
  CircuitBreaker b(1, 10ms);
  TimePoint t{std::chrono::hours(1)};
  b.on_failure(t);
  ASSERT_TRUE(b.try_acquire(t + 10ms));
  b.on_cancel();
  EXPECT_TRUE(b.try_acquire(t + 10ms));
}

TEST(RateLimiterTest, RequestsPerMinuteRefillOverTime) {
  RateLimiter l;
  TimePoint t{std::chrono::hours(1)};
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(l.admit("k", 3, 0, 10, t).allowed);
  RateDecision d = l.admit("k", 3, 0, 10, t);
  EXPECT_FALSE(d.allowed);
  EXPECT_STREQ(d.reason, "requests_per_minute");
  EXPECT_EQ(d.retry_after, 20s);
  EXPECT_TRUE(l.admit("other", 3, 0, 10, t).allowed);  // per key
  EXPECT_FALSE(l.admit("k", 3, 0, 10, t + 19s).allowed);
  EXPECT_TRUE(l.admit("k", 3, 0, 10, t + 20s).allowed);
}

TEST(RateLimiterTest, TokensPerMinute) {
  RateLimiter l;
  TimePoint t{std::chrono::hours(1)};
  EXPECT_TRUE(l.admit("k", 0, 100, 60, t).allowed);
  RateDecision d = l.admit("k", 0, 100, 60, t);
  EXPECT_FALSE(d.allowed);
  EXPECT_STREQ(d.reason, "tokens_per_minute");
  EXPECT_EQ(d.retry_after, 12s);  // 20 missing tokens at 100/min
  EXPECT_TRUE(l.admit("k", 0, 100, 60, t + 12s).allowed);
  EXPECT_TRUE(l.admit("k", 0, 0, 1000000, t).allowed);  // unlimited
}

}  // namespace
}  // namespace baton::gateway
