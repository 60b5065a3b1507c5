#pragma once

// OpenAI-compatible request bodies, parsed and validated: POST
// /v1/completions and POST /v1/chat/completions as vLLM's OpenAI server
// accepts them. Pure functions of the body text; no I/O, nothing throws.
//
// Every rejection is kInvalidArgument (HTTP 400) whose message starts with
// the offending parameter's path and ": ", e.g.
//   "temperature: must be between 0 and 2, got 3.5"
//   "messages[1].content[0]: image_url parts are not supported; ..."
// so error_body() (openai_error.h) can fill the error's "param".
//
// Conventions, as OpenAI's API has them:
// - Unknown fields are ignored. A field sent as JSON null counts as absent.
// - An integer field accepts a float with no fractional part (3.0).
// - Features this server does not implement are rejected, never silently
//   dropped: echo=true, suffix, best_of != n, non-empty logit_bias,
//   response_format other than "text", vLLM's guided_* / structured_outputs,
//   prompt_logprobs, tool_choice "required" or a named function.
//
// Ranges (inclusive unless noted); vLLM accepts some wider, these are the
// OpenAI API's documented ranges, which keep sampling meaningful:
//   temperature [0, 2]; top_p (0, 1]; top_k -1 (off) or >= 1; min_p [0, 1];
//   n [1, 16]; presence_penalty, frequency_penalty [-2, 2];
//   repetition_penalty (0, 2]; max_tokens >= 1; min_tokens >= 0 and <=
//   max_tokens; logprobs (completions) and top_logprobs (chat) [0, 20];
//   seed any signed 64-bit integer; stop at most 16 non-empty strings;
//   token ids in [0, 2^31 - 1].

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace baton::protocol {

inline constexpr int kMaxN = 16;
inline constexpr int kMaxLogprobs = 20;
inline constexpr int kMaxStopStrings = 16;
// Bodies nested deeper than this are refused before parsing (the JSON parser
// recurses; a body of a million '[' must not overflow the stack).
inline constexpr int kMaxJsonDepth = 128;

// Generation parameters common to both endpoints. Absent means "not given":
// the server applies its defaults (e.g. max_tokens up to the context length).
struct SamplingFields {
  // Completions: max_tokens. Chat: max_completion_tokens, else the deprecated
  // max_tokens.
  std::optional<int32_t> max_tokens;
  std::optional<float> temperature;
  std::optional<float> top_p;
  std::optional<int32_t> top_k;
  std::optional<float> min_p;
  std::optional<int32_t> n;
  // Stop strings, in the order given; a single string becomes one entry.
  // Empty: none.
  std::vector<std::string> stop;
  // Empty: none.
  std::vector<int32_t> stop_token_ids;
  std::optional<int64_t> seed;
  std::optional<float> presence_penalty;
  std::optional<float> frequency_penalty;
  std::optional<float> repetition_penalty;
  // Number of top alternatives to report per token; absent: no logprobs.
  // Completions: the integer `logprobs`. Chat: `top_logprobs` (0 when not
  // given) when `logprobs` is true, absent otherwise.
  std::optional<int32_t> logprobs;
  std::optional<bool> ignore_eos;
  std::optional<int32_t> min_tokens;
  std::optional<bool> include_stop_str_in_output;
  std::optional<bool> skip_special_tokens;
  std::optional<std::string> user;
  // Only ever equal to n (or absent); anything else is rejected.
  std::optional<int32_t> best_of;
};

// One prompt of a completion request: text or token ids, never empty.
struct Prompt {
  enum class Kind { kText, kTokens };
  Kind kind = Kind::kText;
  std::string text;                // kText
  std::vector<int32_t> token_ids;  // kTokens

  bool is_text() const { return kind == Kind::kText; }
  static Prompt from_text(std::string t) { return Prompt{Kind::kText, std::move(t), {}}; }
  static Prompt from_tokens(std::vector<int32_t> ids) {
    return Prompt{Kind::kTokens, {}, std::move(ids)};
  }
};

struct CompletionRequest {
  std::string model;
  // `prompt` as a string, a list of strings, a list of token ids or a list of
  // lists of token ids; one entry per prompt (the response has n choices per
  // prompt, prompt i owning choice indices [i*n, (i+1)*n)).
  std::vector<Prompt> prompts;
  SamplingFields params;
  bool stream = false;
  // stream_options.include_usage: end the stream with a usage-only chunk.
  bool include_usage = false;
};

struct ChatRequest {
  std::string model;
  // The messages as sent, key order kept for the chat template. Validated:
  // a non-empty array of objects; role one of system, developer, user,
  // assistant, tool, where "developer" (OpenAI's newer name for system
  // instructions) is rewritten to "system" because chat templates know only
  // the latter; content a string, a non-empty list of text parts (kept as a
  // list: templates may iterate it), or null/absent for an assistant message
  // with tool_calls. Image, audio, video and file parts are rejected.
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  // Function tools as sent (key order kept for the template's tojson); absent
  // when not given or empty.
  std::optional<nlohmann::ordered_json> tools;
  SamplingFields params;
  bool stream = false;
  bool include_usage = false;
  bool add_generation_prompt = true;
  // Continue the last (assistant) message instead of starting a new one;
  // excludes add_generation_prompt.
  bool continue_final_message = false;
  // Extra template variables (an object; empty when not given).
  nlohmann::ordered_json chat_template_kwargs = nlohmann::ordered_json::object();
};

Result<CompletionRequest> parse_completion_request(std::string_view body);
Result<ChatRequest> parse_chat_request(std::string_view body);

// Parses a request body as an ordered JSON object: malformed JSON, a body
// nested deeper than kMaxJsonDepth, or anything but an object is
// kInvalidArgument. Exposed for callers that only peek at a body (the
// gateway reads "model" and "stream" without validating the rest).
Result<nlohmann::ordered_json> parse_json_object(std::string_view body);

}  // namespace baton::protocol
