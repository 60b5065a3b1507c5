// `baton up`: a local cluster in one command. Starts the instances (and the
// gateway, when this build has one) as child processes on loopback, runs the
// controller in this process, waits until everything is healthy with a
// progress display, prints the endpoint and a ready-to-paste curl, restarts
// a crashed child with backoff, and on Ctrl-C or SIGTERM stops it all.

#include <netinet/in.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/controller_settings.h"
#include "common/config.h"
#include "common/logging.h"
#include "common/net.h"
#include "controller/controller.h"
#include "controller/membership.h"
#include "controller/supervisor.h"
#include "protocol/http_client.h"

#ifndef BATON_DEFAULT_MODEL
#define BATON_DEFAULT_MODEL "models/baton-tiny"
#endif

namespace baton::cli {

namespace {

namespace fs = std::filesystem;
namespace ctl = controller;
using namespace std::chrono_literals;

struct UpFlags {
  std::string config;
  int prefill = -1;
  int decode = -1;
  int mixed = -1;
  std::string model = BATON_DEFAULT_MODEL;
  int port = 8080;
  std::string log_dir;
  std::vector<std::string> serve_args;
  std::string cluster_token;
  bool no_controller = false;
  ControllerSettings controller;  // its port, SLOs and whether it adjusts the ratio
  // Controller timings (benchmarks shorten them); unset: the defaults of
  // ControllerOptions and RatioPolicy.
  std::optional<int> controller_interval_ms;
  std::optional<double> load_window_s;
  std::optional<int> sustain_rounds;
  std::optional<double> cooldown_s;
  std::optional<double> reverse_cooldown_s;
  int ready_timeout_s = 600;
  int restart_unhealthy_after_s = 20;
};

// One child of the cluster and how to tell that it is up.
struct Node {
  std::string name;
  std::string kind;  // "prefill", "decode", "mixed", "gateway"
  uint16_t port = 0;
  std::string log;
  bool ready = false;
  bool waiting_back = false;                       // restarted, not yet healthy again
  std::optional<Clock::TimePoint> forced_restart;  // when up last killed it for not answering
};

std::mutex out_mu;  // the terminal: the main thread and controller events

void say(const std::string& line) {
  std::lock_guard lock(out_mu);
  std::cout << line << std::endl;
}

std::string self_path() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("baton") : p.string();
}

// Output of `<self> <args> --help`: how `up` learns what this build can do.
std::string help_of(const std::string& self, const std::string& sub) {
  std::string cmd = "'" + self + "' " + sub + " --help 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return {};
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

bool port_free(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

bool healthy(uint16_t port) {
  auto r = protocol::http_request("127.0.0.1", port, "GET", "/health", "", {},
                                  protocol::deadline_in(500ms));
  return r.is_ok() && r->status == 200;
}

std::string random_token() {
  std::random_device rd;
  std::string t;
  const char* hex = "0123456789abcdef";
  for (int i = 0; i < 32; ++i) t += hex[rd() % 16];
  return t;
}

// The cluster YAML: every key optional, flags win.
//   model: models/baton-tiny
//   prefill: 1
//   decode: 1
//   mixed: 0
//   port: 8080
//   serve_args: [--kv-cache-mb, "256"]
//   controller: {port: 0, ttft_slo_ms: 2000, tpot_slo_ms: 100, adjust_ratio: true,
//                interval_ms: 1000}
Status apply_config(UpFlags& f, const CLI::App& cmd) {
  if (f.config.empty()) return Status::ok();
  BATON_ASSIGN_OR_RETURN(Config c, Config::load_file(f.config));
  BATON_RETURN_IF_ERROR(c.check_known_keys(
      "", {"model", "prefill", "decode", "mixed", "port", "serve_args", "controller"}));
  BATON_RETURN_IF_ERROR(c.check_known_keys("controller", kControllerYamlKeys));
  auto set_int = [&](const char* key, const char* flag, int& out) -> Status {
    if (cmd.count(flag) > 0 || !c.has(key)) return Status::ok();
    BATON_ASSIGN_OR_RETURN(int64_t v, c.get<int64_t>(key));
    out = static_cast<int>(v);
    return Status::ok();
  };
  BATON_RETURN_IF_ERROR(set_int("prefill", "--prefill", f.prefill));
  BATON_RETURN_IF_ERROR(set_int("decode", "--decode", f.decode));
  BATON_RETURN_IF_ERROR(set_int("mixed", "--mixed", f.mixed));
  BATON_RETURN_IF_ERROR(set_int("port", "--port", f.port));
  if (cmd.count("--model") == 0 && c.has("model")) {
    BATON_ASSIGN_OR_RETURN(f.model, c.get<std::string>("model"));
  }
  if (cmd.count("--serve-arg") == 0 && c.has("serve_args")) {
    BATON_ASSIGN_OR_RETURN(f.serve_args, c.get<std::vector<std::string>>("serve_args"));
  }
  ControllerFlagNames names;
  names.port = "--controller-port";
  names.no_adjust_ratio = "--no-ratio";
  return read_controller_settings(c, "controller", cmd, names, f.controller);
}

// The model name clients send: what the endpoint lists first.
std::string served_model(uint16_t port, const std::string& model_dir) {
  auto r = protocol::http_request("127.0.0.1", port, "GET", "/v1/models", "", {},
                                  protocol::deadline_in(2s));
  if (r.is_ok() && r->status == 200) {
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    if (!j.is_discarded() && j.contains("data") && j["data"].is_array() && !j["data"].empty() &&
        j["data"][0].contains("id") && j["data"][0]["id"].is_string()) {
      return j["data"][0]["id"].get<std::string>();
    }
  }
  return fs::path(model_dir).filename().string();
}

// Exits before first becoming ready after which `up` gives up.
constexpr int kStartupAttempts = 3;

// The last `lines` lines of a log file, indented.
std::string log_tail(const std::string& path, size_t lines) {
  FILE* in = std::fopen(path.c_str(), "r");
  if (in == nullptr) return "  (no log)";
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), in)) > 0) {
    text.append(buf, n);
    if (text.size() > (64 << 10)) text.erase(0, text.size() - (32 << 10));
  }
  std::fclose(in);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t at = text.size();
  for (size_t k = 0; k < lines && at != std::string::npos && at > 0; ++k) {
    at = text.rfind('\n', at - 1);
  }
  std::string tail = at == std::string::npos ? text : text.substr(at + 1);
  std::string out;
  size_t start = 0;
  while (start <= tail.size()) {
    size_t nl = tail.find('\n', start);
    out += "  " + tail.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    if (nl == std::string::npos) break;
    out += "\n";
    start = nl + 1;
  }
  return out;
}

