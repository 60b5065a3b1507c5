#include "gateway/gateway_core.h"

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "common/logging.h"

namespace baton::gateway::detail {

ClusterSnapshot Pool::snapshot(Clock::TimePoint now) const {
  ClusterSnapshot s;
  s.ring = ring;
  s.instances.reserve(instances.size());
  for (const auto& inst : instances) {
    s.instances.push_back(
        {inst->id, inst->in_flight.load(std::memory_order_relaxed), inst->routable(now)});
  }
  return s;
}

const InstancePtr* Pool::find(uint32_t id) const {
  for (const auto& inst : instances) {
    if (inst->id == id) return &inst;
  }
  return nullptr;
}

bool Pool::any_routable(Clock::TimePoint now) const {
  for (const auto& inst : instances) {
    if (inst->routable(now)) return true;
  }
  return false;
}

bool Pool::all_refusing(Clock::TimePoint now) const {
  bool any = false;
  for (const auto& inst : instances) {
    if (!inst->routable(now)) continue;
    if (!inst->refusing(now)) return false;
    any = true;
  }
  return any;
}

void InstanceRuntime::note_refusal(const protocol::Headers& headers, Clock::TimePoint now) {
  auto v = protocol::find_header(headers, "x-baton-admit-after-ms");
  if (!v) return;
  // The instance's own estimate, capped so that a wrong one costs little.
  const int ms = std::clamp(std::atoi(std::string(*v).c_str()), 0, 1000);
  if (ms <= 0) return;
  const int64_t until = (now + std::chrono::milliseconds(ms)).time_since_epoch().count();
  int64_t prev = refusing_until.load(std::memory_order_relaxed);
  while (until > prev && !refusing_until.compare_exchange_weak(prev, until)) {
  }
}

namespace {

void append_content(const nlohmann::json& content, std::string& out) {
  if (content.is_string()) {
    out += content.get_ref<const std::string&>();
  } else if (content.is_array()) {
    for (const auto& part : content) {
      if (part.is_object()) {
        auto t = part.find("text");
        if (t != part.end() && t->is_string()) out += t->get_ref<const std::string&>();
      }
    }
  }
}

}  // namespace

Result<RequestInfo> read_request_info(std::string_view body, bool chat) {
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return invalid_argument("invalid JSON: the body must be a JSON object");
  }
  RequestInfo info;
  info.chat = chat;
  if (auto m = j.find("model"); m != j.end() && m->is_string()) info.model = m->get<std::string>();
  if (auto s = j.find("stream"); s != j.end() && s->is_boolean()) info.stream = s->get<bool>();
  if (auto u = j.find("user"); u != j.end() && u->is_string()) info.user = u->get<std::string>();
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (auto t = j.find(key); t != j.end() && t->is_number_integer()) {
      info.max_tokens = t->get<int64_t>();
    }
  }
  if (chat) {
    if (auto msgs = j.find("messages"); msgs != j.end() && msgs->is_array()) {
      for (const auto& m : *msgs) {
        if (!m.is_object()) continue;
        if (auto r = m.find("role"); r != m.end() && r->is_string()) {
          info.prompt += r->get_ref<const std::string&>();
          info.prompt += '\n';
        }
        if (auto c = m.find("content"); c != m.end()) append_content(*c, info.prompt);
        info.prompt += '\n';
      }
    }
    info.prompt_chars = static_cast<int64_t>(info.prompt.size());
  } else if (auto p = j.find("prompt"); p != j.end()) {
    if (p->is_string()) {
      info.prompt = p->get<std::string>();
      info.prompt_chars = static_cast<int64_t>(info.prompt.size());
    } else if (p->is_array()) {
      for (const auto& e : *p) {
        if (e.is_string()) {
          if (info.prompt.empty()) info.prompt = e.get<std::string>();
          info.prompt_chars += static_cast<int64_t>(e.get_ref<const std::string&>().size());
        } else if (e.is_number_integer()) {
          // Token ids: about four characters each, for limits and routing.
          info.prompt_chars += 4;
          info.prompt += std::to_string(e.get<int64_t>());
          info.prompt += ' ';
        } else if (e.is_array()) {
          info.prompt_chars += static_cast<int64_t>(e.size()) * 4;
        }
      }
    }
  }
  return info;
}

