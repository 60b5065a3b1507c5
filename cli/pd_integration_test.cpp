// Disaggregated serving across real processes: one `baton serve --role
// prefill`, one `--role decode` and one mixed instance of the same model on
// loopback. A coordinator written here drives protocol/pd.h exactly as the
// gateway does; every answer must equal the mixed instance's, and faults
// must end in clear errors with no KV left reserved.

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gateway/test_process.h"
#include "kvtransfer/wire.h"
#include "protocol/http_client.h"
#include "protocol/pd.h"
#include "protocol/pd_client.h"
#include "protocol/sse.h"

namespace baton {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace pd = protocol::pd;

constexpr char kToken[] = "test-cluster-token";
constexpr auto kTimeout = std::chrono::seconds(60);

// A `baton serve` child process; its port is read from its stdout.
class Instance {
 public:
  Instance(const std::string& role, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {std::string(BATON_BINARY_DIR) + "/cli/baton",
                                     "serve",
                                     "--model",
                                     std::string(BATON_SOURCE_DIR) + "/tests/fixtures/tiny-llama3",
                                     "--port",
                                     "0",
                                     "--threads",
                                     "1",
                                     "--kv-cache-mb",
                                     "64",
                                     "--role",
                                     role,
                                     "--log-level",
                                     "warn"};
    if (role != "mixed") {
      args.push_back("--cluster-token");
      args.push_back(kToken);
    }
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<gateway::testing::ChildProcess>(args);
    // "Baton is serving on http://127.0.0.1:PORT/v1"
    auto line = process_->wait_for_line("serving on http://", kTimeout);
    if (line) port_ = gateway::testing::port_of_line(line->substr(0, line->rfind("/v1")));
    EXPECT_NE(port_, 0) << role << " instance did not start";
  }
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  // Sends `sig` (SIGKILL: a crash) and reaps the process.
  void kill(int sig) {
    process_->signal(sig);
    process_->stop();
  }

  json metrics_value(const std::string& name) const {
    auto r = protocol::http_request("127.0.0.1", port(), "GET", "/metrics", "", {},
                                    protocol::deadline_in(kTimeout));
    EXPECT_TRUE(r.is_ok());
    if (!r.is_ok()) return nullptr;
    size_t at = r->body.find("\n" + name + " ");
    if (at == std::string::npos) return nullptr;
    size_t end = r->body.find('\n', at + 1);
    return json::parse(r->body.substr(at + name.size() + 2, end - at - name.size() - 2));
  }
  double kv_usage() const { return metrics_value("baton:kv_cache_usage_perc").get<double>(); }

