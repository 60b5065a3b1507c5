#include "gateway/gateway_config.h"

#include <charconv>
#include <set>

namespace baton::gateway {

std::string_view policy_name(PolicyKind p) {
  switch (p) {
    case PolicyKind::kRoundRobin:
      return "round_robin";
    case PolicyKind::kLeastLoad:
      return "least_load";
    case PolicyKind::kPowerOfTwo:
      return "power_of_two";
    case PolicyKind::kConsistentHash:
      return "consistent_hash";
    case PolicyKind::kPrefixAware:
      return "prefix_aware";
  }
  return "least_load";
}

Result<PolicyKind> parse_policy(std::string_view name) {
  for (PolicyKind p : {PolicyKind::kRoundRobin, PolicyKind::kLeastLoad, PolicyKind::kPowerOfTwo,
                       PolicyKind::kConsistentHash, PolicyKind::kPrefixAware}) {
    if (policy_name(p) == name) return p;
  }
  return invalid_argument(
      "policy: expected round_robin, least_load, power_of_two, consistent_hash or prefix_aware, "
      "got '" +
      std::string(name) + "'");
}

Result<InstanceConfig> parse_instance_url(std::string_view url) {
  std::string_view rest = url;
  if (rest.starts_with("http://")) rest.remove_prefix(7);
  if (rest.starts_with("https://")) {
    return invalid_argument("url: https upstreams are not supported: '" + std::string(url) + "'");
  }
  while (rest.ends_with('/')) rest.remove_suffix(1);
  size_t colon = rest.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || rest.find('/') != std::string_view::npos) {
    return invalid_argument("url: expected http://host:port, got '" + std::string(url) + "'");
  }
  std::string_view port_text = rest.substr(colon + 1);
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 ||
      port > 65535) {
    return invalid_argument("url: bad port in '" + std::string(url) + "'");
  }
  InstanceConfig c;
  c.host = std::string(rest.substr(0, colon));
  if (c.host.size() > 2 && c.host.front() == '[' && c.host.back() == ']') {
    c.host = c.host.substr(1, c.host.size() - 2);
  }
  c.port = static_cast<uint16_t>(port);
  c.name = c.address();
  return c;
}

