#include "gateway/gateway.h"

#include <algorithm>
#include <condition_variable>
#include <random>
#include <set>

#include "common/logging.h"
#include "gateway/gateway_core.h"
#include "protocol/http_server.h"
#include "protocol/openai_error.h"

namespace baton::gateway {

using detail::ClusterState;
using detail::GatewayCore;
using detail::GroupState;
using detail::InstancePtr;
using detail::InstanceRuntime;

class Gateway::Impl : public std::enable_shared_from_this<Gateway::Impl> {
 public:
  Impl(const Clock& clock, uint64_t seed) : core_(std::make_shared<GatewayCore>(clock, seed)) {}

  // One single-threaded front server per I/O thread, all on the same port
  // (SO_REUSEPORT); each upstream call runs on the loop of the client
  // connection that caused it, so a relayed byte never changes threads.
  Status init(GatewayConfig config) {
    BATON_RETURN_IF_ERROR(finish_gateway_config(config));
    protocol::HttpServerOptions http;
    http.host = config.host;
    http.port = config.port;
    http.io_threads = 1;
    http.reuse_port = config.io_threads > 1;
    http.max_body_bytes = static_cast<size_t>(config.limits.max_body_bytes);
    // Each shard gets its share; the kernel spreads connections evenly.
    http.max_connections = std::max(1, config.limits.max_connections / config.io_threads);
    // Per client the limit is exact: the shards count in one place.
    http.max_connections_per_client = config.limits.max_connections_per_client;
    if (http.max_connections_per_client > 0) {
      http.client_counts = std::make_shared<protocol::ClientConnectionCounts>();
    }
    http.header_timeout = config.limits.header_timeout;
    http.max_header_bytes = static_cast<size_t>(config.limits.max_header_bytes);
    http.max_header_count = static_cast<size_t>(config.limits.max_header_count);
    if (http.reuse_port && http.port != 0) {
      // SO_REUSEPORT would also let this gateway share a port that another
      // process already listens on; a plain bind first refuses that.
      protocol::HttpServerOptions probe = http;
      probe.reuse_port = false;
      auto p = protocol::HttpServer::start(
          probe, [](protocol::HttpRequest, std::shared_ptr<protocol::ResponseWriter> w) {
            w->send_error(unavailable("gateway starting"));
          });
      if (!p.is_ok()) return p.status();
      (*p)->stop();
    }
    auto self = weak_from_this();
    std::vector<std::shared_ptr<boost::asio::io_context>> loops;
    for (int i = 0; i < config.io_threads; ++i) {
      if (i > 0) http.port = http_.front()->port();
      auto server = protocol::HttpServer::start(
          http, [self](protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
            if (auto impl = self.lock()) impl->handle(std::move(req), std::move(w));
          });
      if (!server.is_ok()) {
        for (auto& s : http_) s->stop();
        return server.status();
      }
      loops.push_back((*server)->io_context());
      http_.push_back(std::move(*server));
    }
    core_->upstream = std::make_unique<UpstreamClient>(std::move(loops));
    apply(std::move(config));
    ready_ = true;
    schedule_health();
    return Status::ok();
  }

  Status reload(GatewayConfig config) {
    BATON_RETURN_IF_ERROR(finish_gateway_config(config));
    const auto& old = *core_->state()->config;
    if (config.host != old.host || config.port != old.port) {
      BATON_LOG_WARN("reload: the listening address stays {}:{} until restart", old.host, old.port);
    }
    apply(std::move(config));
    BATON_LOG_INFO("reload: {} instances, {} groups", core_->state()->instances.size(),
                   core_->state()->groups.size());
    return Status::ok();
  }

  void stop() {
    if (stopped_.exchange(true)) return;
    // Upstream work first: the front servers' threads run it and only exit
    // once none is left.
    if (core_->upstream) core_->upstream->shutdown();
    for (auto& s : http_) s->stop();
    if (core_->upstream) core_->upstream->stop();
  }

  uint16_t port() const { return http_.empty() ? 0 : http_.front()->port(); }
  GatewayCore& core() { return *core_; }

  std::vector<InstanceStatus> instances() const {
    auto st = core_->state();
    const auto now = core_->clock.now();
    std::vector<InstanceStatus> out;
    for (const auto& inst : st->instances) {
      InstanceStatus s;
      s.name = inst->config.name;
      s.address = inst->config.address();
      s.role = inst->config.role;
      s.group = inst->config.group;
      s.healthy = inst->healthy.load();
      s.draining = inst->draining.load();
      s.breaker = inst->breaker.state(now);
      s.in_flight = inst->in_flight.load();
      out.push_back(std::move(s));
    }
    return out;
  }

