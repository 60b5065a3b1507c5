#pragma once

// Sampler: picks one token from a row of f32 logits on the CPU.
//
// Pipeline, in order (vLLM's order):
//   1. min_tokens: while fewer than min_tokens are generated, EOS (unless
//      ignore_eos) and stop_token_ids are masked to -inf.
//   2. repetition_penalty over tokens seen in prompt + output (HF semantics),
//      then frequency and presence penalties over output tokens (OpenAI).
//   3. temperature: logits / temperature; temperature 0 = greedy (argmax,
//      ties to the lowest id), which skips 4.
//   4. top_k, then top_p over the renormalised top-k set, then min_p (relative
//      to the most likely token); the sample is drawn from what remains with
//      one uniform number from the sequence's own SeqRng.
//
// Reported logprobs (the chosen token's and the top-N alternatives) are the
// log-softmax of the logits after steps 1-3 and before the truncation of step
// 4, so every reported value is finite and comparable: vLLM's
// "processed_logprobs" mode. Greedy reports them at temperature 1.
//
// The result depends only on the logits, the params, the sequence's tokens and
// its RNG, never on the rest of the batch. Cost is O(V) plus O(k log k) for
// the truncated candidate set: no full sort of the vocabulary.
//
// A Sampler keeps scratch buffers; use one per thread.

#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampling_params.h"
#include "engine/sequence.h"

namespace baton::engine {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
  bool operator==(const TokenLogprob&) const = default;
};

struct SampleResult {
  int32_t token = 0;
  // The drawn token's log-probability, computed only when params.logprobs is
  // set (0 included): it costs a pass of exp() over the whole vocabulary.
  float logprob = 0.0f;
  // Highest first (ties to the lowest id); params.logprobs entries, empty when
  // logprobs is absent or 0.
  std::vector<TokenLogprob> top_logprobs;
};

// The tokens a sequence has seen, for penalties and min_tokens masking.
struct SampleContext {
  std::span<const int32_t> prompt;
  std::span<const int32_t> output;
  std::span<const int32_t> eos_token_ids;
};

class Sampler {
 public:
  // params must be valid (SamplingParams::validate); logits non-empty.
  SampleResult sample(std::span<const float> logits, const SamplingParams& params,
                      const SampleContext& context, SeqRng& rng);
  // The same for a scheduler Sequence, advancing its rng.
  SampleResult sample(std::span<const float> logits, Sequence& seq,
                      std::span<const int32_t> eos_token_ids);

  // The distribution sample() draws from (zeros for filtered tokens; one-hot
  // for greedy). For tests and debugging; O(V).
  std::vector<double> distribution(std::span<const float> logits, const SamplingParams& params,
                                   const SampleContext& context);

 private:
  // Steps 1-3 into x_; returns log of the softmax normaliser of x_.
  double process(std::span<const float> logits, const SamplingParams& params,
                 const SampleContext& context, bool log_z = true);
  // Step 4: cand_ / weight_ (exp(x - max)) of the tokens left to draw from.
  void select_candidates(const SamplingParams& params);
  int32_t argmax() const;

  std::vector<float> x_;
  float max_ = 0.0f;
  std::vector<int32_t> idx_;
  std::vector<int32_t> cand_;
  std::vector<double> weight_;
  std::vector<int32_t> counts_;
  std::vector<int32_t> touched_;
};

}  // namespace baton::engine
