#include "protocol/openai_request.h"

#include <limits>
#include <string>
#include <utility>

#include "protocol/openai_json_reader.h"
#include "protocol/openai_messages.h"

namespace baton::protocol {
namespace {

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
constexpr int64_t kInt64Min = std::numeric_limits<int64_t>::min();
constexpr int64_t kInt64Max = std::numeric_limits<int64_t>::max();

enum class Endpoint { kCompletions, kChat };

// The JSON parser recurses once per nesting level, so depth is bounded by a
// linear scan before parsing rather than trusted to the stack.
Status check_depth(std::string_view body) {
  int depth = 0;
  bool in_string = false;
  bool escaped = false;
  for (char c : body) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
      continue;
    }
    if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth) {
        return invalid_argument("invalid JSON: nested deeper than " +
                                std::to_string(kMaxJsonDepth) + " levels");
      }
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return Status::ok();
}

// "[json.exception.parse_error.101] parse error at line 1, ..." without the
// library's bracketed tag, which means nothing to an API client.
std::string strip_exception_tag(std::string_view what) {
  if (!what.empty() && what.front() == '[') {
    size_t close = what.find("] ");
    if (close != std::string_view::npos) {
      what.remove_prefix(close + 2);
    }
  }
  return std::string(what);
}

struct FloatRange {
  double lo;
  double hi;
  bool lo_open;  // lo itself is not allowed
};

Status read_float(const FieldReader& r, std::string_view key, FloatRange range,
                  std::optional<float>& out) {
  out.reset();
  std::optional<double> v;
  BATON_RETURN_IF_ERROR(r.read_number(key, v));
  if (!v) {
    return Status::ok();
  }
  bool ok = (range.lo_open ? *v > range.lo : *v >= range.lo) && *v <= range.hi;
  if (!ok) {
    std::string what = range.lo_open ? "must be greater than " + format_number(range.lo) +
                                           " and at most " + format_number(range.hi)
                                     : "must be between " + format_number(range.lo) + " and " +
                                           format_number(range.hi);
    return field_error(r.path_of(key), what + ", got " + format_number(*v));
  }
  out = static_cast<float>(*v);
  return Status::ok();
}

Status read_int32(const FieldReader& r, std::string_view key, int64_t lo, int64_t hi,
                  std::optional<int32_t>& out) {
  out.reset();
  std::optional<int64_t> v;
  BATON_RETURN_IF_ERROR(r.read_int(key, lo, hi, v));
  if (v) {
    out = static_cast<int32_t>(*v);
  }
  return Status::ok();
}

Status read_stop(const FieldReader& r, std::vector<std::string>& out) {
  const OrderedJson* stop = r.find("stop");
  if (stop == nullptr) {
    return Status::ok();
  }
  if (stop->is_string()) {
    if (stop->get_ref<const std::string&>().empty()) {
      return field_error("stop", "must not be empty");
    }
    out.push_back(stop->get<std::string>());
    return Status::ok();
  }
  if (!stop->is_array()) {
    return type_error("stop", "a string or an array of strings", *stop);
  }
  if (stop->size() > static_cast<size_t>(kMaxStopStrings)) {
    return field_error("stop", "at most " + std::to_string(kMaxStopStrings) +
                                   " stop strings are allowed, got " +
                                   std::to_string(stop->size()));
  }
  for (size_t i = 0; i < stop->size(); ++i) {
    const OrderedJson& s = (*stop)[i];
    std::string path = "stop[" + std::to_string(i) + "]";
    if (!s.is_string()) {
      return type_error(path, "a string", s);
    }
    if (s.get_ref<const std::string&>().empty()) {
      // An empty stop string would end every sequence before its first token.
      return field_error(path, "must not be empty");
    }
    out.push_back(s.get<std::string>());
  }
  return Status::ok();
}

Status read_token_ids(const OrderedJson& list, const std::string& path, std::vector<int32_t>& out) {
  if (!list.is_array()) {
    return type_error(path, "an array of token ids", list);
  }
  out.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    int64_t id = 0;
    BATON_RETURN_IF_ERROR(
        read_int_value(list[i], path + "[" + std::to_string(i) + "]", 0, kInt32Max, id));
    out.push_back(static_cast<int32_t>(id));
  }
  return Status::ok();
}

Status reject_if_given(const FieldReader& r, std::string_view key, std::string_view why) {
  if (r.find(key) != nullptr) {
    return field_error(r.path_of(key), why);
  }
  return Status::ok();
}