  void health_round(bool wait) {
    auto st = core_->state();
    const auto& hc = st->config->health;
    struct Waiter {
      std::mutex mu;
      std::condition_variable cv;
      size_t left = 0;
    };
    auto waiter = std::make_shared<Waiter>();
    for (const auto& inst : st->instances) {
      if (inst->health_pending.exchange(true)) continue;
      {
        std::lock_guard lock(waiter->mu);
        ++waiter->left;
      }
      UpstreamRequest ur;
      ur.method = "GET";
      ur.target = "/health";
      ur.connect_timeout = hc.timeout;
      ur.first_byte_timeout = hc.timeout;
      ur.idle_timeout = hc.timeout;
      auto status = std::make_shared<int>(0);
      UpstreamHandlers h;
      h.on_headers = [status](int s, protocol::Headers) { *status = s; };
      h.on_done = [inst, status, waiter, hc](const UpstreamResult& r) {
        const bool ok = r.status.is_ok() && *status == 200;
        if (ok) {
          inst->health_failures = 0;
          if (++inst->health_successes >= hc.healthy_after && !inst->healthy.exchange(true)) {
            BATON_LOG_INFO("instance {} is healthy again", inst->config.name);
          }
        } else {
          inst->health_successes = 0;
          if (++inst->health_failures >= hc.unhealthy_after && inst->healthy.exchange(false)) {
            BATON_LOG_WARN(
                "instance {} failed {} health checks: {}", inst->config.name,
                inst->health_failures.load(),
                r.status.is_ok() ? "status " + std::to_string(*status) : r.status.message());
          }
        }
        inst->health_pending = false;
        std::lock_guard lock(waiter->mu);
        if (--waiter->left == 0) waiter->cv.notify_all();
      };
      inst->pool->start(std::move(ur), std::move(h));
    }
    if (!wait) return;
    std::unique_lock lock(waiter->mu);
    waiter->cv.wait_for(lock, hc.timeout * 3 + std::chrono::seconds(1),
                        [&] { return waiter->left == 0; });
  }

 private:
  void schedule_health() {
    const auto interval = core_->state()->config->health.interval;
    if (interval.count() <= 0 || stopped_.load()) return;
    core_->upstream->run_after(interval, [weak = weak_from_this()] {
      auto self = weak.lock();
      if (!self || self->stopped_.load()) return;
      self->health_round(false);
      self->schedule_health();
    });
  }

  // Builds and publishes the cluster state for `config`, keeping the runtime
  // of every instance whose name, address and role did not change.
  void apply(GatewayConfig config) {
    std::lock_guard lock(apply_mu_);
    auto prev = core_->state();
    auto st = std::make_shared<ClusterState>();
    std::unordered_map<std::string, InstancePtr> old;
    if (prev) {
      for (const auto& inst : prev->instances) old[inst->config.name] = inst;
    }
    for (const auto& ic : config.instances) {
      InstancePtr inst;
      auto it = old.find(ic.name);
      if (it != old.end() && it->second->config.address() == ic.address() &&
          it->second->config.role == ic.role && it->second->config.group == ic.group) {
        inst = it->second;
        old.erase(it);
      } else {
        inst = std::make_shared<InstanceRuntime>(
            next_id_++, ic, core_->upstream->make_pool(ic.host, ic.port), config.breaker);
      }
      inst->draining = ic.draining;
      st->instances.push_back(inst);
    }
    std::unordered_map<std::string, std::shared_ptr<detail::GroupRouting>> routing;
    if (prev) {
      for (const auto& g : prev->groups) routing[g.config.name] = g.routing;
    }
    for (const auto& gc : config.groups) {
      GroupState g;
      g.config = gc;
      auto r = routing.find(gc.name);
      g.routing = r != routing.end() ? r->second : std::make_shared<detail::GroupRouting>();
      for (const auto& inst : st->instances) {
        if (inst->config.group != gc.name) continue;
        detail::Pool& pool = inst->config.role == Role::kPrefill  ? g.prefill
                             : inst->config.role == Role::kDecode ? g.decode
                                                                  : g.mixed;
        pool.instances.push_back(inst);
      }
      for (detail::Pool* pool : {&g.mixed, &g.prefill, &g.decode}) {
        // Snapshots list instances by ascending id (policy.h); ids follow
        // creation, which after a reload is not the config's order.
        std::sort(pool->instances.begin(), pool->instances.end(),
                  [](const InstancePtr& a, const InstancePtr& b) { return a->id < b->id; });
        std::vector<uint32_t> ids;
        for (const auto& inst : pool->instances) ids.push_back(inst->id);
        pool->ring = std::make_shared<HashRing>(ids);
      }
      st->groups.push_back(std::move(g));
    }
    for (const auto& k : config.api_keys) st->keys[k.key] = k;
    st->config = std::make_shared<const GatewayConfig>(std::move(config));
    register_gauges(*st);
    core_->publish(std::move(st));
    // Only now, so that no request sees a state whose instances are all
    // draining before the new one is published.
    for (auto& [name, inst] : old) {
      // Gone from the config: no new requests; running streams hold the
      // runtime and its pool until they end.
      inst->draining = true;
      inst->pool->close_idle();
      BATON_LOG_INFO("instance {} removed: draining", name);
    }
  }

