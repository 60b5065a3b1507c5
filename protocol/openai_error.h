#pragma once

// OpenAI-style error bodies for a Status, as vLLM's OpenAI server writes them:
//
//   {"error": {"message": "temperature: must be between 0 and 2, got 3.5",
//              "type": "invalid_request_error", "param": "temperature",
//              "code": 400}}
//
// `code` is the HTTP status as an integer (vLLM's convention). `param` is
// the message's leading field path when it has one (see error_param), so the
// request parsers of openai_request.h need no side channel to name the
// offending parameter. Pure functions; nothing throws (invalid UTF-8 in a
// message is replaced, not fatal).

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace baton::protocol {

// The error "type" for an HTTP status:
//   401 authentication_error, 403 permission_error, 429 rate_limit_error,
//   503 server_overloaded, other 4xx (input: 400, 404, 408, 409, 413, 422,
//   499) invalid_request_error, every other status server_error.
std::string_view openai_error_type(int http_status);

// The field path a message starts with: the text before the first ": " when
// it is a path of letters, digits, '_', '.', '[' and ']' starting with a
// letter or '_' ("messages[0].content", "top_p"); nullopt otherwise ("invalid
// JSON: ...", "line 3: ...").
std::optional<std::string> error_param(std::string_view message);

// {"error": {"message", "type", "param", "code"}} for a non-ok status; an ok
// status (a caller bug) reads as a 500. param is filled only for 4xx
// statuses, so a server-side message that happens to start with "word: "
// is never blamed on a request field.
nlohmann::ordered_json error_object(const Status& status);

// error_object() serialised compactly: the body of an error response.
std::string error_body(const Status& status);

// The error as one Server-Sent Event, "data: <error_body>\n\n", for a stream
// that fails after its headers went out; the caller then ends the stream with
// "data: [DONE]\n\n" as vLLM does.
std::string error_sse_event(const Status& status);

}  // namespace baton::protocol
