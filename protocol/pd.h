#pragma once

// The prefill/decode (P/D) protocol between a coordinator (the gateway) and
// the instances, and between a prefill and a decode instance (DESIGN.md §3).
// docs/pd-protocol.md walks through it with examples; this header is the
// reference for every message.
//
// All P/D endpoints live under /internal/ and require the cluster token in
// the x-baton-cluster-token header (401 without it, 403 when wrong). A
// gateway never forwards a client's request to a path under /internal/.
//
// One disaggregated request, as the coordinator drives it:
//
//  1. POST /internal/pd/decode to the decode instance D, body DecodeRequest.
//     D validates and tokenizes the client's OpenAI body exactly as its
//     public route would, reserves KV room for every prompt (taking any prefix
//     it already holds from its prefix cache), posts one KV receive per prompt
//     and answers 200 with an SSE stream whose first event is
//       event: ticket      data: Ticket
//     followed by the client's response, as D's public route would write it:
//     for a streaming request the OpenAI chunks ("data: {...}", then
//     "data: [DONE]"); for a non-streaming one a single
//       event: response    data: the whole OpenAI JSON response
//     Failures after the ticket arrive as
//       event: error       data: {"error": {...OpenAI error...}, "status": <http status>}
//     and end the stream. Errors before the ticket are ordinary HTTP errors
//     (400 bad request, 503 kv_full with Retry-After when no KV room).
//
//  2. POST /internal/pd/prefill to a prefill instance P, body PrefillRequest
//     (the same client body plus the ticket and D's internal address).
//     P answers at once: either a rejection (429 or 503, OpenAI error body
//     whose error.code is the reason, Retry-After and x-baton-reject-reason
//     headers) — the coordinator then forwards the same ticket to another
//     prefill instance — or 200 with an SSE stream:
//       event: accepted    data: {}
//       event: first_token data: FirstTokens (also sent to D, see 3)
//       event: done        data: PrefillDone (KV delivered and verified)
//     or, instead of done, event: error as above.
//
//  3. P runs the prompt, samples the first token of every sequence, POSTs
//     FirstTokens to D's /internal/pd/first_token (D streams them to the
//     client at once, before the KV has arrived) and sends the KV of tokens
//     [cached_tokens, prompt length) of each prompt to D's kv_endpoint as one
//     contiguous buffer (kvtransfer/kv_layout.h), keyed by the ticket's
//     transfer id. D scatters it into its blocks and generates the rest.
//
//  4. Either side can end a transfer: POST /internal/pd/abort with
//     AbortRequest (to D: drop the reservation and end the client stream with
//     an error; to P: stop the prefill and the send). Closing the HTTP stream
//     of step 1 or 2 aborts that side's part too. A reservation whose KV has
//     not arrived by the ticket's lease is released and the stream ends with
//     error code kv_lease_expired; P never holds exported KV past the lease.
//
// Message types are plain values; to_json/parse_* are pure and thread-safe.
// parse_* return kInvalidArgument naming the offending field.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "protocol/openai_json_reader.h"

namespace baton::protocol::pd {

using Json = OrderedJson;

inline constexpr std::string_view kTokenHeader = "x-baton-cluster-token";
inline constexpr std::string_view kInternalPrefix = "/internal/";
inline constexpr std::string_view kDecodePath = "/internal/pd/decode";
inline constexpr std::string_view kPrefillPath = "/internal/pd/prefill";
inline constexpr std::string_view kFirstTokenPath = "/internal/pd/first_token";
inline constexpr std::string_view kAbortPath = "/internal/pd/abort";
// Role changes (docs/controller.md): GET the role and state, POST
// {"role", "drain_timeout_ms", "reason"} to drain and switch in place.
inline constexpr std::string_view kRolePath = "/internal/role";

// SSE event names of the P/D streams.
inline constexpr std::string_view kEventTicket = "ticket";
inline constexpr std::string_view kEventResponse = "response";
inline constexpr std::string_view kEventError = "error";
inline constexpr std::string_view kEventAccepted = "accepted";
inline constexpr std::string_view kEventFirstToken = "first_token";
inline constexpr std::string_view kEventDone = "done";

// What an instance does (DESIGN.md §3): both phases, or one side of
// disaggregated serving. The instance, the gateway and the controller share
// this one definition.
enum class Role { kMixed, kPrefill, kDecode };
std::string_view role_name(Role r);  // "mixed", "prefill", "decode"
// Accepts the names above; kInvalidArgument naming the value otherwise.
Result<Role> parse_role(std::string_view name);

// Which public route the client called.
enum class Api { kCompletions, kChatCompletions };
std::string_view api_name(Api a);  // "completions" / "chat.completions"
// The public path of an API: /v1/completions or /v1/chat/completions.
std::string_view api_path(Api a);
Result<Api> parse_api(std::string_view name);

// Shape of the KV both sides must agree on (kvtransfer/kv_layout.h).
struct KvShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t dtype_size = 0;
  bool operator==(const KvShape&) const = default;
};

