#include "controller/controller.h"

#include <condition_variable>
#include <future>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/logging.h"
#include "common/metrics.h"
#include "common/thread_pool.h"
#include "controller/role_client.h"
#include "protocol/http_client.h"

namespace baton::controller {

namespace {

// What one member's probe found; gathered off the lock, applied under it.
struct ProbeResult {
  bool ok = false;
  std::string detail;
  std::optional<MetricsScrape> scrape;
  std::optional<Result<RoleStatus>> role_status;
};

ProbeResult probe_member(const Member& m, bool changing, const std::string& token,
                         std::chrono::milliseconds timeout) {
  ProbeResult out;
  protocol::HttpClient http(m.host, m.port);
  auto health = http.request("GET", "/health", "", {}, protocol::deadline_in(timeout));
  if (!health.is_ok()) {
    out.detail = health.status().to_string();
    return out;
  }
  out.ok = health->status == 200;
  if (!out.ok) out.detail = "GET /health: HTTP " + std::to_string(health->status);
  auto metrics = http.request("GET", "/metrics", "", {}, protocol::deadline_in(timeout));
  if (metrics.is_ok() && metrics->status == 200) {
    auto scrape = parse_metrics(metrics->body);
    if (scrape.is_ok()) {
      out.scrape = std::move(*scrape);
    } else {
      BATON_LOG_WARN("controller: {} /metrics: {}", m.id, scrape.status().message());
    }
  }
  if (changing) out.role_status = get_role_status(m, token, protocol::deadline_in(timeout));
  return out;
}

struct PendingChange {
  Member member;
  std::string group;
  Role from = Role::kMixed;
  Role to = Role::kMixed;
  std::string reason;
};

}  // namespace

class Controller::Impl {
 public:
  Impl(ControllerOptions options, const Membership& membership, const Clock& clock)
      : options_(std::move(options)),
        membership_(membership),
        clock_(clock),
        pool_(static_cast<size_t>(std::max(1, options_.probe_threads)), 4096, "ctl-probe") {
    decisions_ = &metrics_.counter_family("baton:controller_decisions_total",
                                          "P/D ratio decisions by group, action and reason.",
                                          {"group", "action", "reason"});
    instances_ =
        &metrics_.gauge_family("baton:controller_instances", "Members by group, role and health.",
                               {"group", "role", "health"});
    ratio_ =
        &metrics_.gauge_family("baton:controller_pd_ratio",
                               "Healthy prefill instances per healthy decode instance.", {"group"});
    role_changes_ = &metrics_.counter_family("baton:controller_role_changes_total",
                                             "Role changes by group, roles and result.",
                                             {"group", "from", "to", "result"});
    transitions_ = &metrics_.counter_family("baton:controller_health_transitions_total",
                                            "Health transitions by new state.", {"to"});
    rounds_ = &metrics_.counter("baton:controller_rounds_total", "Control rounds run.");
  }

  Status start_http() {
    if (!options_.http) return Status::ok();
    auto server = protocol::HttpServer::start(
        *options_.http,
        [this](protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
          if (req.method != "GET") {
            w->send_error(405, "method " + req.method + " is not allowed", "method_not_allowed");
          } else if (req.path == "/metrics") {
            w->send(200, std::string(MetricsRegistry::kContentType), metrics_.render());
          } else if (req.path == "/health") {
            w->send(200, "application/json", "{}");
          } else if (req.path == "/cluster") {
            w->send(200, "application/json", cluster_json(view()));
          } else {
            w->send_error(not_found("path: no route for " + req.path));
          }
        });
    if (!server.is_ok()) return server.status();
    http_ = std::move(*server);
    return Status::ok();
  }

  void start_loop() {
    loop_ = std::thread([this] {
      while (true) {
        auto next = std::chrono::steady_clock::now() + options_.interval;
        run_round();
        std::unique_lock lock(stop_mu_);
        if (stop_cv_.wait_until(lock, next, [&] { return stopping_; })) break;
      }
    });
  }

