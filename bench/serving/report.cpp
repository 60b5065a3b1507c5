#include "bench/serving/report.h"

#include <fmt/format.h>

#include <cmath>
#include <fstream>

namespace baton::bench {

namespace {

void metric_rows(std::string& out, const char* title, const char* name, const Distribution& d) {
  out += fmt::format("{:-^50}\n", title);
  out += fmt::format("{:<40} {:<10.2f}\n", fmt::format("Mean {} (ms):", name), d.mean);
  out += fmt::format("{:<40} {:<10.2f}\n", fmt::format("Median {} (ms):", name), d.median);
  out += fmt::format("{:<40} {:<10.2f}\n", fmt::format("Std {} (ms):", name), d.std);
  for (const auto& [p, v] : d.percentiles) {
    out += fmt::format("{:<40} {:<10.2f}\n",
                       fmt::format("P{} {} (ms):", percentile_key(p).substr(1), name), v);
  }
}

void put_distribution(nlohmann::json& j, const char* name, const Distribution& d) {
  j[fmt::format("mean_{}_ms", name)] = d.mean;
  j[fmt::format("median_{}_ms", name)] = d.median;
  j[fmt::format("std_{}_ms", name)] = d.std;
  for (const auto& [p, v] : d.percentiles) j[fmt::format("{}_{}_ms", percentile_key(p), name)] = v;
}

nlohmann::json rate_json(double rate) {
  if (std::isinf(rate)) return "inf";
  return rate;
}

}  // namespace

std::string percentile_key(double p) {
  if (p == std::floor(p)) return fmt::format("p{}", static_cast<int64_t>(p));
  return fmt::format("p{}", p);
}

std::string format_summary(const RunInfo& info, const BenchmarkMetrics& m) {
  std::string out;
  out += fmt::format("{:=^50}\n", " Serving Benchmark Result ");
  out += fmt::format("{:<40} {:<10}\n", "Successful requests:", m.completed);
  out += fmt::format("{:<40} {:<10}\n", "Failed requests:", m.failed);
  if (info.max_concurrency > 0) {
    out += fmt::format("{:<40} {:<10}\n", "Maximum request concurrency:", info.max_concurrency);
  }
  out += fmt::format("{:<40} {:<10}\n", "Request rate configured (RPS):",
                     !info.rate_note.empty()         ? info.rate_note
                     : std::isinf(info.request_rate) ? std::string("inf")
                                                     : fmt::format("{:.2f}", info.request_rate));
  out += fmt::format("{:<40} {:<10.2f}\n", "Benchmark duration (s):", m.duration_s);
  out += fmt::format("{:<40} {:<10}\n", "Total input tokens:", m.total_input);
  out += fmt::format("{:<40} {:<10}\n", "Total generated tokens:", m.total_output);
  out += fmt::format("{:<40} {:<10.2f}\n", "Request throughput (req/s):", m.request_throughput);
  if (m.request_goodput) {
    out += fmt::format("{:<40} {:<10.2f}\n", "Request goodput (req/s):", *m.request_goodput);
  }
  out += fmt::format("{:<40} {:<10.2f}\n", "Output token throughput (tok/s):", m.output_throughput);
  out += fmt::format("{:<40} {:<10.2f}\n",
                     "Peak output token throughput (tok/s):", m.max_output_tokens_per_s);
  out += fmt::format("{:<40} {:<10}\n", "Peak concurrent requests:", m.max_concurrent_requests);
  out += fmt::format("{:<40} {:<10.2f}\n",
                     "Total Token throughput (tok/s):", m.total_token_throughput);
  metric_rows(out, "Time to First Token", "TTFT", m.ttft_ms);
  metric_rows(out, "Time per Output Token (excl. 1st token)", "TPOT", m.tpot_ms);
  metric_rows(out, "Inter-token Latency", "ITL", m.itl_ms);
  metric_rows(out, "End-to-end Latency", "E2EL", m.e2el_ms);
  out += std::string(50, '=') + "\n";
  return out;
}

nlohmann::json record_json(const RequestRecord& r) {
  nlohmann::json j = {{"id", r.id},
                      {"scenario", r.scenario},
                      {"success", r.success},
                      {"error", r.error},
                      {"http_status", r.http_status},
                      {"scheduled_s", r.scheduled_s},
                      {"start_s", r.start_s},
                      {"ttft_s", r.ttft_s},
                      {"tpot_s", request_tpot_s(r)},
                      {"e2el_s", r.latency_s},
                      {"itl_s", r.itl_s},
                      {"input_len", r.input_len},
                      {"output_len", r.output_len},
                      {"prompt_tokens", r.prompt_tokens},
                      {"output_tokens", r.output_tokens},
                      {"chunks", r.chunks},
                      {"generated_chars", r.generated_chars}};
  if (!r.phase.empty()) j["phase"] = r.phase;
  return j;
}

nlohmann::json phases_json(const std::vector<PhaseMetrics>& phases) {
  nlohmann::json out = nlohmann::json::array();
  for (const PhaseMetrics& p : phases) {
    nlohmann::json j = {{"name", p.window.name},
                        {"start_s", p.window.start_s},
                        {"duration_s", p.window.duration_s}};
    j.update(metrics_json(p.metrics));
    out.push_back(std::move(j));
  }
  return out;
}

std::string format_phases(const std::vector<PhaseMetrics>& phases,
                          const std::vector<double>& percentiles) {
  std::string pk = percentiles.empty() ? std::string("median")
                                       : "P" + percentile_key(percentiles.back()).substr(1);
  auto high = [&](const Distribution& d) {
    return d.percentiles.empty() ? d.median : d.percentiles.back().second;
  };
  std::string out = fmt::format(
      "| phase | from s | to s | ok | failed | goodput req/s | req/s | output tok/s | mean TTFT ms "
      "| "
      "{0} TTFT ms | mean TPOT ms | {0} TPOT ms |\n",
      pk);
  out += "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n";
  for (const PhaseMetrics& p : phases) {
    const BenchmarkMetrics& m = p.metrics;
    out += fmt::format(
        "| {} | {:.0f} | {:.0f} | {} | {} | {} | {:.2f} | {:.1f} | {:.1f} | {:.1f} | {:.1f} | "
        "{:.1f} |\n",
        p.window.name, p.window.start_s, p.window.start_s + p.window.duration_s, m.completed,
        m.failed, m.request_goodput ? fmt::format("{:.2f}", *m.request_goodput) : "-",
        m.request_throughput, m.output_throughput, m.ttft_ms.mean, high(m.ttft_ms), m.tpot_ms.mean,
        high(m.tpot_ms));
  }
  return out;
}

nlohmann::json metrics_json(const BenchmarkMetrics& m) {
  nlohmann::json j;
  j["duration"] = m.duration_s;
  j["completed"] = m.completed;
  j["failed"] = m.failed;
  j["total_input_tokens"] = m.total_input;
  j["total_output_tokens"] = m.total_output;
  j["request_throughput"] = m.request_throughput;
  j["request_goodput"] = m.request_goodput ? nlohmann::json(*m.request_goodput) : nullptr;
  j["output_throughput"] = m.output_throughput;
  j["total_token_throughput"] = m.total_token_throughput;
  j["max_output_tokens_per_s"] = m.max_output_tokens_per_s;
  j["max_concurrent_requests"] = m.max_concurrent_requests;
  put_distribution(j, "ttft", m.ttft_ms);
  put_distribution(j, "tpot", m.tpot_ms);
  put_distribution(j, "itl", m.itl_ms);
  put_distribution(j, "e2el", m.e2el_ms);
  return j;
}

nlohmann::json result_json(const RunInfo& info, const BenchmarkMetrics& m,
                           const std::vector<RequestRecord>& records) {
  nlohmann::json j;
  j["label"] = info.label;
  j["date"] = info.started_at;
  j["backend"] = info.backend;
  j["base_url"] = info.base_url;
  j["endpoint"] = info.endpoint;
  j["model_id"] = info.model;
  j["num_prompts"] = info.num_prompts;
  j["request_rate"] =
      info.rate_note.empty() ? rate_json(info.request_rate) : nlohmann::json(info.rate_note);
  j["burstiness"] = info.burstiness;
  j["max_concurrency"] = info.max_concurrency > 0 ? nlohmann::json(info.max_concurrency) : nullptr;
  j["workload"] = info.workload;
  j["seed"] = info.seed;
  j.update(metrics_json(m));
  nlohmann::json in = nlohmann::json::array(), out = nlohmann::json::array(),
                 ttfts = nlohmann::json::array(), tpots = nlohmann::json::array(),
                 e2els = nlohmann::json::array(), starts = nlohmann::json::array(),
                 itls = nlohmann::json::array(), errors = nlohmann::json::array(),
                 ok = nlohmann::json::array();
  for (const RequestRecord& r : records) {
    in.push_back(r.prompt_tokens);
    out.push_back(r.success ? r.output_tokens : 0);
    ttfts.push_back(r.ttft_s);
    tpots.push_back(request_tpot_s(r));
    e2els.push_back(r.latency_s);
    starts.push_back(r.start_s);
    itls.push_back(r.itl_s);
    errors.push_back(r.error);
    ok.push_back(r.success);
  }
  j["input_lens"] = std::move(in);
  j["output_lens"] = std::move(out);
  j["ttfts"] = std::move(ttfts);
  j["tpots"] = std::move(tpots);
  j["e2els"] = std::move(e2els);
  j["start_times"] = std::move(starts);
  j["itls"] = std::move(itls);
  j["errors"] = std::move(errors);
  j["successes"] = std::move(ok);
  nlohmann::json timeline = nlohmann::json::array();
  for (const TimelineBucket& b : m.timeline) {
    timeline.push_back({{"t_s", b.start_s},
                        {"output_tokens", b.output_tokens},
                        {"started", b.started},
                        {"finished", b.finished},
                        {"active", b.active},
                        {"mean_ttft_ms", b.mean_ttft_ms}});
  }
  j["timeline"] = std::move(timeline);
  return j;
}

Status write_json(const std::string& path, const nlohmann::json& j) {
  std::ofstream out(path);
  if (!out) return unavailable(path + ": cannot create");
  out << j.dump(2) << "\n";
  if (!out) return unavailable(path + ": write failed");
  return Status::ok();
}

Status write_records(const std::string& path, const std::vector<RequestRecord>& records) {
  std::ofstream out(path);
  if (!out) return unavailable(path + ": cannot create");
  for (const RequestRecord& r : records) out << record_json(r).dump() << "\n";
  if (!out) return unavailable(path + ": write failed");
  return Status::ok();
}

Result<nlohmann::json> read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) return not_found(path + ": cannot open");
  nlohmann::json j = nlohmann::json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return invalid_argument(path + ": not a JSON object");
  return j;
}

