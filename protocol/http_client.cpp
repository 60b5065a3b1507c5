#include "protocol/http_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <optional>

namespace baton::protocol {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kStreamBuffer = 16 << 10;

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

Status from_error(error_code ec, std::string_view what) {
  std::string message = std::string("http client: ") + std::string(what) + ": " + ec.message();
  if (ec == beast::error::timeout) return deadline_exceeded(std::move(message));
  if (&ec.category() == &http::make_error_code(http::error::bad_target).category() &&
      ec != http::error::end_of_stream && ec != http::error::partial_message) {
    return Status(StatusCode::kBadGateway, std::move(message));
  }
  return unavailable(std::move(message));
}

template <typename Fields>
void copy_headers(const Fields& fields, Headers& out) {
  for (const auto& field : fields) {
    out.emplace_back(std::string(sv(field.name_string())), std::string(sv(field.value())));
  }
}

}  // namespace

struct HttpClient::Impl {
  std::string host;
  uint16_t port;
  net::io_context ioc;
  std::optional<beast::tcp_stream> stream;
  beast::flat_buffer buffer;

  // Runs one asynchronous operation to completion on this thread; the
  // stream's expiry (the caller's deadline) bounds it.
  template <typename Start>
  error_code run(Start&& start) {
    error_code result = net::error::would_block;
    start([&result](error_code ec, size_t = 0) { result = ec; });
    ioc.restart();
    ioc.run();
    return result;
  }

  void close() {
    if (stream) {
      error_code ignored;
      stream->socket().shutdown(tcp::socket::shutdown_both, ignored);
      stream->close();
      stream.reset();
    }
    buffer.clear();
  }

  Status connect(HttpDeadline deadline) {
    if (stream) return Status::ok();
    error_code ec;
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(host, std::to_string(port), ec);
    if (ec) return invalid_argument("http client: cannot resolve '" + host + "': " + ec.message());
    stream.emplace(ioc);
    stream->expires_at(deadline);
    ec = run([&](auto handler) {
      stream->async_connect(results,
                            [handler](error_code e, const tcp::endpoint&) mutable { handler(e); });
    });
    if (ec) {
      close();
      return from_error(ec, "connect to " + host + ":" + std::to_string(port));
    }
    return Status::ok();
  }

  // Sends the request and reads the response header into `parser`. Retries
  // once on a fresh connection when a kept one turns out to be closed.
  template <typename Parser>
  Status send_and_read_header(std::string_view method, std::string_view target,
                              std::string_view body, const Headers& headers, HttpDeadline deadline,
                              std::optional<Parser>& parser, size_t body_limit) {
    http::request<http::string_body> req;
    req.method_string(beast::string_view(method.data(), method.size()));
    if (req.method() == http::verb::unknown && method.empty()) {
      return invalid_argument("http client: empty method");
    }
    req.target(beast::string_view(target.data(), target.size()));
    req.version(11);
    req.set(http::field::host, host + ":" + std::to_string(port));
    for (const auto& [name, value] : headers) req.insert(name, value);
    req.body() = std::string(body);
    req.prepare_payload();
    req.keep_alive(true);

    for (int attempt = 0; attempt < 2; ++attempt) {
      bool reused = stream.has_value();
      BATON_RETURN_IF_ERROR(connect(deadline));
      stream->expires_at(deadline);
      error_code ec = run([&](auto handler) { http::async_write(*stream, req, handler); });
      parser.emplace();
      parser->body_limit(body_limit);
      if (req.method() == http::verb::head) parser->skip(true);
      if (!ec) {
        ec = run([&](auto handler) { http::async_read_header(*stream, buffer, *parser, handler); });
      }
      if (!ec) return Status::ok();
      close();
      bool stale = reused && ec != beast::error::timeout && ec != http::error::body_limit;
      if (!stale || attempt == 1) return from_error(ec, "request " + std::string(target));
    }
    return unavailable("http client: unreachable");
  }
};

HttpClient::HttpClient(std::string host, uint16_t port) : impl_(std::make_unique<Impl>()) {
  impl_->host = std::move(host);
  impl_->port = port;
}

HttpClient::~HttpClient() { impl_->close(); }

void HttpClient::close() { impl_->close(); }

bool HttpClient::connected() const { return impl_->stream.has_value(); }

Result<HttpResponse> HttpClient::request(std::string_view method, std::string_view target,
                                         std::string_view body, const Headers& headers,
                                         HttpDeadline deadline) {
  std::optional<http::response_parser<http::string_body>> parser;
  BATON_RETURN_IF_ERROR(impl_->send_and_read_header(method, target, body, headers, deadline, parser,
                                                    max_body_bytes_));
  error_code ec;
  if (!parser->is_done()) {
    ec = impl_->run(
        [&](auto handler) { http::async_read(*impl_->stream, impl_->buffer, *parser, handler); });
  }
  if (ec) {
    impl_->close();
    return from_error(ec, "reading the response to " + std::string(target));
  }
  auto msg = parser->release();
  HttpResponse response;
  response.status = static_cast<int>(msg.result_int());
  copy_headers(msg, response.headers);
  response.body = std::move(msg.body());
  if (!msg.keep_alive()) impl_->close();
  return response;
}

Result<HttpResponse> HttpClient::stream(std::string_view method, std::string_view target,
                                        std::string_view body, const Headers& headers,
                                        HttpDeadline deadline, const BodyChunkCallback& on_chunk) {
  std::optional<http::response_parser<http::buffer_body>> parser;
  BATON_RETURN_IF_ERROR(impl_->send_and_read_header(method, target, body, headers, deadline, parser,
                                                    std::numeric_limits<size_t>::max()));
  HttpResponse response;
  response.status = static_cast<int>(parser->get().result_int());
  copy_headers(parser->get(), response.headers);
  std::string piece(kStreamBuffer, '\0');
  while (!parser->is_done()) {
    auto& b = parser->get().body();
    b.data = piece.data();
    b.size = piece.size();
    error_code ec = impl_->run([&](auto handler) {
      http::async_read_some(*impl_->stream, impl_->buffer, *parser, handler);
    });
    if (ec == http::error::need_buffer) ec = {};
    if (ec) {
      impl_->close();
      return from_error(ec, "reading the stream of " + std::string(target));
    }
    size_t n = piece.size() - parser->get().body().size;
    if (n > 0 && on_chunk && !on_chunk(std::string_view(piece.data(), n))) {
      impl_->close();
      return response;
    }
  }
  if (!parser->get().keep_alive()) impl_->close();
  return response;
}

Result<HttpResponse> http_request(const std::string& host, uint16_t port, std::string_view method,
                                  std::string_view target, std::string_view body,
                                  const Headers& headers, HttpDeadline deadline) {
  HttpClient client(host, port);
  return client.request(method, target, body, headers, deadline);
}

Result<HttpResponse> http_stream(const std::string& host, uint16_t port, std::string_view method,
                                 std::string_view target, std::string_view body,
                                 const Headers& headers, HttpDeadline deadline,
                                 const BodyChunkCallback& on_chunk) {
  HttpClient client(host, port);
  return client.stream(method, target, body, headers, deadline, on_chunk);
}

}  // namespace baton::protocol