struct GatewayEntry {
  std::string name;
  std::string address;
  ctl::Role role = ctl::Role::kMixed;
  bool draining = false;

  bool operator==(const GatewayEntry&) const = default;
};

// The gateway's YAML (gateway/gateway_config.h) for the cluster's instances.
std::string gateway_yaml(uint16_t port, const std::string& token,
                         const std::vector<GatewayEntry>& entries) {
  std::string y = "# Written by `baton up`; rewritten when an instance changes role.\n";
  y += "listen: {host: 127.0.0.1, port: " + std::to_string(port) + "}\n";
  if (!token.empty()) y += "cluster_token: \"" + token + "\"\n";
  y += "instances:\n";
  for (const GatewayEntry& e : entries) {
    y += "  - {name: " + e.name + ", url: \"http://" + e.address +
         "\", role: " + std::string(ctl::role_name(e.role)) +
         ", group: default, draining: " + (e.draining ? "true" : "false") + "}\n";
  }
  return y;
}

std::string progress_line(const std::vector<Node>& nodes, Clock::Duration elapsed) {
  std::string line = "Starting:";
  const char* sep = " ";
  for (const Node& n : nodes) {
    line += sep + n.name + (n.ready ? " ready" : " loading");
    sep = " · ";
  }
  return line + "  [" +
         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(elapsed).count()) + " s]";
}

