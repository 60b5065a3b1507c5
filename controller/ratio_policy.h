#pragma once

// The prefill:decode ratio of one scenario group, decided from load reports.
//
// evaluate_group() is a pure function: (policy, a snapshot of the group, the
// group's previous state, now) -> (one decision with its reason, next state).
// The controller calls it once per round per group; the simulator and the
// tests call it the same way with snapshots of their own.
//
// The rule, in words:
//  - Prefill is the bottleneck when the group's prefill instances miss the
//    TTFT SLO (the quantile over the last window of their own time to first
//    token, queue and prefill, is above target), reject requests or hold a
//    long queue; decode has slack when its time per token is well under
//    target (below slack_fraction of it), nothing waits on decode, no decode
//    rejects and its KV usage is low. Both together move one decode instance
//    to prefill. The reverse (decode misses TPOT, holds a queue, rejects or
//    runs out of KV while prefill is well under its TTFT target with no
//    rejections and no queue) moves one prefill instance to decode.
//  - Time per token is read from the inter-token latency, observed as tokens
//    are produced, where instances expose it: the per-request TPOT is
//    observed when a request ends, so it shows a batch that has grown too
//    large only a request's lifetime later, and the previous load's slow
//    requests for as long again. A queue on decode (the running batch is
//    full) counts as pressure before latency shows it.
//  - When one side rejects requests, the other side's slack is judged by a
//    projection instead: its load spread over one instance fewer, still
//    under projected_slack_fraction of the target (rejections cost more
//    than a tighter margin on the giving side).
//  - Hysteresis: a condition must hold for `sustain_rounds` consecutive
//    evaluations before it acts, and the thresholds to act (a miss) and to
//    give (slack) are far apart, so a group just at its SLO stays put.
//  - Cool-down: after a change the group holds for `cooldown`; a change back
//    in the opposite direction needs `reverse_cooldown` since the last change.
//  - Never below min_prefill/min_decode, never while one of the group's
//    instances is changing role, never on missing or stale data.
// Every result carries a reason, holds included, for logs and metrics.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.h"
#include "controller/load_report.h"
#include "protocol/pd.h"

namespace baton::controller {

using Role = protocol::pd::Role;
using protocol::pd::parse_role;
using protocol::pd::role_name;

struct SloTargets {
  double ttft_s = 2.0;    // time to first token, seconds
  double tpot_s = 0.1;    // time per output token, seconds
  double quantile = 0.9;  // which quantile must meet the targets
};

struct RatioPolicy {
  SloTargets slo;
  // Slack means the quantile is below slack_fraction * target.
  double slack_fraction = 0.5;
  // While the other side rejects requests, a side of n >= 2 instances also
  // has slack when its load spread over n - 1 of them stays under
  // projected_slack_fraction * target: its quantile and KV usage scaled by
  // n / (n - 1), its queue and rejections still nil. Between slack_fraction
  // and 1, so that the side left behind is still short of pressure.
  double projected_slack_fraction = 0.8;
  // Decode has slack only with mean KV usage below this (0..1), and is under
  // pressure above kv_high.
  double kv_slack = 0.5;
  double kv_high = 0.9;
  // A prefill queue this long per prefill instance counts as pressure even
  // before TTFT shows it.
  double prefill_queue_high = 8;
  // Requests waiting on decode instances, this many per instance on average,
  // count as decode pressure: the running batch is full (max_num_seqs) or
  // out of KV room, and time per token degrades next.
  double decode_queue_high = 1;
  // Latency quantiles are judged only over at least this many observations
  // in the window (summed over the side's instances).
  double min_samples = 5;
  int sustain_rounds = 3;
  std::chrono::milliseconds cooldown{30000};
  std::chrono::milliseconds reverse_cooldown{120000};
  // Reports older than this (by their `at`) count as missing.
  std::chrono::milliseconds stale_after{10000};
  int min_prefill = 1;
  int min_decode = 1;
};

// One instance as the policy sees it. Only healthy instances with a fresh
// report take part; the rest are ignored (health is the controller's job).
struct InstanceView {
  std::string id;
  Role role = Role::kMixed;
  bool healthy = false;
  bool changing_role = false;   // a role change was started and has not ended
  bool can_change_role = true;  // false: it refused a change (no role endpoint)
  std::optional<LoadReport> load;
};

struct GroupSnapshot {
  std::string group;
  std::vector<InstanceView> instances;
};

enum class Action { kHold, kDecodeToPrefill, kPrefillToDecode };
std::string_view action_name(Action action);  // "hold", "decode_to_prefill", ...

enum class Reason {
  kPrefillBottleneck,  // acted: decode -> prefill
  kDecodeBottleneck,   // acted: prefill -> decode
  kBalanced,           // neither side under pressure
  kNotDisaggregated,   // the group has no prefill or no decode instance
  kInsufficientData,   // missing/stale reports or too few observations
  kChangeInProgress,   // an instance of the group is changing role
  kNotSustained,       // a condition holds but not yet for sustain_rounds
  kCoolingDown,        // a condition holds but the group changed recently
  kAtMinimum,          // a condition holds but the giving side is at its minimum
  kNoSlack,            // one side is under pressure, the other has no slack
  kNoCandidate,        // a change is due but no instance of the giving side can change
};
// Stable snake_case names, used as metric label values and in logs.
std::string_view reason_name(Reason reason);

// What the policy measured, for logs and the controller's /metrics.
struct GroupSignals {
  int prefill = 0;  // healthy prefill instances with fresh reports
  int decode = 0;
  std::optional<double> ttft_q;  // prefill TTFT quantile over the window, seconds
  std::optional<double> tpot_q;  // decode time-per-token quantile over the window, seconds
  // Where they come from: the prefill instances' own time to first token
  // (baton:prefill_time_to_first_token_seconds) or, for instances without it,
  // baton:time_to_first_token_seconds; the inter-token latency or, without
  // it, the per-request TPOT.
  bool ttft_from_prefill = false;
  bool tpot_from_itl = false;
  double prefill_rejected = 0;
  double decode_rejected = 0;
  double prefill_waiting = 0;
  double decode_waiting = 0;
  double decode_kv_usage = 0;  // mean over decode instances
  bool prefill_pressure = false;
  bool prefill_slack = false;
  bool decode_pressure = false;
  bool decode_slack = false;
  // The slack above comes from the projection (the other side rejects).
  bool prefill_slack_projected = false;
  bool decode_slack_projected = false;
};

struct RatioDecision {
  std::string group;
  Action action = Action::kHold;
  Reason reason = Reason::kBalanced;
  std::string instance;    // the instance to change, when action != kHold
  Role to = Role::kMixed;  // its new role, when action != kHold
  std::string detail;      // one human-readable line with the numbers behind it
  GroupSignals signals;
};

// What the policy remembers about a group between rounds.
struct GroupState {
  int prefill_streak = 0;  // consecutive rounds "prefill is the bottleneck"
  int decode_streak = 0;   // consecutive rounds "decode is the bottleneck"
  std::optional<Clock::TimePoint> last_change;
  Action last_action = Action::kHold;
};

struct GroupEvaluation {
  RatioDecision decision;
  GroupState next;
};

// One round for one group. Pure and thread-safe.
GroupEvaluation evaluate_group(const RatioPolicy& policy, const GroupSnapshot& snapshot,
                               const GroupState& previous, Clock::TimePoint now);

// Validates a policy (positive SLOs, 0 < slack_fraction < 1, ...).
Status validate(const RatioPolicy& policy);

}  // namespace baton::controller
