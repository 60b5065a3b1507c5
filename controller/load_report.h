#pragma once

// Load reports: what the controller knows about one instance's recent load,
// built from two scrapes of the instance's GET /metrics (Prometheus text).
//
//   Result<MetricsScrape> s = parse_metrics(body);          // pure
//   LoadReport r = make_load_report(previous, *s, now);      // pure
//
// Gauges (running, waiting, KV usage) are read as they are now; latencies and
// rejections cover the window between the previous scrape and this one, taken
// from the difference of the cumulative histograms and counters, so a report
// says how the instance did recently rather than since it started. An
// instance that restarted (a counter went down) counts from zero again.
//
// Everything here is a pure function of its arguments; thread-safe.

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.h"
#include "common/status.h"

namespace baton::controller {

// One sample of the text exposition format: name{labels} value.
struct MetricSample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;
  double value = 0;

  // The value of label `name`, or nullopt.
  std::optional<std::string_view> label(std::string_view name) const;
};

// Parses Prometheus text format 0.0.4 (comments and blank lines skipped,
// escaped label values decoded, an optional timestamp ignored). Errors:
// kInvalidArgument naming the line.
Result<std::vector<MetricSample>> parse_prometheus_text(std::string_view text);

// A cumulative histogram as exposed: finite upper bounds and the count of
// observations <= each bound, then the total (the +Inf bucket).
struct HistogramCounts {
  std::vector<double> bounds;      // strictly increasing, finite
  std::vector<double> cumulative;  // bounds.size() + 1 entries
  bool empty() const { return cumulative.empty() || cumulative.back() <= 0; }
};

// Observations of one latency over a window: per-bucket (not cumulative)
// counts over the same bounds as the histogram they came from.
struct LatencyWindow {
  std::vector<double> bounds;  // finite upper bounds, seconds
  std::vector<double> counts;  // bounds.size() + 1 entries, last is (bounds.back(), +Inf)

  double total() const;
  // The q-quantile (0 < q < 1) by linear interpolation inside its bucket, as
  // Prometheus' histogram_quantile does; a quantile in the +Inf bucket is the
  // last finite bound. nullopt when the window holds no observation.
  std::optional<double> quantile(double q) const;
  // The fraction of observations above x (interpolated inside a bucket);
  // nullopt when empty.
  std::optional<double> fraction_above(double x) const;
  // Adds another window over the same bounds; false (and no change) when the
  // bounds differ.
  bool merge(const LatencyWindow& other);
};

// cur - prev, bucket by bucket; when any bucket went down (the instance
// restarted) the window is cur itself. Mismatched bounds also give cur.
LatencyWindow window_between(const HistogramCounts* prev, const HistogramCounts& cur);

// The metrics of one instance the controller reads, from one scrape.
struct MetricsScrape {
  double running = 0;    // baton:num_requests_running
  double waiting = 0;    // baton:num_requests_waiting
  double kv_usage = 0;   // baton:kv_cache_usage_perc, 0..1
  HistogramCounts ttft;  // baton:time_to_first_token_seconds (where the client's
                         // first token is sent: mixed and decode instances)
  HistogramCounts tpot;  // baton:time_per_output_token_seconds (per request, at its end)
  // baton:prefill_time_to_first_token_seconds: a prefill instance's queue and
  // prefill until it has sampled the first token.
  HistogramCounts prefill_ttft;
  // baton:inter_token_latency_seconds: time per token as tokens are produced.
  HistogramCounts itl;
  double rejected_total = 0;  // sum of baton:request_rejected_total over reasons
  double finished_total = 0;  // sum of baton:request_success_total over reasons
  // The role the instance says it has (baton:instance_role{role="..."} == 1),
  // when it exposes one.
  std::optional<std::string> role;
};

// Extracts a MetricsScrape from the text of GET /metrics. Metrics that are
// absent stay zero/empty (an instance still loading exposes few). Errors:
// malformed text.
Result<MetricsScrape> parse_metrics(std::string_view text);

// The controller's view of one instance's load at one moment.
struct LoadReport {
  Clock::TimePoint at{};  // when the scrape was taken (controller's clock)
  double running = 0;
  double waiting = 0;
  double kv_usage = 0;
  LatencyWindow ttft;               // since the previous report
  LatencyWindow tpot;               // since the previous report
  LatencyWindow prefill_ttft;       // since the previous report
  LatencyWindow itl;                // since the previous report
  double rejected = 0;              // rejections since the previous report
  double finished = 0;              // requests finished since the previous report
  std::optional<std::string> role;  // as the instance reports it

  std::optional<double> ttft_quantile(double q) const { return ttft.quantile(q); }
  std::optional<double> tpot_quantile(double q) const { return tpot.quantile(q); }
};

// A report from the current scrape and the previous one (nullptr for the
// first scrape of an instance: the window is then everything so far).
LoadReport make_load_report(const MetricsScrape* previous, const MetricsScrape& current,
                            Clock::TimePoint at);

// Several consecutive reports of one instance (oldest first) as one: gauges,
// time and role of the last, rejections and finished requests summed over all
// of them. Each latency window is merged from the newest report back until it
// holds at least `enough` observations (all of them by default), so that a
// busy instance is judged on what it does now and one with a few requests a
// second over a longer span, with enough observations to judge. An empty
// list gives an empty report.
LoadReport merge_reports(const std::vector<LoadReport>& reports, double enough = HUGE_VAL);

}  // namespace baton::controller
