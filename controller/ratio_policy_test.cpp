#include "controller/ratio_policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

namespace baton::controller {
namespace {

using std::chrono::seconds;

const std::vector<double> kBounds = {0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 4, 8};

// A window of n observations all in the bucket that holds `seconds_each`.
LatencyWindow window_at(double seconds_each, double n) {
  LatencyWindow w{kBounds, std::vector<double>(kBounds.size() + 1, 0)};
  size_t i = std::lower_bound(kBounds.begin(), kBounds.end(), seconds_each) - kBounds.begin();
  w.counts[i] = n;
  return w;
}

struct Side {
  double ttft_s = 0.1;   // prefill latency of the window
  double tpot_s = 0.01;  // decode latency of the window
  double rejected = 0;
  double waiting = 0;
  double kv = 0.2;
  double samples = 50;
  // When positive: the prefill instances' own TTFT (prefill side) and the
  // inter-token latency (decode side), which instances expose next to the
  // client TTFT and the per-request TPOT.
  double prefill_ttft_s = 0;
  double itl_s = 0;
};

class Group {
 public:
  Group(int prefill, int decode) {
    policy_.slo = {2.0, 0.1, 0.9};
    policy_.sustain_rounds = 3;
    policy_.cooldown = seconds(30);
    policy_.reverse_cooldown = seconds(120);
    for (int i = 0; i < prefill; ++i) add("p" + std::to_string(i), Role::kPrefill);
    for (int i = 0; i < decode; ++i) add("d" + std::to_string(i), Role::kDecode);
  }

  void add(std::string id, Role role) {
    InstanceView v;
    v.id = std::move(id);
    v.role = role;
    v.healthy = true;
    snapshot_.instances.push_back(v);
  }
  InstanceView& instance(const std::string& id) {
    for (auto& v : snapshot_.instances) {
      if (v.id == id) return v;
    }
    ADD_FAILURE() << "no instance " << id;
    return snapshot_.instances.front();
  }
  int count(Role role) const {
    return static_cast<int>(std::count_if(snapshot_.instances.begin(), snapshot_.instances.end(),
                                          [&](const InstanceView& v) { return v.role == role; }));
  }

  // One round, `interval` after the previous: fresh reports for every
  // instance from the two sides' loads, then the policy. An acted decision
  // is applied at once (the role change completes before the next round).
  RatioDecision round(const Side& prefill, const Side& decode, seconds interval = seconds(5)) {
    clock_.advance(interval);
    for (InstanceView& v : snapshot_.instances) {
      const Side& s = v.role == Role::kPrefill ? prefill : decode;
      LoadReport r;
      r.at = clock_.now();
      r.waiting = s.waiting;
      r.kv_usage = s.kv;
      r.rejected = s.rejected;
      r.running = v.id == "d1" ? 1 : 4;  // d1 is the least loaded decode instance
      if (v.role == Role::kPrefill && s.ttft_s > 0) r.ttft = window_at(s.ttft_s, s.samples);
      if (v.role == Role::kDecode) r.tpot = window_at(s.tpot_s, s.samples);
      if (v.role == Role::kPrefill && s.prefill_ttft_s > 0) {
        r.prefill_ttft = window_at(s.prefill_ttft_s, s.samples);
      }
      if (v.role == Role::kDecode && s.itl_s > 0) r.itl = window_at(s.itl_s, 20 * s.samples);
      v.load = r;
    }
    GroupEvaluation e = evaluate_group(policy_, snapshot_, state_, clock_.now());
    state_ = e.next;
    if (e.decision.action != Action::kHold) {
      instance(e.decision.instance).role = e.decision.to;
      ++changes_;
    }
    return e.decision;
  }

