// The gateway as the P/D coordinator of protocol/pd.h, in front of fake
// prefill and decode instances: on-demand forwarding order and bounds, the
// release of D's reservation when every prefill refuses, a prefill dying
// before its first token, and the relay of D's answer.

#include <gtest/gtest.h>

#include <condition_variable>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "gateway/fake_upstream.h"
#include "gateway/gateway.h"
#include "protocol/http_client.h"
#include "protocol/pd.h"
#include "protocol/sse.h"

namespace baton::gateway {
namespace {

using namespace std::chrono_literals;
using protocol::HttpRequest;
using testing::FakeUpstream;
using Writer = FakeUpstream::Writer;
namespace pd = protocol::pd;

constexpr auto kWait = 10s;
constexpr std::string_view kToken = "cluster-secret";

std::string chunk(int i) {
  return protocol::sse_event(R"({"choices":[{"text":"d)" + std::to_string(i) + "\"}]}");
}

// A decode instance: reserves (a ticket per request), answers once a prefill
// instance "delivers" the KV, and records aborts.
class FakeDecode {
 public:
  FakeDecode() : server_([this](const HttpRequest& r, Writer w) { handle(r, std::move(w)); }) {}

  uint16_t port() const { return server_.port(); }
  int hits() const { return server_.hits(); }

  // Called by a fake prefill instance when it has "sent" the KV.
  void deliver(uint64_t transfer_id) {
    std::lock_guard lock(mu_);
    auto it = streams_.find(transfer_id);
    if (it == streams_.end()) return;
    Writer w = it->second.writer;
    if (fail_with_error_) {
      w->write(protocol::sse_event(pd::kEventError,
                                   pd::error_event_data(internal_error("decode step failed"))));
    } else if (it->second.stream) {
      for (int i = 0; i < 3; ++i) w->write(chunk(i));
      w->write(std::string(protocol::kSseDone));
    } else {
      w->write(protocol::sse_event(pd::kEventResponse, R"({"id":"r","choices":[{"text":"d"}]})"));
    }
    w->end_stream();
    streams_.erase(it);
  }

  std::vector<uint64_t> aborts() const {
    std::lock_guard lock(mu_);
    return aborts_;
  }
  // Waits (bounded) until at least `n` aborts arrived.
  std::vector<uint64_t> wait_aborts(size_t n) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, kWait, [&] { return aborts_.size() >= n; });
    return aborts_;
  }
  std::future<void> closed() { return closed_.get_future(); }
  void fail_with_error() { fail_with_error_ = true; }

 private:
  struct Stream {
    Writer writer;
    bool stream = false;
  };

  void handle(const HttpRequest& r, Writer w) {
    if (r.header(pd::kTokenHeader).value_or("") != kToken) {
      return w->send(403, "application/json", R"({"error":{"message":"bad token"}})");
    }
    if (r.path == pd::kAbortPath) {
      auto a = pd::parse_abort_request(pd::Json::parse(r.body));
      std::lock_guard lock(mu_);
      if (a.is_ok()) aborts_.push_back(a->transfer_id);
      cv_.notify_all();
      return w->send(200, "application/json", "{}");
    }
    auto req = pd::parse_decode_request(pd::Json::parse(r.body));
    if (!req.is_ok() || r.path != pd::kDecodePath) {
      return w->send(400, "application/json", R"({"error":{"message":"bad decode request"}})");
    }
    pd::Ticket t;
    t.kv_endpoint = "127.0.0.1:1";
    t.kv_shape = {2, 2, 8, 2};
    t.lease_ms = req->lease_ms;
    pd::TicketEntry e;
    std::lock_guard lock(mu_);
    e.transfer_id = ++next_id_;
    e.prompt_token_ids = {1, 2, 3};
    t.entries.push_back(e);
    w->on_close([this] {
      if (!closed_set_.exchange(true)) closed_.set_value();
    });
    w->start_stream(200, "text/event-stream");
    w->write(protocol::sse_event(pd::kEventTicket, pd::to_json(t).dump()));
    streams_[e.transfer_id] = {w, req->body.value("stream", false)};
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, Stream> streams_;
  std::vector<uint64_t> aborts_;
  uint64_t next_id_ = 1000;
  std::promise<void> closed_;
  std::atomic<bool> closed_set_{false};
  std::atomic<bool> fail_with_error_{false};
  FakeUpstream server_;  // last: stopped first
};

enum class PrefillMode { kAccept, kReject503, kReject429, kDieBeforeFirstToken };

