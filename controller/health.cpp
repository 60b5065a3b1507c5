#include "controller/health.h"

#include <fmt/format.h>

namespace baton::controller {

std::string_view health_name(HealthState state) {
  switch (state) {
    case HealthState::kUnknown:
      return "unknown";
    case HealthState::kHealthy:
      return "healthy";
    case HealthState::kUnhealthy:
      return "unhealthy";
  }
  return "unknown";
}

namespace {

HealthStep move_to(const InstanceHealth& previous, InstanceHealth next, HealthState to,
                   Clock::TimePoint at, std::string reason) {
  HealthStep step;
  step.transition = HealthTransition{previous.state, to, std::move(reason)};
  next.state = to;
  next.since = at;
  step.next = std::move(next);
  return step;
}

}  // namespace

HealthStep observe(const HealthPolicy& policy, const InstanceHealth& previous, const Probe& probe) {
  InstanceHealth next = previous;
  if (probe.ok) {
    next.consecutive_ok = previous.consecutive_ok + 1;
    next.consecutive_failed = 0;
    next.last_ok = probe.at;
    if (previous.state == HealthState::kUnknown) {
      return move_to(previous, next, HealthState::kHealthy, probe.at, "first successful probe");
    }
    if (previous.state == HealthState::kUnhealthy &&
        next.consecutive_ok >= policy.recover_threshold) {
      return move_to(previous, next, HealthState::kHealthy, probe.at,
                     fmt::format("{} consecutive successful probes", next.consecutive_ok));
    }
    return HealthStep{next, std::nullopt};
  }
  next.consecutive_failed = previous.consecutive_failed + 1;
  next.consecutive_ok = 0;
  next.last_error = probe.detail;
  if (previous.state != HealthState::kUnhealthy &&
      next.consecutive_failed >= policy.fail_threshold) {
    return move_to(previous, next, HealthState::kUnhealthy, probe.at,
                   fmt::format("{} consecutive failed probes, last: {}", next.consecutive_failed,
                               probe.detail));
  }
  return HealthStep{next, std::nullopt};
}

HealthStep check_silence(const HealthPolicy& policy, const InstanceHealth& previous,
                         Clock::TimePoint now) {
  if (previous.state != HealthState::kHealthy || !previous.last_ok ||
      now - *previous.last_ok < policy.max_silence) {
    return HealthStep{previous, std::nullopt};
  }
  InstanceHealth next = previous;
  next.consecutive_ok = 0;
  return move_to(previous, next, HealthState::kUnhealthy, now,
                 fmt::format("no successful probe for {:.1f}s",
                             std::chrono::duration<double>(now - *previous.last_ok).count()));
}

}  // namespace baton::controller
