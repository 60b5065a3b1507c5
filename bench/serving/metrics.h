#pragma once

// Serving metrics with the names and definitions of `vllm bench serve`, so
// that numbers from Baton and from vLLM mean the same thing.
//
// Per successful request (times in seconds from the moment it was sent):
//   TTFT  the first chunk with a choice (its text may be empty: servers send
//         one chunk per token, and a token may not complete a character);
//   ITL   the gaps between consecutive chunks with a choice (a chunk of
//         several tokens is one gap, as in vLLM);
//   E2EL  the last chunk with a choice (the request's latency);
//   TPOT  (E2EL - TTFT) / (output_tokens - 1), only when output_tokens > 1.
// Over the run:
//   request throughput = successful / duration; goodput = successful requests
//   meeting every SLO given (a TPOT of requests with one token counts as 0) /
//   duration; output throughput = output tokens / duration; total token
//   throughput = (input + output tokens) / duration; peak output token
//   throughput = the most chunks with a choice in one 1-second bucket counted from the
//   first successful request's start; peak concurrent requests = the most
//   successful requests active in one such bucket.
// Statistics are numpy's: mean, median, population std, and percentiles by
// linear interpolation. An empty list counts as [0], as in vLLM.
//
// Pure functions over RequestRecords: tests feed synthetic timestamps.

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace baton::bench {

// What the client saw of one request.
struct RequestRecord {
  int64_t id = 0;
  std::string scenario;
  std::string phase;  // shape phases: the phase it arrived in
  bool success = false;
  std::string error;       // why it failed; "" on success
  int http_status = 0;     // 0 when no response came
  double scheduled_s = 0;  // its arrival time in the schedule, from the run start
  double start_s = 0;      // when it was sent, from the run start
  double ttft_s = 0;
  std::vector<double> itl_s;
  double latency_s = 0;   // E2EL
  int input_len = 0;      // requested prompt tokens
  int output_len = 0;     // requested max_tokens
  int prompt_tokens = 0;  // the server's usage.prompt_tokens, else input_len
  int output_tokens = 0;  // usage.completion_tokens, else chunks
  int64_t chunks = 0;     // chunks with a choice received
  int64_t generated_chars = 0;
  std::string generated_text;  // what was generated (kept in memory, not written)
};

// Service-level objectives for goodput, in milliseconds; unset ones are not
// checked.
struct GoodputSlo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2el_ms;
  bool any() const { return ttft_ms || tpot_ms || e2el_ms; }
};

// Parses "ttft:MS tpot:MS e2el:MS" items (each given separately).
Result<GoodputSlo> parse_goodput(const std::vector<std::string>& items);

// numpy.percentile(values, p) with linear interpolation; 0 for an empty list.
double percentile(std::vector<double> values, double p);

struct Distribution {
  double mean = 0;
  double median = 0;
  double std = 0;
  std::vector<std::pair<double, double>> percentiles;  // (p, value)
};

// Mean, median, population std and `ps` percentiles of `values` scaled by
// `scale`; an empty list counts as [0].
Distribution describe(const std::vector<double>& values, const std::vector<double>& ps,
                      double scale);

// One second of a run, counted from the run's start.
struct TimelineBucket {
  double start_s = 0;
  int64_t output_tokens = 0;  // chunks with a choice received in this second
  int64_t started = 0;        // requests sent
  int64_t finished = 0;       // requests that ended (success or not)
  int64_t active = 0;         // successful requests active during it
  double mean_ttft_ms = 0;    // of successful requests sent in this second
};

struct BenchmarkMetrics {
  int64_t completed = 0;
  int64_t failed = 0;
  double duration_s = 0;
  int64_t total_input = 0;
  int64_t total_output = 0;
  double request_throughput = 0;
  std::optional<double> request_goodput;  // set when an SLO was given
  double output_throughput = 0;
  double total_token_throughput = 0;
  double max_output_tokens_per_s = 0;
  int64_t max_concurrent_requests = 0;
  Distribution ttft_ms, tpot_ms, itl_ms, e2el_ms;
  std::vector<TimelineBucket> timeline;
};

// Metrics of a run that lasted `duration_s` (> 0).
BenchmarkMetrics compute_metrics(const std::vector<RequestRecord>& records, double duration_s,
                                 const GoodputSlo& slo, const std::vector<double>& percentiles);

// A phase of a run whose request shape changes over time (workload.h's
// ShapePhase), as the metrics see it.
struct PhaseWindow {
  std::string name;
  double start_s = 0;     // from the run's start
  double duration_s = 0;  // > 0
};

struct PhaseMetrics {
  PhaseWindow window;
  BenchmarkMetrics metrics;
};

// The metrics of each phase over the requests that arrived in it (records
// whose `phase` is its name), with the phase's duration as the denominator of
// every throughput: a phase's goodput is its requests that met every SLO,
// whenever they ended, per second of the phase. One entry per window, in
// order; a phase without requests has zero counts.
std::vector<PhaseMetrics> compute_phase_metrics(const std::vector<RequestRecord>& records,
                                                const std::vector<PhaseWindow>& windows,
                                                const GoodputSlo& slo,
                                                const std::vector<double>& percentiles);

// The TPOT of one request in seconds (0 when it has fewer than 2 tokens).
double request_tpot_s(const RequestRecord& r);

}  // namespace baton::bench
