// Fault injection under steady load (label slow): `baton up --prefill 2
// --decode 2` serves the default model through the gateway while client
// threads stream greedy completions; a prefill instance, a decode instance
// and the gateway are killed with SIGKILL in turn (baton up restarts them).
// Every request must end in either the exact answer a mixed instance gives
// (no duplicated or missing tokens) or a clear error within its deadline —
// never a hang or a wrong answer; the cluster must serve again within 10 s
// of each kill; and afterwards no instance holds KV for anyone.

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/net.h"
#include "gateway/test_process.h"
#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using gateway::testing::ChildProcess;

constexpr auto kRequestDeadline = std::chrono::seconds(30);
constexpr int kMaxTokens = 12;

std::string baton_bin() { return std::string(BATON_BINARY_DIR) + "/cli/baton"; }

std::string prompt(int i) { return "Fault test prompt number " + std::to_string(i) + " says"; }

json body(int i, bool stream) {
  return {{"model", "baton-tiny"}, {"prompt", prompt(i)}, {"max_tokens", kMaxTokens},
          {"temperature", 0},      {"ignore_eos", true},  {"stream", stream}};
}

// kRefused: the gateway was not there to connect to (killed, restarting).
enum class Outcome { kOk, kError, kRefused, kWrong, kHang };

struct Tally {
  std::mutex mu;
  std::condition_variable cv;
  int ok = 0, error = 0, refused = 0, wrong = 0, hang = 0;
  int consecutive_ok = 0;
  std::vector<std::string> wrong_examples;
  void add(Outcome o, const std::string& detail) {
    std::lock_guard lock(mu);
    switch (o) {
      case Outcome::kOk:
        ++ok;
        ++consecutive_ok;
        break;
      case Outcome::kError:
        ++error;
        consecutive_ok = 0;
        break;
      case Outcome::kRefused:
        ++refused;
        consecutive_ok = 0;
        break;
      case Outcome::kWrong:
        ++wrong;
        consecutive_ok = 0;
        if (wrong_examples.size() < 5) wrong_examples.push_back(detail);
        break;
      case Outcome::kHang:
        ++hang;
        consecutive_ok = 0;
        break;
    }
    cv.notify_all();
  }
  // Waits until pred() holds (under the lock) or the deadline passes.
  template <typename Pred>
  bool wait(std::chrono::seconds limit, Pred pred) {
    std::unique_lock lock(mu);
    return cv.wait_until(lock, Clock::now() + limit, pred);
  }
};

// One streamed request through the gateway, judged against the reference.
Outcome one_request(uint16_t port, int i, const std::string& expected, std::string& detail) {
  protocol::SseParser parser;
  std::string text;
  bool done = false, error_event = false;
  auto r =
      protocol::http_stream("127.0.0.1", port, "POST", "/v1/completions", body(i, true).dump(),
                            {{"Content-Type", "application/json"}},
                            protocol::deadline_in(kRequestDeadline), [&](std::string_view piece) {
                              for (auto& ev : parser.feed(piece)) {
                                if (ev.is_done()) {
                                  done = true;
                                  continue;
                                }
                                auto j = json::parse(ev.data, nullptr, false);
                                if (j.is_discarded()) continue;
                                if (j.contains("error")) {
                                  error_event = true;
                                  continue;
                                }
                                for (const auto& c : j["choices"]) text += c.value("text", "");
                              }
                              return true;
                            });
  if (!r.is_ok()) {
    if (r.status().code() == StatusCode::kDeadlineExceeded) return Outcome::kHang;
    // Refused before anything was sent, or cut: a clear failure either way.
    return r.status().message().find("onnect") != std::string::npos ? Outcome::kRefused
                                                                    : Outcome::kError;
  }
  if (r->status != 200 || error_event) return Outcome::kError;
  if (!done) return Outcome::kError;  // the stream was cut without [DONE]
  if (text != expected) {
    detail = "prompt " + std::to_string(i) + ": got \"" + text + "\" want \"" + expected + "\"";
    return Outcome::kWrong;
  }
  return Outcome::kOk;
}

double metric(uint16_t port, const std::string& name) {
  auto r = protocol::http_request("127.0.0.1", port, "GET", "/metrics", "", {},
                                  protocol::deadline_in(std::chrono::seconds(10)));
  if (!r.is_ok()) return -1;
  std::istringstream in(r->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
  }
  return -1;
}