 private:
  std::unique_ptr<gateway::testing::ChildProcess> process_;
  uint16_t port_ = 0;
};

protocol::Headers internal_headers() {
  return {{"Content-Type", "application/json"}, {std::string(pd::kTokenHeader), kToken}};
}

// What a client would have received.
struct Answer {
  int status = 0;
  json body;                    // non-stream: the response; errors: the error body
  std::vector<json> chunks;     // stream: every data chunk
  std::optional<Status> error;  // an error event of the decode stream
  std::vector<std::string> prefill_events;
};

// The client's view of a streamed answer: text and finish reason per choice.
std::map<int, std::pair<std::string, std::string>> stream_text(const Answer& a, bool chat) {
  std::map<int, std::pair<std::string, std::string>> out;
  for (const auto& c : a.chunks) {
    for (const auto& ch : c["choices"]) {
      auto& [text, finish] = out[ch["index"].get<int>()];
      if (chat) {
        if (ch["delta"].contains("content") && ch["delta"]["content"].is_string()) {
          text += ch["delta"]["content"].get<std::string>();
        }
      } else {
        text += ch["text"].get<std::string>();
      }
      if (ch.contains("finish_reason") && ch["finish_reason"].is_string()) {
        finish = ch["finish_reason"].get<std::string>();
      }
    }
  }
  return out;
}

Answer ask_mixed(const Instance& m, const std::string& path, const json& body) {
  Answer a;
  protocol::Headers h{{"Content-Type", "application/json"}};
  if (body.value("stream", false)) {
    protocol::SseParser parser;
    auto r = protocol::http_stream("127.0.0.1", m.port(), "POST", path, body.dump(), h,
                                   protocol::deadline_in(kTimeout), [&](std::string_view piece) {
                                     for (auto& ev : parser.feed(piece)) {
                                       if (!ev.is_done()) a.chunks.push_back(json::parse(ev.data));
                                     }
                                     return true;
                                   });
    EXPECT_TRUE(r.is_ok());
    a.status = r.is_ok() ? r->status : 0;
    return a;
  }
  auto r = protocol::http_request("127.0.0.1", m.port(), "POST", path, body.dump(), h,
                                  protocol::deadline_in(kTimeout));
  EXPECT_TRUE(r.is_ok());
  a.status = r->status;
  a.body = json::parse(r->body);
  return a;
}

// The coordinator (protocol/pd_client.h), its outcome seen as a client's
// answer. `before_prefill` runs once the ticket is known.
Answer ask_pd(const Instance& p, const Instance& d, pd::Api api, const json& body,
              int64_t lease_ms = 30000,
              const std::function<void(pd::Ticket&)>& before_prefill = {}) {
  pd::PdRequestOptions o;
  o.cluster_token = kToken;
  o.lease_ms = lease_ms;
  o.timeout = kTimeout;
  o.on_ticket = before_prefill;
  auto r = pd::run_pd_request({"127.0.0.1", p.port()}, {"127.0.0.1", d.port()}, api, body, o);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  Answer a;
  if (!r.is_ok()) return a;
  a.status = r->decode_status;
  if (!r->body.empty()) a.body = json::parse(r->body);
  for (const auto& c : r->chunks) a.chunks.push_back(json::parse(c));
  a.error = r->error;
  a.prefill_events = r->prefill_events;
  return a;
}

json completion(const std::string& prompt, int max_tokens) {
  return json{{"model", "tiny-llama3"},
              {"prompt", prompt},
              {"max_tokens", max_tokens},
              {"temperature", 0},
              {"ignore_eos", true}};
}

std::string long_prompt(int words) {
  std::string s;
  for (int i = 0; i < words; ++i) s += "word" + std::to_string(i * 7 % 31) + " ";
  return s;
}

void expect_same_choices(const json& pd_body, const json& mixed_body) {
  ASSERT_TRUE(pd_body.contains("choices")) << pd_body.dump();
  ASSERT_EQ(pd_body["choices"].size(), mixed_body["choices"].size());
  for (size_t i = 0; i < mixed_body["choices"].size(); ++i) {
    auto a = pd_body["choices"][i];
    auto b = mixed_body["choices"][i];
    EXPECT_EQ(a, b) << "choice " << i;
  }
  EXPECT_EQ(pd_body["usage"]["completion_tokens"], mixed_body["usage"]["completion_tokens"]);
}

class PdCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    mixed_ = new Instance("mixed");
    prefill_ = new Instance("prefill", {"--max-num-batched-tokens", "64"});
    decode_ = new Instance("decode");
  }
  static void TearDownTestSuite() {
    delete mixed_;
    delete prefill_;
    delete decode_;
  }
  void TearDown() override {
    // Nothing stays reserved or held once every request has ended.
    EXPECT_EQ(decode_->metrics_value("baton:num_requests_running"), 0);
    EXPECT_EQ(prefill_->metrics_value("baton:num_requests_running"), 0);
  }
  static Instance* mixed_;
  static Instance* prefill_;
  static Instance* decode_;
};
Instance* PdCluster::mixed_ = nullptr;
Instance* PdCluster::prefill_ = nullptr;
Instance* PdCluster::decode_ = nullptr;

