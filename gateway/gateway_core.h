#pragma once

// Internal to gateway/: the state the gateway's request exchanges share.
// gateway.h is the public API; this header is included by gateway.cpp,
// mixed_exchange.cpp and pd_exchange.cpp only.
//
// Ownership: GatewayCore is held by shared_ptr by the Gateway and by every
// exchange in flight, so a stream that outlives a reload or the Gateway
// object still finds its metrics and upstream client. ClusterState is
// immutable once published; a reload publishes a new one that reuses the
// InstanceRuntime of every instance that kept its name, address and role.

#include <atomic>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/clock.h"
#include "common/metrics.h"
#include "gateway/circuit_breaker.h"
#include "gateway/gateway_config.h"
#include "gateway/policy.h"
#include "gateway/prefix_tree.h"
#include "gateway/rate_limiter.h"
#include "gateway/upstream.h"
#include "protocol/http_server.h"

namespace baton::gateway::detail {

// The live state of one instance. Thread-safe (atomics, the breaker's mutex).
struct InstanceRuntime {
  InstanceRuntime(uint32_t id, InstanceConfig config, std::shared_ptr<UpstreamPool> pool,
                  const BreakerConfig& breaker)
      : id(id),
        config(std::move(config)),
        pool(std::move(pool)),
        breaker(breaker.failure_threshold, breaker.open_time) {}

  const uint32_t id;
  const InstanceConfig config;  // its `draining` is the one at creation; see below
  const std::shared_ptr<UpstreamPool> pool;
  CircuitBreaker breaker;
  std::atomic<int> in_flight{0};
  std::atomic<bool> healthy{true};
  std::atomic<bool> draining{false};  // config or removal: no new requests
  std::atomic<int> health_failures{0};
  std::atomic<int> health_successes{0};
  std::atomic<bool> health_pending{false};

  // Set when the instance's own admission control refused a request and
  // said when it expects to admit again (x-baton-admit-after-ms): until then
  // it is offered nothing new, and a request no instance can take is shed at
  // once. Steady-clock ticks.
  std::atomic<int64_t> refusing_until{0};

  bool routable(Clock::TimePoint now) const {
    return healthy.load(std::memory_order_relaxed) && !draining.load(std::memory_order_relaxed) &&
           breaker.available(now);
  }
  bool refusing(Clock::TimePoint now) const {
    return now.time_since_epoch().count() < refusing_until.load(std::memory_order_relaxed);
  }
  // Records an admission rejection's x-baton-admit-after-ms, if it has one.
  void note_refusal(const protocol::Headers& headers, Clock::TimePoint now);
};
using InstancePtr = std::shared_ptr<InstanceRuntime>;

// Mutable routing memory of a group, kept across reloads by group name.
struct GroupRouting {
  std::mutex mu;
  PrefixTree mixed_tree;
  PrefixTree prefill_tree;
  uint64_t tick = 0;
  std::atomic<uint64_t> sequence{0};
};

// One role's instances of a group, with their hash ring.
struct Pool {
  std::vector<InstancePtr> instances;
  std::shared_ptr<const HashRing> ring;

  ClusterSnapshot snapshot(Clock::TimePoint now) const;
  const InstancePtr* find(uint32_t id) const;
  bool any_routable(Clock::TimePoint now) const;
  // Some instance is routable, and every routable one is refusing.
  bool all_refusing(Clock::TimePoint now) const;
};

struct GroupState {
  GroupConfig config;
  Pool mixed, prefill, decode;
  std::shared_ptr<GroupRouting> routing;
};

struct ClusterState {
  std::shared_ptr<const GatewayConfig> config;
  std::vector<InstancePtr> instances;
  std::vector<GroupState> groups;
  std::unordered_map<std::string, ApiKeyConfig> keys;
};

// What the gateway reads from a request body to route and limit it.
struct RequestInfo {
  bool chat = false;
  bool stream = false;
  std::string model;
  std::string prompt;  // completions: the prompt (first one); chat: the messages' text
  int64_t prompt_chars = 0;
  int64_t max_tokens = 16;
  std::string user;
};
// kInvalidArgument for a body that is not a JSON object.
Result<RequestInfo> read_request_info(std::string_view body, bool chat);

struct GatewayMetrics {
  explicit GatewayMetrics(MetricsRegistry& r);
  CounterFamily& requests;         // route, status, instance
  HistogramFamily& added_latency;  // route
  CounterFamily& rejections;       // reason
  Histogram& forwards;             // prefill forwards per P/D request
  CounterFamily& retries;          // instance
  CounterFamily& upstream_errors;  // instance, kind
  Histogram& routing_seconds;
};

struct GatewayCore {
  GatewayCore(const Clock& clock, uint64_t seed);