// A prefill instance with a fixed behaviour; records the tickets it saw.
class FakePrefill {
 public:
  FakePrefill(PrefillMode mode, FakeDecode& decode)
      : server_([this, mode, &decode](const HttpRequest& r, Writer w) {
          auto req = pd::parse_prefill_request(pd::Json::parse(r.body));
          if (!req.is_ok() || r.header(pd::kTokenHeader).value_or("") != kToken) {
            return w->send(400, "application/json", R"({"error":{"message":"bad"}})");
          }
          const uint64_t id = req->ticket.entries.at(0).transfer_id;
          {
            std::lock_guard lock(mu_);
            tickets_.push_back(id);
            decode_address_ = req->decode_address;
          }
          switch (mode) {
            case PrefillMode::kReject503:
            case PrefillMode::kReject429:
              return w->send(mode == PrefillMode::kReject503 ? 503 : 429, "application/json",
                             R"({"error":{"message":"full","code":"queue_full"}})",
                             {{"Retry-After", "2"}, {"x-baton-reject-reason", "queue_full"}});
            case PrefillMode::kDieBeforeFirstToken:
              w->start_stream(200, "text/event-stream");
              return;  // the dropped writer closes the connection
            case PrefillMode::kAccept:
              w->start_stream(200, "text/event-stream");
              w->write(protocol::sse_event(pd::kEventAccepted, "{}"));
              pd::FirstTokens ft;
              ft.transfer_id = id;
              ft.tokens.push_back({});
              w->write(protocol::sse_event(pd::kEventFirstToken, pd::to_json(ft).dump()));
              decode.deliver(id);
              w->write(protocol::sse_event(pd::kEventDone, R"({"kv_bytes":64,"transfer_s":0})"));
              w->end_stream();
              return;
          }
        }) {}

  uint16_t port() const { return server_.port(); }
  std::vector<uint64_t> tickets() const {
    std::lock_guard lock(mu_);
    return tickets_;
  }
  std::string decode_address() const {
    std::lock_guard lock(mu_);
    return decode_address_;
  }

 private:
  mutable std::mutex mu_;
  std::vector<uint64_t> tickets_;
  std::string decode_address_;
  FakeUpstream server_;
};

GatewayConfig pd_config(const FakeDecode& d, const std::vector<const FakePrefill*>& ps) {
  GatewayConfig c;
  c.port = 0;
  c.access_log = false;
  c.health.interval = 0ms;
  c.cluster_token = std::string(kToken);
  GroupConfig g;
  g.prefill_policy = PolicyKind::kRoundRobin;  // a known forwarding order
  c.groups.push_back(g);
  c.instances.push_back({"d0", "127.0.0.1", d.port(), Role::kDecode, "default", false});
  for (size_t i = 0; i < ps.size(); ++i) {
    c.instances.push_back(
        {"p" + std::to_string(i), "127.0.0.1", ps[i]->port(), Role::kPrefill, "default", false});
  }
  return c;
}

std::unique_ptr<Gateway> start(GatewayConfig c) {
  auto gw = Gateway::start(std::move(c), nullptr, 99);
  EXPECT_TRUE(gw.is_ok()) << gw.status().to_string();
  return gw.is_ok() ? std::move(*gw) : nullptr;
}

struct Reply {
  int status = 0;
  protocol::Headers headers;
  std::string body;
  std::optional<std::string_view> header(std::string_view n) const {
    return protocol::find_header(headers, n);
  }
};

Reply ask(const Gateway& gw, bool stream) {
  nlohmann::json body = {{"model", "m"}, {"prompt", "hello there"}, {"max_tokens", 4}};
  if (stream) body["stream"] = true;
  Reply reply;
  auto r = protocol::http_stream(
      "127.0.0.1", gw.port(), "POST", "/v1/completions", body.dump(),
      {{"Content-Type", "application/json"}, {"x-baton-cluster-token", "client-guess"}},
      protocol::deadline_in(kWait), [&](std::string_view piece) {
        reply.body.append(piece);
        return true;
      });
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  if (r.is_ok()) {
    reply.status = r->status;
    reply.headers = r->headers;
  }
  return reply;
}

