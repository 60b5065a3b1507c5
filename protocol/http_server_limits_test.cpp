// HttpServer's own answers to bad, slow, oversized or excess clients, driven
// through raw loopback sockets so that the bytes on the wire are exact.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "protocol/http_server.h"

namespace baton::protocol {
namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

constexpr auto kWait = 5s;  // generous bound for anything the test waits on

// A blocking client socket on 127.0.0.1 with deadline-bounded reads.
class RawConnection {
 public:
  explicit RawConnection(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return connected_; }

  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Reads until `needle` has been received, the peer closes, or the deadline.
  std::string read_until(std::string_view needle, std::chrono::milliseconds limit = kWait) {
    read_while([&] { return received_.find(needle) == std::string::npos; }, limit);
    return received_;
  }

  // Reads until the peer closes; false if it did not close within `limit`.
  bool read_until_closed(std::chrono::milliseconds limit = kWait) {
    read_while([] { return true; }, limit);
    return peer_closed_;
  }

  const std::string& received() const { return received_; }

 private:
  template <typename Pred>
  void read_while(Pred keep_going, std::chrono::milliseconds limit) {
    auto deadline = SteadyClock::now() + limit;
    while (!peer_closed_ && keep_going()) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left <= 0ms) return;
      pollfd pfd{fd_, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) return;
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) {
        peer_closed_ = true;
        return;
      }
      received_.append(buf, static_cast<size_t>(n));
    }
  }

  int fd_ = -1;
  bool connected_ = false;
  bool peer_closed_ = false;
  std::string received_;
};

// Counts handler calls and answers "ok".
struct CountingServer {
  explicit CountingServer(HttpServerOptions options = {}) {
    auto started = HttpServer::start(std::move(options), [this](HttpRequest req, auto writer) {
      calls.fetch_add(1);
      writer->send(200, "text/plain", "ok:" + req.body);
    });
    EXPECT_TRUE(started.is_ok()) << started.status().to_string();
    if (started.is_ok()) server = std::move(started).value();
  }
  uint16_t port() const { return server->port(); }

  std::atomic<int> calls{0};
  std::unique_ptr<HttpServer> server;
};

bool starts_with(const std::string& s, std::string_view prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

TEST(HttpServerLimitsTest, MalformedRequestLineGets400AndClose) {
  CountingServer s;
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("GARBAGE\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 400 Bad Request\r\n")) << c.received();
  EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(c.received().find("\"type\":\"invalid_request_error\""), std::string::npos);
  EXPECT_EQ(s.calls.load(), 0);
}

TEST(HttpServerLimitsTest, OversizeBodyGets413WithoutReadingIt) {
  HttpServerOptions options;
  options.max_body_bytes = 1024;
  CountingServer s(options);
  RawConnection c(s.port());
  // Announces 100 MB and sends none of it: the answer can only come from the
  // Content-Length check.
  ASSERT_TRUE(
      c.send("POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 413 ")) << c.received();
  EXPECT_NE(c.received().find("\"code\":413"), std::string::npos);
  EXPECT_EQ(s.calls.load(), 0);
}

TEST(HttpServerLimitsTest, OversizeChunkedBodyGets413) {
  HttpServerOptions options;
  options.max_body_bytes = 16;
  CountingServer s(options);
  RawConnection c(s.port());
  ASSERT_TRUE(
      c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "20\r\n01234567890123456789012345678901\r\n0\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 413 ")) << c.received();
}

TEST(HttpServerLimitsTest, ChunkedRequestBodyIsDecoded) {
  CountingServer s;
  RawConnection c(s.port());
  ASSERT_TRUE(
      c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"));
  std::string got = c.read_until("ok:abcde");
  EXPECT_TRUE(starts_with(got, "HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_NE(got.find("Content-Length: 8\r\n"), std::string::npos) << got;
}

TEST(HttpServerLimitsTest, TooManyHeadersGets431) {
  HttpServerOptions options;
  options.max_header_count = 10;
  CountingServer s(options);
  RawConnection c(s.port());
  std::string request = "GET / HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 20; ++i) request += "X-H" + std::to_string(i) + ": v\r\n";
  ASSERT_TRUE(c.send(request + "\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 431 ")) << c.received();
  EXPECT_EQ(s.calls.load(), 0);
}

TEST(HttpServerLimitsTest, HeaderBytesOverLimitGets431) {
  HttpServerOptions options;
  options.max_header_bytes = 1024;
  CountingServer s(options);
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4096, 'a') + "\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 431 ")) << c.received();
}

TEST(HttpServerLimitsTest, UnsupportedTransferEncodingGets501) {
  CountingServer s;
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 501 ")) << c.received();
  EXPECT_EQ(s.calls.load(), 0);
}

