// A cluster whose membership lives in etcd, as a user runs it: a real etcd
// (Debian's etcd-server, started by the test), `baton serve --etcd`
// instances, `baton gateway --etcd` and `baton controller --etcd`, all real
// processes on loopback.

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "common/net.h"
#include "controller/child_process.h"
#include "controller/etcd_client.h"
#include "controller/etcd_test_server.h"
#include "controller/membership.h"
#include "protocol/http_client.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
namespace ctl = baton::controller;
using baton::SteadyClock;
using ctl::testing::EtcdTestServer;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";
const std::string kModel = std::string(BATON_SOURCE_DIR) + "/models/baton-tiny";
const std::string kPrefix = "/baton/instances/";
const std::string kToken = "etcd-cluster-test-token";

std::string read_file(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A `baton` subcommand with its stdout on a pipe the test reads line by line
// and its stderr (the log) in a file.
class Baton {
 public:
  Baton(const std::string& name, std::vector<std::string> args, const fs::path& dir)
      : log_(dir / (name + ".log")) {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    read_fd_ = fds[0];
    ctl::ChildSpec spec;
    spec.argv = {kBaton};
    spec.argv.insert(spec.argv.end(), args.begin(), args.end());
    spec.stdout_fd = fds[1];
    spec.log_path = log_.string();
    auto p = ctl::ChildProcess::spawn(spec);
    close(fds[1]);
    EXPECT_TRUE(p.is_ok()) << p.status().to_string();
    if (p.is_ok()) process_ = std::move(*p);
  }
  ~Baton() {
    process_.stop(10s);
    close(read_fd_);
  }

  // Reads stdout until a line matches `re` (returns its match), the deadline
  // passes or the output ends (an empty match).
  std::smatch wait_for(const std::string& re, std::chrono::milliseconds timeout) {
    const std::regex pattern(re);
    const auto deadline = SteadyClock::instance().now() + timeout;
    while (true) {
      size_t nl;
      while ((nl = pending_.find('\n')) != std::string::npos) {
        lines_.push_back(pending_.substr(0, nl));
        pending_.erase(0, nl + 1);
        std::smatch m;
        if (std::regex_search(lines_.back(), m, pattern)) return m;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - SteadyClock::instance().now());
      if (left <= 0ms) return {};
      pollfd p{read_fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count()) + 1) <= 0) continue;
      char buf[4096];
      ssize_t got = read(read_fd_, buf, sizeof(buf));
      if (got <= 0) return {};
      pending_.append(buf, static_cast<size_t>(got));
    }
  }

  // The port of the first stdout line matching `re` with one (\d+) group.
  uint16_t wait_for_port(const std::string& re, std::chrono::milliseconds timeout) {
    auto m = wait_for(re, timeout);
    return m.empty() ? 0 : static_cast<uint16_t>(std::stoi(m[1]));
  }

  // Waits up to `d` for the process to exit: the pause between two looks at
  // a condition, cut short (true) when the process dies.
  bool exits_within(std::chrono::milliseconds d) {
    return process_.wait_until(SteadyClock::instance().now() + d);
  }

  std::string describe() {
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return "stdout:\n" + out + pending_ + "\nlog " + log_.string() + ":\n" + read_file(log_);
  }
  ctl::ChildProcess& process() { return process_; }

 private:
  fs::path log_;
  ctl::ChildProcess process_;
  int read_fd_ = -1;
  std::string pending_;
  std::vector<std::string> lines_;
};

baton::Result<baton::protocol::HttpResponse> get(uint16_t port, const std::string& path) {
  return baton::protocol::http_request("127.0.0.1", port, "GET", path, "", {},
                                       baton::protocol::deadline_in(5s));
}

// The body of a GET, or why there is none (for failure messages).
std::string body_of(uint16_t port, const std::string& path) {
  auto r = get(port, path);
  return r.is_ok() ? r->body : r.status().to_string();
}

baton::Result<baton::protocol::HttpResponse> complete(uint16_t port) {
  return baton::protocol::http_request(
      "127.0.0.1", port, "POST", "/v1/completions",
      R"({"model": "baton-tiny", "prompt": "Hello", "max_tokens": 4})",
      {{"Content-Type", "application/json"}}, baton::protocol::deadline_in(30s));
}

