// `baton up` as a user runs it: the real binary starting real instances (and
// the gateway) on loopback. A crashed instance is restarted and serves again;
// SIGTERM stops everything.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>

#include "common/net.h"
#include "controller/child_process.h"
#include "protocol/http_client.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using baton::SteadyClock;
using baton::controller::ChildProcess;
using baton::controller::ChildSpec;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";

// `baton up` with its stdout on a pipe that the test reads line by line.
class Up {
 public:
  explicit Up(std::vector<std::string> args) {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_fd_ = fds[0];
    ChildSpec spec;
    spec.argv = {kBaton, "up"};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.stdout_fd = fds[1];
    auto p = ChildProcess::spawn(spec);
    close(fds[1]);
    EXPECT_TRUE(p.is_ok()) << p.status().to_string();
    if (p.is_ok()) process_ = std::move(*p);
  }
  ~Up() {
    process_.stop(10s);
    close(read_fd_);
  }

  // Reads output until a line matches `re` (returns its match) or the
  // deadline passes or the output ends (empty match).
  std::smatch wait_for(const std::string& re, std::chrono::seconds timeout) {
    const std::regex pattern(re);
    auto deadline = SteadyClock::instance().now() + timeout;
    while (true) {
      size_t nl;
      while ((nl = pending_.find('\n')) != std::string::npos) {
        lines_.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
        std::smatch m;
        if (std::regex_search(lines_.back(), m, pattern)) return m;
      }
      auto left = deadline - SteadyClock::instance().now();
      if (left <= 0s) return {};
      pollfd p{read_fd_, POLLIN, 0};
      int n = ::poll(&p, 1,
                     static_cast<int>(
                         std::chrono::duration_cast<std::chrono::milliseconds>(left).count() + 1));
      if (n <= 0) continue;
      char buf[4096];
      ssize_t got = read(read_fd_, buf, sizeof(buf));
      if (got <= 0) return {};  // the output ended
      pending_.append(buf, static_cast<size_t>(got));
    }
  }

  // Whether a line read so far matches `re`, else wait_for() it.
  bool saw_or_wait_for(const std::string& re, std::chrono::seconds timeout) {
    const std::regex pattern(re);
    for (const auto& l : lines_) {
      if (std::regex_search(l, pattern)) return true;
    }
    return !wait_for(re, timeout).empty();
  }

  std::string output() const {
    std::string all;
    for (const auto& l : lines_) all += l + "\n";
    return all + pending_;
  }
  ChildProcess& process() { return process_; }

 private:
  ChildProcess process_;
  int read_fd_ = -1;
  std::string pending_;
  std::vector<std::string> lines_;
};

baton::Result<baton::protocol::HttpResponse> complete(uint16_t port) {
  return baton::protocol::http_request(
      "127.0.0.1", port, "POST", "/v1/completions",
      R"({"model": "baton-tiny", "prompt": "Hello", "max_tokens": 4})",
      {{"Content-Type", "application/json"}}, baton::protocol::deadline_in(30s));
}

