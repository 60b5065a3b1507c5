// `baton bench` end to end: a real `baton serve` with the built-in tiny model
// on a free port, and the real `baton` binary benchmarking it, as a user runs
// them. Checks what the user relies on: every request counted, exact token
// counts (ignore_eos), result files that replay and plot. No timing is
// asserted.

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>

namespace {

namespace fs = std::filesystem;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";

struct Outcome {
  int exit_code;
  std::string output;
};

Outcome run_baton(const std::string& args) {
  std::string cmd = kBaton + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  EXPECT_NE(p, nullptr);
  std::string out;
  std::array<char, 4096> buf{};
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// `baton serve` on port 0; the URL is read from its "serving on" line.
class Server {
 public:
  Server() {
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(fds[1], STDOUT_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::string model = std::string(BATON_SOURCE_DIR) + "/models/baton-tiny";
      execl(kBaton.c_str(), "baton", "serve", "--model", model.c_str(), "--port", "0", "--threads",
            "1", "--log-level", "warn", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    out_ = fds[0];
    // Reads until the ready line; the deadline only bounds a broken start.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    std::string seen;
    std::regex ready("serving on (http://[^\\s]+)/v1");
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 1000) <= 0) continue;
      char buf[512];
      ssize_t n = read(out_, buf, sizeof buf);
      if (n <= 0) break;  // the server exited
      seen.append(buf, static_cast<size_t>(n));
      std::smatch m;
      if (std::regex_search(seen, m, ready)) {
        url_ = m[1];
        return;
      }
    }
    ADD_FAILURE() << "baton serve did not start: " << seen;
  }
  ~Server() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status = 0;
      waitpid(pid_, &status, 0);
    }
    if (out_ >= 0) close(out_);
  }
  const std::string& url() const { return url_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string url_;
};

class BenchCli : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { server_ = new Server(); }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_FALSE(server_->url().empty());
    dir_ = fs::temp_directory_path() /
           ("baton_bench_cli_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static nlohmann::json read_json(const fs::path& p) {
    std::ifstream in(p);
    return nlohmann::json::parse(in, nullptr, false);
  }
  static int lines(const fs::path& p) {
    std::ifstream in(p);
    int n = 0;
    for (std::string l; std::getline(in, l);) n += !l.empty();
    return n;
  }

  static Server* server_;
  fs::path dir_;
};

Server* BenchCli::server_ = nullptr;

