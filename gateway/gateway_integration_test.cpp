// The gateway in aggregated mode, in front of fake upstreams scripted to
// answer, stream, reject, stall, fail and disconnect. Every wait is bounded
// by kWait; nothing sleeps to synchronise.

#include <gtest/gtest.h>

#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "gateway/fake_upstream.h"
#include "gateway/gateway.h"
#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton::gateway {
namespace {

using namespace std::chrono_literals;
using protocol::HttpRequest;
using testing::FakeUpstream;
using Writer = FakeUpstream::Writer;

constexpr auto kWait = 10s;

const std::string kBody = R"({"model":"m","prompt":"hello","max_tokens":4})";
const std::string kStreamBody = R"({"model":"m","prompt":"hello","max_tokens":4,"stream":true})";

void answer_json(const HttpRequest&, Writer w) {
  w->send(200, "application/json", R"({"id":"x","choices":[{"text":"hi"}]})");
}

std::string chunk(int i) {
  return protocol::sse_event(R"({"choices":[{"text":"t)" + std::to_string(i) + "\"}]}");
}

void answer_stream(const HttpRequest&, Writer w) {
  w->start_stream(200, "text/event-stream");
  for (int i = 0; i < 3; ++i) w->write(chunk(i));
  w->write(std::string(protocol::kSseDone));
  w->end_stream();
}

GatewayConfig base_config(const std::vector<const FakeUpstream*>& ups,
                          PolicyKind policy = PolicyKind::kRoundRobin) {
  GatewayConfig c;
  c.port = 0;
  c.access_log = false;
  c.health.interval = 0ms;
  c.retry.backoff = 1ms;
  c.retry.max_backoff = 2ms;
  GroupConfig g;
  g.policy = policy;
  c.groups.push_back(g);
  for (size_t i = 0; i < ups.size(); ++i) {
    InstanceConfig inst;
    inst.name = "u" + std::to_string(i);
    inst.host = "127.0.0.1";
    inst.port = ups[i]->port();
    c.instances.push_back(inst);
  }
  return c;
}

std::unique_ptr<Gateway> start(GatewayConfig c, const Clock* clock = nullptr) {
  auto gw = Gateway::start(std::move(c), clock, 1234);
  EXPECT_TRUE(gw.is_ok()) << gw.status().to_string();
  return gw.is_ok() ? std::move(*gw) : nullptr;
}

Result<protocol::HttpResponse> post(const Gateway& gw, const std::string& path,
                                    const std::string& body, protocol::Headers headers = {}) {
  headers.emplace_back("Content-Type", "application/json");
  return protocol::http_request("127.0.0.1", gw.port(), "POST", path, body, headers,
                                protocol::deadline_in(kWait));
}

struct Streamed {
  Result<protocol::HttpResponse> response = Status(StatusCode::kInternal, "not run");
  std::string body;
};

Streamed post_stream(const Gateway& gw, const std::string& body,
                     std::function<bool(const std::string&)> on_piece = nullptr) {
  Streamed s;
  s.response = protocol::http_stream("127.0.0.1", gw.port(), "POST", "/v1/completions", body,
                                     {{"Content-Type", "application/json"}},
                                     protocol::deadline_in(kWait), [&](std::string_view piece) {
                                       s.body.append(piece);
                                       return on_piece ? on_piece(s.body) : true;
                                     });
  return s;
}

TEST(GatewayTest, RelaysPlainAndStreamedAnswers) {
  FakeUpstream up([](const HttpRequest& r, Writer w) {
    if (r.body.find("\"stream\":true") != std::string::npos) return answer_stream(r, w);
    answer_json(r, w);
  });
  auto gw = start(base_config({&up}));
  ASSERT_TRUE(gw);
  auto r = post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer client-secret"}});
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"id":"x","choices":[{"text":"hi"}]})");
  EXPECT_EQ(r->header("x-baton-instance").value_or(""), "u0");
  // The upstream got the client's request, minus its credentials.
  auto seen = up.requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].body, kBody);
  EXPECT_EQ(seen[0].path, "/v1/completions");
  EXPECT_FALSE(seen[0].header("authorization").has_value());
  EXPECT_EQ(seen[0].header("x-forwarded-for").value_or(""), "127.0.0.1");

  auto s = post_stream(*gw, kStreamBody);
  ASSERT_TRUE(s.response.is_ok()) << s.response.status().to_string();
  EXPECT_EQ(s.response->status, 200);
  EXPECT_EQ(s.response->header("content-type").value_or(""), "text/event-stream");
  EXPECT_EQ(s.body, chunk(0) + chunk(1) + chunk(2) + std::string(protocol::kSseDone));
}

