#pragma once

// The gateway's asynchronous HTTP/1.1 client to its upstream instances.
//
// UpstreamClient owns an io_context and its threads; every call, timer and
// pool runs there. UpstreamPool keeps idle keep-alive connections to one
// host:port and starts calls on them. A call delivers the response as it
// arrives: the status line and headers once, then each piece of the body as
// soon as it is read (chunked framing removed; never buffered whole), then
// exactly one on_done. Beast stays out of this header.
//
// Thread-safety: everything here is thread-safe. Handlers of one call run one
// at a time, in order, on an upstream thread, and must not block.
//
// Failure reporting (UpstreamResult): `status` is ok when the whole response
// was read; kUnavailable when the connection could not be made or broke
// before any response byte (the request may be retried elsewhere: `retryable`
// is true when no response byte arrived), kDeadlineExceeded for a timeout,
// kBadGateway for a malformed response or a connection lost mid-response,
// kCancelled after cancel().

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/http_types.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace baton::gateway {

struct UpstreamRequest {
  std::string method = "POST";
  std::string target;
  protocol::Headers headers;  // Host and Content-Length are added
  std::string body;
  std::chrono::milliseconds connect_timeout{2000};
  std::chrono::milliseconds first_byte_timeout{600000};  // request written -> headers read
  std::chrono::milliseconds idle_timeout{600000};        // between body pieces
};

struct UpstreamResult {
  Status status;
  bool retryable = false;  // failed before any response byte
};

struct UpstreamHandlers {
  // The response's status and headers (hop-by-hop ones included).
  std::function<void(int status, protocol::Headers headers)> on_headers;
  // One piece of body; return false to stop (the call ends as cancelled).
  std::function<bool(std::string_view piece)> on_data;
  // Exactly once, last.
  std::function<void(const UpstreamResult& result)> on_done;
};

// A call in progress. cancel() closes its connection (which is then not
// reused) and ends it with kCancelled unless it already ended. Idempotent.
class UpstreamCall {
 public:
  virtual ~UpstreamCall() = default;
  virtual void cancel() = 0;
};

class UpstreamPool {
 public:
  virtual ~UpstreamPool() = default;
  // Starts a call; handlers run later on an upstream thread, never inside
  // start().
  virtual std::shared_ptr<UpstreamCall> start(UpstreamRequest request,
                                              UpstreamHandlers handlers) = 0;
  virtual size_t idle_connections() const = 0;
  // Closes idle connections (used when an instance leaves the cluster).
  virtual void close_idle() = 0;
  virtual const std::string& host() const = 0;
  virtual uint16_t port() const = 0;
};

class UpstreamClient {
 public:
  // Starts `threads` I/O threads (at least 1) of its own.
  explicit UpstreamClient(int threads, size_t max_idle_per_pool = 256);
  // Runs on io_contexts that someone else runs (one thread each, e.g. the
  // gateway's single-threaded front servers). A call started on a thread
  // running one of them stays on it, so relaying needs no thread hop.
  UpstreamClient(std::vector<std::shared_ptr<boost::asio::io_context>> loops,
                 size_t max_idle_per_pool = 256);
  ~UpstreamClient();  // stop()
  UpstreamClient(const UpstreamClient&) = delete;
  UpstreamClient& operator=(const UpstreamClient&) = delete;

  std::shared_ptr<UpstreamPool> make_pool(std::string host, uint16_t port);

  // Runs fn on an upstream thread after `delay` (0: soon). Dropped silently
  // once stop() has begun.
  void run_after(std::chrono::nanoseconds delay, std::function<void()> fn);

  // Cancels every call in flight and every pending run_after, closes idle
  // connections; later calls fail at once (kUnavailable). Thread-safe,
  // idempotent; returns without waiting for the cancellations to run.
  void shutdown();

  // shutdown(), then joins the threads this client started (none for
  // external loops). Must not run on an upstream thread. Idempotent.
  void stop();

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace baton::gateway
