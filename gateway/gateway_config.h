#pragma once

// GatewayConfig: everything `baton gateway` is told, from a YAML file or from
// simple flags, as plain values. Parsing is pure (no I/O besides reading the
// file in load_gateway_config) and every error names the key and the line.
//
//   listen: {host: 127.0.0.1, port: 8080, io_threads: 2}  # one event loop each
//   cluster_token: s3cret            # x-baton-cluster-token for /internal/pd/*
//   instances:
//     - {name: p0, url: http://127.0.0.1:8001, role: prefill, group: chat}
//     - {name: d0, url: http://127.0.0.1:8002, role: decode, group: chat}
//     - {name: m0, url: 127.0.0.1:8003}               # role mixed, group default
//   groups:                           # first match wins; a group with no rule
//     - name: chat                    # matches everything
//       models: [baton-tiny]          # the request's `model`
//       scenario: chat                # the x-baton-scenario header
//       min_prompt_chars: 0           # a rule on the prompt's length
//       max_prompt_chars: 100000
//       policy: prefix_aware          # mixed instances
//       prefill_policy: prefix_aware
//       decode_policy: least_load
//       imbalance_threshold: 4        # prefix_aware: in-flight gap that beats affinity
//       affinity_header: x-session-id # consistent_hash key (else `user`)
//   api_keys:                         # none: no authentication
//     - {key: sk-a, name: team-a, requests_per_minute: 600, tokens_per_minute: 100000}
//   limits: {max_body_kb: 8192, max_prompt_chars: 400000, max_connections: 4096,
//            max_connections_per_client: 0,  # 0: no limit; more get 429
//            max_header_kb: 16, max_headers: 100,  # more get 431
//            header_timeout_ms: 10000, first_byte_timeout_ms: 600000,
//            stream_idle_timeout_ms: 600000, connect_timeout_ms: 2000}
//   retry: {max_attempts: 3, backoff_ms: 20, max_backoff_ms: 500}
//   breaker: {failure_threshold: 5, open_ms: 5000}
//   health: {interval_ms: 2000, timeout_ms: 1000, unhealthy_after: 2, healthy_after: 1}
//   pd: {max_prefill_tries: 4, forward_deadline_ms: 10000, lease_ms: 30000}
//   access_log: true

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "common/status.h"
#include "protocol/pd.h"

namespace baton::gateway {

using Role = protocol::pd::Role;
using protocol::pd::parse_role;
using protocol::pd::role_name;

enum class PolicyKind { kRoundRobin, kLeastLoad, kPowerOfTwo, kConsistentHash, kPrefixAware };
std::string_view policy_name(PolicyKind p);
Result<PolicyKind> parse_policy(std::string_view name);

struct InstanceConfig {
  std::string name;  // unique; defaults to host:port
  std::string host;
  uint16_t port = 0;
  Role role = Role::kMixed;
  std::string group = "default";
  bool draining = false;  // takes no new requests; its streams finish

  std::string address() const { return host + ":" + std::to_string(port); }
};

struct GroupConfig {
  std::string name = "default";
  std::vector<std::string> models;  // empty: any model
  std::string scenario;             // "": any (or no) x-baton-scenario header
  int64_t min_prompt_chars = 0;
  int64_t max_prompt_chars = -1;  // -1: no upper bound
  PolicyKind policy = PolicyKind::kLeastLoad;
  PolicyKind prefill_policy = PolicyKind::kPrefixAware;
  PolicyKind decode_policy = PolicyKind::kLeastLoad;
  int64_t imbalance_threshold = 4;
  std::string affinity_header = "x-session-id";
};

struct ApiKeyConfig {
  std::string key;
  // What logs, metrics and errors call the key (never the key itself);
  // empty: key_fingerprint(key).
  std::string name;
  int64_t requests_per_minute = 0;  // 0: unlimited
  int64_t tokens_per_minute = 0;    // 0: unlimited
};

struct LimitsConfig {
  int64_t max_body_bytes = 8 << 20;
  int64_t max_prompt_chars = 400000;
  int max_connections = 4096;
  int max_connections_per_client = 0;   // from one client address; 0: no limit
  int64_t max_header_bytes = 16 << 10;  // request line + headers; more get 431
  int64_t max_header_count = 100;       // header fields; more get 431
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds first_byte_timeout{600000};   // upstream response headers
  std::chrono::milliseconds stream_idle_timeout{600000};  // between upstream body pieces
};

struct RetryConfig {
  int max_attempts = 3;  // upstream attempts per request, the first included
  std::chrono::milliseconds backoff{20};
  std::chrono::milliseconds max_backoff{500};
};

struct BreakerConfig {
  int failure_threshold = 5;  // consecutive failures that open the breaker
  std::chrono::milliseconds open_time{5000};
};

struct HealthConfig {
  std::chrono::milliseconds interval{2000};  // 0: no active checks
  std::chrono::milliseconds timeout{1000};
  int unhealthy_after = 2;  // consecutive failed checks
  int healthy_after = 1;
};

struct PdConfig {
  int max_prefill_tries = 4;
  std::chrono::milliseconds forward_deadline{10000};
  int64_t lease_ms = 30000;
};

struct GatewayConfig {
  std::string host = "127.0.0.1";
  uint16_t port = 8080;
  int io_threads = 2;  // event loops, each serving clients and their upstream calls
  std::string cluster_token;
  std::vector<InstanceConfig> instances;
  std::vector<GroupConfig> groups;  // never empty after parsing
  std::vector<ApiKeyConfig> api_keys;
  LimitsConfig limits;
  RetryConfig retry;
  BreakerConfig breaker;
  HealthConfig health;
  PdConfig pd;
  bool access_log = true;
};

// "key-" and 8 hex digits of a hash of `key`: names a key in logs and
// metrics without revealing any of it.
std::string key_fingerprint(std::string_view key);

// "http://host:port", "host:port" (a trailing '/' is allowed). Port required.
Result<InstanceConfig> parse_instance_url(std::string_view url);

// Parses a document; checks unknown keys, duplicate names, instances naming
// an unknown group (when groups are listed) and P/D groups without a cluster
// token. A config without groups gets one "default" group.
Result<GatewayConfig> parse_gateway_config(const Config& doc);
Result<GatewayConfig> load_gateway_config(const std::string& path);

// Completes and checks a config built in code or from flags (the same checks
// as parse_gateway_config).
Status finish_gateway_config(GatewayConfig& config);

}  // namespace baton::gateway
