#pragma once

// What `baton up` and `baton controller` share about running the controller:
// its settings as flags and YAML keys set them, turned into
// controller::ControllerOptions in one place, and the etcd flags of the
// commands that speak to etcd (`serve`, `gateway`, `controller`).

#include <CLI/CLI.hpp>
#include <string>
#include <string_view>

#include "common/config.h"
#include "common/status.h"
#include "controller/controller.h"
#include "controller/etcd_client.h"

namespace baton::cli {

struct ControllerSettings {
  int port = 0;  // its /metrics, /cluster and /health; 0: any free port
  std::string host = "127.0.0.1";
  double ttft_slo_ms = 2000;
  double tpot_slo_ms = 100;
  bool no_adjust_ratio = false;  // true: health and metrics only, no role changes
  int interval_ms = 1000;
  std::string cluster_token;  // sent with role changes
};

// The names a command gives the flags behind the settings (flags win over
// YAML keys). An empty name: the command has no such flag.
struct ControllerFlagNames {
  std::string port = "--port";
  std::string no_adjust_ratio = "--no-adjust-ratio";
};

// The YAML keys read by read_controller_settings, under its section.
inline const std::vector<std::string> kControllerYamlKeys = {"port", "ttft_slo_ms", "tpot_slo_ms",
                                                             "adjust_ratio", "interval_ms"};

// Adds --ttft-slo-ms and --tpot-slo-ms bound to `s`.
void add_slo_flags(CLI::App& cmd, ControllerSettings& s);

// Reads port, ttft_slo_ms, tpot_slo_ms, adjust_ratio and interval_ms from the
// map at `section` of `doc` ("" for the root) into `s`, except those whose
// flag was given on `cmd`. Errors: a value of the wrong type or out of range.
Status read_controller_settings(const Config& doc, std::string_view section, const CLI::App& cmd,
                                const ControllerFlagNames& names, ControllerSettings& s);

controller::ControllerOptions controller_options(const ControllerSettings& s);

// --etcd and --etcd-prefix, as `serve`, `gateway` and `controller` take them.
struct EtcdFlags {
  std::string url;  // empty: no etcd
  std::string prefix = "/baton/instances/";
};
// Adds both flags; returns the --etcd option (for needs()).
CLI::Option* add_etcd_flags(CLI::App& cmd, EtcdFlags& f, std::string_view what);
// The endpoint and the key prefix (with its trailing '/'). Errors: a bad URL
// or an empty prefix.
struct EtcdTarget {
  controller::EtcdEndpoint endpoint;
  std::string prefix;
};
Result<EtcdTarget> etcd_target(const EtcdFlags& f);

}  // namespace baton::cli
