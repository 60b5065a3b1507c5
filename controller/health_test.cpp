#include "controller/health.h"

#include <gtest/gtest.h>

#include <vector>

namespace baton::controller {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Prober {
  HealthPolicy policy;
  InstanceHealth health;
  FakeClock clock;
  std::vector<HealthTransition> transitions;

  void probe(bool ok, const char* detail = "deadline_exceeded") {
    clock.advance(seconds(1));
    HealthStep step = observe(policy, health, Probe{clock.now(), ok, ok ? "" : detail});
    health = step.next;
    if (step.transition) transitions.push_back(*step.transition);
  }
};

TEST(Health, NewInstanceIsRoutedAfterItsFirstSuccessfulProbe) {
  Prober r;
  EXPECT_FALSE(r.health.routable());
  r.probe(false, "HTTP 503");  // still loading
  EXPECT_FALSE(r.health.routable());
  r.probe(true);
  EXPECT_TRUE(r.health.routable());
  ASSERT_EQ(r.transitions.size(), 1u);
  EXPECT_EQ(r.transitions[0].to, HealthState::kHealthy);
}

TEST(Health, OutAfterConsecutiveFailuresAndBackAfterConsecutiveSuccesses) {
  Prober r;
  r.probe(true);
  r.probe(false);
  r.probe(false);
  EXPECT_TRUE(r.health.routable()) << "two failures are under the threshold of three";
  r.probe(false, "unavailable: connection refused");
  EXPECT_FALSE(r.health.routable());
  EXPECT_EQ(r.health.state, HealthState::kUnhealthy);
  ASSERT_EQ(r.transitions.size(), 2u);
  EXPECT_NE(r.transitions[1].reason.find("3 consecutive failed probes"), std::string::npos);
  EXPECT_NE(r.transitions[1].reason.find("connection refused"), std::string::npos);

  r.probe(true);
  EXPECT_FALSE(r.health.routable()) << "one success is under the recovery threshold";
  r.probe(true);
  EXPECT_TRUE(r.health.routable());
  EXPECT_EQ(r.transitions.size(), 3u);
}

TEST(Health, AlternatingProbesNeverFlap) {
  Prober r;
  r.probe(true);
  for (int i = 0; i < 20; ++i) r.probe(i % 2 == 0);
  EXPECT_TRUE(r.health.routable());
  EXPECT_EQ(r.transitions.size(), 1u);

  // Once out, alternating results do not bring it back either.
  for (int i = 0; i < 3; ++i) r.probe(false);
  ASSERT_FALSE(r.health.routable());
  for (int i = 0; i < 20; ++i) r.probe(i % 2 == 0);
  EXPECT_FALSE(r.health.routable());
  EXPECT_EQ(r.transitions.size(), 2u);
}

TEST(Health, SilenceTakesAHealthyInstanceOut) {
  Prober r;
  r.probe(true);
  r.clock.advance(r.policy.max_silence - milliseconds(1));
  EXPECT_FALSE(check_silence(r.policy, r.health, r.clock.now()).transition.has_value());
  r.clock.advance(milliseconds(1));
  HealthStep step = check_silence(r.policy, r.health, r.clock.now());
  ASSERT_TRUE(step.transition.has_value());
  EXPECT_EQ(step.next.state, HealthState::kUnhealthy);
  EXPECT_NE(step.transition->reason.find("no successful probe"), std::string::npos);
}

}  // namespace
}  // namespace baton::controller
