#pragma once

// OpenAI-compatible response bodies, as vLLM's OpenAI server writes them:
// completions (object "text_completion"), chat completions ("chat.completion"
// and, streamed, "chat.completion.chunk") and the model list. The inputs are
// plain structs, so the server fills them without knowing JSON; the outputs
// are compact JSON text (no newlines), ready for a body or for one SSE event
// (sse_event() in sse.h).
//
// Streams: every chunk of one response carries the same id and created, from
// the same ResponseMeta. A chat stream opens with chat_role_chunk() per
// choice, carries chat_chunk()s, and with include_usage ends with
// chat_usage_chunk() (choices [] plus usage) before "data: [DONE]".
//
// Numbers: logprobs are written as JSON numbers, never NaN or infinities: a
// logprob of -inf (a token the sampler had masked) or NaN becomes -9999.0, as
// vLLM clamps it. Strings holding invalid UTF-8 (a token that is part of a
// character) are written with U+FFFD in its place; the byte values of a chat
// logprob's `bytes` keep the raw bytes. Pure functions; nothing throws.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace baton::protocol {

inline constexpr std::string_view kCompletionIdPrefix = "cmpl-";
inline constexpr std::string_view kChatCompletionIdPrefix = "chatcmpl-";
// The floor written for a logprob (vLLM's value).
inline constexpr double kMinLogprob = -9999.0;

// Why a choice ended. kNone is written as null (not finished yet).
enum class FinishReason { kNone, kStop, kLength, kToolCalls, kAbort };
// null (kNone, as std::nullopt), "stop", "length", "tool_calls", "abort".
std::optional<std::string_view> openai_finish_reason(FinishReason reason);

// What stopped a choice with reason stop, as vLLM's `stop_reason`: nothing
// (EOS, or not stopped: null), the stop string that matched, or the stop
// token id that matched.
using StopReason = std::variant<std::monostate, std::string, int32_t>;

// One generated token with its logprob and the most likely alternatives.
struct TokenLogprobInfo {
  std::string token;  // the token's text; may be part of a UTF-8 character
  float logprob = 0.0f;
  // Alternatives, most likely first (token text, logprob).
  std::vector<std::pair<std::string, float>> top;
};

struct Usage {
  int32_t prompt_tokens = 0;
  int32_t completion_tokens = 0;
  // Prompt tokens served from the prefix cache; written as
  // prompt_tokens_details.cached_tokens when set, left out otherwise.
  std::optional<int32_t> cached_tokens;
};

// What every body and chunk of one response shares.
struct ResponseMeta {
  std::string id;       // e.g. make_response_id(kCompletionIdPrefix, ...)
  int64_t created = 0;  // Unix time in seconds
  std::string model;
};

// prefix + 32 lower-case hex digits of hi then lo (the shape of vLLM's
// "cmpl-<uuid4 hex>"). The caller supplies the random bits.
std::string make_response_id(std::string_view prefix, uint64_t hi, uint64_t lo);

// A logprob as it is written: NaN and anything below kMinLogprob (-inf included) become
// kMinLogprob, +inf becomes 0.
double clamp_logprob(float logprob);

// ---- /v1/completions ------------------------------------------------------

struct CompletionChoice {
  int32_t index = 0;
  std::string text;
  // nullopt: "logprobs": null. Otherwise one entry per token of `text`,
  // written in the completions format {tokens, token_logprobs, top_logprobs,
  // text_offset}, where each top_logprobs entry is an object {token: logprob}
  // holding the chosen token first, then `top` (as OpenAI's legacy API does,
  // up to logprobs + 1 entries; a repeated token text keeps its first value).
  std::optional<std::vector<TokenLogprobInfo>> logprobs;
  // Where text_offset starts: the length in code points of the text this
  // choice already sent (earlier chunks of a stream); 0 for a whole response.
  // Offsets count code points, as Python's len() in vLLM does.
  int64_t text_offset = 0;
  FinishReason finish_reason = FinishReason::kNone;
  StopReason stop_reason;
};

// {"id", "object": "text_completion", "created", "model", "choices": [{index,
// text, logprobs, finish_reason, stop_reason}], "usage"}.
std::string completion_response(const ResponseMeta& meta,
                                const std::vector<CompletionChoice>& choices, const Usage& usage);
// One streamed chunk: the same shape with one choice; "usage" only when
// given (vLLM's continuous usage stats), left out otherwise.
std::string completion_chunk(const ResponseMeta& meta, const CompletionChoice& choice,
                             const std::optional<Usage>& usage = std::nullopt);
// The last chunk of a stream with include_usage: "choices": [] and usage.
std::string completion_usage_chunk(const ResponseMeta& meta, const Usage& usage);

// ---- /v1/chat/completions -------------------------------------------------

struct ChatChoice {
  int32_t index = 0;
  std::string content;
  // nullopt: "logprobs": null. Otherwise {"content": [{token, logprob, bytes,
  // top_logprobs: [{token, logprob, bytes}]}]}, top_logprobs from `top`.
  std::optional<std::vector<TokenLogprobInfo>> logprobs;
  FinishReason finish_reason = FinishReason::kNone;
  StopReason stop_reason;
};

// {"id", "object": "chat.completion", "created", "model", "choices":
// [{index, message: {role: "assistant", content}, logprobs, finish_reason,
// stop_reason}], "usage"}.
std::string chat_completion_response(const ResponseMeta& meta,
                                     const std::vector<ChatChoice>& choices, const Usage& usage);

struct ChatDelta {
  int32_t index = 0;
  // Write "role": "assistant" in the delta (the first chunk of a choice).
  bool role = false;
  // nullopt: no "content" key in the delta (e.g. a chunk only finishing).
  std::optional<std::string> content;
  std::optional<std::vector<TokenLogprobInfo>> logprobs;
  FinishReason finish_reason = FinishReason::kNone;
  // Written only when finish_reason is set.
  StopReason stop_reason;
};

// {"id", "object": "chat.completion.chunk", "created", "model", "choices":
// [{index, delta: {role?, content?}, logprobs, finish_reason}]} plus
// "stop_reason" in a finishing choice and "usage" only when given.
std::string chat_chunk(const ResponseMeta& meta, const ChatDelta& delta,
                       const std::optional<Usage>& usage = std::nullopt);
// The opening chunk of choice `index`: delta {role: "assistant", content: ""}.
std::string chat_role_chunk(const ResponseMeta& meta, int32_t index);
// The last chunk of a stream with include_usage: "choices": [] and usage.
std::string chat_usage_chunk(const ResponseMeta& meta, const Usage& usage);

// ---- /v1/models -----------------------------------------------------------

struct ModelCard {
  std::string id;
  int64_t created = 0;  // Unix seconds
  int32_t max_model_len = 0;
  std::string owned_by = "baton";
};

// {"id", "object": "model", "created", "owned_by", "max_model_len"}: the body
// of GET /v1/models/{id}.
std::string model_card(const ModelCard& card);
// {"object": "list", "data": [model cards]}: the body of GET /v1/models.
std::string models_list(const std::vector<ModelCard>& models);

}  // namespace baton::protocol
