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
  EXPECT_EQ(d.admit_after_ms, 100);  // no start measured yet: a short while
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

TEST(Admission, AFullBatchBoundsTheQueueByTheMeasuredStartRate) {
  // Short prompts, so the prefill bound alone would admit everything: what
  // limits the start is waiting for running requests to finish.
  AdmissionController a({.max_waiting = 1000, .max_in_flight = 1000, .ttft_budget_s = 1.0});
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(a.try_admit(4).admitted());
  a.observe_prefill(0, 0);
  // Over one second with requests waiting throughout, 4 started: 4/s.
  for (int i = 0; i < 4; ++i) a.started(4);
  a.observe_prefill(16, 1'000'000);
  EXPECT_NEAR(a.start_rate(), 4.0, 1e-9);
  // 16 waiting ahead at 4/s: 4 s to start, over the 1 s budget.
  auto d = a.try_admit(4);
  EXPECT_EQ(d.reason, RejectReason::kTtftBudget);
  EXPECT_GE(d.estimated_start_s, 4.0);
  EXPECT_EQ(d.retry_after_s, 4);
  EXPECT_EQ(d.admit_after_ms, 1000);  // 3.25 s over the budget, capped at a second
  // Once only 2 wait (0.5 s plus its own prefill) it fits again.
  for (int i = 0; i < 14; ++i) a.started(4);
  EXPECT_TRUE(a.try_admit(4).admitted());
}

TEST(Admission, StartsWithoutAQueueDoNotSetTheStartRate) {
  AdmissionController a({.ttft_budget_s = 1.0});
  a.observe_prefill(0, 0);
  ASSERT_TRUE(a.try_admit(4).admitted());
  a.started(4);  // started at once: an arrival rate, not a drain rate
  a.observe_prefill(4, 1'000'000);
  EXPECT_EQ(a.start_rate(), 0.0);
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
