#pragma once

// HttpServer: the asynchronous HTTP/1.1 server under Baton's instance server
// and gateway (Boost.Asio/Beast, kept out of this header).
//
// Model: one io_context run by `io_threads` threads; each connection lives on
// its own strand, so a connection's callbacks never run concurrently. A
// connection handles its requests strictly in order: the next request is read
// only after the previous response has been written completely (pipelined
// bytes wait in the buffer).
//
// Limits and timeouts (HttpServerOptions) are enforced by the server itself,
// which answers with an OpenAI-style JSON error body:
//   malformed request -> 400, body over max_body_bytes -> 413 (decided from
//   Content-Length before any body byte is read), headers over
//   max_header_bytes/max_header_count -> 431, Transfer-Encoding other than
//   "chunked" -> 501, headers not complete within header_timeout or body not
//   complete within body_timeout -> 408; connections over max_connections ->
//   503 with Retry-After; connections from one client address over
//   max_connections_per_client -> 429 with Retry-After. All of these close
//   the connection.
// Idle keep-alive connections close quietly after idle_timeout; a write that
// does not complete within write_timeout closes the connection.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "common/status.h"
#include "protocol/http_types.h"

namespace boost::asio {
class io_context;
}  // namespace boost::asio

namespace baton::protocol {

// How a handler answers one request. Exactly one response per request: either
// send(), or start_stream() + write()* + end_stream().
//
// Held by shared_ptr; every method is thread-safe and may be called from any
// thread, during or after the handler call. Calls only enqueue work on the
// connection; none blocks. Calls after the response completed, or on a
// connection that is gone, are ignored.
//
// An abstract interface so that handlers can be tested with a fake writer;
// the server's implementation adds two guarantees:
//  - if the last reference is dropped without a response, the client gets a
//    500 (no client waits forever on a forgetful handler);
//  - if it is dropped in the middle of a stream without end_stream(), the
//    connection is closed so the client sees a truncated (failed) response.
class ResponseWriter {
 public:
  virtual ~ResponseWriter() = default;

  // One complete response with Content-Length. `extra` headers are added as
  // given (CR/LF are stripped from names and values).
  virtual void send(int status, std::string content_type, std::string body, Headers extra = {}) = 0;

  // Starts a streamed response (chunked transfer encoding; for an HTTP/1.0
  // client the body ends with the connection instead). False when a response
  // was already started or the client is gone.
  virtual bool start_stream(int status, std::string content_type, Headers extra = {}) = 0;

  // Queues one piece of the stream (empty pieces are skipped). False once the
  // client is gone, the stream was not started or already ended, or the
  // connection's output backlog (bytes queued but not yet written) went over
  // its bound: then the connection is closed, as the client is not keeping up.
  virtual bool write(std::string chunk) = 0;

  // Ends the stream (the terminal chunk). Idempotent.
  virtual void end_stream() = 0;

  // True once the client disconnected or the connection was closed before
  // this response completed.
  virtual bool closed() const = 0;

  // Registers a cancellation hook: `cb` runs once if the connection goes away
  // before this response completes (client disconnect, write failure or
  // timeout, backlog overflow, server stop); at once on the calling thread if
  // that already happened; never if the response completes. It runs on an
  // I/O thread and must not block.
  virtual void on_close(std::function<void()> cb) = 0;

  // send() of an OpenAI-style JSON error for `status` (its http() code).
  void send_error(const Status& status);
  // send() of an OpenAI-style JSON error with an explicit HTTP status.
  void send_error(int http_status, std::string_view message, std::string_view code = {});
};

// Called once per request on an I/O thread (the connection's strand). Must
// not block: hand long work to another thread and answer through the writer
// later. Must not throw (an escaping exception is logged and answered 500).
using Handler = std::function<void(HttpRequest, std::shared_ptr<ResponseWriter>)>;

class ClientConnectionCounts;

struct HttpServerOptions {
  std::string host = "127.0.0.1";  // address or name to bind
  uint16_t port = 0;               // 0: any free port, read it back with port()
  int io_threads = 2;
  size_t max_body_bytes = 8 << 20;
  size_t max_header_bytes = 16 << 10;  // request line + headers
  size_t max_header_count = 100;
  int max_connections = 1024;  // open connections; more get 503
  // Open connections from one remote address; more get 429. 0: no limit (the
  // default: a gateway, or clients behind one NAT, share an address).
  int max_connections_per_client = 0;
  // Where those are counted; servers sharing a port (reuse_port) share one so
  // that the limit holds across them. Null: the server makes its own.
  std::shared_ptr<ClientConnectionCounts> client_counts;
  size_t max_output_backlog = 8 << 20;              // per connection, see write()
  std::chrono::seconds retry_after{1};              // Retry-After of the 503 above
  std::chrono::milliseconds header_timeout{10000};  // first byte to end of headers*
  std::chrono::milliseconds body_timeout{30000};    // end of headers to end of body
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive wait for a next request
  std::chrono::milliseconds write_timeout{30000};   // each write to the socket
  // * for a new connection, counted from the accept.
  // SO_REUSEPORT: several servers (e.g. one single-threaded server per core)
  // may listen on the same port; the kernel spreads connections over them.
  bool reuse_port = false;
};

// Open connections per client address. Thread-safe.
class ClientConnectionCounts {
 public:
  // Counts one more connection from `client` unless it already has `limit`.
  bool try_add(const std::string& client, int limit);
  void remove(const std::string& client);
  int count(const std::string& client) const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, int> counts_;
};

class HttpServer {
 public:
  // Binds, listens and starts the I/O threads. Errors: kInvalidArgument for
  // bad options (no handler, io_threads < 1, unresolvable host), kUnavailable
  // when the address cannot be bound (e.g. the port is taken).
  static Result<std::unique_ptr<HttpServer>> start(HttpServerOptions options, Handler handler);

  ~HttpServer();  // stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The bound port. Thread-safe.
  uint16_t port() const;

  // Closes the listener and every connection (firing their on_close hooks),
  // then joins the I/O threads. Idempotent and thread-safe, but must not be
  // called from an I/O thread (a handler or an on_close hook): that is a
  // programmer error. Writers still held afterwards are inert.
  void stop();

  // Connections currently open (not counting ones being refused with 503).
  // Thread-safe.
  size_t active_connections() const;

  // The io_context the I/O threads run, for a caller that wants its own
  // sockets and timers served by the same threads (the gateway keeps each
  // upstream connection on the thread of its client connection). The pointer
  // keeps the context alive; after stop() nothing runs it any more, and work
  // the caller still has queued there delays stop() (up to its grace period).
  std::shared_ptr<boost::asio::io_context> io_context() const;

  class Impl;

 private:
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::protocol