TEST_F(PdCluster, GreedyCompletionIsIdenticalToMixed) {
  json body = completion("The quick brown fox", 24);
  auto pdr = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, body);
  ASSERT_EQ(pdr.status, 200);
  ASSERT_FALSE(pdr.error) << pdr.error->to_string() << " prefill: " << json(pdr.prefill_events);
  expect_same_choices(pdr.body, ask_mixed(*mixed_, "/v1/completions", body).body);
  EXPECT_EQ(pdr.prefill_events, (std::vector<std::string>{"accepted", "first_token", "done"}));
}

TEST_F(PdCluster, EachSideRecordsItsOwnLatencies) {
  // The prefill instance observes its own time to first token (queue and
  // prefill); the decode instance the client's TTFT and the time between
  // tokens as they are produced: what the controller's ratio policy reads.
  auto count = [](const Instance& i, const std::string& name) {
    json v = i.metrics_value(name + "_count");
    return v.is_number() ? v.get<double>() : 0.0;
  };
  const double prefill_ttft = count(*prefill_, "baton:prefill_time_to_first_token_seconds");
  const double client_ttft = count(*decode_, "baton:time_to_first_token_seconds");
  const double itl = count(*decode_, "baton:inter_token_latency_seconds");
  // Long enough that the output pump sees tokens arrive over several steps
  // (tokens that reach it together with the first give no interval).
  auto pdr = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, completion("Two roads", 96));
  ASSERT_EQ(pdr.status, 200);
  ASSERT_FALSE(pdr.error) << pdr.error->to_string();
  EXPECT_EQ(count(*prefill_, "baton:prefill_time_to_first_token_seconds"), prefill_ttft + 1);
  EXPECT_GT(prefill_->metrics_value("baton:prefill_time_to_first_token_seconds_sum").get<double>(),
            0.0);
  EXPECT_EQ(count(*decode_, "baton:time_to_first_token_seconds"), client_ttft + 1);
  EXPECT_GT(count(*decode_, "baton:inter_token_latency_seconds"), itl);
  EXPECT_EQ(count(*decode_, "baton:prefill_time_to_first_token_seconds"), 0.0);
}

TEST_F(PdCluster, SeededSamplingWithNAndLogprobsIsIdenticalToMixed) {
  json body = completion("Once upon a time", 16);
  body["temperature"] = 0.9;
  body["top_p"] = 0.9;
  body["n"] = 3;
  body["seed"] = 42;
  body["logprobs"] = 2;
  auto pdr = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, body);
  ASSERT_FALSE(pdr.error) << pdr.error->to_string() << " prefill: " << json(pdr.prefill_events);
  expect_same_choices(pdr.body, ask_mixed(*mixed_, "/v1/completions", body).body);
}

TEST_F(PdCluster, StreamedChatWithStopStringsIsIdenticalToMixed) {
  json probe = {{"model", "tiny-llama3"},
                {"messages", json::array({{{"role", "user"}, {"content", "Tell me a story"}}})},
                {"max_tokens", 20},
                {"temperature", 0},
                {"ignore_eos", true}};
  std::string text =
      ask_mixed(*mixed_, "/v1/chat/completions", probe).body["choices"][0]["message"]["content"];
  ASSERT_GE(text.size(), 8u);
  // A stop string from the middle of the text, whole characters only.
  std::string stop;
  for (size_t i = text.size() / 2; i + 2 < text.size() && stop.empty(); ++i) {
    const bool ascii = std::all_of(text.begin() + static_cast<std::ptrdiff_t>(i),
                                   text.begin() + static_cast<std::ptrdiff_t>(i + 2),
                                   [](char c) { return static_cast<unsigned char>(c) < 0x80; });
    if (ascii) stop = text.substr(i, 2);
  }
  if (stop.empty()) GTEST_SKIP() << "the model's reply has no ASCII in its second half";
  json body = probe;
  body["stop"] = json::array({stop});
  body["stream"] = true;
  auto pdr = ask_pd(*prefill_, *decode_, pd::Api::kChatCompletions, body);
  ASSERT_FALSE(pdr.error) << pdr.error->to_string() << " prefill: " << json(pdr.prefill_events);
  auto mixed = ask_mixed(*mixed_, "/v1/chat/completions", body);
  auto got = stream_text(pdr, true);
  EXPECT_EQ(got, stream_text(mixed, true));
  EXPECT_EQ(got[0].second, "stop");
}