namespace {

Result<std::chrono::milliseconds> get_ms(const Config& c, std::string_view key,
                                         std::chrono::milliseconds fallback) {
  BATON_ASSIGN_OR_RETURN(int64_t v, c.get_or<int64_t>(key, fallback.count()));
  if (v < 0) {
    return invalid_argument(c.source_name() + ": " + c.path() + "." + std::string(key) +
                            ": must not be negative");
  }
  return std::chrono::milliseconds(v);
}

Result<int64_t> get_positive(const Config& c, std::string_view key, int64_t fallback) {
  BATON_ASSIGN_OR_RETURN(int64_t v, c.get_or<int64_t>(key, fallback));
  if (v < 1) {
    return invalid_argument(c.source_name() + ": " + std::string(key) + ": must be at least 1");
  }
  return v;
}

Status with_source(const Config& c, const std::string& where, Status s) {
  if (s.is_ok()) return s;
  return Status(s.code(), c.source_name() + ": " + where + ": " + s.message());
}

Result<InstanceConfig> parse_instance(const Config& c) {
  BATON_RETURN_IF_ERROR(
      c.check_known_keys("", {"name", "url", "host", "port", "role", "group", "draining"}));
  InstanceConfig inst;
  if (c.has("url")) {
    BATON_ASSIGN_OR_RETURN(std::string url, c.get<std::string>("url"));
    auto parsed = parse_instance_url(url);
    if (!parsed.is_ok()) return with_source(c, c.path(), parsed.status());
    inst = std::move(*parsed);
  } else {
    BATON_ASSIGN_OR_RETURN(inst.host, c.get_or("host", "127.0.0.1"));
    BATON_ASSIGN_OR_RETURN(int64_t port, c.get<int64_t>("port"));
    if (port < 1 || port > 65535) {
      return invalid_argument(c.source_name() + ": " + c.path() + ".port: out of range");
    }
    inst.port = static_cast<uint16_t>(port);
    inst.name = inst.address();
  }
  BATON_ASSIGN_OR_RETURN(inst.name, c.get_or<std::string>("name", inst.name));
  BATON_ASSIGN_OR_RETURN(std::string role, c.get_or("role", "mixed"));
  auto r = parse_role(role);
  if (!r.is_ok()) return with_source(c, c.path(), r.status());
  inst.role = *r;
  BATON_ASSIGN_OR_RETURN(inst.group, c.get_or("group", "default"));
  BATON_ASSIGN_OR_RETURN(inst.draining, c.get_or<bool>("draining", false));
  return inst;
}

Result<PolicyKind> get_policy(const Config& c, std::string_view key, PolicyKind fallback) {
  BATON_ASSIGN_OR_RETURN(std::string name,
                         c.get_or<std::string>(key, std::string(policy_name(fallback))));
  auto p = parse_policy(name);
  if (!p.is_ok()) return with_source(c, c.path() + "." + std::string(key), p.status());
  return *p;
}

Result<GroupConfig> parse_group(const Config& c) {
  BATON_RETURN_IF_ERROR(c.check_known_keys(
      "", {"name", "models", "scenario", "min_prompt_chars", "max_prompt_chars", "policy",
           "prefill_policy", "decode_policy", "imbalance_threshold", "affinity_header"}));
  GroupConfig g;
  BATON_ASSIGN_OR_RETURN(g.name, c.get<std::string>("name"));
  BATON_ASSIGN_OR_RETURN(g.models, c.get_or<std::vector<std::string>>("models", {}));
  BATON_ASSIGN_OR_RETURN(g.scenario, c.get_or("scenario", ""));
  BATON_ASSIGN_OR_RETURN(g.min_prompt_chars, c.get_or<int64_t>("min_prompt_chars", 0));
  BATON_ASSIGN_OR_RETURN(g.max_prompt_chars, c.get_or<int64_t>("max_prompt_chars", -1));
  BATON_ASSIGN_OR_RETURN(g.policy, get_policy(c, "policy", g.policy));
  BATON_ASSIGN_OR_RETURN(g.prefill_policy, get_policy(c, "prefill_policy", g.prefill_policy));
  BATON_ASSIGN_OR_RETURN(g.decode_policy, get_policy(c, "decode_policy", g.decode_policy));
  BATON_ASSIGN_OR_RETURN(g.imbalance_threshold, c.get_or<int64_t>("imbalance_threshold", 4));
  BATON_ASSIGN_OR_RETURN(g.affinity_header, c.get_or("affinity_header", "x-session-id"));
  return g;
}

}  // namespace

std::string key_fingerprint(std::string_view key) {
  // FNV-1a, 64 bits, shown as its top 32: enough to tell keys apart in a log,
  // nothing to recover a key from.
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 1099511628211ull;
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out = "key-";
  for (int shift = 60; shift >= 32; shift -= 4) out += kHex[(h >> shift) & 0xf];
  return out;
}

Status finish_gateway_config(GatewayConfig& config) {
  if (config.groups.empty()) config.groups.push_back(GroupConfig{});
  std::set<std::string> keys;
  for (auto& k : config.api_keys) {
    if (k.key.empty()) return invalid_argument("api_keys: empty key");
    if (!keys.insert(k.key).second) {
      return invalid_argument("api_keys: the key named '" +
                              (k.name.empty() ? key_fingerprint(k.key) : k.name) +
                              "' is listed twice");
    }
    if (k.name.empty()) k.name = key_fingerprint(k.key);
  }
  std::set<std::string> group_names;
  for (const auto& g : config.groups) {
    if (!group_names.insert(g.name).second) {
      return invalid_argument("groups: duplicate group name '" + g.name + "'");
    }
  }
  std::set<std::string> names;
  for (const auto& inst : config.instances) {
    if (!names.insert(inst.name).second) {
      return invalid_argument("instances: duplicate instance name '" + inst.name + "'");
    }
    if (!group_names.contains(inst.group)) {
      return invalid_argument("instances: '" + inst.name + "' names unknown group '" + inst.group +
                              "'");
    }
    if (inst.role != Role::kMixed && config.cluster_token.empty()) {
      return invalid_argument("instances: '" + inst.name + "' has role " +
                              std::string(role_name(inst.role)) +
                              ", which needs cluster_token (the x-baton-cluster-token of the "
                              "instances' /internal/pd/ routes)");
    }
  }
  if (config.retry.max_attempts < 1) return invalid_argument("retry.max_attempts: must be >= 1");
  if (config.pd.max_prefill_tries < 1) {
    return invalid_argument("pd.max_prefill_tries: must be >= 1");
  }
  return Status::ok();
}

