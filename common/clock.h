#pragma once

// Clocks are injected, never read from globals, so that schedulers, leases and
// timeouts can be tested with a FakeClock that only moves when told to.
//
// Clock::now() is monotonic (std::chrono::steady_clock time points); use it for
// every timeout, deadline and duration. wall_now() is calendar time
// (system_clock), only for timestamps shown to people or other hosts.
// All clocks here are thread-safe.

#include <chrono>
#include <mutex>

namespace baton {

class Clock {
 public:
  using Duration = std::chrono::steady_clock::duration;
  using TimePoint = std::chrono::steady_clock::time_point;
  using SystemTime = std::chrono::system_clock::time_point;

  virtual ~Clock() = default;
  // Monotonic time. Thread-safe.
  virtual TimePoint now() const = 0;
  // Wall-clock time. Thread-safe. The default reads the system clock.
  virtual SystemTime wall_now() const;
};

// The real clocks. Stateless; one shared instance is available through
// SteadyClock::instance() for code that has no clock injected.
class SteadyClock final : public Clock {
 public:
  TimePoint now() const override;
  SystemTime wall_now() const override;
  static const SteadyClock& instance();
};

// A clock that moves only when advance() or set() is called. Both times move
// together: advance(d) adds d to now() and to wall_now(). Thread-safe.
class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary fixed steady time point (far from zero so that
  // subtracting durations never underflows) and at 2024-01-01T00:00:00Z.
  FakeClock();
  FakeClock(TimePoint start, SystemTime wall_start);

  TimePoint now() const override;
  SystemTime wall_now() const override;

  // Moves both times forward by d (negative d is a programmer error).
  void advance(Duration d);
  // Sets the monotonic time; it may not move backwards (programmer error).
  void set(TimePoint t);
  void set_wall(SystemTime t);

 private:
  mutable std::mutex mu_;
  TimePoint now_;
  SystemTime wall_;
};

// A point in monotonic time after which some work should give up. A value
// type; cheap to copy. Deadline::never() never expires.
class Deadline {
 public:
  using TimePoint = Clock::TimePoint;
  using Duration = Clock::Duration;

  explicit Deadline(TimePoint at) : at_(at) {}
  // A deadline `d` after the clock's now().
  static Deadline after(const Clock& clock, Duration d) { return Deadline(clock.now() + d); }
  static Deadline never() { return Deadline(TimePoint::max()); }

  TimePoint time_point() const { return at_; }
  bool is_never() const { return at_ == TimePoint::max(); }
  bool expired(const Clock& clock) const { return clock.now() >= at_; }
  // Time left, zero when expired; Duration::max() for never().
  Duration remaining(const Clock& clock) const;

  auto operator<=>(const Deadline&) const = default;

 private:
  TimePoint at_;
};

}  // namespace baton