TEST(BatonUp, ACrashedInstanceIsRestartedAndServesAgain) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-" + std::to_string(getpid()));
  const uint16_t port = *baton::free_loopback_port();
  Up up({"--mixed", "1", "--port", std::to_string(port), "--log-dir", logs.string(),
         "--serve-arg=--threads=1", "--serve-arg=--kv-cache-mb=64"});
  auto endpoint = up.wait_for(R"(Baton is up: http://127\.0\.0\.1:(\d+)/v1)", 120s);
  ASSERT_FALSE(endpoint.empty()) << up.output();
  const uint16_t api = static_cast<uint16_t>(std::stoi(endpoint[1]));
  auto instance = up.wait_for(R"(^  m0  mixed  http://127\.0\.0\.1:(\d+)  pid (\d+))", 5s);
  ASSERT_FALSE(instance.empty()) << up.output();
  const uint16_t m0_port = static_cast<uint16_t>(std::stoi(instance[1]));
  const pid_t m0 = std::stoi(instance[2]);
  ASSERT_FALSE(up.wait_for(R"(^  curl http://127\.0\.0\.1:\d+/v1/completions)", 5s).empty())
      << up.output();
  ASSERT_FALSE(up.wait_for("Ctrl-C stops the cluster", 5s).empty()) << up.output();

  auto first = complete(api);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  EXPECT_EQ(first->status, 200) << first->body;

  ASSERT_EQ(kill(m0, SIGKILL), 0);
  ASSERT_FALSE(up.wait_for(R"(m0 \(pid \d+\) killed by signal 9)", 30s).empty()) << up.output();
  auto back = up.wait_for(R"(m0 is serving again \(pid (\d+))", 120s);
  ASSERT_FALSE(back.empty()) << up.output();
  const pid_t m0_again = std::stoi(back[1]);
  EXPECT_NE(m0_again, m0);

  // The instance serves at once on its old port...
  auto direct = complete(m0_port);
  ASSERT_TRUE(direct.is_ok()) << direct.status().to_string();
  EXPECT_EQ(direct->status, 200) << direct->body;
  // ...and the endpoint too, once its router has seen the instance back
  // (bounded: the waits between tries are waits on up's output).
  int status = 0;
  auto deadline = SteadyClock::instance().now() + 60s;
  while (SteadyClock::instance().now() < deadline) {
    auto r = complete(api);
    status = r.is_ok() ? r->status : 0;
    if (status == 200) break;
    up.wait_for("^$never", 1s);
  }
  EXPECT_EQ(status, 200);

  up.process().signal(SIGTERM);
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 0");
  up.wait_for("^Stopped", 5s);
  EXPECT_NE(up.output().find("Stopped."), std::string::npos) << up.output();
  EXPECT_NE(kill(m0_again, 0), 0) << "the instance was stopped with the cluster";
  EXPECT_EQ(errno, ESRCH);
  fs::remove_all(logs);
}

TEST(BatonUp, AnInstanceThatStopsAnsweringIsRestarted) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-hang-" + std::to_string(getpid()));
  Up up({"--mixed", "1", "--port", std::to_string(*baton::free_loopback_port()), "--log-dir",
         logs.string(), "--restart-unhealthy-after", "1", "--serve-arg=--threads=1",
         "--serve-arg=--kv-cache-mb=64"});
  auto instance = up.wait_for(R"(^  m0  mixed  http://127\.0\.0\.1:(\d+)  pid (\d+))", 120s);
  ASSERT_FALSE(instance.empty()) << up.output();
  const uint16_t m0_port = static_cast<uint16_t>(std::stoi(instance[1]));
  const pid_t m0 = std::stoi(instance[2]);
  ASSERT_FALSE(up.wait_for("Ctrl-C stops the cluster", 5s).empty()) << up.output();

  // Frozen: the process lives, its socket accepts, nothing answers.
  ASSERT_EQ(kill(m0, SIGSTOP), 0);
  ASSERT_FALSE(up.wait_for(R"(controller: m0 .* out: unhealthy)", 60s).empty()) << up.output();
  ASSERT_FALSE(up.wait_for("m0 has not answered its health checks", 60s).empty()) << up.output();
  auto back = up.wait_for(R"(m0 is serving again \(pid (\d+))", 120s);
  ASSERT_FALSE(back.empty()) << up.output();
  EXPECT_NE(std::stoi(back[1]), m0);
  auto direct = complete(m0_port);
  ASSERT_TRUE(direct.is_ok()) << direct.status().to_string();
  EXPECT_EQ(direct->status, 200) << direct->body;
  // The controller takes it back into routing.
  EXPECT_TRUE(up.saw_or_wait_for(R"(controller: m0 .* in: healthy)", 30s)) << up.output();

  up.process().signal(SIGTERM);
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 0");
  fs::remove_all(logs);
}

