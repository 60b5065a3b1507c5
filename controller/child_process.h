#pragma once

// ChildProcess: one program started by this process (an instance, the
// gateway, or etcd in a test), with deadline-bounded waits.
//
// The child runs in a process group of its own (so a Ctrl-C at the terminal
// reaches only the parent, which then stops its children in order), with
// stdout and stderr appended to a log file, and receives SIGTERM if the
// thread that spawned it ends (PR_SET_PDEATHSIG), so a parent that dies never
// leaves instances behind. Spawn from a thread that lives as long as the child.
//
// Waits use a pidfd, so waiting is a poll() with a timeout: no sleeps, no
// SIGCHLD handler. Move-only; not thread-safe (one owner).

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace baton::controller {

struct ChildSpec {
  std::vector<std::string> argv;  // argv[0] is the program path (no PATH lookup)
  std::string log_path;           // stdout and stderr appended here; empty: inherited
  int stdout_fd = -1;             // when >= 0, stdout goes here instead (e.g. a pipe)
  std::vector<std::string> env;   // extra NAME=value entries on top of ours
};

class ChildProcess {
 public:
  ChildProcess() = default;
  ~ChildProcess();  // kills (SIGKILL) and reaps a child still running
  ChildProcess(ChildProcess&& other) noexcept;
  ChildProcess& operator=(ChildProcess&& other) noexcept;
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  // Errors: kInvalidArgument for an empty argv, kUnavailable when fork or the
  // log file fails. A program that cannot be executed exits with 127.
  static Result<ChildProcess> spawn(const ChildSpec& spec);

  pid_t pid() const { return pid_; }
  // True while started and not yet reaped.
  bool running() const { return pid_ > 0 && !exited_; }
  // A file descriptor readable once the child exits (for poll); -1 if none.
  int exit_fd() const { return pidfd_; }

  // Reaps the child if it has exited; true then. Never blocks.
  bool poll_exit();
  // Waits until the child exits or the deadline; true when it exited.
  bool wait_until(Clock::TimePoint deadline);
  // The raw wait status once exited (see describe_exit).
  int wait_status() const { return status_; }

  // Sends a signal to the child's process group. No-op once reaped.
  void signal(int sig);
  // SIGTERM, up to `grace` for it to exit, then SIGKILL; always reaps.
  void stop(std::chrono::milliseconds grace);

 private:
  void reset();

  pid_t pid_ = -1;
  int pidfd_ = -1;
  bool exited_ = false;
  int status_ = 0;
};

// "exited with code 1", "killed by signal 9 (Killed)".
std::string describe_exit(int wait_status);

}  // namespace baton::controller