// The status of a completion through `port` (0 when it got no answer).
int complete_status(uint16_t port) {
  auto r = complete(port);
  return r.is_ok() ? r->status : 0;
}

bool gateway_routes_to(uint16_t gateway, const std::string& instance) {
  auto r = get(gateway, "/metrics");
  return r.is_ok() && r->body.find("baton:gateway_instance_healthy{instance=\"" + instance +
                                   "\"}") != std::string::npos;
}

std::vector<std::string> serve_args(const std::string& id, const std::string& etcd, int ttl_s) {
  return {"serve",
          "--model",
          kModel,
          "--host",
          "127.0.0.1",
          "--port",
          "0",
          "--threads",
          "1",
          "--kv-cache-mb",
          "64",
          "--cluster-token",
          kToken,
          "--etcd",
          etcd,
          "--group",
          "default",
          "--instance-id",
          id,
          "--etcd-ttl",
          std::to_string(ttl_s)};
}

constexpr const char* kServing = R"(Baton is serving on http://127\.0\.0\.1:(\d+)/v1)";

class EtcdCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bin = ctl::testing::find_etcd_binary();
    if (!bin) {
      GTEST_SKIP() << "etcd is not installed (Debian package etcd-server, see "
                      "scripts/install-deps.sh): skipping the etcd cluster tests";
    }
    dir_ = fs::temp_directory_path() / ("baton-etcd-cluster-" + std::to_string(getpid()) + "-" +
                                        std::to_string(*baton::free_loopback_port()));
    etcd_.emplace(*bin, dir_);
    baton::Status s = etcd_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string() << ":\n" << etcd_->log();
  }
  void TearDown() override {
    etcd_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // The member registered under `id` in etcd, read now.
  std::optional<ctl::Member> registered(const std::string& id, int64_t* lease = nullptr) {
    ctl::EtcdClient client(etcd_->endpoint());
    auto range = client.range_prefix(kPrefix);
    if (!range.is_ok()) return std::nullopt;
    for (const auto& kv : range->kvs) {
      auto m = ctl::parse_member_json(kv.value);
      if (m.is_ok() && m->id == id) {
        if (lease != nullptr) *lease = kv.lease;
        return *m;
      }
    }
    return std::nullopt;
  }

  // Waits on the membership's changes until pred() or the deadline.
  template <typename Pred>
  static bool wait_for(const ctl::Membership& m, std::chrono::milliseconds timeout, Pred pred) {
    const auto deadline = SteadyClock::instance().now() + timeout;
    uint64_t v = m.version();
    while (!pred()) {
      if (SteadyClock::instance().now() >= deadline) return false;
      v = m.wait_for_change(v, deadline);
    }
    return true;
  }
  static bool has(const ctl::Membership& m, const std::string& id) {
    for (const auto& x : m.members()) {
      if (x.id == id) return true;
    }
    return false;
  }

  fs::path dir_;
  std::optional<EtcdTestServer> etcd_;
};

