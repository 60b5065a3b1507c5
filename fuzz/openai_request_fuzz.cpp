// Fuzz target: validation of OpenAI request bodies (protocol/openai_request.h),
// the JSON a client sends to /v1/completions and /v1/chat/completions. The
// same bytes go to both parsers and to parse_json_object. Checked: no crash,
// no UB, no stack overflow on deep nesting, and every accepted request lies
// inside the ranges the header documents (a bug there would let a bad value
// reach the engine).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "protocol/openai_request.h"

namespace {

using namespace baton::protocol;

void require(bool ok, const char* what) {
  if (ok) return;
  std::fprintf(stderr, "openai_request_fuzz: accepted a request with %s\n", what);
  std::abort();
}

void check_sampling(const SamplingFields& p) {
  if (p.temperature) require(*p.temperature >= 0 && *p.temperature <= 2, "temperature");
  if (p.top_p) require(*p.top_p > 0 && *p.top_p <= 1, "top_p");
  if (p.top_k) require(*p.top_k == -1 || *p.top_k >= 1, "top_k");
  if (p.min_p) require(*p.min_p >= 0 && *p.min_p <= 1, "min_p");
  if (p.n) require(*p.n >= 1 && *p.n <= kMaxN, "n");
  if (p.presence_penalty) {
    require(*p.presence_penalty >= -2 && *p.presence_penalty <= 2, "presence_penalty");
  }
  if (p.frequency_penalty) {
    require(*p.frequency_penalty >= -2 && *p.frequency_penalty <= 2, "frequency_penalty");
  }
  if (p.repetition_penalty) {
    require(*p.repetition_penalty > 0 && *p.repetition_penalty <= 2, "repetition_penalty");
  }
  if (p.max_tokens) require(*p.max_tokens >= 1, "max_tokens");
  if (p.min_tokens) {
    require(*p.min_tokens >= 0, "min_tokens");
    if (p.max_tokens) require(*p.min_tokens <= *p.max_tokens, "min_tokens > max_tokens");
  }
  if (p.logprobs) require(*p.logprobs >= 0 && *p.logprobs <= kMaxLogprobs, "logprobs");
  require(p.stop.size() <= static_cast<size_t>(kMaxStopStrings), "too many stop strings");
  for (const auto& s : p.stop) require(!s.empty(), "an empty stop string");
  for (int32_t id : p.stop_token_ids) require(id >= 0, "a negative stop token id");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);

  auto completion = parse_completion_request(body);
  if (completion.is_ok()) {
    const auto& req = completion.value();
    require(!req.prompts.empty(), "no prompt");
    for (const auto& prompt : req.prompts) {
      if (prompt.is_text()) continue;
      require(!prompt.token_ids.empty(), "an empty token prompt");
      for (int32_t id : prompt.token_ids) require(id >= 0, "a negative prompt token id");
    }
    check_sampling(req.params);
  }

  auto chat = parse_chat_request(body);
  if (chat.is_ok()) {
    const auto& req = chat.value();
    require(req.messages.is_array() && !req.messages.empty(), "no messages");
    for (const auto& m : req.messages) {
      require(m.is_object() && m.contains("role") && m["role"].is_string(), "a message role");
      const auto& role = m["role"].get_ref<const std::string&>();
      require(role == "system" || role == "user" || role == "assistant" || role == "tool",
              "an unknown role");
    }
    require(req.chat_template_kwargs.is_object(), "chat_template_kwargs not an object");
    require(!(req.add_generation_prompt && req.continue_final_message),
            "add_generation_prompt with continue_final_message");
    check_sampling(req.params);
  }

  (void)parse_json_object(body);
  return 0;
}