Result<GatewayConfig> parse_gateway_config(const Config& doc) {
  BATON_RETURN_IF_ERROR(
      doc.check_known_keys("", {"listen", "cluster_token", "instances", "groups", "api_keys",
                                "limits", "retry", "breaker", "health", "pd", "access_log"}));
  GatewayConfig c;
  BATON_RETURN_IF_ERROR(doc.check_known_keys("listen", {"host", "port", "io_threads"}));
  BATON_ASSIGN_OR_RETURN(c.host, doc.get_or("listen.host", "127.0.0.1"));
  BATON_ASSIGN_OR_RETURN(int64_t port, doc.get_or<int64_t>("listen.port", 8080));
  if (port < 0 || port > 65535) {
    return invalid_argument(doc.source_name() + ": listen.port: out of range");
  }
  c.port = static_cast<uint16_t>(port);
  BATON_ASSIGN_OR_RETURN(int64_t io, get_positive(doc, "listen.io_threads", 2));
  c.io_threads = static_cast<int>(io);
  BATON_ASSIGN_OR_RETURN(c.cluster_token, doc.get_or("cluster_token", ""));
  BATON_ASSIGN_OR_RETURN(c.access_log, doc.get_or<bool>("access_log", true));

  BATON_ASSIGN_OR_RETURN(auto groups, doc.sub_list("groups"));
  for (const auto& g : groups) {
    BATON_ASSIGN_OR_RETURN(GroupConfig gc, parse_group(g));
    c.groups.push_back(std::move(gc));
  }
  BATON_ASSIGN_OR_RETURN(auto instances, doc.sub_list("instances"));
  for (const auto& i : instances) {
    BATON_ASSIGN_OR_RETURN(InstanceConfig ic, parse_instance(i));
    c.instances.push_back(std::move(ic));
  }
  BATON_ASSIGN_OR_RETURN(auto keys, doc.sub_list("api_keys"));
  for (const auto& k : keys) {
    BATON_RETURN_IF_ERROR(
        k.check_known_keys("", {"key", "name", "requests_per_minute", "tokens_per_minute"}));
    ApiKeyConfig kc;
    BATON_ASSIGN_OR_RETURN(kc.key, k.get<std::string>("key"));
    BATON_ASSIGN_OR_RETURN(kc.name, k.get_or<std::string>("name", ""));
    BATON_ASSIGN_OR_RETURN(kc.requests_per_minute, k.get_or<int64_t>("requests_per_minute", 0));
    BATON_ASSIGN_OR_RETURN(kc.tokens_per_minute, k.get_or<int64_t>("tokens_per_minute", 0));
    c.api_keys.push_back(std::move(kc));
  }

  BATON_RETURN_IF_ERROR(doc.check_known_keys(
      "limits", {"max_body_kb", "max_prompt_chars", "max_connections", "max_connections_per_client",
                 "max_header_kb", "max_headers", "header_timeout_ms", "connect_timeout_ms",
                 "first_byte_timeout_ms", "stream_idle_timeout_ms"}));
  BATON_ASSIGN_OR_RETURN(int64_t body_kb, get_positive(doc, "limits.max_body_kb", 8192));
  c.limits.max_body_bytes = body_kb * 1024;
  BATON_ASSIGN_OR_RETURN(c.limits.max_prompt_chars,
                         get_positive(doc, "limits.max_prompt_chars", c.limits.max_prompt_chars));
  BATON_ASSIGN_OR_RETURN(int64_t conns,
                         get_positive(doc, "limits.max_connections", c.limits.max_connections));
  c.limits.max_connections = static_cast<int>(conns);
  BATON_ASSIGN_OR_RETURN(int64_t per_client,
                         doc.get_or<int64_t>("limits.max_connections_per_client",
                                             c.limits.max_connections_per_client));
  if (per_client < 0 || per_client > (1 << 20)) {
    return invalid_argument(doc.source_name() +
                            ": limits.max_connections_per_client: must be in [0, 1048576]");
  }
  c.limits.max_connections_per_client = static_cast<int>(per_client);
  BATON_ASSIGN_OR_RETURN(int64_t header_kb, get_positive(doc, "limits.max_header_kb", 16));
  c.limits.max_header_bytes = header_kb * 1024;
  BATON_ASSIGN_OR_RETURN(c.limits.max_header_count,
                         get_positive(doc, "limits.max_headers", c.limits.max_header_count));
  BATON_ASSIGN_OR_RETURN(c.limits.header_timeout,
                         get_ms(doc, "limits.header_timeout_ms", c.limits.header_timeout));
  BATON_ASSIGN_OR_RETURN(c.limits.connect_timeout,
                         get_ms(doc, "limits.connect_timeout_ms", c.limits.connect_timeout));
  BATON_ASSIGN_OR_RETURN(c.limits.first_byte_timeout,
                         get_ms(doc, "limits.first_byte_timeout_ms", c.limits.first_byte_timeout));
  BATON_ASSIGN_OR_RETURN(c.limits.stream_idle_timeout, get_ms(doc, "limits.stream_idle_timeout_ms",
                                                              c.limits.stream_idle_timeout));

  BATON_RETURN_IF_ERROR(
      doc.check_known_keys("retry", {"max_attempts", "backoff_ms", "max_backoff_ms"}));
  BATON_ASSIGN_OR_RETURN(int64_t attempts, get_positive(doc, "retry.max_attempts", 3));
  c.retry.max_attempts = static_cast<int>(attempts);
  BATON_ASSIGN_OR_RETURN(c.retry.backoff, get_ms(doc, "retry.backoff_ms", c.retry.backoff));
  BATON_ASSIGN_OR_RETURN(c.retry.max_backoff,
                         get_ms(doc, "retry.max_backoff_ms", c.retry.max_backoff));

  BATON_RETURN_IF_ERROR(doc.check_known_keys("breaker", {"failure_threshold", "open_ms"}));
  BATON_ASSIGN_OR_RETURN(int64_t threshold, get_positive(doc, "breaker.failure_threshold", 5));
  c.breaker.failure_threshold = static_cast<int>(threshold);
  BATON_ASSIGN_OR_RETURN(c.breaker.open_time, get_ms(doc, "breaker.open_ms", c.breaker.open_time));

  BATON_RETURN_IF_ERROR(doc.check_known_keys(
      "health", {"interval_ms", "timeout_ms", "unhealthy_after", "healthy_after"}));
  BATON_ASSIGN_OR_RETURN(c.health.interval, get_ms(doc, "health.interval_ms", c.health.interval));
  BATON_ASSIGN_OR_RETURN(c.health.timeout, get_ms(doc, "health.timeout_ms", c.health.timeout));
  BATON_ASSIGN_OR_RETURN(int64_t unhealthy, get_positive(doc, "health.unhealthy_after", 2));
  BATON_ASSIGN_OR_RETURN(int64_t healthy, get_positive(doc, "health.healthy_after", 1));
  c.health.unhealthy_after = static_cast<int>(unhealthy);
  c.health.healthy_after = static_cast<int>(healthy);

  BATON_RETURN_IF_ERROR(
      doc.check_known_keys("pd", {"max_prefill_tries", "forward_deadline_ms", "lease_ms"}));
  BATON_ASSIGN_OR_RETURN(int64_t tries, get_positive(doc, "pd.max_prefill_tries", 4));
  c.pd.max_prefill_tries = static_cast<int>(tries);
  BATON_ASSIGN_OR_RETURN(c.pd.forward_deadline,
                         get_ms(doc, "pd.forward_deadline_ms", c.pd.forward_deadline));
  BATON_ASSIGN_OR_RETURN(c.pd.lease_ms, get_positive(doc, "pd.lease_ms", c.pd.lease_ms));

  if (Status s = finish_gateway_config(c); !s.is_ok()) {
    return Status(s.code(), doc.source_name() + ": " + s.message());
  }
  return c;
}

Result<GatewayConfig> load_gateway_config(const std::string& path) {
  BATON_ASSIGN_OR_RETURN(Config doc, Config::load_file(path));
  return parse_gateway_config(doc);
}

}  // namespace baton::gateway
