#pragma once

// StreamingClient: the asynchronous OpenAI streaming client of `baton bench`
// (Boost.Asio/Beast, kept in the .cpp).
//
// It sends one POST per request to an OpenAI-compatible endpoint
// (/v1/completions or /v1/chat/completions) with "stream": true, and reads the
// SSE body as it arrives: every read is stamped with the injected monotonic
// clock the moment it completes, before the bytes are parsed, so parsing
// costs never show up in the latencies. TTFT, ITL and E2EL follow from the
// stamps of the chunks that carry a choice (see metrics.h); token
// counts come from the final `usage` chunk when the server sends one.
//
// Connections are kept alive and reused (at most one request at a time per
// connection, as HTTP/1.1 requires); a kept connection that the server has
// closed meanwhile is replaced once, transparently.
//
// Threading: the client lives on one io_context that exactly one thread runs;
// call send() from that thread (or before run() starts). Callbacks run there
// too. The client must outlive every request it started.

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "bench/serving/metrics.h"
#include "common/clock.h"
#include "common/status.h"
#include "protocol/http_types.h"

namespace baton::bench {

enum class Api { kCompletions, kChat };

// Parses "openai" (completions) or "openai-chat".
Result<Api> parse_backend(const std::string& name);

// Where requests go: "http://host:port" plus the endpoint's path.
struct Endpoint {
  std::string host;
  uint16_t port = 80;
  std::string path = "/v1/completions";
};

// Parses a base URL "http://host[:port][/prefix]"; `path` is appended to the
// prefix ("/v1/completions"). https is refused (kUnimplemented).
Result<Endpoint> parse_endpoint(const std::string& base_url, const std::string& path);

class StreamingClient {
 public:
  using Done = std::function<void(RequestRecord)>;

  // Resolves the host once (blocking); kUnavailable when it cannot be.
  static Result<std::unique_ptr<StreamingClient>> create(boost::asio::io_context& ioc,
                                                         Endpoint endpoint, Api api,
                                                         std::chrono::milliseconds timeout,
                                                         const Clock& clock);
  ~StreamingClient();

  // Sends one request with JSON `body` (and `headers` added) and calls `done`
  // once with what was seen; times in the record are seconds from `t0`.
  // `record` carries the caller's fields (id, lengths, scenario) through.
  void send(std::string body, protocol::Headers headers, Clock::TimePoint t0, RequestRecord record,
            Done done);

  // Connections open and idle, ready for the next request.
  size_t idle_connections() const;

  struct Impl;

 private:
  explicit StreamingClient(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

}  // namespace baton::bench
