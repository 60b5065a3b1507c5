#pragma once

// PNG figures from `baton bench` result JSON files, drawn by gnuplot (the
// Debian package gnuplot-nox; scripts/install-deps.sh installs it).
//
// For each call, into `out_dir`:
//   latency_cdf.png       CDFs of TTFT, TPOT, ITL and E2EL, one line per result;
//   vs_rate.png           output token throughput and mean/P99 TTFT against the
//                         request rate, one line per label (when at least two
//                         results); an infinite rate is placed at the measured
//                         request throughput;
//   timeline_<name>.png   per result: output tokens/s, active requests and the
//                         mean TTFT of the requests sent in each second.
// A result is named by its label, plus its rate (and concurrency) when other
// results share the label: "baton-tiny rate 2" -> timeline_baton-tiny_rate_2.png.
// The data files (*.dat) and the script (plots.gp) stay beside the PNGs so a
// figure can be restyled by hand.

#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace baton::bench {

struct PlotOptions {
  std::string out_dir = ".";
  std::string gnuplot = "gnuplot";  // the program to run
};

// Writes data and script, runs gnuplot; returns the PNG paths. kUnavailable
// when gnuplot is missing or fails, kInvalidArgument for results without the
// fields above.
Result<std::vector<std::string>> plot_results(const std::vector<nlohmann::json>& results,
                                              const PlotOptions& options);

// What plot_results() writes, computed without I/O: the data files (path,
// content), the script and the PNG paths it makes.
struct PlotFiles {
  std::vector<std::pair<std::string, std::string>> data;
  std::string script;
  std::vector<std::string> png;
};
Result<PlotFiles> make_plot_files(const std::vector<nlohmann::json>& results,
                                  const std::string& out_dir);

}  // namespace baton::bench
