#pragma once

// Simulated time and the event queue of `baton sim`.
//
// Time is a double count of seconds since the start of a run. Events at the
// same time run in the order they were pushed (a sequence number breaks
// ties), so a run is a deterministic function of its inputs and seed.
// SimClock turns simulated seconds into the Clock::TimePoint values that the
// gateway's and the controller's pure functions take.
//
// Not thread-safe: one simulation runs on one thread.

#include <chrono>
#include <cstdint>
#include <queue>
#include <vector>

#include "common/clock.h"

namespace baton::sim {

using SimTime = double;  // seconds since the start of the run

enum class EventKind : uint8_t {
  kArrival,         // the next request reaches the gateway
  kPrefillAttempt,  // a request reaches a prefill (or mixed) instance
  kPrefillReject,   // that instance's rejection reaches the gateway
  kStepDone,        // an instance finished its current engine step
  kTransferDone,    // a request's KV has arrived at its decode instance
  kReport,          // load reports are refreshed (stale-report routing)
  kControl,         // the controller's round
};

struct Event {
  SimTime at = 0;
  uint64_t seq = 0;
  EventKind kind = EventKind::kArrival;
  uint32_t target = 0;  // an instance, when the kind needs one
  int32_t slot = -1;    // a request's slot, when the kind needs one
};

class EventQueue {
 public:
  void push(SimTime at, EventKind kind, uint32_t target = 0, int32_t slot = -1) {
    heap_.push(Event{at, next_seq_++, kind, target, slot});
  }
  bool empty() const { return heap_.empty(); }
  // The earliest event; advances now() to its time. Precondition: !empty().
  Event pop() {
    Event e = heap_.top();
    heap_.pop();
    now_ = e.at;
    ++processed_;
    return e;
  }
  SimTime now() const { return now_; }
  uint64_t processed() const { return processed_; }
  size_t size() const { return heap_.size(); }

 private:
  struct Later {
    bool operator()(const Event& a, const Event& b) const {
      return a.at != b.at ? a.at > b.at : a.seq > b.seq;
    }
  };
  std::priority_queue<Event, std::vector<Event>, Later> heap_;
  uint64_t next_seq_ = 0;
  uint64_t processed_ = 0;
  SimTime now_ = 0;
};

// Simulated seconds as the steady time points of common/clock.h: the start
// of a run is a fixed point far from zero, like FakeClock's.
class SimClock final : public Clock {
 public:
  explicit SimClock(const EventQueue& queue) : queue_(queue) {}
  TimePoint now() const override { return at(queue_.now()); }
  static TimePoint at(SimTime t) {
    return kStart + std::chrono::duration_cast<Duration>(std::chrono::duration<double>(t));
  }

 private:
  static constexpr TimePoint kStart = TimePoint(std::chrono::hours(24 * 365));
  const EventQueue& queue_;
};

}  // namespace baton::sim