  void stop() {
    {
      std::lock_guard lock(stop_mu_);
      if (stopping_ && !loop_.joinable() && !http_) return;
      stopping_ = true;
    }
    stop_cv_.notify_all();
    if (loop_.joinable()) loop_.join();
    if (http_) {
      http_->stop();
      http_.reset();
    }
    (void)pool_.shutdown(std::chrono::steady_clock::now() + 2 * options_.probe_timeout);
    spdlog::default_logger_raw()->flush();
  }

  uint16_t port() const { return http_ ? http_->port() : 0; }

  void on_event(std::function<void(const ControllerEvent&)> cb) {
    std::lock_guard lock(mu_);
    callbacks_.push_back(std::move(cb));
  }

  ControllerView view() const {
    std::lock_guard lock(mu_);
    ControllerView v;
    v.rounds = rounds_done_;
    std::map<std::string, GroupStatus> groups;
    for (const auto& [id, t] : tracked_) {
      InstanceStatus s;
      s.member = t.member;
      s.role = t.role;
      s.health = t.health;
      s.load = t.load;
      s.changing_role = t.changing;
      if (t.changing) s.target = t.target;
      v.instances.push_back(std::move(s));
      GroupStatus& g = groups[t.member.group];
      g.group = t.member.group;
      if (t.health.routable()) {
        (t.role == Role::kPrefill ? g.prefill : t.role == Role::kDecode ? g.decode : g.mixed)++;
      }
    }
    for (auto& [name, g] : groups) {
      auto d = last_decision_.find(name);
      if (d != last_decision_.end()) g.last_decision = d->second;
      v.groups.push_back(std::move(g));
    }
    return v;
  }

  void run_round() {
    std::vector<Member> members = membership_.members();
    std::vector<std::future<ProbeResult>> futures;
    std::vector<bool> queued;
    {
      std::lock_guard lock(mu_);
      for (const Member& m : members) {
        bool changing = tracked_.count(m.id) > 0 && tracked_[m.id].changing;
        auto f = pool_.submit_with_result(
            [m, changing, token = options_.cluster_token, timeout = options_.probe_timeout] {
              return probe_member(m, changing, token, timeout);
            });
        queued.push_back(f.is_ok());
        futures.push_back(f.is_ok() ? std::move(*f) : std::future<ProbeResult>());
      }
    }
    std::vector<ProbeResult> results(members.size());
    for (size_t i = 0; i < members.size(); ++i) {
      if (queued[i]) {
        try {
          results[i] = futures[i].get();
        } catch (const std::exception& e) {
          results[i].detail = std::string("controller: probe failed: ") + e.what();
        }
      } else {
        results[i].detail = "controller: probe not queued";
      }
    }
    std::vector<ControllerEvent> events;
    std::vector<PendingChange> changes;
    std::vector<std::function<void(const ControllerEvent&)>> callbacks;
    {
      std::lock_guard lock(mu_);
      apply_probes(members, results, events);
      decide(events, changes);
      ++rounds_done_;
      rounds_->inc();
      update_gauges();
      callbacks = callbacks_;
    }
    for (const PendingChange& c : changes) start_change(c, events);
    for (const ControllerEvent& e : events) {
      for (const auto& cb : callbacks) cb(e);
    }
    // The logger flushes by itself only at warning level; decisions and
    // health transitions are info, and a log file read while the cluster runs
    // (or after it was killed) must have them.
    spdlog::default_logger_raw()->flush();
  }

 private:
  struct Tracked {
    Member member;
    Role role = Role::kMixed;
    std::optional<Role> completed;  // the role of the last completed change
    InstanceHealth health;
    std::optional<MetricsScrape> last_scrape;
    std::optional<LoadReport> load;   // history merged
    std::vector<LoadReport> history;  // within load_window
    bool changing = false;
    bool no_role_endpoint = false;  // a change failed for want of the endpoint
    Role from = Role::kMixed;
    Role target = Role::kMixed;
    Clock::TimePoint change_started{};
  };

  void emit(std::vector<ControllerEvent>& events, ControllerEvent::Kind kind,
            const std::string& instance, const std::string& group, std::string message) {
    BATON_LOG_INFO("controller: {}", message);
    events.push_back(ControllerEvent{kind, instance, group, std::move(message)});
  }