TEST_F(BenchCli, MeasuresEveryRequestOfAnOpenLoopRun) {
  Outcome r = run_baton("bench --url " + server_->url() +
                        " --num-prompts 8 --random-input-len 32 --random-output-len 8"
                        " --request-rate 40 --max-concurrency 4 --seed 3 --goodput ttft:600000"
                        " --label tiny --result-dir " +
                        dir_.string() + " --save-trace " + (dir_ / "trace.jsonl").string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Successful requests:                     8"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("Failed requests:                         0"), std::string::npos);
  EXPECT_NE(r.output.find("Total generated tokens:                  64"), std::string::npos);

  nlohmann::json j = read_json(dir_ / "tiny_rate-40_conc-4.json");
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["completed"], 8);
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_output_tokens"], 64);  // ignore_eos: exactly max_tokens each
  EXPECT_EQ(j["model_id"], "baton-tiny");
  EXPECT_EQ(j["max_concurrency"], 4);
  // vLLM's peak counts requests active in the same 1-second bucket, so it may
  // pass --max-concurrency when requests follow each other within a second.
  EXPECT_GE(j["max_concurrent_requests"].get<int>(), 1);
  // A generous TTFT SLO: every request is good.
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), j["request_throughput"].get<double>());
  for (const auto& n : j["input_lens"]) EXPECT_GT(n.get<int>(), 0);  // the server's counts
  for (const char* key : {"mean_ttft_ms", "p99_ttft_ms", "p90_tpot_ms", "median_itl_ms",
                          "std_e2el_ms", "output_throughput", "max_output_tokens_per_s"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(lines(dir_ / "tiny_rate-40_conc-4.jsonl"), 8);
  EXPECT_EQ(lines(dir_ / "trace.jsonl"), 8);
}

TEST_F(BenchCli, ReplaysASavedTraceOverTheChatApi) {
  fs::path trace = dir_ / "trace.jsonl";
  {
    std::ofstream out(trace);
    out << R"({"arrival_s": 0.0, "input_len": 20, "output_len": 6, "scenario": "chat"})"
        << "\n"
        << R"({"arrival_s": 0.05, "input_len": 40, "output_len": 3, "prefix_group": 0, "prefix_len": 16})"
        << "\n"
        << R"({"arrival_s": 0.1, "input_len": 40, "output_len": 5, "prefix_group": 0, "prefix_len": 16})"
        << "\n";
  }
  Outcome r = run_baton("bench --url " + server_->url() + "/v1 --backend openai-chat --trace " +
                        trace.string() + " --label chat --result-dir " + dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = read_json(dir_ / "chat_trace.json");
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["completed"], 3);
  EXPECT_EQ(j["total_output_tokens"], 14);
  EXPECT_EQ(j["endpoint"], "/v1/chat/completions");
  // Only the first request carries a scenario tag.
  EXPECT_EQ(j["scenarios"]["chat"]["completed"], 1);
  EXPECT_EQ(j["scenarios"]["chat"]["total_output_tokens"], 6);
  EXPECT_NE(r.output.find("scenario chat: 1 ok, 0 failed"), std::string::npos) << r.output;
}

TEST_F(BenchCli, ConversationsGrowWithTheServersAnswers) {
  Outcome r = run_baton("bench --url " + server_->url() +
                        " --backend openai-chat --multi-turn 3 --num-prompts 6"
                        " --random-input-len 16 --random-output-len 4 --label chat"
                        " --result-dir " +
                        dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  nlohmann::json j = read_json(dir_ / "chat_rate-inf.json");
  ASSERT_FALSE(j.is_discarded()) << r.output;
  EXPECT_EQ(j["completed"], 6);
  EXPECT_EQ(j["total_output_tokens"], 24);
  // Two conversations, sent turn by turn: requests 0 and 1 open them, 2 and 3
  // add a second turn, 4 and 5 a third; each turn's prompt holds the last.
  const auto& in = j["input_lens"];
  for (int k = 2; k < 6; ++k) EXPECT_GT(in[k].get<int>(), in[k - 2].get<int>()) << k;
}

TEST_F(BenchCli, CompareRunsOneWorkloadPerTargetAndPrintsRatios) {
  Outcome r = run_baton("bench compare --target first=" + server_->url() +
                        " --target second=" + server_->url() +
                        " --num-prompts 4 --random-input-len 16 --random-output-len 4"
                        " --max-concurrency 2 --result-dir " +
                        dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Comparison at request rate inf"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ratio"), std::string::npos);
  EXPECT_TRUE(std::regex_search(r.output, std::regex("Successful requests +4 +4 +1\\.00x")))
      << r.output;
  // Saved results compare again without running.
  Outcome again =
      run_baton("bench compare --results " + (dir_ / "first_rate-inf_conc-2.json").string() + " " +
                (dir_ / "second_rate-inf_conc-2.json").string());
  ASSERT_EQ(again.exit_code, 0) << again.output;
  EXPECT_NE(again.output.find("Mean TTFT (ms)"), std::string::npos) << again.output;
}

TEST_F(BenchCli, CompareLaunchesEachConfigurationInTurn) {
  std::string serve = kBaton + " serve --model " + std::string(BATON_SOURCE_DIR) +
                      "/models/baton-tiny --port 0 --threads 1 --log-level warn";
  Outcome r = run_baton("bench compare --launch 'wide=" + serve + "' --launch 'narrow=" + serve +
                        " --max-num-seqs 1' --num-prompts 4 --random-input-len 16"
                        " --random-output-len 4 --launch-log-dir " +
                        (dir_ / "logs").string() + " --result-dir " + dir_.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("wide is up at http://127.0.0.1:"), std::string::npos) << r.output;
  // One at a time: the first is stopped before the second starts.
  EXPECT_LT(r.output.find("stopped wide"), r.output.find("starting narrow")) << r.output;
  EXPECT_NE(r.output.find("stopped narrow"), std::string::npos) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex("Successful requests +4 +4 +1\\.00x")))
      << r.output;
  EXPECT_TRUE(fs::exists(dir_ / "logs" / "wide.log"));
  nlohmann::json narrow = read_json(dir_ / "narrow_rate-inf.json");
  ASSERT_FALSE(narrow.is_discarded());
  EXPECT_EQ(narrow["completed"], 4);
}

TEST_F(BenchCli, PlotsPngsFromResults) {
  if (std::system("command -v gnuplot >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "gnuplot is not installed (scripts/install-deps.sh installs gnuplot-nox)";
  }
  for (const char* rate : {"20", "inf"}) {
    Outcome r = run_baton("bench --url " + server_->url() +
                          " --num-prompts 4 --random-input-len 16 --random-output-len 4"
                          " --request-rate " +
                          std::string(rate) + " --result-dir " + dir_.string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  fs::path plots = dir_ / "plots";
  Outcome r = run_baton("bench plot " + (dir_ / "baton_rate-20.json").string() + " " +
                        (dir_ / "baton_rate-inf.json").string() + " --out-dir " + plots.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* png : {"latency_cdf.png", "vs_rate.png", "timeline_baton_rate_20.png"}) {
    std::ifstream in(plots / png, std::ios::binary);
    std::string magic(4, '\0');
    in.read(magic.data(), 4);
    EXPECT_EQ(magic, "\x89PNG") << png << "\n" << r.output;
  }
}

TEST_F(BenchCli, BadArgumentsAreUsageErrors) {
  Outcome r = run_baton("bench --url " + server_->url() + " --goodput latency:5");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("latency"), std::string::npos) << r.output;
  r = run_baton("bench --url " + server_->url() + " --request-rate fast");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_baton("bench compare --target only=" + server_->url());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = run_baton("bench --url " + server_->url() + " --scenario broken:1");
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
