// `baton gateway` coordinating real `baton serve --role prefill|decode`
// instances (protocol/pd.h) with the repository's tiny model: the greedy
// answers through the disaggregated path equal a mixed instance's, streamed
// or not, and prompts sharing a prefix go to the same prefill instance.

#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "gateway/test_process.h"
#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton::gateway {
namespace {

using namespace std::chrono_literals;
using testing::ChildProcess;
using testing::port_of_line;

constexpr auto kStartup = 60s;
constexpr auto kWait = 60s;
constexpr char kToken[] = "gw-pd-test-token";

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";
const std::string kModel = std::string(BATON_SOURCE_DIR) + "/models/baton-tiny";

struct Proc {
  std::unique_ptr<ChildProcess> process;
  uint16_t port = 0;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
};

Proc start(std::vector<std::string> argv, const std::string& ready_line) {
  Proc p;
  p.process = std::make_unique<ChildProcess>(argv);
  auto line = p.process->wait_for_line(ready_line, kStartup);
  if (line) p.port = port_of_line(line->substr(0, line->rfind("/v1")));
  return p;
}

Proc instance(const std::string& role) {
  std::vector<std::string> argv = {kBaton,   "serve",     "--model",     kModel,          "--port",
                                   "0",      "--threads", "1",           "--kv-cache-mb", "64",
                                   "--role", role,        "--log-level", "warn"};
  if (role != "mixed") {
    argv.push_back("--cluster-token");
    argv.push_back(kToken);
  }
  return start(argv, "Baton is serving on");
}

Result<protocol::HttpResponse> post(uint16_t port, const std::string& path,
                                    const nlohmann::json& body) {
  return protocol::http_request("127.0.0.1", port, "POST", path, body.dump(),
                                {{"Content-Type", "application/json"}},
                                protocol::deadline_in(kWait));
}

std::string streamed_text(uint16_t port, const std::string& path, nlohmann::json body, bool chat,
                          std::string* prefill = nullptr) {
  body["stream"] = true;
  std::string text;
  protocol::SseParser parser;
  auto r = protocol::http_stream(
      "127.0.0.1", port, "POST", path, body.dump(), {{"Content-Type", "application/json"}},
      protocol::deadline_in(kWait), [&](std::string_view piece) {
        for (auto& ev : parser.feed(piece)) {
          if (ev.is_done()) continue;
          auto j = nlohmann::json::parse(ev.data, nullptr, false);
          if (!j.is_object() || !j.contains("choices") || j["choices"].empty()) continue;
          const auto& c = j["choices"][0];
          if (chat) {
            if (c["delta"].contains("content")) text += c["delta"]["content"].get<std::string>();
          } else {
            text += c["text"].get<std::string>();
          }
        }
        return true;
      });
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (r.is_ok()) {
    EXPECT_EQ(r->status, 200);
    if (prefill) *prefill = std::string(r->header("x-baton-prefill-instance").value_or(""));
  }
  return text;
}

TEST(GatewayPdInstanceTest, DisaggregatedAnswersEqualAMixedInstancesAndPrefixesStick) {
  Proc mixed = instance("mixed");
  Proc p0 = instance("prefill");
  Proc p1 = instance("prefill");
  Proc d0 = instance("decode");
  ASSERT_NE(mixed.port, 0);
  ASSERT_NE(p0.port, 0);
  ASSERT_NE(p1.port, 0);
  ASSERT_NE(d0.port, 0);
  Proc gw = start({kBaton, "gateway", "--port", "0", "--log-level", "warn", "--no-access-log",
                   "--cluster-token", kToken, "--prefill", p0.url(), "--prefill", p1.url(),
                   "--decode", d0.url()},
                  "Baton gateway on");
  ASSERT_NE(gw.port, 0);

  const nlohmann::json completion = {{"model", "baton-tiny"},
                                     {"prompt", "The quick brown fox jumps over"},
                                     {"max_tokens", 12},
                                     {"temperature", 0}};
  auto direct = post(mixed.port, "/v1/completions", completion);
  ASSERT_TRUE(direct.is_ok());
  ASSERT_EQ(direct->status, 200) << direct->body;
  const std::string expected =
      nlohmann::json::parse(direct->body)["choices"][0]["text"].get<std::string>();

  auto via = post(gw.port, "/v1/completions", completion);
  ASSERT_TRUE(via.is_ok());
  ASSERT_EQ(via->status, 200) << via->body;
  EXPECT_EQ(nlohmann::json::parse(via->body)["choices"][0]["text"].get<std::string>(), expected);
  EXPECT_EQ(via->header("x-baton-instance").value_or(""), "127.0.0.1:" + std::to_string(d0.port));
  EXPECT_EQ(streamed_text(gw.port, "/v1/completions", completion, false), expected);

  const nlohmann::json chat = {
      {"model", "baton-tiny"},
      {"messages", {{{"role", "user"}, {"content", "Tell me about the sea"}}}},
      {"max_tokens", 10},
      {"temperature", 0}};
  auto chat_direct = post(mixed.port, "/v1/chat/completions", chat);
  ASSERT_TRUE(chat_direct.is_ok());
  EXPECT_EQ(streamed_text(gw.port, "/v1/chat/completions", chat, true),
            nlohmann::json::parse(chat_direct->body)["choices"][0]["message"]["content"]
                .get<std::string>());

  // Prompts sharing a long prefix go to the prefill instance that has it.
  std::map<int, std::set<std::string>> where;
  for (int round = 0; round < 3; ++round) {
    for (int family = 0; family < 2; ++family) {
      std::string prompt = std::string(family == 0 ? "Once upon a time " : "In a land far away ") +
                           "there lived a " + std::string(family == 0 ? "king" : "queen") +
                           " who loved long stories about the sea and the mountains and the "
                           "rivers and the forests, and asked everyone for one more, number " +
                           std::to_string(round);
      std::string prefill;
      streamed_text(gw.port, "/v1/completions",
                    {{"model", "baton-tiny"}, {"prompt", prompt}, {"max_tokens", 2}}, false,
                    &prefill);
      where[family].insert(prefill);
    }
  }
  for (auto& [family, prefills] : where) {
    EXPECT_EQ(prefills.size(), 1u) << "family " << family;
    EXPECT_FALSE(prefills.begin()->empty());
  }
}

}  // namespace
}  // namespace baton::gateway
