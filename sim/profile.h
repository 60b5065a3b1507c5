#pragma once

// Cost models of one instance kind (hardware + model), read from a profile
// file (sim/profiles/*.yaml). Each coefficient there cites the row of
// docs/benchmarks.md it comes from.
//
//   prefill step  = base_s + new_tokens / tokens_per_s
//                   + cached_tokens * cached_token_s + batch * per_request_s
//   decode step   = base_s + batch * per_seq_s + total_context * per_context_token_s
//   KV transfer   = bytes / link bytes_per_s + messages * message_s
//                   (one message when contiguous; blocks * messages_per_block
//                   when sent block by block)
//
// All times in seconds, sizes in tokens or bytes. Pure functions; thread-safe.

#include <cstdint>
#include <string>

#include "common/status.h"

namespace baton::sim {

struct Profile {
  std::string name;
  struct {
    double base_s = 0.005;
    double tokens_per_s = 10000;
    double cached_token_s = 0;
    double per_request_s = 0;
    int64_t step_tokens = 8192;  // token budget of one prefill step
  } prefill;
  struct {
    double base_s = 0.005;
    double per_seq_s = 0.0001;
    double per_context_token_s = 0;
    int32_t max_batch = 256;
  } decode;
  struct {
    int64_t capacity_tokens = 500000;  // KV room of one instance
    double bytes_per_token = 131072;
    int32_t block_tokens = 16;
    int32_t messages_per_block = 64;  // per-block transfer: one message per layer and K/V
  } kv;
  struct {
    double bytes_per_s = 3e9;
    double message_s = 13e-6;
  } link;
  double network_rtt_s = 0.0005;  // one gateway <-> instance round trip
};

double prefill_time(const Profile& p, int64_t new_tokens, int64_t cached_tokens, int batch);
double decode_step_time(const Profile& p, int batch, int64_t total_context);
double kv_transfer_time(const Profile& p, int64_t tokens, bool contiguous);
// The prefill rate an instance measures while busy with full steps, in
// tokens/s: what server/admission.h's estimate converges to.
double measured_prefill_rate(const Profile& p);

// Parses a profile; unknown keys are refused so a typo cannot pass silently.
// Errors: kInvalidArgument naming the key or value.
Result<Profile> parse_profile(const std::string& yaml_text);
// `path_or_name`: a file, or the name of a shipped profile ("cpu-2core",
// "h100-llama8b", "h100-llama8b-serving") found in sim/profiles/.
Result<Profile> load_profile(const std::string& path_or_name);

}  // namespace baton::sim