  RatioPolicy policy_;
  GroupSnapshot snapshot_{"default", {}};
  GroupState state_;
  FakeClock clock_;
  int changes_ = 0;
};

const Side kSlowPrefill{.ttft_s = 3.0};
const Side kIdleDecode{.tpot_s = 0.015, .kv = 0.1};
const Side kSlowDecode{.tpot_s = 0.3, .kv = 0.6};
const Side kIdlePrefill{.ttft_s = 0.15};

TEST(RatioPolicy, SustainedPrefillBottleneckMovesTheLeastLoadedDecodeInstance) {
  Group g(1, 3);
  RatioDecision d = g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(d.action, Action::kHold);
  EXPECT_EQ(d.reason, Reason::kNotSustained);
  EXPECT_NE(d.detail.find("1/3"), std::string::npos) << d.detail;
  EXPECT_EQ(g.round(kSlowPrefill, kIdleDecode).reason, Reason::kNotSustained);
  d = g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(d.action, Action::kDecodeToPrefill);
  EXPECT_EQ(d.reason, Reason::kPrefillBottleneck);
  EXPECT_EQ(d.instance, "d1");
  EXPECT_EQ(d.to, Role::kPrefill);
  EXPECT_EQ(d.group, "default");
  EXPECT_NE(d.detail.find("ttft_p90=3.800s"), std::string::npos) << d.detail;
  EXPECT_TRUE(d.signals.prefill_pressure);
  EXPECT_TRUE(d.signals.decode_slack);
  EXPECT_EQ(g.count(Role::kPrefill), 2);
}

TEST(RatioPolicy, SustainedDecodeBottleneckMovesAPrefillInstance) {
  Group g(3, 1);
  for (int i = 0; i < 2; ++i) EXPECT_EQ(g.round(kIdlePrefill, kSlowDecode).action, Action::kHold);
  RatioDecision d = g.round(kIdlePrefill, kSlowDecode);
  EXPECT_EQ(d.action, Action::kPrefillToDecode);
  EXPECT_EQ(d.reason, Reason::kDecodeBottleneck);
  EXPECT_EQ(d.to, Role::kDecode);
  EXPECT_EQ(g.count(Role::kDecode), 2);
}

TEST(RatioPolicy, RejectionsAloneArePressure) {
  Group g(1, 3);
  Side rejecting = kIdlePrefill;
  rejecting.rejected = 5;
  for (int i = 0; i < 2; ++i) g.round(rejecting, kIdleDecode);
  EXPECT_EQ(g.round(rejecting, kIdleDecode).reason, Reason::kPrefillBottleneck);

  Group h(3, 1);
  Side kv_full = kIdleDecode;
  kv_full.rejected = 2;  // a decode instance refusing for want of KV room
  for (int i = 0; i < 2; ++i) h.round(kIdlePrefill, kv_full);
  EXPECT_EQ(h.round(kIdlePrefill, kv_full).reason, Reason::kDecodeBottleneck);
}

TEST(RatioPolicy, BetweenSlackAndTargetNothingMoves) {
  // Prefill at 1.5 s: under its 2 s target, above the 1 s slack line; decode
  // at 70 ms, between its 50 ms slack line and its 100 ms target.
  Group g(2, 2);
  Side near_prefill{.ttft_s = 1.5};
  Side near_decode{.tpot_s = 0.07};
  for (int i = 0; i < 20; ++i) {
    RatioDecision d = g.round(near_prefill, near_decode);
    EXPECT_EQ(d.reason, Reason::kBalanced) << d.detail;
  }
  // Prefill misses, but decode has no slack to give.
  for (int i = 0; i < 10; ++i) {
    RatioDecision d = g.round(kSlowPrefill, near_decode);
    EXPECT_EQ(d.reason, Reason::kNoSlack) << d.detail;
  }
  EXPECT_EQ(g.changes_, 0);
}

TEST(RatioPolicy, CooldownSpacesChangesAndAReverseWaitsLonger) {
  Group g(1, 4);
  for (int i = 0; i < 3; ++i) g.round(kSlowPrefill, kIdleDecode);
  ASSERT_EQ(g.changes_, 1);
  // Still a prefill bottleneck: held for the 30 s cool-down (5 s rounds).
  for (int i = 0; i < 5; ++i) {
    RatioDecision d = g.round(kSlowPrefill, kIdleDecode);
    EXPECT_EQ(d.reason, i < 2 ? Reason::kNotSustained : Reason::kCoolingDown) << i;
  }
  EXPECT_EQ(g.round(kSlowPrefill, kIdleDecode).reason, Reason::kPrefillBottleneck);
  ASSERT_EQ(g.changes_, 2);

  // Load turns around at once: the reverse waits for 120 s since the change.
  int rounds = 0;
  while (g.changes_ == 2 && rounds < 100) {
    g.round(kIdlePrefill, kSlowDecode);
    ++rounds;
  }
  EXPECT_EQ(g.changes_, 3);
  EXPECT_EQ(rounds, 120 / 5) << "the reverse change came after the reverse cool-down";
}

TEST(RatioPolicy, AlternatingBottlenecksNeverFlap) {
  Group g(2, 2);
  for (int i = 0; i < 100; ++i) {
    RatioDecision d =
        i % 2 == 0 ? g.round(kSlowPrefill, kIdleDecode) : g.round(kIdlePrefill, kSlowDecode);
    EXPECT_EQ(d.action, Action::kHold);
  }
  EXPECT_EQ(g.changes_, 0);
}

TEST(RatioPolicy, ClosedLoopSettlesWithoutOscillating) {
  // A toy cluster: 8 instances, prefill work W_p and decode work W_d shared
  // evenly on each side; latency grows with the work per instance. The
  // policy must move toward the balance and then stop.
  Group g(1, 7);
  auto sides = [&](double wp, double wd) {
    double p = g.count(Role::kPrefill), dn = g.count(Role::kDecode);
    Side pre{.ttft_s = 0.2 * wp / p, .rejected = wp / p > 20 ? 3.0 : 0.0};
    Side dec{.tpot_s = 0.005 * wd / dn, .kv = std::min(1.0, 0.05 * wd / dn)};
    return std::make_pair(pre, dec);
  };
  int changes_in_phase = 0;
  // Phase 1: long prompts, short outputs.
  for (int i = 0; i < 200; ++i) {
    auto [pre, dec] = sides(40, 20);
    if (g.round(pre, dec).action != Action::kHold) ++changes_in_phase;
  }
  EXPECT_GE(g.count(Role::kPrefill), 4) << "prefill got the instances it needed";
  EXPECT_LE(changes_in_phase, 6);
  int settled = g.changes_;
  for (int i = 0; i < 50; ++i) {
    auto [pre, dec] = sides(40, 20);
    EXPECT_EQ(g.round(pre, dec).action, Action::kHold);
  }
  EXPECT_EQ(g.changes_, settled);
  // Phase 2: short prompts, long outputs.
  changes_in_phase = 0;
  for (int i = 0; i < 300; ++i) {
    auto [pre, dec] = sides(4, 120);
    if (g.round(pre, dec).action != Action::kHold) ++changes_in_phase;
  }
  EXPECT_GE(g.count(Role::kDecode), 6);
  EXPECT_LE(changes_in_phase, 6);
}

TEST(RatioPolicy, PrefillInstancesAreJudgedByTheirOwnTimeToFirstToken) {
  // In P/D the client's first token leaves from the decode instance: prefill
  // instances observe no client TTFT, only their own queue and prefill time.
  Group g(1, 3);
  Side slow{.ttft_s = 0, .prefill_ttft_s = 3.0};
  RatioDecision d = g.round(slow, kIdleDecode);
  EXPECT_TRUE(d.signals.ttft_from_prefill);
  ASSERT_TRUE(d.signals.ttft_q.has_value());
  EXPECT_NEAR(*d.signals.ttft_q, 3.8, 1e-9);
  EXPECT_TRUE(d.signals.prefill_pressure);
  EXPECT_NE(d.detail.find("prefill_ttft_p90=3.800s"), std::string::npos) << d.detail;
  g.round(slow, kIdleDecode);
  EXPECT_EQ(g.round(slow, kIdleDecode).reason, Reason::kPrefillBottleneck);

  // Where both exist the prefill side's own figure wins, both ways.
  Group h(1, 3);
  Side fast_own{.ttft_s = 3.0, .prefill_ttft_s = 0.15};
  for (int i = 0; i < 5; ++i) {
    d = h.round(fast_own, kIdleDecode);
    EXPECT_FALSE(d.signals.prefill_pressure) << d.detail;
    EXPECT_TRUE(d.signals.prefill_slack) << d.detail;
  }
  EXPECT_EQ(h.changes_, 0);

  // No figure at all and no queue is slack, as before.
  Group k(1, 3);
  d = k.round(Side{.samples = 0}, kIdleDecode);
  EXPECT_FALSE(d.signals.ttft_q.has_value());
  EXPECT_TRUE(d.signals.prefill_slack);
}

TEST(RatioPolicy, InterTokenLatencyShowsAGrowingBatchBeforeRequestsEnd) {
  // Decode's batch has grown: tokens now come every 300 ms, while the
  // requests that end (and report their mean TPOT) started on a small batch.
  Group g(3, 1);
  Side growing{.tpot_s = 0.015, .kv = 0.3, .itl_s = 0.3};
  RatioDecision d = g.round(kIdlePrefill, growing);
  EXPECT_TRUE(d.signals.tpot_from_itl);
  EXPECT_TRUE(d.signals.decode_pressure) << d.detail;
  EXPECT_NE(d.detail.find("itl_p90=0.470s"), std::string::npos) << d.detail;
  g.round(kIdlePrefill, growing);
  EXPECT_EQ(g.round(kIdlePrefill, growing).reason, Reason::kDecodeBottleneck);
}

TEST(RatioPolicy, APreviousLoadsSlowRequestsDoNotHideDecodeSlack) {
  // The load turned to long prompts: the requests still ending on decode
  // report the previous phase's slow TPOT, but tokens come fast now.
  Group g(1, 3);
  Side drained{.tpot_s = 0.3, .kv = 0.2, .itl_s = 0.015};
  RatioDecision d = g.round(kSlowPrefill, drained);
  EXPECT_TRUE(d.signals.decode_slack) << d.detail;
  g.round(kSlowPrefill, drained);
  EXPECT_EQ(g.round(kSlowPrefill, drained).reason, Reason::kPrefillBottleneck);

  // Without the inter-token latency the same group waits (as instances that
  // expose only the per-request TPOT make it).
  Group h(1, 3);
  Side no_itl{.tpot_s = 0.3, .kv = 0.2};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(h.round(kSlowPrefill, no_itl).reason, Reason::kNoSlack);
}

TEST(RatioPolicy, AQueueOnDecodeIsPressureBeforeLatencyShowsIt) {
  // Decode latency is still fine, but requests wait: the batch is full.
  Group g(3, 2);
  Side queued{.tpot_s = 0.015, .waiting = 2, .kv = 0.3, .itl_s = 0.04};
  RatioDecision d = g.round(kIdlePrefill, queued);
  EXPECT_TRUE(d.signals.decode_pressure) << d.detail;
  EXPECT_FALSE(d.signals.decode_slack);
  g.round(kIdlePrefill, queued);
  EXPECT_EQ(g.round(kIdlePrefill, queued).reason, Reason::kDecodeBottleneck);

  // Less than one waiting request per decode instance: neither pressure nor
  // slack.
  Group h(3, 2);
  Side some{.tpot_s = 0.015, .waiting = 0.5, .kv = 0.3};
  for (int i = 0; i < 10; ++i) {
    d = h.round(kIdlePrefill, some);
    EXPECT_EQ(d.reason, Reason::kBalanced) << d.detail;
    EXPECT_FALSE(d.signals.decode_slack);
  }
  EXPECT_EQ(h.changes_, 0);
}

TEST(RatioPolicy, FlickeringQueuesAndTokenLatencyNeverFlap) {
  // A decode queue and slow tokens that come and go every other round, and
  // the same on the prefill side: no condition is ever sustained.
  Group g(2, 2);
  Side queued{.waiting = 3, .itl_s = 0.3};
  Side fast{.itl_s = 0.015};
  Side slow_prefill{.prefill_ttft_s = 3.0};
  Side fast_prefill{.prefill_ttft_s = 0.15};
  for (int i = 0; i < 100; ++i) {
    RatioDecision d = i % 2 == 0 ? g.round(fast_prefill, queued) : g.round(slow_prefill, fast);
    EXPECT_EQ(d.action, Action::kHold) << i << ": " << d.detail;
  }
  EXPECT_EQ(g.changes_, 0);

  // Sustained shifts, one after the other, are spaced by the cool-downs.
  Group h(2, 2);
  std::vector<std::pair<double, Action>> changes;
  for (int i = 0; i < 120; ++i) {
    const bool decode_heavy = (i / 10) % 2 == 0;  // the load turns every 50 s
    RatioDecision d = decode_heavy ? h.round(fast_prefill, queued) : h.round(slow_prefill, fast);
    if (d.action != Action::kHold) changes.emplace_back(5.0 * (i + 1), d.action);
  }
  ASSERT_GE(changes.size(), 2u);
  for (size_t i = 1; i < changes.size(); ++i) {
    const bool reverse = changes[i].second != changes[i - 1].second;
    EXPECT_GE(changes[i].first - changes[i - 1].first, reverse ? 120 : 30) << i;
  }
}

TEST(RatioPolicy, WhilePrefillRejectsDecodeSlackIsProjectedOverOneInstanceFewer) {
  // Decode tokens at p90 19 ms against a 35 ms target: above the 17.5 ms
  // slack line, but over one decode instance fewer (x 4/3 = 25 ms) still
  // under 0.8 x the target (28 ms).
  Group g(1, 4);
  g.policy_.slo.tpot_s = 0.035;
  const Side decode{.kv = 0.1, .itl_s = 0.015};
  // Slow prefill that still takes every request: no projection, no move.
  for (int i = 0; i < 10; ++i) {
    RatioDecision d = g.round(kSlowPrefill, decode);
    EXPECT_EQ(d.reason, Reason::kNoSlack) << d.detail;
    EXPECT_FALSE(d.signals.decode_slack_projected);
  }
  // Prefill turns requests away: decode gives an instance, after the same
  // sustain rounds.
  const Side rejecting{.ttft_s = 3.0, .rejected = 5};
  EXPECT_EQ(g.round(rejecting, decode).reason, Reason::kNotSustained);
  EXPECT_EQ(g.round(rejecting, decode).reason, Reason::kNotSustained);
  RatioDecision d = g.round(rejecting, decode);
  EXPECT_EQ(d.reason, Reason::kPrefillBottleneck) << d.detail;
  EXPECT_TRUE(d.signals.decode_slack_projected);
  EXPECT_NE(d.detail.find("decode slack projected over D-1"), std::string::npos) << d.detail;
  ASSERT_EQ(g.changes_, 1);
  // With 3 decode instances left the same latency projects to 28.5 ms, over
  // the margin: decode keeps them however long prefill rejects, and nothing
  // moves back (decode is under its target).
  for (int i = 0; i < 60; ++i) {
    RatioDecision h = g.round(rejecting, decode);
    EXPECT_EQ(h.action, Action::kHold) << h.detail;
    EXPECT_EQ(h.reason, Reason::kNoSlack) << i << ": " << h.detail;
  }
  EXPECT_EQ(g.changes_, 1);
  EXPECT_EQ(g.count(Role::kDecode), 3);
}

TEST(RatioPolicy, ProjectedSlackNeedsNoQueueNoRejectionsAndKvRoom) {
  const Side rejecting{.ttft_s = 3.0, .rejected = 5};
  for (Side decode : {Side{.rejected = 1, .kv = 0.1, .itl_s = 0.015},
                      Side{.waiting = 1, .kv = 0.1, .itl_s = 0.015},
                      Side{.kv = 0.45, .itl_s = 0.015}}) {  // 0.45 x 4/3 = 0.6 > kv_slack
    Group g(1, 4);
    g.policy_.slo.tpot_s = 0.035;
    for (int i = 0; i < 10; ++i) EXPECT_EQ(g.round(rejecting, decode).action, Action::kHold);
    EXPECT_EQ(g.changes_, 0);
  }
  // A single decode instance has nothing to project over.
  Group one(1, 1);
  one.policy_.slo.tpot_s = 0.035;
  for (int i = 0; i < 10; ++i) {
    RatioDecision d = one.round(rejecting, Side{.kv = 0.1, .itl_s = 0.015});
    EXPECT_EQ(d.reason, Reason::kNoSlack) << d.detail;
  }
}

TEST(RatioPolicy, WhileDecodeRejectsPrefillSlackIsProjectedToo) {
  // Prefill's own TTFT at p90 0.95 s against 1.75 s: above the 0.875 s slack
  // line; x 4/3 = 1.27 s is under 0.8 x 1.75 = 1.4 s, x 3/2 = 1.43 s is not.
  Group g(4, 1);
  g.policy_.slo.ttft_s = 1.75;
  const Side prefill{.ttft_s = 0.7};
  const Side slow_decode{.tpot_s = 0.3, .kv = 0.3};
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(g.round(prefill, slow_decode).reason, Reason::kNoSlack) << i;
  }
  const Side rejecting{.tpot_s = 0.3, .rejected = 2, .kv = 0.3};
  for (int i = 0; i < 2; ++i) g.round(prefill, rejecting);
  RatioDecision d = g.round(prefill, rejecting);
  EXPECT_EQ(d.reason, Reason::kDecodeBottleneck) << d.detail;
  EXPECT_TRUE(d.signals.prefill_slack_projected);
  for (int i = 0; i < 60; ++i) EXPECT_EQ(g.round(prefill, rejecting).action, Action::kHold) << i;
  EXPECT_EQ(g.count(Role::kPrefill), 3);
}

TEST(RatioPolicy, NeverBelowTheMinimum) {
  Group g(1, 1);
  for (int i = 0; i < 2; ++i) g.round(kSlowPrefill, kIdleDecode);
  RatioDecision d = g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(d.reason, Reason::kAtMinimum) << d.detail;
  EXPECT_EQ(g.changes_, 0);
}

TEST(RatioPolicy, HoldsOnMissingStaleOrTooFewData) {
  Group g(1, 3);
  g.round(kSlowPrefill, kIdleDecode);
  // One instance's report is 11 s old (stale after 10 s).
  g.clock_.advance(seconds(11));
  GroupEvaluation e = evaluate_group(g.policy_, g.snapshot_, g.state_, g.clock_.now());
  EXPECT_EQ(e.decision.reason, Reason::kInsufficientData);
  EXPECT_EQ(e.next.prefill_streak, 0);

  // Too few observations to judge latency: slow TTFT over 3 requests counts
  // for nothing (and prefill is not under pressure without them).
  Group h(1, 3);
  Side few = kSlowPrefill;
  few.samples = 3;
  for (int i = 0; i < 5; ++i) EXPECT_EQ(h.round(few, kIdleDecode).action, Action::kHold);
  EXPECT_FALSE(h.round(few, kIdleDecode).signals.ttft_q.has_value());
}

TEST(RatioPolicy, UnhealthyInstancesDoNotCountAndChangesInFlightHold) {
  Group g(1, 2);
  g.instance("d0").healthy = false;  // left: 1 P, 1 D, at the minimum
  for (int i = 0; i < 2; ++i) g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(g.round(kSlowPrefill, kIdleDecode).reason, Reason::kAtMinimum);

  g.instance("d0").healthy = true;
  g.instance("d0").changing_role = true;
  RatioDecision d = g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(d.reason, Reason::kChangeInProgress);
  EXPECT_NE(d.detail.find("d0"), std::string::npos);
}

TEST(RatioPolicy, InstancesThatCannotChangeAreNotPicked) {
  Group g(1, 3);
  g.instance("d1").can_change_role = false;  // the least loaded, but it refused before
  for (int i = 0; i < 2; ++i) g.round(kSlowPrefill, kIdleDecode);
  RatioDecision d = g.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(d.reason, Reason::kPrefillBottleneck);
  EXPECT_EQ(d.instance, "d0");

  Group h(1, 2);
  h.instance("d0").can_change_role = false;
  h.instance("d1").can_change_role = false;
  for (int i = 0; i < 2; ++i) h.round(kSlowPrefill, kIdleDecode);
  EXPECT_EQ(h.round(kSlowPrefill, kIdleDecode).reason, Reason::kNoCandidate);
  EXPECT_EQ(h.changes_, 0);
}

TEST(RatioPolicy, MixedGroupsAreNotDisaggregated) {
  Group g(0, 0);
  g.add("m0", Role::kMixed);
  g.add("m1", Role::kMixed);
  EXPECT_EQ(g.round(kSlowPrefill, kIdleDecode).reason, Reason::kNotDisaggregated);
}

TEST(RatioPolicy, ValidateRefusesNonsense) {
  RatioPolicy p;
  EXPECT_TRUE(validate(p).is_ok());
  p.slack_fraction = 1.5;
  EXPECT_FALSE(validate(p).is_ok());
  p = RatioPolicy{};
  p.min_decode = 0;
  EXPECT_FALSE(validate(p).is_ok());
  p = RatioPolicy{};
  p.slo.ttft_s = 0;
  EXPECT_FALSE(validate(p).is_ok());
  p = RatioPolicy{};
  p.decode_queue_high = 0;
  EXPECT_FALSE(validate(p).is_ok());
  p = RatioPolicy{};
  p.projected_slack_fraction = 0.4;  // below slack_fraction
  EXPECT_FALSE(validate(p).is_ok());
  p.projected_slack_fraction = 1.0;
  EXPECT_FALSE(validate(p).is_ok());
}

TEST(RatioPolicy, NamesAreStable) {
  EXPECT_EQ(reason_name(Reason::kPrefillBottleneck), "prefill_bottleneck");
  EXPECT_EQ(action_name(Action::kDecodeToPrefill), "decode_to_prefill");
  EXPECT_EQ(*parse_role("decode"), Role::kDecode);
  EXPECT_FALSE(parse_role("both").is_ok());
}

}  // namespace
}  // namespace baton::controller
