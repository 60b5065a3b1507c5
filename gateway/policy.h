#pragma once

// Routing policies: pure functions from an immutable snapshot of candidate
// instances and a description of one request to the order in which to try
// the instances. No I/O, no clocks, no hidden randomness: round-robin's
// counter and power-of-two's random bits come in with the request, so the
// gateway, the simulator and the tests run exactly the same decisions.
//
// Instances are named by a uint32 id that the caller keeps stable (the
// gateway never reuses one for another instance). A snapshot is built once
// per decision or shared; it is immutable and safe to share across threads.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/gateway_config.h"

namespace baton::gateway {

// What a policy knows about one candidate.
struct InstanceLoad {
  uint32_t id = 0;
  int32_t in_flight = 0;  // requests open on it (the gateway's own count)
  bool available = true;  // healthy, breaker closed or probing, not draining
};

// Consistent-hash ring over instance ids, `vnodes` points per instance.
// Immutable once built; build it when membership changes, not per request.
class HashRing {
 public:
  HashRing(std::span<const uint32_t> ids, int vnodes = 64);
  // Visits the ids in ring order from the first point at or after `hash`
  // (an id repeats once per virtual node) until visit(id) returns true;
  // returns that id, or nullopt after one full turn.
  template <typename Visit>
  std::optional<uint32_t> walk(uint64_t hash, Visit&& visit) const;
  size_t size() const { return points_.size(); }

 private:
  std::vector<std::pair<uint64_t, uint32_t>> points_;  // sorted by hash
};

// The candidates of one decision: one role of one scenario group.
struct ClusterSnapshot {
  std::vector<InstanceLoad> instances;   // sorted by id, ascending (ids unique)
  std::shared_ptr<const HashRing> ring;  // for consistent_hash; may be null
};

// How much of a request's prompt an instance is believed to hold.
struct PrefixMatch {
  uint32_t id = 0;
  int32_t matched_chars = 0;
};

struct RouteRequest {
  uint64_t sequence = 0;                // round_robin: the caller's counter for the pool
  uint64_t random = 0;                  // power_of_two and tie breaks: fresh random bits
  std::optional<uint64_t> affinity;     // consistent_hash: hash of the session key
  std::span<const PrefixMatch> prefix;  // prefix_aware: from PrefixTree::match
  int64_t imbalance_threshold = 4;      // prefix_aware: in-flight gap that beats affinity
};

// The available instances in the order to try them: the policy's choice
// first, then fallbacks (least loaded first for load-based policies, ring
// order for consistent_hash, rotation order for round_robin); at most
// `max_candidates` ids. Empty when no instance is available.
std::vector<uint32_t> rank_instances(PolicyKind policy, const ClusterSnapshot& snapshot,
                                     const RouteRequest& request, size_t max_candidates);

// Only the first choice (no allocation); nullopt when none is available.
std::optional<uint32_t> choose_instance(PolicyKind policy, const ClusterSnapshot& snapshot,
                                        const RouteRequest& request);

// 64-bit FNV-1a followed by a mixer; stable across runs and platforms.
uint64_t hash_bytes(std::string_view bytes, uint64_t seed = 0);

template <typename Visit>
std::optional<uint32_t> HashRing::walk(uint64_t hash, Visit&& visit) const {
  if (points_.empty()) return std::nullopt;
  auto it = std::lower_bound(points_.begin(), points_.end(), std::make_pair(hash, uint32_t{0}));
  for (size_t n = 0; n < points_.size(); ++n, ++it) {
    if (it == points_.end()) it = points_.begin();
    if (visit(it->second)) return it->second;
  }
  return std::nullopt;
}

}  // namespace baton::gateway
