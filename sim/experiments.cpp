#include "sim/experiments.h"

#include <fmt/format.h>
#include <sys/wait.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include "sim/workload.h"

namespace baton::sim {

namespace {

struct Setup {
  int32_t input_mean = 0;
  int32_t output_mean = 128;
  double ttft_slo_s = 0;
  double tpot_slo_s = 0;
  double prefill_rps = 0;  // requests/s one instance prefills at full steps
};

// Lengths and SLOs scaled to the profile, so one command means the same
// thing on the CPU and the H100 profile: prompts of a quarter of a prefill
// step; a TTFT SLO of two full prefill steps (a request may wait for the
// step in progress, then run in the next); a TPOT SLO of 1.5x a full decode
// step.
Setup setup_for(const ExperimentOptions& e) {
  const Profile& p = e.profile;
  Setup s;
  s.input_mean = static_cast<int32_t>(std::max<int64_t>(16, p.prefill.step_tokens / 4));
  s.output_mean = 128;
  s.ttft_slo_s = e.ttft_slo_s > 0 ? e.ttft_slo_s : 2 * prefill_time(p, p.prefill.step_tokens, 0, 1);
  const int b = p.decode.max_batch;
  s.tpot_slo_s =
      e.tpot_slo_s > 0
          ? e.tpot_slo_s
          : 1.5 * decode_step_time(p, b, static_cast<int64_t>(b) * (s.input_mean + s.output_mean));
  s.prefill_rps = measured_prefill_rate(p) / s.input_mean;
  return s;
}

ClusterOptions base_cluster(const ExperimentOptions& e, const Setup& s) {
  ClusterOptions o;
  o.profile = e.profile;
  o.ttft_slo_s = s.ttft_slo_s;
  o.tpot_slo_s = s.tpot_slo_s;
  o.seed = e.seed;
  o.ratio.slo.ttft_s = s.ttft_slo_s;
  o.ratio.slo.tpot_s = s.tpot_slo_s;
  return o;
}

Summary run(const ClusterOptions& o, const GeneratorOptions& g) {
  auto src = make_generator(g);
  return simulate(o, *src);
}

std::string ms(double s) { return fmt::format("{:.1f}", s * 1000); }
std::string pct(double x) { return fmt::format("{:.1f}%", x * 100); }

nlohmann::json to_json(const Summary& s) {
  return {{"requests", s.requests},
          {"completed", s.completed},
          {"rejected", s.rejected},
          {"timed_out", s.timed_out},
          {"duration_s", s.duration_s},
          {"ttft_mean_s", s.ttft_mean_s},
          {"ttft_p50_s", s.ttft_p50_s},
          {"ttft_p90_s", s.ttft_p90_s},
          {"ttft_p99_s", s.ttft_p99_s},
          {"tpot_mean_s", s.tpot_mean_s},
          {"tpot_p90_s", s.tpot_p90_s},
          {"ttft_attainment", s.ttft_attainment},
          {"slo_attainment", s.slo_attainment},
          {"goodput_rps", s.goodput_rps},
          {"output_tokens_per_s", s.output_tokens_per_s},
          {"transfer_mean_s", s.transfer_mean_s},
          {"transfer_p99_s", s.transfer_p99_s},
          {"transfer_share", s.transfer_share},
          {"forwards", s.forwards},
          {"role_changes", s.role_changes},
          {"events", s.events}};
}

void common_json(ExperimentResult& r, const ExperimentOptions& e, const Setup& s, double rate) {
  r.json["experiment"] = r.name;
  r.json["profile"] = e.profile.name;
  r.json["instances"] = e.instances;
  r.json["requests"] = e.requests;
  r.json["seed"] = e.seed;
  r.json["rate"] = rate;
  r.json["input_mean"] = s.input_mean;
  r.json["output_mean"] = s.output_mean;
  r.json["ttft_slo_s"] = s.ttft_slo_s;
  r.json["tpot_slo_s"] = s.tpot_slo_s;
}

// ---- 1: on-demand forwarding vs stale load reports ----

ExperimentResult forwarding(const ExperimentOptions& e) {
  const Setup s = setup_for(e);
  const int32_t p = std::max(1, e.instances / 2), d = std::max(1, e.instances - p);
  const double rate = e.rate > 0 ? e.rate : e.load * p * s.prefill_rps;
  GeneratorOptions g;
  g.requests = e.requests;
  g.seed = e.seed;
  g.rate = rate;
  g.burstiness = 0.25;
  g.scenarios = {{"", 1, s.input_mean, s.output_mean, 0.5, 0, 0}};
  ClusterOptions base = base_cluster(e, s);
  base.groups = {{"g", {}, p, d, 0}};
  base.client_timeout_s = 3 * s.ttft_slo_s;
  base.ttft_budget_s = 0.8 * s.ttft_slo_s;

  ExperimentResult r;
  r.name = "forwarding";
  r.title = "On-demand forwarding vs routing by periodic load reports (bursty load)";
  r.columns = {"routing",     "TTFT SLO met", "timed out",   "rejected",
               "TTFT p50 ms", "TTFT p99 ms",  "forwards/req"};
  r.plot_ylabel = "requests within the TTFT SLO (%)";
  r.plot_series = {"TTFT SLO attainment"};
  common_json(r, e, s, rate);
  struct Row {
    std::string label;
    Routing routing;
    double interval;
    gateway::PolicyKind policy;
  };
  std::vector<Row> rows = {{"on-demand", Routing::kOnDemand, 0, gateway::PolicyKind::kLeastLoad}};
  for (double iv : {0.1, 0.5, 1.0, 2.0}) {
    rows.push_back({fmt::format("reports/{}s", iv), Routing::kStaleReports, iv,
                    gateway::PolicyKind::kLeastLoad});
  }
  rows.push_back({"reports/1s p2c", Routing::kStaleReports, 1.0, gateway::PolicyKind::kPowerOfTwo});
  double on_demand = 0, best_stale = 0;
  for (const Row& row : rows) {
    ClusterOptions o = base;
    o.routing = row.routing;
    o.report_interval_s = row.routing == Routing::kStaleReports ? row.interval : 1.0;
    o.prefill_policy = row.policy;
    Summary sum = run(o, g);
    const double n = static_cast<double>(std::max<int64_t>(1, sum.requests));
    r.rows.push_back({row.label, pct(sum.ttft_attainment), pct(sum.timed_out / n),
                      pct(sum.rejected / n), ms(sum.ttft_p50_s), ms(sum.ttft_p99_s),
                      fmt::format("{:.2f}", sum.forwards / n)});
    r.plot_labels.push_back(row.label);
    r.plot_values.push_back({sum.ttft_attainment * 100});
    auto j = to_json(sum);
    j["label"] = row.label;
    j["report_interval_s"] = row.interval;
    r.json["rows"].push_back(j);
    if (row.routing == Routing::kOnDemand) {
      on_demand = sum.ttft_attainment;
    } else {
      best_stale = std::max(best_stale, sum.ttft_attainment);
    }
  }
  r.notes.push_back(fmt::format(
      "{}: {} prefill + {} decode instances, {} requests, {:.1f} req/s (gamma shape 0.25), "
      "prompts ~{} tokens, TTFT SLO {} ms, admission budget {} ms, client timeout {} ms",
      e.profile.name, p, d, e.requests, rate, s.input_mean, ms(s.ttft_slo_s),
      ms(base.ttft_budget_s), ms(base.client_timeout_s)));
  if (best_stale > 0) {
    r.notes.push_back(fmt::format(
        "on-demand TTFT SLO attainment vs the best stale-report row: {:+.0f}% (P/D-Serve: +42%)",
        (on_demand / best_stale - 1) * 100));
  }
  r.json["on_demand_vs_best_stale"] = best_stale > 0 ? on_demand / best_stale : 0;
  return r;
}

// ---- 3: contiguous vs block-wise KV transfer ----

ExperimentResult kv_transfer(const ExperimentOptions& e) {
  const Setup s = setup_for(e);
  const int32_t p = std::max(1, e.instances / 2), d = std::max(1, e.instances - p);
  ExperimentResult r;
  r.name = "kv-transfer";
  r.title = "Contiguous vs block-wise KV transfer";
  r.columns = {"prompt tokens", "transfer",    "mean ms", "p99 ms",
               "share",         "TTFT p50 ms", "TPOT ms", "vs contiguous"};
  r.plot_ylabel = "mean KV transfer time (ms)";
  r.plot_series = {"contiguous", "block-wise"};
  common_json(r, e, s, e.rate);
  double sum_ratio = 0;
  int n_ratio = 0;
  for (int32_t tokens : {1024, 4096, 16384}) {
    // Load as a share of what the prefill side can take at this length.
    const double per_instance = measured_prefill_rate(e.profile) / tokens;
    const double rate = e.rate > 0 ? e.rate : 0.5 * e.load * p * per_instance;
    GeneratorOptions g;
    g.requests = std::min<int64_t>(e.requests, 5000);
    g.seed = e.seed;
    g.rate = rate;
    g.scenarios = {{"", 1, tokens, s.output_mean, 0, 0, 0}};
    double contiguous_mean = 0;
    r.plot_labels.push_back(std::to_string(tokens));
    r.plot_values.emplace_back();
    for (bool contiguous : {true, false}) {
      ClusterOptions o = base_cluster(e, s);
      o.groups = {{"g", {}, p, d, 0}};
      o.contiguous_kv = contiguous;
      Summary sum = run(o, g);
      if (contiguous) contiguous_mean = sum.transfer_mean_s;
      const double ratio = contiguous_mean > 0 ? sum.transfer_mean_s / contiguous_mean : 0;
      if (!contiguous) {
        sum_ratio += ratio;
        ++n_ratio;
      }
      r.rows.push_back({std::to_string(tokens), contiguous ? "contiguous" : "block-wise",
                        ms(sum.transfer_mean_s), ms(sum.transfer_p99_s), pct(sum.transfer_share),
                        ms(sum.ttft_p50_s), ms(sum.tpot_mean_s), fmt::format("{:.2f}x", ratio)});
      r.plot_values.back().push_back(sum.transfer_mean_s * 1000);
      auto j = to_json(sum);
      j["prompt_tokens"] = tokens;
      j["contiguous"] = contiguous;
      j["rate"] = rate;
      r.json["rows"].push_back(j);
    }
  }
  r.notes.push_back(fmt::format(
      "{}: {} prefill + {} decode instances, fixed-length prompts, {} output tokens; "
      "\"share\" is transfer time over TTFT + transfer (the first token leaves before the KV)",
      e.profile.name, p, d, s.output_mean));
  if (n_ratio > 0) {
    r.notes.push_back(fmt::format(
        "contiguous transfer takes {:.0f}% less time than block-wise on average (P/D-Serve: -46%)",
        (1 - 1 / (sum_ratio / n_ratio)) * 100));
  }
  return r;
}

// ---- 4: disaggregated vs aggregated at the same instance count ----

// The highest rate (requests/s) with at least `target` of requests within
// both SLOs, by bisection between 0 and `hi`; with the Summary there.
std::pair<double, Summary> rate_at_slo(const ClusterOptions& o, GeneratorOptions g, double hi,
                                       double target = 0.9) {
  double lo = 0;
  Summary best;
  for (int i = 0; i < 10; ++i) {
    const double mid = (lo + hi) / 2;
    g.rate = mid;
    Summary s = run(o, g);
    if (s.slo_attainment >= target) {
      lo = mid;
      best = s;
    } else {
      hi = mid;
    }
  }
  return {lo, best};
}

ExperimentResult disaggregation(const ExperimentOptions& e) {
  const Setup s = setup_for(e);
  const int32_t n = std::max(2, e.instances);
  ExperimentResult r;
  r.name = "disaggregation";
  r.title = "Disaggregated vs aggregated serving at the same instance count";
  r.columns = {"configuration", "max req/s at SLO", "goodput req/s", "TTFT p90 ms", "TPOT p90 ms"};
  r.plot_ylabel = "requests/s with 90% within both SLOs";
  r.plot_series = {"throughput at SLO"};
  common_json(r, e, s, 0);
  GeneratorOptions g;
  g.requests = std::min<int64_t>(e.requests, 10000);
  g.seed = e.seed;
  g.burstiness = 1;
  g.scenarios = {{"", 1, s.input_mean, s.output_mean, 0.5, 0, 0}};
  const double hi = 2.0 * n * s.prefill_rps;
  struct Config {
    std::string label;
    int32_t p, d, m;
  };
  std::vector<Config> configs = {{fmt::format("mixed x{}", n), 0, 0, n}};
  for (int32_t p : {n / 4, n / 2, (3 * n) / 4}) {
    if (p >= 1 && p < n) configs.push_back({fmt::format("P/D {}:{}", p, n - p), p, n - p, 0});
  }
  double mixed_rate = 0, best_pd = 0;
  for (const Config& c : configs) {
    ClusterOptions o = base_cluster(e, s);
    o.groups = {{"g", {}, c.p, c.d, c.m}};
    o.ttft_budget_s = 0.8 * s.ttft_slo_s;
    o.client_timeout_s = 3 * s.ttft_slo_s;
    auto [rate, sum] = rate_at_slo(o, g, hi);
    r.rows.push_back({c.label, fmt::format("{:.2f}", rate), fmt::format("{:.2f}", sum.goodput_rps),
                      ms(sum.ttft_p90_s), ms(sum.tpot_p90_s)});
    r.plot_labels.push_back(c.label);
    r.plot_values.push_back({rate});
    auto j = to_json(sum);
    j["label"] = c.label;
    j["rate_at_slo"] = rate;
    r.json["rows"].push_back(j);
    if (c.m > 0) {
      mixed_rate = rate;
    } else {
      best_pd = std::max(best_pd, rate);
    }
  }
  r.notes.push_back(fmt::format(
      "{}: {} instances, Poisson arrivals, prompts ~{} tokens, {} output tokens, SLOs TTFT {} ms "
      "and TPOT {} ms, 90% of requests within both",
      e.profile.name, n, s.input_mean, s.output_mean, ms(s.ttft_slo_s), ms(s.tpot_slo_s)));
  if (mixed_rate > 0) {
    r.notes.push_back(fmt::format("best P/D split vs aggregated: {:.2f}x (P/D-Serve: 6.7x)",
                                  best_pd / mixed_rate));
  }
  r.json["pd_vs_mixed"] = mixed_rate > 0 ? best_pd / mixed_rate : 0;
  return r;
}

// ---- 2: dynamic ratio per scenario group vs one pool with a fixed ratio ----

ExperimentResult dynamic_ratio(const ExperimentOptions& e) {
  const Setup s = setup_for(e);
  const int32_t n = std::max(4, e.instances - e.instances % 4);
  ExperimentResult r;
  r.name = "dynamic-ratio";
  r.title = "Scenario groups with a dynamic P/D ratio vs one pool with a fixed ratio";
  r.columns = {"configuration", "max req/s at SLO", "goodput req/s",
               "role changes",  "TTFT p90 ms",      "TPOT p90 ms"};
  r.plot_ylabel = "requests/s with 90% within both SLOs";
  r.plot_series = {"throughput at SLO"};
  common_json(r, e, s, 0);
  GeneratorOptions g;
  g.requests = std::min<int64_t>(e.requests, 10000);
  g.seed = e.seed;
  // Two scenarios with opposite needs: long prompts with short answers
  // (prefill-heavy) and short prompts with long answers (decode-heavy).
  g.scenarios = {{"summarize", 1, 2 * s.input_mean, s.output_mean / 4, 0.5, 0, 0},
                 {"chat", 1, s.input_mean / 4, 2 * s.output_mean, 0.5, 0, 0}};
  // The two take turns: each dominates half of a 120 s cycle.
  g.mix_tide_amplitude = 0.9;
  g.tide_period_s = 120;
  const double hi = 2.0 * n * s.prefill_rps;
  struct Config {
    std::string label;
    std::vector<GroupSpec> groups;
    bool dynamic;
  };
  const int32_t half = n / 2, q = n / 4;
  std::vector<Config> configs = {
      {fmt::format("one pool, fixed {}:{}", half, n - half),
       {{"all", {}, half, n - half, 0}},
       false},
      {fmt::format("2 groups, fixed {}:{} each", q, half - q),
       {{"summarize", {"summarize"}, q, half - q, 0}, {"chat", {"chat"}, q, half - q, 0}},
       false},
      {"2 groups, dynamic ratio",
       {{"summarize", {"summarize"}, q, half - q, 0}, {"chat", {"chat"}, q, half - q, 0}},
       true},
      {"one pool, dynamic ratio", {{"all", {}, half, n - half, 0}}, true},
  };
  double base_rate = 0, groups_dyn_rate = 0, pool_dyn_rate = 0;
  for (const Config& c : configs) {
    ClusterOptions o = base_cluster(e, s);
    o.groups = c.groups;
    o.ttft_budget_s = 0.8 * s.ttft_slo_s;
    o.client_timeout_s = 3 * s.ttft_slo_s;
    o.dynamic_ratio = c.dynamic;
    o.control_interval_s = 2;
    o.ratio.cooldown = std::chrono::milliseconds(4000);
    o.ratio.reverse_cooldown = std::chrono::milliseconds(20000);
    auto [rate, sum] = rate_at_slo(o, g, hi);
    r.rows.push_back({c.label, fmt::format("{:.2f}", rate), fmt::format("{:.2f}", sum.goodput_rps),
                      std::to_string(sum.role_changes), ms(sum.ttft_p90_s), ms(sum.tpot_p90_s)});
    r.plot_labels.push_back(c.label);
    r.plot_values.push_back({rate});
    auto j = to_json(sum);
    j["label"] = c.label;
    j["rate_at_slo"] = rate;
    r.json["rows"].push_back(j);
    if (&c == &configs.front()) base_rate = rate;
    if (c.dynamic) (c.groups.size() > 1 ? groups_dyn_rate : pool_dyn_rate) = rate;
  }
  r.notes.push_back(fmt::format(
      "{}: {} instances, scenarios summarize (~{} in / {} out) and chat (~{} in / {} out) "
      "taking turns (mixture tide 0.9, period 120 s)",
      e.profile.name, n, 2 * s.input_mean, s.output_mean / 4, s.input_mean / 4, 2 * s.output_mean));
  if (base_rate > 0) {
    r.notes.push_back(fmt::format(
        "throughput at SLO vs one pool with a fixed ratio: scenario groups with a dynamic "
        "ratio {:+.0f}% (P/D-Serve: +60%), one pool with a dynamic ratio {:+.0f}%",
        (groups_dyn_rate / base_rate - 1) * 100, (pool_dyn_rate / base_rate - 1) * 100));
  }
  return r;
}

}  // namespace

const std::vector<std::string>& experiment_names() {
  static const std::vector<std::string> names = {"forwarding", "kv-transfer", "disaggregation",
                                                 "dynamic-ratio"};
  return names;
}

Result<ExperimentResult> run_experiment(const std::string& name, const ExperimentOptions& e) {
  if (e.instances < 2) return invalid_argument("an experiment needs at least 2 instances");
  if (e.requests < 1) return invalid_argument("an experiment needs requests");
  if (!(e.load > 0) || e.rate < 0) return invalid_argument("load must be positive");
  if (name == "forwarding" || name == "1") return forwarding(e);
  if (name == "kv-transfer" || name == "3") return kv_transfer(e);
  if (name == "disaggregation" || name == "4") return disaggregation(e);
  if (name == "dynamic-ratio" || name == "2") return dynamic_ratio(e);
  std::string known;
  for (const auto& n : experiment_names()) known += (known.empty() ? "" : ", ") + n;
  return invalid_argument("unknown experiment '" + name + "' (known: " + known + ")");
}

std::string format_table(const ExperimentResult& r) {
  std::vector<size_t> width(r.columns.size(), 0);
  for (size_t c = 0; c < r.columns.size(); ++c) width[c] = r.columns[c].size();
  for (const auto& row : r.rows) {
    for (size_t c = 0; c < row.size() && c < width.size(); ++c) {
      width[c] = std::max(width[c], row[c].size());
    }
  }
  std::string out = r.title + "\n";
  auto line = [&](const std::vector<std::string>& cells) {
    for (size_t c = 0; c < cells.size() && c < width.size(); ++c) {
      out += c == 0 ? fmt::format("{:<{}}", cells[c], width[c])
                    : fmt::format("  {:>{}}", cells[c], width[c]);
    }
    out += "\n";
  };
  line(r.columns);
  for (const auto& row : r.rows) line(row);
  for (const auto& note : r.notes) out += note + "\n";
  return out;
}

Status plot(const ExperimentResult& r, const std::string& stem, const std::string& gnuplot) {
  const std::string dat = stem + ".dat", gp = stem + ".gp", png = stem + ".png";
  {
    std::ofstream out(dat);
    for (size_t i = 0; i < r.plot_labels.size(); ++i) {
      out << '"' << r.plot_labels[i] << '"';
      for (double v : r.plot_values[i]) out << ' ' << fmt::format("{:.6g}", v);
      out << '\n';
    }
    if (!out) return unavailable(dat + ": write failed");
  }
  {
    std::ofstream out(gp);
    out << "set terminal pngcairo size 900,500 font ',10'\n"
        << "set output '" << png << "'\n"
        << "set title '" << r.title << "'\n"
        << "set ylabel '" << r.plot_ylabel << "'\n"
        << "set style data histogram\nset style histogram clustered gap 1\n"
        << "set style fill solid 0.8 border -1\nset boxwidth 0.9\n"
        << "set yrange [0:*]\nset grid ytics\nset key top right\nset xtics rotate by -20\n";
    out << "plot ";
    for (size_t sidx = 0; sidx < r.plot_series.size(); ++sidx) {
      out << (sidx ? ", " : "") << "'" << dat << "' using " << sidx + 2
          << (sidx == 0 ? ":xtic(1)" : "") << " title '" << r.plot_series[sidx] << "'";
    }
    out << "\n";
    if (!out) return unavailable(gp + ": write failed");
  }
  const std::string cmd = "'" + gnuplot + "' '" + gp + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    const int code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
    if (code == 127) return unavailable("gnuplot not found (install gnuplot-nox)");
    return unavailable(fmt::format("gnuplot failed (exit {}) on {}", code, gp));
  }
  return Status();
}

}  // namespace baton::sim
