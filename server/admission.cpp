#include "server/admission.h"

#include <algorithm>
#include <cmath>

namespace baton::server {

std::string_view reject_reason_name(RejectReason r) {
  switch (r) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kQueueFull:
      return "queue_full";
    case RejectReason::kTtftBudget:
      return "ttft_budget";
    case RejectReason::kTooManyRequests:
      return "too_many_requests";
    case RejectReason::kNotReady:
      return "not_ready";
  }
  return "unknown";
}

AdmissionController::AdmissionController(AdmissionOptions options)
    : options_(options), rate_(options.initial_prefill_rate) {}

AdmissionDecision AdmissionController::try_admit(int64_t prompt_tokens) {
  std::lock_guard lock(mu_);
  AdmissionDecision d;
  if (rate_ > 0) d.estimated_start_s = static_cast<double>(queued_tokens_ + prompt_tokens) / rate_;
  if (in_flight_ >= options_.max_in_flight) {
    d.reason = RejectReason::kTooManyRequests;
  } else if (waiting_ >= options_.max_waiting) {
    d.reason = RejectReason::kQueueFull;
  } else if (options_.ttft_budget_s > 0 && rate_ > 0 &&
             d.estimated_start_s > options_.ttft_budget_s && waiting_ > 0) {
    // With nothing queued the request starts now whatever its length: a
    // prompt too long for the budget on an idle instance is still best served
    // here, not bounced between idle instances.
    d.reason = RejectReason::kTtftBudget;
  }
  if (!d.admitted()) {
    // Roughly when the queue ahead will have drained; at least a second.
    double drain = rate_ > 0 ? static_cast<double>(queued_tokens_) / rate_ : 1.0;
    d.retry_after_s = static_cast<int32_t>(std::clamp(std::ceil(drain), 1.0, 60.0));
    return d;
  }
  ++waiting_;
  ++in_flight_;
  queued_tokens_ += prompt_tokens;
  return d;
}

void AdmissionController::started(int64_t prompt_tokens) {
  std::lock_guard lock(mu_);
  waiting_ = std::max(0, waiting_ - 1);
  queued_tokens_ = std::max<int64_t>(0, queued_tokens_ - prompt_tokens);
}

void AdmissionController::finished(int64_t prompt_tokens, bool was_started) {
  std::lock_guard lock(mu_);
  if (!was_started) {
    waiting_ = std::max(0, waiting_ - 1);
    queued_tokens_ = std::max<int64_t>(0, queued_tokens_ - prompt_tokens);
  }
  in_flight_ = std::max(0, in_flight_ - 1);
}

void AdmissionController::observe_prefill(int64_t total, int64_t now_us) {
  std::lock_guard lock(mu_);
  if (last_tokens_ < 0 || total < last_tokens_) {
    last_tokens_ = total;
    last_us_ = now_us;
    return;
  }
  const int64_t dt = now_us - last_us_;
  const int64_t dn = total - last_tokens_;
  // Only windows long enough to mean something, and only busy ones: an idle
  // instance says nothing about how fast it prefills.
  if (dt < 50'000) return;
  if (dn > 0) {
    double sample = static_cast<double>(dn) * 1e6 / static_cast<double>(dt);
    rate_ = rate_ <= 0 ? sample : 0.7 * rate_ + 0.3 * sample;
  }
  last_tokens_ = total;
  last_us_ = now_us;
}

double AdmissionController::prefill_rate() const {
  std::lock_guard lock(mu_);
  return rate_;
}
int32_t AdmissionController::waiting() const {
  std::lock_guard lock(mu_);
  return waiting_;
}
int32_t AdmissionController::in_flight() const {
  std::lock_guard lock(mu_);
  return in_flight_;
}
int64_t AdmissionController::queued_prompt_tokens() const {
  std::lock_guard lock(mu_);
  return queued_tokens_;
}

}  // namespace baton::server
