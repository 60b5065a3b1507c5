#pragma once

// Supervisor: keeps a set of named child processes running (the instances
// and the gateway of `baton up`), restarting one that exits with an
// exponential backoff, and stopping them all in reverse order.
//
//   Supervisor sup(RestartPolicy{});
//   sup.add("p0", spec);
//   while (!done) {
//     for (auto& e : sup.poll(deadline, signal_fd, &signalled)) print(e);
//   }
//   sup.stop_all(10s);
//
// poll() is the only place time passes: it waits (poll(2) on the children's
// pidfds and an optional extra fd) until a child exits, a restart is due,
// the extra fd is readable, or the deadline. Nothing sleeps.
//
// Not thread-safe: one owner thread, which must live as long as the children
// (they get SIGTERM when the thread that spawned them ends).

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"
#include "controller/child_process.h"

namespace baton::controller {

struct RestartPolicy {
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  double factor = 2.0;
  // A child that ran this long before exiting starts again from the initial
  // backoff: it was not crash-looping.
  std::chrono::milliseconds stable_after{60000};
};

// The wait before restart number `consecutive_failures` (1 for the first
// restart after a stable run): initial * factor^(n-1), at most max. Pure.
std::chrono::milliseconds restart_delay(const RestartPolicy& policy, int consecutive_failures);

struct SupervisorEvent {
  enum class Kind { kExited, kRestarted, kRestartFailed };
  Kind kind = Kind::kExited;
  std::string name;
  std::string message;  // one line for the terminal
};

struct ChildState {
  std::string name;
  pid_t pid = -1;
  bool running = false;
  int restarts = 0;
  int consecutive_failures = 0;
  std::optional<Clock::TimePoint> restart_at;  // while waiting to restart
  std::string last_exit;                       // describe_exit() of the last exit
};

class Supervisor {
 public:
  explicit Supervisor(RestartPolicy policy) : policy_(policy) {}
  ~Supervisor();  // stop_all with a short grace
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a child under a unique name. Errors: a duplicate name, spawn
  // failures.
  Status add(std::string name, ChildSpec spec);

  // See the file comment. `extra_ready` (when given) tells whether extra_fd
  // became readable.
  std::vector<SupervisorEvent> poll(Clock::TimePoint deadline, int extra_fd = -1,
                                    bool* extra_ready = nullptr);

  // SIGTERM to every child, newest first, each given up to `grace` before
  // SIGKILL; pending restarts are dropped. Idempotent.
  void stop_all(std::chrono::milliseconds grace);

  // Replaces the spec a child is restarted with (e.g. after a role change);
  // the running process is left alone. kNotFound for an unknown name.
  Status set_spec(const std::string& name, ChildSpec spec);

  // Sends `sig` to a running child's process group (e.g. SIGKILL to one that
  // stopped answering: poll() then restarts it as for a crash). False when
  // there is no such running child.
  bool signal(const std::string& name, int sig);

  std::vector<ChildState> children() const;
  std::optional<ChildState> child(const std::string& name) const;

 private:
  struct Entry {
    ChildState state;
    ChildSpec spec;
    ChildProcess process;
    Clock::TimePoint started{};
  };
  void reap(Entry& e, Clock::TimePoint now, std::vector<SupervisorEvent>& events);
  void restart_due(Entry& e, Clock::TimePoint now, std::vector<SupervisorEvent>& events);

  RestartPolicy policy_;
  std::vector<Entry> entries_;
  bool stopped_ = false;
};

}  // namespace baton::controller
