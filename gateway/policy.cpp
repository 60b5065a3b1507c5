#include "gateway/policy.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace baton::gateway {

uint64_t hash_bytes(std::string_view bytes, uint64_t seed) {
  // Eight bytes per step (a multiply-xorshift over little-endian words), then
  // the tail; a splitmix64 finaliser spreads short keys over the ring.
  uint64_t h = 0x9e3779b97f4a7c15ull ^ (seed * 0xbf58476d1ce4e5b9ull) ^ bytes.size();
  const char* p = bytes.data();
  size_t n = bytes.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * 0xff51afd7ed558ccdull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t tail = 0;
  std::memcpy(&tail, p, n);
  h = (h ^ tail) * 0xc4ceb9fe1a85ec53ull;
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
      char key[8];
      std::memcpy(key, &id, 4);
      std::memcpy(key + 4, &v, 4);
      points_.emplace_back(hash_bytes(std::string_view(key, 8), 0x5eed), id);
    }
  }
  std::sort(points_.begin(), points_.end());
}

namespace {

const InstanceLoad* find_id(const ClusterSnapshot& s, uint32_t id) {
  auto it = std::lower_bound(s.instances.begin(), s.instances.end(), id,
                             [](const InstanceLoad& a, uint32_t v) { return a.id < v; });
  return it != s.instances.end() && it->id == id ? &*it : nullptr;
}

bool contains(const std::vector<uint32_t>& v, uint32_t id) {
  return std::find(v.begin(), v.end(), id) != v.end();
}

// The `k` least loaded available instances, least first, in one pass.
// Instances are visited from a start position chosen by `random`, and among
// equal loads the first visited wins, so ties spread over the cluster.
// Instances already in `skip` are left out. Appends ids to `out`.
void least_loaded(const ClusterSnapshot& s, uint64_t random, size_t k, std::vector<uint32_t>& out) {
  const size_t n = s.instances.size();
  if (n == 0 || k == 0) return;
  const size_t skip_n = out.size();
  std::pair<int32_t, uint32_t> best[16];
  const size_t cap = std::min<size_t>(k, 16);
  size_t have = 0;
  // Only an instance strictly below `worst` can enter a full list, which
  // keeps the scan to a load, a compare and a branch per instance.
  int32_t worst = std::numeric_limits<int32_t>::max();
  const InstanceLoad* data = s.instances.data();
  auto visit = [&](const InstanceLoad& inst) {
    if (!inst.available || inst.in_flight >= worst) return;
    if (skip_n > 0 && std::find(out.begin(), out.begin() + static_cast<ptrdiff_t>(skip_n),
                                inst.id) != out.begin() + static_cast<ptrdiff_t>(skip_n)) {
      return;
    }
    size_t pos = have < cap ? have++ : have - 1;
    while (pos > 0 && best[pos - 1].first > inst.in_flight) {
      best[pos] = best[pos - 1];
      --pos;
    }
    best[pos] = {inst.in_flight, inst.id};
    if (have == cap) worst = best[have - 1].first;
  };
  const size_t first = random % n;
  for (size_t i = first; i < n; ++i) visit(data[i]);
  for (size_t i = 0; i < first; ++i) visit(data[i]);
  for (size_t j = 0; j < have; ++j) out.push_back(best[j].second);
}

std::optional<uint32_t> least_loaded_one(const ClusterSnapshot& s, uint64_t random) {
  std::vector<uint32_t> one;
  one.reserve(1);
  least_loaded(s, random, 1, one);
  if (one.empty()) return std::nullopt;
  return one.front();
}

// Round robin over the available instances: the sequence-th available one
// (mod their count), then the following ones in order.
void round_robin(const ClusterSnapshot& s, uint64_t sequence, size_t k,
                 std::vector<uint32_t>& out) {
  size_t available = 0;
  for (const auto& inst : s.instances) available += inst.available ? 1 : 0;
  if (available == 0) return;
  size_t skip = sequence % available;
  const size_t n = s.instances.size();
  size_t i = 0;
  for (; i < n; ++i) {
    if (s.instances[i].available && skip-- == 0) break;
  }
  for (size_t step = 0; step < n && out.size() < k; ++step, ++i) {
    if (i == n) i = 0;
    if (s.instances[i].available) out.push_back(s.instances[i].id);
  }
}

std::optional<uint32_t> power_of_two(const ClusterSnapshot& s, uint64_t random) {
  const size_t n = s.instances.size();
  if (n == 0) return std::nullopt;
  // Two probes from independent halves of the random bits; an unavailable
  // probe moves forward to the next available instance.
  auto probe = [&](uint64_t r) -> const InstanceLoad* {
    size_t i = r % n;
    for (size_t step = 0; step < n; ++step, ++i) {
      if (i == n) i = 0;
      if (s.instances[i].available) return &s.instances[i];
    }
    return nullptr;
  };
  const InstanceLoad* a = probe(random & 0xffffffffu);
  if (a == nullptr) return std::nullopt;
  const InstanceLoad* b = probe(random >> 32);
  return (b == nullptr || a->in_flight <= b->in_flight) ? a->id : b->id;
}

// `least` is the least loaded available instance (computed by the caller,
// who needs the ranking by load anyway).
uint32_t prefix_aware(const ClusterSnapshot& s, const RouteRequest& r, uint32_t least) {
  const InstanceLoad* best = nullptr;
  int32_t best_match = 0;
  for (const PrefixMatch& m : r.prefix) {
    if (m.matched_chars <= 0 || m.matched_chars < best_match) continue;
    const InstanceLoad* inst = find_id(s, m.id);
    if (inst == nullptr || !inst->available) continue;
    if (m.matched_chars > best_match || inst->in_flight < best->in_flight) {
      best = inst;
      best_match = m.matched_chars;
    }
  }
  if (best == nullptr) return least;
  const int64_t gap = int64_t{best->in_flight} - int64_t{find_id(s, least)->in_flight};
  return gap > r.imbalance_threshold ? least : best->id;
}

}  // namespace