TEST(HttpServerLimitsTest, SlowHeadersGet408AndCloseWithinBound) {
  HttpServerOptions options;
  options.header_timeout = 200ms;
  CountingServer s(options);
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n"));  // never finished
  auto start = SteadyClock::now();
  ASSERT_TRUE(c.read_until_closed(kWait));
  EXPECT_LT(SteadyClock::now() - start, kWait);
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 408 ")) << c.received();
  EXPECT_EQ(s.calls.load(), 0);
}

TEST(HttpServerLimitsTest, SlowBodyGets408) {
  HttpServerOptions options;
  options.body_timeout = 200ms;
  CountingServer s(options);
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"));
  ASSERT_TRUE(c.read_until_closed(kWait));
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 408 ")) << c.received();
}

TEST(HttpServerLimitsTest, IdleKeepAliveConnectionCloses) {
  HttpServerOptions options;
  options.idle_timeout = 200ms;
  CountingServer s(options);
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(c.read_until("ok:").find("Connection: keep-alive\r\n"), std::string::npos);
  ASSERT_TRUE(c.read_until_closed(kWait));
  EXPECT_EQ(c.received().find("408"), std::string::npos);  // closed quietly
}

TEST(HttpServerLimitsTest, PipelinedRequestsAreAnsweredInOrder) {
  CountingServer s;
  RawConnection c(s.port());
  ASSERT_TRUE(
      c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nA"
             "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nB"
             "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nC"));
  ASSERT_TRUE(c.read_until_closed());
  const std::string& got = c.received();
  size_t a = got.find("ok:A"), b = got.find("ok:B"), cc = got.find("ok:C");
  ASSERT_NE(a, std::string::npos) << got;
  ASSERT_NE(b, std::string::npos) << got;
  ASSERT_NE(cc, std::string::npos) << got;
  EXPECT_LT(a, b);
  EXPECT_LT(b, cc);
  EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos);
}

TEST(HttpServerLimitsTest, Http10GetsConnectionClose) {
  CountingServer s;
  RawConnection c(s.port());
  ASSERT_TRUE(c.send("GET / HTTP/1.0\r\n\r\n"));
  ASSERT_TRUE(c.read_until_closed());
  EXPECT_TRUE(starts_with(c.received(), "HTTP/1.1 200 OK\r\n")) << c.received();
  EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
  EXPECT_NE(c.received().find("Content-Length: 3\r\n"), std::string::npos);
}

TEST(HttpServerLimitsTest, ConnectionsOverLimitGet503WithRetryAfter) {
  HttpServerOptions options;
  options.max_connections = 1;
  CountingServer s(options);
  RawConnection first(s.port());
  ASSERT_TRUE(first.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_NE(first.read_until("ok:").find("200 OK"), std::string::npos);  // accepted and counted
  EXPECT_EQ(s.server->active_connections(), 1u);

  RawConnection second(s.port());
  ASSERT_TRUE(second.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(second.read_until_closed());
  EXPECT_TRUE(starts_with(second.received(), "HTTP/1.1 503 ")) << second.received();
  EXPECT_NE(second.received().find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_EQ(s.calls.load(), 1);
  EXPECT_EQ(s.server->active_connections(), 1u);
}

TEST(HttpServerLimitsTest, ConnectionsPerClientOverLimitGet429AndFreeTheirSlotOnClose) {
  HttpServerOptions options;
  options.max_connections_per_client = 2;
  CountingServer s(options);
  auto first = std::make_unique<RawConnection>(s.port());
  RawConnection second(s.port());
  for (RawConnection* c : {first.get(), &second}) {
    ASSERT_TRUE(c->send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    ASSERT_NE(c->read_until("ok:").find("200 OK"), std::string::npos);
  }

  RawConnection third(s.port());
  ASSERT_TRUE(third.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(third.read_until_closed());
  EXPECT_TRUE(starts_with(third.received(), "HTTP/1.1 429 ")) << third.received();
  EXPECT_NE(third.received().find("Retry-After: 1\r\n"), std::string::npos);
  EXPECT_NE(third.received().find("too many connections from this client"), std::string::npos);
  EXPECT_EQ(s.calls.load(), 2);

  // A client that closes one of its connections may open another.
  first.reset();
  const auto deadline = SteadyClock::now() + kWait;
  while (s.server->active_connections() > 1 && SteadyClock::now() < deadline) {
    pollfd none{-1, 0, 0};
    ::poll(&none, 0, 5);
  }
  ASSERT_EQ(s.server->active_connections(), 1u);
  RawConnection fourth(s.port());
  ASSERT_TRUE(fourth.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_NE(fourth.read_until("ok:").find("200 OK"), std::string::npos) << fourth.received();
}

}  // namespace
}  // namespace baton::protocol
