#include "protocol/openai_response.h"

#include <cmath>
#include <nlohmann/json.hpp>

namespace baton::protocol {
namespace {

using Json = nlohmann::ordered_json;

std::string dump(const Json& j) {
  // Token texts can be partial UTF-8 characters; replacing beats throwing in
  // the middle of a stream.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json finish_json(FinishReason reason) {
  std::optional<std::string_view> name = openai_finish_reason(reason);
  return name ? Json(std::string(*name)) : Json(nullptr);
}

Json stop_reason_json(const StopReason& reason) {
  if (const auto* text = std::get_if<std::string>(&reason)) {
    return *text;
  }
  if (const auto* token = std::get_if<int32_t>(&reason)) {
    return *token;
  }
  return nullptr;
}

Json usage_json(const Usage& usage) {
  Json u = Json::object();
  u["prompt_tokens"] = usage.prompt_tokens;
  u["completion_tokens"] = usage.completion_tokens;
  u["total_tokens"] = static_cast<int64_t>(usage.prompt_tokens) + usage.completion_tokens;
  if (usage.cached_tokens) {
    u["prompt_tokens_details"] = Json{{"cached_tokens", *usage.cached_tokens}};
  }
  return u;
}

Json envelope(const ResponseMeta& meta, std::string_view object) {
  Json j = Json::object();
  j["id"] = meta.id;
  j["object"] = std::string(object);
  j["created"] = meta.created;
  j["model"] = meta.model;
  return j;
}

int64_t code_points(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) {
    n += (c & 0xC0) != 0x80;  // count every byte that starts a character
  }
  return n;
}

Json completion_logprobs_json(const std::vector<TokenLogprobInfo>& tokens, int64_t text_offset) {
  Json toks = Json::array();
  Json lps = Json::array();
  Json tops = Json::array();
  Json offsets = Json::array();
  int64_t offset = text_offset;
  for (const TokenLogprobInfo& t : tokens) {
    toks.push_back(t.token);
    lps.push_back(clamp_logprob(t.logprob));
    Json top = Json::object();
    top[t.token] = clamp_logprob(t.logprob);
    for (const auto& [text, lp] : t.top) {
      if (!top.contains(text)) {
        top[text] = clamp_logprob(lp);
      }
    }
    tops.push_back(std::move(top));
    offsets.push_back(offset);
    offset += code_points(t.token);
  }
  Json j = Json::object();
  j["tokens"] = std::move(toks);
  j["token_logprobs"] = std::move(lps);
  j["top_logprobs"] = std::move(tops);
  j["text_offset"] = std::move(offsets);
  return j;
}

Json utf8_bytes(const std::string& s) {
  Json bytes = Json::array();
  for (unsigned char c : s) {
    bytes.push_back(static_cast<int>(c));
  }
  return bytes;
}

Json chat_logprob_entry(const std::string& token, float logprob) {
  Json e = Json::object();
  e["token"] = token;
  e["logprob"] = clamp_logprob(logprob);
  e["bytes"] = utf8_bytes(token);
  return e;
}

Json chat_logprobs_json(const std::vector<TokenLogprobInfo>& tokens) {
  Json content = Json::array();
  for (const TokenLogprobInfo& t : tokens) {
    Json e = chat_logprob_entry(t.token, t.logprob);
    Json top = Json::array();
    for (const auto& [text, lp] : t.top) {
      top.push_back(chat_logprob_entry(text, lp));
    }
    e["top_logprobs"] = std::move(top);
    content.push_back(std::move(e));
  }
  return Json{{"content", std::move(content)}};
}

Json completion_choice_json(const CompletionChoice& c) {
  Json j = Json::object();
  j["index"] = c.index;
  j["text"] = c.text;
  j["logprobs"] = c.logprobs ? completion_logprobs_json(*c.logprobs, c.text_offset) : Json(nullptr);
  j["finish_reason"] = finish_json(c.finish_reason);
  j["stop_reason"] = stop_reason_json(c.stop_reason);
  return j;
}

Json model_card_json(const ModelCard& card) {
  Json j = Json::object();
  j["id"] = card.id;
  j["object"] = "model";
  j["created"] = card.created;
  j["owned_by"] = card.owned_by;
  j["max_model_len"] = card.max_model_len;
  return j;
}

}  // namespace

