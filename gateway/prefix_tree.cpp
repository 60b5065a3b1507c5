#include "gateway/prefix_tree.h"

#include <algorithm>

namespace baton::gateway {

PrefixTree::PrefixTree(size_t chunk_bytes, size_t max_nodes, size_t max_depth)
    : chunk_bytes_(std::max<size_t>(1, chunk_bytes)),
      max_nodes_(std::max<size_t>(4, max_nodes)),
      max_depth_(std::max<size_t>(1, max_depth)) {}

void PrefixTree::insert(std::string_view prompt, uint32_t instance, uint64_t tick) {
  uint64_t h = 0;
  const size_t chunks = std::min(prompt.size() / chunk_bytes_, max_depth_);
  for (size_t c = 0; c < chunks; ++c) {
    h = hash_bytes(prompt.substr(c * chunk_bytes_, chunk_bytes_), h);
    Node& node = nodes_[h];
    node.last_tick = tick;
    auto it = std::find_if(node.owners.begin(), node.owners.end(),
                           [&](const Owner& o) { return o.instance == instance; });
    if (it != node.owners.end()) {
      it->tick = tick;
    } else if (node.owners.size() < kMaxOwners) {
      node.owners.push_back({instance, tick});
    } else {
      auto oldest =
          std::min_element(node.owners.begin(), node.owners.end(),
                           [](const Owner& a, const Owner& b) { return a.tick < b.tick; });
      *oldest = {instance, tick};
    }
  }
  if (nodes_.size() > max_nodes_) evict();
}

void PrefixTree::match(std::string_view prompt, std::vector<PrefixMatch>& out) const {
  const size_t first = out.size();
  uint64_t h = 0;
  const size_t chunks = std::min(prompt.size() / chunk_bytes_, max_depth_);
  for (size_t c = 0; c < chunks; ++c) {
    h = hash_bytes(prompt.substr(c * chunk_bytes_, chunk_bytes_), h);
    auto it = nodes_.find(h);
    if (it == nodes_.end()) break;
    const auto matched = static_cast<int32_t>((c + 1) * chunk_bytes_);
    for (const Owner& o : it->second.owners) {
      auto m = std::find_if(out.begin() + static_cast<ptrdiff_t>(first), out.end(),
                            [&](const PrefixMatch& p) { return p.id == o.instance; });
      if (m == out.end()) {
        // An owner of a deeper node that is missing from a shallower one was
        // evicted there; it still holds the deeper chunk's whole prefix.
        out.push_back({o.instance, matched});
      } else {
        m->matched_chars = matched;
      }
    }
  }
}

void PrefixTree::erase_instance(uint32_t instance) {
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    auto& owners = it->second.owners;
    std::erase_if(owners, [&](const Owner& o) { return o.instance == instance; });
    it = owners.empty() ? nodes_.erase(it) : std::next(it);
  }
}

void PrefixTree::evict() {
  std::vector<uint64_t> ticks;
  ticks.reserve(nodes_.size());
  for (const auto& [h, node] : nodes_) ticks.push_back(node.last_tick);
  auto cut = ticks.begin() + static_cast<ptrdiff_t>(ticks.size() / 4);
  std::nth_element(ticks.begin(), cut, ticks.end());
  const uint64_t cutoff = *cut;
  for (auto it = nodes_.begin(); it != nodes_.end();) {
    it = it->second.last_tick < cutoff ? nodes_.erase(it) : std::next(it);
  }
  // All ticks equal (one huge prompt): drop arbitrary nodes to stay bounded.
  for (auto it = nodes_.begin(); nodes_.size() > max_nodes_ && it != nodes_.end();) {
    it = nodes_.erase(it);
  }
}

}  // namespace baton::gateway
