// The load generator against a scripted fake OpenAI server on loopback (the
// project's HttpServer): every request sent arrives, none is lost or counted
// twice, arrivals follow the schedule, concurrency limits hold exactly, and
// failures are records, not silence. The fake server answers from its
// handler with no delays; where a test needs requests to overlap, the server
// holds them until the expected number is in flight. Nothing here measures
// speed.

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "bench/serving/runner.h"
#include "protocol/http_server.h"
#include "protocol/openai_response.h"
#include "protocol/sse.h"

namespace baton::bench {
namespace {

using protocol::HttpRequest;
using protocol::ResponseWriter;

struct Seen {
  std::string scenario;
  std::string prompt;
  int max_tokens = 0;
  uint16_t remote_port = 0;
  size_t messages = 0;  // chat
  std::string last_message;
};

// A scripted server: streams max_tokens one-token chunks and a usage chunk,
// reporting the prompt's word count as prompt_tokens. Knobs: fail every k-th
// request with 503, hold requests until `hold` are in flight, cut streams.
class FakeServer {
 public:
  int fail_every = 0;  // 0: never
  size_t hold = 0;     // 0: answer at once
  bool cut_streams = false;

  FakeServer() {
    auto s = protocol::HttpServer::start(
        {}, [this](HttpRequest req, std::shared_ptr<ResponseWriter> w) { handle(req, w); });
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    server_ = std::move(s).value();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(server_->port()); }

  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  size_t max_in_flight() {
    std::lock_guard lock(mu_);
    return max_in_flight_;
  }

 private:
  struct Pending {
    std::shared_ptr<ResponseWriter> writer;
    bool chat;
    int tokens;
    int prompt_tokens;
    bool fail;
  };

  void handle(const HttpRequest& req, std::shared_ptr<ResponseWriter> w) {
    nlohmann::json body = nlohmann::json::parse(req.body, nullptr, false);
    Seen s;
    s.scenario = std::string(req.header(kScenarioHeader).value_or(""));
    bool chat = req.path == "/v1/chat/completions";
    s.prompt = chat ? body["messages"][0]["content"].get<std::string>()
                    : body["prompt"].get<std::string>();
    s.max_tokens = body.value(chat ? "max_completion_tokens" : "max_tokens", 0);
    if (chat) {
      s.messages = body["messages"].size();
      s.last_message = body["messages"].back()["content"].get<std::string>();
    }
    s.remote_port = req.remote_port;
    EXPECT_TRUE(body["stream"].get<bool>());
    EXPECT_TRUE(body["stream_options"]["include_usage"].get<bool>());
    EXPECT_TRUE(body["ignore_eos"].get<bool>());
    std::istringstream words(s.prompt);
    int prompt_tokens = 0;
    for (std::string word; words >> word;) ++prompt_tokens;

    std::vector<Pending> ready;
    {
      std::lock_guard lock(mu_);
      seen_.push_back(s);
      bool fail = fail_every > 0 && seen_.size() % static_cast<size_t>(fail_every) == 0;
      pending_.push_back({std::move(w), chat, s.max_tokens, prompt_tokens, fail});
      max_in_flight_ = std::max(max_in_flight_, pending_.size());
      if (pending_.size() >= std::max<size_t>(hold, 1)) ready.swap(pending_);
    }
    for (Pending& p : ready) answer(p);
  }

  void answer(Pending& p) {
    if (p.fail) {
      p.writer->send_error(503, "overloaded (scripted)");
      return;
    }
    protocol::ResponseMeta meta{"cmpl-fake", 1, "fake-model"};
    p.writer->start_stream(200, std::string(protocol::kSseContentType));
    if (p.chat) p.writer->write(protocol::sse_event(protocol::chat_role_chunk(meta, 0)));
    for (int i = 0; i < p.tokens; ++i) {
      if (cut_streams && i == p.tokens / 2) return;  // the writer is dropped: a truncated stream
      std::string text = i % 3 == 2 ? "" : " tok";   // some tokens end no character
      if (p.chat) {
        protocol::ChatDelta d;
        d.content = text;
        p.writer->write(protocol::sse_event(protocol::chat_chunk(meta, d)));
      } else {
        protocol::CompletionChoice c;
        c.text = text;
        p.writer->write(protocol::sse_event(protocol::completion_chunk(meta, c)));
      }
    }
    protocol::Usage u{p.prompt_tokens, p.tokens, std::nullopt};
    p.writer->write(protocol::sse_event(p.chat ? protocol::chat_usage_chunk(meta, u)
                                               : protocol::completion_usage_chunk(meta, u)));
    p.writer->write(std::string(protocol::kSseDone));
    p.writer->end_stream();
  }

