// `baton sim`: the discrete-event cluster simulator (sim/). One run over a
// generated workload or a `baton bench` trace, or one of the experiments of
// sim/experiments.h with its table, JSON and PNG.

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "sim/cluster.h"
#include "sim/experiments.h"
#include "sim/profile.h"
#include "sim/workload.h"

namespace baton::cli {

namespace {

struct SimFlags {
  std::string profile = "h100-llama8b";
  double link_gbps = 0;  // overrides the profile's link bandwidth when > 0
  std::string experiment;
  int32_t instances = 16;
  int32_t groups = 1;
  std::string pd = "1:1";
  bool mixed = false;
  int64_t requests = 10000;
  double rate = 0;
  double load = 0.9;
  double burstiness = 1;
  double tide_amplitude = 0;
  double tide_period_s = 60;
  int32_t input_len = 2048;
  int32_t output_len = 128;
  double range_ratio = 0;
  int32_t prefix_groups = 0;
  int32_t prefix_len = 0;
  std::vector<std::string> scenarios;
  std::string trace;
  std::string routing = "on-demand";
  double report_interval_s = 1;
  std::string prefill_policy = "least_load";
  std::string decode_policy = "least_load";
  double ttft_budget_s = 0;
  double client_timeout_s = 0;
  double ttft_slo_s = 0;
  double tpot_slo_s = 0;
  bool block_wise = false;
  bool dynamic_ratio = false;
  uint64_t seed = 0;
  std::string json_path;
  std::string out_dir = "sim-results";
  bool no_plot = false;
};

int fail(const Status& s) {
  std::cerr << "baton sim: " << s.to_string() << "\n";
  return kExitFailure;
}

// "NAME:WEIGHT:INPUT:OUTPUT[:PREFIX_GROUPS:PREFIX_LEN]"
Result<sim::ScenarioMix> parse_scenario(const std::string& text, double range_ratio) {
  std::vector<std::string> parts;
  size_t start = 0;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == ':') {
      parts.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  if (parts.size() != 4 && parts.size() != 6) {
    return invalid_argument("--scenario '" + text +
                            "': expected NAME:WEIGHT:INPUT:OUTPUT[:PREFIX_GROUPS:PREFIX_LEN]");
  }
  try {
    sim::ScenarioMix s;
    s.name = parts[0];
    s.weight = std::stod(parts[1]);
    s.input_mean = std::stoi(parts[2]);
    s.output_mean = std::stoi(parts[3]);
    s.range_ratio = range_ratio;
    if (parts.size() == 6) {
      s.prefix_groups = std::stoi(parts[4]);
      s.prefix_len = std::stoi(parts[5]);
    }
    return s;
  } catch (const std::exception&) {
    return invalid_argument("--scenario '" + text + "': not numbers");
  }
}

Status write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  out << j.dump(2) << "\n";
  if (!out) return unavailable(path + ": write failed");
  return Status();
}

int run_experiment(const SimFlags& f, const sim::Profile& profile) {
  sim::ExperimentOptions e;
  e.profile = profile;
  e.instances = f.instances;
  e.requests = f.requests;
  e.rate = f.rate;
  e.load = f.load;
  e.ttft_slo_s = f.ttft_slo_s;
  e.tpot_slo_s = f.tpot_slo_s;
  e.seed = f.seed;
  auto r = sim::run_experiment(f.experiment, e);
  if (!r.is_ok()) return fail(r.status());
  std::cout << sim::format_table(*r);
  std::error_code ec;
  std::filesystem::create_directories(f.out_dir, ec);
  if (ec) return fail(unavailable(f.out_dir + ": " + ec.message()));
  const std::string stem = (std::filesystem::path(f.out_dir) / ("sim-" + r->name)).string();
  const std::string json = f.json_path.empty() ? stem + ".json" : f.json_path;
  if (auto s = write_json(json, r->json); !s.is_ok()) return fail(s);
  std::cout << "results: " << json << "\n";
  if (!f.no_plot) {
    if (auto s = sim::plot(*r, stem); !s.is_ok()) return fail(s);
    std::cout << "plot: " << stem << ".png\n";
  }
  return kExitOk;
}

Result<sim::ClusterOptions> cluster_options(const SimFlags& f, const sim::Profile& profile) {
  sim::ClusterOptions o;
  o.profile = profile;
  if (f.groups < 1 || f.instances < f.groups) {
    return invalid_argument("--groups must be between 1 and --instances");
  }
  int p_share = 1, d_share = 1;
  if (!f.mixed && std::sscanf(f.pd.c_str(), "%d:%d", &p_share, &d_share) != 2) {
    return invalid_argument("--pd: expected P:D, e.g. 1:3");
  }
  if (!f.mixed && (p_share < 1 || d_share < 1)) return invalid_argument("--pd: both >= 1");
  for (int32_t g = 0; g < f.groups; ++g) {
    const int32_t n = f.instances / f.groups + (g < f.instances % f.groups ? 1 : 0);
    sim::GroupSpec spec;
    spec.name = fmt::format("group-{}", g);
    if (f.mixed) {
      spec.mixed = n;
    } else {
      if (n < 2) return invalid_argument("a P/D group needs at least 2 instances");
      spec.prefill = std::clamp<int32_t>(
          static_cast<int32_t>(std::lround(static_cast<double>(n) * p_share / (p_share + d_share))),
          1, n - 1);
      spec.decode = n - spec.prefill;
    }
    o.groups.push_back(spec);
  }
  BATON_ASSIGN_OR_RETURN(o.prefill_policy, gateway::parse_policy(f.prefill_policy));
  BATON_ASSIGN_OR_RETURN(o.decode_policy, gateway::parse_policy(f.decode_policy));
  o.mixed_policy = o.decode_policy;
  o.routing = f.routing == "stale" ? sim::Routing::kStaleReports : sim::Routing::kOnDemand;
  o.report_interval_s = f.report_interval_s;
  o.ttft_budget_s = f.ttft_budget_s;
  o.client_timeout_s = f.client_timeout_s;
  if (f.ttft_slo_s > 0) o.ttft_slo_s = f.ttft_slo_s;
  if (f.tpot_slo_s > 0) o.tpot_slo_s = f.tpot_slo_s;
  o.ratio.slo.ttft_s = o.ttft_slo_s;
  o.ratio.slo.tpot_s = o.tpot_slo_s;
  o.contiguous_kv = !f.block_wise;
  o.dynamic_ratio = f.dynamic_ratio;
  o.seed = f.seed;
  BATON_RETURN_IF_ERROR(sim::validate(o));
  return o;
}

int run_once(const SimFlags& f, const sim::Profile& profile) {
  auto o = cluster_options(f, profile);
  if (!o.is_ok()) return fail(o.status());
  std::unique_ptr<sim::RequestSource> source;
  double rate = f.rate;
  if (!f.trace.empty()) {
    auto t = sim::read_trace(f.trace);
    if (!t.is_ok()) return fail(t.status());
    source = std::move(*t);
  } else {
    sim::GeneratorOptions g;
    g.requests = f.requests;
    g.seed = f.seed;
    g.burstiness = f.burstiness;
    g.tide_amplitude = f.tide_amplitude;
    g.tide_period_s = f.tide_period_s;
    g.scenarios.clear();
    for (const auto& text : f.scenarios) {
      auto s = parse_scenario(text, f.range_ratio);
      if (!s.is_ok()) return fail(s.status());
      g.scenarios.push_back(*s);
    }
    if (g.scenarios.empty()) {
      g.scenarios.push_back(
          {"", 1, f.input_len, f.output_len, f.range_ratio, f.prefix_groups, f.prefix_len});
    }
    if (rate <= 0) {
      // --load: a share of what the prefill side (or every mixed instance)
      // prefills at full steps, for the mean prompt of the mixture.
      double weight = 0, tokens = 0;
      for (const auto& s : g.scenarios) {
        weight += s.weight;
        tokens += s.weight * s.input_mean;
      }
      int64_t prefillers = 0;
      for (const auto& grp : o->groups) prefillers += grp.prefill + grp.mixed;
      rate = f.load * static_cast<double>(prefillers) * sim::measured_prefill_rate(profile) /
             (tokens / weight);
    }
    g.rate = rate;
    if (auto s = sim::validate(g); !s.is_ok()) return fail(s);
    source = sim::make_generator(g);
  }
  const auto t0 = std::chrono::steady_clock::now();
  sim::Summary s = sim::simulate(*o, *source);
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto line = [](const std::string& k, const std::string& v) {
    std::cout << fmt::format("{:<26} {}\n", k, v);
  };
  line("profile", profile.name);
  line("instances / groups", fmt::format("{} / {}", f.instances, f.groups));
  line("requests", std::to_string(s.requests));
  line("rate (req/s)", f.trace.empty() ? fmt::format("{:.2f}", rate) : "trace");
  line("completed", std::to_string(s.completed));
  line("rejected", std::to_string(s.rejected));
  line("timed out", std::to_string(s.timed_out));
  line("simulated duration (s)", fmt::format("{:.2f}", s.duration_s));
  line("TTFT mean/p50/p99 (ms)", fmt::format("{:.1f} / {:.1f} / {:.1f}", s.ttft_mean_s * 1e3,
                                             s.ttft_p50_s * 1e3, s.ttft_p99_s * 1e3));
  line("TPOT mean/p90 (ms)",
       fmt::format("{:.2f} / {:.2f}", s.tpot_mean_s * 1e3, s.tpot_p90_s * 1e3));
  line("SLO attainment",
       fmt::format("{:.1f}% (TTFT only {:.1f}%)", s.slo_attainment * 100, s.ttft_attainment * 100));
  const double throughput = s.duration_s > 0 ? s.completed / s.duration_s : 0;
  line("request throughput (req/s)", fmt::format("{:.3f}", throughput));
  line("output tokens/s", fmt::format("{:.0f}", s.output_tokens_per_s));
  line("KV transfer mean (ms)", fmt::format("{:.2f}", s.transfer_mean_s * 1e3));
  line("prefill forwards", std::to_string(s.forwards));
  line("role changes", std::to_string(s.role_changes));
  line("events", std::to_string(s.events));
  line("wall time (s)", fmt::format("{:.2f}", wall));
  line("events/s, requests/s", fmt::format("{:.3g}, {:.3g}", s.events / wall, s.requests / wall));
  if (!f.json_path.empty()) {
    nlohmann::json j = {{"profile", profile.name}, {"instances", f.instances},
                        {"groups", f.groups},      {"rate", rate},
                        {"seed", f.seed},          {"wall_s", wall}};
    j["summary"] = {{"requests", s.requests},
                    {"completed", s.completed},
                    {"rejected", s.rejected},
                    {"timed_out", s.timed_out},
                    {"duration_s", s.duration_s},
                    {"request_throughput", throughput},
                    {"ttft_mean_s", s.ttft_mean_s},
                    {"ttft_p50_s", s.ttft_p50_s},
                    {"ttft_p90_s", s.ttft_p90_s},
                    {"ttft_p99_s", s.ttft_p99_s},
                    {"tpot_mean_s", s.tpot_mean_s},
                    {"tpot_p90_s", s.tpot_p90_s},
                    {"slo_attainment", s.slo_attainment},
                    {"ttft_attainment", s.ttft_attainment},
                    {"output_tokens_per_s", s.output_tokens_per_s},
                    {"transfer_mean_s", s.transfer_mean_s},
                    {"forwards", s.forwards},
                    {"role_changes", s.role_changes},
                    {"events", s.events}};
    if (auto st = write_json(f.json_path, j); !st.is_ok()) return fail(st);
  }
  return kExitOk;
}

}  // namespace

