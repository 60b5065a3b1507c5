#pragma once

// Admission control: the instance's own, immediate answer to "can you start
// this request in time?" (DESIGN.md §3, on-demand forwarding).
//
// A request is admitted when the queue of requests not yet started is below
// its bound and, with a TTFT budget set, the estimated time to start it fits:
// (prompt tokens queued ahead + its own) / the prefill rate the instance has
// measured recently. Otherwise it is rejected at once with a reason and a
// Retry-After, so a gateway forwards it elsewhere instead of waiting for a
// timeout. Until a rate has been measured the estimate is optimistic (admit).
//
// Thread-safety: every method is thread safe. Time comes from the caller
// (microsecond timestamps), so tests drive it without a clock.

#include <cstdint>
#include <mutex>
#include <string_view>

namespace baton::server {

enum class RejectReason { kNone, kQueueFull, kTtftBudget, kTooManyRequests, kNotReady };

// Stable machine-readable names: "queue_full", "ttft_budget", ...
std::string_view reject_reason_name(RejectReason r);

struct AdmissionOptions {
  int32_t max_waiting = 256;        // requests admitted but not started
  int32_t max_in_flight = 1024;     // admitted and not finished
  double ttft_budget_s = 0.0;       // 0: no budget
  double initial_prefill_rate = 0;  // tokens/s before any measurement; 0: unknown
};

struct AdmissionDecision {
  RejectReason reason = RejectReason::kNone;
  double estimated_start_s = 0;  // estimated queueing + prefill before the first token
  int32_t retry_after_s = 0;     // for rejections
  bool admitted() const { return reason == RejectReason::kNone; }
};

class AdmissionController {
 public:
  explicit AdmissionController(AdmissionOptions options);

  // Decide on a request of `prompt_tokens` to prefill; when admitted it is
  // counted as waiting until started() or finished().
  AdmissionDecision try_admit(int64_t prompt_tokens);
  // The request produced its first token.
  void started(int64_t prompt_tokens);
  // The request ended; `was_started` says whether started() was called.
  void finished(int64_t prompt_tokens, bool was_started);
  // The engine's cumulative count of prompt tokens prefilled, sampled at
  // time `now_us`; the rate is measured from successive samples.
  void observe_prefill(int64_t total_prompt_tokens, int64_t now_us);

  double prefill_rate() const;  // tokens/s, 0 when unknown
  int32_t waiting() const;
  int32_t in_flight() const;
  int64_t queued_prompt_tokens() const;

 private:
  AdmissionOptions options_;
  mutable std::mutex mu_;
  int32_t waiting_ = 0;
  int32_t in_flight_ = 0;
  int64_t queued_tokens_ = 0;
  double rate_ = 0;  // EMA of measured prefill tokens/s
  int64_t last_tokens_ = -1;
  int64_t last_us_ = 0;
};

}  // namespace baton::server
