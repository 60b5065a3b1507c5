#include "engine/block_pool.h"

#include <algorithm>

#include "common/status.h"

namespace baton::engine {
namespace {

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

int32_t ceil_div(int32_t a, int32_t b) { return (a + b - 1) / b; }

}  // namespace

// Each token goes through a full avalanche step, so swapping tokens or moving
// one between blocks changes the hash; the length is folded in last so a
// short block never equals a prefix of a longer one.
uint64_t hash_block(uint64_t parent_hash, std::span<const int32_t> tokens) {
  uint64_t h = mix64(parent_hash);
  for (int32_t t : tokens) h = mix64(h ^ static_cast<uint32_t>(t)) + 0x9e3779b97f4a7c15ULL;
  return mix64(h ^ tokens.size());
}

// ---- BlockPool --------------------------------------------------------------

BlockPool::BlockPool(int32_t num_blocks, int32_t block_size)
    : num_blocks_(num_blocks),
      block_size_(block_size),
      ref_(static_cast<size_t>(num_blocks), 0),
      cached_(static_cast<size_t>(num_blocks), false),
      hash_(static_cast<size_t>(num_blocks), 0),
      parent_hash_(static_cast<size_t>(num_blocks), 0),
      tokens_(static_cast<size_t>(num_blocks) * static_cast<size_t>(block_size), 0),
      lru_prev_(static_cast<size_t>(num_blocks) + 1, num_blocks),
      lru_next_(static_cast<size_t>(num_blocks) + 1, num_blocks) {
  BATON_CHECK(num_blocks > 0 && block_size > 0);
  free_uncached_.reserve(static_cast<size_t>(num_blocks));
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_uncached_.push_back(b);
}

double BlockPool::usage() const {
  return static_cast<double>(num_used()) / static_cast<double>(num_blocks_);
}

size_t BlockPool::idx(int32_t block) const {
  BATON_CHECK(block >= 0 && block < num_blocks_);
  return static_cast<size_t>(block);
}

void BlockPool::lru_unlink(int32_t block) {
  const auto b = static_cast<size_t>(block);
  lru_next_[static_cast<size_t>(lru_prev_[b])] = lru_next_[b];
  lru_prev_[static_cast<size_t>(lru_next_[b])] = lru_prev_[b];
  lru_prev_[b] = lru_next_[b] = num_blocks_;
  --num_free_cached_;
}

void BlockPool::lru_push_back(int32_t block) {
  const auto b = static_cast<size_t>(block);
  const auto sentinel = static_cast<size_t>(num_blocks_);
  const int32_t tail = lru_prev_[sentinel];
  lru_prev_[b] = tail;
  lru_next_[b] = num_blocks_;
  lru_next_[static_cast<size_t>(tail)] = block;
  lru_prev_[sentinel] = block;
  ++num_free_cached_;
}

void BlockPool::evict(int32_t block) {
  const size_t b = idx(block);
  auto it = cache_.find(hash_[b]);
  if (it != cache_.end() && it->second == block) cache_.erase(it);
  cached_[b] = false;
}

int32_t BlockPool::allocate() {
  BATON_CHECK_MSG(can_allocate(1), "BlockPool::allocate without a free block");
  int32_t block;
  if (!free_uncached_.empty()) {
    block = free_uncached_.back();
    free_uncached_.pop_back();
  } else {
    block = lru_next_[static_cast<size_t>(num_blocks_)];  // least recently freed
    lru_unlink(block);
    evict(block);
  }
  ref_[idx(block)] = 1;
  return block;
}

void BlockPool::retain(int32_t block) {
  const size_t b = idx(block);
  if (ref_[b] == 0) {
    // Only cached blocks are reachable while free: through a prefix match.
    BATON_CHECK_MSG(cached_[b], "retain of a free, uncached block");
    lru_unlink(block);
  }
  ++ref_[b];
}

void BlockPool::release(int32_t block) {
  const size_t b = idx(block);
  BATON_CHECK_MSG(ref_[b] > 0, "release of a free block");
  if (--ref_[b] > 0) return;
  if (cached_[b]) {
    lru_push_back(block);
  } else {
    free_uncached_.push_back(block);
  }
}

std::optional<int32_t> BlockPool::find_cached(uint64_t hash, uint64_t parent_hash,
                                              std::span<const int32_t> tokens) const {
  auto it = cache_.find(hash);
  if (it == cache_.end()) return std::nullopt;
  const auto b = static_cast<size_t>(it->second);
  if (parent_hash_[b] != parent_hash || tokens.size() != static_cast<size_t>(block_size_)) {
    return std::nullopt;
  }
  const auto stored = tokens_.begin() + static_cast<std::ptrdiff_t>(b * tokens.size());
  if (!std::equal(tokens.begin(), tokens.end(), stored)) return std::nullopt;
  return it->second;
}

bool BlockPool::register_block(int32_t block, uint64_t hash, uint64_t parent_hash,
                               std::span<const int32_t> tokens) {
  const size_t b = idx(block);
  BATON_CHECK(ref_[b] > 0);
  BATON_CHECK(tokens.size() == static_cast<size_t>(block_size_));
  if (cached_[b]) return hash_[b] == hash;
  if (!cache_.emplace(hash, block).second) return false;
  cached_[b] = true;
  hash_[b] = hash;
  parent_hash_[b] = parent_hash;
  std::copy(tokens.begin(), tokens.end(),
            tokens_.begin() + static_cast<std::ptrdiff_t>(b * tokens.size()));
  return true;
}

// ---- BlockManager -----------------------------------------------------------

BlockManager::BlockManager(int32_t num_blocks, int32_t block_size, bool enable_prefix_caching)
    : pool_(num_blocks, block_size), prefix_caching_(enable_prefix_caching) {}

void BlockManager::ensure_hashes(Sequence& seq, int32_t num_full_blocks) const {
  const int32_t bs = pool_.block_size();
  while (static_cast<int32_t>(seq.block_hashes.size()) < num_full_blocks) {
    const auto i = static_cast<int32_t>(seq.block_hashes.size());
    const uint64_t parent = i == 0 ? kRootBlockHash : seq.block_hashes.back();
    const std::vector<int32_t> toks = seq.tokens(i * bs, bs);
    seq.block_hashes.push_back(hash_block(parent, toks));
  }
}

PrefixMatch BlockManager::match_prefix(Sequence& seq) const {
  PrefixMatch match;
  if (!prefix_caching_) return match;
  const int32_t bs = pool_.block_size();
  const int32_t max_blocks = (seq.num_tokens() - 1) / bs;
  ensure_hashes(seq, max_blocks);
  for (int32_t i = 0; i < max_blocks; ++i) {
    const uint64_t parent = i == 0 ? kRootBlockHash : seq.block_hashes[static_cast<size_t>(i - 1)];
    const std::vector<int32_t> toks = seq.tokens(i * bs, bs);
    auto hit = pool_.find_cached(seq.block_hashes[static_cast<size_t>(i)], parent, toks);
    if (!hit) break;
    match.blocks.push_back(*hit);
    if (pool_.ref_count(*hit) == 0) ++match.num_free_blocks;
  }
  match.num_tokens = static_cast<int32_t>(match.blocks.size()) * bs;
  return match;
}

int32_t BlockManager::blocks_needed_to_admit(const PrefixMatch& match, int32_t num_new) const {
  const int32_t total = ceil_div(match.num_tokens + num_new, pool_.block_size());
  return total - static_cast<int32_t>(match.blocks.size()) + match.num_free_blocks;
}

int32_t BlockManager::blocks_needed_to_grow(const Sequence& seq, int32_t num_new) const {
  if (num_new <= 0) return 0;
  const int32_t bs = pool_.block_size();
  const int32_t have = static_cast<int32_t>(seq.block_table.size());
  int32_t need = std::max(0, ceil_div(seq.num_computed + num_new, bs) - have);
  if (seq.num_computed % bs != 0 && have > 0 && pool_.ref_count(seq.block_table.back()) > 1) {
    ++need;  // copy-on-write of the shared partial last block
  }
  return need;
}

void BlockManager::admit(Sequence& seq, const PrefixMatch& match) {
  BATON_CHECK(seq.block_table.empty());
  for (int32_t b : match.blocks) pool_.retain(b);
  seq.block_table = match.blocks;
  seq.num_computed = match.num_tokens;
  seq.num_registered_blocks = static_cast<int32_t>(match.blocks.size());
  if (prefix_caching_) {
    stats_.queried_tokens += seq.num_tokens();
    stats_.hit_tokens += match.num_tokens;
  }
}

void BlockManager::grow(Sequence& seq, int32_t num_new, std::vector<BlockCopy>& copies) {
  const int32_t need = blocks_needed_to_grow(seq, num_new);
  BATON_CHECK_MSG(pool_.can_allocate(need), "BlockManager::grow without enough free blocks");
  if (num_new <= 0) return;
  const int32_t bs = pool_.block_size();
  if (seq.num_computed % bs != 0 && pool_.ref_count(seq.block_table.back()) > 1) {
    // The next token lands in a block other sequences still read: give this
    // sequence its own copy; the last sharer keeps writing in place.
    const int32_t src = seq.block_table.back();
    const int32_t dst = pool_.allocate();
    copies.push_back({src, dst});
    pool_.release(src);
    seq.block_table.back() = dst;
  }
  const int32_t total = ceil_div(seq.num_computed + num_new, bs);
  while (static_cast<int32_t>(seq.block_table.size()) < total) {
    seq.block_table.push_back(pool_.allocate());
  }
}

void BlockManager::fork(const Sequence& parent, Sequence& child) {
  BATON_CHECK(child.block_table.empty());
  for (int32_t b : parent.block_table) pool_.retain(b);
  child.block_table = parent.block_table;
  child.num_computed = parent.num_computed;
  child.num_registered_blocks = parent.num_registered_blocks;
  child.block_hashes = parent.block_hashes;
}

void BlockManager::free(Sequence& seq) {
  for (auto it = seq.block_table.rbegin(); it != seq.block_table.rend(); ++it) pool_.release(*it);
  seq.block_table.clear();
  seq.num_registered_blocks = 0;
}

void BlockManager::register_computed(Sequence& seq) {
  if (!prefix_caching_) return;
  const int32_t bs = pool_.block_size();
  const int32_t full =
      std::min(seq.num_computed / bs, static_cast<int32_t>(seq.block_table.size()));
  if (full <= seq.num_registered_blocks) return;
  ensure_hashes(seq, full);
  for (int32_t i = seq.num_registered_blocks; i < full; ++i) {
    const uint64_t parent = i == 0 ? kRootBlockHash : seq.block_hashes[static_cast<size_t>(i - 1)];
    const std::vector<int32_t> toks = seq.tokens(i * bs, bs);
    pool_.register_block(seq.block_table[static_cast<size_t>(i)],
                         seq.block_hashes[static_cast<size_t>(i)], parent, toks);
  }
  seq.num_registered_blocks = full;
}

}  // namespace baton::engine