// Features we do not implement are refused by name: ignoring them would hand
// the client output it did not ask for (unconstrained text for a JSON schema,
// one sample where best_of asked for a search).
Status reject_unsupported(const FieldReader& r) {
  std::optional<bool> echo;
  BATON_RETURN_IF_ERROR(r.read_bool("echo", echo));
  if (echo.value_or(false)) {
    return field_error("echo", "not supported; send echo=false or leave it out");
  }
  if (const OrderedJson* bias = r.find("logit_bias")) {
    if (!bias->is_object()) {
      return type_error("logit_bias", "an object", *bias);
    }
    if (!bias->empty()) {
      return field_error("logit_bias", "not supported; send an empty object or leave it out");
    }
  }
  if (const OrderedJson* format = r.find("response_format")) {
    if (!format->is_object()) {
      return type_error("response_format", "an object", *format);
    }
    FieldReader f(*format, "response_format");
    std::optional<std::string> type;
    BATON_RETURN_IF_ERROR(f.read_string("type", type));
    if (!type) {
      return field_error("response_format.type", "required");
    }
    if (*type != "text") {
      return field_error(
          "response_format.type",
          "\"" + *type + "\" is not supported; only \"text\" is (no structured output)");
    }
  }
  for (std::string_view key :
       {"guided_json", "guided_regex", "guided_choice", "guided_grammar", "structured_outputs"}) {
    BATON_RETURN_IF_ERROR(reject_if_given(r, key, "structured output is not supported"));
  }
  BATON_RETURN_IF_ERROR(reject_if_given(r, "prompt_logprobs", "not supported"));
  return Status::ok();
}

Status read_logprobs(const FieldReader& r, Endpoint endpoint, std::optional<int32_t>& out) {
  if (endpoint == Endpoint::kCompletions) {
    return read_int32(r, "logprobs", 0, kMaxLogprobs, out);
  }
  // Chat splits the legacy integer into a switch and a count.
  std::optional<bool> enabled;
  std::optional<int32_t> top;
  BATON_RETURN_IF_ERROR(r.read_bool("logprobs", enabled));
  BATON_RETURN_IF_ERROR(read_int32(r, "top_logprobs", 0, kMaxLogprobs, top));
  if (top && !enabled.value_or(false)) {
    return field_error("top_logprobs", "requires logprobs to be true");
  }
  if (enabled.value_or(false)) {
    out = top.value_or(0);
  }
  return Status::ok();
}

