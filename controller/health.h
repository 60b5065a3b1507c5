#pragma once

// Instance health as a small state machine over probe results, a pure
// function like the ratio policy: (policy, previous health, one probe) ->
// (next health, and the transition when there is one, with its reason).
//
// An instance starts kUnknown (not routed). Its first successful probe makes
// it kHealthy; `fail_threshold` consecutive failed probes (no answer within
// the probe deadline, a refused connection, or a 5xx) make it kUnhealthy,
// i.e. taken out of routing; `recover_threshold` consecutive successes bring
// it back. An instance that has not answered successfully for `max_silence`
// is out even if fewer probes were recorded (the probing itself stalled).
// Consecutive thresholds keep a single lost probe from flapping routing.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.h"

namespace baton::controller {

enum class HealthState { kUnknown, kHealthy, kUnhealthy };
std::string_view health_name(HealthState state);  // "unknown", "healthy", "unhealthy"

struct HealthPolicy {
  int fail_threshold = 3;
  int recover_threshold = 2;
  std::chrono::milliseconds max_silence{15000};
};

struct Probe {
  Clock::TimePoint at{};
  bool ok = false;
  std::string detail;  // why it failed ("deadline_exceeded: ...", "HTTP 503")
};

struct InstanceHealth {
  HealthState state = HealthState::kUnknown;
  int consecutive_ok = 0;
  int consecutive_failed = 0;
  std::optional<Clock::TimePoint> last_ok;
  std::optional<Clock::TimePoint> since;  // when the current state began
  std::string last_error;

  // Whether requests may be routed to it.
  bool routable() const { return state == HealthState::kHealthy; }
};

struct HealthTransition {
  HealthState from = HealthState::kUnknown;
  HealthState to = HealthState::kUnknown;
  std::string reason;
};

struct HealthStep {
  InstanceHealth next;
  std::optional<HealthTransition> transition;
};

// One probe result. Pure.
HealthStep observe(const HealthPolicy& policy, const InstanceHealth& previous, const Probe& probe);

// No probe, just time passing: takes a healthy instance out after max_silence
// without a successful probe. Pure.
HealthStep check_silence(const HealthPolicy& policy, const InstanceHealth& previous,
                         Clock::TimePoint now);

}  // namespace baton::controller
