#pragma once

// Sampler: the engine's side of sampling. It turns a sequence's params and
// tokens into the backend's SampleRow (kernels/sampling.h), so that the
// backend picks the token where the logits are; sample() runs the same
// pipeline on host logits (kernels::HostSampler).
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
#include "kernels/sampling.h"

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

// The backend's sampling rows for one step: rows[i] with its edits, which
// live in `edits` (finalize() points each row at its own).
struct SampleBatch {
  std::vector<kernels::SampleRow> rows;
  std::vector<kernels::TokenEdit> edits;
  std::vector<size_t> edit_begin;  // per row, index into edits

  void clear();
  void finalize();
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

  // Appends the backend row that samples for these params and tokens from
  // logit row `logits_row` of a `vocab`-wide tensor, drawing its uniform
  // number from rng (non-greedy only, as sample() does). Cost O(prompt +
  // output) when penalties apply, else O(stop tokens).
  void prepare(const SamplingParams& params, const SampleContext& context, SeqRng& rng,
               int32_t logits_row, int32_t vocab, SampleBatch& batch);
  // What the engine reports for a backend result.
  static SampleResult result(const kernels::SampleOutput& out, const SamplingParams& params);

 private:
  kernels::HostSampler host_;
  SampleBatch one_;
  // Token -> index in the edits being built, -1 between calls; only the
  // entries touched are reset, so a long vocabulary costs nothing here.
  std::vector<int32_t> slot_;
};

}  // namespace baton::engine