TEST(BatonUp, WithNoShapeItServesTheDefaultModelAndSurvivesADecodeCrash) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-default-" + std::to_string(getpid()));
  Up up({"--port", std::to_string(*baton::free_loopback_port()), "--log-dir", logs.string(),
         "--serve-arg=--threads=1", "--serve-arg=--kv-cache-mb=64"});
  auto banner = up.wait_for(R"(Baton is up: http://127\.0\.0\.1:(\d+)/v1  \((.*),)", 120s);
  ASSERT_FALSE(banner.empty()) << up.output();
  const uint16_t api = static_cast<uint16_t>(std::stoi(banner[1]));
  const bool pd = banner[2] == "1 prefill + 1 decode";
  if (!pd) EXPECT_EQ(banner[2], "1 mixed") << "without P/D roles in this build";
  const std::string victim = pd ? "d0" : "m0";
  auto line = up.wait_for("^  " + victim + R"(  \w+  http://127\.0\.0\.1:\d+  pid (\d+))", 5s);
  ASSERT_FALSE(line.empty()) << up.output();
  ASSERT_FALSE(up.wait_for("Ctrl-C stops the cluster", 5s).empty()) << up.output();
  auto first = complete(api);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_EQ(first->status, 200) << first->body;

  ASSERT_EQ(kill(std::stoi(line[1]), SIGKILL), 0);
  ASSERT_FALSE(up.wait_for(victim + R"( is serving again)", 120s).empty()) << up.output();
  int status = 0;
  auto deadline = SteadyClock::instance().now() + 60s;
  while (SteadyClock::instance().now() < deadline) {
    auto r = complete(api);
    status = r.is_ok() ? r->status : 0;
    if (status == 200) break;
    up.wait_for("^$never", 1s);
  }
  EXPECT_EQ(status, 200);
  up.process().signal(SIGTERM);
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 0");
  fs::remove_all(logs);
}

// Requests the gateway's /metrics says `instance` answered with 200.
int answered_by(uint16_t api, const std::string& instance) {
  auto r = baton::protocol::http_request("127.0.0.1", api, "GET", "/metrics", "", {},
                                         baton::protocol::deadline_in(10s));
  if (!r.is_ok() || r->status != 200) return -1;
  const std::regex line(
      R"(baton:gateway_requests_total\{route="completions",status="200",instance=")" + instance +
      R"("\} (\d+))");
  std::smatch m;
  return std::regex_search(r->body, m, line) ? std::stoi(m[1]) : 0;
}

// A prefill instance switched to decode by someone other than the controller
// (an operator's POST /internal/role) gets decode work through the gateway:
// `baton up` follows the role every instance reports, not only the changes
// its controller made.
TEST(BatonUp, AnInstanceSwitchedToDecodeGetsDecodeWorkThroughTheGateway) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-role-" + std::to_string(getpid()));
  Up up({"--prefill", "2", "--decode", "1", "--no-ratio", "--cluster-token", "up-test-token",
         "--controller-interval-ms", "200", "--port", std::to_string(*baton::free_loopback_port()),
         "--log-dir", logs.string(), "--serve-arg=--threads=1", "--serve-arg=--kv-cache-mb=64"});
  auto banner = up.wait_for(R"(Baton is up: http://127\.0\.0\.1:(\d+)/v1  \((.*),)", 120s);
  ASSERT_FALSE(banner.empty()) << up.output();
  if (banner[2] != "2 prefill + 1 decode") GTEST_SKIP() << "no P/D roles in this build";
  const uint16_t api = static_cast<uint16_t>(std::stoi(banner[1]));
  auto p0 = up.wait_for(R"(^  p0  prefill  http://127\.0\.0\.1:(\d+)  pid)", 5s);
  ASSERT_FALSE(p0.empty()) << up.output();
  const uint16_t p0_port = static_cast<uint16_t>(std::stoi(p0[1]));
  ASSERT_FALSE(up.wait_for("Ctrl-C stops the cluster", 5s).empty()) << up.output();
  auto first = complete(api);
  ASSERT_TRUE(first.is_ok()) << first.status().to_string();
  ASSERT_EQ(first->status, 200) << first->body;
  EXPECT_EQ(answered_by(api, "p0"), 0) << "a prefill instance answers no client";

  auto changed = baton::protocol::http_request(
      "127.0.0.1", p0_port, "POST", "/internal/role", R"({"role": "decode", "reason": "operator"})",
      {{"Content-Type", "application/json"}, {"x-baton-cluster-token", "up-test-token"}},
      baton::protocol::deadline_in(10s));
  ASSERT_TRUE(changed.is_ok()) << changed.status().to_string();
  ASSERT_TRUE(changed->status == 200 || changed->status == 202) << changed->body;

  // The decode policy spreads requests over d0 and p0 once the gateway knows
  // p0's new role; every request meanwhile still succeeds.
  int failures = 0;
  int by_p0 = 0;
  auto deadline = SteadyClock::instance().now() + 60s;
  while (SteadyClock::instance().now() < deadline) {
    auto r = complete(api);
    if (!r.is_ok() || r->status != 200) ++failures;
    by_p0 = answered_by(api, "p0");
    if (by_p0 > 0) break;
  }
  EXPECT_GT(by_p0, 0) << "the gateway never sent decode work to p0\n" << up.output();
  EXPECT_EQ(failures, 0);
  std::ifstream yaml(logs / "gateway.yaml");
  std::string config((std::istreambuf_iterator<char>(yaml)), std::istreambuf_iterator<char>());
  EXPECT_NE(config.find("name: p0, url: \"http://127.0.0.1:" + std::to_string(p0_port) +
                        "\", role: decode"),
            std::string::npos)
      << config;

  up.process().signal(SIGTERM);
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 0");
  fs::remove_all(logs);
}

