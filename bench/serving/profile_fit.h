#pragma once

// Fitting the cost models of `baton sim` (sim/profile.h) to what `baton
// bench profile` measured, and writing the profile file the simulator loads.
//
//   prefill time  = base_s + new_tokens / tokens_per_s
//                   + cached_tokens * cached_token_s + batch * per_request_s
//   decode step   = base_s + batch * per_seq_s + total_context * per_context_token_s
//   KV transfer   = message_s + bytes / bytes_per_s   (one contiguous message)
//
// Each model is fitted by least squares with every coefficient kept >= 0 (a
// negative cost is noise, not physics: such a coefficient is fixed at 0 and
// the others refitted). A column that is 0 in every sample (no cached-token
// probe, say) is fixed at 0. Pure functions; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::bench {

// Least squares of y ~ x * coef, coef >= 0, over rows of equal length.
struct LinearFit {
  std::vector<double> coef;
  double r2 = 0;       // 1 - residual / total sum of squares (1 when y is constant and fits)
  double rel_rms = 0;  // root mean square residual over mean |y|
  int64_t samples = 0;
};

// Errors: kInvalidArgument when rows are ragged, fewer than columns, or the
// columns that are not all zero cannot be told apart (collinear: the probes
// did not vary what separates them).
Result<LinearFit> fit_nonnegative(const std::vector<std::vector<double>>& x,
                                  const std::vector<double>& y);

// One prefill measurement: the time from a step's start to its first
// tokens, in seconds, with the network round trips already taken out.
struct PrefillSample {
  int64_t new_tokens = 0;
  int64_t cached_tokens = 0;
  int32_t batch = 1;
  double seconds = 0;
};

// One decode measurement: the time of one step of `batch` sequences holding
// `total_context` tokens between them.
struct DecodeSample {
  int32_t batch = 1;
  int64_t total_context = 0;
  double seconds = 0;
};

// One KV transfer: `bytes` for a prompt of `tokens` tokens in `seconds`.
struct TransferSample {
  double bytes = 0;
  int64_t tokens = 0;
  double seconds = 0;
};

struct PrefillFit {
  double base_s = 0, tokens_per_s = 0, cached_token_s = 0, per_request_s = 0;
  LinearFit fit;
};
struct DecodeFit {
  double base_s = 0, per_seq_s = 0, per_context_token_s = 0;
  LinearFit fit;
};
struct LinkFit {
  double message_s = 0, bytes_per_s = 0, bytes_per_token = 0;
  LinearFit fit;
};

// Errors: kInvalidArgument for too few or undistinguishable samples, or
// when the token (byte) term comes out 0 (time did not grow with size).
Result<PrefillFit> fit_prefill(const std::vector<PrefillSample>& samples);
Result<DecodeFit> fit_decode(const std::vector<DecodeSample>& samples);
Result<LinkFit> fit_link(const std::vector<TransferSample>& samples);

// Everything a profile file holds, measured or stated.
struct MeasuredProfile {
  std::string name;
  std::string description;  // comment lines at the top (what, where, how)
  double network_rtt_s = 0;
  PrefillFit prefill;
  int64_t step_tokens = 2048;  // the server's --max-num-batched-tokens
  DecodeFit decode;
  int32_t max_batch = 64;  // the server's --max-num-seqs
  std::optional<int64_t> kv_capacity_tokens;
  int32_t block_tokens = 16;
  int32_t messages_per_block = 0;  // 0: not stated (the simulator's default)
  std::optional<LinkFit> link;     // with a P/D pair
};

// The profile as sim/profiles/*.yaml expect it (sim::parse_profile reads
// it), each fitted section commented with its sample count and fit quality.
std::string profile_yaml(const MeasuredProfile& p);

}  // namespace baton::bench