TEST(GatewayTest, RelaysEachChunkBeforeTheUpstreamSendsTheNext) {
  // The upstream sends its second chunk only after the client has received
  // the first through the gateway: a gateway that buffered would deadlock
  // until the client's deadline.
  std::promise<void> client_got_first;
  auto got_first = client_got_first.get_future().share();
  std::vector<std::thread> threads;
  FakeUpstream up([&](const HttpRequest&, Writer w) {
    w->start_stream(200, "text/event-stream");
    w->write(chunk(0));
    threads.emplace_back([w, got_first] {
      if (got_first.wait_for(kWait) != std::future_status::ready) return w->end_stream();
      w->write(chunk(1));
      w->write(std::string(protocol::kSseDone));
      w->end_stream();
    });
  });
  auto gw = start(base_config({&up}));
  ASSERT_TRUE(gw);
  bool signalled = false;
  auto s = post_stream(*gw, kStreamBody, [&](const std::string& so_far) {
    if (!signalled && so_far.find(chunk(0)) != std::string::npos) {
      signalled = true;
      client_got_first.set_value();
    }
    return true;
  });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(s.response.is_ok());
  EXPECT_TRUE(signalled);
  EXPECT_EQ(s.body, chunk(0) + chunk(1) + std::string(protocol::kSseDone));
}

TEST(GatewayTest, RetriesConnectErrorsAnd503ElsewhereBeforeAnyByte) {
  auto dead = std::make_unique<FakeUpstream>(answer_json);
  FakeUpstream busy([](const HttpRequest&, Writer w) {
    w->send(503, "application/json", R"({"error":{"message":"busy"}})", {{"Retry-After", "1"}});
  });
  FakeUpstream good(answer_json);
  auto config = base_config({dead.get(), &busy, &good});
  dead->stop();  // its port now refuses connections
  auto gw = start(config);
  ASSERT_TRUE(gw);
  auto r = post(*gw, "/v1/completions", kBody);
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->header("x-baton-instance").value_or(""), "u2");
  EXPECT_EQ(busy.hits(), 1);
  EXPECT_EQ(good.hits(), 1);
  const std::string metrics = gw->metrics().render();
  EXPECT_NE(metrics.find("baton:gateway_retries_total{instance=\"u0\"} 1"), std::string::npos);
  EXPECT_NE(metrics.find("baton:gateway_retries_total{instance=\"u1\"} 1"), std::string::npos);
}

TEST(GatewayTest, RetriesAreBoundedAndTheLastAnswerReachesTheClient) {
  auto busy_script = [](const HttpRequest&, Writer w) {
    w->send(503, "application/json", R"({"error":{"message":"busy"}})", {{"Retry-After", "7"}});
  };
  FakeUpstream a(busy_script), b(busy_script), c(busy_script);
  auto config = base_config({&a, &b, &c});
  config.retry.max_attempts = 2;
  auto gw = start(config);
  ASSERT_TRUE(gw);
  auto r = post(*gw, "/v1/completions", kBody);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->header("retry-after").value_or(""), "7");
  EXPECT_EQ(a.hits() + b.hits() + c.hits(), 2);
}

TEST(GatewayTest, A500IsRelayedNotRetried) {
  FakeUpstream broken([](const HttpRequest&, Writer w) {
    w->send(500, "application/json", R"({"error":{"message":"boom"}})");
  });
  FakeUpstream good(answer_json);
  auto gw = start(base_config({&broken, &good}));
  ASSERT_TRUE(gw);
  auto r = post(*gw, "/v1/completions", kBody);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(good.hits(), 0);
}