  // Load measured in the old role says nothing about the new one.
  static void forget_load(Tracked& t) {
    t.history.clear();
    t.load.reset();
  }

  void finish_change(Tracked& t, const std::string& result, std::string message,
                     std::vector<ControllerEvent>& events) {
    role_changes_
        ->with({t.member.group, std::string(role_name(t.from)), std::string(role_name(t.target)),
                result})
        .inc();
    t.changing = false;
    emit(events, ControllerEvent::Kind::kRoleChange, t.member.id, t.member.group,
         std::move(message));
  }

  // mu_ held.
  void apply_probes(const std::vector<Member>& members, std::vector<ProbeResult>& results,
                    std::vector<ControllerEvent>& events) {
    const Clock::TimePoint now = clock_.now();
    std::set<std::string> present;
    for (size_t i = 0; i < members.size(); ++i) {
      const Member& m = members[i];
      ProbeResult& r = results[i];
      present.insert(m.id);
      auto [it, added] = tracked_.try_emplace(m.id);
      Tracked& t = it->second;
      if (added) {
        BATON_LOG_INFO("controller: member {} joined ({} {}, group {})", m.id, m.address(),
                       role_name(m.role), m.group);
      }
      if (t.member.role != m.role) t.completed.reset();  // the membership has its own word
      t.member = m;

      HealthStep step = observe(options_.health, t.health, Probe{now, r.ok, r.detail});
      t.health = step.next;
      if (step.transition) {
        // A restarted instance may be a newer build: let it try again.
        if (step.transition->to == HealthState::kHealthy) t.no_role_endpoint = false;
        transitions_->with({std::string(health_name(step.transition->to))}).inc();
        emit(events, ControllerEvent::Kind::kHealth, m.id, m.group,
             m.id + " (" + m.address() + ") " +
                 std::string(step.transition->to == HealthState::kHealthy ? "in" : "out") + ": " +
                 std::string(health_name(step.transition->to)) + ", " + step.transition->reason);
      }
      if (r.scrape) {
        t.history.push_back(
            make_load_report(t.last_scrape ? &*t.last_scrape : nullptr, *r.scrape, now));
        t.last_scrape = std::move(r.scrape);
        while (t.history.size() > 1 && now - t.history.front().at > options_.load_window) {
          t.history.erase(t.history.begin());
        }
        t.load = merge_reports(t.history, options_.window_observations);
      }

      t.role = t.completed.value_or(m.role);
      if (t.load && t.load->role) {
        auto reported = parse_role(*t.load->role);
        if (reported.is_ok()) t.role = *reported;
      }

      if (!t.changing) continue;
      if (r.role_status && r.role_status->is_ok()) {
        const RoleStatus& s = **r.role_status;
        if (s.settled_at(t.target)) {
          t.completed = t.target;
          t.role = t.target;
          forget_load(t);
          finish_change(t, "done",
                        m.id + " now serves " + std::string(role_name(t.target)) + " (was " +
                            std::string(role_name(t.from)) + ")",
                        events);
          continue;
        }
        if (!s.draining) {
          finish_change(t, "failed",
                        m.id + " role change to " + std::string(role_name(t.target)) +
                            " failed: the instance serves " + std::string(role_name(s.role)),
                        events);
          continue;
        }
      } else if (r.role_status && r.role_status->status().code() == StatusCode::kUnimplemented) {
        t.no_role_endpoint = true;
        finish_change(t, "failed", r.role_status->status().to_string(), events);
        continue;
      }
      if (now - t.change_started > options_.role_change_timeout) {
        finish_change(t, "timed_out",
                      m.id + " role change to " + std::string(role_name(t.target)) +
                          " did not finish in time",
                      events);
      }
    }
    for (auto it = tracked_.begin(); it != tracked_.end();) {
      if (present.count(it->first) == 0) {
        BATON_LOG_INFO("controller: member {} left", it->first);
        it = tracked_.erase(it);
      } else {
        ++it;
      }
    }
  }