TEST_F(PdCluster, LongPromptsAndPrefixCacheHitsOnBothSides) {
  json body = completion(long_prompt(300), 8);
  auto mixed = ask_mixed(*mixed_, "/v1/completions", body).body;
  std::vector<int32_t> cached;
  for (int round = 0; round < 2; ++round) {
    auto pdr = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, body, 30000,
                      [&](pd::Ticket& t) { cached.push_back(t.entries[0].cached_tokens); });
    ASSERT_FALSE(pdr.error) << pdr.error->to_string() << " prefill: " << json(pdr.prefill_events);
    expect_same_choices(pdr.body, mixed);
  }
  ASSERT_EQ(cached.size(), 2u);
  EXPECT_EQ(cached[0], 0);
  EXPECT_GT(cached[1], 0);  // the decode side sent for only the missing part
  EXPECT_GT(prefill_->metrics_value("baton:prefix_cache_hit_rate").get<double>(), 0.0);
}

TEST_F(PdCluster, ThirtyTwoConcurrentRequestsAreIdenticalToMixed) {
  std::vector<json> bodies;
  for (int i = 0; i < 32; ++i) {
    json b = completion("Request number " + std::to_string(i) + " says", 6 + i % 5);
    if (i % 3 == 0) {
      b["temperature"] = 0.7;
      b["seed"] = i;
    }
    bodies.push_back(b);
  }
  std::vector<std::future<Answer>> pds;
  for (const auto& b : bodies) {
    pds.push_back(std::async(std::launch::async, [&, b] {
      return ask_pd(*prefill_, *decode_, pd::Api::kCompletions, b);
    }));
  }
  for (size_t i = 0; i < bodies.size(); ++i) {
    Answer a = pds[i].get();
    ASSERT_FALSE(a.error) << a.error->to_string();
    expect_same_choices(a.body, ask_mixed(*mixed_, "/v1/completions", bodies[i]).body);
  }
}

TEST_F(PdCluster, InternalRoutesNeedTheClusterToken) {
  json dr = pd::to_json(pd::DecodeRequest{pd::Api::kCompletions, completion("x", 2), 1000});
  auto none = protocol::http_request("127.0.0.1", decode_->port(), "POST", pd::kDecodePath,
                                     dr.dump(), {{"Content-Type", "application/json"}},
                                     protocol::deadline_in(kTimeout));
  EXPECT_EQ(none->status, 401);
  auto wrong = protocol::http_request(
      "127.0.0.1", decode_->port(), "POST", pd::kDecodePath, dr.dump(),
      {{"Content-Type", "application/json"}, {std::string(pd::kTokenHeader), "guess"}},
      protocol::deadline_in(kTimeout));
  EXPECT_EQ(wrong->status, 403);
  // A mixed instance has no internal routes at all.
  auto mixed =
      protocol::http_request("127.0.0.1", mixed_->port(), "POST", pd::kDecodePath, dr.dump(),
                             internal_headers(), protocol::deadline_in(kTimeout));
  EXPECT_EQ(mixed->status, 404);
}