TEST(GatewayTest, AStreamCutMidwayEndsWithAnErrorAndIsNeverRetried) {
  // The upstream drops its writer (which closes the connection mid-stream)
  // once the client has the first chunk.
  std::promise<void> client_got_first;
  auto got_first = client_got_first.get_future().share();
  std::vector<std::thread> threads;
  FakeUpstream cut([&](const HttpRequest&, Writer w) {
    w->start_stream(200, "text/event-stream");
    w->write(chunk(0));
    threads.emplace_back([w = std::move(w), got_first]() mutable {
      got_first.wait_for(kWait);
      w.reset();
    });
  });
  FakeUpstream good(answer_stream);
  auto gw = start(base_config({&cut, &good}));
  ASSERT_TRUE(gw);
  bool told = false;
  auto s = post_stream(*gw, kStreamBody, [&](const std::string& so_far) {
    if (!told && so_far.find(chunk(0)) != std::string::npos) {
      told = true;
      client_got_first.set_value();
    }
    return true;
  });
  for (auto& t : threads) t.join();
  ASSERT_TRUE(s.response.is_ok()) << s.response.status().to_string();
  EXPECT_EQ(s.response->status, 200);
  // The one token streamed, once; then an explicit error; never the other
  // instance's tokens.
  ASSERT_TRUE(s.body.starts_with(chunk(0))) << s.body;
  EXPECT_EQ(s.body.find(chunk(0), 1), std::string::npos);
  EXPECT_NE(s.body.find("\"error\""), std::string::npos);
  EXPECT_TRUE(s.body.ends_with(protocol::kSseDone));
  EXPECT_EQ(good.hits(), 0);
}

TEST(GatewayTest, AStalledUpstreamTimesOut) {
  std::vector<Writer> held;
  std::mutex mu;
  FakeUpstream stall([&](const HttpRequest&, Writer w) {
    std::lock_guard lock(mu);
    held.push_back(std::move(w));  // never answered
  });
  auto config = base_config({&stall});
  config.limits.first_byte_timeout = 200ms;
  auto gw = start(config);
  ASSERT_TRUE(gw);
  auto r = post(*gw, "/v1/completions", kBody);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, 504);
  gw->stop();
  stall.stop();
}

TEST(GatewayTest, ClientDisconnectCancelsTheUpstreamStream) {
  std::promise<void> upstream_closed;
  std::vector<Writer> held;
  std::mutex mu;
  FakeUpstream up([&](const HttpRequest&, Writer w) {
    w->on_close([&] { upstream_closed.set_value(); });
    w->start_stream(200, "text/event-stream");
    w->write(chunk(0));
    std::lock_guard lock(mu);
    held.push_back(std::move(w));
  });
  auto gw = start(base_config({&up}));
  ASSERT_TRUE(gw);
  auto s = post_stream(*gw, kStreamBody, [](const std::string&) { return false; });
  EXPECT_EQ(upstream_closed.get_future().wait_for(kWait), std::future_status::ready);
}

TEST(GatewayTest, CircuitBreakerIsolatesAFailingInstanceThenProbesIt) {
  FakeClock clock;
  std::atomic<bool> fail{true};
  FakeUpstream flaky([&](const HttpRequest& r, Writer w) {
    if (fail.load()) return w->send(500, "application/json", R"({"error":{}})");
    answer_json(r, w);
  });
  FakeUpstream good(answer_json);
  auto config = base_config({&flaky, &good});
  config.breaker.failure_threshold = 2;
  config.breaker.open_time = 30s;
  auto gw = start(config, &clock);
  ASSERT_TRUE(gw);
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(post(*gw, "/v1/completions", kBody).is_ok());
  EXPECT_EQ(flaky.hits(), 2);  // round robin sent it two, then the breaker opened
  EXPECT_EQ(good.hits(), 6);
  EXPECT_EQ(gw->instances()[0].breaker, BreakerState::kOpen);
  EXPECT_NE(gw->metrics().render().find("baton:gateway_circuit_breaker_state{instance=\"u0\"} 1"),
            std::string::npos);
  clock.advance(30s);
  fail = false;
  EXPECT_EQ(gw->instances()[0].breaker, BreakerState::kHalfOpen);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(post(*gw, "/v1/completions", kBody).is_ok());
  EXPECT_GE(flaky.hits(), 3);  // the probe went through and closed it
  EXPECT_EQ(gw->instances()[0].breaker, BreakerState::kClosed);
}

