// Membership against a real etcd server (Debian's etcd-server package),
// started by the test on free loopback ports in a temporary directory.

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>

#include "common/net.h"
#include "controller/etcd_test_server.h"
#include "controller/membership.h"

namespace baton::controller {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using testing::EtcdTestServer;

class Etcd : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bin = testing::find_etcd_binary();
    if (!bin) {
      GTEST_SKIP() << "etcd is not installed (Debian package etcd-server, see "
                      "scripts/install-deps.sh): skipping the etcd membership tests";
    }
    dir_ = fs::temp_directory_path() / ("baton-etcd-" + std::to_string(getpid()) + "-" +
                                        std::to_string(*baton::free_loopback_port()));
    etcd_.emplace(*bin, dir_);
    endpoint_ = etcd_->endpoint();
    start_etcd();
  }

  // Starts etcd (again, after a stop) and waits until it is healthy.
  void start_etcd() {
    Status s = etcd_->start();
    ASSERT_TRUE(s.is_ok()) << s.to_string() << ":\n" << etcd_->log();
  }

  void TearDown() override {
    etcd_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  static bool has(const Membership& m, const std::string& id) {
    for (const Member& x : m.members()) {
      if (x.id == id) return true;
    }
    return false;
  }
  // Waits (on membership changes) until pred() or the deadline.
  template <typename Pred>
  static bool wait_for(const Membership& m, Clock::TimePoint deadline, Pred pred) {
    uint64_t v = m.version();
    while (!pred()) {
      if (SteadyClock::instance().now() >= deadline) return false;
      v = m.wait_for_change(v, deadline);
    }
    return true;
  }

  const std::string prefix_ = "/baton/instances/";
  EtcdEndpoint endpoint_;
  fs::path dir_;
  std::optional<EtcdTestServer> etcd_;
};