std::optional<std::string_view> openai_finish_reason(FinishReason reason) {
  switch (reason) {
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kToolCalls:
      return "tool_calls";
    case FinishReason::kAbort:
      return "abort";
    case FinishReason::kNone:
      break;
  }
  return std::nullopt;
}

std::string make_response_id(std::string_view prefix, uint64_t hi, uint64_t lo) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string id(prefix);
  for (uint64_t word : {hi, lo}) {
    for (int shift = 60; shift >= 0; shift -= 4) {
      id += kHex[(word >> shift) & 0xF];
    }
  }
  return id;
}

double clamp_logprob(float logprob) {
  if (std::isnan(logprob) || logprob < kMinLogprob) {
    return kMinLogprob;
  }
  if (std::isinf(logprob)) {
    return 0.0;
  }
  return static_cast<double>(logprob);
}

std::string completion_response(const ResponseMeta& meta,
                                const std::vector<CompletionChoice>& choices, const Usage& usage) {
  Json j = envelope(meta, "text_completion");
  Json list = Json::array();
  for (const CompletionChoice& c : choices) {
    list.push_back(completion_choice_json(c));
  }
  j["choices"] = std::move(list);
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string completion_chunk(const ResponseMeta& meta, const CompletionChoice& choice,
                             const std::optional<Usage>& usage) {
  Json j = envelope(meta, "text_completion");
  j["choices"] = Json::array({completion_choice_json(choice)});
  if (usage) {
    j["usage"] = usage_json(*usage);
  }
  return dump(j);
}

std::string completion_usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = envelope(meta, "text_completion");
  j["choices"] = Json::array();
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string chat_completion_response(const ResponseMeta& meta,
                                     const std::vector<ChatChoice>& choices, const Usage& usage) {
  Json j = envelope(meta, "chat.completion");
  Json list = Json::array();
  for (const ChatChoice& c : choices) {
    Json choice = Json::object();
    choice["index"] = c.index;
    choice["message"] = Json{{"role", "assistant"}, {"content", c.content}};
    choice["logprobs"] = c.logprobs ? chat_logprobs_json(*c.logprobs) : Json(nullptr);
    choice["finish_reason"] = finish_json(c.finish_reason);
    choice["stop_reason"] = stop_reason_json(c.stop_reason);
    list.push_back(std::move(choice));
  }
  j["choices"] = std::move(list);
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string chat_chunk(const ResponseMeta& meta, const ChatDelta& delta,
                       const std::optional<Usage>& usage) {
  Json j = envelope(meta, "chat.completion.chunk");
  Json d = Json::object();
  if (delta.role) {
    d["role"] = "assistant";
  }
  if (delta.content) {
    d["content"] = *delta.content;
  }
  Json choice = Json::object();
  choice["index"] = delta.index;
  choice["delta"] = std::move(d);
  choice["logprobs"] = delta.logprobs ? chat_logprobs_json(*delta.logprobs) : Json(nullptr);
  choice["finish_reason"] = finish_json(delta.finish_reason);
  if (delta.finish_reason != FinishReason::kNone) {
    choice["stop_reason"] = stop_reason_json(delta.stop_reason);
  }
  j["choices"] = Json::array({std::move(choice)});
  if (usage) {
    j["usage"] = usage_json(*usage);
  }
  return dump(j);
}

std::string chat_role_chunk(const ResponseMeta& meta, int32_t index) {
  ChatDelta delta;
  delta.index = index;
  delta.role = true;
  delta.content = "";
  return chat_chunk(meta, delta);
}

std::string chat_usage_chunk(const ResponseMeta& meta, const Usage& usage) {
  Json j = envelope(meta, "chat.completion.chunk");
  j["choices"] = Json::array();
  j["usage"] = usage_json(usage);
  return dump(j);
}

std::string model_card(const ModelCard& card) { return dump(model_card_json(card)); }

std::string models_list(const std::vector<ModelCard>& models) {
  Json data = Json::array();
  for (const ModelCard& card : models) {
    data.push_back(model_card_json(card));
  }
  Json j = Json::object();
  j["object"] = "list";
  j["data"] = std::move(data);
  return dump(j);
}

}  // namespace baton::protocol
