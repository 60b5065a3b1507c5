#include "gateway/policy.h"

#include <algorithm>
#include <cstring>

namespace baton::gateway {

uint64_t hash_bytes(std::string_view bytes, uint64_t seed) {
  uint64_t h = 0xcbf29ce484222325ull ^ (seed * 0x9e3779b97f4a7c15ull);
  for (unsigned char c : bytes) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  // splitmix64 finaliser: FNV alone clusters short keys on the ring.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

HashRing::HashRing(std::span<const uint32_t> ids, int vnodes) {
  points_.reserve(ids.size() * static_cast<size_t>(vnodes));
  for (uint32_t id : ids) {
    for (int v = 0; v < vnodes; ++v) {
      char key[16];
      std::memcpy(key, &id, 4);
      std::memcpy(key + 4, &v, 4);
      points_.emplace_back(hash_bytes(std::string_view(key, 8), 0x5eed), id);
    }
  }
  std::sort(points_.begin(), points_.end());
}

namespace {

// Least loaded first; among equals the order rotates with `random` so that
// ties do not all land on the first instance.
struct LoadOrder {
  size_t n;
  uint64_t random;
  bool operator()(const std::pair<int32_t, size_t>& a, const std::pair<int32_t, size_t>& b) const {
    if (a.first != b.first) return a.first < b.first;
    return (a.second + random) % n < (b.second + random) % n;
  }
};

std::optional<size_t> least_loaded(const ClusterSnapshot& s, uint64_t random) {
  const size_t n = s.instances.size();
  std::optional<size_t> best;
  LoadOrder less{n == 0 ? 1 : n, random};
  for (size_t i = 0; i < n; ++i) {
    const auto& inst = s.instances[i];
    if (!inst.available) continue;
    if (!best || less({inst.in_flight, i}, {s.instances[*best].in_flight, *best})) best = i;
  }
  return best;
}

// Appends available ids by ascending load, skipping those already in `out`.
void append_by_load(const ClusterSnapshot& s, uint64_t random, size_t max,
                    std::vector<uint32_t>& out) {
  if (out.size() >= max) return;
  std::vector<std::pair<int32_t, size_t>> order;
  order.reserve(s.instances.size());
  for (size_t i = 0; i < s.instances.size(); ++i) {
    const auto& inst = s.instances[i];
    if (!inst.available) continue;
    if (std::find(out.begin(), out.end(), inst.id) != out.end()) continue;
    order.emplace_back(inst.in_flight, i);
  }
  const size_t take = std::min(order.size(), max - out.size());
  LoadOrder less{s.instances.empty() ? 1 : s.instances.size(), random};
  std::partial_sort(order.begin(), order.begin() + static_cast<ptrdiff_t>(take), order.end(), less);
  for (size_t i = 0; i < take; ++i) out.push_back(s.instances[order[i].second].id);
}

const InstanceLoad* find_id(const ClusterSnapshot& s, uint32_t id) {
  for (const auto& inst : s.instances) {
    if (inst.id == id) return &inst;
  }
  return nullptr;
}

std::optional<size_t> round_robin(const ClusterSnapshot& s, uint64_t sequence) {
  size_t available = 0;
  for (const auto& inst : s.instances) available += inst.available ? 1 : 0;
  if (available == 0) return std::nullopt;
  size_t k = sequence % available;
  for (size_t i = 0; i < s.instances.size(); ++i) {
    if (!s.instances[i].available) continue;
    if (k-- == 0) return i;
  }
  return std::nullopt;
}

std::optional<size_t> power_of_two(const ClusterSnapshot& s, uint64_t random) {
  const size_t n = s.instances.size();
  if (n == 0) return std::nullopt;
  // Two probes from independent halves of the random bits; an unavailable
  // probe falls forward to the next available instance.
  auto probe = [&](uint64_t r) -> std::optional<size_t> {
    size_t start = r % n;
    for (size_t k = 0; k < n; ++k) {
      size_t i = (start + k) % n;
      if (s.instances[i].available) return i;
    }
    return std::nullopt;
  };
  auto a = probe(random & 0xffffffffu);
  if (!a) return std::nullopt;
  auto b = probe(random >> 32);
  if (!b || s.instances[*a].in_flight <= s.instances[*b].in_flight) return a;
  return b;
}

std::optional<uint32_t> consistent_hash(const ClusterSnapshot& s, uint64_t key) {
  if (!s.ring) return std::nullopt;
  return s.ring->walk(key, [&](uint32_t id) {
    const InstanceLoad* inst = find_id(s, id);
    return inst != nullptr && inst->available;
  });
}

std::optional<size_t> prefix_aware(const ClusterSnapshot& s, const RouteRequest& r) {
  auto least = least_loaded(s, r.random);
  if (!least) return std::nullopt;
  std::optional<size_t> best;
  int32_t best_match = 0;
  for (const PrefixMatch& m : r.prefix) {
    if (m.matched_chars <= 0) continue;
    for (size_t i = 0; i < s.instances.size(); ++i) {
      const auto& inst = s.instances[i];
      if (inst.id != m.id || !inst.available) continue;
      if (m.matched_chars > best_match ||
          (m.matched_chars == best_match && inst.in_flight < s.instances[*best].in_flight)) {
        best = i;
        best_match = m.matched_chars;
      }
    }
  }
  if (!best) return least;
  const int64_t gap =
      int64_t{s.instances[*best].in_flight} - int64_t{s.instances[*least].in_flight};
  return gap > r.imbalance_threshold ? least : best;
}

}  // namespace

std::optional<uint32_t> choose_instance(PolicyKind policy, const ClusterSnapshot& s,
                                        const RouteRequest& r) {
  std::optional<size_t> i;
  switch (policy) {
    case PolicyKind::kRoundRobin:
      i = round_robin(s, r.sequence);
      break;
    case PolicyKind::kLeastLoad:
      i = least_loaded(s, r.random);
      break;
    case PolicyKind::kPowerOfTwo:
      i = power_of_two(s, r.random);
      break;
    case PolicyKind::kConsistentHash:
      if (r.affinity) {
        if (auto id = consistent_hash(s, *r.affinity)) return id;
      }
      i = least_loaded(s, r.random);
      break;
    case PolicyKind::kPrefixAware:
      i = prefix_aware(s, r);
      break;
  }
  if (!i) return std::nullopt;
  return s.instances[*i].id;
}

std::vector<uint32_t> rank_instances(PolicyKind policy, const ClusterSnapshot& s,
                                     const RouteRequest& r, size_t max_candidates) {
  std::vector<uint32_t> out;
  if (max_candidates == 0) return out;
  auto first = choose_instance(policy, s, r);
  if (!first) return out;
  out.push_back(*first);
  if (policy == PolicyKind::kRoundRobin) {
    // The rotation continues: the next instances in order.
    for (uint64_t k = 1; out.size() < max_candidates && k < s.instances.size(); ++k) {
      auto next = round_robin(s, r.sequence + k);
      if (!next) break;
      uint32_t id = s.instances[*next].id;
      if (std::find(out.begin(), out.end(), id) == out.end()) out.push_back(id);
    }
    return out;
  }
  if (policy == PolicyKind::kConsistentHash && r.affinity && s.ring) {
    s.ring->walk(*r.affinity, [&](uint32_t id) {
      const InstanceLoad* inst = find_id(s, id);
      if (inst != nullptr && inst->available &&
          std::find(out.begin(), out.end(), id) == out.end()) {
        out.push_back(id);
      }
      return out.size() >= max_candidates;
    });
    return out;
  }
  append_by_load(s, r.random, max_candidates, out);
  return out;
}

}  // namespace baton::gateway