TEST(GatewayTest, ActiveHealthChecksTakeAnInstanceOutAndBack) {
  FakeUpstream a(answer_json), b(answer_json);
  auto config = base_config({&a, &b});
  config.health.unhealthy_after = 2;
  auto gw = start(config);
  ASSERT_TRUE(gw);
  a.set_healthy(false);
  gw->check_health_now();
  EXPECT_TRUE(gw->instances()[0].healthy);  // one failure is not enough
  gw->check_health_now();
  EXPECT_FALSE(gw->instances()[0].healthy);
  for (int i = 0; i < 4; ++i) ASSERT_EQ(post(*gw, "/v1/completions", kBody)->status, 200);
  EXPECT_EQ(a.hits(), 0);
  b.set_healthy(false);
  gw->check_health_now();
  gw->check_health_now();
  auto h = protocol::http_request("127.0.0.1", gw->port(), "GET", "/health", "", {},
                                  protocol::deadline_in(kWait));
  EXPECT_EQ(h->status, 503);
  a.set_healthy(true);
  gw->check_health_now();
  EXPECT_TRUE(gw->instances()[0].healthy);
  EXPECT_EQ(post(*gw, "/v1/completions", kBody)->status, 200);
  EXPECT_EQ(a.hits(), 1);
}

TEST(GatewayTest, ApiKeysAndPerKeyLimits) {
  FakeClock clock;
  FakeUpstream up(answer_json);
  auto config = base_config({&up});
  config.api_keys = {{"sk-good", "team", 2, 0}, {"sk-tokens", "small", 0, 20}};
  auto gw = start(config, &clock);
  ASSERT_TRUE(gw);
  auto none = post(*gw, "/v1/completions", kBody);
  EXPECT_EQ(none->status, 401);
  EXPECT_NE(none->body.find("authentication_error"), std::string::npos);
  EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer nope"}})->status, 401);
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer sk-good"}})->status,
              200);
  }
  auto limited = post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer sk-good"}});
  EXPECT_EQ(limited->status, 429);
  EXPECT_EQ(limited->header("retry-after").value_or(""), "30");
  EXPECT_NE(limited->body.find("requests_per_minute"), std::string::npos);
  // 5 prompt chars / 4 + max_tokens 4 = 5 tokens a request; 20 a minute.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer sk-tokens"}})->status,
              200);
  }
  EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer sk-tokens"}})->status,
            429);
  clock.advance(30s);
  EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"Authorization", "Bearer sk-good"}})->status,
            200);
  EXPECT_EQ(up.hits(), 7);
}

TEST(GatewayTest, InternalRoutesAndUnknownPathsAreNotReachable) {
  FakeUpstream up(answer_json);
  auto gw = start(base_config({&up}));
  ASSERT_TRUE(gw);
  for (const char* path : {"/internal/pd/decode", "/internal/pd/abort", "/internal", "/v2/x"}) {
    auto r = post(*gw, path, "{}", {{"x-baton-cluster-token", "guess"}});
    ASSERT_TRUE(r.is_ok());
    EXPECT_EQ(r->status, 404) << path;
  }
  EXPECT_EQ(up.hits(), 0);
}

TEST(GatewayTest, BodyAndPromptLimits) {
  FakeUpstream up(answer_json);
  auto config = base_config({&up});
  config.limits.max_body_bytes = 4096;
  config.limits.max_prompt_chars = 100;
  auto gw = start(config);
  ASSERT_TRUE(gw);
  std::string long_prompt(200, 'a');
  auto r = post(*gw, "/v1/completions", R"({"model":"m","prompt":")" + long_prompt + "\"}");
  EXPECT_EQ(r->status, 413);
  std::string huge(8000, 'a');
  auto big = post(*gw, "/v1/completions", R"({"model":"m","prompt":")" + huge + "\"}");
  EXPECT_EQ(big->status, 413);
  EXPECT_EQ(post(*gw, "/v1/completions", "not json")->status, 400);
  EXPECT_EQ(up.hits(), 0);
}

