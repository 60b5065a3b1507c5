#include "model/chat_template.h"

#include <fstream>
#include <limits>
#include <sstream>
#include <system_error>

namespace baton::model {

namespace {

namespace fs = std::filesystem;

constexpr const char* kSpecialTokenKeys[] = {"bos_token", "eos_token", "unk_token", "sep_token",
                                             "pad_token", "cls_token", "mask_token"};

// JSON nesting is bounded so a hostile request cannot exhaust the stack.
constexpr int kMaxJsonDepth = 256;

template <typename Json>
Result<jinja::Value> to_value(const Json& j, int depth) {
  if (depth > kMaxJsonDepth) return invalid_argument("JSON nested too deeply for a chat template");
  switch (j.type()) {
    case nlohmann::json::value_t::null:
    case nlohmann::json::value_t::discarded:
      return jinja::Value(jinja::None{});
    case nlohmann::json::value_t::boolean:
      return jinja::Value(j.template get<bool>());
    case nlohmann::json::value_t::number_integer:
      return jinja::Value(j.template get<int64_t>());
    case nlohmann::json::value_t::number_unsigned: {
      uint64_t u = j.template get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return jinja::Value(static_cast<double>(u));
      }
      return jinja::Value(static_cast<int64_t>(u));
    }
    case nlohmann::json::value_t::number_float:
      return jinja::Value(j.template get<double>());
    case nlohmann::json::value_t::string:
      return jinja::Value(j.template get<std::string>());
    case nlohmann::json::value_t::array: {
      std::vector<jinja::Value> items;
      items.reserve(j.size());
      for (const auto& e : j) {
        BATON_ASSIGN_OR_RETURN(jinja::Value v, to_value(e, depth + 1));
        items.push_back(std::move(v));
      }
      return jinja::make_list(std::move(items));
    }
    case nlohmann::json::value_t::object: {
      auto d = std::make_shared<jinja::Dict>();
      for (auto it = j.begin(); it != j.end(); ++it) {
        BATON_ASSIGN_OR_RETURN(jinja::Value v, to_value(it.value(), depth + 1));
        d->items.emplace_back(it.key(), std::move(v));
      }
      return jinja::Value(d);
    }
    case nlohmann::json::value_t::binary:
      break;
  }
  return invalid_argument("unsupported JSON value in chat template context");
}

Result<std::string> read_file(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return data_error("cannot read " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<nlohmann::ordered_json> read_json(const fs::path& path) {
  BATON_ASSIGN_OR_RETURN(std::string text, read_file(path));
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(text, nullptr, false);
  if (j.is_discarded()) return data_error(path.string() + ": invalid JSON");
  return j;
}

// A special token is a string or an AddedToken object {"content": ...}.
std::optional<std::string> token_text(const nlohmann::ordered_json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object()) {
    auto it = v.find("content");
    if (it != v.end() && it->is_string()) return it->get<std::string>();
  }
  return std::nullopt;
}

void read_special_tokens(const nlohmann::ordered_json& config, nlohmann::ordered_json& out) {
  if (!config.is_object()) return;
  for (const char* key : kSpecialTokenKeys) {
    auto it = config.find(key);
    if (it == config.end()) continue;
    if (auto text = token_text(*it)) out[key] = *text;
  }
  auto extra = config.find("additional_special_tokens");
  if (extra != config.end() && extra->is_array()) {
    nlohmann::ordered_json list = nlohmann::ordered_json::array();
    for (const auto& t : *extra) {
      if (auto text = token_text(t)) list.push_back(*text);
    }
    if (!list.empty()) out["additional_special_tokens"] = list;
  }
}

Status add_template(ChatTemplateSet& set, const std::string& name, std::string source,
                    const std::string& origin) {
  auto parsed = ChatTemplate::parse(std::move(source));
  if (!parsed.is_ok()) return parsed.status().with_context(origin);
  set.templates[name] = std::move(parsed).value();
  return Status::ok();
}

Status templates_from_config(ChatTemplateSet& set, const nlohmann::ordered_json& field,
                             const std::string& origin) {
  if (field.is_string()) return add_template(set, "default", field.get<std::string>(), origin);
  if (!field.is_array()) return data_error(origin + ": chat_template must be a string or a list");
  for (const auto& entry : field) {
    if (!entry.is_object() || !entry.contains("name") || !entry.contains("template") ||
        !entry["name"].is_string() || !entry["template"].is_string()) {
      return data_error(origin + ": chat_template entries need string 'name' and 'template'");
    }
    BATON_RETURN_IF_ERROR(add_template(set, entry["name"].get<std::string>(),
                                       entry["template"].get<std::string>(), origin));
  }
  return Status::ok();
}

}  // namespace

Result<ChatTemplate> ChatTemplate::parse(std::string source) {
  BATON_ASSIGN_OR_RETURN(jinja::Template t, jinja::Template::parse(source));
  ChatTemplate ct;
  ct.source_ = std::make_shared<const std::string>(std::move(source));
  ct.template_ = std::make_shared<const jinja::Template>(std::move(t));
  return ct;
}

Result<std::string> ChatTemplate::render(const nlohmann::ordered_json& context,
                                         const RenderOptions& options) const {
  if (!template_) return internal_error("chat template is empty");
  if (!context.is_object()) return invalid_argument("chat template context must be an object");
  BATON_ASSIGN_OR_RETURN(jinja::Value v, to_value(context, 0));
  return template_->render(v, options);
}

Result<std::string> ChatTemplate::render(const nlohmann::json& context,
                                         const RenderOptions& options) const {
  if (!template_) return internal_error("chat template is empty");
  if (!context.is_object()) return invalid_argument("chat template context must be an object");
  BATON_ASSIGN_OR_RETURN(jinja::Value v, to_value(context, 0));
  return template_->render(v, options);
}

Result<const ChatTemplate*> ChatTemplateSet::select(const std::string& name, bool has_tools) const {
  if (!name.empty()) {
    auto it = templates.find(name);
    if (it == templates.end())
      return not_found("the model has no chat template named '" + name + "'");
    return &it->second;
  }
  if (has_tools) {
    auto it = templates.find("tool_use");
    if (it != templates.end()) return &it->second;
  }
  auto it = templates.find("default");
  if (it != templates.end()) return &it->second;
  if (templates.empty()) return not_found("the model has no chat template");
  return not_found("the model has several chat templates and none is named 'default'");
}

Result<std::string> ChatTemplateSet::apply(const nlohmann::ordered_json& messages,
                                           bool add_generation_prompt,
                                           const nlohmann::ordered_json* tools,
                                           const nlohmann::ordered_json& extra_kwargs,
                                           const RenderOptions& options,
                                           const std::string& template_name) const {
  bool has_tools = tools != nullptr && !tools->is_null();
  BATON_ASSIGN_OR_RETURN(const ChatTemplate* tmpl, select(template_name, has_tools));
  // The keyword arguments transformers passes to jinja2's render().
  nlohmann::ordered_json ctx = nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["tools"] = has_tools ? *tools : nlohmann::ordered_json();
  ctx["documents"] = nullptr;
  ctx["add_generation_prompt"] = add_generation_prompt;
  for (auto it = special_tokens.begin(); it != special_tokens.end(); ++it)
    ctx[it.key()] = it.value();
  if (!extra_kwargs.is_null()) {
    if (!extra_kwargs.is_object())
      return invalid_argument("chat template kwargs must be an object");
    for (auto it = extra_kwargs.begin(); it != extra_kwargs.end(); ++it) {
      if (it.key() == "messages" || it.key() == "tools" || it.key() == "add_generation_prompt") {
        return invalid_argument("chat template kwargs may not set '" + it.key() + "'");
      }
      ctx[it.key()] = it.value();
    }
  }
  return tmpl->render(ctx, options);
}

Result<std::string> ChatTemplateSet::apply(const nlohmann::json& messages,
                                           bool add_generation_prompt, const nlohmann::json* tools,
                                           const nlohmann::json& extra_kwargs,
                                           const RenderOptions& options,
                                           const std::string& template_name) const {
  nlohmann::ordered_json t;
  if (tools != nullptr) t = nlohmann::ordered_json(*tools);
  return apply(nlohmann::ordered_json(messages), add_generation_prompt,
               tools != nullptr ? &t : nullptr, nlohmann::ordered_json(extra_kwargs), options,
               template_name);
}

Result<ChatTemplateSet> load_chat_template(const fs::path& model_dir) {
  std::error_code ec;
  if (!fs::is_directory(model_dir, ec))
    return not_found(model_dir.string() + ": no such directory");
  ChatTemplateSet set;
  nlohmann::ordered_json config;
  fs::path config_path = model_dir / "tokenizer_config.json";
  if (fs::exists(config_path, ec)) {
    BATON_ASSIGN_OR_RETURN(config, read_json(config_path));
    read_special_tokens(config, set.special_tokens);
  }
  fs::path map_path = model_dir / "special_tokens_map.json";
  if (fs::exists(map_path, ec)) {
    BATON_ASSIGN_OR_RETURN(nlohmann::ordered_json map, read_json(map_path));
    read_special_tokens(map, set.special_tokens);
  }

  fs::path jinja_path = model_dir / "chat_template.jinja";
  if (fs::exists(jinja_path, ec)) {
    BATON_ASSIGN_OR_RETURN(std::string source, read_file(jinja_path));
    BATON_RETURN_IF_ERROR(add_template(set, "default", std::move(source), jinja_path.string()));
  } else if (config.is_object() && config.contains("chat_template") &&
             !config["chat_template"].is_null()) {
    BATON_RETURN_IF_ERROR(
        templates_from_config(set, config["chat_template"], config_path.string()));
  } else if (fs::exists(model_dir / "chat_template.json", ec)) {
    fs::path p = model_dir / "chat_template.json";
    BATON_ASSIGN_OR_RETURN(nlohmann::ordered_json j, read_json(p));
    if (j.is_object() && j.contains("chat_template")) {
      BATON_RETURN_IF_ERROR(templates_from_config(set, j["chat_template"], p.string()));
    }
  }
  fs::path extra_dir = model_dir / "additional_chat_templates";
  if (fs::is_directory(extra_dir, ec)) {
    for (const auto& entry : fs::directory_iterator(extra_dir, ec)) {
      if (entry.path().extension() != ".jinja") continue;
      BATON_ASSIGN_OR_RETURN(std::string source, read_file(entry.path()));
      BATON_RETURN_IF_ERROR(add_template(set, entry.path().stem().string(), std::move(source),
                                         entry.path().string()));
    }
  }
  if (set.templates.empty())
    return not_found(model_dir.string() + ": the model has no chat template");
  return set;
}

}  // namespace baton::model
