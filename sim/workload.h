#pragma once

// Requests for `baton sim`: generators (Poisson, bursty, tidal, scenario
// mixtures, shared prefixes) and replay of `baton bench` trace files.
//
// A RequestSource hands out requests one at a time in arrival order, so a
// run of millions of requests never holds them all. Generators are
// deterministic in their options and seed.

#include <cstdint>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::sim {

struct SimRequest {
  int64_t id = 0;
  double arrival_s = 0;
  int32_t input_len = 0;   // prompt tokens, shared prefix included
  int32_t output_len = 1;  // tokens generated, the first one included
  int32_t prefix_group = -1;
  int32_t prefix_len = 0;
  int32_t scenario = 0;  // index into the source's scenario names
};

class RequestSource {
 public:
  virtual ~RequestSource() = default;
  // The next request, nullopt when there are no more. Arrival times never
  // decrease.
  virtual std::optional<SimRequest> next() = 0;
  // Names of the scenarios, indexed by SimRequest::scenario ("" untagged).
  virtual const std::vector<std::string>& scenarios() const = 0;
};

struct ScenarioMix {
  std::string name;
  double weight = 1;
  int32_t input_mean = 512;
  int32_t output_mean = 128;
  double range_ratio = 0;  // lengths uniform in mean * [1 - r, 1 + r]
  int32_t prefix_groups = 0;
  int32_t prefix_len = 0;  // tokens shared by the requests of one prefix group
};

struct GeneratorOptions {
  int64_t requests = 1000;
  uint64_t seed = 0;
  double rate = 10;           // mean requests per second
  double burstiness = 1;      // gamma shape of the gaps: 1 Poisson, < 1 bursty
  double tide_amplitude = 0;  // tidal: rate * (1 + a sin(2 pi t / period)), 0 <= a < 1
  double tide_period_s = 60;
  // Tidal mixture: scenario i's weight is scaled by
  // 1 + a sin(2 pi t / period + 2 pi i / n), so the scenarios take turns
  // dominating (two scenarios: in opposite phase). 0 <= a < 1.
  double mix_tide_amplitude = 0;
  std::vector<ScenarioMix> scenarios{ScenarioMix{}};
};

Status validate(const GeneratorOptions& options);

// A generator. Precondition: validate(options) is ok.
std::unique_ptr<RequestSource> make_generator(const GeneratorOptions& options);

// A fixed list of requests (tests, replayed traces), sorted by arrival.
std::unique_ptr<RequestSource> make_list_source(std::vector<SimRequest> requests,
                                                std::vector<std::string> scenarios = {""});

// Reads a `baton bench` trace: one JSON object per line with "arrival_s",
// "input_len", "output_len" and optional "prefix_group", "prefix_len",
// "scenario" (the format of bench/serving/workload.h, read here again since
// sim/ does not depend on bench/). Ids are line numbers. Errors:
// kInvalidArgument naming the line, kNotFound for a missing file.
Result<std::unique_ptr<RequestSource>> read_trace(const std::string& path);

}  // namespace baton::sim
