#include "cli/controller_settings.h"

namespace baton::cli {

void add_slo_flags(CLI::App& cmd, ControllerSettings& s) {
  cmd.add_option("--ttft-slo-ms", s.ttft_slo_ms, "TTFT target the controller keeps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd.add_option("--tpot-slo-ms", s.tpot_slo_ms, "TPOT target the controller keeps")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
}

Status read_controller_settings(const Config& doc, std::string_view section, const CLI::App& cmd,
                                const ControllerFlagNames& names, ControllerSettings& s) {
  const std::string base = section.empty() ? std::string() : std::string(section) + ".";
  auto given = [&](const std::string& flag) {
    const CLI::Option* o = flag.empty() ? nullptr : cmd.get_option_no_throw(flag);
    return o != nullptr && o->count() > 0;
  };
  auto key = [&](const char* k) { return base + k; };
  if (!given(names.port) && doc.has(key("port"))) {
    BATON_ASSIGN_OR_RETURN(int64_t port, doc.get<int64_t>(key("port")));
    if (port < 0 || port > 65535) {
      return invalid_argument(doc.source_name() + ": " + key("port") + ": out of range");
    }
    s.port = static_cast<int>(port);
  }
  if (!given("--ttft-slo-ms")) {
    BATON_ASSIGN_OR_RETURN(s.ttft_slo_ms, doc.get_or<double>(key("ttft_slo_ms"), s.ttft_slo_ms));
  }
  if (!given("--tpot-slo-ms")) {
    BATON_ASSIGN_OR_RETURN(s.tpot_slo_ms, doc.get_or<double>(key("tpot_slo_ms"), s.tpot_slo_ms));
  }
  if (s.ttft_slo_ms <= 0 || s.tpot_slo_ms <= 0) {
    return invalid_argument(doc.source_name() + ": " + base + "ttft_slo_ms and " + base +
                            "tpot_slo_ms must be positive");
  }
  if (!given(names.no_adjust_ratio)) {
    BATON_ASSIGN_OR_RETURN(bool adjust, doc.get_or<bool>(key("adjust_ratio"), !s.no_adjust_ratio));
    s.no_adjust_ratio = !adjust;
  }
  if (!given("--interval-ms") && doc.has(key("interval_ms"))) {
    BATON_ASSIGN_OR_RETURN(int64_t ms, doc.get<int64_t>(key("interval_ms")));
    if (ms < 10 || ms > 3600000) {
      return invalid_argument(doc.source_name() + ": " + key("interval_ms") +
                              ": expected 10 to 3600000");
    }
    s.interval_ms = static_cast<int>(ms);
  }
  return Status::ok();
}

controller::ControllerOptions controller_options(const ControllerSettings& s) {
  controller::ControllerOptions o;
  o.interval = std::chrono::milliseconds(s.interval_ms);
  o.cluster_token = s.cluster_token;
  o.adjust_ratio = !s.no_adjust_ratio;
  o.ratio.slo.ttft_s = s.ttft_slo_ms / 1000.0;
  o.ratio.slo.tpot_s = s.tpot_slo_ms / 1000.0;
  o.http->host = s.host;
  o.http->port = static_cast<uint16_t>(s.port);
  return o;
}

CLI::Option* add_etcd_flags(CLI::App& cmd, EtcdFlags& f, std::string_view what) {
  CLI::Option* etcd =
      cmd.add_option("--etcd", f.url, "etcd endpoint (http://host:port) " + std::string(what));
  cmd.add_option("--etcd-prefix", f.prefix, "etcd key prefix of the instances")
      ->capture_default_str()
      ->needs(etcd);
  return etcd;
}

Result<EtcdTarget> etcd_target(const EtcdFlags& f) {
  EtcdTarget t;
  BATON_ASSIGN_OR_RETURN(t.endpoint, controller::parse_etcd_endpoint(f.url));
  if (f.prefix.empty()) return invalid_argument("--etcd-prefix: empty");
  t.prefix = f.prefix;
  // Keys are <prefix><group>/<id>: without the '/', "/baton/instances" would
  // also match "/baton/instances-old/...".
  if (t.prefix.back() != '/') t.prefix += '/';
  return t;
}

}  // namespace baton::cli