TEST_F(PdCluster, AnExpiredLeaseReleasesTheReservation) {
  // No prefill ever comes: the decode side gives the room back at the lease.
  const double before = decode_->kv_usage();
  pd::DecodeRequest dr{pd::Api::kCompletions, completion(long_prompt(120), 4), 300};
  protocol::SseParser parser;
  std::optional<Status> error;
  auto r = protocol::http_stream("127.0.0.1", decode_->port(), "POST", pd::kDecodePath,
                                 pd::to_json(dr).dump(), internal_headers(),
                                 protocol::deadline_in(kTimeout), [&](std::string_view s) {
                                   for (auto& ev : parser.feed(s)) {
                                     if (ev.event == pd::kEventError) {
                                       error = pd::parse_error_event(ev.data);
                                     }
                                   }
                                   return true;
                                 });
  ASSERT_TRUE(r.is_ok());
  ASSERT_TRUE(error.has_value());
  EXPECT_EQ(error->code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(error->message().find("kv_lease_expired"), std::string::npos) << error->message();
  EXPECT_EQ(decode_->kv_usage(), before);
}

// Sends a forged KV message for the ticket's transfer to the decode side:
// `keep` bytes of it, then closes the connection.
void forge_transfer(const pd::Ticket& t, bool corrupt, bool truncate) {
  const auto& e = t.entries[0];
  const uint64_t bytes =
      static_cast<uint64_t>(e.prompt_token_ids.size() - static_cast<size_t>(e.cached_tokens)) *
      static_cast<uint64_t>(2 * t.kv_shape.num_layers * t.kv_shape.num_kv_heads *
                            t.kv_shape.head_dim * t.kv_shape.dtype_size);
  std::vector<uint8_t> msg(kvtransfer::wire::kHeaderBytes + bytes +
                           kvtransfer::wire::kTrailerBytes);
  kvtransfer::wire::encode_header({kvtransfer::wire::FrameKind::kData, e.transfer_id, bytes, 0},
                                  msg.data());
  const uint8_t* payload = msg.data() + kvtransfer::wire::kHeaderBytes;
  const uint64_t sum = kvtransfer::wire::checksum64(payload, bytes);
  kvtransfer::wire::encode_u64(corrupt ? sum + 1 : sum, msg.data() + msg.size() - 8);
  const size_t keep = truncate ? kvtransfer::wire::kHeaderBytes + bytes / 2 : msg.size();
  auto colon = t.kv_endpoint.rfind(':');
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(t.kv_endpoint.substr(colon + 1))));
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(write(fd, msg.data(), keep), static_cast<ssize_t>(keep));
  close(fd);
}

TEST_F(PdCluster, ACorruptedTransferIsRejectedWithAClearError) {
  auto a = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, completion(long_prompt(40), 4), 30000,
                  [](pd::Ticket& t) { forge_transfer(t, true, false); });
  ASSERT_TRUE(a.error.has_value()) << a.body.dump();
  EXPECT_NE(a.error->message().find("KV transfer"), std::string::npos) << a.error->message();
  EXPECT_NE(a.error->message().find("checksum"), std::string::npos) << a.error->message();
  EXPECT_EQ(decode_->kv_usage(), 0.0);
}

TEST_F(PdCluster, ATruncatedTransferIsRejectedWithAClearError) {
  auto a = ask_pd(*prefill_, *decode_, pd::Api::kCompletions, completion(long_prompt(41), 4), 30000,
                  [](pd::Ticket& t) { forge_transfer(t, false, true); });
  ASSERT_TRUE(a.error.has_value()) << a.body.dump();
  EXPECT_NE(a.error->message().find("KV transfer"), std::string::npos) << a.error->message();
  EXPECT_EQ(decode_->kv_usage(), 0.0);
}

