#pragma once

// Workloads of `baton bench`: what each request asks for and when it arrives.
//
// A workload is a list of RequestSpec values, built once before a run from a
// seed (so the same flags give the same requests), or read from a trace file.
// Everything here is pure and deterministic: no clocks and no I/O except
// read_trace()/write_trace().
//
// Lengths are in tokens. Prompts are synthesised from a fixed list of common
// short English words, each usually one token for a BPE tokenizer; the server's
// `usage.prompt_tokens` gives the exact count when it reports one.

#include <cstdint>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::bench {

// One request of a workload.
struct RequestSpec {
  int64_t id = 0;
  double arrival_s = 0;       // offset from the start of the run (open loop)
  int input_len = 0;          // prompt tokens asked for, shared prefix included
  int output_len = 0;         // max_tokens
  int prefix_group = -1;      // which shared system prompt; -1: none
  int prefix_len = 0;         // tokens of the shared prefix (part of input_len)
  std::string scenario;       // sent as the x-baton-scenario header when not empty
  int64_t conversation = -1;  // multi-turn: the conversation; -1: single turn
  int turn = 0;               // multi-turn: 0 for the first turn
  std::string phase;          // shape phases: the phase it arrived in; "" otherwise
};

// How lengths are drawn around their mean.
enum class LengthDistribution {
  kUniform,    // uniform in [mean*(1-range_ratio), mean*(1+range_ratio)]; 0 is fixed
  kLognormal,  // lognormal with this mean and `sigma` (of the log)
};

// Parses "uniform" or "lognormal".
Result<LengthDistribution> parse_length_distribution(const std::string& name);

struct LengthSpec {
  int mean = 128;
  LengthDistribution distribution = LengthDistribution::kUniform;
  double range_ratio = 0;  // kUniform
  double sigma = 0.5;      // kLognormal
};

// Draws one length (at least 1).
int draw_length(const LengthSpec& spec, std::mt19937_64& rng);

// One kind of request in a mixture. Weight is relative.
struct Scenario {
  std::string name;  // "" for an untagged workload
  double weight = 1;
  LengthSpec input;
  LengthSpec output;
  int prefix_groups = 0;  // distinct shared system prompts; 0: none
  int prefix_len = 0;     // tokens of each shared prompt
};

// Parses "NAME:WEIGHT:INPUT_LEN:OUTPUT_LEN[:PREFIX_GROUPS:PREFIX_LEN]"; the
// lengths use `base`'s distribution.
Result<Scenario> parse_scenario(const std::string& text, const Scenario& base);

// A rate that changes over time: phases of `duration_s` at `rate` (requests per
// second), repeated in a cycle. One phase is a constant rate; two alternating
// phases make tidal or bursty traffic.
struct RatePhase {
  double duration_s = 0;
  double rate = 0;  // requests per second; > 0
};

// Parses "DURATION:RATE,DURATION:RATE,...".
Result<std::vector<RatePhase>> parse_phases(const std::string& text);

// A phase of a workload whose request shape changes over time: for
// `duration_s` seconds, requests arrive at `rate` per second with these
// lengths. Phases run one after another, once, so a workload can shift from
// short prompts with long outputs to long prompts with short outputs.
struct ShapePhase {
  std::string name;  // unique in a workload; names the phase in reports
  double duration_s = 0;
  double rate = 0;  // requests per second; > 0
  LengthSpec input;
  LengthSpec output;
};

// Parses "NAME:DURATION_S:RATE:INPUT_LEN:OUTPUT_LEN"; the lengths use
// `base`'s distribution.
Result<ShapePhase> parse_shape_phase(const std::string& text, const Scenario& base);

// The phases' start offsets from the run's start (the first is 0).
std::vector<double> phase_starts(const std::vector<ShapePhase>& phases);

// The requests of a phased workload, ordered by arrival: in phase k, from
// its start to its end (exclusive), arrivals with gamma gaps of mean
// 1/rate and shape `burstiness` (1: Poisson), each tagged with the phase's
// name and drawn with its lengths. Deterministic in (phases, seed,
// burstiness). Errors: no phase, a duplicate or empty name, a duration or
// rate <= 0.
Result<std::vector<RequestSpec>> make_phased_workload(const std::vector<ShapePhase>& phases,
                                                      uint64_t seed, double burstiness);

struct ArrivalOptions {
  // Requests per second; infinity sends everything at time 0.
  double request_rate = std::numeric_limits<double>::infinity();
  // Gamma shape of the gaps: 1 is Poisson; < 1 burstier; > 1 more regular.
  double burstiness = 1;
  std::vector<RatePhase> phases;  // when not empty, overrides request_rate
};

// Arrival offsets (seconds, non-decreasing) of `n` requests: gaps drawn from a
// gamma distribution with mean 1/rate and shape `burstiness`, where the rate
// is the one of the phase the previous arrival fell in.
std::vector<double> arrival_times(const ArrivalOptions& options, int64_t n, std::mt19937_64& rng);

struct WorkloadOptions {
  int64_t num_prompts = 100;
  uint64_t seed = 0;
  std::vector<Scenario> scenarios;  // at least one; one untagged by default
  // Multi-turn: each conversation has `turns` requests; turn k's input_len
  // counts the whole history so far (earlier prompts and answers) plus a new
  // message. prompt_text() stands in for the answers with words of the same
  // length; the runner sends the real answers instead (runner.h).
  int turns = 1;
  ArrivalOptions arrivals;
};

// The requests of a synthetic workload, arrival times included, ordered by
// arrival. Deterministic in `options`.
Result<std::vector<RequestSpec>> make_workload(const WorkloadOptions& options);

// The prompt text of a request: its shared prefix (the same text for the same
// scenario and prefix group), then its own words (the same for the same seed
// and conversation, so a later turn starts with the earlier turn's prompt).
// About one token per word.
std::string prompt_text(const RequestSpec& spec, uint64_t seed);

// Trace files: one JSON object per line with the fields of RequestSpec
// ("arrival_s", "input_len", "output_len", optional "prefix_group",
// "prefix_len", "scenario", "conversation", "turn", "phase"). Ids are line
// numbers.
Result<std::vector<RequestSpec>> read_trace(const std::string& path);
Status write_trace(const std::string& path, const std::vector<RequestSpec>& specs);

}  // namespace baton::bench
