#pragma once

// The load generator of `baton bench`: sends a workload to one endpoint and
// records what every request saw.
//
// Open loop: request i is due at its arrival_s after the run's start, whatever
// the server is doing. With max_concurrency > 0 a due request waits until
// fewer than that many are in flight (vLLM's semaphore); with an infinite
// request rate every request is due at once, so max_concurrency alone makes a
// closed loop of that many clients.
//
// Multi-turn conversations (specs with a conversation id) run as chats do:
// turn k is sent at its arrival time or when turn k-1 has ended, whichever
// is later, and its prompt is the real history (the earlier prompts and the
// answers the server streamed) plus the turn's new words, so the server's
// prefix cache sees what it would see in production. With the completions
// API the history is one prompt; with the chat API, alternating messages.
//
// Warm-up requests (the first num_warmups specs of the workload, sent again)
// run and finish before the timed run starts; they are not recorded.
//
// run_benchmark() blocks the calling thread, which runs the client's
// io_context; everything it drives happens on that thread.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bench/serving/client.h"
#include "bench/serving/metrics.h"
#include "bench/serving/workload.h"
#include "common/clock.h"
#include "protocol/http_types.h"

namespace baton::bench {

// The header that tags a request with its scenario (the gateway's scenario
// groups read it).
inline constexpr const char* kScenarioHeader = "x-baton-scenario";

struct RunOptions {
  Endpoint endpoint;
  Api api = Api::kCompletions;
  std::string model;
  bool ignore_eos = true;
  std::optional<double> temperature;  // sent only when set
  int max_concurrency = 0;            // 0: no limit
  int num_warmups = 0;
  uint64_t seed = 0;                                            // of the prompt text
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};  // per request
  protocol::Headers headers;                                    // added to every request
};

struct RunResult {
  std::vector<RequestRecord> records;  // one per spec, in spec order
  double duration_s = 0;               // first due request to the last ending
  int64_t peak_in_flight = 0;          // most requests in flight at once
  std::string started_at;              // wall clock, ISO 8601 UTC with milliseconds
};

// One message of a conversation ("user" or "assistant").
struct ChatMessage {
  std::string role;
  std::string content;
};

// The JSON body of one streaming request: chat messages as they are, or for
// the completions API their contents joined by spaces as the prompt.
std::string request_body(const std::vector<ChatMessage>& messages, int max_tokens,
                         const RunOptions& options);
// The body of a single-turn request for `spec` (one user message).
std::string request_body(const RequestSpec& spec, const RunOptions& options);

// The last `words` words of prompt_text(spec, seed): what a later turn of a
// conversation adds to its history.
std::string new_message_text(const RequestSpec& spec, int words, uint64_t seed);

// Runs the workload. Errors only for a bad setup (unresolvable host); requests
// that fail are records with success = false.
Result<RunResult> run_benchmark(const std::vector<RequestSpec>& specs, const RunOptions& options,
                                const Clock& clock);

// The model to ask for when none was given: the first id of GET /v1/models
// (at `endpoint`'s host, with its path's prefix before "/v1/").
Result<std::string> discover_model(const Endpoint& endpoint, std::chrono::milliseconds timeout);

}  // namespace baton::bench
