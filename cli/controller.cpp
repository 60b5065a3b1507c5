// `baton controller`: the controller (controller/controller.h) as a process of
// its own, over a static list of instances (--member) or the instances
// registered in etcd (--etcd). It serves /metrics, /cluster and /health and
// stops cleanly on SIGTERM or SIGINT.
//
// The YAML of --config (every key optional, flags win):
//   host: 127.0.0.1
//   port: 8090
//   ttft_slo_ms: 2000
//   tpot_slo_ms: 100
//   adjust_ratio: true
//   interval_ms: 1000
//   cluster_token: s3cret
//   members:
//     - {id: p0, address: "127.0.0.1:8001", role: prefill, group: chat}
//   etcd: {url: "http://127.0.0.1:2379", prefix: /baton/instances/}

#include "controller/controller.h"

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/controller_settings.h"
#include "common/config.h"
#include "common/logging.h"
#include "controller/membership.h"

namespace baton::cli {

namespace {

namespace ctl = controller;

constexpr int kDefaultPort = 8090;

struct ControllerFlags {
  std::string config;
  std::vector<std::string> members;
  EtcdFlags etcd;
  ControllerSettings settings;  // port set to kDefaultPort by register_controller
  std::string log_level = "info";
  bool log_json = false;
};

// One `members` entry of the YAML: the keys of a --member flag.
Result<ctl::Member> member_from_yaml(const Config& entry) {
  BATON_RETURN_IF_ERROR(entry.check_known_keys("", {"id", "address", "role", "group"}));
  BATON_ASSIGN_OR_RETURN(std::string address, entry.get<std::string>("address"));
  auto m = ctl::parse_member_spec("address=" + address);
  if (!m.is_ok()) return invalid_argument(entry.source_name() + ": " + m.status().message());
  if (entry.has("id")) {
    BATON_ASSIGN_OR_RETURN(m->id, entry.get<std::string>("id"));
  }
  if (entry.has("group")) {
    BATON_ASSIGN_OR_RETURN(m->group, entry.get<std::string>("group"));
  }
  if (entry.has("role")) {
    BATON_ASSIGN_OR_RETURN(std::string role, entry.get<std::string>("role"));
    auto r = ctl::parse_role(role);
    if (!r.is_ok()) return invalid_argument(entry.source_name() + ": " + r.status().message());
    m->role = *r;
  }
  if (m->id.empty() || m->group.empty()) {
    return invalid_argument(entry.source_name() + ": members: empty id or group");
  }
  return m;
}

// Settings from the file (when given), then the flags over them; the static
// members of the file and of the flags together.
Status apply_config(ControllerFlags& f, std::vector<ctl::Member>& members, const CLI::App& cmd) {
  if (f.config.empty()) return Status::ok();
  BATON_ASSIGN_OR_RETURN(Config c, Config::load_file(f.config));
  std::vector<std::string> known = kControllerYamlKeys;
  known.insert(known.end(), {"host", "cluster_token", "members", "etcd"});
  BATON_RETURN_IF_ERROR(c.check_known_keys("", known));
  BATON_RETURN_IF_ERROR(c.check_known_keys("etcd", {"url", "prefix"}));
  BATON_RETURN_IF_ERROR(read_controller_settings(c, "", cmd, ControllerFlagNames{}, f.settings));
  if (cmd.count("--host") == 0) {
    BATON_ASSIGN_OR_RETURN(f.settings.host, c.get_or("host", f.settings.host.c_str()));
  }
  if (cmd.count("--cluster-token") == 0 && c.has("cluster_token")) {
    BATON_ASSIGN_OR_RETURN(f.settings.cluster_token, c.get<std::string>("cluster_token"));
  }
  if (cmd.count("--etcd") == 0 && c.has("etcd.url")) {
    BATON_ASSIGN_OR_RETURN(f.etcd.url, c.get<std::string>("etcd.url"));
  }
  if (cmd.count("--etcd-prefix") == 0 && c.has("etcd.prefix")) {
    BATON_ASSIGN_OR_RETURN(f.etcd.prefix, c.get<std::string>("etcd.prefix"));
  }
  BATON_ASSIGN_OR_RETURN(std::vector<Config> entries, c.sub_list("members"));
  for (const Config& e : entries) {
    BATON_ASSIGN_OR_RETURN(ctl::Member m, member_from_yaml(e));
    members.push_back(std::move(m));
  }
  return Status::ok();
}

int run_controller(ControllerFlags f, const CLI::App& cmd) {
  LogOptions log;
  log.level = f.log_level;
  log.json = f.log_json;
  if (Status s = init_logging(log); !s.is_ok()) {
    std::cerr << "baton controller: " << s.message() << "\n";
    return kExitUsage;
  }
  std::vector<ctl::Member> members;
  auto usage = [](const std::string& message) {
    std::cerr << "baton controller: " << message << "\n";
    return kExitUsage;
  };
  if (Status s = apply_config(f, members, cmd); !s.is_ok()) return usage(s.message());
  for (const std::string& spec : f.members) {
    auto m = ctl::parse_member_spec(spec);
    if (!m.is_ok()) return usage("--member " + spec + ": " + m.status().message());
    members.push_back(std::move(*m));
  }
  for (size_t i = 0; i < members.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (members[i].id == members[j].id) return usage("two members with id " + members[i].id);
    }
  }
  if (!members.empty() && !f.etcd.url.empty()) {
    return usage("give static members (--member, members:) or --etcd, not both");
  }
  if (members.empty() && f.etcd.url.empty()) {
    return usage("no members: give --member (repeatable), --etcd or --config");
  }
  f.settings.cluster_token = cluster_token_or_env(f.settings.cluster_token);

