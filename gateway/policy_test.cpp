#include "gateway/policy.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "gateway/prefix_tree.h"

namespace baton::gateway {
namespace {

ClusterSnapshot snapshot(std::vector<int> loads) {
  ClusterSnapshot s;
  std::vector<uint32_t> ids;
  for (size_t i = 0; i < loads.size(); ++i) {
    s.instances.push_back({static_cast<uint32_t>(10 + i), loads[i], true});
    ids.push_back(static_cast<uint32_t>(10 + i));
  }
  s.ring = std::make_shared<HashRing>(ids);
  return s;
}

TEST(PolicyTest, RoundRobinCyclesOverAvailableInstances) {
  auto s = snapshot({0, 0, 0});
  s.instances[1].available = false;
  std::vector<uint32_t> got;
  for (uint64_t seq = 0; seq < 4; ++seq) {
    RouteRequest r;
    r.sequence = seq;
    got.push_back(*choose_instance(PolicyKind::kRoundRobin, s, r));
  }
  EXPECT_EQ(got, (std::vector<uint32_t>{10, 12, 10, 12}));
}

TEST(PolicyTest, LeastLoadPicksTheLeastLoadedAndRanksTheRest) {
  auto s = snapshot({5, 1, 3, 0});
  s.instances[3].available = false;
  RouteRequest r;
  EXPECT_EQ(rank_instances(PolicyKind::kLeastLoad, s, r, 8), (std::vector<uint32_t>{11, 12, 10}));
  EXPECT_EQ(rank_instances(PolicyKind::kLeastLoad, s, r, 2), (std::vector<uint32_t>{11, 12}));
}

TEST(PolicyTest, LeastLoadSpreadsTiesWithTheRandomBits) {
  auto s = snapshot({0, 0, 0, 0});
  std::set<uint32_t> seen;
  for (uint64_t rnd = 0; rnd < 16; ++rnd) {
    RouteRequest r;
    r.random = rnd;
    seen.insert(*choose_instance(PolicyKind::kLeastLoad, s, r));
  }
  EXPECT_EQ(seen.size(), 4u);
}

TEST(PolicyTest, PowerOfTwoTakesTheLessLoadedOfTwoProbes) {
  auto s = snapshot({9, 1});
  RouteRequest r;
  r.random = (uint64_t{1} << 32) | 0;  // probes instance 0 and instance 1
  EXPECT_EQ(*choose_instance(PolicyKind::kPowerOfTwo, s, r), 11u);
  r.random = 0;  // both probes land on instance 0
  EXPECT_EQ(*choose_instance(PolicyKind::kPowerOfTwo, s, r), 10u);
}

TEST(PolicyTest, NothingAvailableGivesNoChoice) {
  auto s = snapshot({0, 0});
  for (auto& i : s.instances) i.available = false;
  for (PolicyKind p : {PolicyKind::kRoundRobin, PolicyKind::kLeastLoad, PolicyKind::kPowerOfTwo,
                       PolicyKind::kConsistentHash, PolicyKind::kPrefixAware}) {
    RouteRequest r;
    r.affinity = 42;
    EXPECT_FALSE(choose_instance(p, s, r).has_value()) << policy_name(p);
    EXPECT_TRUE(rank_instances(p, s, r, 4).empty());
  }
}

TEST(PolicyTest, ConsistentHashKeepsSessionsAndMovesOnlyTheLostInstancesKeys) {
  auto s = snapshot({0, 0, 0, 0, 0});
  std::map<uint64_t, uint32_t> before;
  for (uint64_t k = 0; k < 500; ++k) {
    RouteRequest r;
    r.affinity = hash_bytes("session-" + std::to_string(k));
    before[k] = *choose_instance(PolicyKind::kConsistentHash, s, r);
    // Load does not move a session.
    r.random = k * 7919;
    EXPECT_EQ(*choose_instance(PolicyKind::kConsistentHash, s, r), before[k]);
  }
  std::set<uint32_t> used;
  for (auto& [k, id] : before) used.insert(id);
  EXPECT_EQ(used.size(), 5u);
  s.instances[2].available = false;  // id 12 goes away
  for (auto& [k, id] : before) {
    RouteRequest r;
    r.affinity = hash_bytes("session-" + std::to_string(k));
    uint32_t now = *choose_instance(PolicyKind::kConsistentHash, s, r);
    if (id != 12) EXPECT_EQ(now, id) << "key " << k;
    EXPECT_NE(now, 12u);
  }
}

TEST(PolicyTest, ConsistentHashWithoutKeyFallsBackToLeastLoad) {
  auto s = snapshot({3, 0, 2});
  RouteRequest r;
  EXPECT_EQ(*choose_instance(PolicyKind::kConsistentHash, s, r), 11u);
}

TEST(PolicyTest, PrefixAwarePrefersTheLongestPrefixUnlessTooImbalanced) {
  auto s = snapshot({2, 0, 1});
  std::vector<PrefixMatch> m = {{10, 128}, {12, 64}};
  RouteRequest r;
  r.prefix = m;
  r.imbalance_threshold = 4;
  EXPECT_EQ(*choose_instance(PolicyKind::kPrefixAware, s, r), 10u);
  s.instances[0].in_flight = 5;  // 5 - 0 > 4: load wins
  EXPECT_EQ(*choose_instance(PolicyKind::kPrefixAware, s, r), 11u);
  s.instances[0].available = false;  // the holder is gone: next longest
  s.instances[0].in_flight = 0;
  EXPECT_EQ(*choose_instance(PolicyKind::kPrefixAware, s, r), 12u);
  RouteRequest none;  // no match at all: least load
  EXPECT_EQ(*choose_instance(PolicyKind::kPrefixAware, s, none), 11u);
}

TEST(PrefixTreeTest, MatchesWholeChunksOfTheLongestSharedPrefix) {
  PrefixTree t(/*chunk_bytes=*/4);
  t.insert("abcdefghijkl", 1, 1);
  t.insert("abcdefgXYZWV", 2, 2);
  std::vector<PrefixMatch> m;
  t.match("abcdefghijkl-and-more", m);
  std::map<uint32_t, int32_t> got;
  for (auto& p : m) got[p.id] = p.matched_chars;
  EXPECT_EQ(got[1], 12);
  EXPECT_EQ(got[2], 4);  // "abcd" shared; "efgX" differs from "efgh"
  m.clear();
  t.match("zzzzabcd", m);
  EXPECT_TRUE(m.empty());
}

TEST(PrefixTreeTest, StaysBoundedAndKeepsRecentPrompts) {
  PrefixTree t(/*chunk_bytes=*/8, /*max_nodes=*/64);
  for (int i = 0; i < 1000; ++i) {
    t.insert("prompt-" + std::to_string(100000 + i) + "-tail-tail", i % 3, i + 1);
  }
  EXPECT_LE(t.node_count(), 64u);
  std::vector<PrefixMatch> m;
  t.match("prompt-" + std::to_string(100000 + 999) + "-tail-tail", m);
  ASSERT_FALSE(m.empty());
  EXPECT_EQ(m.front().id, 999u % 3);
}

TEST(PrefixTreeTest, EraseInstanceForgetsIt) {
  PrefixTree t(4);
  t.insert("aaaabbbb", 1, 1);
  t.insert("aaaabbbb", 2, 2);
  t.erase_instance(1);
  std::vector<PrefixMatch> m;
  t.match("aaaabbbb", m);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].id, 2u);
}

}  // namespace
}  // namespace baton::gateway
