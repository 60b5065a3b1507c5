#include "protocol/openai_messages.h"

#include <array>
#include <string>
#include <string_view>

#include "protocol/openai_json_reader.h"

namespace baton::protocol {
namespace {

std::string index_path(std::string_view base, size_t i) {
  std::string p(base);
  p += '[';
  p += std::to_string(i);
  p += ']';
  return p;
}

// Part types OpenAI and vLLM define for media. Naming them in the error tells
// the client the request was understood but cannot be served here, which is
// more useful than "unknown type".
constexpr std::array<std::string_view, 10> kMediaPartTypes = {
    "image_url",   "input_image", "image",     "image_pil", "image_embeds",
    "input_audio", "audio_url",   "video_url", "file",      "input_file"};

Status validate_part(const OrderedJson& part, const std::string& path) {
  if (!part.is_object()) {
    return type_error(path, "an object", part);
  }
  FieldReader r(part, path);
  std::string type;
  BATON_RETURN_IF_ERROR(r.read_required_string("type", type));
  if (type == "text") {
    std::string text;
    BATON_RETURN_IF_ERROR(r.read_required_string("text", text));
    return Status::ok();
  }
  if (type == "refusal") {
    std::string refusal;
    BATON_RETURN_IF_ERROR(r.read_required_string("refusal", refusal));
    return Status::ok();
  }
  for (std::string_view media : kMediaPartTypes) {
    if (type == media) {
      return field_error(path, type + " parts are not supported; this server accepts text only");
    }
  }
  return field_error(r.path_of("type"), "unknown content part type \"" + type + "\"");
}

Status validate_content(const OrderedJson& content, const std::string& path) {
  if (content.is_string()) {
    return Status::ok();
  }
  if (!content.is_array()) {
    return type_error(path, "a string, an array of content parts or null", content);
  }
  if (content.empty()) {
    return field_error(path, "must not be empty");
  }
  for (size_t i = 0; i < content.size(); ++i) {
    BATON_RETURN_IF_ERROR(validate_part(content[i], index_path(path, i)));
  }
  return Status::ok();
}

// Tool calls an assistant made earlier in the conversation. Arguments stay as
// sent (a JSON string, or an object some clients send); turning them into what
// a template expects is the server's business.
Status validate_tool_calls(const OrderedJson& calls, const std::string& path) {
  if (!calls.is_array()) {
    return type_error(path, "an array", calls);
  }
  for (size_t i = 0; i < calls.size(); ++i) {
    std::string call_path = index_path(path, i);
    const OrderedJson& call = calls[i];
    if (!call.is_object()) {
      return type_error(call_path, "an object", call);
    }
    FieldReader r(call, call_path);
    std::optional<std::string> id, type;
    BATON_RETURN_IF_ERROR(r.read_string("id", id));
    BATON_RETURN_IF_ERROR(r.read_string("type", type));
    if (type && *type != "function") {
      return field_error(r.path_of("type"), "must be \"function\", got \"" + *type + "\"");
    }
    BATON_ASSIGN_OR_RETURN(const OrderedJson* fn, r.required_object("function"));
    FieldReader f(*fn, r.path_of("function"));
    std::string name;
    BATON_RETURN_IF_ERROR(f.read_required_string("name", name));
    const OrderedJson* args = f.find("arguments");
    if (args != nullptr && !args->is_string() && !args->is_object()) {
      return type_error(f.path_of("arguments"), "a string or an object", *args);
    }
  }
  return Status::ok();
}

Status validate_message(OrderedJson& message, const std::string& path) {
  if (!message.is_object()) {
    return type_error(path, "an object", message);
  }
  FieldReader r(message, path);
  std::string role;
  BATON_RETURN_IF_ERROR(r.read_required_string("role", role));
  if (role == "developer") {
    message["role"] = "system";
    role = "system";
  }
  if (role != "system" && role != "user" && role != "assistant" && role != "tool") {
    return field_error(
        r.path_of("role"),
        "must be one of system, developer, user, assistant, tool, got \"" + role + "\"");
  }
  std::optional<std::string> name;
  BATON_RETURN_IF_ERROR(r.read_string("name", name));
  std::optional<std::string> tool_call_id;
  BATON_RETURN_IF_ERROR(r.read_string("tool_call_id", tool_call_id));

  bool has_tool_calls = false;
  if (const OrderedJson* calls = r.find("tool_calls")) {
    BATON_RETURN_IF_ERROR(validate_tool_calls(*calls, r.path_of("tool_calls")));
    has_tool_calls = !calls->empty();
  }
  const OrderedJson* content = r.find("content");
  if (content == nullptr) {
    // OpenAI: content may be omitted only by an assistant that called tools.
    if (role == "assistant" && has_tool_calls) {
      return Status::ok();
    }
    return field_error(r.path_of("content"),
                       role == "assistant" ? "required unless tool_calls is given" : "required");
  }
  return validate_content(*content, r.path_of("content"));
}

}  // namespace

Status validate_chat_messages(OrderedJson& messages) {
  if (!messages.is_array()) {
    return type_error("messages", "an array", messages);
  }
  if (messages.empty()) {
    return field_error("messages", "must not be empty");
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    BATON_RETURN_IF_ERROR(validate_message(messages[i], index_path("messages", i)));
  }
  return Status::ok();
}

Status validate_tools(const OrderedJson& tools) {
  if (!tools.is_array()) {
    return type_error("tools", "an array", tools);
  }
  for (size_t i = 0; i < tools.size(); ++i) {
    std::string path = index_path("tools", i);
    const OrderedJson& tool = tools[i];
    if (!tool.is_object()) {
      return type_error(path, "an object", tool);
    }
    FieldReader r(tool, path);
    std::string type;
    BATON_RETURN_IF_ERROR(r.read_required_string("type", type));
    if (type != "function") {
      return field_error(r.path_of("type"), "must be \"function\", got \"" + type + "\"");
    }
    BATON_ASSIGN_OR_RETURN(const OrderedJson* fn, r.required_object("function"));
    FieldReader f(*fn, r.path_of("function"));
    std::string name;
    BATON_RETURN_IF_ERROR(f.read_required_string("name", name));
    std::optional<std::string> description;
    if (name.empty()) {
      return field_error(f.path_of("name"), "must not be empty");
    }
    BATON_RETURN_IF_ERROR(f.read_string("description", description));
    const OrderedJson* params = f.find("parameters");
    if (params != nullptr && !params->is_object()) {
      return type_error(f.path_of("parameters"), "an object", *params);
    }
  }
  return Status::ok();
}

Status validate_tool_choice(const OrderedJson& tool_choice) {
  if (tool_choice.is_null()) {
    return Status::ok();
  }
  if (tool_choice.is_string()) {
    const std::string& choice = tool_choice.get_ref<const std::string&>();
    if (choice == "none" || choice == "auto") {
      return Status::ok();
    }
    if (choice == "required") {
      return field_error("tool_choice", "\"required\" is not supported; use \"auto\" or \"none\"");
    }
    return field_error("tool_choice",
                       "must be \"none\", \"auto\" or \"required\", got \"" + choice + "\"");
  }
  if (tool_choice.is_object()) {
    return field_error("tool_choice",
                       "a named function is not supported; use \"auto\" or \"none\"");
  }
  return type_error("tool_choice", "a string or an object", tool_choice);
}

}  // namespace baton::protocol
