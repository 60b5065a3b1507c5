#include "engine/sampling_params.h"

#include <cmath>
#include <string>

namespace baton::engine {
namespace {

constexpr int32_t kMaxLogprobs = 20;
// OpenAI's documented range for presence and frequency penalties.
constexpr float kMaxOpenAiPenalty = 2.0f;

std::string num(double v) {
  std::string s = std::to_string(v);
  // std::to_string prints six decimals; trim them for readable messages.
  while (s.size() > 1 && s.back() == '0') s.pop_back();
  if (!s.empty() && s.back() == '.') s.pop_back();
  return s;
}

}  // namespace

Status SamplingParams::validate() const {
  if (!std::isfinite(temperature) || temperature < 0.0f) {
    return invalid_argument("temperature must be >= 0, got " + num(temperature));
  }
  if (!std::isfinite(top_p) || top_p <= 0.0f || top_p > 1.0f) {
    return invalid_argument("top_p must be in (0, 1], got " + num(top_p));
  }
  if (top_k != -1 && top_k <= 0) {
    return invalid_argument("top_k must be -1 (disabled) or > 0, got " + std::to_string(top_k));
  }
  if (!std::isfinite(min_p) || min_p < 0.0f || min_p > 1.0f) {
    return invalid_argument("min_p must be in [0, 1], got " + num(min_p));
  }
  if (!std::isfinite(presence_penalty) || std::fabs(presence_penalty) > kMaxOpenAiPenalty) {
    return invalid_argument("presence_penalty must be in [-2, 2], got " + num(presence_penalty));
  }
  if (!std::isfinite(frequency_penalty) || std::fabs(frequency_penalty) > kMaxOpenAiPenalty) {
    return invalid_argument("frequency_penalty must be in [-2, 2], got " + num(frequency_penalty));
  }
  if (!std::isfinite(repetition_penalty) || repetition_penalty <= 0.0f) {
    return invalid_argument("repetition_penalty must be > 0, got " + num(repetition_penalty));
  }
  if (max_tokens < 1) {
    return invalid_argument("max_tokens must be >= 1, got " + std::to_string(max_tokens));
  }
  if (min_tokens < 0 || min_tokens > max_tokens) {
    return invalid_argument("min_tokens must be in [0, max_tokens], got " +
                            std::to_string(min_tokens));
  }
  for (int32_t id : stop_token_ids) {
    if (id < 0) {
      return invalid_argument("stop_token_ids must be >= 0, got " + std::to_string(id));
    }
  }
  if (logprobs && (*logprobs < 0 || *logprobs > kMaxLogprobs)) {
    return invalid_argument("logprobs must be in [0, 20], got " + std::to_string(*logprobs));
  }
  if (n < 1) {
    return invalid_argument("n must be >= 1, got " + std::to_string(n));
  }
  return Status::ok();
}

}  // namespace baton::engine
