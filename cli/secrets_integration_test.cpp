// Secrets stay secret: a gateway with API keys in front of a real P/D pair
// (prefill + decode sharing a cluster token) and a controller watching them,
// every process logging at debug level to a file. Authorized and refused
// requests, the refused ones with near-miss keys and tokens, go through the
// gateway and straight at the instances' internal routes; afterwards no log
// file, no /metrics page and no /cluster page holds a key or the token, nor
// any 6-character piece of one (a near miss echoed back would show one).

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "gateway/test_process.h"
#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton {
namespace {

using namespace std::chrono_literals;
using gateway::testing::ChildProcess;
using gateway::testing::port_of_line;
using nlohmann::json;
namespace fs = std::filesystem;

constexpr auto kStartup = 60s;
constexpr auto kWait = 30s;

const std::string kBaton = std::string(BATON_BINARY_DIR) + "/cli/baton";
const std::string kModel = std::string(BATON_SOURCE_DIR) + "/models/baton-tiny";

// Distinctive strings: none of their 6-character pieces occurs by chance.
const std::string kToken = "ct-Hj3kP9sD2fG7aB5eWq";
const std::string kNamedKey = "sk-Qx7vR2mT9pL4wZ8nYc";    // configured with a name
const std::string kUnnamedKey = "sk-Vb6cN1xK8jU3yE0rTo";  // named by its fingerprint

// Near misses of `secret`: one character short, one more, one changed, the
// case flipped.
std::vector<std::string> near_misses(const std::string& secret) {
  std::string changed = secret;
  changed[changed.size() / 2] = changed[changed.size() / 2] == 'Z' ? 'Y' : 'Z';
  std::string flipped = secret;
  for (char& c : flipped) c = std::isupper(c) ? std::tolower(c) : std::toupper(c);
  return {secret.substr(0, secret.size() - 1), secret + "x", changed, flipped};
}

struct Proc {
  std::unique_ptr<ChildProcess> child;
  uint16_t port = 0;
  std::string log;
};

// Runs baton with its stderr (the log) going to `log`.
Proc start(const fs::path& dir, const std::string& name, const std::vector<std::string>& args,
           const std::string& ready, const std::string& port_until) {
  Proc p;
  p.log = (dir / (name + ".log")).string();
  std::string cmd = "exec '" + kBaton + "'";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>'" + p.log + "'";
  p.child = std::make_unique<ChildProcess>(std::vector<std::string>{"/bin/sh", "-c", cmd});
  auto line = p.child->wait_for_line(ready, kStartup);
  if (line) p.port = port_of_line(line->substr(0, line->rfind(port_until)));
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string get(uint16_t port, const std::string& path) {
  auto r =
      protocol::http_request("127.0.0.1", port, "GET", path, "", {}, protocol::deadline_in(kWait));
  return r.is_ok() ? r->body : "";
}

int post_status(uint16_t port, const std::string& path, const std::string& body,
                protocol::Headers headers) {
  headers.emplace_back("Content-Type", "application/json");
  auto r = protocol::http_request("127.0.0.1", port, "POST", path, body, headers,
                                  protocol::deadline_in(kWait));
  return r.is_ok() ? r->status : -1;
}

// The first 6-character piece of `secret` found in `text`, or "".
std::string leaked_piece(const std::string& text, const std::string& secret) {
  for (size_t i = 0; i + 6 <= secret.size(); ++i) {
    if (text.find(secret.substr(i, 6)) != std::string::npos) return secret.substr(i, 6);
  }
  return "";
}

TEST(Secrets, KeysAndTheClusterTokenNeverAppearInLogsMetricsOrClusterState) {
  char tmpl[] = "/tmp/baton_secrets_XXXXXX";
  const fs::path dir = mkdtemp(tmpl);
  const std::vector<std::string> serve = {"serve", "--model",     kModel, "--port",
                                          "0",     "--threads",   "1",    "--kv-cache-mb",
                                          "32",    "--log-level", "debug"};
  auto with = [&](std::vector<std::string> extra) {
    std::vector<std::string> a = serve;
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  };
  Proc p0 = start(dir, "p0", with({"--role", "prefill", "--cluster-token", kToken}),
                  "Baton is serving on", "/v1");
  ASSERT_NE(p0.port, 0) << read_file(p0.log);
  Proc d0 = start(dir, "d0", with({"--role", "decode", "--cluster-token", kToken}),
                  "Baton is serving on", "/v1");
  ASSERT_NE(d0.port, 0) << read_file(d0.log);

  const std::string config = (dir / "gateway.yaml").string();
  std::ofstream(config) << "listen: {host: 127.0.0.1, port: 0}\n"
                        << "cluster_token: \"" << kToken << "\"\n"
                        << "instances:\n"
                        << "  - {name: p0, url: http://127.0.0.1:" << p0.port
                        << ", role: prefill}\n"
                        << "  - {name: d0, url: http://127.0.0.1:" << d0.port << ", role: decode}\n"
                        << "api_keys:\n"
                        << "  - {key: " << kNamedKey << ", name: team-a}\n"
                        << "  - {key: " << kUnnamedKey << ", requests_per_minute: 2}\n"
                        << "access_log: true\n";
  Proc gw = start(dir, "gateway", {"gateway", "--config", config, "--log-level", "debug"},
                  "Baton gateway on", "/v1");
  ASSERT_NE(gw.port, 0) << read_file(gw.log);
  Proc ctl =
      start(dir, "controller",
            {"controller", "--port", "0", "--no-adjust-ratio", "--interval-ms", "100",
             "--cluster-token", kToken, "--log-level", "debug", "--member",
             "id=p0,address=127.0.0.1:" + std::to_string(p0.port) + ",role=prefill", "--member",
             "id=d0,address=127.0.0.1:" + std::to_string(d0.port) + ",role=decode"},
            "Baton controller on", "/cluster");
  ASSERT_NE(ctl.port, 0) << read_file(ctl.log);

  const std::string completion =
      json{{"model", "baton-tiny"}, {"prompt", "A secret is"}, {"max_tokens", 4}}.dump();
  const std::string streamed = json{
      {"model", "baton-tiny"},
      {"prompt", "A secret is"},
      {"max_tokens", 4},
      {"stream", true}}.dump();
  // Authorized, through the P/D pair; the unnamed key past its rate limit.
  EXPECT_EQ(post_status(gw.port, "/v1/completions", completion,
                        {{"Authorization", "Bearer " + kNamedKey}}),
            200);
  EXPECT_EQ(
      post_status(gw.port, "/v1/completions", streamed, {{"Authorization", "Bearer " + kNamedKey}}),
      200);
  for (int i = 0; i < 3; ++i) {
    const int s = post_status(gw.port, "/v1/completions", completion,
                              {{"Authorization", "Bearer " + kUnnamedKey}});
    EXPECT_EQ(s, i < 2 ? 200 : 429) << i;
  }
  // Refused: no key, near misses, the right key in the wrong scheme.
  EXPECT_EQ(post_status(gw.port, "/v1/completions", completion, {}), 401);
  for (const auto& key : {kNamedKey, kUnnamedKey}) {
    for (const auto& wrong : near_misses(key)) {
      EXPECT_EQ(post_status(gw.port, "/v1/completions", completion,
                            {{"Authorization", "Bearer " + wrong}}),
                401)
          << wrong;
    }
    EXPECT_EQ(
        post_status(gw.port, "/v1/completions", completion, {{"Authorization", "Basic " + key}}),
        401);
  }
  // Internal routes: never through the gateway, even with the token; on the
  // instances only with the exact token.
  EXPECT_EQ(post_status(gw.port, "/internal/pd/decode", "{}", {{"x-baton-cluster-token", kToken}}),
            404);
  for (uint16_t port : {p0.port, d0.port}) {
    EXPECT_EQ(post_status(port, "/internal/pd/abort", "{}", {}), 401);
    for (const auto& wrong : near_misses(kToken)) {
      EXPECT_EQ(post_status(port, "/internal/pd/abort", "{}", {{"x-baton-cluster-token", wrong}}),
                403)
          << wrong;
    }
    // The right token passes the guard (what the empty body gets then is
    // the route's business).
    const int right =
        post_status(port, "/internal/pd/abort", "{}", {{"x-baton-cluster-token", kToken}});
    EXPECT_NE(right, 401);
    EXPECT_NE(right, 403);
    EXPECT_NE(right, -1);
  }

  // Everything a person or a scraper can read.
  std::vector<std::pair<std::string, std::string>> readable;
  readable.push_back({"gateway /metrics", get(gw.port, "/metrics")});
  readable.push_back({"p0 /metrics", get(p0.port, "/metrics")});
  readable.push_back({"d0 /metrics", get(d0.port, "/metrics")});
  readable.push_back({"controller /metrics", get(ctl.port, "/metrics")});
  readable.push_back({"controller /cluster", get(ctl.port, "/cluster")});
  ASSERT_FALSE(readable.back().second.empty()) << "no /cluster answer";
  // Stopped first, so that every log is complete.
  for (Proc* p : {&ctl, &gw, &d0, &p0}) p->child->stop();
  for (Proc* p : {&ctl, &gw, &d0, &p0}) readable.push_back({p->log, read_file(p->log)});

  // The logs did record the traffic (the check below is not vacuous): the
  // access log names the keys by name and fingerprint.
  const std::string& gateway_log = readable[readable.size() - 3].second;
  EXPECT_NE(gateway_log.find("team-a"), std::string::npos) << gateway_log;
  EXPECT_NE(gateway_log.find("key-"), std::string::npos) << gateway_log;
  for (const auto& [what, text] : readable) {
    for (const auto& secret : {kToken, kNamedKey, kUnnamedKey}) {
      const std::string piece = leaked_piece(text, secret);
      EXPECT_TRUE(piece.empty()) << what << " contains \"" << piece << "\", a piece of a secret";
    }
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace baton
