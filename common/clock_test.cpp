#include "common/clock.h"

#include <gtest/gtest.h>

#include <thread>
#include <vector>

namespace baton {
namespace {

using namespace std::chrono_literals;

TEST(FakeClockTest, MovesOnlyWhenAdvanced) {
  FakeClock clock;
  auto t0 = clock.now();
  auto w0 = clock.wall_now();
  EXPECT_EQ(clock.now(), t0);
  clock.advance(250ms);
  EXPECT_EQ(clock.now() - t0, 250ms);
  EXPECT_EQ(clock.wall_now() - w0, 250ms);
}

TEST(FakeClockTest, StartsAtAFixedWallTime) {
  FakeClock clock;
  EXPECT_EQ(clock.wall_now().time_since_epoch(), std::chrono::seconds(1704067200));
}

TEST(FakeClockTest, SetMovesBothClocksForward) {
  FakeClock clock;
  auto t0 = clock.now();
  auto w0 = clock.wall_now();
  clock.set(t0 + 5s);
  EXPECT_EQ(clock.now(), t0 + 5s);
  EXPECT_EQ(clock.wall_now(), w0 + 5s);
  auto wall = std::chrono::system_clock::time_point(std::chrono::seconds(42));
  clock.set_wall(wall);
  EXPECT_EQ(clock.wall_now(), wall);
  EXPECT_EQ(clock.now(), t0 + 5s);
}

TEST(FakeClockTest, SubtractingDurationsFromStartDoesNotUnderflow) {
  FakeClock clock;
  EXPECT_GT(clock.now() - 1h, Clock::TimePoint{});
}

TEST(FakeClockTest, ConcurrentAdvancesAreAllApplied) {
  FakeClock clock;
  auto t0 = clock.now();
  constexpr int kThreads = 4;
  constexpr int kSteps = 1000;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int j = 0; j < kSteps; ++j) clock.advance(1us);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(clock.now() - t0, std::chrono::microseconds(kThreads * kSteps));
}

TEST(SteadyClockTest, IsMonotonic) {
  const Clock& clock = SteadyClock::instance();
  auto a = clock.now();
  auto b = clock.now();
  EXPECT_LE(a, b);
}

TEST(DeadlineTest, ExpiresExactlyAtItsTimePoint) {
  FakeClock clock;
  Deadline d = Deadline::after(clock, 100ms);
  EXPECT_FALSE(d.expired(clock));
  EXPECT_EQ(d.remaining(clock), 100ms);
  clock.advance(60ms);
  EXPECT_EQ(d.remaining(clock), 40ms);
  clock.advance(40ms);
  EXPECT_TRUE(d.expired(clock));
  EXPECT_EQ(d.remaining(clock), Clock::Duration::zero());
  clock.advance(1s);
  EXPECT_EQ(d.remaining(clock), Clock::Duration::zero());
}

TEST(DeadlineTest, NeverDoesNotExpire) {
  FakeClock clock;
  Deadline d = Deadline::never();
  clock.advance(std::chrono::hours(24 * 365));
  EXPECT_TRUE(d.is_never());
  EXPECT_FALSE(d.expired(clock));
  EXPECT_EQ(d.remaining(clock), Clock::Duration::max());
}

TEST(DeadlineTest, OrdersByTime) {
  FakeClock clock;
  EXPECT_LT(Deadline::after(clock, 1s), Deadline::after(clock, 2s));
  EXPECT_LT(Deadline::after(clock, 1s), Deadline::never());
}

}  // namespace
}  // namespace baton
