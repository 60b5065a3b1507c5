#include "controller/ratio_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

namespace baton::controller {

std::string_view action_name(Action action) {
  switch (action) {
    case Action::kHold:
      return "hold";
    case Action::kDecodeToPrefill:
      return "decode_to_prefill";
    case Action::kPrefillToDecode:
      return "prefill_to_decode";
  }
  return "hold";
}

std::string_view reason_name(Reason reason) {
  switch (reason) {
    case Reason::kPrefillBottleneck:
      return "prefill_bottleneck";
    case Reason::kDecodeBottleneck:
      return "decode_bottleneck";
    case Reason::kBalanced:
      return "balanced";
    case Reason::kNotDisaggregated:
      return "not_disaggregated";
    case Reason::kInsufficientData:
      return "insufficient_data";
    case Reason::kChangeInProgress:
      return "change_in_progress";
    case Reason::kNotSustained:
      return "not_sustained";
    case Reason::kCoolingDown:
      return "cooling_down";
    case Reason::kAtMinimum:
      return "at_minimum";
    case Reason::kNoSlack:
      return "no_slack";
    case Reason::kNoCandidate:
      return "no_candidate";
  }
  return "balanced";
}

Status validate(const RatioPolicy& p) {
  if (!(p.slo.ttft_s > 0) || !(p.slo.tpot_s > 0)) {
    return invalid_argument("slo: ttft and tpot targets must be positive");
  }
  if (!(p.slo.quantile > 0 && p.slo.quantile < 1)) {
    return invalid_argument("slo.quantile: must be in (0, 1)");
  }
  if (!(p.slack_fraction > 0 && p.slack_fraction < 1)) {
    return invalid_argument("slack_fraction: must be in (0, 1)");
  }
  if (!(p.projected_slack_fraction >= p.slack_fraction && p.projected_slack_fraction < 1)) {
    return invalid_argument("projected_slack_fraction: must be in [slack_fraction, 1)");
  }
  if (!(p.kv_slack > 0 && p.kv_slack <= p.kv_high && p.kv_high <= 1)) {
    return invalid_argument("kv_slack, kv_high: need 0 < kv_slack <= kv_high <= 1");
  }
  if (!(p.prefill_queue_high > 0) || !(p.decode_queue_high > 0)) {
    return invalid_argument("prefill_queue_high, decode_queue_high: must be positive");
  }
  if (p.sustain_rounds < 1) return invalid_argument("sustain_rounds: must be at least 1");
  if (p.min_prefill < 1 || p.min_decode < 1) {
    return invalid_argument("min_prefill, min_decode: must be at least 1");
  }
  if (p.cooldown.count() < 0 || p.reverse_cooldown.count() < 0 || p.stale_after.count() <= 0) {
    return invalid_argument("cooldown, reverse_cooldown, stale_after: must not be negative");
  }
  return Status::ok();
}

namespace {

std::string fmt_opt(const std::optional<double>& v) {
  return v ? fmt::format("{:.3f}s", *v) : std::string("n/a");
}

// The instance that gives up its role: the least loaded, so that its drain
// is shortest; ties by name so that the choice is deterministic.
const InstanceView* pick_giver(const std::vector<const InstanceView*>& side) {
  const InstanceView* best = nullptr;
  auto key = [](const InstanceView* v) {
    return std::make_tuple(v->load->running + v->load->waiting, v->load->kv_usage, v->id);
  };
  for (const InstanceView* v : side) {
    if (v->can_change_role && (best == nullptr || key(v) < key(best))) best = v;
  }
  return best;
}

}  // namespace

GroupEvaluation evaluate_group(const RatioPolicy& policy, const GroupSnapshot& snapshot,
                               const GroupState& previous, Clock::TimePoint now) {
  GroupEvaluation out;
  RatioDecision& d = out.decision;
  GroupState& next = out.next;
  next = previous;
  d.group = snapshot.group;
  auto hold = [&](Reason r, std::string detail) {
    d.action = Action::kHold;
    d.reason = r;
    d.detail = std::move(detail);
    return out;
  };

  std::vector<const InstanceView*> prefill, decode;
  bool stale = false;
  for (const InstanceView& v : snapshot.instances) {
    if (v.changing_role) {
      next.prefill_streak = next.decode_streak = 0;
      return hold(Reason::kChangeInProgress, v.id + " is changing role");
    }
    if (!v.healthy || v.role == Role::kMixed) continue;
    if (!v.load || now - v.load->at > policy.stale_after) stale = true;
    (v.role == Role::kPrefill ? prefill : decode).push_back(&v);
  }
  GroupSignals& s = d.signals;
  s.prefill = static_cast<int>(prefill.size());
  s.decode = static_cast<int>(decode.size());
  if (prefill.empty() || decode.empty()) {
    next.prefill_streak = next.decode_streak = 0;
    return hold(Reason::kNotDisaggregated,
                fmt::format("{} healthy prefill, {} healthy decode", s.prefill, s.decode));
  }
  if (stale) {
    next.prefill_streak = next.decode_streak = 0;
    return hold(Reason::kInsufficientData, "a healthy instance has no fresh load report");
  }

  LatencyWindow ttft, prefill_ttft, tpot, itl;
  bool bounds_ok = true;
  for (const InstanceView* v : prefill) {
    bounds_ok = ttft.merge(v->load->ttft) && bounds_ok;
    bounds_ok = prefill_ttft.merge(v->load->prefill_ttft) && bounds_ok;
    s.prefill_rejected += v->load->rejected;
    s.prefill_waiting += v->load->waiting;
  }
  for (const InstanceView* v : decode) {
    bounds_ok = tpot.merge(v->load->tpot) && bounds_ok;
    bounds_ok = itl.merge(v->load->itl) && bounds_ok;
    s.decode_rejected += v->load->rejected;
    s.decode_waiting += v->load->waiting;
    s.decode_kv_usage += v->load->kv_usage;
  }
  s.decode_kv_usage /= static_cast<double>(decode.size());
  if (!bounds_ok) {
    next.prefill_streak = next.decode_streak = 0;
    return hold(Reason::kInsufficientData, "instances expose different histogram buckets");
  }
  const double q = policy.slo.quantile;
  // In P/D the client's first token leaves from the decode instance, so a
  // prefill instance's TTFT is its own (queue and prefill); per-token time is
  // taken as it happens rather than from requests that just ended.
  s.ttft_from_prefill = prefill_ttft.total() > 0;
  s.tpot_from_itl = itl.total() > 0;
  const LatencyWindow& ttft_w = s.ttft_from_prefill ? prefill_ttft : ttft;
  const LatencyWindow& tpot_w = s.tpot_from_itl ? itl : tpot;
  if (ttft_w.total() >= policy.min_samples) s.ttft_q = ttft_w.quantile(q);
  if (tpot_w.total() >= policy.min_samples) s.tpot_q = tpot_w.quantile(q);

  const double per_prefill_waiting = s.prefill_waiting / static_cast<double>(prefill.size());
  const double per_decode_waiting = s.decode_waiting / static_cast<double>(decode.size());
  s.prefill_pressure = (s.ttft_q && *s.ttft_q > policy.slo.ttft_s) || s.prefill_rejected > 0 ||
                       per_prefill_waiting > policy.prefill_queue_high;
  s.prefill_slack =
      s.prefill_rejected == 0 && per_prefill_waiting < 1 &&
      (s.ttft_q ? *s.ttft_q < policy.slack_fraction * policy.slo.ttft_s : s.prefill_waiting == 0);
  s.decode_pressure = (s.tpot_q && *s.tpot_q > policy.slo.tpot_s) || s.decode_rejected > 0 ||
                      s.decode_kv_usage > policy.kv_high ||
                      per_decode_waiting >= policy.decode_queue_high;
  s.decode_slack = s.decode_rejected == 0 && s.decode_waiting == 0 &&
                   s.decode_kv_usage < policy.kv_slack &&
                   (!s.tpot_q || *s.tpot_q < policy.slack_fraction * policy.slo.tpot_s);

  // The giving side's load over one instance fewer, judged only while the
  // side that needs an instance turns requests away.
  auto projected = [](double v, size_t n) { return v * static_cast<double>(n) / (n - 1.0); };
  if (!s.decode_slack && s.prefill_rejected > 0 && decode.size() >= 2 && s.decode_rejected == 0 &&
      s.decode_waiting == 0) {
    s.decode_slack = s.decode_slack_projected =
        projected(s.decode_kv_usage, decode.size()) < policy.kv_slack && s.tpot_q &&
        projected(*s.tpot_q, decode.size()) < policy.projected_slack_fraction * policy.slo.tpot_s;
  }
  if (!s.prefill_slack && s.decode_rejected > 0 && prefill.size() >= 2 && s.prefill_rejected == 0 &&
      projected(per_prefill_waiting, prefill.size()) < 1) {
    s.prefill_slack = s.prefill_slack_projected =
        s.ttft_q &&
        projected(*s.ttft_q, prefill.size()) < policy.projected_slack_fraction * policy.slo.ttft_s;
  }

  const std::string numbers =
      fmt::format(
          "P={} D={} {}ttft_p{:.0f}={} (slo {:.3f}s) {}_p{:.0f}={} (slo {:.3f}s) "
          "rejected P={:.0f} D={:.0f} waiting P={:.0f} D={:.0f} decode_kv={:.2f}",
          s.prefill, s.decode, s.ttft_from_prefill ? "prefill_" : "", q * 100, fmt_opt(s.ttft_q),
          policy.slo.ttft_s, s.tpot_from_itl ? "itl" : "tpot", q * 100, fmt_opt(s.tpot_q),
          policy.slo.tpot_s, s.prefill_rejected, s.decode_rejected, s.prefill_waiting,
          s.decode_waiting, s.decode_kv_usage) +
      (s.decode_slack_projected    ? " (decode slack projected over D-1)"
       : s.prefill_slack_projected ? " (prefill slack projected over P-1)"
                                   : "");

  const bool to_prefill = s.prefill_pressure && s.decode_slack;
  const bool to_decode = s.decode_pressure && s.prefill_slack;
  next.prefill_streak = to_prefill ? previous.prefill_streak + 1 : 0;
  next.decode_streak = to_decode ? previous.decode_streak + 1 : 0;
  if (!to_prefill && !to_decode) {
    if (s.prefill_pressure || s.decode_pressure) {
      return hold(Reason::kNoSlack, std::string(s.prefill_pressure ? "prefill" : "decode") +
                                        " under pressure, the other side has no slack: " + numbers);
    }
    return hold(Reason::kBalanced, numbers);
  }
  const Action action = to_prefill ? Action::kDecodeToPrefill : Action::kPrefillToDecode;
  const int streak = to_prefill ? next.prefill_streak : next.decode_streak;
  if (streak < policy.sustain_rounds) {
    return hold(Reason::kNotSustained,
                fmt::format("{} for {}/{} rounds: {}",
                            to_prefill ? "prefill bottleneck" : "decode bottleneck", streak,
                            policy.sustain_rounds, numbers));
  }
  if (previous.last_change) {
    auto since = now - *previous.last_change;
    bool reverse = previous.last_action != Action::kHold && previous.last_action != action;
    auto wait = reverse ? std::max(policy.cooldown, policy.reverse_cooldown) : policy.cooldown;
    if (since < wait) {
      return hold(Reason::kCoolingDown,
                  fmt::format("last change {:.1f}s ago, {} needs {:.1f}s: {}",
                              std::chrono::duration<double>(since).count(),
                              reverse ? "a reverse change" : "a change",
                              std::chrono::duration<double>(wait).count(), numbers));
    }
  }
  const auto& giver_side = to_prefill ? decode : prefill;
  const int minimum = to_prefill ? policy.min_decode : policy.min_prefill;
  if (static_cast<int>(giver_side.size()) - 1 < minimum) {
    return hold(Reason::kAtMinimum,
                fmt::format("{} is at its minimum of {}: {}", to_prefill ? "decode" : "prefill",
                            minimum, numbers));
  }
  const InstanceView* giver = pick_giver(giver_side);
  if (giver == nullptr) {
    return hold(Reason::kNoCandidate, fmt::format("no {} instance can change role: {}",
                                                  to_prefill ? "decode" : "prefill", numbers));
  }
  d.action = action;
  d.reason = to_prefill ? Reason::kPrefillBottleneck : Reason::kDecodeBottleneck;
  d.instance = giver->id;
  d.to = to_prefill ? Role::kPrefill : Role::kDecode;
  d.detail = fmt::format("move {} {} -> {}: {}", giver->id, to_prefill ? "decode" : "prefill",
                         role_name(d.to), numbers);
  next.prefill_streak = next.decode_streak = 0;
  next.last_change = now;
  next.last_action = action;
  return out;
}

}  // namespace baton::controller
