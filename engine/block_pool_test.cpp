#include "engine/block_pool.h"

#include <gtest/gtest.h>

#include <numeric>
#include <vector>

namespace baton::engine {
namespace {

std::vector<int32_t> iota_tokens(int32_t n, int32_t start = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), start);
  return v;
}

TEST(BlockPoolTest, AllocateReleaseCountsAndUsage) {
  BlockPool pool(4, 16);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_TRUE(pool.can_allocate(4));
  EXPECT_FALSE(pool.can_allocate(5));
  const int32_t a = pool.allocate();
  const int32_t b = pool.allocate();
  EXPECT_NE(a, b);
  EXPECT_EQ(pool.num_used(), 2);
  EXPECT_DOUBLE_EQ(pool.usage(), 0.5);
  pool.retain(a);
  EXPECT_EQ(pool.ref_count(a), 2);
  pool.release(a);
  EXPECT_EQ(pool.num_used(), 2);
  pool.release(a);
  pool.release(b);
  EXPECT_EQ(pool.num_free(), 4);
  EXPECT_EQ(pool.ref_count(a), 0);
}

TEST(BlockPoolTest, CachedBlocksSurviveUntilUncachedOnesAreUsed) {
  BlockPool pool(3, 4);
  const int32_t a = pool.allocate();
  const auto toks = iota_tokens(4);
  const uint64_t h = hash_block(kRootBlockHash, toks);
  ASSERT_TRUE(pool.register_block(a, h, kRootBlockHash, toks));
  pool.release(a);
  EXPECT_EQ(pool.num_free(), 3);
  // Two uncached free blocks are handed out before the cached one is evicted.
  const int32_t b = pool.allocate();
  const int32_t c = pool.allocate();
  EXPECT_NE(b, a);
  EXPECT_NE(c, a);
  ASSERT_EQ(pool.find_cached(h, kRootBlockHash, toks), a);
  const int32_t d = pool.allocate();
  EXPECT_EQ(d, a);
  EXPECT_FALSE(pool.find_cached(h, kRootBlockHash, toks).has_value());
  EXPECT_FALSE(pool.is_cached(a));
}

TEST(BlockPoolTest, EvictsLeastRecentlyFreedCachedBlockFirst) {
  BlockPool pool(3, 2);
  std::vector<int32_t> blocks;
  std::vector<uint64_t> hashes;
  for (int32_t i = 0; i < 3; ++i) {
    const int32_t b = pool.allocate();
    const auto toks = iota_tokens(2, 10 * i);
    hashes.push_back(hash_block(kRootBlockHash, toks));
    ASSERT_TRUE(pool.register_block(b, hashes.back(), kRootBlockHash, toks));
    blocks.push_back(b);
  }
  pool.release(blocks[1]);
  pool.release(blocks[0]);
  pool.release(blocks[2]);
  // A hit on blocks[1] takes it out of the LRU; released again it is youngest.
  pool.retain(blocks[1]);
  pool.release(blocks[1]);
  EXPECT_EQ(pool.allocate(), blocks[0]);
  EXPECT_EQ(pool.allocate(), blocks[2]);
  EXPECT_EQ(pool.allocate(), blocks[1]);
}

TEST(BlockPoolTest, LookupComparesTokensNotJustTheHash) {
  BlockPool pool(2, 2);
  const int32_t b = pool.allocate();
  const std::vector<int32_t> toks{1, 2};
  const uint64_t h = hash_block(kRootBlockHash, toks);
  ASSERT_TRUE(pool.register_block(b, h, kRootBlockHash, toks));
  // Same hash value, other tokens or parent: a collision, not a hit.
  EXPECT_FALSE(pool.find_cached(h, kRootBlockHash, std::vector<int32_t>{2, 1}).has_value());
  EXPECT_FALSE(pool.find_cached(h, 42, toks).has_value());
  EXPECT_EQ(pool.find_cached(h, kRootBlockHash, toks), b);
  // A second block with the same content is not registered.
  const int32_t c = pool.allocate();
  EXPECT_FALSE(pool.register_block(c, h, kRootBlockHash, toks));
  EXPECT_FALSE(pool.is_cached(c));
}

TEST(BlockPoolTest, ChainedHashDependsOnParentAndOrder) {
  const std::vector<int32_t> a{1, 2, 3};
  const std::vector<int32_t> b{3, 2, 1};
  EXPECT_NE(hash_block(kRootBlockHash, a), hash_block(kRootBlockHash, b));
  EXPECT_NE(hash_block(kRootBlockHash, a), hash_block(hash_block(kRootBlockHash, b), a));
  EXPECT_EQ(hash_block(7, a), hash_block(7, a));
}

Sequence make_seq(std::vector<int32_t> prompt) {
  Sequence s;
  s.prompt = std::move(prompt);
  return s;
}

