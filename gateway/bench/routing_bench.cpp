// Routing decision time over a large cluster: each policy of gateway/policy.h
// ranks 1,000 instances (first choice plus 3 fallbacks, as the gateway asks
// for), timed call by call, with and without copying the live load into a
// snapshot first (what the gateway does per request), and the prefix tree
// lookup of prefix_aware for a 2 KiB prompt.
//
//   gateway_routing_bench [--instances N] [--decisions N]
//
// Prints p50/p99/max per decision in nanoseconds; the aim is a p99
// under 5 µs at 1,000 instances.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gateway/policy.h"
#include "gateway/prefix_tree.h"

namespace {

using namespace baton::gateway;
using Clock = std::chrono::steady_clock;

struct Stats {
  double p50, p99, max;
};

Stats summarize(std::vector<double>& ns) {
  std::sort(ns.begin(), ns.end());
  auto at = [&](double q) {
    return ns[static_cast<size_t>(q * static_cast<double>(ns.size() - 1))];
  };
  return {at(0.5), at(0.99), ns.back()};
}

template <typename Fn>
Stats time_calls(int n, Fn&& fn) {
  std::vector<double> ns;
  ns.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto t0 = Clock::now();
    fn(i);
    auto t1 = Clock::now();
    ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  return summarize(ns);
}

void print(const char* what, Stats s) {
  std::printf("%-44s p50 %7.0f ns   p99 %7.0f ns   max %8.0f ns\n", what, s.p50, s.p99, s.max);
}

}  // namespace

int main(int argc, char** argv) {
  int instances = 1000;
  int decisions = 200000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--instances")) instances = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--decisions")) decisions = std::atoi(argv[i + 1]);
  }
  std::mt19937_64 rng(7);
  // The live state the gateway reads: an atomic load per instance.
  std::vector<std::atomic<int>> live(static_cast<size_t>(instances));
  std::vector<uint32_t> ids;
  ClusterSnapshot snap;
  for (int i = 0; i < instances; ++i) {
    int load = static_cast<int>(rng() % 32);
    live[static_cast<size_t>(i)] = load;
    ids.push_back(static_cast<uint32_t>(i + 1));
    snap.instances.push_back({static_cast<uint32_t>(i + 1), load, rng() % 50 != 0});
  }
  snap.ring = std::make_shared<HashRing>(ids);

  // A prefix tree holding 20,000 recent prompts over the cluster.
  PrefixTree tree(64, 1 << 18);
  auto prompt_of = [](int family, int variant) {
    std::string p = "system: you are assistant number " + std::to_string(family) + ". ";
    while (p.size() < 2048) p += "context " + std::to_string(family) + " ";
    return p + " user question " + std::to_string(variant);
  };
  for (int i = 0; i < 20000; ++i) {
    tree.insert(prompt_of(i % 500, i), static_cast<uint32_t>(rng() % instances + 1), i + 1);
  }
  std::vector<std::string> prompts;
  for (int i = 0; i < 64; ++i) prompts.push_back(prompt_of(i * 7 % 500, 100000 + i));

  std::printf("routing decisions over %d instances (%d decisions each, 4 candidates ranked)\n",
              instances, decisions);
  std::vector<uint64_t> randoms(static_cast<size_t>(decisions));
  for (auto& r : randoms) r = rng();
  volatile uint64_t sink = 0;
  std::vector<PrefixMatch> matches;
  tree.match(prompts[0], matches);
  for (PolicyKind p : {PolicyKind::kRoundRobin, PolicyKind::kLeastLoad, PolicyKind::kPowerOfTwo,
                       PolicyKind::kConsistentHash, PolicyKind::kPrefixAware}) {
    Stats s = time_calls(decisions, [&](int i) {
      RouteRequest r;
      r.sequence = static_cast<uint64_t>(i);
      r.random = randoms[static_cast<size_t>(i)];
      r.affinity = randoms[static_cast<size_t>(i)] * 31;
      r.prefix = matches;
      sink += rank_instances(p, snap, r, 4).front();
    });
    print((std::string("rank ") + std::string(policy_name(p))).c_str(), s);
  }
  Stats with_snapshot = time_calls(decisions, [&](int i) {
    ClusterSnapshot s;
    s.ring = snap.ring;
    s.instances.reserve(live.size());
    for (size_t k = 0; k < live.size(); ++k) {
      s.instances.push_back({ids[k], live[k].load(std::memory_order_relaxed), true});
    }
    RouteRequest r;
    r.random = randoms[static_cast<size_t>(i)];
    sink += rank_instances(PolicyKind::kLeastLoad, s, r, 4).front();
  });
  print("snapshot of live load + rank least_load", with_snapshot);
  Stats lookup = time_calls(decisions / 10, [&](int i) {
    std::vector<PrefixMatch> m;
    tree.match(prompts[static_cast<size_t>(i) % prompts.size()], m);
    sink += m.size();
  });
  print("prefix tree match, 2 KiB prompt", lookup);
  Stats insert = time_calls(decisions / 10, [&](int i) {
    tree.insert(prompts[static_cast<size_t>(i) % prompts.size()], static_cast<uint32_t>(i % 7 + 1),
                static_cast<uint64_t>(30000 + i));
  });
  print("prefix tree insert, 2 KiB prompt", insert);
  std::printf("(clock read overhead is included in every figure; sink %llu)\n",
              static_cast<unsigned long long>(sink % 10));
  return 0;
}