  void register_gauges(const ClusterState& st) {
    auto& reg = core_->registry;
    std::set<std::string> names;
    for (const auto& inst : st.instances) {
      const std::string& name = inst->config.name;
      names.insert(name);
      std::weak_ptr<InstanceRuntime> weak = inst;
      const Clock* clock = &core_->clock;
      reg.gauge_callback("baton:gateway_instance_in_flight",
                         "Requests the gateway has open on each instance",
                         [weak] {
                           auto i = weak.lock();
                           return i ? static_cast<double>(i->in_flight.load()) : 0.0;
                         },
                         {{"instance", name}});
      reg.gauge_callback("baton:gateway_circuit_breaker_state",
                         "Circuit breaker of each instance: 0 closed, 1 open, 2 half-open",
                         [weak, clock] {
                           auto i = weak.lock();
                           return i ? static_cast<double>(i->breaker.state(clock->now())) : 0.0;
                         },
                         {{"instance", name}});
      reg.gauge_callback("baton:gateway_instance_healthy",
                         "1 when the instance passes its health checks",
                         [weak] {
                           auto i = weak.lock();
                           return i && i->healthy.load() ? 1.0 : 0.0;
                         },
                         {{"instance", name}});
    }
    for (const auto& old : gauge_instances_) {
      if (names.contains(old)) continue;
      for (const char* family :
           {"baton:gateway_instance_in_flight", "baton:gateway_circuit_breaker_state",
            "baton:gateway_instance_healthy"}) {
        reg.remove_gauge_callback(family, {{"instance", old}});
      }
    }
    gauge_instances_ = names;
    std::set<std::pair<std::string, std::string>> groups;
    for (const auto& g : st.groups) {
      for (Role role : {Role::kMixed, Role::kPrefill, Role::kDecode}) {
        std::string gname = g.config.name;
        groups.insert({gname, std::string(role_name(role))});
        std::weak_ptr<GatewayCore> weak = core_;
        reg.gauge_callback(
            "baton:gateway_group_in_flight",
            "Requests open per scenario group and role (the P/D load the gateway sees)",
            [weak, gname, role] {
              auto core = weak.lock();
              if (!core) return 0.0;
              double sum = 0;
              for (const auto& inst : core->state()->instances) {
                if (inst->config.group == gname && inst->config.role == role) {
                  sum += inst->in_flight.load();
                }
              }
              return sum;
            },
            {{"group", gname}, {"role", std::string(role_name(role))}});
      }
    }
    for (const auto& old : gauge_groups_) {
      if (!groups.contains(old)) {
        reg.remove_gauge_callback("baton:gateway_group_in_flight",
                                  {{"group", old.first}, {"role", old.second}});
      }
    }
    gauge_groups_ = groups;
  }

  static const GroupState* resolve_group(const ClusterState& st, const detail::RequestInfo& info,
                                         std::optional<std::string_view> scenario) {
    for (const auto& g : st.groups) {
      const auto& c = g.config;
      if (!c.models.empty() &&
          std::find(c.models.begin(), c.models.end(), info.model) == c.models.end()) {
        continue;
      }
      if (!c.scenario.empty() && (!scenario || *scenario != c.scenario)) continue;
      if (info.prompt_chars < c.min_prompt_chars) continue;
      if (c.max_prompt_chars >= 0 && info.prompt_chars > c.max_prompt_chars) continue;
      return &g;
    }
    return nullptr;
  }

