// HttpServer behaviour seen through real loopback sockets and HttpClient.

#include "protocol/http_server.h"

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <mutex>
#include <thread>
#include <vector>

#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton::protocol {
namespace {

using namespace std::chrono_literals;

constexpr auto kWait = 5s;  // generous bound for anything the test waits on

std::unique_ptr<HttpServer> start_server(Handler handler, HttpServerOptions options = {}) {
  auto server = HttpServer::start(std::move(options), std::move(handler));
  EXPECT_TRUE(server.is_ok()) << server.status().to_string();
  return server.is_ok() ? std::move(server).value() : nullptr;
}

// Echoes the request back: "<method> <path> <query> <body>", and the client
// port in a header so tests can tell connections apart.
void echo(HttpRequest req, std::shared_ptr<ResponseWriter> writer) {
  writer->send(200, "text/plain", req.method + " " + req.path + " " + req.query + " " + req.body,
               {{"X-Remote-Port", std::to_string(req.remote_port)}});
}

TEST(HttpServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  auto server = start_server(echo);
  ASSERT_TRUE(server);
  HttpClient client("127.0.0.1", server->port());
  std::string first_port;
  for (int i = 0; i < 5; ++i) {
    auto r = client.request("POST", "/v1/x?i=" + std::to_string(i), "body" + std::to_string(i),
                            {{"Content-Type", "text/plain"}}, deadline_in(kWait));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "POST /v1/x i=" + std::to_string(i) + " body" + std::to_string(i));
    EXPECT_EQ(r->header("connection").value_or(""), "keep-alive");
    EXPECT_EQ(r->header("Server").value_or(""), "baton");
    std::string port(r->header("X-Remote-Port").value_or(""));
    if (i == 0) first_port = port;
    EXPECT_EQ(port, first_port) << "request " << i << " used a new connection";
  }
  EXPECT_EQ(server->active_connections(), 1u);
}

TEST(HttpServerTest, ServesConcurrentClients) {
  HttpServerOptions options;
  options.io_threads = 3;
  auto server = start_server(echo, options);
  ASSERT_TRUE(server);
  constexpr int kClients = 8;
  constexpr int kRequests = 20;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      HttpClient client("127.0.0.1", server->port());
      for (int i = 0; i < kRequests; ++i) {
        std::string body = std::to_string(c) + "-" + std::to_string(i);
        auto r = client.request("PUT", "/c", body, {}, deadline_in(kWait));
        if (r.is_ok() && r->status == 200 && r->body == "PUT /c  " + body) ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok.load(), kClients * kRequests);
}

// Owns the threads a test's handlers start, joined before the server stops.
class Workers {
 public:
  ~Workers() { join(); }
  void spawn(std::function<void()> fn) {
    std::lock_guard lock(mu_);
    threads_.emplace_back(std::move(fn));
  }
  void join() {
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

 private:
  std::mutex mu_;
  std::vector<std::thread> threads_;
};

TEST(HttpServerTest, HandlerRespondsLaterFromAnotherThread) {
  Workers workers;
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  auto server = start_server([&](HttpRequest req, std::shared_ptr<ResponseWriter> writer) {
    workers.spawn([writer, released, body = req.body] {
      released.wait_for(kWait);
      writer->send(201, "application/json", "{\"late\":\"" + body + "\"}");
    });
  });
  ASSERT_TRUE(server);
  auto pending = std::async(std::launch::async, [&] {
    return http_request("127.0.0.1", server->port(), "POST", "/late", "x", {}, deadline_in(kWait));
  });
  // The handler has returned; the response only exists once released.
  EXPECT_EQ(pending.wait_for(50ms), std::future_status::timeout);
  release.set_value();
  auto r = pending.get();
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, "{\"late\":\"x\"}");
  EXPECT_EQ(r->header("Content-Type").value_or(""), "application/json");
  workers.join();
}

