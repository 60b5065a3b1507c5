// LaunchedTarget with small shell commands standing in for `baton serve` and
// `baton up`: the ready line gives the URL, the process is gone once the
// object is, and a command that dies or never gets ready is a clear error.

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>

#include "bench/serving/launch.h"

namespace baton::bench {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class LaunchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("baton_launch_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string log() const { return (dir_ / "child.log").string(); }
  fs::path dir_;
};

TEST(FindReadyUrl, ReadsBatonsReadyLines) {
  EXPECT_EQ(find_ready_url("loading\nBaton is serving on http://127.0.0.1:8000/v1\nTry: curl"),
            "http://127.0.0.1:8000");
  EXPECT_EQ(find_ready_url("\nBaton is up: http://127.0.0.1:8080/v1  (2 mixed, ready in 3 s)"),
            "http://127.0.0.1:8080");
  EXPECT_EQ(find_ready_url("starting http://127.0.0.1:9/v1 soon"), "");
  EXPECT_EQ(find_ready_url("Baton is serving on http://127.0.0.1:80"), "");  // not complete yet
}

TEST_F(LaunchTest, ReadyLineGivesTheUrlAndTheProcessEndsWithTheObject) {
  fs::path pid_file = dir_ / "pid";
  // The stderr line comes before the ready line, so that it is in the log by
  // the time the ready line is seen and the process is stopped.
  std::string cmd = "echo $$ > " + pid_file.string() +
                    "; echo starting; echo to stderr >&2; "
                    "echo 'Baton is serving on http://127.0.0.1:4321/v1'; exec tail -f /dev/null";
  pid_t pid = 0;
  {
    auto t = LaunchedTarget::start(cmd, log(), 30s);
    ASSERT_TRUE(t.is_ok()) << t.status().to_string();
    EXPECT_EQ((*t)->base_url(), "http://127.0.0.1:4321");
    std::ifstream in(pid_file);
    in >> pid;
    ASSERT_GT(pid, 0);
    EXPECT_EQ(kill(pid, 0), 0);  // running
  }
  EXPECT_EQ(kill(pid, 0), -1);  // stopped and reaped
  EXPECT_EQ(errno, ESRCH);
  std::ifstream in(log());
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("starting"), std::string::npos) << all;
  EXPECT_NE(all.find("to stderr"), std::string::npos) << all;
}

TEST_F(LaunchTest, ExitBeforeReadyIsAnErrorWithTheOutput) {
  auto t = LaunchedTarget::start("echo model not found; exit 3", log(), 30s);
  ASSERT_FALSE(t.is_ok());
  EXPECT_EQ(t.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(t.status().message().find("exited with code 3"), std::string::npos)
      << t.status().message();
  EXPECT_NE(t.status().message().find("model not found"), std::string::npos);
}

TEST_F(LaunchTest, NeverReadyIsAnError) {
  auto t = LaunchedTarget::start("echo still loading; exec tail -f /dev/null", log(), 300ms);
  ASSERT_FALSE(t.is_ok());
  EXPECT_NE(t.status().message().find("not ready"), std::string::npos) << t.status().message();
}

}  // namespace
}  // namespace baton::bench