int run_up(UpFlags f, const CLI::App& cmd) {
  if (Status s = apply_config(f, cmd); !s.is_ok()) {
    std::cerr << "baton up: " << s.message() << "\n";
    return kExitUsage;
  }
  const std::string self = self_path();
  const bool have_pd = help_of(self, "serve").find("--cluster-token") != std::string::npos;
  const bool have_gateway = help_of(self, "gateway").find("--upstream") != std::string::npos;
  if (f.prefill < 0 && f.decode < 0 && f.mixed < 0) {
    if (have_pd && have_gateway) {
      f.prefill = f.decode = 1;
    } else {
      f.mixed = 1;
    }
  }
  f.prefill = std::max(f.prefill, 0);
  f.decode = std::max(f.decode, 0);
  f.mixed = std::max(f.mixed, 0);
  const bool pd = f.prefill + f.decode > 0;
  if (f.prefill + f.decode + f.mixed == 0) {
    std::cerr << "baton up: nothing to start (all instance counts are 0)\n";
    return kExitUsage;
  }
  if (pd && (f.prefill == 0 || f.decode == 0)) {
    std::cerr << "baton up: a disaggregated cluster needs at least one prefill and one decode "
                 "instance\n";
    return kExitUsage;
  }
  if (pd && !have_pd) {
    std::cerr << "baton up: this build's `baton serve` has no prefill/decode roles yet; use "
                 "--mixed N\n";
    return kExitFailure;
  }
  if (pd && !have_gateway) {
    std::cerr << "baton up: prefill/decode serving needs `baton gateway`, which is not part of "
                 "this build yet; use --mixed N\n";
    return kExitFailure;
  }
  const bool gateway = have_gateway;
  if (gateway && !port_free(static_cast<uint16_t>(f.port))) {
    std::cerr << "baton up: port " << f.port << " is in use; choose another with --port\n";
    return kExitFailure;
  }
  if (f.log_dir.empty()) {
    f.log_dir = (fs::temp_directory_path() / ("baton-up-" + std::to_string(getpid()))).string();
  }
  std::error_code ec;
  fs::create_directories(f.log_dir, ec);
  if (ec) {
    std::cerr << "baton up: cannot create " << f.log_dir << ": " << ec.message() << "\n";
    return kExitFailure;
  }
  if (f.cluster_token.empty()) f.cluster_token = random_token();

  // The controller logs to a file; the terminal gets progress and events.
  LogOptions log;
  log.file = (fs::path(f.log_dir) / "controller.log").string();
  if (Status s = init_logging(log); !s.is_ok()) {
    std::cerr << "baton up: " << s.message() << "\n";
    return kExitFailure;
  }

  // Signals arrive through a signalfd, blocked in every thread from here on.
  sigset_t stop_signals = block_stop_signals();
  int sig_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sig_fd < 0) {
    std::cerr << "baton up: signalfd failed; cannot watch for Ctrl-C\n";
    return kExitFailure;
  }

  std::vector<Node> nodes;
  std::vector<ctl::Member> members;
  ctl::Supervisor sup(ctl::RestartPolicy{});
  auto instance_spec = [&](const std::string& name, const std::string& role, uint16_t port) {
    ctl::ChildSpec spec;
    spec.argv = {self,     "serve",     "--model", f.model,
                 "--host", "127.0.0.1", "--port",  std::to_string(port)};
    if (role != "mixed" || have_pd) {
      spec.argv.insert(spec.argv.end(), {"--role", role});
    }
    if (have_pd) spec.argv.insert(spec.argv.end(), {"--cluster-token", f.cluster_token});
    spec.argv.insert(spec.argv.end(), f.serve_args.begin(), f.serve_args.end());
    spec.log_path = (fs::path(f.log_dir) / (name + ".log")).string();
    return spec;
  };
  auto add_instance = [&](const std::string& name, const std::string& role) -> Status {
    BATON_ASSIGN_OR_RETURN(uint16_t port, free_loopback_port());
    Node n;
    n.name = name;
    n.kind = role;
    n.port = port;
    n.log = (fs::path(f.log_dir) / (name + ".log")).string();
    BATON_RETURN_IF_ERROR(sup.add(name, instance_spec(name, role, port)));
    members.push_back(ctl::Member{name, "127.0.0.1", port, *ctl::parse_role(role), "default"});
    nodes.push_back(std::move(n));
    return Status::ok();
  };
  Status started;
  for (int i = 0; i < f.prefill && started.is_ok(); ++i) {
    started = add_instance("p" + std::to_string(i), "prefill");
  }
  for (int i = 0; i < f.decode && started.is_ok(); ++i) {
    started = add_instance("d" + std::to_string(i), "decode");
  }
  for (int i = 0; i < f.mixed && started.is_ok(); ++i) {
    started = add_instance("m" + std::to_string(i), "mixed");
  }
  // The gateway reads its instances from a YAML file that `up` rewrites (and
  // signals with SIGHUP) when the controller changes an instance's role.
  const std::string gateway_config = (fs::path(f.log_dir) / "gateway.yaml").string();
  auto write_gateway_config = [&](const std::vector<GatewayEntry>& entries) -> Status {
    const std::string tmp = gateway_config + ".tmp";
    FILE* out = std::fopen(tmp.c_str(), "w");
    if (out == nullptr) return unavailable("cannot write " + tmp);
    std::string yaml =
        gateway_yaml(static_cast<uint16_t>(f.port), pd ? f.cluster_token : "", entries);
    bool ok = std::fwrite(yaml.data(), 1, yaml.size(), out) == yaml.size();
    ok = std::fclose(out) == 0 && ok;
    std::error_code rename_ec;
    if (ok) fs::rename(tmp, gateway_config, rename_ec);
    if (!ok || rename_ec) return unavailable("cannot write " + gateway_config);
    return Status::ok();
  };
  std::vector<GatewayEntry> gateway_entries;  // as last written
  if (started.is_ok() && gateway) {
    Node g;
    g.name = g.kind = "gateway";
    g.port = static_cast<uint16_t>(f.port);
    g.log = (fs::path(f.log_dir) / "gateway.log").string();
    for (const ctl::Member& m : members) {
      gateway_entries.push_back({m.id, m.address(), m.role, false});
    }
    started = write_gateway_config(gateway_entries);
    ctl::ChildSpec spec;
    spec.argv = {self, "gateway", "--config", gateway_config};
    spec.log_path = g.log;
    if (started.is_ok()) started = sup.add("gateway", spec);
    nodes.push_back(std::move(g));
  }
  if (!started.is_ok()) {
    std::cerr << "baton up: " << started.message() << "\n";
    sup.stop_all(5s);
    return kExitFailure;
  }

  const std::string shape =
      pd ? std::to_string(f.prefill) + " prefill + " + std::to_string(f.decode) + " decode"
         : std::to_string(f.mixed) + " mixed";
  say("baton up: " + shape + (f.mixed > 0 && pd ? " + " + std::to_string(f.mixed) + " mixed" : "") +
      " instance(s) of " + f.model + (gateway ? " behind the gateway" : "") + "; logs in " +
      f.log_dir);

  // The controller watches the instances from here on.
  ctl::StaticMembership membership(members);
  std::unique_ptr<ctl::Controller> controller;
  bool print_events = false;
  if (!f.no_controller) {
    f.controller.cluster_token = f.cluster_token;
    ctl::ControllerOptions o = controller_options(f.controller);
    o.adjust_ratio = o.adjust_ratio && pd;
    auto ms = [](double s) { return std::chrono::milliseconds(std::llround(s * 1000)); };
    if (f.controller_interval_ms) o.interval = std::chrono::milliseconds(*f.controller_interval_ms);
    if (f.load_window_s) o.load_window = ms(*f.load_window_s);
    if (f.sustain_rounds) o.ratio.sustain_rounds = *f.sustain_rounds;
    if (f.cooldown_s) o.ratio.cooldown = ms(*f.cooldown_s);
    if (f.reverse_cooldown_s) o.ratio.reverse_cooldown = ms(*f.reverse_cooldown_s);
    auto c = ctl::Controller::start(o, membership);
    if (!c.is_ok()) {
      std::cerr << "baton up: controller: " << c.status().message() << "\n";
      sup.stop_all(5s);
      return kExitFailure;
    }
    controller = std::move(*c);
    controller->on_event([&print_events](const ctl::ControllerEvent& e) {
      if (e.message.find("first successful probe") != std::string::npos) return;
      std::lock_guard lock(out_mu);
      if (print_events) std::cout << "controller: " << e.message << std::endl;
    });
  }

  const bool tty = isatty(STDOUT_FILENO) != 0;
  auto print_supervisor = [&](const std::vector<ctl::SupervisorEvent>& events) {
    for (const auto& e : events) {
      if (tty) std::cout << "\r\033[K";
      say(e.message);
      if (e.kind == ctl::SupervisorEvent::Kind::kRestarted) {
        for (Node& n : nodes) {
          if (n.name == e.name) n.waiting_back = true;
        }
      }
    }
  };
  auto shutdown = [&](int code) {
    {
      std::lock_guard lock(out_mu);
      print_events = false;
      std::cout << (tty ? "\r\033[K" : "") << "Stopping..." << std::endl;
    }
    if (controller) controller->stop();
    sup.stop_all(10s);
    say("Stopped. Logs are in " + f.log_dir);
    close(sig_fd);
    return code;
  };

  // Wait until every child answers /health.
  const auto t0 = SteadyClock::instance().now();
  const auto ready_deadline = t0 + std::chrono::seconds(f.ready_timeout_s);
  size_t ready = 0;
  while (ready < nodes.size()) {
    for (Node& n : nodes) {
      if (!n.ready && healthy(n.port)) {
        n.ready = true;
        ++ready;
        if (!tty) say(n.name + " ready (http://127.0.0.1:" + std::to_string(n.port) + ")");
      }
    }
    if (tty) {
      std::lock_guard lock(out_mu);
      std::cout << "\r\033[K" << progress_line(nodes, SteadyClock::instance().now() - t0)
                << std::flush;
    }
    if (ready == nodes.size()) break;
    if (SteadyClock::instance().now() >= ready_deadline) {
      if (tty) std::cout << "\n";
      for (const Node& n : nodes) {
        if (!n.ready)
          say(n.name + " is not healthy after " + std::to_string(f.ready_timeout_s) + " s; see " +
              n.log);
      }
      return shutdown(kExitFailure);
    }
    bool signalled = false;
    auto events = sup.poll(SteadyClock::instance().now() + 250ms, sig_fd, &signalled);
    print_supervisor(events);
    if (signalled) {
      if (tty) std::cout << "\n";
      return shutdown(kExitOk);
    }
    // A child that keeps failing before it was ever ready (a bad model path,
    // a bad flag) will not get better: say why and stop.
    for (const auto& e : events) {
      auto st = sup.child(e.name);
      if (e.kind != ctl::SupervisorEvent::Kind::kExited || !st ||
          st->consecutive_failures < kStartupAttempts) {
        continue;
      }
      for (const Node& n : nodes) {
        if (n.name == e.name && !n.ready) {
          say(n.name + " failed " + std::to_string(kStartupAttempts) +
              " times before it was ready; the end of " + n.log + ":\n" + log_tail(n.log, 10));
          return shutdown(kExitFailure);
        }
      }
    }
  }
  for (Node& n : nodes) n.waiting_back = false;

  const uint16_t endpoint = gateway ? static_cast<uint16_t>(f.port) : nodes.front().port;
  const std::string base = "http://127.0.0.1:" + std::to_string(endpoint);
  {
    std::lock_guard lock(out_mu);
    if (tty) std::cout << "\r\033[K";
    std::cout << "\nBaton is up: " << base << "/v1  (" << shape << ", ready in "
              << std::chrono::duration_cast<std::chrono::seconds>(SteadyClock::instance().now() -
                                                                  t0)
                     .count()
              << " s)\n";
    for (const Node& n : nodes) {
      auto st = sup.child(n.name);
      std::cout << "  " << n.name << "  " << n.kind << "  http://127.0.0.1:" << n.port << "  pid "
                << (st ? st->pid : -1) << "  log " << n.log << "\n";
    }
    if (controller) {
      std::cout << "  controller  http://127.0.0.1:" << controller->port()
                << "/cluster  (metrics at /metrics)\n";
    }
    if (!gateway && nodes.size() > 1) {
      std::cout << "  (no gateway in this build: each instance serves on its own port)\n";
    }
    std::cout << "\nTry:\n  curl " << base
              << "/v1/completions -H 'Content-Type: application/json' -d '{\"model\": \""
              << served_model(endpoint, f.model)
              << "\", \"prompt\": \"Hello\", \"max_tokens\": 16}'\n\nCtrl-C stops the cluster."
              << std::endl;
    print_events = true;
  }

  // An instance the controller has had out of routing for this long is
  // restarted: it is alive (or it would have been restarted already) but
  // not answering.
  auto restart_unanswering = [&] {
    if (!controller || f.restart_unhealthy_after_s <= 0) return;
    const auto now = SteadyClock::instance().now();
    for (const ctl::InstanceStatus& s : controller->view().instances) {
      const ctl::InstanceHealth& h = s.health;
      // A draining instance answers 503 on purpose: not a hang.
      if (s.changing_role || h.state != ctl::HealthState::kUnhealthy || !h.since ||
          now - *h.since < std::chrono::seconds(f.restart_unhealthy_after_s)) {
        continue;
      }
      for (Node& n : nodes) {
        if (n.name != s.member.id || n.waiting_back) continue;
        if (n.forced_restart && *h.since <= *n.forced_restart) continue;  // already done
        n.forced_restart = now;
        say(n.name + " has not answered its health checks for " +
            std::to_string(
                std::chrono::duration_cast<std::chrono::seconds>(now - *h.since).count()) +
            " s (last: " + h.last_error + "); restarting it");
        sup.signal(n.name, SIGKILL);
      }
    }
  };

  // Supervise until a stop signal.
  while (true) {
    bool signalled = false;
    print_supervisor(sup.poll(SteadyClock::instance().now() + 1s, sig_fd, &signalled));
    if (signalled) return shutdown(kExitOk);
    restart_unanswering();
    if (controller) {
      // Every round, not only on the controller's role-change events: a role
      // changed by someone else (POST /internal/role), or settled after the
      // controller gave up waiting, reaches the gateway too. Draining
      // instances take no new requests at the gateway; settled ones are
      // routed by their new role and restart in it.
      std::vector<GatewayEntry> entries = gateway_entries;
      for (const ctl::InstanceStatus& s : controller->view().instances) {
        for (GatewayEntry& e : entries) {
          if (e.name == s.member.id) {
            e.role = s.role;
            e.draining = s.changing_role;
          }
        }
        for (Node& n : nodes) {
          if (n.name == s.member.id && !s.changing_role &&
              n.kind != std::string(ctl::role_name(s.role))) {
            n.kind = std::string(ctl::role_name(s.role));
            (void)sup.set_spec(n.name, instance_spec(n.name, n.kind, n.port));
            (void)membership.set_role(n.name, s.role);
          }
        }
      }
      if (gateway && entries != gateway_entries) {
        Status w = write_gateway_config(entries);
        if (w.is_ok()) {
          gateway_entries = std::move(entries);
          sup.signal("gateway", SIGHUP);
        } else {
          say("baton up: " + w.message());
        }
      }
    }
    for (Node& n : nodes) {
      if (n.waiting_back && healthy(n.port)) {
        n.waiting_back = false;
        auto st = sup.child(n.name);
        say(n.name + " is serving again (pid " + std::to_string(st ? st->pid : -1) +
            ", http://127.0.0.1:" + std::to_string(n.port) + ")");
      }
    }
  }
}

}  // namespace