TEST(HttpServerTest, StreamsChunksInOrder) {
  Workers workers;
  constexpr int kChunks = 256;
  auto server = start_server([&](HttpRequest, std::shared_ptr<ResponseWriter> writer) {
    ASSERT_TRUE(writer->start_stream(200, std::string(kSseContentType)));
    workers.spawn([writer] {
      for (int i = 0; i < kChunks; ++i) {
        EXPECT_TRUE(writer->write(sse_event("{\"i\":" + std::to_string(i) + "}")));
      }
      writer->write(std::string(kSseDone));
      writer->end_stream();
    });
  });
  ASSERT_TRUE(server);
  HttpClient client("127.0.0.1", server->port());
  for (int round = 0; round < 2; ++round) {  // the connection is reusable after a stream
    SseParser parser;
    std::vector<SseEvent> events;
    auto r = client.stream("POST", "/v1/chat/completions", "{}", {}, deadline_in(kWait),
                           [&](std::string_view piece) {
                             parser.feed(piece, events);
                             return true;
                           });
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->header("Transfer-Encoding").value_or(""), "chunked");
    EXPECT_EQ(r->header("Content-Type").value_or(""), kSseContentType);
    ASSERT_EQ(events.size(), static_cast<size_t>(kChunks + 1));
    for (int i = 0; i < kChunks; ++i) {
      EXPECT_EQ(events[i].data, "{\"i\":" + std::to_string(i) + "}");
    }
    EXPECT_TRUE(events.back().is_done());
    EXPECT_TRUE(client.connected());
    workers.join();
  }
}

TEST(HttpServerTest, ClientDisconnectMidStreamFiresOnCloseAndFailsWrites) {
  std::promise<void> closed;
  std::promise<std::shared_ptr<ResponseWriter>> stream_writer;
  auto server = start_server([&](HttpRequest, std::shared_ptr<ResponseWriter> writer) {
    writer->on_close([&closed] { closed.set_value(); });
    writer->start_stream(200, "text/event-stream");
    writer->write(sse_event("first"));
    stream_writer.set_value(writer);
  });
  ASSERT_TRUE(server);
  auto writer_future = stream_writer.get_future();
  int pieces = 0;
  auto r = http_stream("127.0.0.1", server->port(), "GET", "/s", "", {}, deadline_in(kWait),
                       [&](std::string_view) {
                         ++pieces;
                         return false;  // hang up after the first piece
                       });
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(pieces, 1);
  ASSERT_EQ(writer_future.wait_for(kWait), std::future_status::ready);
  auto writer = writer_future.get();
  ASSERT_EQ(closed.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(writer->closed());
  EXPECT_FALSE(writer->write(sse_event("too late")));
  bool late_hook = false;
  writer->on_close([&] { late_hook = true; });  // already closed: runs at once
  EXPECT_TRUE(late_hook);
}

TEST(HttpServerTest, OutputBacklogOverflowClosesTheConnection) {
  HttpServerOptions options;
  options.max_output_backlog = 64 << 10;
  std::promise<bool> overflowed;
  std::promise<void> closed;
  std::shared_future<void> closed_future = closed.get_future().share();
  Workers workers;
  auto server = start_server(
      [&](HttpRequest, std::shared_ptr<ResponseWriter> writer) {
        writer->on_close([&] { closed.set_value(); });
        writer->start_stream(200, "text/plain");
        workers.spawn([&, writer] {
          // The client never reads: once the socket buffers fill, the backlog
          // grows past its bound. 1 GiB is far beyond any socket buffering.
          std::string chunk(16 << 10, 'x');
          bool refused = false;
          for (int i = 0; i < (1 << 16) && !refused; ++i) refused = !writer->write(chunk);
          overflowed.set_value(refused);
        });
      },
      options);
  ASSERT_TRUE(server);
  // The client stalls in its first callback, so it stops reading.
  auto reader = std::async(std::launch::async, [&] {
    return http_stream("127.0.0.1", server->port(), "GET", "/flood", "", {}, deadline_in(kWait),
                       [&](std::string_view) {
                         closed_future.wait_for(kWait);
                         return false;
                       });
  });
  auto overflow_future = overflowed.get_future();
  ASSERT_EQ(overflow_future.wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(overflow_future.get());
  EXPECT_EQ(closed_future.wait_for(kWait), std::future_status::ready);
  reader.wait_for(kWait);
  workers.join();
}

TEST(HttpServerTest, HandlerThatForgetsToRespondGets500) {
  auto server = start_server([](HttpRequest, std::shared_ptr<ResponseWriter>) {});
  ASSERT_TRUE(server);
  HttpClient client("127.0.0.1", server->port());
  auto r = client.request("GET", "/forgot", "", {}, deadline_in(kWait));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 500);
  EXPECT_NE(r->body.find("\"type\":\"server_error\""), std::string::npos) << r->body;
  EXPECT_NE(r->body.find("\"param\":null"), std::string::npos) << r->body;
  // The connection stays usable.
  r = client.request("GET", "/forgot", "", {}, deadline_in(kWait));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, 500);
}

