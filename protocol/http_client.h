#pragma once

// HttpClient: a small blocking HTTP/1.1 client for tests, tools and health
// checks (the gateway's pooled asynchronous client is a different thing).
//
// Every call takes an absolute deadline (steady clock) that bounds the whole
// exchange: connect, write and read. One HttpClient keeps one keep-alive
// connection to one host:port and reopens it when needed. Not thread-safe:
// one call at a time per object; use one object per thread.
//
// Errors: kDeadlineExceeded when the deadline passes, kUnavailable when the
// server cannot be reached or drops the connection, kBadGateway for a
// malformed response, kInvalidArgument for a bad method or host.
// A response with any HTTP status (4xx/5xx included) is a success here.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "protocol/http_types.h"

namespace baton::protocol {

using HttpDeadline = std::chrono::steady_clock::time_point;

// A deadline `timeout` from now.
inline HttpDeadline deadline_in(std::chrono::milliseconds timeout) {
  return std::chrono::steady_clock::now() + timeout;
}

// Receives each piece of a streamed body as it arrives (chunked framing
// removed; piece boundaries are not those of the sender). Return false to
// stop reading: the connection is closed and the call returns the response
// received so far.
using BodyChunkCallback = std::function<bool(std::string_view)>;

class HttpClient {
 public:
  // No I/O until the first request.
  HttpClient(std::string host, uint16_t port);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One request; the whole body is read into HttpResponse::body (at most
  // max_body_bytes, 64 MiB by default, else kBadGateway). Host and
  // Content-Length are added; `headers` may add more (e.g. Content-Type).
  Result<HttpResponse> request(std::string_view method, std::string_view target,
                               std::string_view body, const Headers& headers,
                               HttpDeadline deadline);

  // Like request(), but the body goes to `on_chunk` as it arrives instead of
  // HttpResponse::body (which stays empty).
  Result<HttpResponse> stream(std::string_view method, std::string_view target,
                              std::string_view body, const Headers& headers, HttpDeadline deadline,
                              const BodyChunkCallback& on_chunk);

  // Closes the kept connection, if any.
  void close();
  // Whether a kept connection is open (as far as the client knows).
  bool connected() const;

  void set_max_body_bytes(size_t bytes) { max_body_bytes_ = bytes; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  size_t max_body_bytes_ = 64 << 20;
};

// One-shot helpers: a fresh connection per call.
Result<HttpResponse> http_request(const std::string& host, uint16_t port, std::string_view method,
                                  std::string_view target, std::string_view body,
                                  const Headers& headers, HttpDeadline deadline);
Result<HttpResponse> http_stream(const std::string& host, uint16_t port, std::string_view method,
                                 std::string_view target, std::string_view body,
                                 const Headers& headers, HttpDeadline deadline,
                                 const BodyChunkCallback& on_chunk);

}  // namespace baton::protocol
