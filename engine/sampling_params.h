#pragma once

// SamplingParams: how one request's tokens are chosen and when it stops
// (DESIGN.md §4). A plain value; the server fills it from the OpenAI request
// and calls validate() before handing the request to the scheduler.

#include <cstdint>
#include <optional>
#include <vector>

#include "common/status.h"

namespace baton::engine {

struct SamplingParams {
  // 0 means greedy (argmax, ties to the lowest token id).
  float temperature = 1.0f;
  // Nucleus: keep the smallest set of most likely tokens whose mass reaches
  // top_p. 1 disables.
  float top_p = 1.0f;
  // Keep the top_k most likely tokens; -1 disables.
  int32_t top_k = -1;
  // Drop tokens whose probability is below min_p times the top probability.
  float min_p = 0.0f;
  // OpenAI penalties, applied to tokens of the output: logit -= presence *
  // (count > 0) + frequency * count. Range [-2, 2].
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  // Hugging Face repetition penalty over prompt and output tokens: positive
  // logits are divided by it, negative ones multiplied. 1 disables.
  float repetition_penalty = 1.0f;
  // Per-request seed; without one the engine draws a seed for the request.
  std::optional<uint64_t> seed;
  // Output length limits, in tokens. EOS and stop_token_ids are masked out
  // until min_tokens have been generated.
  int32_t max_tokens = 16;
  int32_t min_tokens = 0;
  // Tokens that finish a sequence (reason stop) besides the model's EOS. The
  // stop token is part of the output token ids.
  std::vector<int32_t> stop_token_ids;
  // Keep generating past the model's EOS (stop_token_ids still stop).
  bool ignore_eos = false;
  // Number of top alternatives to report with each token (0..20); absent: no
  // logprobs at all.
  std::optional<int32_t> logprobs;
  // Number of sequences to generate from the one prompt.
  int32_t n = 1;

  // An invalid_argument naming the offending field, or ok.
  Status validate() const;
  bool greedy() const { return temperature == 0.0f; }
};

}  // namespace baton::engine