std::string format_comparison(const std::vector<nlohmann::json>& results) {
  struct Row {
    const char* title;
    std::string key;
  };
  std::vector<Row> rows = {{"Successful requests", "completed"},
                           {"Failed requests", "failed"},
                           {"Duration (s)", "duration"},
                           {"Request throughput (req/s)", "request_throughput"},
                           {"Request goodput (req/s)", "request_goodput"},
                           {"Output token throughput (tok/s)", "output_throughput"},
                           {"Total token throughput (tok/s)", "total_token_throughput"},
                           {"Peak output token throughput (tok/s)", "max_output_tokens_per_s"},
                           {"Peak concurrent requests", "max_concurrent_requests"}};
  for (const char* name : {"ttft", "tpot", "itl", "e2el"}) {
    std::string upper = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(c));
    for (const char* stat : {"mean", "median", "p90", "p99"}) {
      std::string key = fmt::format("{}_{}_ms", stat, name);
      if (!results.empty() && !results[0].contains(key)) continue;
      rows.push_back({nullptr, key});
      rows.back().title = nullptr;
    }
  }
  auto title_of_metric = [](const Row& r) -> std::string {
    if (r.title) return r.title;
    size_t us = r.key.find('_');
    std::string stat = r.key.substr(0, us);
    std::string name = r.key.substr(us + 1, r.key.size() - us - 4);
    for (char& c : name) c = static_cast<char>(std::toupper(c));
    stat[0] = static_cast<char>(std::toupper(stat[0]));
    return fmt::format("{} {} (ms)", stat, name);
  };
  // Phase rows: "phase:<name>:<key>" looks the key up in that phase.
  if (!results.empty() && results[0].contains("phases") && results[0]["phases"].is_array()) {
    for (const nlohmann::json& p : results[0]["phases"]) {
      if (!p.is_object() || !p.contains("name") || !p["name"].is_string()) continue;
      bool goodput = p.contains("request_goodput") && p["request_goodput"].is_number();
      rows.push_back({nullptr, "phase:" + p["name"].get<std::string>() + ":" +
                                   (goodput ? "request_goodput" : "request_throughput")});
    }
  }
  auto title_of = [&title_of_metric](const Row& r) -> std::string {
    if (r.key.rfind("phase:", 0) != 0) return title_of_metric(r);
    size_t colon = r.key.rfind(':');
    std::string name = r.key.substr(6, colon - 6);
    bool goodput = r.key.substr(colon + 1) == "request_goodput";
    return fmt::format("{} {} (req/s)", goodput ? "Goodput" : "Throughput", name);
  };
  auto number = [](const nlohmann::json& j, const std::string& key, double& v) {
    if (key.rfind("phase:", 0) == 0) {
      size_t colon = key.rfind(':');
      std::string name = key.substr(6, colon - 6);
      std::string field = key.substr(colon + 1);
      if (!j.contains("phases") || !j["phases"].is_array()) return false;
      for (const nlohmann::json& p : j["phases"]) {
        if (p.is_object() && p.value("name", std::string()) == name && p.contains(field) &&
            p[field].is_number()) {
          v = p[field].get<double>();
          return true;
        }
      }
      return false;
    }
    if (!j.contains(key) || !j[key].is_number()) return false;
    v = j[key].get<double>();
    return true;
  };
  std::string out = fmt::format("{:<38}", "Metric");
  for (size_t i = 0; i < results.size(); ++i) {
    out += fmt::format(" {:>14}",
                       results[i].value("label", fmt::format("run {}", i + 1)).substr(0, 14));
    if (i > 0) out += fmt::format(" {:>8}", "ratio");
  }
  out +=
      "\n" +
      std::string(38 + results.size() * 15 + (results.empty() ? 0 : results.size() - 1) * 9, '-') +
      "\n";
  for (const Row& row : rows) {
    out += fmt::format("{:<38}", title_of(row));
    double base = 0;
    bool has_base = !results.empty() && number(results[0], row.key, base);
    for (size_t i = 0; i < results.size(); ++i) {
      double v = 0;
      bool has = number(results[i], row.key, v);
      bool count =
          row.key == "completed" || row.key == "failed" || row.key == "max_concurrent_requests";
      out += !has    ? fmt::format(" {:>14}", "-")
             : count ? fmt::format(" {:>14}", static_cast<int64_t>(v))
                     : fmt::format(" {:>14.2f}", v);
      if (i > 0) {
        out += has && has_base && base != 0 ? fmt::format(" {:>7.2f}x", v / base)
                                            : fmt::format(" {:>8}", "-");
      }
    }
    out += "\n";
  }
  return out;
}

}  // namespace baton::bench
