#include "controller/supervisor.h"

#include <poll.h>

#include <algorithm>
#include <cmath>

namespace baton::controller {

std::chrono::milliseconds restart_delay(const RestartPolicy& p, int consecutive_failures) {
  int n = std::max(1, consecutive_failures);
  double ms = static_cast<double>(p.initial_backoff.count()) * std::pow(p.factor, n - 1);
  ms = std::min(ms, static_cast<double>(p.max_backoff.count()));
  return std::chrono::milliseconds(static_cast<int64_t>(ms));
}

Supervisor::~Supervisor() { stop_all(std::chrono::seconds(5)); }

Status Supervisor::add(std::string name, ChildSpec spec) {
  for (const Entry& e : entries_) {
    if (e.state.name == name) return invalid_argument("supervisor: duplicate child " + name);
  }
  BATON_ASSIGN_OR_RETURN(ChildProcess p, ChildProcess::spawn(spec));
  Entry e;
  e.state.name = std::move(name);
  e.state.pid = p.pid();
  e.state.running = true;
  e.spec = std::move(spec);
  e.process = std::move(p);
  e.started = SteadyClock::instance().now();
  entries_.push_back(std::move(e));
  stopped_ = false;
  return Status::ok();
}

void Supervisor::reap(Entry& e, Clock::TimePoint now, std::vector<SupervisorEvent>& events) {
  if (!e.state.running || !e.process.poll_exit()) return;
  e.state.running = false;
  e.state.last_exit = describe_exit(e.process.wait_status());
  if (now - e.started >= policy_.stable_after) e.state.consecutive_failures = 0;
  ++e.state.consecutive_failures;
  auto delay = restart_delay(policy_, e.state.consecutive_failures);
  e.state.restart_at = now + delay;
  char secs[32];
  std::snprintf(secs, sizeof(secs), "%.1f", std::chrono::duration<double>(delay).count());
  events.push_back({SupervisorEvent::Kind::kExited, e.state.name,
                    e.state.name + " (pid " + std::to_string(e.state.pid) + ") " +
                        e.state.last_exit + "; restarting in " + secs + " s"});
}

void Supervisor::restart_due(Entry& e, Clock::TimePoint now, std::vector<SupervisorEvent>& events) {
  if (e.state.running || !e.state.restart_at || now < *e.state.restart_at) return;
  auto p = ChildProcess::spawn(e.spec);
  if (!p.is_ok()) {
    ++e.state.consecutive_failures;
    e.state.restart_at = now + restart_delay(policy_, e.state.consecutive_failures);
    events.push_back({SupervisorEvent::Kind::kRestartFailed, e.state.name,
                      e.state.name + " could not be restarted: " + p.status().to_string()});
    return;
  }
  e.process = std::move(*p);
  e.state.pid = e.process.pid();
  e.state.running = true;
  e.state.restart_at.reset();
  ++e.state.restarts;
  e.started = now;
  events.push_back({SupervisorEvent::Kind::kRestarted, e.state.name,
                    e.state.name + " restarted (pid " + std::to_string(e.state.pid) + ", restart " +
                        std::to_string(e.state.restarts) + ")"});
}

std::vector<SupervisorEvent> Supervisor::poll(Clock::TimePoint deadline, int extra_fd,
                                              bool* extra_ready) {
  std::vector<SupervisorEvent> events;
  if (extra_ready) *extra_ready = false;
  while (true) {
    auto now = SteadyClock::instance().now();
    for (Entry& e : entries_) reap(e, now, events);
    if (!stopped_) {
      for (Entry& e : entries_) restart_due(e, now, events);
    }
    if (!events.empty() || now >= deadline) return events;
    // Wait for an exit, the extra fd, the next restart or the deadline.
    Clock::TimePoint until = deadline;
    std::vector<pollfd> fds;
    for (Entry& e : entries_) {
      if (e.state.running && e.process.exit_fd() >= 0) {
        fds.push_back({e.process.exit_fd(), POLLIN, 0});
      }
      if (e.state.restart_at && !stopped_) until = std::min(until, *e.state.restart_at);
    }
    if (extra_fd >= 0) fds.push_back({extra_fd, POLLIN, 0});
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
    int timeout = static_cast<int>(std::clamp<int64_t>(left, 0, 60000));
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n > 0 && extra_fd >= 0 && (fds.back().revents & POLLIN)) {
      if (extra_ready) *extra_ready = true;
      now = SteadyClock::instance().now();
      for (Entry& e : entries_) reap(e, now, events);
      return events;
    }
  }
}

void Supervisor::stop_all(std::chrono::milliseconds grace) {
  stopped_ = true;
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    it->state.restart_at.reset();
    if (it->state.running) {
      it->process.stop(grace);
      it->state.running = false;
      it->state.last_exit = describe_exit(it->process.wait_status());
    }
  }
}

Status Supervisor::set_spec(const std::string& name, ChildSpec spec) {
  for (Entry& e : entries_) {
    if (e.state.name == name) {
      e.spec = std::move(spec);
      return Status::ok();
    }
  }
  return not_found("supervisor: no child " + name);
}

bool Supervisor::signal(const std::string& name, int sig) {
  for (Entry& e : entries_) {
    if (e.state.name == name && e.state.running) {
      e.process.signal(sig);
      return true;
    }
  }
  return false;
}

std::vector<ChildState> Supervisor::children() const {
  std::vector<ChildState> out;
  for (const Entry& e : entries_) out.push_back(e.state);
  return out;
}

std::optional<ChildState> Supervisor::child(const std::string& name) const {
  for (const Entry& e : entries_) {
    if (e.state.name == name) return e.state;
  }
  return std::nullopt;
}

}  // namespace baton::controller
