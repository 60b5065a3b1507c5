#pragma once

// Turns parsed OpenAI requests into engine requests: tokenization, chat
// template rendering, defaults and the checks that need the model (context
// length, vocabulary). Pure apart from the model context it reads.
//
// Thread-safety: a ModelContext is immutable once built and may be shared by
// every HTTP thread.

#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "engine/engine.h"
#include "model/chat_template.h"
#include "model/model_config.h"
#include "model/tokenizer.h"
#include "protocol/openai_request.h"

namespace baton::server {

struct ModelContext {
  std::string served_name;  // the `model` clients must send
  std::optional<model::Tokenizer> tokenizer;
  std::optional<model::ChatTemplateSet> chat_templates;
  std::optional<model::GenerationConfig> generation;
  int32_t vocab_size = 0;
  int32_t max_model_len = 0;
  int32_t max_tokens_limit = 0;  // largest max_tokens accepted; 0: the context length
};

// Loads the tokenizer, chat template and generation defaults of a model
// directory (all optional for dummy models).
Result<ModelContext> load_model_context(const engine::Engine& engine, std::string served_name);

struct PreparedRequest {
  std::vector<engine::EngineRequest> prompts;  // one engine request per prompt
  std::vector<int32_t> prompt_tokens;          // per prompt
  int32_t n = 1;
  bool stream = false;
  bool include_usage = false;
  bool chat = false;
  std::optional<int32_t> logprobs;  // top-N asked for, when logprobs are on
  int64_t total_prompt_tokens() const;
};

// invalid_argument naming the field, kNotFound for an unknown model.
Result<PreparedRequest> prepare_completion(const protocol::CompletionRequest& req,
                                           const ModelContext& ctx);
Result<PreparedRequest> prepare_chat(const protocol::ChatRequest& req, const ModelContext& ctx);

}  // namespace baton::server