  // mu_ held.
  void decide(std::vector<ControllerEvent>& events, std::vector<PendingChange>& changes) {
    const Clock::TimePoint now = clock_.now();
    std::map<std::string, GroupSnapshot> groups;
    for (const auto& [id, t] : tracked_) {
      GroupSnapshot& g = groups[t.member.group];
      g.group = t.member.group;
      InstanceView v;
      v.id = id;
      v.role = t.role;
      v.healthy = t.health.routable();
      v.changing_role = t.changing;
      v.can_change_role = !t.no_role_endpoint;
      v.load = t.load;
      g.instances.push_back(std::move(v));
    }
    for (auto& [name, snapshot] : groups) {
      GroupEvaluation e = evaluate_group(options_.ratio, snapshot, group_state_[name], now);
      const RatioDecision& d = e.decision;
      decisions_
          ->with({name, std::string(action_name(d.action)), std::string(reason_name(d.reason))})
          .inc();
      std::string line = "group " + name + ": " + std::string(action_name(d.action)) + " (" +
                         std::string(reason_name(d.reason)) + ") " + d.detail;
      const bool acts = d.action != Action::kHold && options_.adjust_ratio;
      if (d.action != Action::kHold) {
        emit(events, ControllerEvent::Kind::kDecision, d.instance, name,
             options_.adjust_ratio ? line : line + " [advice only: ratio adjustment is off]");
      } else if (last_reason_[name] != d.reason) {
        BATON_LOG_INFO("controller: {}", line);
      } else {
        BATON_LOG_DEBUG("controller: {}", line);
      }
      last_reason_[name] = d.reason;
      last_decision_[name] = d;
      group_state_[name] = e.next;
      if (!acts) continue;
      Tracked& t = tracked_[d.instance];
      t.changing = true;
      t.from = t.role;
      t.target = d.to;
      t.change_started = now;
      changes.push_back(PendingChange{t.member, name, t.role, d.to,
                                      std::string(reason_name(d.reason)) + ": " + d.detail});
    }
  }

  // Sends one role change (no lock held during the call).
  void start_change(const PendingChange& c, std::vector<ControllerEvent>& events) {
    auto r = request_role_change(c.member, options_.cluster_token, c.to, options_.drain_timeout,
                                 c.reason, protocol::deadline_in(options_.probe_timeout));
    std::lock_guard lock(mu_);
    auto it = tracked_.find(c.member.id);
    if (it == tracked_.end() || !it->second.changing) return;
    Tracked& t = it->second;
    if (!r.is_ok()) {
      if (r.status().code() == StatusCode::kUnimplemented) t.no_role_endpoint = true;
      finish_change(t, "failed",
                    c.member.id + " role change to " + std::string(role_name(c.to)) +
                        " refused: " + r.status().to_string(),
                    events);
      return;
    }
    if (r->settled_at(c.to)) {
      t.completed = c.to;
      t.role = c.to;
      forget_load(t);
      finish_change(t, "done", c.member.id + " now serves " + std::string(role_name(c.to)), events);
      return;
    }
    emit(events, ControllerEvent::Kind::kRoleChange, c.member.id, c.group,
         c.member.id + " draining to change " + std::string(role_name(c.from)) + " -> " +
             std::string(role_name(c.to)) + " (" + std::to_string(r->in_flight) +
             " requests in flight)");
  }

  // mu_ held.
  void update_gauges() {
    for (const auto& labels : gauge_labels_) instances_->with(labels).set(0);
    std::map<std::string, std::pair<int, int>> pd;
    for (const auto& [id, t] : tracked_) {
      std::vector<std::string> labels = {t.member.group, std::string(role_name(t.role)),
                                         std::string(health_name(t.health.state))};
      instances_->with(labels).inc();
      gauge_labels_.insert(labels);
      if (t.health.routable()) {
        if (t.role == Role::kPrefill) pd[t.member.group].first++;
        if (t.role == Role::kDecode) pd[t.member.group].second++;
      }
    }
    for (const auto& [group, counts] : pd) {
      if (counts.second > 0) {
        ratio_->with({group}).set(static_cast<double>(counts.first) / counts.second);
      }
    }
  }

