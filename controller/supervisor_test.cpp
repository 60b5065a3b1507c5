#include "controller/supervisor.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>

namespace baton::controller {
namespace {

using namespace std::chrono_literals;

ChildSpec sh(const std::string& script) {
  ChildSpec spec;
  spec.argv = {"/bin/sh", "-c", script};
  return spec;
}

TEST(RestartDelay, GrowsExponentiallyUpToTheCap) {
  RestartPolicy p{100ms, 1000ms, 2.0, 60s};
  EXPECT_EQ(restart_delay(p, 1), 100ms);
  EXPECT_EQ(restart_delay(p, 2), 200ms);
  EXPECT_EQ(restart_delay(p, 4), 800ms);
  EXPECT_EQ(restart_delay(p, 5), 1000ms);
  EXPECT_EQ(restart_delay(p, 50), 1000ms);
}

TEST(ChildProcess, WaitsWithADeadlineAndReportsHowItEnded) {
  auto p = ChildProcess::spawn(sh("exit 3"));
  ASSERT_TRUE(p.is_ok());
  ASSERT_TRUE(p->wait_until(SteadyClock::instance().now() + 10s));
  EXPECT_EQ(describe_exit(p->wait_status()), "exited with code 3");

  auto q = ChildProcess::spawn(sh("exec sleep 30"));
  ASSERT_TRUE(q.is_ok());
  EXPECT_FALSE(q->wait_until(SteadyClock::instance().now() + 50ms));
  EXPECT_TRUE(q->running());
  q->stop(5s);
  EXPECT_FALSE(q->running());
  EXPECT_NE(describe_exit(q->wait_status()).find("signal 15"), std::string::npos);

  ChildSpec absent;
  absent.argv = {"/no/such/program"};
  auto missing = ChildProcess::spawn(absent);
  ASSERT_TRUE(missing.is_ok());
  ASSERT_TRUE(missing->wait_until(SteadyClock::instance().now() + 10s));
  EXPECT_EQ(describe_exit(missing->wait_status()), "exited with code 127");
}

TEST(Supervisor, RestartsACrashedChildWithBackoff) {
  Supervisor sup(RestartPolicy{100ms, 800ms, 2.0, 60s});
  ASSERT_TRUE(sup.add("steady", sh("exec sleep 60")).is_ok());
  ASSERT_TRUE(sup.add("flaky", sh("exit 1")).is_ok());
  EXPECT_FALSE(sup.add("flaky", sh("true")).is_ok());

  std::vector<SupervisorEvent> seen;
  auto deadline = SteadyClock::instance().now() + 20s;
  while (sup.child("flaky")->restarts < 3 && SteadyClock::instance().now() < deadline) {
    for (auto& e : sup.poll(deadline)) seen.push_back(e);
  }
  ChildState flaky = *sup.child("flaky");
  ASSERT_EQ(flaky.restarts, 3);
  EXPECT_EQ(flaky.last_exit, "exited with code 1");
  ASSERT_GE(seen.size(), 6u);
  EXPECT_EQ(seen[0].kind, SupervisorEvent::Kind::kExited);
  EXPECT_NE(seen[0].message.find("restarting in 0.1 s"), std::string::npos) << seen[0].message;
  EXPECT_EQ(seen[1].kind, SupervisorEvent::Kind::kRestarted);
  EXPECT_NE(seen[2].message.find("restarting in 0.2 s"), std::string::npos) << seen[2].message;
  EXPECT_NE(seen[4].message.find("restarting in 0.4 s"), std::string::npos) << seen[4].message;
  EXPECT_TRUE(sup.child("steady")->running);
  EXPECT_EQ(sup.child("steady")->restarts, 0);

  // A new spec is used from the next restart on: flaky stops crashing.
  EXPECT_EQ(sup.set_spec("nobody", sh("true")).code(), StatusCode::kNotFound);
  ASSERT_TRUE(sup.set_spec("flaky", sh("exec sleep 60")).is_ok());
  deadline = SteadyClock::instance().now() + 20s;
  while (sup.child("flaky")->restarts < 4 && SteadyClock::instance().now() < deadline) {
    sup.poll(deadline);
  }
  ASSERT_EQ(sup.child("flaky")->restarts, 4);
  EXPECT_FALSE(sup.poll(SteadyClock::instance().now() + 300ms).size() > 0)
      << "the new command keeps running";
  EXPECT_TRUE(sup.child("flaky")->running);

  // A child killed from outside (or through signal()) is restarted too.
  pid_t steady = sup.child("steady")->pid;
  EXPECT_FALSE(sup.signal("nobody", SIGKILL));
  ASSERT_TRUE(sup.signal("steady", SIGKILL));
  deadline = SteadyClock::instance().now() + 20s;
  while (sup.child("steady")->restarts < 1 && SteadyClock::instance().now() < deadline) {
    sup.poll(deadline);
  }
  EXPECT_EQ(sup.child("steady")->restarts, 1);
  EXPECT_NE(sup.child("steady")->pid, steady);

  sup.stop_all(5s);
  for (const ChildState& c : sup.children()) EXPECT_FALSE(c.running) << c.name;
  EXPECT_NE(kill(sup.child("steady")->pid, 0), 0) << "the child is gone";
}

TEST(Supervisor, AnExtraFdEndsTheWait) {
  Supervisor sup(RestartPolicy{});
  ASSERT_TRUE(sup.add("steady", sh("exec sleep 60")).is_ok());
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "x", 1), 1);
  bool ready = false;
  auto events = sup.poll(SteadyClock::instance().now() + 30s, fds[0], &ready);
  EXPECT_TRUE(ready);
  EXPECT_TRUE(events.empty());
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace baton::controller
