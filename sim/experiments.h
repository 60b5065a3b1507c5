#pragma once

// The experiments of `baton sim --experiment NAME` (issue 10), each a fixed
// comparison run through simulate() with the same requests per row:
//
//   forwarding      on-demand forwarding vs routing by load reports stale by
//                   an interval: TTFT SLO attainment and timeouts, bursty load
//   kv-transfer     contiguous vs block-wise KV transfer: transfer time and
//                   its share of the time to the first decoded token
//   disaggregation  P/D vs aggregated at the same instance count: the highest
//                   request rate (and goodput) that keeps 90% within the SLOs
//   dynamic-ratio   scenario groups whose P/D ratio the controller adjusts vs
//                   one pool with a fixed ratio, tidal scenario mix
//
// Deterministic in the options. No I/O here except plot(), which writes a
// data file and a gnuplot script and runs gnuplot.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "sim/cluster.h"
#include "sim/profile.h"

namespace baton::sim {

struct ExperimentOptions {
  Profile profile;
  int32_t instances = 16;  // devices per configuration
  int64_t requests = 20000;
  double load = 0.9;      // offered load as a share of the prefill capacity (rate == 0)
  double rate = 0;        // requests/s; overrides load when > 0
  double ttft_slo_s = 0;  // 0: derived from the profile
  double tpot_slo_s = 0;  // 0: derived from the profile
  uint64_t seed = 0;
};

struct ExperimentResult {
  std::string name;
  std::string title;
  std::vector<std::string> columns;
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> notes;  // the setup and the headline, one line each
  nlohmann::json json;             // everything, for files and scripts
  // What plot() draws: one bar per row label, per series.
  std::string plot_ylabel;
  std::vector<std::string> plot_labels;
  std::vector<std::string> plot_series;
  std::vector<std::vector<double>> plot_values;  // [label][series]
};

// The names above, in that order.
const std::vector<std::string>& experiment_names();

// Errors: kInvalidArgument for an unknown name or bad options.
Result<ExperimentResult> run_experiment(const std::string& name, const ExperimentOptions& options);

// The result as an aligned text table with its notes.
std::string format_table(const ExperimentResult& result);

// Writes <stem>.dat and <stem>.gp and runs `gnuplot` to draw <stem>.png.
// kUnavailable when gnuplot is missing or fails.
Status plot(const ExperimentResult& result, const std::string& stem,
            const std::string& gnuplot = "gnuplot");

}  // namespace baton::sim