  std::mutex mu_;
  std::vector<Seen> seen_;
  std::vector<Pending> pending_;
  size_t max_in_flight_ = 0;
  std::unique_ptr<protocol::HttpServer> server_;
};

RunOptions options_for(const FakeServer& server, Api api = Api::kCompletions) {
  RunOptions o;
  o.api = api;
  o.endpoint = *parse_endpoint(server.url() + "/v1",
                               api == Api::kChat ? "/v1/chat/completions" : "/v1/completions");
  o.model = "fake-model";
  o.timeout = std::chrono::seconds(30);
  return o;
}

std::vector<RequestSpec> workload(int64_t n, double rate, std::vector<Scenario> scenarios = {}) {
  WorkloadOptions w;
  w.num_prompts = n;
  w.seed = 42;
  if (scenarios.empty()) {
    Scenario s;
    s.input.mean = 24;
    s.input.range_ratio = 0.5;
    s.output.mean = 9;
    s.output.range_ratio = 0.5;
    scenarios.push_back(s);
  }
  w.scenarios = std::move(scenarios);
  w.arrivals.request_rate = rate;
  auto specs = make_workload(w);
  EXPECT_TRUE(specs.is_ok());
  return *specs;
}

TEST(Endpoint, ParsesBaseUrls) {
  auto e = parse_endpoint("http://localhost:8080/v1", "/v1/completions");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->host, "localhost");
  EXPECT_EQ(e->port, 8080);
  EXPECT_EQ(e->path, "/v1/completions");
  e = parse_endpoint("127.0.0.1:9000/proxy/", "/v1/chat/completions");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->path, "/proxy/v1/chat/completions");
  e = parse_endpoint("http://example", "/v1/completions");
  ASSERT_TRUE(e.is_ok());
  EXPECT_EQ(e->port, 80);
  EXPECT_EQ(parse_endpoint("https://x", "/v1/completions").status().code(),
            StatusCode::kUnimplemented);
  EXPECT_FALSE(parse_endpoint("http://x:0", "/v1/completions").is_ok());
  EXPECT_FALSE(parse_endpoint("http://:80", "/v1/completions").is_ok());
}

TEST(Runner, EveryRequestArrivesOnceAndIsRecorded) {
  FakeServer server;
  Scenario a, b;
  a.name = "chat";
  a.weight = 1;
  a.input.mean = 16;
  a.output.mean = 5;
  b = a;
  b.name = "batch";
  b.output.mean = 12;
  auto specs = workload(60, std::numeric_limits<double>::infinity(), {a, b});
  auto run = run_benchmark(specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok()) << run.status().to_string();
  ASSERT_EQ(run->records.size(), specs.size());
  std::vector<Seen> seen = server.seen();
  ASSERT_EQ(seen.size(), specs.size());  // nothing lost, nothing sent twice
  std::multiset<std::string> sent, received;
  for (const RequestSpec& s : specs) sent.insert(prompt_text(s, 0));
  for (const Seen& s : seen) received.insert(s.prompt);
  EXPECT_EQ(sent, received);
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord& r = run->records[i];
    EXPECT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.id, specs[i].id);
    EXPECT_EQ(r.scenario, specs[i].scenario);
    EXPECT_EQ(r.http_status, 200);
    EXPECT_EQ(r.output_tokens, specs[i].output_len);  // from usage
    EXPECT_EQ(r.prompt_tokens, specs[i].input_len);   // the server's count
    EXPECT_EQ(r.chunks, specs[i].output_len);         // one chunk per token, empty text too
    EXPECT_EQ(r.itl_s.size(), static_cast<size_t>(specs[i].output_len - 1));
    EXPECT_GE(r.ttft_s, 0);
    EXPECT_GE(r.latency_s, r.ttft_s);
  }
  int chat = 0;
  for (const Seen& s : seen) {
    EXPECT_TRUE(s.scenario == "chat" || s.scenario == "batch") << s.scenario;
    chat += s.scenario == "chat";
  }
  EXPECT_EQ(chat, std::count_if(specs.begin(), specs.end(),
                                [](const RequestSpec& s) { return s.scenario == "chat"; }));
  BenchmarkMetrics m = compute_metrics(run->records, run->duration_s, {}, {99});
  EXPECT_EQ(m.completed, 60);
  EXPECT_EQ(m.failed, 0);
}

