// `baton bench`: the serving benchmark (bench/serving/) against any
// OpenAI-compatible URL; `baton bench compare` runs one workload against
// several endpoints; `baton bench plot` draws PNGs from result files.

#include <fmt/format.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/serving/launch.h"
#include "bench/serving/plot.h"
#include "bench/serving/report.h"
#include "bench/serving/runner.h"
#include "bench/serving/workload.h"
#include "cli/bench_profile.h"
#include "cli/commands.h"

namespace baton::cli {

namespace {

using bench::RequestSpec;

struct BenchFlags {
  std::string base_url = "http://127.0.0.1:8000";
  std::string endpoint;  // default by backend
  std::string backend = "openai";
  std::string model;
  std::string label;
  int64_t num_prompts = 200;
  std::string request_rate = "inf";
  double burstiness = 1;
  int max_concurrency = 0;
  std::string rate_phases;
  int num_warmups = 0;
  uint64_t seed = 0;
  bool ignore_eos = true;
  std::optional<double> temperature;
  int input_len = 1024;
  int output_len = 128;
  double range_ratio = 0;
  std::string length_distribution = "uniform";
  double lognormal_sigma = 0.5;
  int prefix_len = 0;
  int prefix_groups = 0;
  int turns = 1;
  std::vector<std::string> scenarios;
  std::vector<std::string> shape_phases;
  std::string trace;
  std::string save_trace;
  std::vector<std::string> goodput;
  std::string percentiles = "90,99";
  std::string result_dir;
  bool plot = false;
  double timeout_s = 600;
  std::vector<std::string> headers;
  // compare
  std::vector<std::string> targets;
  std::vector<std::string> compare_results;
  std::vector<std::string> launches;
  double launch_timeout_s = 600;
  std::string launch_log_dir;
  // plot
  std::vector<std::string> plot_inputs;
  std::string plot_out = "bench-plots";
};

Result<std::vector<double>> parse_list(const std::string& text, const std::string& what) {
  std::vector<double> out;
  std::string item;
  for (size_t i = 0; i <= text.size(); ++i) {
    if (i < text.size() && text[i] != ',') {
      item += text[i];
      continue;
    }
    if (item == "inf") {
      out.push_back(std::numeric_limits<double>::infinity());
    } else {
      try {
        size_t used = 0;
        out.push_back(std::stod(item, &used));
        if (used != item.size() || !(out.back() > 0)) throw std::invalid_argument(item);
      } catch (const std::exception&) {
        return invalid_argument(what + ": '" + item + "' is not a positive number or inf");
      }
    }
    item.clear();
  }
  return out;
}

std::string rate_name(double rate) { return std::isinf(rate) ? "inf" : fmt::format("{:g}", rate); }

// The base scenario of the length flags.
Result<bench::Scenario> base_scenario(const BenchFlags& f) {
  bench::Scenario base;
  BATON_ASSIGN_OR_RETURN(auto dist, bench::parse_length_distribution(f.length_distribution));
  base.input = {f.input_len, dist, f.range_ratio, f.lognormal_sigma};
  base.output = {f.output_len, dist, f.range_ratio, f.lognormal_sigma};
  return base;
}

// The --phase flags, in order (empty without them).
Result<std::vector<bench::ShapePhase>> shape_phases(const BenchFlags& f) {
  std::vector<bench::ShapePhase> phases;
  if (f.shape_phases.empty()) return phases;
  BATON_ASSIGN_OR_RETURN(bench::Scenario base, base_scenario(f));
  for (const std::string& text : f.shape_phases) {
    BATON_ASSIGN_OR_RETURN(auto p, bench::parse_shape_phase(text, base));
    phases.push_back(std::move(p));
  }
  return phases;
}

// The workload for one request rate (a trace keeps its own arrival times).
Result<std::vector<RequestSpec>> build_workload(const BenchFlags& f, double rate,
                                                std::string& description) {
  if (!f.trace.empty()) {
    description = "trace " + f.trace;
    return bench::read_trace(f.trace);
  }
  if (!f.shape_phases.empty()) {
    BATON_ASSIGN_OR_RETURN(auto phases, shape_phases(f));
    description =
        fmt::format("shape phases (range_ratio={} dist={}):", f.range_ratio, f.length_distribution);
    for (const auto& p : phases) {
      description += fmt::format(" {} {:g}s@{:g}/s in={} out={};", p.name, p.duration_s, p.rate,
                                 p.input.mean, p.output.mean);
    }
    description.pop_back();
    return bench::make_phased_workload(phases, f.seed, f.burstiness);
  }
  bench::WorkloadOptions w;
  w.num_prompts = f.num_prompts;
  w.seed = f.seed;
  w.turns = f.turns;
  w.arrivals.request_rate = rate;
  w.arrivals.burstiness = f.burstiness;
  if (!f.rate_phases.empty()) {
    BATON_ASSIGN_OR_RETURN(w.arrivals.phases, bench::parse_phases(f.rate_phases));
  }
  BATON_ASSIGN_OR_RETURN(bench::Scenario base, base_scenario(f));
  base.prefix_len = f.prefix_len;
  base.prefix_groups = f.prefix_len > 0 ? std::max(1, f.prefix_groups) : 0;
  if (f.scenarios.empty()) {
    w.scenarios.push_back(base);
  } else {
    for (const std::string& s : f.scenarios) {
      BATON_ASSIGN_OR_RETURN(auto sc, bench::parse_scenario(s, base));
      w.scenarios.push_back(std::move(sc));
    }
  }
  description = fmt::format("random in={} out={} range_ratio={} dist={}", f.input_len, f.output_len,
                            f.range_ratio, f.length_distribution);
  if (f.prefix_len > 0) {
    description += fmt::format(" prefix={}x{}", base.prefix_groups, f.prefix_len);
  }
  if (f.turns > 1) description += fmt::format(" turns={}", f.turns);
  if (!f.scenarios.empty()) {
    description += " scenarios=";
    for (size_t i = 0; i < f.scenarios.size(); ++i) description += (i ? ";" : "") + f.scenarios[i];
  }
  if (!f.rate_phases.empty()) description += " phases=" + f.rate_phases;
  return bench::make_workload(w);
}

struct Target {
  std::string label;
  std::string base_url;
  std::string command;  // --launch: started for its runs; base_url comes from it
};

// Runs one workload against one target; prints the summary and writes the
// result files when asked. Returns the result JSON.
Result<nlohmann::json> run_one(const BenchFlags& f, const Target& t, double rate,
                               const bench::GoodputSlo& slo, const std::vector<double>& ps) {
  BATON_ASSIGN_OR_RETURN(bench::Api api, bench::parse_backend(f.backend));
  std::string path = !f.endpoint.empty()        ? f.endpoint
                     : api == bench::Api::kChat ? "/v1/chat/completions"
                                                : "/v1/completions";
  bench::RunOptions o;
  BATON_ASSIGN_OR_RETURN(o.endpoint, bench::parse_endpoint(t.base_url, path));
  o.api = api;
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(f.timeout_s * 1000));
  o.model = f.model;
  if (o.model.empty()) {
    BATON_ASSIGN_OR_RETURN(o.model, bench::discover_model(o.endpoint, std::chrono::seconds(30)));
  }
  o.ignore_eos = f.ignore_eos;
  o.temperature = f.temperature;
  o.max_concurrency = f.max_concurrency;
  o.num_warmups = f.num_warmups;
  o.seed = f.seed;
  o.timeout = timeout;
  for (const std::string& h : f.headers) {
    size_t colon = h.find(':');
    if (colon == std::string::npos) return invalid_argument("--header '" + h + "': expected K: V");
    std::string value = h.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    o.headers.emplace_back(h.substr(0, colon), value);
  }
  std::string description;
  BATON_ASSIGN_OR_RETURN(auto specs, build_workload(f, rate, description));
  if (!f.save_trace.empty()) BATON_RETURN_IF_ERROR(bench::write_trace(f.save_trace, specs));

