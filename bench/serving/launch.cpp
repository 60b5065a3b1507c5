#include "bench/serving/launch.h"

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <regex>
#include <thread>

#include "controller/child_process.h"

namespace baton::bench {

namespace {
constexpr auto kStopGrace = std::chrono::seconds(30);
constexpr size_t kKeptOutput = 64 << 10;  // of stdout, for the ready line and errors
}  // namespace

std::string find_ready_url(const std::string& output) {
  static const std::regex ready(R"((?:serving on|is up:)\s+(http://[^\s/]+)/v1)");
  std::smatch m;
  if (std::regex_search(output, m, ready)) return m[1];
  return "";
}

struct LaunchedTarget::Impl {
  controller::ChildProcess child;
  std::string url;
  std::string log_path;
  int read_fd = -1;
  std::thread reader;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable cv;
  std::string output;  // guarded by mu; the last kKeptOutput bytes
  bool eof = false;    // guarded by mu

  // Copies the child's stdout to the log and keeps its tail for the caller.
  void read_loop() {
    FILE* log = std::fopen(log_path.c_str(), "a");
    char buf[4096];
    while (true) {
      pollfd p{read_fd, POLLIN, 0};
      int r = poll(&p, 1, 200);
      if (r == 0) {
        if (stopping.load()) break;  // nothing more, and nobody waits for it
        continue;
      }
      ssize_t n = r > 0 ? read(read_fd, buf, sizeof buf) : -1;
      if (n <= 0) break;
      if (log) {
        std::fwrite(buf, 1, static_cast<size_t>(n), log);
        std::fflush(log);
      }
      std::lock_guard lock(mu);
      output.append(buf, static_cast<size_t>(n));
      if (output.size() > kKeptOutput) output.erase(0, output.size() - kKeptOutput);
      cv.notify_all();
    }
    if (log) std::fclose(log);
    std::lock_guard lock(mu);
    eof = true;
    cv.notify_all();
  }

  void stop() {
    if (child.running()) child.stop(kStopGrace);
    stopping = true;
    if (reader.joinable()) reader.join();
    if (read_fd >= 0) close(read_fd);
    read_fd = -1;
  }

  std::string tail() {
    std::lock_guard lock(mu);
    return output.size() > 2000 ? output.substr(output.size() - 2000) : output;
  }
};

Result<std::unique_ptr<LaunchedTarget>> LaunchedTarget::start(const std::string& command,
                                                              const std::string& log_path,
                                                              std::chrono::milliseconds timeout) {
  auto impl = std::make_unique<Impl>();
  impl->log_path = log_path;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return unavailable("launch: pipe failed");
  controller::ChildSpec spec;
  spec.argv = {"/bin/sh", "-c", command};
  spec.log_path = log_path;  // stderr
  spec.stdout_fd = fds[1];
  auto child = controller::ChildProcess::spawn(spec);
  close(fds[1]);
  if (!child.is_ok()) {
    close(fds[0]);
    return child.status().with_context("launch '" + command + "'");
  }
  impl->child = std::move(*child);
  impl->read_fd = fds[0];
  Impl* raw = impl.get();
  impl->reader = std::thread([raw] { raw->read_loop(); });

  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool ready = false;
  {
    std::unique_lock lock(raw->mu);
    ready = raw->cv.wait_until(lock, deadline, [raw] {
      raw->url = find_ready_url(raw->output);
      return !raw->url.empty() || raw->eof;
    });
    ready = ready && !raw->url.empty();
  }
  if (!ready) {
    bool eof = false;
    {
      std::lock_guard lock(raw->mu);
      eof = raw->eof;
    }
    // Its output ended: it is exiting (or has), so wait for its status.
    bool exited = eof ? impl->child.wait_until(std::chrono::steady_clock::now() + kStopGrace)
                      : impl->child.poll_exit();
    std::string why = exited ? controller::describe_exit(impl->child.wait_status())
                             : "not ready after " + std::to_string(timeout.count() / 1000) + " s";
    impl->stop();
    return unavailable("launch '" + command + "': " + why + " (log " + log_path + "):\n" +
                       impl->tail());
  }
  return std::unique_ptr<LaunchedTarget>(new LaunchedTarget(std::move(impl)));
}

LaunchedTarget::LaunchedTarget(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LaunchedTarget::~LaunchedTarget() { impl_->stop(); }

const std::string& LaunchedTarget::base_url() const { return impl_->url; }

}  // namespace baton::bench
