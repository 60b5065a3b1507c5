// `baton gateway`: the router in front of the instances (gateway/gateway.h).
// Configured from a YAML file (--config, reloaded on SIGHUP) or from simple
// flags for the common cases. With --etcd, the instances registered in etcd
// (controller::EtcdMembership) join the configured ones, and every change of
// the membership is applied through the same reload as a SIGHUP.

#include "gateway/gateway.h"

#include <atomic>
#include <csignal>
#include <iostream>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.h"
#include "cli/controller_settings.h"
#include "cli/etcd_members.h"
#include "common/logging.h"
#include "controller/membership.h"

namespace baton::cli {

namespace {

struct GatewayFlags {
  std::string config;
  std::vector<std::string> upstreams;
  std::vector<std::string> prefills;
  std::vector<std::string> decodes;
  std::vector<std::string> api_keys;
  std::string host;
  int port = -1;
  std::string policy;
  std::string cluster_token;
  int io_threads = 0;
  int health_interval_ms = -1;
  bool no_access_log = false;
  std::string log_level = "info";
  bool log_json = false;
  EtcdFlags etcd;
};

// Flags override the file (or the defaults when there is none).
Result<gateway::GatewayConfig> build_config(const GatewayFlags& f) {
  gateway::GatewayConfig c;
  if (!f.config.empty()) {
    BATON_ASSIGN_OR_RETURN(c, gateway::load_gateway_config(f.config));
  }
  auto add = [&](const std::vector<std::string>& urls, gateway::Role role) -> Status {
    for (const auto& url : urls) {
      BATON_ASSIGN_OR_RETURN(gateway::InstanceConfig inst, gateway::parse_instance_url(url));
      inst.role = role;
      inst.group = c.groups.empty() ? "default" : c.groups.front().name;
      c.instances.push_back(std::move(inst));
    }
    return Status::ok();
  };
  BATON_RETURN_IF_ERROR(add(f.upstreams, gateway::Role::kMixed));
  BATON_RETURN_IF_ERROR(add(f.prefills, gateway::Role::kPrefill));
  BATON_RETURN_IF_ERROR(add(f.decodes, gateway::Role::kDecode));
  for (const auto& k : f.api_keys) c.api_keys.push_back({k, "", 0, 0});  // name: a fingerprint
  if (!f.host.empty()) c.host = f.host;
  if (f.port >= 0) c.port = static_cast<uint16_t>(f.port);
  if (!f.cluster_token.empty()) c.cluster_token = f.cluster_token;
  if (f.io_threads > 0) c.io_threads = f.io_threads;
  if (f.health_interval_ms >= 0)
    c.health.interval = std::chrono::milliseconds(f.health_interval_ms);
  if (f.no_access_log) c.access_log = false;
  BATON_RETURN_IF_ERROR(gateway::finish_gateway_config(c));
  if (!f.policy.empty()) {
    BATON_ASSIGN_OR_RETURN(gateway::PolicyKind p, gateway::parse_policy(f.policy));
    for (auto& g : c.groups) g.policy = p;
  }
  if (c.instances.empty() && f.etcd.url.empty()) {
    return invalid_argument(
        "no instances: give --config, --upstream, --prefill and --decode, or --etcd");
  }
  return c;
}

// with_etcd_members, logging the members left out.
gateway::GatewayConfig with_members(gateway::GatewayConfig c,
                                    const std::vector<controller::Member>& members) {
  std::vector<std::string> left_out;
  c = with_etcd_members(std::move(c), members, &left_out);
  for (const std::string& line : left_out) BATON_LOG_WARN("{}", line);
  return c;
}

// Applies the configuration (flags and file) merged with the etcd members to
// the running gateway, from the SIGHUP path and from the membership watch.
// Thread-safe.
class Reloader {
 public:
  Reloader(gateway::Gateway& gw, gateway::GatewayConfig base,
           const controller::Membership* membership)
      : gw_(gw), base_(std::move(base)), membership_(membership) {}

  // A new configuration (SIGHUP); errors keep the running one.
  Status set_base(gateway::GatewayConfig base) {
    std::lock_guard lock(mu_);
    BATON_RETURN_IF_ERROR(gw_.reload(merged(base)));
    base_ = std::move(base);
    return Status::ok();
  }
  // The membership changed.
  Status refresh() {
    std::lock_guard lock(mu_);
    return gw_.reload(merged(base_));
  }

 private:
  gateway::GatewayConfig merged(const gateway::GatewayConfig& base) const {
    return membership_ ? with_members(base, membership_->members()) : base;
  }

  gateway::Gateway& gw_;
  std::mutex mu_;
  gateway::GatewayConfig base_;
  const controller::Membership* membership_;
};

// Reloads the gateway at every change of the membership, on a thread of its
// own; stop() returns within kPoll.
class MembershipFollower {
 public:
  static constexpr std::chrono::milliseconds kPoll{250};

