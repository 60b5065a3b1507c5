#pragma once

// What `baton bench` writes: the summary table on the terminal (vLLM's
// layout), the result JSON (vLLM's keys, plus the run's settings and a
// per-second timeline for plots), per-request records as JSONL, and the
// side-by-side table of `baton bench compare`.
//
// Pure formatting over values, plus the file writers.

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "bench/serving/metrics.h"

namespace baton::bench {

// The run's settings, recorded next to its metrics.
struct RunInfo {
  std::string label;  // a name for the run (compare uses it as column title)
  std::string backend;
  std::string base_url;
  std::string endpoint;
  std::string model;
  std::string started_at;
  int64_t num_prompts = 0;
  double request_rate = 0;  // infinity for "all at once"
  std::string rate_note;    // when not empty, replaces request_rate ("trace", "phases ...")
  double burstiness = 1;
  int max_concurrency = 0;  // 0: none
  std::string workload;     // a one-line description
  uint64_t seed = 0;
};

// The summary table as vLLM prints it.
std::string format_summary(const RunInfo& info, const BenchmarkMetrics& m);

// The result JSON: info fields, every metric (e.g. "mean_ttft_ms",
// "p99_itl_ms", "request_goodput" (null without --goodput)), the per-request
// arrays "input_lens", "output_lens", "ttfts", "tpots", "e2els", "start_times"
// (seconds), "itls" (one list per request) and "errors", and "timeline".
nlohmann::json result_json(const RunInfo& info, const BenchmarkMetrics& m,
                           const std::vector<RequestRecord>& records);

// The metrics alone, under the keys result_json() uses ("completed",
// "mean_ttft_ms", ...); also used for the per-scenario breakdown.
nlohmann::json metrics_json(const BenchmarkMetrics& m);

// Per-phase metrics (shape phases) as a JSON array, in phase order: each
// entry has "name", "start_s", "duration_s" and the keys of metrics_json()
// except the timeline (the run's timeline covers every phase).
nlohmann::json phases_json(const std::vector<PhaseMetrics>& phases);

// One line per phase for the terminal: requests, goodput, throughput and
// TTFT/TPOT mean and the highest of `percentiles` (a table in Markdown
// syntax, so it pastes into docs).
std::string format_phases(const std::vector<PhaseMetrics>& phases,
                          const std::vector<double>& percentiles);

// One JSON object per request: every RequestRecord field ("phase" only when
// set).
nlohmann::json record_json(const RequestRecord& r);

Status write_json(const std::string& path, const nlohmann::json& j);
Status write_records(const std::string& path, const std::vector<RequestRecord>& records);
Result<nlohmann::json> read_json(const std::string& path);

// The key of a percentile column, vLLM's spelling: 99 -> "p99", 99.9 -> "p99.9".
std::string percentile_key(double p);

// A table of the main metrics of several results (columns in order) with a
// ratio column for each result after the first (its value / the first's).
// Results with "phases" (phases_json()) add a goodput row per phase (request
// throughput when no SLO was given), matched by phase name.
std::string format_comparison(const std::vector<nlohmann::json>& results);

}  // namespace baton::bench