TEST_F(PdCluster, AnInstanceSwitchesRoleInPlaceAndServesInTheNewOne) {
  Instance x("prefill");
  auto role = [&](const std::string& method, const std::string& body) {
    auto r = protocol::http_request("127.0.0.1", x.port(), method, pd::kRolePath, body,
                                    internal_headers(), protocol::deadline_in(kTimeout));
    EXPECT_TRUE(r.is_ok());
    return std::make_pair(r->status, json::parse(r->body));
  };
  EXPECT_EQ(role("GET", "").second, (json{{"role", "prefill"}, {"state", "serving"}}));
  auto [status, body] = role("POST", R"({"role": "decode", "reason": "test"})");
  EXPECT_TRUE(status == 200 || status == 202) << body.dump();
  // Nothing was in flight, so the switch is immediate.
  EXPECT_EQ(role("GET", "").second, (json{{"role", "decode"}, {"state", "serving"}}));
  EXPECT_EQ(x.metrics_value("baton:instance_role{role=\"decode\"}"), 1);
  EXPECT_EQ(role("POST", R"({"role": "decode"})").first, 200);
  EXPECT_EQ(role("POST", R"({"role": "leader"})").first, 400);
  json req = completion("Switching roles", 10);
  auto pdr = ask_pd(*prefill_, x, pd::Api::kCompletions, req);
  ASSERT_FALSE(pdr.error) << pdr.error->to_string();
  expect_same_choices(pdr.body, ask_mixed(*mixed_, "/v1/completions", req).body);
}

TEST_F(PdCluster, ARoleChangeUnderLoadLosesNoRequest) {
  Instance x("decode");
  std::vector<json> bodies;
  for (int i = 0; i < 12; ++i) bodies.push_back(completion("Under load " + std::to_string(i), 24));
  std::vector<std::future<Answer>> running;
  std::mutex mu;
  std::condition_variable cv;
  int tickets = 0;
  for (const auto& b : bodies) {
    running.push_back(std::async(std::launch::async, [&, b] {
      return ask_pd(*prefill_, x, pd::Api::kCompletions, b, 30000, [&](pd::Ticket&) {
        std::lock_guard lock(mu);
        ++tickets;
        cv.notify_all();
      });
    }));
  }
  // Switch once at least three requests hold reservations on x (the others
  // may not have reserved yet: they are refused at once, never lost).
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_until(lock, Clock::now() + kTimeout, [&] { return tickets >= 3; }));
  }
  auto r = protocol::http_request("127.0.0.1", x.port(), "POST", pd::kRolePath,
                                  R"({"role": "prefill", "drain_timeout_ms": 60000})",
                                  internal_headers(), protocol::deadline_in(kTimeout));
  ASSERT_TRUE(r.is_ok());
  EXPECT_TRUE(r->status == 200 || r->status == 202) << r->body;
  int served = 0, refused = 0;
  for (size_t i = 0; i < bodies.size(); ++i) {
    Answer a = running[i].get();
    if (a.status == 503) {
      // Refused at once, before anything was reserved: while draining, or
      // after the switch (no longer a decode instance).
      const std::string code = a.body["error"]["code"];
      EXPECT_TRUE(code == "changing_role" || code == "wrong_role") << a.body.dump();
      ++refused;
      continue;
    }
    ASSERT_EQ(a.status, 200);
    ASSERT_FALSE(a.error) << a.error->to_string();
    expect_same_choices(a.body, ask_mixed(*mixed_, "/v1/completions", bodies[i]).body);
    ++served;
  }
  EXPECT_EQ(served + refused, static_cast<int>(bodies.size()));
  EXPECT_GE(served, 3);
  std::lock_guard lock(mu);
  EXPECT_EQ(served, tickets);
  // Drained and switched (the last request's end completes the drain): it
  // now serves as a prefill instance.
  auto state = protocol::http_request("127.0.0.1", x.port(), "GET", pd::kRolePath, "",
                                      internal_headers(), protocol::deadline_in(kTimeout));
  ASSERT_TRUE(state.is_ok());
  EXPECT_EQ(json::parse(state->body), (json{{"role", "prefill"}, {"state", "serving"}}));
  json req = completion("After the change", 8);
  Answer after = ask_pd(x, *decode_, pd::Api::kCompletions, req);
  ASSERT_FALSE(after.error) << after.error->to_string()
                            << " prefill: " << json(after.prefill_events);
  expect_same_choices(after.body, ask_mixed(*mixed_, "/v1/completions", req).body);
}