  void reject(protocol::ResponseWriter& w, detail::ExchangeLog& log, const ClusterState& st,
              const Status& s, std::string_view reason, int retry_after = 0,
              std::string_view code = {}) {
    core_->metrics.rejections.with({std::string(reason)}).inc();
    auto body = protocol::error_object(s);
    if (!code.empty()) body["error"]["code"] = code;
    protocol::Headers h;
    if (retry_after > 0) h.emplace_back("Retry-After", std::to_string(retry_after));
    if (s.code() == StatusCode::kUnauthenticated) {
      h.emplace_back("WWW-Authenticate", "Bearer");
    }
    log.status = s.http();
    detail::finish_log(*core_, log, st.config->access_log);
    w.send(s.http(), "application/json", body.dump(), std::move(h));
  }

  // Overload: each instance that could serve the request refused one
  // recently and has not reached the time it said it would admit again.
  void shed(protocol::ResponseWriter& w, detail::ExchangeLog& log, const ClusterState& st,
            const std::string& group) {
    reject(
        w, log, st,
        unavailable("group '" + group + "': every instance is at its admission limit; retry later"),
        "instances_refusing", 1, "overloaded");
  }

  void handle(protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
    if (!ready_.load(std::memory_order_acquire)) {
      w->send(503, "application/json", protocol::error_body(unavailable("gateway starting")),
              {{"Retry-After", "1"}});
      return;
    }
    detail::ExchangeLog log;
    log.start = core_->clock.now();
    log.method = req.method;
    log.remote = req.remote_address;
    auto st = core_->state();
    const std::string& path = req.path;
    const bool get = req.method == "GET";
    const bool post = req.method == "POST";
    if (path.starts_with("/internal/") || path == "/internal") {
      log.route = "internal";
      return reject(*w, log, *st, not_found("path: no route for " + path), "internal_path");
    }
    if (path == "/health" && get) {
      const auto now = core_->clock.now();
      for (const auto& inst : st->instances) {
        if (inst->routable(now)) return w->send(200, "application/json", "{}");
      }
      return w->send_error(unavailable("no upstream instance is routable"));
    }
    if (path == "/metrics" && get) {
      return w->send(200, std::string(MetricsRegistry::kContentType), core_->registry.render());
    }
    const bool chat = path == "/v1/chat/completions";
    const bool completion = path == "/v1/completions";
    const bool models = path == "/v1/models";
    log.route = chat         ? "chat_completions"
                : completion ? "completions"
                : models     ? "models"
                             : "other";
    if (!chat && !completion && !models) {
      return reject(*w, log, *st, not_found("path: no route for " + path), "no_route");
    }
    if ((models && !get) || (!models && !post)) {
      w->send_error(405, "method " + req.method + " is not allowed on " + path,
                    "method_not_allowed");
      return;
    }
    const GatewayConfig& config = *st->config;
    const ApiKeyConfig* key = nullptr;
    if (!st->keys.empty()) {
      auto auth = req.header("authorization");
      std::string_view token;
      if (auth && auth->size() > 7 && protocol::iequals(auth->substr(0, 7), "Bearer ")) {
        token = auth->substr(7);
      }
      auto it = st->keys.find(std::string(token));
      if (it == st->keys.end()) {
        return reject(*w, log, *st,
                      Status(StatusCode::kUnauthenticated,
                             token.empty() ? "missing API key (Authorization: Bearer <key>)"
                                           : "invalid API key"),
                      "auth");
      }
      key = &it->second;
      log.key_name = key->name;
    }
    if (models) {
      std::vector<InstancePtr> candidates;
      const auto now = core_->clock.now();
      for (const auto& inst : st->instances) {
        if (inst->config.role != Role::kPrefill && inst->routable(now)) candidates.push_back(inst);
      }
      if (candidates.size() > 2) candidates.resize(2);
      return detail::start_mixed_exchange(core_, st, nullptr, std::move(candidates), std::move(req),
                                          {}, std::move(w), std::move(log));
    }
    if (static_cast<int64_t>(req.body.size()) > config.limits.max_body_bytes) {
      return reject(*w, log, *st,
                    Status(StatusCode::kPayloadTooLarge,
                           "body: over the gateway's limit of " +
                               std::to_string(config.limits.max_body_bytes) + " bytes"),
                    "body_too_large");
    }
    auto info = detail::read_request_info(req.body, chat);
    if (!info.is_ok()) return reject(*w, log, *st, info.status(), "bad_request");
    if (info->prompt_chars > config.limits.max_prompt_chars) {
      return reject(
          *w, log, *st,
          Status(StatusCode::kPayloadTooLarge, "prompt: " + std::to_string(info->prompt_chars) +
                                                   " characters, over the gateway's limit of " +
                                                   std::to_string(config.limits.max_prompt_chars)),
          "prompt_too_long");
    }
    if (key != nullptr) {
      const int64_t tokens = info->prompt_chars / 4 + std::max<int64_t>(info->max_tokens, 1);
      RateDecision d = core_->limiter.admit(key->key, key->requests_per_minute,
                                            key->tokens_per_minute, tokens, core_->clock.now());
      if (!d.allowed) {
        return reject(*w, log, *st,
                      resource_exhausted(std::string("rate limit of key '") + key->name +
                                         "': " + d.reason + " exceeded"),
                      d.reason, static_cast<int>(d.retry_after.count()), d.reason);
      }
    }
    // A reload may publish a new state while this request is being routed;
    // when the one read first has nothing left to offer, the current one
    // gets a second look. (`pinned` keeps `config` and `key` valid.)
    const auto pinned = st;
    for (int pass = 0;; ++pass) {
      const GroupState* group = resolve_group(*st, *info, req.header("x-baton-scenario"));
      if (group == nullptr) {
        return reject(*w, log, *st,
                      not_found("model: no scenario group serves model '" + info->model + "'"),
                      "no_group");
      }
      log.group = group->config.name;
      const auto now = core_->clock.now();
      if (group->prefill.any_routable(now) && group->decode.any_routable(now)) {
        // Every prefill instance said it cannot start more in time: shed
        // now, before a decode instance reserves room for nothing.
        if (group->prefill.all_refusing(now)) return shed(*w, log, *st, group->config.name);
        return detail::start_pd_exchange(core_, st, group, std::move(req), std::move(*info),
                                         std::move(w), std::move(log));
      }
      auto candidates = detail::rank_pool(*core_, *group, group->mixed, group->config.policy,
                                          &detail::GroupRouting::mixed_tree, req, *info,
                                          static_cast<size_t>(st->config->retry.max_attempts));
      if (!candidates.empty() && group->mixed.all_refusing(now)) {
        return shed(*w, log, *st, group->config.name);
      }
      std::erase_if(candidates, [&](const InstancePtr& i) { return i->refusing(now); });
      if (!candidates.empty()) {
        return detail::start_mixed_exchange(core_, st, group, std::move(candidates), std::move(req),
                                            std::move(*info), std::move(w), std::move(log));
      }
      auto current = core_->state();
      if (pass == 0 && current != st) {
        st = std::move(current);
        continue;
      }
      return reject(*w, log, *st,
                    unavailable("group '" + group->config.name + "': no instance available"),
                    "no_instance", 1);
    }
  }