TEST(BatonUp, AnInstanceThatCannotStartEndsUpWithItsError) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-bad-" + std::to_string(getpid()));
  Up up({"--mixed", "1", "--port", std::to_string(*baton::free_loopback_port()), "--log-dir",
         logs.string(), "--model", "/no/such/model"});
  ASSERT_FALSE(up.wait_for("m0 failed 3 times before it was ready", 60s).empty()) << up.output();
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 1");
  up.wait_for("^Stopped", 5s);
  EXPECT_NE(up.output().find("/no/such/model"), std::string::npos)
      << "the instance's own error is shown:\n"
      << up.output();
  fs::remove_all(logs);
}

TEST(BatonUp, TheClusterYamlSetsTheShapeAndFlagsWin) {
  fs::path logs = fs::temp_directory_path() / ("baton-up-test-yaml-" + std::to_string(getpid()));
  fs::create_directories(logs);
  const uint16_t port = *baton::free_loopback_port();
  {
    std::ofstream yaml(logs / "cluster.yaml");
    yaml << "mixed: 3\nport: " << port
         << "\nserve_args: [--threads, \"1\", --kv-cache-mb, \"64\"]\n"
         << "controller: {ttft_slo_ms: 500}\n";
  }
  Up up({"--config", (logs / "cluster.yaml").string(), "--mixed", "1", "--log-dir", logs.string()});
  auto banner = up.wait_for(R"(Baton is up: http://127\.0\.0\.1:(\d+)/v1  \((.*),)", 120s);
  ASSERT_FALSE(banner.empty()) << up.output();
  EXPECT_EQ(std::stoi(banner[1]), port) << "the port from the file";
  EXPECT_EQ(banner[2], "1 mixed") << "--mixed 1 over the file's 3";
  up.process().signal(SIGTERM);
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 60s)) << up.output();
  fs::remove_all(logs);
}

TEST(BatonUp, ATypoInTheClusterYamlIsAUsageError) {
  fs::path dir = fs::temp_directory_path() / ("baton-up-test-typo-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream yaml(dir / "cluster.yaml");
    yaml << "mixed: 1\nprot: 9000\n";
  }
  Up up({"--config", (dir / "cluster.yaml").string()});
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 30s));
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 2");
  fs::remove_all(dir);
}

TEST(BatonUp, RefusesAnImpossibleShape) {
  Up up({"--prefill", "1", "--decode", "0"});
  ASSERT_TRUE(up.process().wait_until(SteadyClock::instance().now() + 30s));
  EXPECT_EQ(baton::controller::describe_exit(up.process().wait_status()), "exited with code 2");
}

}  // namespace