TEST(Runner, ShapePhasesSendEachPhasesShapeAndRecordItsPhase) {
  FakeServer server;
  ShapePhase a, b;
  a.name = "short-in";
  a.duration_s = 0.4;
  a.rate = 60;
  a.input.mean = 8;
  a.output.mean = 12;
  b = a;
  b.name = "long-in";
  b.input.mean = 64;
  b.output.mean = 2;
  auto specs = make_phased_workload({a, b}, 5, 1.0);
  ASSERT_TRUE(specs.is_ok()) << specs.status().to_string();
  ASSERT_GT(specs->size(), 10u);
  auto run = run_benchmark(*specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok()) << run.status().to_string();
  ASSERT_EQ(server.seen().size(), specs->size());
  std::map<std::string, int> count;
  for (size_t i = 0; i < specs->size(); ++i) {
    const RequestRecord& r = run->records[i];
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.phase, (*specs)[i].phase);
    EXPECT_EQ(r.prompt_tokens, r.phase == "short-in" ? 8 : 64);
    EXPECT_EQ(r.output_tokens, r.phase == "short-in" ? 12 : 2);
    EXPECT_GE(r.start_s, r.phase == "short-in" ? 0.0 : 0.4);  // sent in its own phase or later
    ++count[r.phase];
  }
  auto pm =
      compute_phase_metrics(run->records, {{"short-in", 0, 0.4}, {"long-in", 0.4, 0.4}}, {}, {99});
  ASSERT_EQ(pm.size(), 2u);
  EXPECT_EQ(pm[0].metrics.completed, count["short-in"]);
  EXPECT_EQ(pm[1].metrics.completed, count["long-in"]);
  EXPECT_EQ(pm[0].metrics.total_output, 12 * count["short-in"]);
  EXPECT_EQ(pm[1].metrics.total_input, 64 * count["long-in"]);
}

TEST(Runner, OpenLoopSendsNothingBeforeItsArrivalTime) {
  FakeServer server;
  auto specs = workload(40, 400);  // Poisson, mean gap 2.5 ms
  auto run = run_benchmark(specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  ASSERT_EQ(server.seen().size(), 40u);
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord& r = run->records[i];
    EXPECT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.scheduled_s, specs[i].arrival_s);
    EXPECT_GE(r.start_s, r.scheduled_s);  // a lower bound, whatever the machine's speed
    if (i > 0) {
      EXPECT_GE(r.start_s, run->records[i - 1].start_s);  // sent in schedule order
    }
  }
  EXPECT_GE(run->duration_s, specs.back().arrival_s);
}

