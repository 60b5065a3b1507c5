#pragma once

// Test support: a real HTTP server on loopback whose answers a test scripts
// (reject, stall, stream, disconnect mid-stream, 5xx), recording what it was
// sent. Used by the gateway's integration tests only; header-only so that it
// adds nothing to the gateway library.

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "protocol/http_server.h"

namespace baton::gateway::testing {

class FakeUpstream {
 public:
  using Writer = std::shared_ptr<protocol::ResponseWriter>;
  using Script = std::function<void(const protocol::HttpRequest&, Writer)>;

  // Answers GET /health with 200 while healthy (see set_healthy) and hands
  // every other request to `script`.
  explicit FakeUpstream(Script script, int io_threads = 2) : script_(std::move(script)) {
    protocol::HttpServerOptions o;
    o.io_threads = io_threads;
    auto s = protocol::HttpServer::start(o, [this](protocol::HttpRequest req, Writer w) {
      if (req.path == "/health") {
        health_checks_.fetch_add(1);
        if (healthy_.load()) {
          w->send(200, "application/json", "{}");
        } else {
          w->send(503, "application/json", R"({"error":{"message":"not ready"}})");
        }
        return;
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      hits_.fetch_add(1);
      script_(req, std::move(w));
    });
    if (s.is_ok()) server_ = std::move(*s);
  }
  ~FakeUpstream() { stop(); }

  bool ok() const { return server_ != nullptr; }
  uint16_t port() const { return server_->port(); }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port()); }
  int hits() const { return hits_.load(); }
  int health_checks() const { return health_checks_.load(); }
  void set_healthy(bool h) { healthy_ = h; }
  std::vector<protocol::HttpRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  void stop() {
    if (server_) server_->stop();
  }

 private:
  Script script_;
  std::unique_ptr<protocol::HttpServer> server_;
  std::atomic<int> hits_{0};
  std::atomic<int> health_checks_{0};
  std::atomic<bool> healthy_{true};
  mutable std::mutex mu_;
  std::vector<protocol::HttpRequest> requests_;
};

}  // namespace baton::gateway::testing
