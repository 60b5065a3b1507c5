#include "server/request_builder.h"

namespace baton::server {

int64_t PreparedRequest::total_prompt_tokens() const {
  int64_t t = 0;
  for (int32_t p : prompt_tokens) t += p;
  return t;
}

Result<ModelContext> load_model_context(const engine::Engine& engine, std::string served_name) {
  ModelContext ctx;
  ctx.served_name = std::move(served_name);
  ctx.vocab_size = static_cast<int32_t>(engine.model_config().vocab_size);
  ctx.max_model_len = engine.max_model_len();
  if (engine.tokenizer()) ctx.tokenizer = *engine.tokenizer();
  if (!engine.model_dir().empty()) {
    auto templates = model::load_chat_template(engine.model_dir());
    if (templates.is_ok()) {
      ctx.chat_templates = std::move(*templates);
    } else if (templates.status().code() != StatusCode::kNotFound) {
      return templates.status().with_context("chat template");
    }
    BATON_ASSIGN_OR_RETURN(ctx.generation, model::load_generation_config(engine.model_dir()));
  }
  return ctx;
}

namespace {

Status check_model(const std::string& model, const ModelContext& ctx) {
  if (model != ctx.served_name) {
    return not_found("model: The model `" + model + "` does not exist.");
  }
  return Status::ok();
}

// OpenAI/vLLM fields to engine sampling parameters, with generation_config
// defaults where the request is silent (as vLLM does by default).
Result<engine::EngineRequest> make_request(const protocol::SamplingFields& f,
                                           std::vector<int32_t> prompt, bool chat,
                                           const ModelContext& ctx) {
  engine::EngineRequest r;
  const auto prompt_len = static_cast<int32_t>(prompt.size());
  if (prompt_len >= ctx.max_model_len) {
    return invalid_argument(
        std::string(chat ? "messages" : "prompt") + ": This model's maximum context length is " +
        std::to_string(ctx.max_model_len) + " tokens. However, your " +
        (chat ? "messages" : "prompt") + " resulted in " + std::to_string(prompt_len) + " tokens.");
  }
  const auto* g = ctx.generation ? &*ctx.generation : nullptr;
  auto& p = r.params;
  const int32_t room = ctx.max_model_len - prompt_len;
  // Completions default to 16 tokens (OpenAI's legacy default); chat to the
  // rest of the context.
  int32_t max_tokens = f.max_tokens.value_or(chat ? room : 16);
  if (ctx.max_tokens_limit > 0 && max_tokens > ctx.max_tokens_limit) {
    return invalid_argument("max_tokens: at most " + std::to_string(ctx.max_tokens_limit) +
                            " tokens may be generated per request, got " +
                            std::to_string(max_tokens));
  }
  if (max_tokens > room) {
    if (f.max_tokens) {
      return invalid_argument(
          "max_tokens: This model's maximum context length is " +
          std::to_string(ctx.max_model_len) + " tokens. However, you requested " +
          std::to_string(prompt_len + max_tokens) + " tokens (" + std::to_string(prompt_len) +
          " in the " + (chat ? "messages" : "prompt") + ", " + std::to_string(max_tokens) +
          " in the completion).");
    }
    max_tokens = room;
  }
  p.max_tokens = max_tokens;
  p.temperature = f.temperature.value_or(g && g->temperature ? *g->temperature : 1.0f);
  p.top_p = f.top_p.value_or(g && g->top_p ? *g->top_p : 1.0f);
  p.top_k = f.top_k.value_or(g && g->top_k ? static_cast<int32_t>(*g->top_k) : -1);
  p.min_p = f.min_p.value_or(0.0f);
  p.presence_penalty = f.presence_penalty.value_or(0.0f);
  p.frequency_penalty = f.frequency_penalty.value_or(0.0f);
  p.repetition_penalty =
      f.repetition_penalty.value_or(g && g->repetition_penalty ? *g->repetition_penalty : 1.0f);
  if (f.seed) p.seed = static_cast<uint64_t>(*f.seed);
  p.min_tokens = f.min_tokens.value_or(0);
  p.stop_token_ids = f.stop_token_ids;
  for (int32_t t : p.stop_token_ids) {
    if (t < 0 || t >= ctx.vocab_size) {
      return invalid_argument("stop_token_ids: token id " + std::to_string(t) +
                              " is outside the vocabulary");
    }
  }
  p.ignore_eos = f.ignore_eos.value_or(false);
  p.logprobs = f.logprobs;
  p.n = f.n.value_or(1);
  if (p.min_tokens > p.max_tokens) {
    return invalid_argument("min_tokens: must not exceed max_tokens (" +
                            std::to_string(p.max_tokens) + ")");
  }
  BATON_RETURN_IF_ERROR(p.validate());
  r.stop = f.stop;
  if (!r.stop.empty() && !ctx.tokenizer) {
    return invalid_argument("stop: stop strings need a tokenizer; this model has none");
  }
  r.include_stop_str_in_output = f.include_stop_str_in_output.value_or(false);
  r.skip_special_tokens = f.skip_special_tokens.value_or(true);
  r.prompt = std::move(prompt);
  return r;
}

}  // namespace

Result<PreparedRequest> prepare_completion(const protocol::CompletionRequest& req,
                                           const ModelContext& ctx) {
  BATON_RETURN_IF_ERROR(check_model(req.model, ctx));
  PreparedRequest out;
  out.stream = req.stream;
  out.include_usage = req.include_usage;
  out.n = req.params.n.value_or(1);
  out.logprobs = req.params.logprobs;
  for (size_t i = 0; i < req.prompts.size(); ++i) {
    const auto& pr = req.prompts[i];
    std::vector<int32_t> ids;
    if (pr.is_text()) {
      if (!ctx.tokenizer)
        return invalid_argument("prompt: this model has no tokenizer; send token ids");
      BATON_ASSIGN_OR_RETURN(ids, ctx.tokenizer->encode(pr.text, /*add_special_tokens=*/true));
    } else {
      ids = pr.token_ids;
      for (int32_t t : ids) {
        if (t < 0 || t >= ctx.vocab_size) {
          return invalid_argument("prompt: token id " + std::to_string(t) +
                                  " is outside the vocabulary");
        }
      }
    }
    if (ids.empty()) return invalid_argument("prompt: must not be empty");
    out.prompt_tokens.push_back(static_cast<int32_t>(ids.size()));
    BATON_ASSIGN_OR_RETURN(engine::EngineRequest r,
                           make_request(req.params, std::move(ids), false, ctx));
    out.prompts.push_back(std::move(r));
  }
  return out;
}

Result<PreparedRequest> prepare_chat(const protocol::ChatRequest& req, const ModelContext& ctx) {
  BATON_RETURN_IF_ERROR(check_model(req.model, ctx));
  if (!ctx.tokenizer || !ctx.chat_templates) {
    return invalid_argument("messages: this model has no chat template; use /v1/completions");
  }
  const nlohmann::ordered_json* tools = req.tools ? &*req.tools : nullptr;
  auto text = ctx.chat_templates->apply(req.messages, req.add_generation_prompt, tools,
                                        req.chat_template_kwargs);
  if (!text.is_ok()) {
    return invalid_argument("messages: " + text.status().message());
  }
  // The template writes the special tokens itself (BOS and friends).
  BATON_ASSIGN_OR_RETURN(std::vector<int32_t> ids, ctx.tokenizer->encode(*text, false));
  if (ids.empty()) return invalid_argument("messages: the rendered conversation is empty");
  PreparedRequest out;
  out.chat = true;
  out.stream = req.stream;
  out.include_usage = req.include_usage;
  out.n = req.params.n.value_or(1);
  out.logprobs = req.params.logprobs;
  out.prompt_tokens.push_back(static_cast<int32_t>(ids.size()));
  BATON_ASSIGN_OR_RETURN(engine::EngineRequest r,
                         make_request(req.params, std::move(ids), true, ctx));
  out.prompts.push_back(std::move(r));
  return out;
}

}  // namespace baton::server