  const ControllerOptions options_;
  const Membership& membership_;
  const Clock& clock_;
  ThreadPool pool_;
  MetricsRegistry metrics_;
  CounterFamily* decisions_;
  GaugeFamily* instances_;
  GaugeFamily* ratio_;
  CounterFamily* role_changes_;
  CounterFamily* transitions_;
  Counter* rounds_;
  std::unique_ptr<protocol::HttpServer> http_;

  mutable std::mutex mu_;
  std::map<std::string, Tracked> tracked_;
  std::map<std::string, GroupState> group_state_;
  std::map<std::string, RatioDecision> last_decision_;
  std::map<std::string, Reason> last_reason_;
  std::set<std::vector<std::string>> gauge_labels_;
  std::vector<std::function<void(const ControllerEvent&)>> callbacks_;
  uint64_t rounds_done_ = 0;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread loop_;
};

Controller::Controller(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Controller::~Controller() { stop(); }

Result<std::unique_ptr<Controller>> Controller::start(ControllerOptions options,
                                                      const Membership& membership,
                                                      const Clock& clock) {
  BATON_RETURN_IF_ERROR(validate(options.ratio));
  if (options.interval.count() <= 0 || options.probe_timeout.count() <= 0) {
    return invalid_argument("controller: interval and probe timeout must be positive");
  }
  bool loop = options.start_loop;
  auto impl = std::make_unique<Impl>(std::move(options), membership, clock);
  BATON_RETURN_IF_ERROR(impl->start_http());
  if (loop) impl->start_loop();
  return std::unique_ptr<Controller>(new Controller(std::move(impl)));
}

void Controller::stop() { impl_->stop(); }
uint16_t Controller::port() const { return impl_->port(); }
void Controller::run_round() { impl_->run_round(); }
ControllerView Controller::view() const { return impl_->view(); }
void Controller::on_event(std::function<void(const ControllerEvent&)> cb) {
  impl_->on_event(std::move(cb));
}

std::string Controller::cluster_json(const ControllerView& view) {
  using Json = nlohmann::ordered_json;
  Json out = {{"rounds", view.rounds}, {"instances", Json::array()}, {"groups", Json::array()}};
  for (const InstanceStatus& s : view.instances) {
    Json i = {{"id", s.member.id},
              {"address", s.member.address()},
              {"group", s.member.group},
              {"role", std::string(role_name(s.role))},
              {"health", std::string(health_name(s.health.state))},
              {"routable", s.health.routable()},
              {"changing_role", s.changing_role}};
    if (s.target) i["target"] = std::string(role_name(*s.target));
    if (!s.health.routable() && !s.health.last_error.empty()) {
      i["last_error"] = s.health.last_error;
    }
    if (s.load) {
      Json l = {{"running", s.load->running},
                {"waiting", s.load->waiting},
                {"kv_usage", s.load->kv_usage},
                {"rejected", s.load->rejected}};
      if (auto q = s.load->ttft_quantile(0.9)) l["ttft_p90_s"] = *q;
      if (auto q = s.load->tpot_quantile(0.9)) l["tpot_p90_s"] = *q;
      if (auto q = s.load->prefill_ttft.quantile(0.9)) l["prefill_ttft_p90_s"] = *q;
      if (auto q = s.load->itl.quantile(0.9)) l["itl_p90_s"] = *q;
      i["load"] = l;
    }
    out["instances"].push_back(i);
  }
  for (const GroupStatus& g : view.groups) {
    Json j = {{"group", g.group}, {"prefill", g.prefill}, {"decode", g.decode}, {"mixed", g.mixed}};
    if (g.last_decision) {
      j["last_decision"] = {{"action", std::string(action_name(g.last_decision->action))},
                            {"reason", std::string(reason_name(g.last_decision->reason))},
                            {"detail", g.last_decision->detail}};
      if (!g.last_decision->instance.empty()) {
        j["last_decision"]["instance"] = g.last_decision->instance;
      }
    }
    out["groups"].push_back(j);
  }
  return out.dump();
}

}  // namespace baton::controller
