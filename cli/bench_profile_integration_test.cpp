// `baton bench profile` as a user runs it: against a real `baton serve`
// (baton-tiny, one engine thread), the quick probe set writes a profile
// that `baton sim --profile` loads and runs; an unreachable URL is a clear
// failure that writes nothing.

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/clock.h"
#include "controller/child_process.h"
#include "gateway/test_process.h"
#include "sim/profile.h"

namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using baton::controller::ChildProcess;
using baton::controller::ChildSpec;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";

int run_baton(const std::vector<std::string>& args, const fs::path& log,
              std::chrono::seconds limit) {
  ChildSpec spec;
  spec.argv = {kBaton};
  spec.argv.insert(spec.argv.end(), args.begin(), args.end());
  spec.log_path = log.string();
  auto p = ChildProcess::spawn(spec);
  EXPECT_TRUE(p.is_ok()) << p.status().to_string();
  if (!p.is_ok()) return -1;
  if (!p->wait_until(baton::SteadyClock::instance().now() + limit)) {
    p->stop(2s);
    return -1;
  }
  const int st = p->wait_status();
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class BenchProfile : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("baton-bench-profile-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  fs::path dir_;
};

TEST_F(BenchProfile, QuickProbesOfARealInstanceGiveAProfileTheSimulatorRuns) {
  baton::gateway::testing::ChildProcess serve(
      {kBaton, "serve", "--port", "0", "--threads", "1", "--log-level", "warn"});
  auto line = serve.wait_for_line("serving on", 60s);
  ASSERT_TRUE(line) << "baton serve did not start";
  const uint16_t port = baton::gateway::testing::port_of_line(line->substr(0, line->find("/v1")));
  ASSERT_GT(port, 0) << *line;
  const std::string url = "http://127.0.0.1:" + std::to_string(port);

  const fs::path profile = dir_ / "tiny.yaml";
  ASSERT_EQ(run_baton({"bench", "profile", "--url", url, "--quick", "--max-prompt", "256", "--name",
                       "tiny-test", "--out", profile.string()},
                      dir_ / "profile.log", 120s),
            0)
      << read_file(dir_ / "profile.log");
  const std::string log = read_file(dir_ / "profile.log");
  EXPECT_NE(log.find("prefill sample: 256 new + 0 cached tokens, batch 1"), std::string::npos)
      << log;
  EXPECT_NE(log.find("decode sample: batch 8"), std::string::npos) << log;

  auto p = baton::sim::load_profile(profile.string());
  ASSERT_TRUE(p.is_ok()) << p.status().to_string() << "\n" << read_file(profile);
  EXPECT_EQ(p->name, "tiny-test");
  EXPECT_GT(p->prefill.tokens_per_s, 0);
  EXPECT_EQ(p->prefill.step_tokens, 2048);  // what the server runs with, stated
  EXPECT_EQ(p->decode.max_batch, 64);
  EXPECT_GT(baton::sim::decode_step_time(*p, 8, 8 * 128), 0);
  // A loopback round trip, not a made-up default.
  EXPECT_GT(p->network_rtt_s, 0);
  EXPECT_LT(p->network_rtt_s, 0.05);
  // The instance's KV room, from its kv_cache_usage_perc gauge: baton-tiny
  // holds far more than the probes' few thousand tokens.
  EXPECT_GT(p->kv.capacity_tokens, 8 * 128);
  const std::string text = read_file(profile);
  EXPECT_NE(text.find("# Measured by `baton bench profile`"), std::string::npos);
  EXPECT_NE(text.find("least squares over"), std::string::npos);

  const fs::path json = dir_ / "sim.json";
  ASSERT_EQ(run_baton({"sim", "--profile", profile.string(), "--instances", "1", "--mixed",
                       "--requests", "50", "--rate", "2", "--input-len", "64", "--output-len", "8",
                       "--json", json.string()},
                      dir_ / "sim.log", 60s),
            0)
      << read_file(dir_ / "sim.log");
  auto j = nlohmann::json::parse(read_file(json), nullptr, false);
  ASSERT_FALSE(j.is_discarded());
  EXPECT_EQ(j["summary"]["completed"].get<int64_t>(), 50);
  EXPECT_GT(j["summary"]["request_throughput"].get<double>(), 0);
}

TEST_F(BenchProfile, AnUnreachableTargetFailsClearlyAndWritesNothing) {
  const fs::path profile = dir_ / "none.yaml";
  EXPECT_EQ(run_baton({"bench", "profile", "--url", "http://127.0.0.1:1", "--quick", "--out",
                       profile.string()},
                      dir_ / "profile.log", 60s),
            1);
  EXPECT_FALSE(fs::exists(profile));
  EXPECT_NE(read_file(dir_ / "profile.log").find("baton bench profile:"), std::string::npos);
}

}  // namespace