// A TCP proxy in front of a decode instance's KV endpoint that injects one
// fault into the prefill-to-decode byte stream once `after` bytes went through.
class FaultProxy {
 public:
  enum class Fault { kNone, kDrop, kCorrupt, kStall };

  FaultProxy(uint16_t target_port, Fault fault, size_t after)
      : target_(target_port), fault_(fault), after_(after) {
    listen_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(bind(listen_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    getsockname(listen_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(listen(listen_, 8), 0);
    accept_ = std::thread([this] { accept_loop(); });
  }
  ~FaultProxy() {
    stopping_ = true;
    shutdown(listen_, SHUT_RDWR);
    close(listen_);
    {
      std::lock_guard lock(mu_);
      for (int fd : fds_) shutdown(fd, SHUT_RDWR);
    }
    accept_.join();
    for (auto& t : pipes_) t.join();
    for (int fd : fds_) close(fd);
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void accept_loop() {
    while (!stopping_) {
      int in = accept(listen_, nullptr, nullptr);
      if (in < 0) return;
      int out = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(target_);
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (connect(out, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        close(in);
        close(out);
        continue;
      }
      std::lock_guard lock(mu_);
      fds_.push_back(in);
      fds_.push_back(out);
      pipes_.emplace_back([this, in, out] { pump(in, out, true); });
      pipes_.emplace_back([this, in, out] { pump(out, in, false); });
    }
  }
  // Copies from -> to; the prefill-to-decode direction carries the fault.
  void pump(int from, int to, bool faulty) {
    char buf[65536];
    size_t seen = 0;
    for (;;) {
      ssize_t n = read(from, buf, sizeof buf);
      if (n <= 0) break;
      size_t keep = static_cast<size_t>(n);
      if (faulty && fault_ != Fault::kNone && seen + keep > after_) {
        const size_t at = after_ > seen ? after_ - seen : 0;
        if (fault_ == Fault::kCorrupt && !corrupted_.exchange(true)) {
          buf[at] = static_cast<char>(buf[at] ^ 0x5a);
        } else if (fault_ == Fault::kDrop) {
          (void)!write(to, buf, at);
          break;  // both directions close below
        } else if (fault_ == Fault::kStall) {
          (void)!write(to, buf, at);
          // Hold the connection open, forwarding nothing more, until the
          // proxy is destroyed (its shutdown ends this read).
          while (read(from, buf, sizeof buf) > 0) {
          }
          break;
        }
      }
      seen += static_cast<size_t>(n);
      if (write(to, buf, keep) != static_cast<ssize_t>(keep)) break;
    }
    shutdown(from, SHUT_RDWR);
    shutdown(to, SHUT_RDWR);
  }

  uint16_t target_;
  Fault fault_;
  size_t after_;
  int listen_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> corrupted_{false};
  std::mutex mu_;
  std::vector<int> fds_;
  std::vector<std::thread> pipes_;
  std::thread accept_;
};

TEST(PdFaults, KvPathFaultsEndInClearErrorsAndLeaveNothingHeld) {
  Instance prefill("prefill");
  Instance decode("decode");
  const json body = completion(long_prompt(150), 6);
  Answer good = ask_pd(prefill, decode, pd::Api::kCompletions, body);
  ASSERT_FALSE(good.error) << good.error->to_string();
  std::optional<uint16_t> kv_port;
  ask_pd(prefill, decode, pd::Api::kCompletions, completion("probe", 2), 30000, [&](pd::Ticket& t) {
    kv_port = static_cast<uint16_t>(std::stoi(t.kv_endpoint.substr(t.kv_endpoint.rfind(':') + 1)));
  });
  ASSERT_TRUE(kv_port);
  int k = 0;
  for (auto fault :
       {FaultProxy::Fault::kDrop, FaultProxy::Fault::kCorrupt, FaultProxy::Fault::kStall}) {
    SCOPED_TRACE(static_cast<int>(fault));
    FaultProxy proxy(*kv_port, fault, 4000);
    const auto t0 = Clock::now();
    // A prompt no side holds yet: its whole KV (~190 KB) crosses the proxy.
    const json fresh = completion("Fault case " + std::to_string(k++) + ": " + long_prompt(150), 6);
    Answer a = ask_pd(prefill, decode, pd::Api::kCompletions, fresh, 2000,
                      [&](pd::Ticket& t) { t.kv_endpoint = proxy.endpoint(); });
    ASSERT_TRUE(a.error.has_value()) << a.body.dump();
    // Within the lease (and the pump's check interval), never a hang.
    EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10));
    // The decode side's own receive failing, or the prefill side's abort
    // after its send failed, whichever comes first: both say why.
    EXPECT_TRUE(a.error->code() == StatusCode::kDeadlineExceeded ||
                a.error->message().find("KV") != std::string::npos)
        << a.error->to_string();
    EXPECT_EQ(decode.kv_usage(), 0.0);
    EXPECT_EQ(prefill.kv_usage(), 0.0);
  }
  // And the pair serves normally again.
  Answer after = ask_pd(prefill, decode, pd::Api::kCompletions, body);
  ASSERT_FALSE(after.error) << after.error->to_string();
  EXPECT_EQ(after.body["choices"], good.body["choices"]);
}

TEST(PdFaults, KillingThePrefillReleasesTheDecodeReservationAtItsLease) {
  Instance prefill("prefill");
  Instance decode("decode");
  const double before = decode.kv_usage();
  std::atomic<bool> killed{false};
  auto a = ask_pd(prefill, decode, pd::Api::kCompletions, completion(long_prompt(200), 8), 1500,
                  [&](pd::Ticket&) {
                    prefill.kill(SIGKILL);
                    killed = true;
                  });
  ASSERT_TRUE(killed);
  ASSERT_TRUE(a.error.has_value());
  EXPECT_EQ(decode.kv_usage(), before);
}

TEST(PdFaults, KillingTheDecodeFailsThePrefillAndFreesItsKv) {
  Instance prefill("prefill");
  Instance decode("decode");
  json body = completion(long_prompt(200), 8);
  // Reserve on the decode side, then kill it before the prefill runs.
  pd::DecodeRequest dr{pd::Api::kCompletions, body, 30000};
  std::optional<pd::Ticket> ticket;
  protocol::SseParser parser;
  (void)protocol::http_stream("127.0.0.1", decode.port(), "POST", pd::kDecodePath,
                              pd::to_json(dr).dump(), internal_headers(),
                              protocol::deadline_in(kTimeout), [&](std::string_view s) {
                                for (auto& ev : parser.feed(s)) {
                                  if (ev.event == pd::kEventTicket) {
                                    ticket = *pd::parse_ticket(json::parse(ev.data));
                                  }
                                }
                                return !ticket.has_value();
                              });
  ASSERT_TRUE(ticket.has_value());
  const std::string decode_address = decode.address();
  decode.kill(SIGKILL);
  pd::PrefillRequest pr{pd::Api::kCompletions, body, *ticket, decode_address};
  protocol::SseParser pp;
  std::vector<protocol::SseEvent> events;
  auto r = protocol::http_stream("127.0.0.1", prefill.port(), "POST", pd::kPrefillPath,
                                 pd::to_json(pr).dump(), internal_headers(),
                                 protocol::deadline_in(kTimeout), [&](std::string_view s) {
                                   pp.feed(s, events);
                                   return true;
                                 });
  ASSERT_TRUE(r.is_ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().event, pd::kEventError);
  EXPECT_EQ(prefill.kv_usage(), 0.0);
  EXPECT_EQ(prefill.metrics_value("baton:num_requests_running"), 0);
}

}  // namespace
}  // namespace baton