TEST(FaultInjection, KillingAPrefillADecodeAndTheGatewayLosesNothing) {
  constexpr int kPrompts = 8;
  // Reference answers from one mixed instance of the same model.
  std::map<int, std::string> expected;
  {
    ChildProcess ref({baton_bin(), "serve", "--port", "0", "--threads", "1"});
    auto line = ref.wait_for_line("serving on", std::chrono::seconds(60));
    ASSERT_TRUE(line) << "reference instance did not start";
    const uint16_t port = gateway::testing::port_of_line(line->substr(0, line->rfind("/v1")));
    for (int i = 0; i < kPrompts; ++i) {
      auto r = protocol::http_request("127.0.0.1", port, "POST", "/v1/completions",
                                      body(i, false).dump(), {{"Content-Type", "application/json"}},
                                      protocol::deadline_in(std::chrono::seconds(60)));
      ASSERT_TRUE(r.is_ok() && r->status == 200);
      expected[i] = json::parse(r->body)["choices"][0]["text"];
    }
  }

  const uint16_t port = *baton::free_loopback_port();
  ChildProcess up({baton_bin(), "up", "--prefill", "2", "--decode", "2", "--port",
                   std::to_string(port), "--serve-arg=--threads", "--serve-arg=1"});
  ASSERT_TRUE(up.wait_for_line("Baton is up", std::chrono::seconds(120))) << "cluster never ready";
  std::map<std::string, std::pair<pid_t, uint16_t>> children;  // name -> pid, port
  for (const char* name : {"p0", "p1", "d0", "d1", "gateway"}) {
    auto line = up.wait_for_line(std::string("  ") + name + "  ", std::chrono::seconds(10));
    ASSERT_TRUE(line) << name;
    const auto pid_at = line->find(" pid ");
    const pid_t pid = std::atoi(line->c_str() + pid_at + 5);
    const auto url = line->find("http://127.0.0.1:");
    const auto p = static_cast<uint16_t>(std::atoi(line->c_str() + url + 17));
    children[name] = {pid, p};
  }

  Tally tally;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      for (int k = 0; !stop.load(); ++k) {
        const int i = (t * 3 + k) % kPrompts;
        std::string detail;
        tally.add(one_request(port, i, expected[i], detail), detail);
      }
    });
  }

  for (const char* victim : {"p0", "d0", "gateway"}) {
    // Steady state first: 10 more successes.
    int base = 0;
    {
      std::lock_guard lock(tally.mu);
      base = tally.ok;
    }
    ASSERT_TRUE(tally.wait(std::chrono::seconds(120), [&] { return tally.ok >= base + 25; }))
        << "no steady load before killing " << victim;
    ::kill(children[victim].first, SIGKILL);
    const auto killed_at = Clock::now();
    {
      std::lock_guard lock(tally.mu);
      tally.consecutive_ok = 0;
    }
    // Serving normally again: 5 answers in a row, within 10 s.
    ASSERT_TRUE(tally.wait(std::chrono::seconds(60), [&] { return tally.consecutive_ok >= 5; }))
        << "the cluster did not recover after killing " << victim;
    const double recovery = std::chrono::duration<double>(Clock::now() - killed_at).count();
    EXPECT_LT(recovery, 10.0) << "recovery after killing " << victim;
    std::printf("killed %s: serving again after %.2f s\n", victim, recovery);
  }
  stop = true;
  for (auto& c : clients) c.join();

  std::printf(
      "requests: %d ok, %d clear errors, %d connections refused while the gateway restarted, %d "
      "wrong, %d hung\n",
      tally.ok, tally.error, tally.refused, tally.wrong, tally.hang);
  EXPECT_EQ(tally.wrong, 0) << (tally.wrong_examples.empty() ? "" : tally.wrong_examples[0]);
  EXPECT_EQ(tally.hang, 0);
  EXPECT_GT(tally.ok, 30);
  // Nothing stays reserved or running on any instance once the load stops.
  for (const char* name : {"p0", "p1", "d0", "d1"}) {
    const uint16_t p = children[name].second;
    EXPECT_EQ(metric(p, "baton:kv_cache_usage_perc"), 0.0) << name;
    EXPECT_EQ(metric(p, "baton:num_requests_running"), 0.0) << name;
  }
}

}  // namespace
}  // namespace baton
