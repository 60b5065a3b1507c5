#pragma once

// A blocking P/D coordinator: drives one request through a decode and a
// prefill instance exactly as protocol/pd.h describes, with the blocking
// HttpClient. For tests, tools and benchmarks; the gateway coordinates the
// same protocol asynchronously and adds forwarding across several prefill
// instances.
//
// Thread-safety: run_pd_request is reentrant; each call uses its own
// connections and one helper thread for the prefill stream.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "protocol/pd.h"

namespace baton::protocol::pd {

struct PdEndpoint {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string address() const { return host + ":" + std::to_string(port); }
};

struct PdOutcome {
  int decode_status = 0;  // HTTP status of the decode reservation
  std::optional<Ticket> ticket;
  std::string body;                 // non-stream response, or the decode's error body
  std::vector<std::string> chunks;  // stream: every data payload, [DONE] excluded
  std::optional<Status> error;      // an error event of the decode stream
  // Prefill stream events in order; "rejected" when it refused (status in
  // prefill_status), the error's message for an error event.
  std::vector<std::string> prefill_events;
  int prefill_status = 0;
  // Client-observed, from the decode request's start: the first data chunk
  // (stream) and the end of the response.
  double ttft_s = -1;
  double e2e_s = -1;
};

struct PdRequestOptions {
  std::string cluster_token;
  int64_t lease_ms = 30000;
  std::chrono::milliseconds timeout{60000};  // bounds each HTTP exchange
  // Runs once the ticket is known, before the prefill request; it may
  // rewrite what the prefill instance is sent (tests use it to inject
  // faults, e.g. a proxy in front of the KV endpoint).
  std::function<void(Ticket&)> on_ticket;
  bool send_prefill = true;  // false: reserve and wait (lease tests)
};

// kUnavailable and friends only for transport failures of the decode
// request; protocol-level failures are reported in the outcome.
Result<PdOutcome> run_pd_request(const PdEndpoint& prefill, const PdEndpoint& decode, Api api,
                                 const Json& body, const PdRequestOptions& options);

}  // namespace baton::protocol::pd