TEST_F(EtcdCluster, TheGatewayRoutesToRegisteredInstancesAndDropsAKilledOneWithinItsTtl) {
  const int kKilledTtl = 2;
  Baton m0("m0", serve_args("m0", etcd_->url(), 30), dir_);
  Baton m1("m1", serve_args("m1", etcd_->url(), kKilledTtl), dir_);
  const uint16_t m0_port = m0.wait_for_port(kServing, 120s);
  ASSERT_NE(m0_port, 0) << m0.describe();
  ASSERT_NE(m1.wait_for_port(kServing, 120s), 0) << m1.describe();

  // Ready instances are registered with their bound address.
  auto reg0 = registered("m0");
  ASSERT_TRUE(reg0.has_value());
  EXPECT_EQ(reg0->address(), "127.0.0.1:" + std::to_string(m0_port));
  EXPECT_EQ(reg0->role, ctl::Role::kMixed);
  EXPECT_EQ(reg0->group, "default");
  ASSERT_TRUE(registered("m1").has_value());

  Baton gw("gateway",
           {"gateway", "--port", "0", "--etcd", etcd_->url(), "--policy", "round_robin",
            "--cluster-token", kToken},
           dir_);
  const uint16_t gw_port =
      gw.wait_for_port(R"(Baton gateway on http://127\.0\.0\.1:(\d+)/v1)", 30s);
  ASSERT_NE(gw_port, 0) << gw.describe();
  // The gateway listed both at start.
  EXPECT_TRUE(gateway_routes_to(gw_port, "m0")) << gw.describe();
  EXPECT_TRUE(gateway_routes_to(gw_port, "m1")) << gw.describe();

  // Requests succeed and reach both instances.
  for (int i = 0; i < 6; ++i) ASSERT_EQ(complete_status(gw_port), 200) << gw.describe();
  auto metrics = get(gw_port, "/metrics");
  ASSERT_TRUE(metrics.is_ok());
  for (const char* id : {"m0", "m1"}) {
    const std::regex served(std::string(R"(baton:gateway_requests_total\{[^}]*status="200"[^}]*)") +
                            "instance=\"" + id + "\"");
    EXPECT_TRUE(std::regex_search(metrics->body, served)) << id << " served none:\n"
                                                          << metrics->body;
  }

  // kill -9: no revoke; etcd expires the lease, the watch tells the gateway.
  ASSERT_EQ(kill(m1.process().pid(), SIGKILL), 0);
  const auto killed_at = SteadyClock::instance().now();
  int failures = 0, sent = 0;
  while (gateway_routes_to(gw_port, "m1")) {
    ASSERT_LT(SteadyClock::instance().now() - killed_at, std::chrono::seconds(kKilledTtl) + 10s)
        << "m1 never left the gateway's routing:\n"
        << gw.describe();
    // Requests keep succeeding meanwhile: the gateway retries elsewhere.
    failures += complete_status(gw_port) != 200;
    ++sent;
    ASSERT_FALSE(gw.exits_within(100ms)) << gw.describe();
  }
  const auto left_after = SteadyClock::instance().now() - killed_at;
  EXPECT_LE(left_after, std::chrono::seconds(kKilledTtl) + 3s)
      << "left " << std::chrono::duration<double>(left_after).count()
      << " s after the kill; lease TTL " << kKilledTtl << " s";
  EXPECT_EQ(failures, 0) << "of " << sent << " requests while m1 was dead but still listed";
  std::cout << "m1 left the gateway's routing " << std::chrono::duration<double>(left_after).count()
            << " s after kill -9 (lease TTL " << kKilledTtl << " s); " << sent - failures << "/"
            << sent << " requests meanwhile answered 200\n";
  EXPECT_FALSE(registered("m1").has_value());
  EXPECT_TRUE(gateway_routes_to(gw_port, "m0"));
  for (int i = 0; i < 4; ++i) EXPECT_EQ(complete_status(gw_port), 200);

  // SIGTERM: the instance revokes its lease, its key goes at once (far
  // within its 30 s TTL), and it exits cleanly.
  auto watch = ctl::EtcdMembership::start(etcd_->endpoint(), kPrefix, {200ms, 2000ms, 100ms});
  ASSERT_TRUE(watch.is_ok()) << watch.status().to_string();
  ASSERT_TRUE(has(**watch, "m0"));
  m0.process().signal(SIGTERM);
  const auto term_at = SteadyClock::instance().now();
  ASSERT_TRUE(wait_for(**watch, 5s, [&] { return !has(**watch, "m0"); }))
      << "the key of a stopped instance stayed:\n"
      << m0.describe();
  std::cout << "m0's key left etcd "
            << std::chrono::duration<double>(SteadyClock::instance().now() - term_at).count()
            << " s after SIGTERM (lease TTL 30 s)\n";
  ASSERT_TRUE(m0.exits_within(30s)) << m0.describe();
  EXPECT_EQ(ctl::describe_exit(m0.process().wait_status()), "exited with code 0");
  // The gateway follows: no instance left.
  const auto deadline = SteadyClock::instance().now() + 5s;
  while (gateway_routes_to(gw_port, "m0") && SteadyClock::instance().now() < deadline) {
    ASSERT_FALSE(gw.exits_within(100ms)) << gw.describe();
  }
  EXPECT_FALSE(gateway_routes_to(gw_port, "m0")) << gw.describe();
}

