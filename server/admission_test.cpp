#include "server/admission.h"

#include <gtest/gtest.h>

namespace baton::server {
namespace {

TEST(Admission, QueueBoundRejectsAtOnceWithAReason) {
  AdmissionController a({.max_waiting = 2, .max_in_flight = 10});
  EXPECT_TRUE(a.try_admit(10).admitted());
  EXPECT_TRUE(a.try_admit(10).admitted());
  auto d = a.try_admit(10);
  EXPECT_EQ(d.reason, RejectReason::kQueueFull);
  EXPECT_GE(d.retry_after_s, 1);
  EXPECT_EQ(reject_reason_name(d.reason), "queue_full");
  a.started(10);
  EXPECT_TRUE(a.try_admit(10).admitted());
}

TEST(Admission, InFlightBoundCountsStartedRequests) {
  AdmissionController a({.max_waiting = 10, .max_in_flight = 2});
  ASSERT_TRUE(a.try_admit(1).admitted());
  ASSERT_TRUE(a.try_admit(1).admitted());
  a.started(1);
  a.started(1);
  EXPECT_EQ(a.try_admit(1).reason, RejectReason::kTooManyRequests);
  a.finished(1, true);
  EXPECT_TRUE(a.try_admit(1).admitted());
  EXPECT_EQ(a.in_flight(), 2);
}

TEST(Admission, TtftBudgetUsesTheMeasuredPrefillRate) {
  AdmissionController a({.max_waiting = 100, .max_in_flight = 100, .ttft_budget_s = 1.0});
  // Unknown rate: optimistic.
  EXPECT_TRUE(a.try_admit(5000).admitted());
  a.observe_prefill(0, 0);
  a.observe_prefill(1000, 1'000'000);  // 1000 tokens/s
  EXPECT_NEAR(a.prefill_rate(), 1000.0, 1e-9);
  // 5000 queued ahead: 5.6 s to start another 600 tokens.
  auto d = a.try_admit(600);
  EXPECT_EQ(d.reason, RejectReason::kTtftBudget);
  EXPECT_NEAR(d.estimated_start_s, 5.6, 1e-9);
  EXPECT_EQ(d.retry_after_s, 5);
  // Once the queue drains it fits again.
  a.started(5000);
  EXPECT_TRUE(a.try_admit(600).admitted());
  EXPECT_EQ(a.queued_prompt_tokens(), 600);
}

TEST(Admission, AnIdleInstanceTakesEvenALongPrompt) {
  AdmissionController a({.ttft_budget_s = 0.1, .initial_prefill_rate = 100});
  EXPECT_TRUE(a.try_admit(100000).admitted());
  EXPECT_EQ(a.try_admit(10).reason, RejectReason::kTtftBudget);
}

TEST(Admission, IdleWindowsDoNotChangeTheRate) {
  AdmissionController a({.initial_prefill_rate = 500});
  a.observe_prefill(0, 0);
  a.observe_prefill(0, 5'000'000);
  EXPECT_EQ(a.prefill_rate(), 500);
  a.observe_prefill(2000, 6'000'000);  // 2000 tokens/s
  EXPECT_NEAR(a.prefill_rate(), 0.7 * 500 + 0.3 * 2000, 1e-9);
}

TEST(Admission, CancelledBeforeStartReleasesTheQueue) {
  AdmissionController a({.max_waiting = 1});
  ASSERT_TRUE(a.try_admit(7).admitted());
  a.finished(7, false);
  EXPECT_EQ(a.waiting(), 0);
  EXPECT_EQ(a.in_flight(), 0);
  EXPECT_EQ(a.queued_prompt_tokens(), 0);
}

}  // namespace
}  // namespace baton::server