// Coordinator -> D.
struct DecodeRequest {
  Api api = Api::kCompletions;
  Json body;                 // the client's OpenAI request body, as sent
  int64_t lease_ms = 30000;  // how long D keeps the reservation waiting for KV
};

// One prompt's transfer (a completions call may carry several prompts).
struct TicketEntry {
  uint64_t transfer_id = 0;
  std::vector<int32_t> prompt_token_ids;
  int32_t cached_tokens = 0;  // D already holds the KV of [0, cached_tokens)
  uint64_t seed = 0;          // the sampling seed both sides use
};

// D -> coordinator (first event of the decode stream), then -> P.
struct Ticket {
  std::string kv_endpoint;  // host:port of D's KV transport
  KvShape kv_shape;
  int64_t lease_ms = 0;  // remaining when issued
  std::vector<TicketEntry> entries;
};

// Coordinator -> P.
struct PrefillRequest {
  Api api = Api::kCompletions;
  Json body;
  Ticket ticket;
  std::string decode_address;  // host:port of D's HTTP server (for first_token/abort)
};

// The first sampled token of one sequence.
struct FirstToken {
  int32_t prompt_index = 0;  // which entry of the ticket
  int32_t seq_index = 0;     // 0..n-1
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top_logprobs;  // when logprobs were asked
  // "" when the sequence goes on on D; "stop" or "length" when this token
  // already ends it (EOS, a stop token id, max_tokens).
  std::string finish_reason;
};

// P -> D (and, as an event, P -> coordinator).
struct FirstTokens {
  uint64_t transfer_id = 0;
  std::vector<FirstToken> tokens;  // every sequence of that prompt
  bool kv_follows = true;          // false when every sequence already ended
  double queue_s = 0;              // P's queueing before the prompt started
  double prefill_s = 0;            // P's prefill, start to first token
};

// P -> coordinator, last event of the prefill stream.
struct PrefillDone {
  uint64_t kv_bytes = 0;
  double transfer_s = 0;  // first KV byte submitted to D's verified ack
};

// Either direction.
struct AbortRequest {
  uint64_t transfer_id = 0;
  std::string reason;
};

Json to_json(const KvShape& m);
Json to_json(const DecodeRequest& m);
Json to_json(const TicketEntry& m);
Json to_json(const Ticket& m);
Json to_json(const PrefillRequest& m);
Json to_json(const FirstToken& m);
Json to_json(const FirstTokens& m);
Json to_json(const PrefillDone& m);
Json to_json(const AbortRequest& m);

Result<KvShape> parse_kv_shape(const Json& j);
Result<DecodeRequest> parse_decode_request(const Json& j);
Result<Ticket> parse_ticket(const Json& j);
Result<PrefillRequest> parse_prefill_request(const Json& j);
Result<FirstTokens> parse_first_tokens(const Json& j);
Result<PrefillDone> parse_prefill_done(const Json& j);
Result<AbortRequest> parse_abort_request(const Json& j);

// The data of an "event: error": {"error": {...}, "status": http status}.
std::string error_event_data(const Status& s);
// The Status an error event describes (its HTTP status mapped back, and the
// error's message); kBadGateway when the data is not an error event.
Status parse_error_event(std::string_view data);

}  // namespace baton::protocol::pd
