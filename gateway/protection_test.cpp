#include <gtest/gtest.h>

#include "gateway/circuit_breaker.h"
#include "gateway/gateway_config.h"
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

TEST(ApiKeyTest, KeysWithoutANameAreNamedByAFingerprintThatRevealsNoneOfThem) {
  const std::string key = "sk-live-0123456789abcdef";
  const std::string fp = key_fingerprint(key);
  EXPECT_EQ(fp.size(), 12u);
  EXPECT_TRUE(fp.starts_with("key-"));
  EXPECT_EQ(fp, key_fingerprint(key));                         // stable
  EXPECT_NE(fp, key_fingerprint("sk-live-0123456789abcdeg"));  // a near miss differs
  for (size_t n = 3; n <= key.size(); ++n) {
    EXPECT_EQ(fp.find(key.substr(0, n)), std::string::npos) << n;  // no prefix of the key
  }

  GatewayConfig c;
  c.instances.push_back({"m0", "127.0.0.1", 8001});
  c.api_keys = {{key, "", 0, 0}, {"sk-other", "team-b", 0, 0}};
  ASSERT_TRUE(finish_gateway_config(c).is_ok());
  EXPECT_EQ(c.api_keys[0].name, fp);
  EXPECT_EQ(c.api_keys[1].name, "team-b");

  c.api_keys.push_back({key, "again", 0, 0});
  Status dup = finish_gateway_config(c);
  ASSERT_FALSE(dup.is_ok());
  EXPECT_EQ(dup.message().find(key), std::string::npos) << dup.message();
}

}  // namespace
}  // namespace baton::gateway
