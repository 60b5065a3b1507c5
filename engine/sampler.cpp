#include "engine/sampler.h"

#include "common/status.h"

namespace baton::engine {

void SampleBatch::clear() {
  rows.clear();
  edits.clear();
  edit_begin.clear();
}

void SampleBatch::finalize() {
  for (size_t i = 0; i < rows.size(); ++i) {
    rows[i].edits = rows[i].num_edits > 0 ? edits.data() + edit_begin[i] : nullptr;
  }
}

void Sampler::prepare(const SamplingParams& params, const SampleContext& ctx, SeqRng& rng,
                      int32_t logits_row, int32_t vocab, SampleBatch& batch) {
  kernels::SampleRow row;
  row.logits_row = logits_row;
  row.temperature = params.temperature;
  row.top_k = params.top_k;
  row.top_p = params.top_p;
  row.min_p = params.min_p;
  row.repetition_penalty = params.repetition_penalty;
  row.presence_penalty = params.presence_penalty;
  row.frequency_penalty = params.frequency_penalty;
  row.logprobs = params.logprobs ? *params.logprobs : -1;
  if (!params.greedy()) row.uniform = rng.next_unit();

  const size_t begin = batch.edits.size();
  auto& edits = batch.edits;
  slot_.resize(static_cast<size_t>(vocab), -1);
  auto edit = [&](int32_t t) -> kernels::TokenEdit* {
    if (t < 0 || t >= vocab) return nullptr;
    int32_t& s = slot_[static_cast<size_t>(t)];
    if (s < 0) {
      s = static_cast<int32_t>(edits.size() - begin);
      edits.push_back({t});
    }
    return &edits[begin + static_cast<size_t>(s)];
  };
  if (static_cast<int32_t>(ctx.output.size()) < params.min_tokens) {
    for (int32_t t : params.stop_token_ids) {
      if (auto* e = edit(t)) e->masked = true;
    }
    if (!params.ignore_eos) {
      for (int32_t t : ctx.eos_token_ids) {
        if (auto* e = edit(t)) e->masked = true;
      }
    }
  }
  if (params.repetition_penalty != 1.0f) {
    for (int32_t t : ctx.prompt) {
      if (auto* e = edit(t)) e->seen = true;
    }
    for (int32_t t : ctx.output) {
      if (auto* e = edit(t)) e->seen = true;
    }
  }
  if (params.frequency_penalty != 0.0f || params.presence_penalty != 0.0f) {
    for (int32_t t : ctx.output) {
      if (auto* e = edit(t)) ++e->output_count;
    }
  }
  for (size_t i = begin; i < edits.size(); ++i) slot_[static_cast<size_t>(edits[i].token)] = -1;
  row.num_edits = static_cast<int32_t>(edits.size() - begin);
  batch.edit_begin.push_back(begin);
  batch.rows.push_back(row);
}

SampleResult Sampler::result(const kernels::SampleOutput& out, const SamplingParams& params) {
  SampleResult r;
  r.token = out.token;
  if (params.logprobs) {
    r.logprob = out.logprob;
    for (int32_t i = 0; i < out.num_top; ++i) {
      r.top_logprobs.push_back(
          {out.top_tokens[static_cast<size_t>(i)], out.top_logprobs[static_cast<size_t>(i)]});
    }
  }
  return r;
}

SampleResult Sampler::sample(std::span<const float> logits, const SamplingParams& params,
                             const SampleContext& context, SeqRng& rng) {
  BATON_CHECK(!logits.empty());
  one_.clear();
  prepare(params, context, rng, 0, static_cast<int32_t>(logits.size()), one_);
  one_.finalize();
  return result(host_.sample(logits, one_.rows[0]), params);
}

SampleResult Sampler::sample(std::span<const float> logits, Sequence& seq,
                             std::span<const int32_t> eos_token_ids) {
  BATON_CHECK(seq.params != nullptr);
  return sample(logits, *seq.params, SampleContext{seq.prompt, seq.output, eos_token_ids}, seq.rng);
}

std::vector<double> Sampler::distribution(std::span<const float> logits,
                                          const SamplingParams& params,
                                          const SampleContext& context) {
  BATON_CHECK(!logits.empty());
  one_.clear();
  SeqRng unused;
  prepare(params, context, unused, 0, static_cast<int32_t>(logits.size()), one_);
  one_.finalize();
  return host_.distribution(logits, one_.rows[0]);
}

}  // namespace baton::engine
