#pragma once

// LaunchedTarget: a server or a whole cluster that `baton bench compare
// --launch` starts for its runs and stops afterwards, so that configurations
// (two mixed instances against one prefill and one decode, say) are compared
// by one command, one at a time on the same machine.
//
// The command runs under /bin/sh in a process group of its own
// (controller::ChildProcess). It is ready when its standard output prints
// Baton's ready line, "serving on http://HOST:PORT/v1" (`baton serve`) or
// "is up: http://HOST:PORT/v1" (`baton up`); that URL is the target. All its
// output (stdout and stderr) goes to a log file; stdout is read through a
// pipe by a thread of this object, so a chatty child never blocks.
//
// Not thread-safe: one owner. The destructor stops the process group
// (SIGTERM, then SIGKILL after a grace period) and joins the reader.

#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"

namespace baton::bench {

class LaunchedTarget {
 public:
  // Starts `command` and waits until its ready line, the child's exit, or
  // `timeout`. Errors: kUnavailable when it cannot start, exits first (the
  // message quotes the log's last lines), or is not ready in time.
  static Result<std::unique_ptr<LaunchedTarget>> start(const std::string& command,
                                                       const std::string& log_path,
                                                       std::chrono::milliseconds timeout);
  ~LaunchedTarget();
  LaunchedTarget(const LaunchedTarget&) = delete;
  LaunchedTarget& operator=(const LaunchedTarget&) = delete;

  // "http://HOST:PORT" from the ready line (without "/v1").
  const std::string& base_url() const;

  struct Impl;

 private:
  explicit LaunchedTarget(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The URL in a ready line of `output`, or "" (pure; for tests).
std::string find_ready_url(const std::string& output);

}  // namespace baton::bench