TEST(GatewayPdTest, ARejectedTicketGoesAtOnceToTheNextPrefillInstance) {
  FakeDecode d;
  FakePrefill p0(PrefillMode::kReject503, d), p1(PrefillMode::kReject429, d),
      p2(PrefillMode::kAccept, d);
  auto gw = start(pd_config(d, {&p0, &p1, &p2}));
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, chunk(0) + chunk(1) + chunk(2) + std::string(protocol::kSseDone));
  EXPECT_EQ(r.header("x-baton-instance").value_or(""), "d0");
  EXPECT_EQ(r.header("x-baton-prefill-instance").value_or(""), "p2");
  // Each prefill instance was asked once, in order, with the same ticket.
  ASSERT_EQ(p0.tickets().size(), 1u);
  ASSERT_EQ(p1.tickets().size(), 1u);
  ASSERT_EQ(p2.tickets().size(), 1u);
  EXPECT_EQ(p0.tickets()[0], p2.tickets()[0]);
  EXPECT_EQ(p1.tickets()[0], p2.tickets()[0]);
  EXPECT_EQ(p2.decode_address(), "127.0.0.1:" + std::to_string(d.port()));
  EXPECT_EQ(d.hits(), 1);
  EXPECT_TRUE(d.aborts().empty());
  // The gateway records a request's figures as it ends, which may be just
  // after the client saw the end of the stream.
  std::string m = gw->metrics().render();
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (m.find("baton:gateway_prefill_forwards_per_request_count 1") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
    m = gw->metrics().render();
  }
  EXPECT_NE(m.find("baton:gateway_prefill_forwards_per_request_sum 3"), std::string::npos) << m;
  EXPECT_NE(m.find("baton:gateway_rejections_total{reason=\"prefill_503\"} 1"), std::string::npos);
  EXPECT_NE(m.find("baton:gateway_rejections_total{reason=\"prefill_429\"} 1"), std::string::npos);
}

TEST(GatewayPdTest, WhenEveryPrefillRefusesTheClientGetsRetryAfterAndDecodeIsReleased) {
  FakeDecode d;
  auto closed = d.closed();
  FakePrefill p0(PrefillMode::kReject503, d), p1(PrefillMode::kReject503, d),
      p2(PrefillMode::kAccept, d);
  auto config = pd_config(d, {&p0, &p1, &p2});
  config.pd.max_prefill_tries = 2;  // p2 is never asked
  auto gw = start(config);
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/true);
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.header("retry-after").value_or(""), "2");
  EXPECT_NE(r.body.find("queue_full"), std::string::npos) << r.body;
  EXPECT_TRUE(p2.tickets().empty());
  ASSERT_EQ(closed.wait_for(kWait), std::future_status::ready);  // D's stream was closed
  // And its reservation explicitly aborted.
  auto aborts = d.wait_aborts(1);
  ASSERT_EQ(aborts.size(), 1u);
  EXPECT_EQ(aborts[0], p0.tickets().at(0));
}

TEST(GatewayPdTest, AllRejecting429GivesA429) {
  FakeDecode d;
  FakePrefill p0(PrefillMode::kReject429, d);
  auto gw = start(pd_config(d, {&p0}));
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/false);
  EXPECT_EQ(r.status, 429);
  EXPECT_TRUE(r.header("retry-after").has_value());
}

TEST(GatewayPdTest, APrefillDyingBeforeItsFirstTokenPassesTheTicketOn) {
  FakeDecode d;
  FakePrefill p0(PrefillMode::kDieBeforeFirstToken, d), p1(PrefillMode::kAccept, d);
  auto gw = start(pd_config(d, {&p0, &p1}));
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/true);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, chunk(0) + chunk(1) + chunk(2) + std::string(protocol::kSseDone));
  ASSERT_EQ(p0.tickets().size(), 1u);
  ASSERT_EQ(p1.tickets().size(), 1u);
  EXPECT_EQ(p0.tickets()[0], p1.tickets()[0]);
}

TEST(GatewayPdTest, ANonStreamedAnswerIsTheResponseEvent) {
  FakeDecode d;
  FakePrefill p0(PrefillMode::kAccept, d);
  auto gw = start(pd_config(d, {&p0}));
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/false);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.header("content-type").value_or(""), "application/json");
  EXPECT_EQ(r.body, R"({"id":"r","choices":[{"text":"d"}]})");
}

TEST(GatewayPdTest, ADecodeErrorBeforeAnyAnswerIsAnHttpError) {
  FakeDecode d;
  d.fail_with_error();
  FakePrefill p0(PrefillMode::kAccept, d);
  auto gw = start(pd_config(d, {&p0}));
  ASSERT_TRUE(gw);
  Reply r = ask(*gw, /*stream=*/true);
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("decode step failed"), std::string::npos) << r.body;
}

}  // namespace
}  // namespace baton::gateway