TEST_F(Etcd, ClientCallsWork) {
  EtcdClient etcd(endpoint_);
  auto lease = etcd.grant_lease(5);
  ASSERT_TRUE(lease.is_ok()) << lease.status().to_string();
  EXPECT_GE(lease->ttl_s, 5);
  ASSERT_TRUE(etcd.put("/baton/instances/g/a", "{\"v\": 1}", lease->id).is_ok());
  ASSERT_TRUE(etcd.put("/baton/other", "x").is_ok());
  auto range = etcd.range_prefix(prefix_);
  ASSERT_TRUE(range.is_ok()) << range.status().to_string();
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_EQ(range->kvs[0].key, "/baton/instances/g/a");
  EXPECT_EQ(range->kvs[0].value, "{\"v\": 1}");
  EXPECT_EQ(range->kvs[0].lease, lease->id);
  auto ttl = etcd.keep_alive(lease->id);
  ASSERT_TRUE(ttl.is_ok()) << ttl.status().to_string();
  EXPECT_GT(*ttl, 0);
  ASSERT_TRUE(etcd.revoke_lease(lease->id).is_ok());
  EXPECT_EQ(etcd.keep_alive(lease->id).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(etcd.range_prefix(prefix_)->kvs.empty()) << "revoking deletes the lease's keys";

  // A watch from an old revision replays what happened since.
  int64_t start = range->revision;
  std::vector<EtcdWatchEvent> seen;
  auto resumed = etcd.watch_prefix(prefix_, start, protocol::deadline_in(2s),
                                   [&](const std::vector<EtcdWatchEvent>& events) {
                                     seen.insert(seen.end(), events.begin(), events.end());
                                     return false;  // one batch is enough
                                   });
  ASSERT_TRUE(resumed.is_ok()) << resumed.status().to_string();
  ASSERT_FALSE(seen.empty());
  EXPECT_TRUE(seen.back().deleted);
  EXPECT_EQ(seen.back().kv.key, "/baton/instances/g/a");
  EXPECT_GT(*resumed, start);
}

TEST_F(Etcd, RegisteredInstancesAreSeenAndAGracefulStopRemovesThemAtOnce) {
  Member a{"p0", "127.0.0.1", 9001, Role::kPrefill, "chat"};
  Member b{"d0", "127.0.0.1", 9002, Role::kDecode, "chat"};
  auto ra = EtcdRegistration::start(endpoint_, prefix_, a, 10);
  ASSERT_TRUE(ra.is_ok()) << ra.status().to_string();
  // a was there before the watcher started: the initial list has it.
  EtcdWatchOptions fast;
  fast.watch_cycle = 200ms;
  auto m = EtcdMembership::start(endpoint_, prefix_, fast);
  ASSERT_TRUE(m.is_ok()) << m.status().to_string();
  EXPECT_TRUE(has(**m, "p0"));
  auto deadline = SteadyClock::instance().now() + 5s;

  // b joins after a few watch cycles; the watcher sees it.
  auto rb = EtcdRegistration::start(endpoint_, prefix_, b, 10);
  ASSERT_TRUE(rb.is_ok());
  ASSERT_TRUE(wait_for(**m, deadline, [&] { return has(**m, "d0"); }));

  // A role change is a put of the same key.
  b.role = Role::kPrefill;
  ASSERT_TRUE((*rb)->update(b).is_ok());
  ASSERT_TRUE(wait_for(**m, deadline, [&] {
    for (const Member& x : (*m)->members()) {
      if (x.id == "d0") return x.role == Role::kPrefill;
    }
    return false;
  }));

  (*ra)->stop();
  ASSERT_TRUE(wait_for(**m, deadline, [&] { return !has(**m, "p0"); }))
      << "revoking the lease removed the member well before its 10 s TTL";
  EXPECT_TRUE(has(**m, "d0"));
}

TEST_F(Etcd, AnInstanceWhoseKeepAliveStopsLeavesWithinItsLeaseTtl) {
  const int64_t ttl_s = 2;
  Member p{"p1", "127.0.0.1", 9003, Role::kPrefill, "default"};
  auto reg = EtcdRegistration::start(endpoint_, prefix_, p, ttl_s);
  ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
  ASSERT_EQ((*reg)->ttl_s(), ttl_s);
  EtcdWatchOptions fast;
  fast.watch_cycle = 300ms;
  auto m = EtcdMembership::start(endpoint_, prefix_, fast);
  ASSERT_TRUE(m.is_ok());
  ASSERT_TRUE(has(**m, "p1"));

  // Kept alive, it stays past twice its TTL.
  auto kept_until = SteadyClock::instance().now() + std::chrono::seconds(2 * ttl_s);
  EXPECT_FALSE(wait_for(**m, kept_until, [&] { return !has(**m, "p1"); }));
  EXPECT_GT((*reg)->last_renewed(), kept_until - std::chrono::seconds(ttl_s))
      << "keep-alives kept coming";

  // The keep-alives stop, as when the process dies.
  (*reg)->abandon();
  Clock::TimePoint last = (*reg)->last_renewed();
  ASSERT_TRUE(
      wait_for(**m, last + std::chrono::seconds(ttl_s) + 3s, [&] { return !has(**m, "p1"); }));
  auto gone_after = SteadyClock::instance().now() - last;
  // etcd checks expiry every 500 ms and commits the revoke through raft; the
  // watch delivers it at once.
  EXPECT_LE(gone_after, std::chrono::seconds(ttl_s) + 1s)
      << std::chrono::duration<double>(gone_after).count() << " s after the last keep-alive";
  EXPECT_GE(gone_after, std::chrono::seconds(ttl_s) - 500ms)
      << "it left because the lease expired, not earlier";
}

TEST_F(Etcd, WatcherSurvivesAnEtcdRestartAndCatchesUp) {
  auto m = EtcdMembership::start(endpoint_, prefix_, EtcdWatchOptions{300ms, 1000ms, 100ms});
  ASSERT_TRUE(m.is_ok());
  etcd_->stop();
  // While etcd is down the watcher retries; a restart on the same data
  // directory and port brings it back.
  start_etcd();
  if (HasFatalFailure()) return;
  Member x{"x", "127.0.0.1", 9004, Role::kMixed, "default"};
  auto reg = EtcdRegistration::start(endpoint_, prefix_, x, 10);
  ASSERT_TRUE(reg.is_ok()) << reg.status().to_string();
  EXPECT_TRUE(wait_for(**m, SteadyClock::instance().now() + 10s, [&] { return has(**m, "x"); }));
}

}  // namespace
}  // namespace baton::controller
