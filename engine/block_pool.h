#pragma once

// Paged KV blocks (DESIGN.md §4).
//
// BlockPool owns the ids of num_blocks fixed-size blocks (block_size tokens
// each), their reference counts and the prefix cache: full blocks indexed by a
// chained 64-bit hash (parent block's hash + the block's token ids), verified
// against the stored tokens on lookup. A block whose count drops to zero keeps
// its cached contents and joins an LRU list; allocation takes never-cached
// free blocks first and evicts the least recently freed cached block only when
// none is left, so cache hits survive as long as possible.
//
// BlockManager applies the pool to Sequences: prefix matching on admission,
// growing block tables (with copy-on-write of a shared, partially filled last
// block), forking and freeing. Every query (can_*, blocks_needed_*,
// match_prefix) is side-effect free apart from memoising token hashes; the
// applying calls check their preconditions with BATON_CHECK, so callers plan
// with the queries first. Running out of blocks is reported by the queries,
// never as an error.
//
// Not thread-safe: both live on the engine thread.

#include <cstdint>
#include <optional>
#include <span>
#include <unordered_map>
#include <vector>

#include "engine/sequence.h"

namespace baton::engine {

// Hash of the empty prefix: the parent of every sequence's first block.
inline constexpr uint64_t kRootBlockHash = 0x6a09e667f3bcc908ULL;

// Chained hash of a full block: depends on every token before it through
// parent_hash.
uint64_t hash_block(uint64_t parent_hash, std::span<const int32_t> tokens);

class BlockPool {
 public:
  BlockPool(int32_t num_blocks, int32_t block_size);

  int32_t num_blocks() const { return num_blocks_; }
  int32_t block_size() const { return block_size_; }
  // Blocks with reference count zero (never-cached plus evictable cached).
  int32_t num_free() const { return num_free_uncached() + num_free_cached_; }
  int32_t num_used() const { return num_blocks_ - num_free(); }
  // Used / total in [0, 1].
  double usage() const;
  int32_t num_cached() const { return static_cast<int32_t>(cache_.size()); }
  bool can_allocate(int32_t n) const { return n <= num_free(); }

  // A free block with reference count 1. Precondition: can_allocate(1).
  int32_t allocate();
  // One more owner; a free cached block leaves the LRU list (a prefix hit).
  void retain(int32_t block);
  // One owner fewer; at zero the block becomes free (cached ones at the LRU
  // tail, i.e. evicted last).
  void release(int32_t block);
  int32_t ref_count(int32_t block) const { return ref_[idx(block)]; }
  bool is_cached(int32_t block) const { return cached_[idx(block)]; }

  // The cached block holding exactly `tokens` after the prefix `parent_hash`,
  // or nullopt. No side effects.
  std::optional<int32_t> find_cached(uint64_t hash, uint64_t parent_hash,
                                     std::span<const int32_t> tokens) const;
  // Offer a full, computed, owned block to the cache. False when the hash is
  // already taken (the same content computed twice, or a collision): the block
  // then stays private and is simply freed later.
  bool register_block(int32_t block, uint64_t hash, uint64_t parent_hash,
                      std::span<const int32_t> tokens);

 private:
  size_t idx(int32_t block) const;
  int32_t num_free_uncached() const { return static_cast<int32_t>(free_uncached_.size()); }
  void lru_unlink(int32_t block);
  void lru_push_back(int32_t block);
  void evict(int32_t block);

  int32_t num_blocks_;
  int32_t block_size_;
  std::vector<int32_t> ref_;
  std::vector<bool> cached_;
  std::vector<uint64_t> hash_;
  std::vector<uint64_t> parent_hash_;
  std::vector<int32_t> tokens_;         // num_blocks * block_size, valid when cached
  std::vector<int32_t> free_uncached_;  // stack; lowest ids on top initially
  // Intrusive LRU of free cached blocks; index num_blocks_ is the sentinel.
  std::vector<int32_t> lru_prev_;
  std::vector<int32_t> lru_next_;
  int32_t num_free_cached_ = 0;
  std::unordered_map<uint64_t, int32_t> cache_;
};

// A block copy the model runner performs before the step's forward pass.
struct BlockCopy {
  int32_t src = 0;
  int32_t dst = 0;
  bool operator==(const BlockCopy&) const = default;
};

// Cached leading full blocks of a sequence's tokens.
struct PrefixMatch {
  std::vector<int32_t> blocks;
  int32_t num_tokens = 0;       // blocks.size() * block_size
  int32_t num_free_blocks = 0;  // of `blocks`, how many currently have count 0
};

struct PrefixCacheStats {
  int64_t queried_tokens = 0;
  int64_t hit_tokens = 0;
  double hit_rate() const {
    return queried_tokens == 0
               ? 0.0
               : static_cast<double>(hit_tokens) / static_cast<double>(queried_tokens);
  }
};

class BlockManager {
 public:
  BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching);

  const BlockPool& pool() const { return pool_; }
  int32_t block_size() const { return pool_.block_size(); }
  bool prefix_caching() const { return prefix_caching_; }
  const PrefixCacheStats& prefix_stats() const { return stats_; }

  // ---- planning -------------------------------------------------------------
  // Cached full blocks covering a prefix of seq's tokens, leaving at least the
  // last token to compute so the step has logits to sample from. Empty when
  // prefix caching is off.
  PrefixMatch match_prefix(Sequence& seq) const;
  // Free blocks needed to admit seq with `match` and compute num_new tokens
  // after it (the matched blocks that are free count: they leave the pool).
  int32_t blocks_needed_to_admit(const PrefixMatch& match, int32_t num_new) const;
  // Free blocks needed for a running seq to compute num_new more tokens,
  // including one for copy-on-write of a shared partial last block.
  int32_t blocks_needed_to_grow(const Sequence& seq, int32_t num_new) const;
  bool can_take(int32_t num_blocks) const { return pool_.can_allocate(num_blocks); }

  // ---- applying -------------------------------------------------------------
  // Take the matched blocks: seq's table becomes them and num_computed their
  // token count. Counts the query in the hit-rate statistics.
  void admit(Sequence& seq, const PrefixMatch& match);
  // Make room for num_new more tokens; a copy-on-write is appended to copies.
  void grow(Sequence& seq, int32_t num_new, std::vector<BlockCopy>& copies);
  // child shares every block of parent (reference counts + 1).
  void fork(const Sequence& parent, Sequence& child);
  // Release seq's blocks, last block first so a prefix's tail is evicted
  // before its head.
  void free(Sequence& seq);
  // Offer seq's newly computed full blocks to the prefix cache.
  void register_computed(Sequence& seq);

 private:
  void ensure_hashes(Sequence& seq, int32_t num_full_blocks) const;

  BlockPool pool_;
  bool prefix_caching_;
  PrefixCacheStats stats_;
};

}  // namespace baton::engine
