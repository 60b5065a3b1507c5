#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <latch>
#include <stdexcept>

namespace baton {
namespace {

using namespace std::chrono_literals;

std::chrono::steady_clock::time_point far() { return std::chrono::steady_clock::now() + 60s; }
std::chrono::steady_clock::time_point past() { return std::chrono::steady_clock::now() - 1s; }

// Occupies one worker until released; started() returns once it runs.
class Blocker {
 public:
  ThreadPool::Task task() {
    return [this] {
      started_.count_down();
      release_.wait();
    };
  }
  void wait_started() { started_.wait(); }
  void release() { release_.count_down(); }

 private:
  std::latch started_{1};
  std::latch release_{1};
};

TEST(ThreadPoolTest, RunsEverySubmittedTask) {
  std::atomic<int> ran{0};
  {
    ThreadPool pool(3, 1000, "test");
    EXPECT_EQ(pool.num_threads(), 3u);
    for (int i = 0; i < 500; ++i) {
      ASSERT_TRUE(pool.submit([&] { ran.fetch_add(1); }).is_ok());
    }
    ASSERT_TRUE(pool.shutdown(far()).is_ok());
  }
  EXPECT_EQ(ran.load(), 500);
}

TEST(ThreadPoolTest, FullQueueIsResourceExhausted) {
  ThreadPool pool(1, 2);
  Blocker blocker;
  ASSERT_TRUE(pool.submit(blocker.task()).is_ok());
  blocker.wait_started();
  std::atomic<int> ran{0};
  EXPECT_TRUE(pool.submit([&] { ran.fetch_add(1); }).is_ok());
  EXPECT_TRUE(pool.submit([&] { ran.fetch_add(1); }).is_ok());
  Status full = pool.submit([&] { ran.fetch_add(100); });
  EXPECT_EQ(full.code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(pool.queued(), 2u);
  blocker.release();
  ASSERT_TRUE(pool.shutdown(far()).is_ok());
  EXPECT_EQ(ran.load(), 2);
}

TEST(ThreadPoolTest, ShutdownDrainsQueuedTasksThenRefusesNewOnes) {
  ThreadPool pool(1, 10);
  Blocker blocker;
  ASSERT_TRUE(pool.submit(blocker.task()).is_ok());
  blocker.wait_started();
  std::atomic<int> ran{0};
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool.submit([&] { ran.fetch_add(1); }).is_ok());
  std::thread releaser([&] { blocker.release(); });
  EXPECT_TRUE(pool.shutdown(far()).is_ok());
  releaser.join();
  EXPECT_EQ(ran.load(), 5);
  EXPECT_EQ(pool.submit([] {}).code(), StatusCode::kUnavailable);
  EXPECT_TRUE(pool.shutdown(far()).is_ok());  // idempotent
}

TEST(ThreadPoolTest, ShutdownPastDeadlineDropsTasksNotYetStarted) {
  std::atomic<int> ran{0};
  Blocker blocker;
  {
    ThreadPool pool(1, 10);
    ASSERT_TRUE(pool.submit(blocker.task()).is_ok());
    blocker.wait_started();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool.submit([&] { ran.fetch_add(1); }).is_ok());
    Status s = pool.shutdown(past());
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
    EXPECT_NE(s.message().find("3 queued tasks dropped"), std::string::npos) << s.message();
    EXPECT_EQ(pool.submit([] {}).code(), StatusCode::kUnavailable);
    blocker.release();
  }  // the destructor joins the worker once its current task returns
  EXPECT_EQ(ran.load(), 0);
}

TEST(ThreadPoolTest, ThrowingTaskDoesNotKillItsWorker) {
  ThreadPool pool(1, 10);
  ASSERT_TRUE(pool.submit([] { throw std::runtime_error("boom"); }).is_ok());
  ASSERT_TRUE(pool.submit([] { throw 42; }).is_ok());
  auto after = pool.submit_with_result([] { return 7; });
  ASSERT_TRUE(after.is_ok());
  EXPECT_EQ(after->get(), 7);
  ASSERT_TRUE(pool.shutdown(far()).is_ok());
  EXPECT_EQ(pool.failed_tasks(), 2u);
}

TEST(ThreadPoolTest, SubmitWithResultDeliversValuesAndExceptions) {
  ThreadPool pool(2, 10);
  auto value = pool.submit_with_result([] { return std::string("done"); });
  auto error = pool.submit_with_result([]() -> int { throw std::invalid_argument("bad"); });
  ASSERT_TRUE(value.is_ok());
  ASSERT_TRUE(error.is_ok());
  EXPECT_EQ(value->get(), "done");
  EXPECT_THROW(error->get(), std::invalid_argument);
  ASSERT_TRUE(pool.shutdown(far()).is_ok());
  EXPECT_EQ(pool.failed_tasks(), 0u);
  EXPECT_EQ(pool.submit_with_result([] { return 1; }).status().code(), StatusCode::kUnavailable);
}

TEST(ThreadPoolTest, TaskMaySubmitFollowUpWork) {
  ThreadPool pool(2, 10);
  std::promise<int> result;
  ASSERT_TRUE(pool.submit([&] {
                    Status s = pool.submit([&] { result.set_value(2); });
                    if (!s.is_ok()) result.set_value(-1);
                  })
                  .is_ok());
  EXPECT_EQ(result.get_future().get(), 2);
}

TEST(ThreadPoolTest, EmptyTaskIsRejected) {
  ThreadPool pool(1, 1);
  EXPECT_EQ(pool.submit(nullptr).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton
