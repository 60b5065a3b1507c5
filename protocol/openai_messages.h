#pragma once

// Validation of a chat request's `messages` and `tools` (the rules are listed
// on ChatRequest in openai_request.h). Errors are kInvalidArgument with the
// path of the offending value first ("messages[2].role: ..."). Nothing throws.

#include <nlohmann/json.hpp>

#include "common/status.h"

namespace baton::protocol {

// Validates `messages` in place; the only change made is "developer" roles
// becoming "system".
Status validate_chat_messages(nlohmann::ordered_json& messages);

// Validates `tools`: an array of {"type": "function", "function": {"name":
// non-empty string, "description"?: string, "parameters"?: object}}.
Status validate_tools(const nlohmann::ordered_json& tools);

// Validates `tool_choice`: "none" and "auto" (or an absent/null value) are
// accepted; "required" and a named function need tool-call parsing, which
// this server does not do, and are rejected.
Status validate_tool_choice(const nlohmann::ordered_json& tool_choice);

}  // namespace baton::protocol