  std::cout << fmt::format("baton bench: {} requests to {}{} (model {}), rate {}{}\n", specs.size(),
                           t.base_url, o.endpoint.path, o.model, rate_name(rate),
                           f.max_concurrency > 0
                               ? fmt::format(", max concurrency {}", f.max_concurrency)
                               : "")
            << std::flush;
  BATON_ASSIGN_OR_RETURN(auto run, bench::run_benchmark(specs, o, SteadyClock::instance()));
  bench::BenchmarkMetrics m = bench::compute_metrics(run.records, run.duration_s, slo, ps);
  bench::RunInfo info;
  info.label = t.label;
  info.backend = f.backend;
  info.base_url = t.base_url;
  info.endpoint = o.endpoint.path;
  info.model = o.model;
  info.started_at = run.started_at;
  info.num_prompts = static_cast<int64_t>(specs.size());
  info.request_rate = rate;
  if (!f.trace.empty()) {
    info.rate_note = "trace";
  } else if (!f.shape_phases.empty()) {
    info.rate_note = "shape phases";
  } else if (!f.rate_phases.empty()) {
    info.rate_note = "phases " + f.rate_phases;
  }
  info.burstiness = f.burstiness;
  info.max_concurrency = f.max_concurrency;
  info.workload = description;
  info.seed = f.seed;
  std::cout << bench::format_summary(info, m);
  for (const auto& r : run.records) {
    if (!r.success) {
      std::cout << "first failure (request " << r.id << "): " << r.error << "\n";
      break;
    }
  }
  nlohmann::json result = bench::result_json(info, m, run.records);
  // Not a vLLM metric: the most requests in flight at any instant, exactly.
  result["max_in_flight"] = run.peak_in_flight;
  // A mixture of scenarios: the same metrics per scenario, over the whole
  // run's duration.
  std::map<std::string, std::vector<bench::RequestRecord>> by_scenario;
  for (const auto& r : run.records) {
    if (!r.scenario.empty()) by_scenario[r.scenario].push_back(r);
  }
  if (!by_scenario.empty()) {
    nlohmann::json scenarios = nlohmann::json::object();
    for (const auto& [name, records] : by_scenario) {
      bench::BenchmarkMetrics sm = bench::compute_metrics(records, run.duration_s, slo, ps);
      std::cout << fmt::format(
          "scenario {}: {} ok, {} failed, {:.2f} req/s, {:.2f} output tok/s, mean TTFT {:.2f} ms, "
          "mean TPOT {:.2f} ms, mean E2EL {:.2f} ms\n",
          name, sm.completed, sm.failed, sm.request_throughput, sm.output_throughput,
          sm.ttft_ms.mean, sm.tpot_ms.mean, sm.e2el_ms.mean);
      scenarios[name] = bench::metrics_json(sm);
    }
    result["scenarios"] = std::move(scenarios);
  }
  // Shape phases: the same metrics per phase, each over its own requests and
  // duration.
  if (!f.shape_phases.empty() && f.trace.empty()) {
    BATON_ASSIGN_OR_RETURN(auto phases, shape_phases(f));
    std::vector<double> starts = bench::phase_starts(phases);
    std::vector<bench::PhaseWindow> windows;
    for (size_t i = 0; i < phases.size(); ++i) {
      windows.push_back({phases[i].name, starts[i], phases[i].duration_s});
    }
    auto pm = bench::compute_phase_metrics(run.records, windows, slo, ps);
    std::cout << "Per phase (requests by the phase they arrived in; rates over the phase's "
                 "duration):\n"
              << bench::format_phases(pm, ps);
    nlohmann::json pj = bench::phases_json(pm);
    for (size_t i = 0; i < phases.size(); ++i) {
      pj[i]["rate"] = phases[i].rate;
      pj[i]["input_len"] = phases[i].input.mean;
      pj[i]["output_len"] = phases[i].output.mean;
    }
    result["phases"] = std::move(pj);
  }
  if (!f.result_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(f.result_dir, ec);
    std::string base =
        (std::filesystem::path(f.result_dir) /
         fmt::format("{}_{}{}", t.label,
                     !f.trace.empty() ? std::string("trace")
                     : !f.rate_phases.empty() || !f.shape_phases.empty()
                         ? std::string("phases")
                         : "rate-" + rate_name(rate),
                     f.max_concurrency > 0 ? fmt::format("_conc-{}", f.max_concurrency) : ""))
            .string();
    BATON_RETURN_IF_ERROR(bench::write_json(base + ".json", result));
    BATON_RETURN_IF_ERROR(bench::write_records(base + ".jsonl", run.records));
    std::cout << "wrote " << base << ".json and " << base << ".jsonl\n";
  }
  return result;
}

int fail(const std::string& cmd, const Status& s) {
  std::cerr << "baton " << cmd << ": " << s.message() << "\n";
  return s.code() == StatusCode::kInvalidArgument || s.code() == StatusCode::kNotFound
             ? kExitUsage
             : kExitFailure;
}

int draw(const std::vector<nlohmann::json>& results, const std::string& out_dir) {
  bench::PlotOptions po;
  po.out_dir = out_dir;
  auto pngs = bench::plot_results(results, po);
  if (!pngs.is_ok()) return fail("bench plot", pngs.status());
  for (const std::string& p : *pngs) std::cout << "plot: " << p << "\n";
  return kExitOk;
}

// Runs every rate against every target; with several targets, prints the
// comparison table of each rate.
int run_all(const BenchFlags& f, const std::vector<Target>& targets, const char* cmd) {
  auto slo = bench::parse_goodput(f.goodput);
  if (!slo.is_ok()) return fail(cmd, slo.status());
  auto ps = parse_list(f.percentiles, "--metric-percentiles");
  if (!ps.is_ok()) return fail(cmd, ps.status());
  for (double p : *ps) {
    if (p >= 100) return fail(cmd, invalid_argument("--metric-percentiles: must be < 100"));
  }
  auto rates = parse_list(f.request_rate, "--request-rate");
  if (!rates.is_ok()) return fail(cmd, rates.status());
  if (!f.shape_phases.empty()) {
    if (!f.trace.empty() || !f.rate_phases.empty() || !f.scenarios.empty() || f.turns > 1 ||
        f.prefix_len > 0) {
      return fail(cmd, invalid_argument("--phase sets the whole workload: it does not combine "
                                        "with --trace, --rate-phases, --scenario, --multi-turn "
                                        "or --random-prefix-len"));
    }
    auto phases = shape_phases(f);
    if (!phases.is_ok()) return fail(cmd, phases.status());
  }
  if (!f.trace.empty() || !f.rate_phases.empty() || !f.shape_phases.empty()) {
    // The trace or the phases set the arrival times; there is one run.
    if (rates->size() > 1) {
      return fail(cmd, invalid_argument("--request-rate takes one value with --trace, "
                                        "--rate-phases or --phase (they set the arrivals)"));
    }
  }
  // Target by target (a launched one is up only for its own runs), then the
  // comparison of each rate.
  std::vector<nlohmann::json> all;
  std::vector<std::vector<nlohmann::json>> by_rate(rates->size());
  bool any_failed = false;
  for (const Target& t : targets) {
    Target target = t;
    std::unique_ptr<bench::LaunchedTarget> launched;
    if (!t.command.empty()) {
      std::string log = (std::filesystem::path(f.launch_log_dir) / (t.label + ".log")).string();
      std::cout << "baton " << cmd << ": starting " << t.label << ": " << t.command << " (log "
                << log << ")\n"
                << std::flush;
      auto l = bench::LaunchedTarget::start(
          t.command, log,
          std::chrono::milliseconds(static_cast<int64_t>(f.launch_timeout_s * 1000)));
      if (!l.is_ok()) return fail(cmd, l.status());
      launched = std::move(*l);
      target.base_url = launched->base_url();
      std::cout << "baton " << cmd << ": " << t.label << " is up at " << target.base_url << "\n";
    }
    for (size_t k = 0; k < rates->size(); ++k) {
      auto r = run_one(f, target, (*rates)[k], *slo, *ps);
      if (!r.is_ok()) return fail(cmd, r.status());
      any_failed = any_failed || (*r)["completed"].get<int64_t>() == 0;
      by_rate[k].push_back(*r);
      all.push_back(*r);
    }
    if (launched) {
      launched.reset();  // stops it before the next target starts
      std::cout << "baton " << cmd << ": stopped " << t.label << "\n";
    }
  }
  if (targets.size() > 1) {
    for (size_t k = 0; k < rates->size(); ++k) {
      std::cout << "\nComparison at request rate "
                << (f.trace.empty() && f.rate_phases.empty() && f.shape_phases.empty()
                        ? rate_name((*rates)[k])
                        : "of the " + std::string(f.trace.empty() ? "phases" : "trace"))
                << ":\n"
                << bench::format_comparison(by_rate[k]);
    }
  }
  if (f.plot) {
    int rc = draw(all, f.result_dir.empty() ? f.plot_out : f.result_dir);
    if (rc != kExitOk) return rc;
  }
  if (any_failed) {
    std::cerr << "baton " << cmd << ": a run completed no request\n";
    return kExitFailure;
  }
  return kExitOk;
}

void add_run_options(CLI::App* cmd, BenchFlags& f) {
  cmd->add_option("--base-url,--url", f.base_url, "Server or gateway base URL")
      ->capture_default_str();
  cmd->add_option("--endpoint", f.endpoint,
                  "API path (default /v1/completions, or /v1/chat/completions for openai-chat)");
  cmd->add_option("--backend", f.backend, "openai (completions) or openai-chat")
      ->check(CLI::IsMember({"openai", "openai-chat"}))
      ->capture_default_str();
  cmd->add_option("--model", f.model, "Model name (default: the first of /v1/models)");
  cmd->add_option("--label", f.label, "Name of the run in results and plots");
  cmd->add_option("--num-prompts", f.num_prompts, "Requests in the run")
      ->check(CLI::Range(int64_t{1}, int64_t{10000000}))
      ->capture_default_str();
  cmd->add_option("--request-rate", f.request_rate,
                  "Requests per second, or inf (all at once); a comma list runs a sweep")
      ->capture_default_str();
  cmd->add_option("--burstiness", f.burstiness,
                  "Gamma shape of arrival gaps: 1 Poisson, <1 burstier, >1 steadier")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--max-concurrency", f.max_concurrency,
                  "Most requests in flight (0: no limit); with rate inf, a closed loop")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--rate-phases", f.rate_phases,
                  "Tidal/bursty arrivals: DURATION_S:RATE,... repeated in a cycle");
  cmd->add_option("--num-warmups", f.num_warmups, "Warm-up requests before the timed run")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", f.seed, "Seed of lengths, prompts and arrivals")->capture_default_str();
  cmd->add_flag("--ignore-eos,!--no-ignore-eos", f.ignore_eos,
                "Send ignore_eos so that every request generates max_tokens (the default)");
  cmd->add_option("--temperature", f.temperature, "Sampling temperature (default: the server's)");
  cmd->add_option("--random-input-len", f.input_len, "Mean prompt tokens")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--random-output-len", f.output_len, "Mean output tokens (max_tokens)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--random-range-ratio", f.range_ratio,
                  "Uniform lengths in [len*(1-r), len*(1+r)]; 0 fixes them")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--length-distribution", f.length_distribution, "uniform or lognormal")
      ->check(CLI::IsMember({"uniform", "lognormal"}))
      ->capture_default_str();
  cmd->add_option("--lognormal-sigma", f.lognormal_sigma, "Sigma of the lognormal lengths")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--random-prefix-len", f.prefix_len,
                  "Tokens of a shared system prompt at the start of every prompt")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--prefix-groups", f.prefix_groups,
                  "Distinct shared prompts spread over the requests (default 1)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--multi-turn", f.turns,
                  "Turns per conversation; each turn's prompt holds the history")
      ->check(CLI::Range(1, 1000));
  cmd->add_option("--scenario", f.scenarios,
                  "NAME:WEIGHT:IN:OUT[:PREFIX_GROUPS:PREFIX_LEN], repeatable; sent as "
                  "x-baton-scenario");
  cmd->add_option("--phase", f.shape_phases,
                  "NAME:DURATION_S:RATE:IN:OUT, repeatable: phases run once, in order, each "
                  "with its own Poisson rate and lengths (the request shape shifts); adds "
                  "per-phase metrics; the phases set the number of requests")
      ->allow_extra_args(false);
  cmd->add_option("--trace", f.trace, "Replay a JSONL trace instead of a synthetic workload")
      ->check(CLI::ExistingFile);
  cmd->add_option("--save-trace", f.save_trace, "Save the workload as a JSONL trace");
  cmd->add_option("--goodput", f.goodput, "SLOs for goodput: ttft:MS tpot:MS e2el:MS");
  cmd->add_option("--metric-percentiles", f.percentiles, "Percentiles reported, comma list")
      ->capture_default_str();
  cmd->add_option("--result-dir", f.result_dir,
                  "Write <label>_rate-<r>.json (summary) and .jsonl (requests) here");
  cmd->add_flag("--plot", f.plot, "Draw PNGs (into --result-dir, else bench-plots/)");
  cmd->add_option("--timeout-s", f.timeout_s, "Per-request timeout in seconds")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--header", f.headers, "Extra request header 'K: V', repeatable");
}

}  // namespace

