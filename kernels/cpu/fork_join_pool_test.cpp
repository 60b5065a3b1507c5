#include "kernels/cpu/fork_join_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace baton::kernels {
namespace {

TEST(ForkJoinPool, RunsEveryTaskExactlyOnce) {
  for (int threads : {1, 2, 3, 5}) {
    ForkJoinPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 2, 7, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_worker{0};
      pool.run(n, [&](int64_t t, int worker) {
        hits[static_cast<size_t>(t)].fetch_add(1);
        if (worker < 0 || worker >= threads) bad_worker.fetch_add(1);
      });
      for (int64_t t = 0; t < n; ++t) EXPECT_EQ(hits[static_cast<size_t>(t)].load(), 1) << t;
      EXPECT_EQ(bad_worker.load(), 0);
    }
  }
}

TEST(ForkJoinPool, ManyBackToBackRegionsSeeEarlierResults) {
  // Each region reads what the previous one wrote: the join must publish it.
  ForkJoinPool pool(3);
  std::vector<int64_t> v(64, 0);
  for (int round = 0; round < 300; ++round) {
    pool.run(static_cast<int64_t>(v.size()),
             [&](int64_t t, int) { v[static_cast<size_t>(t)] += t + 1; });
  }
  for (size_t t = 0; t < v.size(); ++t) EXPECT_EQ(v[t], 300 * static_cast<int64_t>(t + 1));
}

TEST(ForkJoinPool, ParallelForCoversRangeInDisjointChunks) {
  ForkJoinPool pool(2);
  for (int64_t n : {1, 5, 63, 64, 1001}) {
    for (int64_t grain : {1, 3, 100}) {
      std::vector<int> hits(static_cast<size_t>(n), 0);
      pool.parallel_for(n, grain, [&](int64_t b, int64_t e, int) {
        ASSERT_LT(b, e);
        for (int64_t i = b; i < e; ++i) ++hits[static_cast<size_t>(i)];
      });
      for (int64_t i = 0; i < n; ++i) EXPECT_EQ(hits[static_cast<size_t>(i)], 1) << n << " " << i;
    }
  }
}

TEST(ForkJoinPool, ZeroThreadsMeansOne) {
  ForkJoinPool pool(0);
  EXPECT_EQ(pool.size(), 1);
  int sum = 0;
  pool.run(4, [&](int64_t t, int worker) {
    EXPECT_EQ(worker, 0);
    sum += static_cast<int>(t);
  });
  EXPECT_EQ(sum, 6);
}

}  // namespace
}  // namespace baton::kernels