  sigset_t signals = block_stop_signals();

  std::unique_ptr<ctl::Membership> membership;
  std::string source;
  if (!f.etcd.url.empty()) {
    auto target = etcd_target(f.etcd);
    if (!target.is_ok()) return usage(target.status().message());
    auto m = ctl::EtcdMembership::start(target->endpoint, target->prefix);
    if (!m.is_ok()) {
      std::cerr << "baton controller: etcd at " << f.etcd.url
                << " is not reachable: " << m.status().message() << "\n";
      return kExitFailure;
    }
    membership = std::move(*m);
    source = "the instances registered in etcd at " + f.etcd.url + " under " + target->prefix;
  } else {
    source = std::to_string(members.size()) + " static member(s)";
    membership = std::make_unique<ctl::StaticMembership>(std::move(members));
  }

  auto controller = ctl::Controller::start(controller_options(f.settings), *membership);
  if (!controller.is_ok()) {
    std::cerr << "baton controller: " << controller.status().message() << "\n";
    return kExitFailure;
  }
  const std::string base =
      "http://" + f.settings.host + ":" + std::to_string((*controller)->port());
  BATON_LOG_INFO("controller on {} over {}; P/D ratio {}", base, source,
                 f.settings.no_adjust_ratio ? "advised only" : "adjusted");
  std::cout << "Baton controller on " << base << "/cluster (metrics at /metrics) over " << source
            << "\n"
            << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  BATON_LOG_INFO("signal {}: shutting down", sig);
  (*controller)->stop();
  return kExitOk;
}

}  // namespace

Run register_controller(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "controller", "Watch the instances' health and load, and keep each group's P/D ratio");
  auto f = std::make_shared<ControllerFlags>();
  f->settings.port = kDefaultPort;
  cmd->add_option("--config", f->config, "Controller YAML (flags override it)");
  cmd->add_option("--member", f->members,
                  "A static member: id=p0,address=127.0.0.1:8001,role=prefill,group=chat "
                  "(repeatable)");
  add_etcd_flags(*cmd, f->etcd, "whose registered instances are the members");
  cmd->add_option("--host", f->settings.host, "Address to bind")->capture_default_str();
  cmd->add_option("--port", f->settings.port, "Port of /metrics, /cluster, /health (0: any free)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  add_slo_flags(*cmd, f->settings);
  cmd->add_flag("--no-adjust-ratio", f->settings.no_adjust_ratio,
                "Health and metrics only: advise on the P/D ratio, change no role");
  cmd->add_option("--interval-ms", f->settings.interval_ms, "Time between rounds")
      ->check(CLI::Range(10, 3600000))
      ->capture_default_str();
  cmd->add_option("--cluster-token", f->settings.cluster_token,
                  "x-baton-cluster-token for the instances' role endpoint (default: "
                  "$BATON_CLUSTER_TOKEN)");
  cmd->add_option("--log-level", f->log_level, "trace, debug, info, warn, error or off");
  cmd->add_flag("--log-json", f->log_json, "Log JSON lines");
  return [f, cmd] { return run_controller(*f, *cmd); };
}

}  // namespace baton::cli