Run register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bench", "Serving benchmark against an OpenAI-compatible URL (vLLM's metrics)");
  auto f = std::make_shared<BenchFlags>();
  add_run_options(cmd, *f);
  cmd->require_subcommand(0, 1);

  auto* compare = cmd->add_subcommand(
      "compare", "Run the same workload against several endpoints and print a ratio table");
  compare->fallthrough();
  compare->add_option("--target", f->targets, "LABEL=BASE_URL, repeatable (first = baseline)");
  compare->add_option("--launch", f->launches,
                      "LABEL=COMMAND, repeatable: a server or cluster started for its runs and "
                      "stopped after (e.g. 'pd=baton up --prefill 1 --decode 1'); ready when it "
                      "prints Baton's ready line");
  compare->add_option("--launch-timeout-s", f->launch_timeout_s, "How long a launch may take")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  compare->add_option("--launch-log-dir", f->launch_log_dir,
                      "Where launched commands' output goes (default: a temp folder)");
  compare
      ->add_option("--results", f->compare_results,
                   "Compare saved result JSON files instead of running")
      ->check(CLI::ExistingFile);

  auto* plot = cmd->add_subcommand("plot", "PNG plots from result JSON files (gnuplot)");
  plot->add_option("results", f->plot_inputs, "Result JSON files")
      ->required()
      ->check(CLI::ExistingFile);
  plot->add_option("--out-dir", f->plot_out, "Where the PNGs go")->capture_default_str();

  BenchProfileCommand profile = register_bench_profile(*cmd);

  return [f, compare, plot, profile] {
    if (profile.app->parsed()) return profile.run();
    if (plot->parsed()) {
      std::vector<nlohmann::json> results;
      for (const std::string& p : f->plot_inputs) {
        auto j = bench::read_json(p);
        if (!j.is_ok()) return fail("bench plot", j.status());
        results.push_back(std::move(*j));
      }
      return draw(results, f->plot_out);
    }
    if (compare->parsed()) {
      if (!f->compare_results.empty()) {
        std::vector<nlohmann::json> results;
        for (const std::string& p : f->compare_results) {
          auto j = bench::read_json(p);
          if (!j.is_ok()) return fail("bench compare", j.status());
          results.push_back(std::move(*j));
        }
        std::cout << bench::format_comparison(results);
        return kExitOk;
      }
      if (f->targets.size() + f->launches.size() < 2) {
        return fail("bench compare", invalid_argument("give two or more --target LABEL=URL or "
                                                      "--launch LABEL=COMMAND"));
      }
      std::vector<Target> targets;
      for (const std::string& t : f->targets) {
        size_t eq = t.find('=');
        if (eq == std::string::npos || eq == 0) {
          return fail("bench compare",
                      invalid_argument("--target '" + t + "': expected LABEL=URL"));
        }
        targets.push_back({t.substr(0, eq), t.substr(eq + 1), ""});
      }
      for (const std::string& t : f->launches) {
        size_t eq = t.find('=');
        if (eq == std::string::npos || eq == 0 || eq + 1 == t.size()) {
          return fail("bench compare",
                      invalid_argument("--launch '" + t + "': expected LABEL=COMMAND"));
        }
        targets.push_back({t.substr(0, eq), "", t.substr(eq + 1)});
      }
      if (!f->launches.empty() && f->launch_log_dir.empty()) {
        char tmpl[] = "/tmp/baton-bench-XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
          return fail("bench compare", unavailable("cannot create a log folder in /tmp"));
        }
        f->launch_log_dir = tmpl;
      }
      if (!f->launches.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(f->launch_log_dir, ec);
        if (ec) return fail("bench compare", unavailable(f->launch_log_dir + ": " + ec.message()));
      }
      return run_all(*f, targets, "bench compare");
    }
    return run_all(*f, {{f->label.empty() ? "baton" : f->label, f->base_url, ""}}, "bench");
  };
}

}  // namespace baton::cli