TEST_F(EtcdCluster, TheControllerSeesRegisteredMembersAndARoleChangeReachesEtcd) {
  Baton m0("m0", serve_args("m0", etcd_->url(), 10), dir_);
  const uint16_t m0_port = m0.wait_for_port(kServing, 120s);
  ASSERT_NE(m0_port, 0) << m0.describe();
  int64_t lease = 0;
  ASSERT_TRUE(registered("m0", &lease).has_value());
  EXPECT_NE(lease, 0);

  Baton c("controller",
          {"controller", "--etcd", etcd_->url(), "--port", "0", "--interval-ms", "200",
           "--no-adjust-ratio", "--cluster-token", kToken},
          dir_);
  const uint16_t c_port =
      c.wait_for_port(R"(Baton controller on http://127\.0\.0\.1:(\d+)/cluster)", 30s);
  ASSERT_NE(c_port, 0) << c.describe();

  // /cluster shows the member with its health and role, once probed.
  auto member_in_cluster = [&](const std::string& role) {
    auto r = get(c_port, "/cluster");
    if (!r.is_ok() || r->status != 200) return false;
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (j.is_discarded()) return false;
    for (const auto& i : j["instances"]) {
      if (i["id"] == "m0" && i["address"] == "127.0.0.1:" + std::to_string(m0_port) &&
          i["health"] == "healthy" && i["role"] == role) {
        return true;
      }
    }
    return false;
  };
  auto wait_cluster = [&](const std::string& role) {
    const auto deadline = SteadyClock::instance().now() + 20s;
    while (!member_in_cluster(role)) {
      if (SteadyClock::instance().now() >= deadline || c.exits_within(100ms)) return false;
    }
    return true;
  };
  ASSERT_TRUE(wait_cluster("mixed")) << body_of(c_port, "/cluster") << "\n" << c.describe();
  auto health = get(c_port, "/health");
  ASSERT_TRUE(health.is_ok());
  EXPECT_EQ(health->status, 200);
  auto cm = get(c_port, "/metrics");
  ASSERT_TRUE(cm.is_ok());
  EXPECT_NE(cm->body.find("baton:controller_instances{group=\"default\",role=\"mixed\","
                          "health=\"healthy\"} 1"),
            std::string::npos)
      << cm->body;

  // A role change on the instance: its etcd value follows, under the same
  // lease, and so does the controller.
  auto watch = ctl::EtcdMembership::start(etcd_->endpoint(), kPrefix, {200ms, 2000ms, 100ms});
  ASSERT_TRUE(watch.is_ok()) << watch.status().to_string();
  auto changed = baton::protocol::http_request(
      "127.0.0.1", m0_port, "POST", "/internal/role",
      R"({"role": "prefill", "drain_timeout_ms": 5000, "reason": "test"})",
      {{"Content-Type", "application/json"}, {"x-baton-cluster-token", kToken}},
      baton::protocol::deadline_in(5s));
  ASSERT_TRUE(changed.is_ok()) << changed.status().to_string();
  ASSERT_EQ(changed->status, 202) << changed->body;
  EXPECT_TRUE(wait_for(**watch, 10s, [&] {
    for (const auto& m : (*watch)->members()) {
      if (m.id == "m0") return m.role == ctl::Role::kPrefill;
    }
    return false;
  })) << m0.describe();
  int64_t lease_after = 0;
  auto now = registered("m0", &lease_after);
  ASSERT_TRUE(now.has_value());
  EXPECT_EQ(now->role, ctl::Role::kPrefill);
  EXPECT_EQ(now->address(), "127.0.0.1:" + std::to_string(m0_port));
  EXPECT_EQ(lease_after, lease) << "the registration kept its lease";
  EXPECT_TRUE(wait_cluster("prefill")) << body_of(c_port, "/cluster");

  // SIGTERM stops the controller cleanly.
  c.process().signal(SIGTERM);
  ASSERT_TRUE(c.exits_within(10s)) << c.describe();
  EXPECT_EQ(ctl::describe_exit(c.process().wait_status()), "exited with code 0");
}

