#pragma once

// Admission control: the instance's own, immediate answer to "can you start
// this request in time?" (DESIGN.md §3, on-demand forwarding).
//
// A request is admitted when the queue of requests not yet started is below
// its bound and, with a TTFT budget set, the estimated time to start it fits.
// The estimate is the larger of two measured bounds:
//  - prefill: (prompt tokens queued ahead + its own) / the prefill rate;
//  - slots: requests waiting ahead / the rate at which waiting requests
//    start, measured while some were waiting (Little's law; this is what
//    bounds the queue when the running batch is full and a request waits for
//    another to finish, however short its prompt).
// Otherwise it is rejected at once with a reason and a Retry-After, so a
// gateway forwards it elsewhere instead of waiting for a timeout. Until a
// rate has been measured its bound is optimistic (admit). A rejection also
// says when the instance expects to admit again (admit_after_ms): the
// estimate's excess over the budget, or the time one waiting request takes
// to start.
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
  // For rejections: when the instance expects to admit again, in ms (1 to
  // 1000): sent as x-baton-admit-after-ms so that a gateway offers it nothing
  // new until then and sheds at once instead.
  int32_t admit_after_ms = 0;
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
  // time `now_us`; the prefill rate is measured from successive samples, and
  // the start rate from the started() calls between them.
  void observe_prefill(int64_t total_prompt_tokens, int64_t now_us);

  double prefill_rate() const;  // tokens/s, 0 when unknown
  double start_rate() const;    // requests/s started while some waited, 0 when unknown
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
  double start_rate_ = 0;           // EMA of requests started per second while some waited
  int64_t starts_ = 0;              // started() calls so far
  int64_t last_starts_ = 0;         // starts_ at the window's beginning
  bool waited_all_window_ = false;  // requests waited from the window's start until now
};

}  // namespace baton::server