  std::shared_ptr<GatewayCore> core_;
  std::vector<std::unique_ptr<protocol::HttpServer>> http_;
  std::atomic<bool> ready_{false};
  std::mutex apply_mu_;
  uint32_t next_id_ = 1;
  std::atomic<bool> stopped_{false};
  std::set<std::string> gauge_instances_;
  std::set<std::pair<std::string, std::string>> gauge_groups_;
};

Result<std::unique_ptr<Gateway>> Gateway::start(GatewayConfig config, const Clock* clock,
                                                uint64_t seed) {
  if (seed == 0) seed = std::random_device{}();
  auto impl = std::make_shared<Impl>(clock ? *clock : SteadyClock::instance(), seed);
  BATON_RETURN_IF_ERROR(impl->init(std::move(config)));
  return std::unique_ptr<Gateway>(new Gateway(std::move(impl)));
}

Gateway::Gateway(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
Gateway::~Gateway() { stop(); }
uint16_t Gateway::port() const { return impl_->port(); }
Status Gateway::reload(GatewayConfig config) { return impl_->reload(std::move(config)); }
void Gateway::check_health_now() { impl_->health_round(true); }
std::vector<InstanceStatus> Gateway::instances() const { return impl_->instances(); }
MetricsRegistry& Gateway::metrics() { return impl_->core().registry; }
void Gateway::stop() { impl_->stop(); }

}  // namespace baton::gateway