Run register_sim(CLI::App& app) {
  auto* cmd = app.add_subcommand("sim", "Discrete-event simulation of a cluster (docs/sim.md)");
  auto f = std::make_shared<SimFlags>();
  cmd->add_option("--profile", f->profile,
                  "Profile file, or cpu-2core / h100-llama8b / h100-llama8b-serving")
      ->capture_default_str();
  cmd->add_option("--link-gbps", f->link_gbps,
                  "KV link bandwidth in GB/s, replacing the profile's (e.g. an RDMA NIC)");
  cmd->add_option("--experiment", f->experiment,
                  "forwarding, kv-transfer, disaggregation or dynamic-ratio (or 1-4)");
  cmd->add_option("--instances", f->instances, "Instances in all")->capture_default_str();
  cmd->add_option("--groups", f->groups, "Scenario groups sharing the instances equally")
      ->capture_default_str();
  cmd->add_option("--pd", f->pd, "Prefill:decode ratio of each group")->capture_default_str();
  cmd->add_flag("--mixed", f->mixed, "Aggregated: every instance mixed");
  cmd->add_option("--requests", f->requests, "Requests to generate")->capture_default_str();
  cmd->add_option("--rate", f->rate, "Requests per second (0: from --load)");
  cmd->add_option("--load", f->load, "Offered load as a share of the prefill capacity")
      ->capture_default_str();
  cmd->add_option("--burstiness", f->burstiness, "Gamma shape of arrival gaps (1: Poisson)")
      ->capture_default_str();
  cmd->add_option("--tide-amplitude", f->tide_amplitude, "Tidal rate swing, 0..1");
  cmd->add_option("--tide-period", f->tide_period_s, "Tidal period, seconds");
  cmd->add_option("--input-len", f->input_len, "Mean prompt tokens")->capture_default_str();
  cmd->add_option("--output-len", f->output_len, "Mean output tokens")->capture_default_str();
  cmd->add_option("--range-ratio", f->range_ratio, "Lengths uniform in mean*(1 +- r)");
  cmd->add_option("--prefix-groups", f->prefix_groups, "Shared system prompts");
  cmd->add_option("--prefix-len", f->prefix_len, "Tokens of each shared prompt");
  cmd->add_option("--scenario", f->scenarios,
                  "NAME:WEIGHT:INPUT:OUTPUT[:PREFIX_GROUPS:PREFIX_LEN], repeatable");
  cmd->add_option("--trace", f->trace, "Replay a `baton bench` trace (JSONL)");
  cmd->add_option("--routing", f->routing, "on-demand or stale (periodic load reports)")
      ->check(CLI::IsMember({"on-demand", "stale"}))
      ->capture_default_str();
  cmd->add_option("--report-interval", f->report_interval_s, "Load report period, seconds");
  cmd->add_option("--prefill-policy", f->prefill_policy, "Gateway policy for prefill/mixed")
      ->capture_default_str();
  cmd->add_option("--decode-policy", f->decode_policy, "Gateway policy for decode")
      ->capture_default_str();
  cmd->add_option("--ttft-budget", f->ttft_budget_s, "Admission TTFT budget, seconds (0: none)");
  cmd->add_option("--client-timeout", f->client_timeout_s, "Give up without a first token after");
  cmd->add_option("--ttft-slo", f->ttft_slo_s, "TTFT SLO, seconds");
  cmd->add_option("--tpot-slo", f->tpot_slo_s, "TPOT SLO, seconds");
  cmd->add_flag("--block-wise", f->block_wise, "Send KV block by block instead of contiguous");
  cmd->add_flag("--dynamic-ratio", f->dynamic_ratio, "Run the controller's P/D ratio policy");
  cmd->add_option("--seed", f->seed, "Seed of the workload and routing")->capture_default_str();
  cmd->add_option("--json", f->json_path, "Write the results as JSON here");
  cmd->add_option("--out-dir", f->out_dir, "Experiments: where JSON and PNG go")
      ->capture_default_str();
  cmd->add_flag("--no-plot", f->no_plot, "Experiments: skip the PNG");
  return [f] {
    auto profile = sim::load_profile(f->profile);
    if (!profile.is_ok()) return fail(profile.status());
    if (f->link_gbps > 0) {
      profile->link.bytes_per_s = f->link_gbps * 1e9;
      profile->name += fmt::format(" (link {:g} GB/s)", f->link_gbps);
    }
    return f->experiment.empty() ? run_once(*f, *profile) : run_experiment(*f, *profile);
  };
}

}  // namespace baton::cli
