#pragma once

// Chat templates: a model's Jinja template turning OpenAI-style messages into
// the prompt text, rendered byte-for-byte as transformers'
// apply_chat_template(..., tokenize=False) renders it.
//
// JSON objects keep their key order when given as nlohmann::ordered_json (as
// Python dicts do), which matters for `tojson` of tool schemas; a plain
// nlohmann::json has its keys sorted already, so pass ordered_json where the
// order of a request body must survive. ChatTemplate and ChatTemplateSet are
// immutable after construction and safe to render from several threads.

#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "model/jinja_interpreter.h"

namespace baton::model {

using RenderOptions = jinja::RenderOptions;
using RenderLimits = jinja::RenderLimits;

class ChatTemplate {
 public:
  // An empty template; render() fails until one is parsed.
  ChatTemplate() = default;

  // Parses a Jinja chat template. Syntax errors are kUnprocessable with the
  // line number.
  static Result<ChatTemplate> parse(std::string source);

  // Renders with `context` (a JSON object) as the template variables.
  // raise_exception() in the template and type errors are kInvalidArgument,
  // limit breaches kResourceExhausted; messages start with "line N: ".
  Result<std::string> render(const nlohmann::ordered_json& context,
                             const RenderOptions& options = {}) const;
  Result<std::string> render(const nlohmann::json& context,
                             const RenderOptions& options = {}) const;

  const std::string& source() const { return *source_; }

 private:
  std::shared_ptr<const std::string> source_ = std::make_shared<const std::string>();
  std::shared_ptr<const jinja::Template> template_;
};

// A model's templates and the special tokens its templates can refer to.
struct ChatTemplateSet {
  // Named templates; a single template is named "default". transformers
  // uses "tool_use" (when present) for requests with tools.
  std::map<std::string, ChatTemplate> templates;
  // bos_token, eos_token, unk_token, sep_token, pad_token, cls_token,
  // mask_token (strings) and additional_special_tokens (list of strings),
  // only those the model sets: transformers' special_tokens_map.
  nlohmann::ordered_json special_tokens = nlohmann::ordered_json::object();

  // The template transformers would pick: `name` when given, else "tool_use"
  // for requests with tools when the model has one, else "default".
  Result<const ChatTemplate*> select(const std::string& name, bool has_tools) const;

  // Renders messages as apply_chat_template does: the variables are
  // messages, tools (none when tools is nullptr), documents (none),
  // add_generation_prompt and the special tokens, then extra_kwargs (which
  // may override any of them except messages, tools and
  // add_generation_prompt: those are kInvalidArgument).
  Result<std::string> apply(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                            const nlohmann::ordered_json* tools,
                            const nlohmann::ordered_json& extra_kwargs,
                            const RenderOptions& options = {},
                            const std::string& template_name = "") const;
  Result<std::string> apply(const nlohmann::json& messages, bool add_generation_prompt,
                            const nlohmann::json* tools, const nlohmann::json& extra_kwargs,
                            const RenderOptions& options = {},
                            const std::string& template_name = "") const;
};

// Loads the chat template(s) of a Hugging Face model directory:
// chat_template.jinja (transformers 5.x, preferred) plus
// additional_chat_templates/*.jinja, else the chat_template field of
// tokenizer_config.json (a string, or a list of {"name", "template"}), else
// chat_template.json. Special tokens come from tokenizer_config.json and
// special_tokens_map.json (which wins, as in transformers); values may be
// strings or {"content": ...} objects. kNotFound when the model has no
// template; kUnprocessable for unreadable files or templates that do not
// parse.
Result<ChatTemplateSet> load_chat_template(const std::filesystem::path& model_dir);

}  // namespace baton::model