GatewayMetrics::GatewayMetrics(MetricsRegistry& r)
    : requests(r.counter_family("baton:gateway_requests_total",
                                "Client requests by route, final status and answering instance",
                                {"route", "status", "instance"})),
      added_latency(
          r.histogram_family("baton:gateway_added_latency_seconds",
                             "Time a request spent in the gateway itself, upstream time excluded",
                             exponential_buckets(5e-6, 2, 18), {"route"})),
      rejections(r.counter_family("baton:gateway_rejections_total",
                                  "Requests or attempts refused, by reason", {"reason"})),
      forwards(r.histogram("baton:gateway_prefill_forwards_per_request",
                           "Prefill instances asked per P/D request (1: the first accepted)",
                           linear_buckets(1, 1, 8))),
      retries(r.counter_family("baton:gateway_retries_total",
                               "Upstream attempts retried elsewhere, by the instance that failed",
                               {"instance"})),
      upstream_errors(r.counter_family("baton:gateway_upstream_errors_total",
                                       "Upstream failures seen by the gateway (passive health)",
                                       {"instance", "kind"})),
      routing_seconds(r.histogram("baton:gateway_routing_decision_seconds",
                                  "Time to rank the candidates of one request",
                                  exponential_buckets(2.5e-7, 2, 16))) {}

GatewayCore::GatewayCore(const Clock& clock, uint64_t seed) : clock(clock), rng(seed) {}

void finish_log(GatewayCore& core, const ExchangeLog& log, bool access_log) {
  core.metrics.requests.with({log.route, std::to_string(log.status), log.instance}).inc();
  if (!access_log) return;
  const double ms = std::chrono::duration<double, std::milli>(core.clock.now() - log.start).count();
  BATON_LOG_INFO(
      "access remote={} method={} route={} status={} group={} instance={} prefill={} "
      "attempts={} forwards={} bytes={} key={} duration_ms={:.3f}",
      log.remote, log.method, log.route, log.status, log.group.empty() ? "-" : log.group,
      log.instance, log.prefill, log.attempts, log.forwards, log.bytes_out,
      log.key_name.empty() ? "-" : log.key_name, ms);
}

protocol::Headers forward_headers(const protocol::HttpRequest& req, uint64_t request_id) {
  protocol::Headers out;
  for (const auto& [name, value] : req.headers) {
    if (protocol::iequals(name, "authorization") ||
        protocol::iequals(name, "x-baton-cluster-token") ||
        protocol::iequals(name, "x-forwarded-for") || protocol::iequals(name, "expect")) {
      continue;
    }
    out.emplace_back(name, value);
  }
  out.emplace_back("x-forwarded-for", req.remote_address);
  if (!req.header("x-request-id")) {
    out.emplace_back("x-request-id", "gw-" + std::to_string(request_id));
  }
  return out;
}

std::chrono::nanoseconds backoff_delay(const RetryConfig& retry, int attempt, uint64_t random) {
  using std::chrono::nanoseconds;
  const int shift = std::clamp(attempt - 1, 0, 20);
  nanoseconds d = std::chrono::duration_cast<nanoseconds>(retry.backoff) * (int64_t{1} << shift);
  d = std::min(d, std::chrono::duration_cast<nanoseconds>(retry.max_backoff));
  if (d.count() <= 0) return nanoseconds::zero();
  const double u = static_cast<double>(random >> 11) * 0x1.0p-53;  // [0, 1)
  return nanoseconds(static_cast<int64_t>(static_cast<double>(d.count()) * (0.5 + 0.5 * u)));
}

std::vector<InstancePtr> rank_pool(GatewayCore& core, const GroupState& group, const Pool& pool,
                                   PolicyKind policy, PrefixTree GroupRouting::*tree,
                                   const protocol::HttpRequest& req, const RequestInfo& info,
                                   size_t max) {
  const auto t0 = core.clock.now();
  ClusterSnapshot snap = pool.snapshot(t0);
  RouteRequest r;
  r.random = core.random();
  r.imbalance_threshold = group.config.imbalance_threshold;
  if (policy == PolicyKind::kRoundRobin) {
    r.sequence = group.routing->sequence.fetch_add(1, std::memory_order_relaxed);
  }
  std::vector<PrefixMatch> matches;
  if (policy == PolicyKind::kConsistentHash) {
    auto key = req.header(group.config.affinity_header);
    if (key && !key->empty()) {
      r.affinity = hash_bytes(*key);
    } else if (!info.user.empty()) {
      r.affinity = hash_bytes(info.user);
    }
  } else if (policy == PolicyKind::kPrefixAware && tree != nullptr) {
    std::lock_guard lock(group.routing->mu);
    ((*group.routing).*tree).match(info.prompt, matches);
    r.prefix = matches;
  }
  std::vector<uint32_t> ids = rank_instances(policy, snap, r, max);
  std::vector<InstancePtr> out;
  out.reserve(ids.size());
  for (uint32_t id : ids) {
    if (const InstancePtr* p = pool.find(id)) out.push_back(*p);
  }
  core.metrics.routing_seconds.observe(
      std::chrono::duration<double>(core.clock.now() - t0).count());
  return out;
}

void record_prefix(GroupRouting& routing, PrefixTree GroupRouting::*tree, std::string_view prompt,
                   uint32_t instance) {
  std::lock_guard lock(routing.mu);
  (routing.*tree).insert(prompt, instance, ++routing.tick);
}

}  // namespace baton::gateway::detail