TEST(EtcdClusterFlags, AStaticControllerServesItsMembersFromFlagsAndYaml) {
  fs::path dir =
      fs::temp_directory_path() / ("baton-controller-static-" + std::to_string(getpid()));
  fs::create_directories(dir);
  // Nothing listens on the members' ports: the controller reports them
  // unhealthy.
  const std::string nobody = "127.0.0.1:" + std::to_string(*baton::free_loopback_port());
  {
    std::ofstream yaml(dir / "controller.yaml");
    yaml << "port: 1\ninterval_ms: 100\nmembers:\n  - {id: d0, address: \"" << nobody
         << "\", role: decode, group: chat}\n";
  }
  Baton c("controller",
          {"controller", "--config", (dir / "controller.yaml").string(), "--member",
           "id=p0,address=" + nobody + ",role=prefill,group=chat", "--port", "0"},
          dir);
  const uint16_t port =
      c.wait_for_port(R"(Baton controller on http://127\.0\.0\.1:(\d+)/cluster)", 30s);
  ASSERT_NE(port, 0) << "--port 0 wins over the file's port: 1\n" << c.describe();
  auto both_unhealthy = [&] {
    auto r = get(port, "/cluster");
    auto j = r.is_ok() ? nlohmann::json::parse(r->body, nullptr, false) : nlohmann::json();
    if (j.is_discarded() || !j.contains("instances") || j["instances"].size() != 2) return false;
    // By id: d0 from the file, p0 from the flag.
    const auto& d0 = j["instances"][0];
    const auto& p0 = j["instances"][1];
    return d0["id"] == "d0" && d0["role"] == "decode" && d0["group"] == "chat" &&
           d0["health"] == "unhealthy" && p0["id"] == "p0" && p0["role"] == "prefill" &&
           p0["health"] == "unhealthy";
  };
  const auto deadline = SteadyClock::instance().now() + 20s;
  bool seen = false;
  while (!(seen = both_unhealthy()) && SteadyClock::instance().now() < deadline &&
         !c.exits_within(100ms)) {
  }
  EXPECT_TRUE(seen) << body_of(port, "/cluster") << "\n" << c.describe();
  c.process().signal(SIGINT);
  ASSERT_TRUE(c.exits_within(10s)) << c.describe();
  EXPECT_EQ(ctl::describe_exit(c.process().wait_status()), "exited with code 0");

  // A typo in the file is a usage error that names the key.
  {
    std::ofstream yaml(dir / "typo.yaml");
    yaml << "prot: 9000\n";
  }
  Baton typo("typo", {"controller", "--config", (dir / "typo.yaml").string()}, dir);
  ASSERT_TRUE(typo.exits_within(30s)) << typo.describe();
  EXPECT_EQ(ctl::describe_exit(typo.process().wait_status()), "exited with code 2");
  EXPECT_NE(typo.describe().find("prot"), std::string::npos) << typo.describe();
  fs::remove_all(dir);
}

TEST(EtcdClusterFlags, AnUnreachableEtcdIsAClearErrorAtStart) {
  fs::path dir = fs::temp_directory_path() / ("baton-etcd-unreachable-" + std::to_string(getpid()));
  fs::create_directories(dir);
  const std::string nowhere = "http://127.0.0.1:" + std::to_string(*baton::free_loopback_port());
  struct Case {
    std::string name;
    std::vector<std::string> args;
  };
  const std::vector<Case> cases = {
      {"serve", {"serve", "--model", kModel, "--port", "0", "--etcd", nowhere}},
      {"gateway", {"gateway", "--port", "0", "--etcd", nowhere}},
      {"controller", {"controller", "--port", "0", "--etcd", nowhere}},
  };
  for (const Case& k : cases) {
    Baton b(k.name, k.args, dir);
    ASSERT_TRUE(b.exits_within(30s)) << k.name << " kept running:\n" << b.describe();
    EXPECT_EQ(ctl::describe_exit(b.process().wait_status()), "exited with code 1") << b.describe();
    EXPECT_NE(b.describe().find("etcd at " + nowhere + " is not reachable"), std::string::npos)
        << b.describe();
  }
  // The registration flags mean nothing without --etcd: a usage error.
  Baton bad("bad", {"serve", "--model", kModel, "--group", "chat"}, dir);
  ASSERT_TRUE(bad.exits_within(30s)) << bad.describe();
  EXPECT_EQ(ctl::describe_exit(bad.process().wait_status()), "exited with code 2");
  fs::remove_all(dir);
}

}  // namespace
