#include "gateway/forwarding.h"

#include <gtest/gtest.h>

namespace baton::gateway {
namespace {

using std::chrono::milliseconds;

TEST(Forwarding, TriesUpToTheBound) {
  PdConfig pd;
  pd.max_prefill_tries = 3;
  const Clock::TimePoint t0{};
  const auto deadline = t0 + milliseconds(100);
  const auto lease = t0 + milliseconds(1000);
  EXPECT_TRUE(may_forward_prefill(pd, 0, t0, deadline, lease));
  EXPECT_TRUE(may_forward_prefill(pd, 2, t0, deadline, lease));
  EXPECT_FALSE(may_forward_prefill(pd, 3, t0, deadline, lease));
}

TEST(Forwarding, StopsAtTheDeadlineOrTheLease) {
  PdConfig pd;
  const Clock::TimePoint t0{};
  EXPECT_FALSE(may_forward_prefill(pd, 1, t0 + milliseconds(100), t0 + milliseconds(100),
                                   t0 + milliseconds(1000)));
  EXPECT_FALSE(may_forward_prefill(pd, 1, t0 + milliseconds(50), t0 + milliseconds(100),
                                   t0 + milliseconds(50)));
  EXPECT_TRUE(may_forward_prefill(pd, 1, t0 + milliseconds(99), t0 + milliseconds(100),
                                  t0 + milliseconds(1000)));
}

}  // namespace
}  // namespace baton::gateway
