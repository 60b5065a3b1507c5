#pragma once

// Token sampling as a backend operation (Backend::sample): one token per row
// from f32 logits that stay in backend memory, so only the chosen ids (and the
// logprobs a request asked for) reach the host.
//
// The pipeline of one row, in order (vLLM's):
//   1. edits: every TokenEdit changes one logit. A masked token becomes -inf;
//      otherwise a token seen in prompt or output gets the repetition penalty
//      (positive logits divided by it, negative ones multiplied), then a token
//      with output_count > 0 loses frequency * count + presence.
//   2. temperature: logits * (1 / temperature); 0 = greedy (argmax, ties to
//      the lowest id), which skips 3. If every logit is now -inf (a vocabulary
//      of masked tokens only) the raw logits are used instead, unscaled.
//   3. top_k, then top_p over the renormalised top-k set, then min_p (relative
//      to the most likely token); ties at a cut go to the lowest ids. The
//      token is drawn from what remains with the row's one uniform number.
//
// Reported logprobs are the log-softmax after 1-2 and before 3 (vLLM's
// processed logprobs); greedy reports them at temperature 1.
//
// Which token a given uniform number picks among the candidates is the
// backend's business (the host walks them best first, the GPU in id order):
// the distribution is the same, the draw for one seed need not be. Greedy
// results are identical wherever the logits are.

#include <array>
#include <cstdint>
#include <span>
#include <vector>

namespace baton::kernels {

constexpr int32_t kMaxTopLogprobs = 20;

// A change to one token's logit before temperature (step 1). A row's edits
// name each token at most once.
struct TokenEdit {
  int32_t token = 0;
  int32_t output_count = 0;  // occurrences in the output: frequency and presence
  bool seen = false;         // in prompt or output: repetition penalty
  bool masked = false;       // to -inf (EOS and stop tokens before min_tokens)
};

struct SampleRow {
  int32_t logits_row = 0;  // row of the logits tensor; rows may share one
  float temperature = 1.0f;
  int32_t top_k = -1;  // <= 0 or >= vocab: off
  float top_p = 1.0f;
  float min_p = 0.0f;
  float repetition_penalty = 1.0f;
  float presence_penalty = 0.0f;
  float frequency_penalty = 0.0f;
  double uniform = 0.0;  // the draw, in [0, 1); unused when greedy
  // -1: no logprobs; 0: the chosen token's; N: also the top N (<= 20).
  int32_t logprobs = -1;
  const TokenEdit* edits = nullptr;  // host memory, valid during the call
  int32_t num_edits = 0;

  bool greedy() const { return temperature == 0.0f; }
};

struct SampleOutput {
  int32_t token = 0;
  float logprob = 0.0f;  // when logprobs >= 0
  int32_t num_top = 0;   // min(logprobs, vocab) entries, highest first, ties to the lowest id
  std::array<int32_t, kMaxTopLogprobs> top_tokens{};
  std::array<float, kMaxTopLogprobs> top_logprobs{};
};

// The pipeline on the host: the CPU backend's sample op, and the reference
// that the GPU's is tested against. Cost is O(V) plus O(k log k) for the
// truncated candidate set (no full sort of the vocabulary). Keeps scratch
// buffers: one per thread.
class HostSampler {
 public:
  SampleOutput sample(std::span<const float> logits, const SampleRow& row);
  // The distribution sample() draws from (zeros for filtered tokens; one-hot
  // for greedy). For tests and debugging; O(V).
  std::vector<double> distribution(std::span<const float> logits, const SampleRow& row);

 private:
  // Steps 1-2 into x_; returns log of the softmax normaliser of x_ when
  // log_z is set.
  double process(std::span<const float> logits, const SampleRow& row, bool log_z);
  // Step 3: cand_ / weight_ (exp(x - max)) of the tokens left to draw from,
  // best first when a top-k or top-p cut applies, else in id order.
  void select_candidates(const SampleRow& row);
  int32_t argmax() const;

  std::vector<float> x_;
  float max_ = 0.0f;
  std::vector<int32_t> idx_;
  std::vector<int32_t> cand_;
  std::vector<double> weight_;
};

}  // namespace baton::kernels