TEST(GatewayTest, GroupsByModelScenarioHeaderAndPromptLength) {
  FakeUpstream chat(answer_json), longp(answer_json), other(answer_json);
  GatewayConfig c = base_config({});
  c.groups.clear();
  GroupConfig g1;
  g1.name = "chat";
  g1.scenario = "chat";
  GroupConfig g2;
  g2.name = "long";
  g2.min_prompt_chars = 50;
  GroupConfig g3;
  g3.name = "rest";
  g3.models = {"m"};
  c.groups = {g1, g2, g3};
  c.instances = {{"chat", "127.0.0.1", chat.port(), Role::kMixed, "chat", false},
                 {"long", "127.0.0.1", longp.port(), Role::kMixed, "long", false},
                 {"rest", "127.0.0.1", other.port(), Role::kMixed, "rest", false}};
  auto gw = start(c);
  ASSERT_TRUE(gw);
  EXPECT_EQ(post(*gw, "/v1/completions", kBody, {{"x-baton-scenario", "chat"}})
                ->header("x-baton-instance")
                .value_or(""),
            "chat");
  std::string long_body = R"({"model":"m","prompt":")" + std::string(60, 'x') + "\"}";
  EXPECT_EQ(post(*gw, "/v1/completions", long_body)->header("x-baton-instance").value_or(""),
            "long");
  EXPECT_EQ(post(*gw, "/v1/completions", kBody)->header("x-baton-instance").value_or(""), "rest");
  auto unknown = post(*gw, "/v1/completions", R"({"model":"zz","prompt":"a"})");
  EXPECT_EQ(unknown->status, 404);
}

TEST(GatewayTest, PrefixAffinitySendsTheSamePrefixToTheSameInstance) {
  FakeUpstream a(answer_json), b(answer_json), c(answer_json);
  auto gw = start(base_config({&a, &b, &c}, PolicyKind::kPrefixAware));
  ASSERT_TRUE(gw);
  std::map<int, std::set<std::string>> where;
  for (int round = 0; round < 4; ++round) {
    for (int family = 0; family < 6; ++family) {
      std::string prompt = "family " + std::to_string(family) + ": " +
                           std::string(300, 'a' + family) + " question " + std::to_string(round);
      auto r =
          post(*gw, "/v1/completions", nlohmann::json{{"model", "m"}, {"prompt", prompt}}.dump());
      ASSERT_TRUE(r.is_ok());
      where[family].insert(std::string(r->header("x-baton-instance").value_or("")));
    }
  }
  std::set<std::string> used;
  for (auto& [family, instances] : where) {
    EXPECT_EQ(instances.size(), 1u) << "family " << family;
    used.insert(instances.begin(), instances.end());
  }
  EXPECT_GE(used.size(), 2u);  // and the families spread over instances
}

TEST(GatewayTest, ConsistentHashKeepsASessionOnOneInstance) {
  FakeUpstream a(answer_json), b(answer_json), c(answer_json);
  auto gw = start(base_config({&a, &b, &c}, PolicyKind::kConsistentHash));
  ASSERT_TRUE(gw);
  std::map<std::string, std::set<std::string>> where;
  for (int round = 0; round < 3; ++round) {
    for (int session = 0; session < 8; ++session) {
      const std::string id = "session-" + std::to_string(session);
      // Half the sessions name themselves by header, half by the body's `user`.
      auto r = session % 2 == 0
                   ? post(*gw, "/v1/completions", kBody, {{"x-session-id", id}})
                   : post(*gw, "/v1/completions",
                          nlohmann::json{{"model", "m"}, {"prompt", "p"}, {"user", id}}.dump());
      ASSERT_TRUE(r.is_ok());
      where[id].insert(std::string(r->header("x-baton-instance").value_or("")));
    }
  }
  std::set<std::string> used;
  for (auto& [id, instances] : where) {
    EXPECT_EQ(instances.size(), 1u) << id;
    used.insert(instances.begin(), instances.end());
  }
  EXPECT_GE(used.size(), 2u);
}