std::optional<uint32_t> choose_instance(PolicyKind policy, const ClusterSnapshot& s,
                                        const RouteRequest& r) {
  switch (policy) {
    case PolicyKind::kRoundRobin: {
      std::vector<uint32_t> one;
      round_robin(s, r.sequence, 1, one);
      if (one.empty()) return std::nullopt;
      return one.front();
    }
    case PolicyKind::kLeastLoad:
      return least_loaded_one(s, r.random);
    case PolicyKind::kPowerOfTwo:
      return power_of_two(s, r.random);
    case PolicyKind::kConsistentHash:
      if (r.affinity && s.ring) {
        auto id = s.ring->walk(*r.affinity, [&](uint32_t id) {
          const InstanceLoad* inst = find_id(s, id);
          return inst != nullptr && inst->available;
        });
        if (id) return id;
      }
      return least_loaded_one(s, r.random);
    case PolicyKind::kPrefixAware: {
      auto least = least_loaded_one(s, r.random);
      if (!least) return std::nullopt;
      return prefix_aware(s, r, *least);
    }
  }
  return std::nullopt;
}

std::vector<uint32_t> rank_instances(PolicyKind policy, const ClusterSnapshot& s,
                                     const RouteRequest& r, size_t max_candidates) {
  std::vector<uint32_t> out;
  if (max_candidates == 0) return out;
  out.reserve(max_candidates);
  if (policy == PolicyKind::kRoundRobin) {
    round_robin(s, r.sequence, max_candidates, out);
    return out;
  }
  if (policy == PolicyKind::kConsistentHash && r.affinity && s.ring) {
    // Ring order: the session's instance, then the ones that would inherit it.
    s.ring->walk(*r.affinity, [&](uint32_t id) {
      const InstanceLoad* inst = find_id(s, id);
      if (inst != nullptr && inst->available && !contains(out, id)) out.push_back(id);
      return out.size() >= max_candidates;
    });
    return out;
  }
  // One pass ranks by load; the policy's first choice goes in front.
  std::vector<uint32_t> by_load;
  by_load.reserve(std::min<size_t>(16, max_candidates + 1));
  least_loaded(s, r.random, std::min<size_t>(16, max_candidates + 1), by_load);
  if (by_load.empty()) return out;
  uint32_t first = by_load.front();
  if (policy == PolicyKind::kPowerOfTwo) {
    first = *power_of_two(s, r.random);
  } else if (policy == PolicyKind::kPrefixAware) {
    first = prefix_aware(s, r, by_load.front());
  }
  out.push_back(first);
  for (uint32_t id : by_load) {
    if (out.size() >= max_candidates) break;
    if (id != first) out.push_back(id);
  }
  // More than 15 fallbacks are never asked in practice; this keeps it right.
  while (out.size() < max_candidates) {
    const size_t before = out.size();
    least_loaded(s, r.random, std::min<size_t>(16, max_candidates - out.size()), out);
    if (out.size() == before) break;
  }
  return out;
}

}  // namespace baton::gateway
