// `baton gateway` (the real binary) in front of real `baton serve` instances
// with the repository's tiny model: answers through the gateway equal the
// instance's own, streamed or not, and a SIGHUP reload moves traffic.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "gateway/test_process.h"
#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton::gateway {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::port_of_line;

constexpr auto kStartup = 60s;  // loading the model on a busy 2-core machine
constexpr auto kWait = 30s;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";
const std::string kModel = std::string(BATON_SOURCE_DIR) + "/models/baton-tiny";

struct Instance {
  std::unique_ptr<ChildProcess> process;
  uint16_t port = 0;
};

Instance start_instance() {
  Instance i;
  i.process = std::make_unique<ChildProcess>(
      std::vector<std::string>{kBaton, "serve", "--model", kModel, "--port", "0", "--threads", "1",
                               "--kv-cache-mb", "64", "--log-level", "warn"});
  auto line = i.process->wait_for_line("Baton is serving on", kStartup);
  if (line) i.port = port_of_line(line->substr(0, line->rfind("/v1")));
  return i;
}

Instance start_gateway(const std::vector<std::string>& extra) {
  Instance g;
  std::vector<std::string> argv = {kBaton, "gateway", "--port", "0", "--log-level", "warn"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  g.process = std::make_unique<ChildProcess>(argv);
  auto line = g.process->wait_for_line("Baton gateway on", kStartup);
  if (line) g.port = port_of_line(line->substr(0, line->rfind("/v1")));
  return g;
}

Result<protocol::HttpResponse> post(uint16_t port, const std::string& path,
                                    const nlohmann::json& body) {
  return protocol::http_request("127.0.0.1", port, "POST", path, body.dump(),
                                {{"Content-Type", "application/json"}},
                                protocol::deadline_in(kWait));
}

// The text of a streamed completion: the deltas of every chunk, in order.
std::string streamed_text(uint16_t port, const std::string& path, nlohmann::json body, bool chat) {
  body["stream"] = true;
  std::string text;
  protocol::SseParser parser;
  auto r = protocol::http_stream("127.0.0.1", port, "POST", path, body.dump(),
                                 {{"Content-Type", "application/json"}},
                                 protocol::deadline_in(kWait), [&](std::string_view piece) {
                                   for (auto& ev : parser.feed(piece)) {
                                     if (ev.is_done()) continue;
                                     auto j = nlohmann::json::parse(ev.data);
                                     const auto& c = j["choices"][0];
                                     if (chat) {
                                       if (c["delta"].contains("content")) {
                                         text += c["delta"]["content"].get<std::string>();
                                       }
                                     } else {
                                       text += c["text"].get<std::string>();
                                     }
                                   }
                                   return true;
                                 });
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return text;
}

class GatewayInstanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_ = start_instance();
    b_ = start_instance();
    ASSERT_NE(a_.port, 0) << "baton serve did not start";
    ASSERT_NE(b_.port, 0) << "baton serve did not start";
  }
  std::string url(const Instance& i) { return "http://127.0.0.1:" + std::to_string(i.port); }

  Instance a_, b_;
};

TEST_F(GatewayInstanceTest, AnswersThroughTheGatewayEqualTheInstancesOwn) {
  Instance gw = start_gateway(
      {"--upstream", url(a_), "--upstream", url(b_), "--policy", "round_robin", "--no-access-log"});
  ASSERT_NE(gw.port, 0);
  const nlohmann::json completion = {{"model", "baton-tiny"},
                                     {"prompt", "The quick brown fox"},
                                     {"max_tokens", 12},
                                     {"temperature", 0}};
  const nlohmann::json chat = {
      {"model", "baton-tiny"},
      {"messages", {{{"role", "user"}, {"content", "Tell me about the sea"}}}},
      {"max_tokens", 12},
      {"temperature", 0}};
  auto direct = post(a_.port, "/v1/completions", completion);
  ASSERT_TRUE(direct.is_ok());
  const std::string expected =
      nlohmann::json::parse(direct->body)["choices"][0]["text"].get<std::string>();
  std::set<std::string> instances;
  for (int i = 0; i < 4; ++i) {
    auto via = post(gw.port, "/v1/completions", completion);
    ASSERT_TRUE(via.is_ok());
    ASSERT_EQ(via->status, 200) << via->body;
    EXPECT_EQ(nlohmann::json::parse(via->body)["choices"][0]["text"].get<std::string>(), expected);
    instances.insert(std::string(via->header("x-baton-instance").value_or("")));
  }
  EXPECT_EQ(instances.size(), 2u);  // round robin used both
  EXPECT_EQ(streamed_text(gw.port, "/v1/completions", completion, false), expected);

  auto chat_direct = post(b_.port, "/v1/chat/completions", chat);
  ASSERT_TRUE(chat_direct.is_ok());
  const std::string chat_expected =
      nlohmann::json::parse(chat_direct->body)["choices"][0]["message"]["content"]
          .get<std::string>();
  EXPECT_EQ(streamed_text(gw.port, "/v1/chat/completions", chat, true), chat_expected);

  // An instance's own validation error reaches the client as it was.
  auto bad = post(gw.port, "/v1/completions",
                  {{"model", "baton-tiny"}, {"prompt", "x"}, {"temperature", 9}});
  ASSERT_TRUE(bad.is_ok());
  EXPECT_EQ(bad->status, 400);
  EXPECT_NE(bad->body.find("temperature"), std::string::npos);
}

TEST_F(GatewayInstanceTest, SighupReloadsTheConfigFile) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("baton-gw-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = (dir / "gateway.yaml").string();
  auto write_config = [&](const Instance& i, const std::string& name) {
    std::ofstream f(path);
    f << "access_log: false\nhealth: {interval_ms: 0}\ninstances:\n  - {name: " << name
      << ", url: '" << url(i) << "'}\n";
  };
  write_config(a_, "first");
  Instance gw = start_gateway({"--config", path});
  ASSERT_NE(gw.port, 0);
  const nlohmann::json body = {{"model", "baton-tiny"}, {"prompt", "Hi"}, {"max_tokens", 2}};
  auto r = post(gw.port, "/v1/completions", body);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->header("x-baton-instance").value_or(""), "first");
  write_config(b_, "second");
  gw.process->signal(SIGHUP);
  // The reload is asynchronous to this test: ask until it shows, bounded.
  std::string seen;
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (seen != "second" && std::chrono::steady_clock::now() < deadline) {
    auto again = post(gw.port, "/v1/completions", body);
    ASSERT_TRUE(again.is_ok());
    ASSERT_EQ(again->status, 200) << again->body;
    seen = std::string(again->header("x-baton-instance").value_or(""));
  }
  EXPECT_EQ(seen, "second");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace baton::gateway
