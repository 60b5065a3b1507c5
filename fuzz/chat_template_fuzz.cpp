// Fuzz target: the chat template engine (model/chat_template.h, the Jinja
// lexer, parser and interpreter under it). The first byte picks the mode:
//  - even: the rest is a template's source, parsed and rendered with a fixed
//    conversation (templates come from model directories, which are
//    trusted less than the code: a bad one must fail cleanly);
//  - odd: the rest is a /v1/chat/completions body, validated by
//    parse_chat_request() and rendered with one of the real templates of
//    tests/fixtures/templates/cases.json (picked by the same byte), the way
//    a chat request reaches the template on the server.
// Checked: no crash, UB, stack overflow or hang; the render limits hold
// (output size). Tight limits keep each run fast.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/chat_template.h"
#include "protocol/openai_request.h"

namespace {

using baton::model::ChatTemplate;
using baton::model::ChatTemplateSet;
using baton::model::RenderOptions;
using nlohmann::ordered_json;

constexpr size_t kMaxOutput = 1 << 20;

RenderOptions options() {
  RenderOptions o;
  o.now = std::chrono::system_clock::from_time_t(1721995200);
  o.limits.max_output_bytes = kMaxOutput;
  o.limits.max_steps = 200'000;
  return o;
}

ordered_json special_tokens() {
  return {{"bos_token", "<s>"}, {"eos_token", "</s>"}, {"unk_token", "<unk>"}};
}

std::vector<ChatTemplateSet> load_fixture_templates() {
  std::ifstream in(std::string(BATON_SOURCE_DIR) + "/tests/fixtures/templates/cases.json");
  auto cases = ordered_json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (cases.is_discarded()) {
    std::fprintf(stderr, "chat_template_fuzz: cannot read the fixture templates\n");
    std::abort();
  }
  std::vector<ChatTemplateSet> sets;
  for (const auto& [name, t] : cases["templates"].items()) {
    auto parsed = ChatTemplate::parse(t["source"].get<std::string>());
    if (!parsed.is_ok()) {
      std::fprintf(stderr, "chat_template_fuzz: fixture %s: %s\n", name.c_str(),
                   parsed.status().to_string().c_str());
      std::abort();
    }
    ChatTemplateSet set;
    set.templates.emplace("default", std::move(parsed).value());
    set.special_tokens = special_tokens();
    sets.push_back(std::move(set));
  }
  return sets;
}

const std::vector<ChatTemplateSet>& fixture_templates() {
  static const std::vector<ChatTemplateSet> sets = load_fixture_templates();
  return sets;
}

const ordered_json& fixed_context() {
  static const ordered_json context = [] {
    ordered_json c = special_tokens();
    c["messages"] = ordered_json::parse(R"([
      {"role": "system", "content": "Be brief."},
      {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
      {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
      {"role": "tool", "tool_call_id": "call_1", "content": "21 C"},
      {"role": "user", "content": "Thanks"}])");
    c["tools"] = ordered_json::parse(R"([{"type": "function", "function": {
      "name": "get_weather", "description": "Current weather",
      "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])");
    c["add_generation_prompt"] = true;
    return c;
  }();
  return context;
}

void check_output(const baton::Result<std::string>& out) {
  if (out.is_ok() && out.value().size() > kMaxOutput) {
    std::fprintf(stderr, "chat_template_fuzz: output over the limit (%zu bytes)\n",
                 out.value().size());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  std::string text(reinterpret_cast<const char*>(data + 1), size - 1);
  if ((selector & 1) == 0) {
    auto t = ChatTemplate::parse(std::move(text));
    if (!t.is_ok()) return 0;
    check_output(t.value().render(fixed_context(), options()));
    return 0;
  }
  // The server's path: the body is validated as a chat request first.
  auto request = baton::protocol::parse_chat_request(text);
  if (!request.is_ok()) return 0;
  const auto& req = request.value();
  const auto& sets = fixture_templates();
  const auto& set = sets[(selector >> 1) % sets.size()];
  check_output(set.apply(req.messages, req.add_generation_prompt, req.tools ? &*req.tools : nullptr,
                         req.chat_template_kwargs, options()));
  return 0;
}
