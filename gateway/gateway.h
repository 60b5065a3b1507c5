#pragma once

// Gateway: what `baton gateway` runs. An asynchronous HTTP front with the
// instances' OpenAI API, routing each request to an instance of its scenario
// group (aggregated mode) or through a decode and a prefill instance (P/D
// mode, protocol/pd.h), relaying answers chunk by chunk as they arrive.
//
// Routes: POST /v1/completions and /v1/chat/completions (routed),
// GET /v1/models (from any routable instance), GET /health (200 when some
// instance is routable), GET /metrics (Prometheus). Anything under
// /internal/ answers 404: the instances' internal endpoints are never
// reachable through the gateway.
//
// Protection: Bearer API keys with per-key requests/minute and tokens/minute
// (429 + Retry-After), body size (413), header size and count (431), prompt
// length (413), connection count (503 + Retry-After), connections per client
// address (429 + Retry-After) and timeouts (config.limits). Keys appear in
// logs and metrics only by name (a fingerprint unless configured).
//
// Thread-safety: start/reload/stop from the owning thread (reload may also run
// from a signal-handling thread); the accessors are thread-safe.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "common/status.h"
#include "gateway/circuit_breaker.h"
#include "gateway/gateway_config.h"

namespace baton::gateway {

struct InstanceStatus {
  std::string name;
  std::string address;
  Role role = Role::kMixed;
  std::string group;
  bool healthy = true;
  bool draining = false;
  BreakerState breaker = BreakerState::kClosed;
  int in_flight = 0;
};

class Gateway {
 public:
  // Binds and serves. `clock` must outlive the gateway (nullptr: the steady
  // clock); `seed` seeds the routing and jitter randomness (0: random).
  static Result<std::unique_ptr<Gateway>> start(GatewayConfig config, const Clock* clock = nullptr,
                                                uint64_t seed = 0);
  ~Gateway();  // stop()
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  uint16_t port() const;

  // Applies a new configuration without dropping connections: instances,
  // groups, keys, limits and policies. Instances that keep their name,
  // address and role keep their state (load, breaker, health, pooled
  // connections); removed ones drain (their streams finish). The listening
  // address, thread counts and the server's own limits (max body, max
  // connections) stay as started. Errors leave the running config in place.
  Status reload(GatewayConfig config);

  // One round of active health checks now, waiting for its answers (bounded
  // by health.timeout). For tests and `--check` style tooling.
  void check_health_now();

  std::vector<InstanceStatus> instances() const;
  MetricsRegistry& metrics();

  // Stops accepting, closes client connections and upstream calls. Idempotent.
  void stop();

  class Impl;

 private:
  explicit Gateway(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace baton::gateway