  const Clock& clock;
  MetricsRegistry registry;
  GatewayMetrics metrics{registry};
  // Set once the front servers run (their loops carry the upstream I/O);
  // never reset while the gateway serves.
  std::unique_ptr<UpstreamClient> upstream;
  RateLimiter limiter;
  std::atomic<uint64_t> request_ids{0};

  std::shared_ptr<const ClusterState> state() const {
    std::lock_guard lock(state_mu);
    return state_;
  }
  void publish(std::shared_ptr<const ClusterState> s) {
    std::lock_guard lock(state_mu);
    state_ = std::move(s);
  }

  uint64_t random() {
    std::lock_guard lock(rng_mu);
    return rng();
  }

 private:
  mutable std::mutex state_mu;
  std::shared_ptr<const ClusterState> state_;
  std::mutex rng_mu;
  std::mt19937_64 rng;
};

// Timings and labels an exchange reports when it ends (access log, metrics).
struct ExchangeLog {
  std::string route;
  std::string method;
  std::string remote;
  std::string key_name;
  std::string group;
  std::string instance = "-";  // the one that answered ("-": none)
  std::string prefill = "-";   // P/D: the prefill instance that accepted
  int status = 0;
  int attempts = 0;
  int forwards = 0;
  uint64_t bytes_out = 0;
  Clock::TimePoint start;
};

// Records the end of one client request (metrics + access log line).
void finish_log(GatewayCore& core, const ExchangeLog& log, bool access_log);

// Headers of the client request worth passing upstream: end-to-end ones
// except credentials and anything the cluster uses internally.
protocol::Headers forward_headers(const protocol::HttpRequest& req, uint64_t request_id);

// Backoff before retry `attempt` (1 = the first retry): exponential from
// retry.backoff up to retry.max_backoff, with jitter in [d/2, d].
std::chrono::nanoseconds backoff_delay(const RetryConfig& retry, int attempt, uint64_t random);

// Starts one client request in aggregated mode over `candidates` (ids of
// group.mixed in order) or, for P/D, the P/D exchange. `added_start` is when
// the gateway received the request.
void start_mixed_exchange(std::shared_ptr<GatewayCore> core,
                          std::shared_ptr<const ClusterState> state, const GroupState* group,
                          std::vector<InstancePtr> candidates, protocol::HttpRequest req,
                          RequestInfo info, std::shared_ptr<protocol::ResponseWriter> writer,
                          ExchangeLog log);
void start_pd_exchange(std::shared_ptr<GatewayCore> core, std::shared_ptr<const ClusterState> state,
                       const GroupState* group, protocol::HttpRequest req, RequestInfo info,
                       std::shared_ptr<protocol::ResponseWriter> writer, ExchangeLog log);

// Ranks a pool for a request with the group's policy; records nothing.
std::vector<InstancePtr> rank_pool(GatewayCore& core, const GroupState& group, const Pool& pool,
                                   PolicyKind policy, PrefixTree GroupRouting::*tree,
                                   const protocol::HttpRequest& req, const RequestInfo& info,
                                   size_t max);
// Remembers that `prompt` went to `instance` in `tree` (prefix_aware).
void record_prefix(GroupRouting& routing, PrefixTree GroupRouting::*tree, std::string_view prompt,
                   uint32_t instance);

}  // namespace baton::gateway::detail
