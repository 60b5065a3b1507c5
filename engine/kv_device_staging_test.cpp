#include "engine/kv_device_staging.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace baton::engine {
namespace {

TEST(KvStagingArena, SlicesAreAlignedDisjointAndComeBackWhenTheirOwnerGoes) {
  std::vector<std::byte> memory(4096);
  KvStagingArena arena(memory.data(), memory.size(), 256);
  auto a = arena.take(100);
  auto b = arena.take(300);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  EXPECT_EQ(a->bytes, 100u);
  EXPECT_EQ(static_cast<std::byte*>(a->data), memory.data());
  EXPECT_EQ(static_cast<std::byte*>(b->data), memory.data() + 256);
  EXPECT_EQ(arena.used(), 256u + 512u);
  EXPECT_EQ(arena.slices(), 2u);
  a->owner.reset();
  EXPECT_EQ(arena.used(), 512u);
  auto c = arena.take(200);  // fits where a was
  ASSERT_TRUE(c.is_ok());
  EXPECT_EQ(static_cast<std::byte*>(c->data), memory.data());
}

TEST(KvStagingArena, AFullAreaIsResourceExhaustedUntilSlicesReturn) {
  std::vector<std::byte> memory(1024);
  KvStagingArena arena(memory.data(), memory.size(), 256);
  auto a = arena.take(512);
  auto b = arena.take(512);
  ASSERT_TRUE(a.is_ok() && b.is_ok());
  auto full = arena.take(1);
  ASSERT_FALSE(full.is_ok());
  EXPECT_EQ(full.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(full.status().message().find("full"), std::string::npos);
  EXPECT_EQ(arena.take(2048).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(arena.take(0).status().code(), StatusCode::kInvalidArgument);
  // Freed ranges coalesce: the whole area is one slice again.
  a->owner.reset();
  b->owner.reset();
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_TRUE(arena.take(1024).is_ok());
}

TEST(KvStagingArena, ASliceMayOutliveItsArena) {
  std::vector<std::byte> memory(1024);
  KvDeviceSlice kept;
  {
    KvStagingArena arena(memory.data(), memory.size());
    auto s = arena.take(10);
    ASSERT_TRUE(s.is_ok());
    kept = *s;
  }
  kept.owner.reset();  // returns its range to the shared bookkeeping, no crash
  SUCCEED();
}

TEST(KvStagingArena, ConcurrentTakersNeverShareBytes) {
  std::vector<std::byte> memory(64 * 256);
  KvStagingArena arena(memory.data(), memory.size(), 256);
  std::vector<std::thread> threads;
  std::atomic<int> overlaps{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 2000; ++i) {
        auto s = arena.take(static_cast<uint64_t>(1 + (i * 37 + t) % 700));
        if (!s.is_ok()) continue;
        // Stamp the slice and check nobody else wrote into it meanwhile.
        auto* p = static_cast<std::byte*>(s->data);
        const auto mark = static_cast<std::byte>(t + 1);
        for (uint64_t k = 0; k < s->bytes; ++k) p[k] = mark;
        for (uint64_t k = 0; k < s->bytes; ++k) {
          if (p[k] != mark) ++overlaps;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_EQ(arena.used(), 0u);
  EXPECT_EQ(arena.slices(), 0u);
}

}  // namespace
}  // namespace baton::engine