  MembershipFollower(const controller::Membership& m, Reloader& reloader)
      : membership_(m), reloader_(reloader) {
    thread_ = std::thread([this] { run(); });
  }
  ~MembershipFollower() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    uint64_t seen = membership_.version();
    std::set<std::string> before = ids();
    while (!stop_.load()) {
      uint64_t now = membership_.wait_for_change(seen, SteadyClock::instance().now() + kPoll);
      if (now == seen) continue;
      seen = now;
      std::set<std::string> after = ids();
      std::string added, removed;
      for (const auto& id : after) {
        if (!before.contains(id)) added += " " + id;
      }
      for (const auto& id : before) {
        if (!after.contains(id)) removed += " " + id;
      }
      before = std::move(after);
      BATON_LOG_INFO("etcd: membership changed ({} members; joined:{}; left:{})", before.size(),
                     added.empty() ? " -" : added, removed.empty() ? " -" : removed);
      if (Status s = reloader_.refresh(); !s.is_ok()) {
        BATON_LOG_ERROR("etcd: keeping the running instances: {}", s.message());
      }
    }
  }
  std::set<std::string> ids() const {
    std::set<std::string> out;
    for (const auto& m : membership_.members()) out.insert(m.id);
    return out;
  }

  const controller::Membership& membership_;
  Reloader& reloader_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

int run_gateway(const GatewayFlags& f) {
  LogOptions log;
  log.level = f.log_level;
  log.json = f.log_json;
  if (Status s = init_logging(log); !s.is_ok()) {
    std::cerr << "baton gateway: " << s.message() << "\n";
    return kExitUsage;
  }
  auto config = build_config(f);
  if (!config.is_ok()) {
    std::cerr << "baton gateway: " << config.status().message() << "\n";
    return kExitUsage;
  }
  sigset_t signals = block_stop_signals({SIGHUP});

  std::unique_ptr<controller::EtcdMembership> membership;
  if (!f.etcd.url.empty()) {
    auto target = etcd_target(f.etcd);
    if (!target.is_ok()) {
      std::cerr << "baton gateway: " << target.status().message() << "\n";
      return kExitUsage;
    }
    auto m = controller::EtcdMembership::start(target->endpoint, target->prefix);
    if (!m.is_ok()) {
      std::cerr << "baton gateway: etcd at " << f.etcd.url
                << " is not reachable: " << m.status().message() << "\n";
      return kExitFailure;
    }
    membership = std::move(*m);
  }
  const std::string host = config->host;
  gateway::GatewayConfig first =
      membership ? with_members(*config, membership->members()) : *config;
  const size_t instances = first.instances.size();
  auto gw = gateway::Gateway::start(std::move(first));
  if (!gw.is_ok()) {
    std::cerr << "baton gateway: " << gw.status().message() << "\n";
    return kExitFailure;
  }
  Reloader reloader(**gw, std::move(*config), membership.get());
  std::unique_ptr<MembershipFollower> follower;
  if (membership) {
    follower = std::make_unique<MembershipFollower>(*membership, reloader);
    // A change between the first list and the follower's start is caught here.
    if (Status s = reloader.refresh(); !s.is_ok()) {
      BATON_LOG_ERROR("etcd: keeping the running instances: {}", s.message());
    }
  }
  BATON_LOG_INFO("gateway listening on http://{}:{} over {} instances{}", host, (*gw)->port(),
                 instances, membership ? " (and those registered in etcd)" : "");
  std::cout << "Baton gateway on http://" << host << ":" << (*gw)->port() << "/v1\n" << std::flush;
  while (true) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig != SIGHUP) {
      BATON_LOG_INFO("signal {}: shutting down", sig);
      break;
    }
    auto next = build_config(f);
    if (!next.is_ok()) {
      BATON_LOG_ERROR("SIGHUP: keeping the running config: {}", next.status().message());
      continue;
    }
    if (Status s = reloader.set_base(std::move(*next)); !s.is_ok()) {
      BATON_LOG_ERROR("SIGHUP: keeping the running config: {}", s.message());
    }
  }
  if (follower) follower->stop();
  if (membership) membership->stop();
  (*gw)->stop();
  return kExitOk;
}

}  // namespace

Run register_gateway(CLI::App& app) {
  auto* cmd = app.add_subcommand("gateway", "Route requests over instances (P/D aware)");
  auto f = std::make_shared<GatewayFlags>();
  cmd->add_option("--config", f->config, "Gateway YAML file (reloaded on SIGHUP)");
  cmd->add_option("--upstream", f->upstreams, "A mixed instance's URL (repeatable)");
  cmd->add_option("--prefill", f->prefills, "A prefill instance's URL (repeatable)");
  cmd->add_option("--decode", f->decodes, "A decode instance's URL (repeatable)");
  cmd->add_option("--api-key", f->api_keys, "Accepted Bearer key, no limits (repeatable)");
  cmd->add_option("--host", f->host, "Address to bind (default 127.0.0.1)");
  cmd->add_option("--port", f->port, "Port (default 8080; 0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--policy", f->policy,
                  "Policy for mixed instances: round_robin, least_load, power_of_two, "
                  "consistent_hash, prefix_aware");
  cmd->add_option("--cluster-token", f->cluster_token,
                  "x-baton-cluster-token for the instances' /internal/pd/ routes");
  cmd->add_option("--io-threads", f->io_threads,
                  "Event loops (threads), each serving clients and their upstream calls")
      ->check(CLI::Range(1, 256));
  cmd->add_option("--health-interval-ms", f->health_interval_ms,
                  "Active /health checks every this many ms (0: none)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--no-access-log", f->no_access_log, "No access log line per request");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error or off");
  cmd->add_flag("--log-json", f->log_json, "Log JSON lines");
  add_etcd_flags(*cmd, f->etcd, "whose registered instances join the configured ones");
  return [f] { return run_gateway(*f); };
}

}  // namespace baton::cli
