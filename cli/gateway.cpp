// `baton gateway`: the router in front of the instances (gateway/gateway.h).
// Configured from a YAML file (--config, reloaded on SIGHUP) or from simple
// flags for the common cases.

#include "gateway/gateway.h"

#include <csignal>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "common/logging.h"

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
  if (c.instances.empty()) {
    return invalid_argument("no instances: give --config, --upstream, or --prefill and --decode");
  }
  return c;
}

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
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  const std::string host = config->host;
  const size_t instances = config->instances.size();
  auto gw = gateway::Gateway::start(std::move(*config));
  if (!gw.is_ok()) {
    std::cerr << "baton gateway: " << gw.status().message() << "\n";
    return kExitFailure;
  }
  BATON_LOG_INFO("gateway listening on http://{}:{} over {} instances", host, (*gw)->port(),
                 instances);
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
    if (Status s = (*gw)->reload(std::move(*next)); !s.is_ok()) {
      BATON_LOG_ERROR("SIGHUP: keeping the running config: {}", s.message());
    }
  }
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
  return [f] { return run_gateway(*f); };
}

}  // namespace baton::cli
