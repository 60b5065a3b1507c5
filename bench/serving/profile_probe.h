#pragma once

// `baton bench profile`: measures, against running instances, the cost
// models `baton sim` needs (sim/profile.h) and fits them (profile_fit.h).
//
// Probes, each a few requests sent with bench's streaming client (client.h),
// prompts as token ids (exact counts; models without a tokenizer take
// nothing else):
//   1. network: GET /health round trips to the URL (median);
//   2. prefill: single requests with max_tokens 1, one at a time, at several
//      prompt lengths; then several at once (batch); then prompts whose
//      shared prefix was just sent (cached tokens). TTFT minus the round
//      trips the simulator adds is one sample of the prefill model;
//   3. decode: B requests at once with a context of L tokens each and N
//      tokens out, for several B and L; the median inter-token latency is
//      one step of B sequences over B * (L + N/2) tokens. Meanwhile the
//      instance's kv_cache_usage_perc gauge gives its KV room;
//   4. KV transfer (with a P/D pair behind a gateway): one request at a time
//      at several prompt lengths; the prefill instance's
//      baton:kv_transfer_seconds and baton:kv_transfer_bytes_total around
//      each give one transfer.
// Prompts use their own seed and ids, so nothing a later benchmark sends
// is in the prefix cache because of a probe, and no probe hits another's
// prefix except the cached-token probe on purpose.
//
// measure_profile() blocks (minutes for the full set, seconds with quick);
// one call at a time per target, nothing else sending to it.

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

#include "bench/serving/profile_fit.h"
#include "common/status.h"

namespace baton::bench {

struct ProbeOptions {
  std::string base_url = "http://127.0.0.1:8000";  // an instance, or a gateway in front
  std::string model;                               // "" = the first of /v1/models
  // The instance whose /metrics has kv_cache_usage_perc (mixed, or the
  // decode instance of a pair); "" = base_url when it is an instance.
  std::string metrics_url;
  // A P/D pair behind base_url: the prefill instance (its /metrics has the
  // KV transfer series). Empty: an aggregated target, no link measured.
  std::string prefill_url;
  bool quick = false;  // fewer, shorter probes (tests, a first look)
  // What the target runs with (the profile states them; they are not
  // measured): token budget per step, sequences per step, tokens per block.
  int64_t step_tokens = 2048;
  int32_t max_batch = 64;
  int32_t block_tokens = 16;
  int32_t messages_per_block = 0;
  // Longest prompt probed; 0: min(step_tokens, the model's context - room
  // for the output).
  int64_t max_prompt = 0;
  // Of the probe prompts' words; 0 draws one, so a second run against the
  // same server does not find the first run's prompts in its prefix cache.
  uint64_t seed = 0;
  std::chrono::milliseconds timeout{std::chrono::minutes(2)};  // per request
};

// Errors: kUnavailable when the target cannot be reached or a probe request
// fails; kInvalidArgument when a fit is impossible (see profile_fit.h).
// Progress goes to `log`, a line per probe.
Result<MeasuredProfile> measure_profile(const ProbeOptions& options, std::ostream& log);

}  // namespace baton::bench