TEST(HttpServerTest, HandlerThatThrowsGets500) {
  auto server = start_server(
      [](HttpRequest, std::shared_ptr<ResponseWriter>) { throw std::runtime_error("boom"); });
  ASSERT_TRUE(server);
  auto r = http_request("127.0.0.1", server->port(), "GET", "/", "", {}, deadline_in(kWait));
  ASSERT_TRUE(r.is_ok()) << r.status().to_string();
  EXPECT_EQ(r->status, 500);
}

TEST(HttpServerTest, SendErrorUsesStatusCodeAndOpenAiShape) {
  auto server = start_server([](HttpRequest, std::shared_ptr<ResponseWriter> writer) {
    writer->send_error(not_found("model 'x' is not served here"));
  });
  ASSERT_TRUE(server);
  auto r = http_request("127.0.0.1", server->port(), "GET", "/", "", {}, deadline_in(kWait));
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(r->body,
            R"({"error":{"message":"model 'x' is not served here","type":"invalid_request_error",)"
            R"("param":null,"code":404}})");
}

TEST(HttpServerTest, StartFailsWhenThePortIsTaken) {
  auto first = start_server(echo);
  ASSERT_TRUE(first);
  HttpServerOptions options;
  options.port = first->port();
  auto second = HttpServer::start(options, echo);
  ASSERT_FALSE(second.is_ok());
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable);
}

TEST(HttpServerTest, StopWithOpenConnectionsReturnsAndCancelsPendingResponses) {
  std::promise<std::shared_ptr<ResponseWriter>> held;
  std::promise<void> cancelled;
  auto server = start_server([&](HttpRequest, std::shared_ptr<ResponseWriter> writer) {
    writer->on_close([&] { cancelled.set_value(); });
    held.set_value(writer);  // never answered
  });
  ASSERT_TRUE(server);
  HttpClient idle("127.0.0.1", server->port());
  auto waiting = std::async(std::launch::async, [&] {
    return http_request("127.0.0.1", server->port(), "GET", "/hang", "", {}, deadline_in(kWait));
  });
  auto held_future = held.get_future();
  ASSERT_EQ(held_future.wait_for(kWait), std::future_status::ready);
  auto writer = held_future.get();

  auto stopped = std::async(std::launch::async, [&] { server->stop(); });
  ASSERT_EQ(stopped.wait_for(kWait), std::future_status::ready);
  ASSERT_EQ(cancelled.get_future().wait_for(kWait), std::future_status::ready);
  EXPECT_TRUE(writer->closed());
  writer->send(200, "text/plain", "after stop");  // inert, must not crash
  auto r = waiting.get();
  EXPECT_FALSE(r.is_ok());  // the connection was closed without an answer
  EXPECT_EQ(server->active_connections(), 0u);
  server->stop();  // idempotent
}

}  // namespace
}  // namespace baton::protocol
