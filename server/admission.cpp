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
  if (start_rate_ > 0) {
    double slots = static_cast<double>(waiting_) / start_rate_;
    if (rate_ > 0) slots += static_cast<double>(prompt_tokens) / rate_;
    d.estimated_start_s = std::max(d.estimated_start_s, slots);
  }
  const bool estimated = rate_ > 0 || start_rate_ > 0;
  if (in_flight_ >= options_.max_in_flight) {
    d.reason = RejectReason::kTooManyRequests;
  } else if (waiting_ >= options_.max_waiting) {
    d.reason = RejectReason::kQueueFull;
  } else if (options_.ttft_budget_s > 0 && estimated &&
             d.estimated_start_s > options_.ttft_budget_s && waiting_ > 0) {
    // With nothing queued the request starts now whatever its length: a
    // prompt too long for the budget on an idle instance is still best served
    // here, not bounced between idle instances.
    d.reason = RejectReason::kTtftBudget;
  }
  if (!d.admitted()) {
    // Roughly when the queue ahead will have drained; at least a second.
    double drain = rate_ > 0 ? static_cast<double>(queued_tokens_) / rate_ : 1.0;
    if (start_rate_ > 0) drain = std::max(drain, static_cast<double>(waiting_) / start_rate_);
    d.retry_after_s = static_cast<int32_t>(std::clamp(std::ceil(drain), 1.0, 60.0));
    // Over the budget: once the excess has drained. A full queue or batch:
    // once one request has started (or, unmeasured, a short while).
    double admit_after_s = start_rate_ > 0 ? 1.0 / start_rate_ : 0.1;
    if (d.reason == RejectReason::kTtftBudget) {
      admit_after_s = d.estimated_start_s - options_.ttft_budget_s;
    }
    d.admit_after_ms = static_cast<int32_t>(std::clamp(std::ceil(admit_after_s * 1e3), 1.0, 1e3));
    return d;
  }
  ++waiting_;
  ++in_flight_;
  queued_tokens_ += prompt_tokens;
  return d;
}

void AdmissionController::started(int64_t prompt_tokens) {
  std::lock_guard lock(mu_);
  ++starts_;
  waiting_ = std::max(0, waiting_ - 1);
  if (waiting_ == 0) waited_all_window_ = false;
  queued_tokens_ = std::max<int64_t>(0, queued_tokens_ - prompt_tokens);
}

void AdmissionController::finished(int64_t prompt_tokens, bool was_started) {
  std::lock_guard lock(mu_);
  if (!was_started) {
    waiting_ = std::max(0, waiting_ - 1);
    // A queue that emptied by cancellation says nothing about start speed.
    if (waiting_ == 0) waited_all_window_ = false;
    queued_tokens_ = std::max<int64_t>(0, queued_tokens_ - prompt_tokens);
  }
  in_flight_ = std::max(0, in_flight_ - 1);
}

void AdmissionController::observe_prefill(int64_t total, int64_t now_us) {
  std::lock_guard lock(mu_);
  if (last_tokens_ < 0 || total < last_tokens_) {
    last_tokens_ = total;
    last_us_ = now_us;
    last_starts_ = starts_;
    waited_all_window_ = waiting_ > 0;
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
  // Starts per second say how fast the queue drains only while there was a
  // queue the whole window; otherwise they measure arrivals.
  if (waited_all_window_ && waiting_ > 0) {
    const double sample =
        static_cast<double>(starts_ - last_starts_) * 1e6 / static_cast<double>(dt);
    // A window with no start at all while requests waited: the queue is
    // stuck behind long requests; count it, but never let the rate reach 0.
    const double floor = start_rate_ > 0 ? start_rate_ * 0.5 : 0.0;
    const double s = std::max(sample, floor);
    if (s > 0) start_rate_ = start_rate_ <= 0 ? s : 0.7 * start_rate_ + 0.3 * s;
  }
  last_tokens_ = total;
  last_us_ = now_us;
  last_starts_ = starts_;
  waited_all_window_ = waiting_ > 0;
}

double AdmissionController::prefill_rate() const {
  std::lock_guard lock(mu_);
  return rate_;
}
double AdmissionController::start_rate() const {
  std::lock_guard lock(mu_);
  return start_rate_;
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