TEST(BlockManagerTest, PrefixMatchLeavesTheLastTokenToCompute) {
  BlockManager mgr(8, 4, true);
  Sequence a = make_seq(iota_tokens(8));
  std::vector<BlockCopy> copies;
  mgr.admit(a, mgr.match_prefix(a));
  mgr.grow(a, 8, copies);
  a.num_computed = 8;
  mgr.register_computed(a);
  EXPECT_EQ(mgr.pool().num_cached(), 2);

  // Exactly the same 8 tokens: only the first block may be reused.
  Sequence b = make_seq(iota_tokens(8));
  PrefixMatch m = mgr.match_prefix(b);
  EXPECT_EQ(m.num_tokens, 4);
  ASSERT_EQ(m.blocks.size(), 1u);
  EXPECT_EQ(m.blocks[0], a.block_table[0]);
  EXPECT_EQ(m.num_free_blocks, 0);  // still held by a

  // A longer prompt reuses both blocks.
  Sequence c = make_seq(iota_tokens(9));
  EXPECT_EQ(mgr.match_prefix(c).num_tokens, 8);
  // A diverging second block reuses only the first.
  auto toks = iota_tokens(9);
  toks[5] = 99;
  Sequence d = make_seq(toks);
  EXPECT_EQ(mgr.match_prefix(d).num_tokens, 4);

  mgr.admit(c, mgr.match_prefix(c));
  EXPECT_EQ(c.num_computed, 8);
  EXPECT_EQ(mgr.pool().ref_count(a.block_table[0]), 2);
  EXPECT_EQ(mgr.prefix_stats().queried_tokens, 8 + 9);
  EXPECT_EQ(mgr.prefix_stats().hit_tokens, 8);
  mgr.free(a);
  mgr.free(c);
  EXPECT_EQ(mgr.pool().num_free(), 8);
}

TEST(BlockManagerTest, MatchedFreeBlocksCountAgainstAdmission) {
  BlockManager mgr(4, 4, true);
  Sequence a = make_seq(iota_tokens(9));
  std::vector<BlockCopy> copies;
  mgr.admit(a, mgr.match_prefix(a));
  mgr.grow(a, 9, copies);
  a.num_computed = 9;
  mgr.register_computed(a);
  mgr.free(a);
  Sequence b = make_seq(iota_tokens(9));
  PrefixMatch m = mgr.match_prefix(b);
  EXPECT_EQ(m.num_tokens, 8);
  EXPECT_EQ(m.num_free_blocks, 2);
  // One new block for token 9, plus the two cached ones leaving the free pool.
  EXPECT_EQ(mgr.blocks_needed_to_admit(m, 1), 3);
}

TEST(BlockManagerTest, ForkSharesBlocksAndCopiesPartialLastBlockOnWrite) {
  BlockManager mgr(8, 4, false);
  Sequence parent = make_seq(iota_tokens(6));
  std::vector<BlockCopy> copies;
  mgr.admit(parent, mgr.match_prefix(parent));
  mgr.grow(parent, 6, copies);
  parent.num_computed = 6;
  Sequence child = make_seq(iota_tokens(6));
  mgr.fork(parent, child);
  EXPECT_EQ(child.block_table, parent.block_table);
  EXPECT_EQ(mgr.pool().ref_count(parent.block_table[1]), 2);
  EXPECT_EQ(mgr.pool().num_used(), 2);

  // The child writes position 6 into the shared partial block: it gets a copy.
  EXPECT_EQ(mgr.blocks_needed_to_grow(child, 1), 1);
  const int32_t shared = parent.block_table[1];
  mgr.grow(child, 1, copies);
  ASSERT_EQ(copies.size(), 1u);
  EXPECT_EQ(copies[0].src, shared);
  EXPECT_EQ(copies[0].dst, child.block_table[1]);
  EXPECT_NE(child.block_table[1], shared);
  EXPECT_EQ(child.block_table[0], parent.block_table[0]);  // full block stays shared
  // The parent is now the only owner and writes in place.
  EXPECT_EQ(mgr.blocks_needed_to_grow(parent, 1), 0);
  mgr.grow(parent, 1, copies);
  EXPECT_EQ(copies.size(), 1u);
  EXPECT_EQ(parent.block_table[1], shared);

  mgr.free(parent);
  mgr.free(child);
  EXPECT_EQ(mgr.pool().num_free(), 8);
}

TEST(BlockManagerTest, GrowNeedsNoCopyAtABlockBoundary) {
  BlockManager mgr(8, 4, false);
  Sequence parent = make_seq(iota_tokens(8));
  std::vector<BlockCopy> copies;
  mgr.admit(parent, mgr.match_prefix(parent));
  mgr.grow(parent, 8, copies);
  parent.num_computed = 8;
  Sequence child = make_seq(iota_tokens(8));
  mgr.fork(parent, child);
  EXPECT_EQ(mgr.blocks_needed_to_grow(child, 1), 1);  // a fresh block, no copy
  mgr.grow(child, 1, copies);
  EXPECT_TRUE(copies.empty());
  EXPECT_EQ(child.block_table.size(), 3u);
  mgr.free(parent);
  mgr.free(child);
  EXPECT_EQ(mgr.pool().num_free(), 8);
}

}  // namespace
}  // namespace baton::engine
