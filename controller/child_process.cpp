#include "controller/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

extern char** environ;

namespace baton::controller {

ChildProcess::~ChildProcess() {
  if (running()) {
    signal(SIGKILL);
    wait_until(Clock::TimePoint::max());
  }
  reset();
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept { *this = std::move(other); }

ChildProcess& ChildProcess::operator=(ChildProcess&& other) noexcept {
  if (this != &other) {
    if (running()) {
      signal(SIGKILL);
      wait_until(Clock::TimePoint::max());
    }
    reset();
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    exited_ = other.exited_;
    status_ = other.status_;
    other.pid_ = -1;
    other.pidfd_ = -1;
    other.exited_ = false;
  }
  return *this;
}

void ChildProcess::reset() {
  if (pidfd_ >= 0) close(pidfd_);
  pidfd_ = -1;
  pid_ = -1;
}

Result<ChildProcess> ChildProcess::spawn(const ChildSpec& spec) {
  if (spec.argv.empty()) return invalid_argument("spawn: empty argv");
  // Everything the child needs is built before fork: after it, only
  // async-signal-safe calls.
  std::vector<char*> argv;
  for (const std::string& a : spec.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_store;
  for (char** e = environ; *e != nullptr; ++e) env_store.emplace_back(*e);
  for (const std::string& e : spec.env) env_store.push_back(e);
  std::vector<char*> envp;
  for (std::string& e : env_store) envp.push_back(e.data());
  envp.push_back(nullptr);
  int log_fd = -1;
  if (!spec.log_path.empty()) {
    log_fd = open(spec.log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
      return unavailable("spawn: opening " + spec.log_path + ": " + std::strerror(errno));
    }
  }
  const int stdout_fd = spec.stdout_fd;
  const pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    if (log_fd >= 0) close(log_fd);
    return unavailable(std::string("spawn: fork: ") + std::strerror(err));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);  // the parent is already gone
    setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);  // the parent may block signals
    if (log_fd >= 0) {
      dup2(log_fd, STDOUT_FILENO);
      dup2(log_fd, STDERR_FILENO);
    }
    if (stdout_fd >= 0) dup2(stdout_fd, STDOUT_FILENO);
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  if (log_fd >= 0) close(log_fd);
  setpgid(pid, pid);  // also from here, so signal() works before the child runs
  ChildProcess c;
  c.pid_ = pid;
  // Through syscall(): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++.
  c.pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  return c;
}

bool ChildProcess::poll_exit() {
  if (pid_ <= 0) return false;
  if (exited_) return true;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    exited_ = true;
    status_ = status;
    return true;
  }
  return false;
}

bool ChildProcess::wait_until(Clock::TimePoint deadline) {
  while (!poll_exit()) {
    if (pid_ <= 0) return false;
    auto now = SteadyClock::instance().now();
    if (now >= deadline) return false;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count() + 1;
    int timeout = static_cast<int>(std::min<int64_t>(left, 1000));
    if (pidfd_ >= 0) {
      pollfd p{pidfd_, POLLIN, 0};
      poll(&p, 1, timeout);
    } else {
      // No pidfd (very old kernel): a blocking reap in bounded slices.
      poll(nullptr, 0, std::min(timeout, 10));
    }
  }
  return true;
}

void ChildProcess::signal(int sig) {
  if (pid_ <= 0 || exited_) return;
  if (kill(-pid_, sig) != 0) kill(pid_, sig);
}

void ChildProcess::stop(std::chrono::milliseconds grace) {
  if (!running()) return;
  signal(SIGTERM);
  if (wait_until(SteadyClock::instance().now() + grace)) return;
  signal(SIGKILL);
  wait_until(Clock::TimePoint::max());
}

std::string describe_exit(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = strsignal(sig);
    return "killed by signal " + std::to_string(sig) + " (" + (name ? name : "?") + ")";
  }
  return "ended (status " + std::to_string(status) + ")";
}

}  // namespace baton::controller
