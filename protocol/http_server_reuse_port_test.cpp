// HttpServerOptions::reuse_port and HttpServer::io_context(): several
// single-threaded servers on one port, and work of the caller's own run by a
// server's I/O thread.

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <future>
#include <thread>

#include "protocol/http_client.h"
#include "protocol/http_server.h"

namespace baton::protocol {
namespace {

using namespace std::chrono_literals;

TEST(HttpServerReusePortTest, TwoServersShareAPortAndBothServe) {
  HttpServerOptions o;
  o.io_threads = 1;
  o.reuse_port = true;
  auto answer = [](std::string name) {
    return [name](HttpRequest, std::shared_ptr<ResponseWriter> w) {
      w->send(200, "text/plain", name);
    };
  };
  auto a = HttpServer::start(o, answer("a"));
  ASSERT_TRUE(a.is_ok()) << a.status().to_string();
  o.port = (*a)->port();
  auto b = HttpServer::start(o, answer("b"));
  ASSERT_TRUE(b.is_ok()) << b.status().to_string();
  EXPECT_EQ((*b)->port(), (*a)->port());
  // Each new connection lands on one of them; both answer correctly.
  for (int i = 0; i < 20; ++i) {
    auto r = http_request("127.0.0.1", o.port, "GET", "/", "", {}, deadline_in(5s));
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    EXPECT_TRUE(r->body == "a" || r->body == "b") << r->body;
  }
  // Without reuse_port the port stays exclusive.
  HttpServerOptions plain;
  plain.port = o.port;
  EXPECT_FALSE(HttpServer::start(plain, answer("c")).is_ok());
}

TEST(HttpServerReusePortTest, IoContextRunsTheCallersWorkOnTheServerThread) {
  HttpServerOptions o;
  o.io_threads = 1;
  std::promise<std::thread::id> handler_thread;
  auto server = HttpServer::start(o, [&](HttpRequest, std::shared_ptr<ResponseWriter> w) {
    handler_thread.set_value(std::this_thread::get_id());
    w->send(200, "text/plain", "ok");
  });
  ASSERT_TRUE(server.is_ok());
  ASSERT_TRUE(
      http_request("127.0.0.1", (*server)->port(), "GET", "/", "", {}, deadline_in(5s)).is_ok());
  std::promise<std::thread::id> posted;
  auto ioc = (*server)->io_context();
  boost::asio::post(*ioc, [&] { posted.set_value(std::this_thread::get_id()); });
  auto f = posted.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(f.get(), handler_thread.get_future().get());
  (*server)->stop();
}

}  // namespace
}  // namespace baton::protocol
