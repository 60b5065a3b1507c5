#include "kernels/sampling.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/status.h"

namespace baton::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Initial size of the sorted prefix searched for the top-p cut; grown 4x
// until the mass is reached. Most top-p sets of real models are far smaller.
constexpr size_t kTopPInitialPrefix = 128;

}  // namespace

double HostSampler::process(std::span<const float> logits, const SampleRow& row, bool log_z) {
  BATON_CHECK(!logits.empty());
  const auto vocab = static_cast<int32_t>(logits.size());
  x_.assign(logits.begin(), logits.end());
  const float rp = row.repetition_penalty;
  const bool counts = row.frequency_penalty != 0.0f || row.presence_penalty != 0.0f;
  for (int32_t i = 0; i < row.num_edits; ++i) {
    const TokenEdit& e = row.edits[i];
    if (e.token < 0 || e.token >= vocab) continue;
    float& v = x_[static_cast<size_t>(e.token)];
    if (e.masked) {
      v = kNegInf;
      continue;
    }
    if (e.seen && rp != 1.0f) v = v > 0.0f ? v / rp : v * rp;
    if (counts && e.output_count > 0) {
      v -= row.frequency_penalty * static_cast<float>(e.output_count) + row.presence_penalty;
    }
  }

  if (!row.greedy()) {
    const float inv_t = 1.0f / row.temperature;
    for (float& v : x_) v *= inv_t;
  }

  max_ = *std::max_element(x_.begin(), x_.end());
  if (!std::isfinite(max_)) {
    // Everything masked (a vocabulary of stop tokens only): fall back to the
    // raw logits rather than sampling from nothing.
    x_.assign(logits.begin(), logits.end());
    max_ = *std::max_element(x_.begin(), x_.end());
  }
  if (!log_z) return 0.0;
  double sum = 0.0;
  for (float v : x_) sum += std::exp(static_cast<double>(v) - max_);
  return static_cast<double>(max_) + std::log(sum);
}

int32_t HostSampler::argmax() const {
  // First maximum: ties go to the lowest id.
  return static_cast<int32_t>(std::max_element(x_.begin(), x_.end()) - x_.begin());
}

void HostSampler::select_candidates(const SampleRow& row) {
  const size_t vocab = x_.size();
  cand_.clear();
  weight_.clear();
  const bool use_k = row.top_k > 0 && static_cast<size_t>(row.top_k) < vocab;
  const bool use_p = row.top_p < 1.0f;
  const float min_logit =
      row.min_p > 0.0f ? max_ + std::log(row.min_p) : -std::numeric_limits<float>::max();
  auto weight = [&](int32_t t) {
    return std::exp(static_cast<double>(x_[static_cast<size_t>(t)]) - max_);
  };

  if (!use_k && !use_p) {
    // Id order is as good as any for drawing: no sort at all.
    for (size_t t = 0; t < vocab; ++t) {
      if (x_[t] >= min_logit && x_[t] != kNegInf) cand_.push_back(static_cast<int32_t>(t));
    }
  } else {
    auto better = [this](int32_t a, int32_t b) {
      const float xa = x_[static_cast<size_t>(a)];
      const float xb = x_[static_cast<size_t>(b)];
      return xa > xb || (xa == xb && a < b);
    };
    idx_.resize(vocab);
    std::iota(idx_.begin(), idx_.end(), 0);
    size_t range = vocab;
    if (use_k) {
      range = static_cast<size_t>(row.top_k);
      std::nth_element(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(range) - 1,
                       idx_.end(), better);
    }
    const auto first = idx_.begin();
    const auto last = idx_.begin() + static_cast<std::ptrdiff_t>(range);
    size_t keep = range;
    if (use_p) {
      double total = 0.0;
      for (auto it = first; it != last; ++it) total += weight(*it);
      const double target = static_cast<double>(row.top_p) * total;
      size_t m = std::min(range, kTopPInitialPrefix);
      for (;;) {
        std::partial_sort(first, first + static_cast<std::ptrdiff_t>(m), last, better);
        double cum = 0.0;
        size_t i = 0;
        while (i < m && cum < target) cum += weight(idx_[i++]);
        if (cum >= target || m == range) {
          keep = std::max<size_t>(i, 1);
          break;
        }
        m = std::min(range, m * 4);
      }
    } else {
      std::sort(first, last, better);
    }
    for (size_t i = 0; i < keep; ++i) {
      const int32_t t = idx_[i];
      if (x_[static_cast<size_t>(t)] >= min_logit && x_[static_cast<size_t>(t)] != kNegInf) {
        cand_.push_back(t);
      }
    }
  }
  if (cand_.empty()) cand_.push_back(argmax());  // min_p keeps the max; guards NaN only
  weight_.reserve(cand_.size());
  for (int32_t t : cand_) weight_.push_back(weight(t));
}

SampleOutput HostSampler::sample(std::span<const float> logits, const SampleRow& row) {
  const bool want_logprobs = row.logprobs >= 0;
  const double log_z = process(logits, row, want_logprobs);
  SampleOutput out;
  if (row.greedy()) {
    out.token = argmax();
  } else {
    select_candidates(row);
    double total = 0.0;
    for (double w : weight_) total += w;
    const double target = row.uniform * total;
    double cum = 0.0;
    out.token = cand_.back();  // if rounding leaves target unreached
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += weight_[i];
      if (target < cum) {
        out.token = cand_[i];
        break;
      }
    }
  }
  if (want_logprobs) out.logprob = static_cast<float>(x_[static_cast<size_t>(out.token)] - log_z);

  if (row.logprobs > 0) {
    const size_t n = std::min(
        {static_cast<size_t>(row.logprobs), x_.size(), static_cast<size_t>(kMaxTopLogprobs)});
    idx_.resize(x_.size());
    std::iota(idx_.begin(), idx_.end(), 0);
    std::partial_sort(idx_.begin(), idx_.begin() + static_cast<std::ptrdiff_t>(n), idx_.end(),
                      [this](int32_t a, int32_t b) {
                        const float xa = x_[static_cast<size_t>(a)];
                        const float xb = x_[static_cast<size_t>(b)];
                        return xa > xb || (xa == xb && a < b);
                      });
    out.num_top = static_cast<int32_t>(n);
    for (size_t i = 0; i < n; ++i) {
      out.top_tokens[i] = idx_[i];
      out.top_logprobs[i] = static_cast<float>(x_[static_cast<size_t>(idx_[i])] - log_z);
    }
  }
  return out;
}

std::vector<double> HostSampler::distribution(std::span<const float> logits, const SampleRow& row) {
  process(logits, row, false);
  std::vector<double> p(x_.size(), 0.0);
  if (row.greedy()) {
    p[static_cast<size_t>(argmax())] = 1.0;
    return p;
  }
  select_candidates(row);
  double total = 0.0;
  for (double w : weight_) total += w;
  for (size_t i = 0; i < cand_.size(); ++i) p[static_cast<size_t>(cand_[i])] = weight_[i] / total;
  return p;
}

}  // namespace baton::kernels