TEST(Runner, MaxConcurrencyIsReachedAndNeverExceeded) {
  FakeServer server;
  server.hold = 4;  // answers only when four requests are in flight at once
  auto specs = workload(24, std::numeric_limits<double>::infinity());
  RunOptions o = options_for(server);
  o.max_concurrency = 4;
  auto run = run_benchmark(specs, o, SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(server.seen().size(), 24u);
  EXPECT_EQ(server.max_in_flight(), 4u);
  EXPECT_EQ(run->peak_in_flight, 4);
  for (const RequestRecord& r : run->records) EXPECT_TRUE(r.success) << r.error;
}

TEST(Runner, OneClientReusesOneKeptConnection) {
  FakeServer server;
  auto specs = workload(10, std::numeric_limits<double>::infinity());
  RunOptions o = options_for(server);
  o.max_concurrency = 1;
  auto run = run_benchmark(specs, o, SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  std::set<uint16_t> ports;
  for (const Seen& s : server.seen()) ports.insert(s.remote_port);
  EXPECT_EQ(ports.size(), 1u);
  EXPECT_EQ(run->peak_in_flight, 1);
}

TEST(Runner, RejectedRequestsAreFailuresNotLosses) {
  FakeServer server;
  server.fail_every = 3;
  auto specs = workload(30, std::numeric_limits<double>::infinity());
  auto run = run_benchmark(specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  int failed = 0;
  for (const RequestRecord& r : run->records) {
    if (r.success) continue;
    ++failed;
    EXPECT_EQ(r.http_status, 503);
    EXPECT_NE(r.error.find("HTTP 503"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("overloaded (scripted)"), std::string::npos) << r.error;
  }
  EXPECT_EQ(failed, 10);
  BenchmarkMetrics m = compute_metrics(run->records, run->duration_s, {}, {99});
  EXPECT_EQ(m.completed + m.failed, 30);
}

TEST(Runner, TruncatedStreamsFail) {
  FakeServer server;
  server.cut_streams = true;
  auto specs = workload(6, std::numeric_limits<double>::infinity());
  auto run = run_benchmark(specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  for (const RequestRecord& r : run->records) {
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("read"), std::string::npos) << r.error;
  }
}

TEST(Runner, ChatStreamsCountTheRoleChunkAsVllmDoes) {
  FakeServer server;
  auto specs = workload(8, std::numeric_limits<double>::infinity());
  auto run = run_benchmark(specs, options_for(server, Api::kChat), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  for (size_t i = 0; i < specs.size(); ++i) {
    const RequestRecord& r = run->records[i];
    EXPECT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.output_tokens, specs[i].output_len);
    EXPECT_EQ(r.chunks, specs[i].output_len + 1);  // the role chunk has a choice too
  }
}

TEST(Runner, WarmupsRunFirstAndAreNotRecorded) {
  FakeServer server;
  auto specs = workload(5, std::numeric_limits<double>::infinity());
  RunOptions o = options_for(server);
  o.num_warmups = 3;
  auto run = run_benchmark(specs, o, SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  EXPECT_EQ(server.seen().size(), 8u);
  EXPECT_EQ(run->records.size(), 5u);
}

WorkloadOptions conversations(int64_t n, int turns) {
  WorkloadOptions w;
  w.num_prompts = n;
  w.turns = turns;
  Scenario s;
  s.input.mean = 10;
  s.output.mean = 4;  // the fake answer: " tok tok tok" (one token has no text)
  w.scenarios = {s};
  return w;
}

TEST(Runner, LaterTurnsCarryTheAnswersTheServerGave) {
  FakeServer server;
  auto specs = make_workload(conversations(12, 3));  // 4 conversations of 3 turns
  ASSERT_TRUE(specs.is_ok());
  auto run = run_benchmark(*specs, options_for(server), SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  std::vector<Seen> seen = server.seen();
  ASSERT_EQ(seen.size(), 12u);
  int later = 0;
  for (const Seen& s : seen) {
    if (s.prompt.find("tok") == std::string::npos) continue;  // a first turn
    ++later;
    // Some earlier prompt, then the answer to it, then new words: the turn
    // could only be built after its previous turn's answer had arrived.
    bool found = false;
    for (const Seen& q : seen) {
      found = found || s.prompt.rfind(q.prompt + "  tok tok tok ", 0) == 0;
    }
    EXPECT_TRUE(found) << s.prompt;
  }
  EXPECT_EQ(later, 8);
  for (const RequestRecord& r : run->records) {
    EXPECT_TRUE(r.success) << r.error;
    EXPECT_EQ(r.generated_text, " tok tok tok");
  }
}

TEST(Runner, ChatConversationsSendAlternatingMessages) {
  FakeServer server;
  auto specs = make_workload(conversations(6, 3));
  ASSERT_TRUE(specs.is_ok());
  RunOptions o = options_for(server, Api::kChat);
  o.max_concurrency = 2;
  auto run = run_benchmark(*specs, o, SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  std::map<size_t, int> by_length;
  for (const Seen& s : server.seen()) {
    ++by_length[s.messages];
    EXPECT_EQ(std::count(s.last_message.begin(), s.last_message.end(), ' ') + 1, 10)
        << "the new message of a turn has the turn's fresh words";
  }
  // Turn 1: [user]; turn 2: [user, assistant, user]; turn 3: five messages.
  EXPECT_EQ(by_length[1], 2);
  EXPECT_EQ(by_length[3], 2);
  EXPECT_EQ(by_length[5], 2);
}

TEST(Runner, UnreachableServerFailsEveryRequest) {
  uint16_t port = 0;
  {
    FakeServer gone;  // a port that was just free, closed again
    port = static_cast<uint16_t>(std::stoi(gone.url().substr(gone.url().rfind(':') + 1)));
  }
  RunOptions o;
  o.endpoint = *parse_endpoint("http://127.0.0.1:" + std::to_string(port), "/v1/completions");
  o.model = "m";
  auto specs = workload(3, std::numeric_limits<double>::infinity());
  auto run = run_benchmark(specs, o, SteadyClock::instance());
  ASSERT_TRUE(run.is_ok());
  for (const RequestRecord& r : run->records) {
    EXPECT_FALSE(r.success);
    EXPECT_NE(r.error.find("connect"), std::string::npos) << r.error;
  }
}

}  // namespace
}  // namespace baton::bench
