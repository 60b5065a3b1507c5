#pragma once

// Test support: a real etcd server (Debian's etcd-server package) on free
// loopback ports, with its data and log in a directory of the test's. Used by
// the integration tests that need etcd; header-only.
//
//   auto bin = find_etcd_binary();
//   if (!bin) GTEST_SKIP() << "...";
//   EtcdTestServer etcd(*bin, dir);
//   ASSERT_TRUE(etcd.start().is_ok()) << etcd.log();
//   ... etcd.endpoint(), etcd.url() ...
//   etcd.stop(); etcd.start();   // a restart on the same data and ports
//
// Not thread-safe (one owner).

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>

#include "common/net.h"
#include "controller/child_process.h"
#include "controller/etcd_client.h"
#include "protocol/http_client.h"

namespace baton::controller::testing {

inline std::optional<std::string> find_etcd_binary() {
  for (const char* p : {"/usr/bin/etcd", "/usr/local/bin/etcd"}) {
    if (access(p, X_OK) == 0) return std::string(p);
  }
  return std::nullopt;
}

class EtcdTestServer {
 public:
  // `dir` (created when missing) holds the data directory and etcd.log.
  EtcdTestServer(std::string binary, std::filesystem::path dir)
      : binary_(std::move(binary)), dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    endpoint_.port = *baton::free_loopback_port();
    peer_port_ = *baton::free_loopback_port();
  }
  ~EtcdTestServer() { stop(); }

  // Starts etcd (again, after a stop) and waits until /health answers 200.
  // The pause between tries is a wait on the child's exit, so a crashed
  // etcd is reported at once. Errors carry no log: see log().
  Status start(std::chrono::seconds timeout = std::chrono::seconds(30)) {
    const std::string client = url();
    const std::string peer = "http://127.0.0.1:" + std::to_string(peer_port_);
    ChildSpec spec;
    spec.argv = {binary_,
                 "--name=baton-test",
                 "--data-dir=" + (dir_ / "data").string(),
                 "--listen-client-urls=" + client,
                 "--advertise-client-urls=" + client,
                 "--listen-peer-urls=" + peer,
                 "--initial-advertise-peer-urls=" + peer,
                 "--initial-cluster=baton-test=" + peer};
    spec.log_path = (dir_ / "etcd.log").string();
    BATON_ASSIGN_OR_RETURN(process_, ChildProcess::spawn(spec));
    const auto deadline = SteadyClock::instance().now() + timeout;
    while (true) {
      auto r = protocol::http_request("127.0.0.1", endpoint_.port, "GET", "/health", "", {},
                                      protocol::deadline_in(std::chrono::seconds(1)));
      if (r.is_ok() && r->status == 200) return Status::ok();
      if (process_.wait_until(SteadyClock::instance().now() + std::chrono::milliseconds(50))) {
        return unavailable("etcd " + describe_exit(process_.wait_status()));
      }
      if (SteadyClock::instance().now() >= deadline) {
        return deadline_exceeded("etcd not healthy in " + std::to_string(timeout.count()) + " s");
      }
    }
  }

  // SIGTERM, then SIGKILL after 5 s. Idempotent.
  void stop() {
    if (process_.running()) process_.stop(std::chrono::seconds(5));
  }

  const EtcdEndpoint& endpoint() const { return endpoint_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(endpoint_.port); }
  ChildProcess& process() { return process_; }

  // etcd's own log, for failure messages.
  std::string log() const {
    std::ifstream f(dir_ / "etcd.log");
    std::stringstream s;
    s << f.rdbuf();
    return s.str();
  }

 private:
  std::string binary_;
  std::filesystem::path dir_;
  EtcdEndpoint endpoint_;
  uint16_t peer_port_ = 0;
  ChildProcess process_;
};

}  // namespace baton::controller::testing
