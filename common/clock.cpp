#include "common/clock.h"

#include "common/status.h"

namespace baton {

Clock::SystemTime Clock::wall_now() const { return std::chrono::system_clock::now(); }

Clock::TimePoint SteadyClock::now() const { return std::chrono::steady_clock::now(); }

Clock::SystemTime SteadyClock::wall_now() const { return std::chrono::system_clock::now(); }

const SteadyClock& SteadyClock::instance() {
  // Stateless, so sharing one instance hides no state.
  static const SteadyClock clock;
  return clock;
}

namespace {
// 2024-01-01T00:00:00Z: a fixed, recognisable wall time keeps test output stable.
constexpr std::chrono::seconds kFakeWallEpoch{1704067200};
// A day past the steady epoch, so `now() - some_duration` in code under test
// never goes below the epoch.
constexpr std::chrono::hours kFakeSteadyStart{24};
}  // namespace

FakeClock::FakeClock() : FakeClock(TimePoint(kFakeSteadyStart), SystemTime(kFakeWallEpoch)) {}

FakeClock::FakeClock(TimePoint start, SystemTime wall_start) : now_(start), wall_(wall_start) {}

Clock::TimePoint FakeClock::now() const {
  std::lock_guard lock(mu_);
  return now_;
}

Clock::SystemTime FakeClock::wall_now() const {
  std::lock_guard lock(mu_);
  return wall_;
}

void FakeClock::advance(Duration d) {
  BATON_CHECK_MSG(d >= Duration::zero(), "FakeClock::advance with a negative duration");
  std::lock_guard lock(mu_);
  now_ += d;
  wall_ += std::chrono::duration_cast<SystemTime::duration>(d);
}

void FakeClock::set(TimePoint t) {
  std::lock_guard lock(mu_);
  BATON_CHECK_MSG(t >= now_, "FakeClock::set would move monotonic time backwards");
  wall_ += std::chrono::duration_cast<SystemTime::duration>(t - now_);
  now_ = t;
}

void FakeClock::set_wall(SystemTime t) {
  std::lock_guard lock(mu_);
  wall_ = t;
}

Clock::Duration Deadline::remaining(const Clock& clock) const {
  if (is_never()) return Duration::max();
  TimePoint now = clock.now();
  return now >= at_ ? Duration::zero() : at_ - now;
}

}  // namespace baton
