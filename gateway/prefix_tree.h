#pragma once

// PrefixTree: an approximate radix tree of the prompts recently routed to
// each instance, for prefix_aware routing. The prompt is cut into fixed-size
// chunks of bytes; a node is the hash chain of the chunks from the root to it
// (so the tree is stored flat, one hash-map entry per node) and remembers
// which instances were last sent a prompt through it and when. Approximate:
// hash collisions and partial last chunks are ignored, and the instance may
// have evicted that KV since; it is a routing hint, never a correctness
// matter.
//
// Bounded: at most max_nodes nodes and kMaxOwners instances per node; when
// over, the least recently touched quarter of the nodes goes. Time is a
// logical tick supplied by the caller (no clocks). Not thread-safe: the
// owner serialises calls (the gateway holds one per group behind a mutex).

#include <cstdint>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "gateway/policy.h"

namespace baton::gateway {

class PrefixTree {
 public:
  static constexpr int kMaxOwners = 8;

  explicit PrefixTree(size_t chunk_bytes = 64, size_t max_nodes = 1 << 16, size_t max_depth = 512);

  // Records that `instance` was sent `prompt` at `tick`.
  void insert(std::string_view prompt, uint32_t instance, uint64_t tick);

  // For every instance holding some prefix of `prompt`: how many leading
  // characters (whole chunks) it holds. Unordered; appended to `out`.
  void match(std::string_view prompt, std::vector<PrefixMatch>& out) const;

  // Forgets an instance (removed from the cluster).
  void erase_instance(uint32_t instance);

  size_t node_count() const { return nodes_.size(); }
  size_t chunk_bytes() const { return chunk_bytes_; }

 private:
  struct Owner {
    uint32_t instance;
    uint64_t tick;
  };
  struct Node {
    std::vector<Owner> owners;
    uint64_t last_tick = 0;
  };

  void evict();

  size_t chunk_bytes_;
  size_t max_nodes_;
  size_t max_depth_;
  std::unordered_map<uint64_t, Node> nodes_;
};

}  // namespace baton::gateway