Status parse_sampling_fields(const FieldReader& r, Endpoint endpoint, SamplingFields& out) {
  BATON_RETURN_IF_ERROR(reject_unsupported(r));
  if (endpoint == Endpoint::kChat) {
    // max_completion_tokens replaced max_tokens; both are checked, the newer
    // one wins when both are sent.
    std::optional<int32_t> legacy;
    BATON_RETURN_IF_ERROR(read_int32(r, "max_tokens", 1, kInt32Max, legacy));
    BATON_RETURN_IF_ERROR(read_int32(r, "max_completion_tokens", 1, kInt32Max, out.max_tokens));
    if (!out.max_tokens) {
      out.max_tokens = legacy;
    }
  } else {
    BATON_RETURN_IF_ERROR(read_int32(r, "max_tokens", 1, kInt32Max, out.max_tokens));
  }
  BATON_RETURN_IF_ERROR(read_float(r, "temperature", {0.0, 2.0, false}, out.temperature));
  BATON_RETURN_IF_ERROR(read_float(r, "top_p", {0.0, 1.0, true}, out.top_p));
  std::optional<int64_t> top_k;
  BATON_RETURN_IF_ERROR(r.read_int("top_k", kInt64Min, kInt64Max, top_k));
  if (top_k) {
    if (*top_k == 0 || *top_k < -1 || *top_k > kInt32Max) {
      return field_error("top_k",
                         "must be -1 (disabled) or at least 1, got " + std::to_string(*top_k));
    }
    out.top_k = static_cast<int32_t>(*top_k);
  }
  BATON_RETURN_IF_ERROR(read_float(r, "min_p", {0.0, 1.0, false}, out.min_p));
  BATON_RETURN_IF_ERROR(read_int32(r, "n", 1, kMaxN, out.n));
  BATON_RETURN_IF_ERROR(read_int32(r, "best_of", 1, kInt32Max, out.best_of));
  if (out.best_of && *out.best_of != out.n.value_or(1)) {
    return field_error("best_of", "must equal n (" + std::to_string(out.n.value_or(1)) +
                                      "); best_of > n is not supported, got " +
                                      std::to_string(*out.best_of));
  }
  BATON_RETURN_IF_ERROR(read_stop(r, out.stop));
  if (const OrderedJson* ids = r.find("stop_token_ids")) {
    BATON_RETURN_IF_ERROR(read_token_ids(*ids, "stop_token_ids", out.stop_token_ids));
  }
  BATON_RETURN_IF_ERROR(r.read_int("seed", kInt64Min, kInt64Max, out.seed));
  BATON_RETURN_IF_ERROR(
      read_float(r, "presence_penalty", {-2.0, 2.0, false}, out.presence_penalty));
  BATON_RETURN_IF_ERROR(
      read_float(r, "frequency_penalty", {-2.0, 2.0, false}, out.frequency_penalty));
  BATON_RETURN_IF_ERROR(
      read_float(r, "repetition_penalty", {0.0, 2.0, true}, out.repetition_penalty));
  BATON_RETURN_IF_ERROR(read_logprobs(r, endpoint, out.logprobs));
  BATON_RETURN_IF_ERROR(r.read_bool("ignore_eos", out.ignore_eos));
  BATON_RETURN_IF_ERROR(read_int32(r, "min_tokens", 0, kInt32Max, out.min_tokens));
  if (out.min_tokens && out.max_tokens && *out.min_tokens > *out.max_tokens) {
    return field_error("min_tokens", "must be at most max_tokens (" +
                                         std::to_string(*out.max_tokens) + "), got " +
                                         std::to_string(*out.min_tokens));
  }
  BATON_RETURN_IF_ERROR(r.read_bool("include_stop_str_in_output", out.include_stop_str_in_output));
  BATON_RETURN_IF_ERROR(r.read_bool("skip_special_tokens", out.skip_special_tokens));
  BATON_RETURN_IF_ERROR(r.read_string("user", out.user));
  return Status::ok();
}

Status parse_model(const FieldReader& r, std::string& out) {
  std::optional<std::string> model;
  BATON_RETURN_IF_ERROR(r.read_string("model", model));
  if (!model) {
    return field_error("model", "required");
  }
  if (model->empty()) {
    return field_error("model", "must not be empty");
  }
  out = std::move(*model);
  return Status::ok();
}

Status parse_stream(const FieldReader& r, bool& stream, bool& include_usage) {
  std::optional<bool> s;
  BATON_RETURN_IF_ERROR(r.read_bool("stream", s));
  stream = s.value_or(false);
  include_usage = false;
  const OrderedJson* options = r.find("stream_options");
  if (options == nullptr) {
    return Status::ok();
  }
  if (!options->is_object()) {
    return type_error("stream_options", "an object", *options);
  }
  if (!stream) {
    return field_error("stream_options", "only allowed when stream is true");
  }
  std::optional<bool> usage;
  BATON_RETURN_IF_ERROR(FieldReader(*options, "stream_options").read_bool("include_usage", usage));
  include_usage = usage.value_or(false);
  return Status::ok();
}

Status parse_prompts(const OrderedJson* prompt, std::vector<Prompt>& out) {
  if (prompt == nullptr) {
    return field_error("prompt", "required");
  }
  if (prompt->is_string()) {
    if (prompt->get_ref<const std::string&>().empty()) {
      return field_error("prompt", "must not be empty");
    }
    out.push_back(Prompt::from_text(prompt->get<std::string>()));
    return Status::ok();
  }
  if (!prompt->is_array()) {
    return type_error("prompt", "a string or an array", *prompt);
  }
  if (prompt->empty()) {
    return field_error("prompt", "must not be empty");
  }
  const OrderedJson& first = (*prompt)[0];
  if (first.is_number()) {
    std::vector<int32_t> ids;
    BATON_RETURN_IF_ERROR(read_token_ids(*prompt, "prompt", ids));
    out.push_back(Prompt::from_tokens(std::move(ids)));
    return Status::ok();
  }
  // The first element fixes the shape; mixing shapes is an error at the
  // first element that differs.
  for (size_t i = 0; i < prompt->size(); ++i) {
    const OrderedJson& item = (*prompt)[i];
    std::string path = "prompt[" + std::to_string(i) + "]";
    if (first.is_string()) {
      if (!item.is_string()) {
        return type_error(path, "a string", item);
      }
      if (item.get_ref<const std::string&>().empty()) {
        return field_error(path, "must not be empty");
      }
      out.push_back(Prompt::from_text(item.get<std::string>()));
    } else if (first.is_array()) {
      std::vector<int32_t> ids;
      BATON_RETURN_IF_ERROR(read_token_ids(item, path, ids));
      if (ids.empty()) {
        return field_error(path, "must not be empty");
      }
      out.push_back(Prompt::from_tokens(std::move(ids)));
    } else {
      return type_error(path, "a string, a token id or an array of token ids", item);
    }
  }
  return Status::ok();
}

}  // namespace

