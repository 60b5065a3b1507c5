#include "common/bounded_queue.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

namespace baton {
namespace {

using namespace std::chrono_literals;
using SteadyTime = std::chrono::steady_clock::time_point;

SteadyTime past() { return std::chrono::steady_clock::now() - 1s; }
// Long enough never to be reached in a passing test; a hang fails the test
// through its ctest timeout rather than a timing assertion.
SteadyTime far() { return std::chrono::steady_clock::now() + 60s; }

TEST(BoundedQueueTest, FifoOrderAndCapacity) {
  BoundedQueue<int> q(3);
  EXPECT_EQ(q.capacity(), 3u);
  EXPECT_TRUE(q.try_push(1));
  EXPECT_TRUE(q.try_push(2));
  EXPECT_TRUE(q.try_push(3));
  EXPECT_FALSE(q.try_push(4));
  EXPECT_EQ(q.size(), 3u);
  EXPECT_EQ(q.try_pop(), 1);
  EXPECT_TRUE(q.try_push(4));
  EXPECT_EQ(q.try_pop(), 2);
  EXPECT_EQ(q.try_pop(), 3);
  EXPECT_EQ(q.try_pop(), 4);
  EXPECT_EQ(q.try_pop(), std::nullopt);
  EXPECT_TRUE(q.empty());
}

TEST(BoundedQueueTest, RejectedPushLeavesTheItemWithTheCaller) {
  BoundedQueue<std::unique_ptr<int>> q(1);
  ASSERT_TRUE(q.try_push(std::make_unique<int>(1)));
  auto item = std::make_unique<int>(2);
  EXPECT_FALSE(q.try_push(std::move(item)));
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(q.push_until(std::move(item), past()).code(), StatusCode::kDeadlineExceeded);
  ASSERT_NE(item, nullptr);
  EXPECT_EQ(*item, 2);
}

TEST(BoundedQueueTest, TimesOutWithDeadlineExceeded) {
  BoundedQueue<int> q(1);
  auto popped = q.pop_until(past());
  EXPECT_EQ(popped.status().code(), StatusCode::kDeadlineExceeded);
  ASSERT_TRUE(q.try_push(1));
  EXPECT_EQ(q.push_until(2, past()).code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(q.size(), 1u);
}

TEST(BoundedQueueTest, AcceptsDeadlineObjects) {
  BoundedQueue<int> q(1);
  EXPECT_TRUE(q.push_until(1, Deadline(far())).is_ok());
  auto v = q.pop_until(Deadline(far()));
  ASSERT_TRUE(v.is_ok());
  EXPECT_EQ(*v, 1);
}

TEST(BoundedQueueTest, CloseRefusesPushesButDeliversQueuedItems) {
  BoundedQueue<int> q(4);
  ASSERT_TRUE(q.try_push(1));
  ASSERT_TRUE(q.try_push(2));
  q.close();
  EXPECT_TRUE(q.is_closed());
  EXPECT_FALSE(q.try_push(3));
  EXPECT_EQ(q.push_until(3, far()).code(), StatusCode::kUnavailable);
  EXPECT_EQ(*q.pop_until(far()), 1);
  EXPECT_EQ(q.try_pop(), 2);
  EXPECT_EQ(q.pop_until(far()).status().code(), StatusCode::kUnavailable);
}

TEST(BoundedQueueTest, CloseWakesBlockedConsumer) {
  BoundedQueue<int> q(1);
  Status result;
  std::thread consumer([&] { result = q.pop_until(far()).status(); });
  q.close();
  consumer.join();
  EXPECT_EQ(result.code(), StatusCode::kUnavailable);
}

TEST(BoundedQueueTest, CloseWakesBlockedProducer) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.try_push(0));
  Status result;
  std::thread producer([&] { result = q.push_until(1, far()); });
  q.close();
  producer.join();
  EXPECT_EQ(result.code(), StatusCode::kUnavailable);
  EXPECT_EQ(q.size(), 1u);
}

TEST(BoundedQueueTest, BlockedProducerProceedsWhenRoomAppears) {
  BoundedQueue<int> q(1);
  ASSERT_TRUE(q.try_push(1));
  Status result = internal_error("not run");
  std::thread producer([&] { result = q.push_until(2, far()); });
  EXPECT_EQ(*q.pop_until(far()), 1);
  EXPECT_EQ(*q.pop_until(far()), 2);
  producer.join();
  EXPECT_TRUE(result.is_ok());
}

TEST(BoundedQueueTest, PopAllDrainsInOrderAndFreesRoom) {
  BoundedQueue<int> q(3);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.try_push(i));
  EXPECT_EQ(q.pop_all(), (std::vector<int>{0, 1, 2}));
  EXPECT_TRUE(q.empty());
  EXPECT_TRUE(q.try_push(7));
}

TEST(BoundedQueueTest, EveryItemDeliveredExactlyOnceUnderContention) {
  constexpr int kProducers = 4;
  constexpr int kConsumers = 4;
  constexpr int kPerProducer = 5000;
  BoundedQueue<int> q(8);
  std::vector<std::vector<int>> received(kConsumers);
  std::vector<Status> producer_status(kProducers);

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      while (true) {
        auto item = q.pop_until(far());
        if (!item.is_ok()) break;
        received[c].push_back(*item);
      }
    });
  }
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        Status s = q.push_until(p * kPerProducer + i, far());
        if (!s.is_ok()) {
          producer_status[p] = s;
          return;
        }
      }
    });
  }
  for (auto& t : producers) t.join();
  q.close();
  for (auto& t : consumers) t.join();

  for (const auto& s : producer_status) EXPECT_TRUE(s.is_ok()) << s.to_string();
  std::vector<int> all;
  for (const auto& r : received) all.insert(all.end(), r.begin(), r.end());
  std::sort(all.begin(), all.end());
  ASSERT_EQ(all.size(), static_cast<size_t>(kProducers * kPerProducer));
  for (int i = 0; i < kProducers * kPerProducer; ++i) ASSERT_EQ(all[i], i);
  // Each consumer sees a producer's items in the order they were pushed.
  for (const auto& r : received) {
    std::vector<int> last(kProducers, -1);
    for (int v : r) {
      EXPECT_GT(v, last[v / kPerProducer]);
      last[v / kPerProducer] = v;
    }
  }
}

}  // namespace
}  // namespace baton