TEST(GatewayTest, SessionsStayPutAfterAReloadAddsAnInstanceAheadOfTheOthers) {
  FakeUpstream a(answer_json), b(answer_json), c(answer_json);
  auto config = base_config({&a, &b}, PolicyKind::kConsistentHash);
  auto gw = start(config);
  ASSERT_TRUE(gw);
  auto next = base_config({&c, &a, &b}, PolicyKind::kConsistentHash);
  next.instances[0].name = "new";
  next.instances[1].name = "u0";
  next.instances[2].name = "u1";
  ASSERT_TRUE(gw->reload(next).is_ok());
  std::set<std::string> used;
  for (int session = 0; session < 12; ++session) {
    std::set<std::string> where;
    for (int round = 0; round < 3; ++round) {
      auto r = post(*gw, "/v1/completions", kBody, {{"x-session-id", std::to_string(session)}});
      ASSERT_TRUE(r.is_ok());
      where.insert(std::string(r->header("x-baton-instance").value_or("")));
    }
    EXPECT_EQ(where.size(), 1u) << "session " << session;
    used.insert(where.begin(), where.end());
  }
  EXPECT_GE(used.size(), 2u);  // the ring still spreads sessions over the instances
}

TEST(GatewayTest, ReloadDrainsARemovedInstanceWhileItsStreamFinishes) {
  std::promise<void> release;
  auto released = release.get_future().share();
  std::vector<std::thread> threads;
  FakeUpstream a([&](const HttpRequest&, Writer w) {
    w->start_stream(200, "text/event-stream");
    w->write(chunk(0));
    threads.emplace_back([w, released] {
      released.wait_for(kWait);
      w->write(chunk(1));
      w->write(std::string(protocol::kSseDone));
      w->end_stream();
    });
  });
  FakeUpstream b(answer_json);
  auto config = base_config({&a, &b});
  auto gw = start(config);
  ASSERT_TRUE(gw);
  std::promise<void> first_chunk;
  std::thread client([&] {
    bool told = false;
    auto s = post_stream(*gw, kStreamBody, [&](const std::string& so_far) {
      if (!told && so_far.find(chunk(0)) != std::string::npos) {
        told = true;
        first_chunk.set_value();
      }
      return true;
    });
    EXPECT_TRUE(s.response.is_ok());
    EXPECT_EQ(s.body, chunk(0) + chunk(1) + std::string(protocol::kSseDone));
  });
  ASSERT_EQ(first_chunk.get_future().wait_for(kWait), std::future_status::ready);
  auto next = config;
  next.instances.erase(next.instances.begin());
  ASSERT_TRUE(gw->reload(next).is_ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(post(*gw, "/v1/completions", kBody)->header("x-baton-instance").value_or(""), "u1");
  }
  release.set_value();
  client.join();
  for (auto& t : threads) t.join();
  EXPECT_EQ(a.hits(), 1);
}

TEST(GatewayTest, APortInUseIsRefusedEvenWithSeveralEventLoops) {
  FakeUpstream up(answer_json);
  auto first = start(base_config({&up}));
  ASSERT_TRUE(first);
  auto config = base_config({&up});
  config.port = first->port();
  config.io_threads = 2;
  auto second = Gateway::start(config);
  EXPECT_FALSE(second.is_ok());
  EXPECT_EQ(post(*first, "/v1/completions", kBody)->status, 200);
}

TEST(GatewayTest, MetricsAndModels) {
  FakeUpstream up([](const HttpRequest& r, Writer w) {
    if (r.path == "/v1/models") {
      return w->send(200, "application/json", R"({"object":"list","data":[{"id":"m"}]})");
    }
    answer_json(r, w);
  });
  auto gw = start(base_config({&up}));
  ASSERT_TRUE(gw);
  auto models = protocol::http_request("127.0.0.1", gw->port(), "GET", "/v1/models", "", {},
                                       protocol::deadline_in(kWait));
  ASSERT_TRUE(models.is_ok());
  EXPECT_EQ(models->body, R"({"object":"list","data":[{"id":"m"}]})");
  ASSERT_EQ(post(*gw, "/v1/completions", kBody)->status, 200);
  auto m = protocol::http_request("127.0.0.1", gw->port(), "GET", "/metrics", "", {},
                                  protocol::deadline_in(kWait));
  ASSERT_TRUE(m.is_ok());
  for (const char* name :
       {"baton:gateway_requests_total{route=\"completions\",status=\"200\",instance=\"u0\"} 1",
        "baton:gateway_added_latency_seconds_count{route=\"completions\"} 1",
        "baton:gateway_instance_in_flight{instance=\"u0\"} 0",
        "baton:gateway_group_in_flight{group=\"default\",role=\"mixed\"} 0",
        "baton:gateway_routing_decision_seconds_count"}) {
    EXPECT_NE(m->body.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace baton::gateway