Result<nlohmann::ordered_json> parse_json_object(std::string_view body) {
  BATON_RETURN_IF_ERROR(check_depth(body));
  OrderedJson doc;
  try {
    doc = OrderedJson::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument("invalid JSON: " + strip_exception_tag(e.what()));
  }
  if (!doc.is_object()) {
    return invalid_argument("request body must be a JSON object, got " +
                            std::string(json_type_name(doc)));
  }
  return doc;
}

Result<CompletionRequest> parse_completion_request(std::string_view body) {
  BATON_ASSIGN_OR_RETURN(OrderedJson doc, parse_json_object(body));
  FieldReader r(doc, "");
  CompletionRequest req;
  BATON_RETURN_IF_ERROR(parse_model(r, req.model));
  BATON_RETURN_IF_ERROR(parse_prompts(r.find("prompt"), req.prompts));
  std::optional<std::string> suffix;
  BATON_RETURN_IF_ERROR(r.read_string("suffix", suffix));
  if (suffix && !suffix->empty()) {
    return field_error("suffix", "not supported");
  }
  BATON_RETURN_IF_ERROR(parse_sampling_fields(r, Endpoint::kCompletions, req.params));
  BATON_RETURN_IF_ERROR(parse_stream(r, req.stream, req.include_usage));
  return req;
}

Result<ChatRequest> parse_chat_request(std::string_view body) {
  BATON_ASSIGN_OR_RETURN(OrderedJson doc, parse_json_object(body));
  FieldReader r(doc, "");
  ChatRequest req;
  BATON_RETURN_IF_ERROR(parse_model(r, req.model));
  if (r.find("messages") == nullptr) {
    return field_error("messages", "required");
  }
  req.messages = std::move(doc["messages"]);
  doc["messages"] = nullptr;  // moved out; keep the reader's view valid
  BATON_RETURN_IF_ERROR(validate_chat_messages(req.messages));

  if (const OrderedJson* tools = r.find("tools")) {
    BATON_RETURN_IF_ERROR(validate_tools(*tools));
    if (!tools->empty()) {
      req.tools = *tools;
    }
  }
  if (const OrderedJson* choice = r.find("tool_choice")) {
    BATON_RETURN_IF_ERROR(validate_tool_choice(*choice));
  }
  BATON_RETURN_IF_ERROR(parse_sampling_fields(r, Endpoint::kChat, req.params));
  BATON_RETURN_IF_ERROR(parse_stream(r, req.stream, req.include_usage));

  std::optional<bool> add_generation_prompt, continue_final_message;
  BATON_RETURN_IF_ERROR(r.read_bool("add_generation_prompt", add_generation_prompt));
  BATON_RETURN_IF_ERROR(r.read_bool("continue_final_message", continue_final_message));
  req.continue_final_message = continue_final_message.value_or(false);
  if (req.continue_final_message) {
    if (add_generation_prompt.value_or(false)) {
      return field_error("continue_final_message",
                         "cannot be true together with add_generation_prompt");
    }
    // Continuing a message and opening a new assistant turn exclude each
    // other, so asking for the first implies not the second.
    req.add_generation_prompt = false;
    const OrderedJson& last = req.messages.back();
    if (last.value("role", "") != "assistant") {
      return field_error("continue_final_message", "the last message must be an assistant message");
    }
  } else {
    req.add_generation_prompt = add_generation_prompt.value_or(true);
  }
  if (const OrderedJson* kwargs = r.find("chat_template_kwargs")) {
    if (!kwargs->is_object()) {
      return type_error("chat_template_kwargs", "an object", *kwargs);
    }
    req.chat_template_kwargs = *kwargs;
  }
  return req;
}

}  // namespace baton::protocol