Run register_up(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "up", "Start a local cluster: instances, gateway and controller, on loopback");
  auto f = std::make_shared<UpFlags>();
  cmd->add_option("--config", f->config, "Cluster YAML (flags override it)");
  cmd->add_option("--prefill", f->prefill, "Prefill instances")->check(CLI::Range(0, 64));
  cmd->add_option("--decode", f->decode, "Decode instances")->check(CLI::Range(0, 64));
  cmd->add_option("--mixed", f->mixed, "Mixed (aggregated) instances")->check(CLI::Range(0, 64));
  cmd->add_option("--model", f->model, "Model directory or dummy:<preset>")->capture_default_str();
  cmd->add_option("--port", f->port, "The endpoint's port (the gateway's)")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  cmd->add_option("--controller-port", f->controller.port,
                  "The controller's /metrics and /cluster port (0: any free port)")
      ->check(CLI::Range(0, 65535));
  cmd->add_option("--log-dir", f->log_dir, "Where children's logs go (default: a temp folder)");
  cmd->add_option("--serve-arg", f->serve_args,
                  "An extra argument for every `baton serve` (repeatable, e.g. "
                  "--serve-arg=--kv-cache-mb --serve-arg=256)")
      ->allow_extra_args(false);
  cmd->add_option("--cluster-token", f->cluster_token,
                  "Secret for the internal routes (default: a random one)");
  cmd->add_flag("--no-controller", f->no_controller, "Run without the controller");
  cmd->add_flag("--no-ratio", f->controller.no_adjust_ratio,
                "The controller only advises on the P/D ratio");
  add_slo_flags(*cmd, f->controller);
  cmd->add_option("--controller-interval-ms", f->controller_interval_ms,
                  "How often the controller probes and decides (default 1000)")
      ->check(CLI::Range(50, 60000));
  cmd->add_option("--load-window-s", f->load_window_s,
                  "Span of load reports the ratio policy judges (default 10)")
      ->check(CLI::Range(0.05, 3600.0));
  cmd->add_option("--ratio-sustain-rounds", f->sustain_rounds,
                  "Rounds a bottleneck must last before a role change (default 3)")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--ratio-cooldown-s", f->cooldown_s, "Hold after a role change (default 30)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--ratio-reverse-cooldown-s", f->reverse_cooldown_s,
                  "Wait before a change opposite to the last one (default 120)")
      ->check(CLI::Range(0.0, 86400.0));
  cmd->add_option("--ready-timeout", f->ready_timeout_s, "Seconds to wait for health")
      ->check(CLI::Range(1, 86400));
  cmd->add_option("--restart-unhealthy-after", f->restart_unhealthy_after_s,
                  "Restart an instance out of routing this many seconds (0: never)")
      ->check(CLI::Range(0, 86400))
      ->capture_default_str();
  return [f, cmd] { return run_up(*f, *cmd); };
}

}  // namespace baton::cli
