#include <gtest/gtest.h>

#include <string>

#include "protocol/openai_error.h"
#include "protocol/openai_request.h"

namespace baton::protocol {
namespace {

using Json = nlohmann::ordered_json;

Json user(const Json& content) { return {{"role", "user"}, {"content", content}}; }

std::string chat_body(const Json& patch = Json::object()) {
  Json body = {{"model", "m"}, {"messages", Json::array({user("hi")})}};
  body.update(patch);
  return body.dump();
}

std::string with_messages(const Json& messages, const Json& patch = Json::object()) {
  Json p = patch;
  p["messages"] = messages;
  return chat_body(p);
}

template <typename T>
void expect_invalid(const Result<T>& result, const std::string& param, const std::string& part) {
  ASSERT_FALSE(result.is_ok()) << "expected an error naming " << param;
  Status st = result.status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  EXPECT_EQ(st.message().rfind(param + ": ", 0), 0u) << st.message();
  EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
  // The error body names the same parameter.
  Json body = Json::parse(error_body(st));
  EXPECT_EQ(body["error"]["param"], param);
}

TEST(ChatRequestTest, MinimalRequestDefaults) {
  auto req = parse_chat_request(chat_body());
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->model, "m");
  ASSERT_EQ(req->messages.size(), 1u);
  EXPECT_EQ(req->messages[0]["content"], "hi");
  EXPECT_FALSE(req->tools);
  EXPECT_TRUE(req->add_generation_prompt);
  EXPECT_FALSE(req->continue_final_message);
  EXPECT_TRUE(req->chat_template_kwargs.is_object());
  EXPECT_TRUE(req->chat_template_kwargs.empty());
  EXPECT_FALSE(req->params.logprobs);
  EXPECT_FALSE(req->stream);
}

TEST(ChatRequestTest, MaxCompletionTokensWinsOverMaxTokens) {
  auto both = parse_chat_request(chat_body({{"max_tokens", 10}, {"max_completion_tokens", 20}}));
  ASSERT_TRUE(both.is_ok());
  EXPECT_EQ(both->params.max_tokens, 20);
  auto legacy = parse_chat_request(chat_body({{"max_tokens", 10}}));
  ASSERT_TRUE(legacy.is_ok());
  EXPECT_EQ(legacy->params.max_tokens, 10);
  expect_invalid(parse_chat_request(chat_body({{"max_completion_tokens", 0}})),
                 "max_completion_tokens", "must be at least 1, got 0");
  expect_invalid(parse_chat_request(chat_body({{"max_tokens", 0}, {"max_completion_tokens", 5}})),
                 "max_tokens", "must be at least 1");
}

TEST(ChatRequestTest, LogprobsAreASwitchPlusTopLogprobs) {
  auto on = parse_chat_request(chat_body({{"logprobs", true}, {"top_logprobs", 5}}));
  ASSERT_TRUE(on.is_ok());
  EXPECT_EQ(on->params.logprobs, 5);
  auto bare = parse_chat_request(chat_body({{"logprobs", true}}));
  ASSERT_TRUE(bare.is_ok());
  EXPECT_EQ(bare->params.logprobs, 0);
  auto off = parse_chat_request(chat_body({{"logprobs", false}}));
  ASSERT_TRUE(off.is_ok());
  EXPECT_FALSE(off->params.logprobs);

  expect_invalid(parse_chat_request(chat_body({{"top_logprobs", 3}})), "top_logprobs",
                 "requires logprobs to be true");
  expect_invalid(parse_chat_request(chat_body({{"logprobs", true}, {"top_logprobs", 21}})),
                 "top_logprobs", "must be between 0 and 20, got 21");
  expect_invalid(parse_chat_request(chat_body({{"logprobs", 5}})), "logprobs",
                 "must be a boolean, got number");
}

TEST(ChatRequestTest, SharesSamplingValidationWithCompletions) {
  expect_invalid(parse_chat_request(chat_body({{"temperature", 3.5}})), "temperature",
                 "must be between 0 and 2, got 3.5");
  expect_invalid(parse_chat_request(chat_body({{"n", 17}})), "n", "got 17");
  expect_invalid(parse_chat_request(chat_body({{"echo", true}})), "echo", "not supported");
  expect_invalid(parse_chat_request(chat_body({{"stream_options", {{"include_usage", true}}}})),
                 "stream_options", "only allowed when stream is true");
  auto streamed = parse_chat_request(
      chat_body({{"stream", true}, {"stream_options", {{"include_usage", true}}}}));
  ASSERT_TRUE(streamed.is_ok());
  EXPECT_TRUE(streamed->stream);
  EXPECT_TRUE(streamed->include_usage);
}

TEST(ChatRequestTest, MessagesKeepTheirOrderAndParts) {
  Json messages = Json::parse(R"([
    {"role": "system", "content": "be brief", "name": "sys"},
    {"content": [{"type": "text", "text": "a"}, {"text": "b", "type": "text"}], "role": "user"},
    {"role": "assistant", "content": null,
     "tool_calls": [{"id": "c1", "type": "function",
                     "function": {"name": "f", "arguments": "{\"x\":1}"}}]},
    {"role": "tool", "tool_call_id": "c1", "content": "42"},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "no"}]}
  ])");
  auto req = parse_chat_request(with_messages(messages));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  // Byte-for-byte the same JSON: key order and content lists are kept.
  EXPECT_EQ(req->messages.dump(), messages.dump());
  EXPECT_TRUE(req->messages[1]["content"].is_array());
}

TEST(ChatRequestTest, DeveloperRoleBecomesSystem) {
  auto req = parse_chat_request(
      with_messages({{{"role", "developer"}, {"content", "rules"}}, user("hi")}));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->messages[0]["role"], "system");
  EXPECT_EQ(req->messages[0]["content"], "rules");
}

TEST(ChatRequestTest, RejectsBadMessages) {
  struct Case {
    Json messages;
    std::string param;
    std::string part;
  };
  const Case cases[] = {
      {Json::array(), "messages", "must not be empty"},
      {Json::object(), "messages", "must be an array, got object"},
      {Json::array({"hi"}), "messages[0]", "must be an object, got string"},
      {Json::array({{{"content", "x"}}}), "messages[0].role", "required"},
      {Json::array({user("a"), {{"role", "function"}, {"content", "x"}}}), "messages[1].role",
       "must be one of system, developer, user, assistant, tool, got \"function\""},
      {Json::array({{{"role", 1}, {"content", "x"}}}), "messages[0].role", "must be a string"},
      {Json::array({{{"role", "user"}}}), "messages[0].content", "required"},
      {Json::array({user(nullptr)}), "messages[0].content", "required"},
      {Json::array({{{"role", "assistant"}, {"content", nullptr}}}), "messages[0].content",
       "required unless tool_calls is given"},
      {Json::array({user(5)}), "messages[0].content",
       "must be a string, an array of content parts or null, got number"},
      {Json::array({user(Json::array())}), "messages[0].content", "must not be empty"},
      {Json::array({user(Json::array({"text"}))}), "messages[0].content[0]",
       "must be an object, got string"},
      {Json::array({user(Json::array({{{"text", "a"}}}))}), "messages[0].content[0].type",
       "required"},
      {Json::array({user(Json::array({{{"type", "text"}}}))}), "messages[0].content[0].text",
       "required"},
      {Json::array({user(Json::array({{{"type", "text"}, {"text", 3}}}))}),
       "messages[0].content[0].text", "must be a string"},
      {Json::array({user(
           Json::array({{{"type", "text"}, {"text", "look"}},
                        {{"type", "image_url"}, {"image_url", {{"url", "http://x/y.png"}}}}}))}),
       "messages[0].content[1]", "image_url parts are not supported"},
      {Json::array({user(Json::array({{{"type", "input_audio"}}}))}), "messages[0].content[0]",
       "input_audio parts are not supported"},
      {Json::array({user(Json::array({{{"type", "hologram"}}}))}), "messages[0].content[0].type",
       "unknown content part type \"hologram\""},
      {Json::array({{{"role", "user"}, {"content", "x"}, {"name", 1}}}), "messages[0].name",
       "must be a string"},
      {Json::array({{{"role", "assistant"}, {"tool_calls", "f()"}}}), "messages[0].tool_calls",
       "must be an array"},
      {Json::array({{{"role", "assistant"}, {"tool_calls", Json::array({{{"id", "c"}}})}}}),
       "messages[0].tool_calls[0].function", "required"},
      {Json::array({{{"role", "assistant"},
                     {"tool_calls", Json::array({{{"function", {{"arguments", "{}"}}}}})}}}),
       "messages[0].tool_calls[0].function.name", "required"},
      {Json::array(
           {{{"role", "assistant"},
             {"tool_calls", Json::array({{{"function", {{"name", "f"}, {"arguments", 1}}}}})}}}),
       "messages[0].tool_calls[0].function.arguments", "must be a string or an object"},
      {Json::array({{{"role", "tool"}, {"content", "x"}, {"tool_call_id", 7}}}),
       "messages[0].tool_call_id", "must be a string"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.messages.dump());
    expect_invalid(parse_chat_request(with_messages(c.messages)), c.param, c.part);
  }
  expect_invalid(parse_chat_request(R"({"model": "m"})"), "messages", "required");
}

TEST(ChatRequestTest, ToolsKeepTheirSchemaOrder) {
  Json tools = Json::parse(R"([{"type": "function", "function": {"name": "get_weather",
    "description": "d", "parameters": {"type": "object",
    "properties": {"zeta": {"type": "string"}, "alpha": {"type": "number"}}}}}])");
  auto req = parse_chat_request(chat_body({{"tools", tools}, {"tool_choice", "auto"}}));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  ASSERT_TRUE(req->tools);
  EXPECT_EQ(req->tools->dump(), tools.dump());
  EXPECT_LT(req->tools->dump().find("zeta"), req->tools->dump().find("alpha"));

  auto empty = parse_chat_request(chat_body({{"tools", Json::array()}}));
  ASSERT_TRUE(empty.is_ok());
  EXPECT_FALSE(empty->tools);
}

TEST(ChatRequestTest, RejectsBadToolsAndToolChoice) {
  struct Case {
    Json patch;
    std::string param;
    std::string part;
  };
  Json fn = {{"name", "f"}};
  const Case cases[] = {
      {{{"tools", {{"type", "function"}}}}, "tools", "must be an array, got object"},
      {{{"tools", Json::array({1})}}, "tools[0]", "must be an object"},
      {{{"tools", Json::array({{{"function", fn}}})}}, "tools[0].type", "required"},
      {{{"tools", Json::array({{{"type", "retrieval"}, {"function", fn}}})}},
       "tools[0].type",
       "must be \"function\""},
      {{{"tools", Json::array({{{"type", "function"}}})}}, "tools[0].function", "required"},
      {{{"tools", Json::array({{{"type", "function"}, {"function", {{"name", ""}}}}})}},
       "tools[0].function.name",
       "must not be empty"},
      {{{"tools",
         Json::array({{{"type", "function"}, {"function", {{"name", "f"}, {"parameters", 1}}}}})}},
       "tools[0].function.parameters",
       "must be an object"},
      {{{"tool_choice", "required"}}, "tool_choice", "not supported"},
      {{{"tool_choice", {{"type", "function"}, {"function", fn}}}},
       "tool_choice",
       "a named function is not supported"},
      {{{"tool_choice", "sometimes"}}, "tool_choice", "must be \"none\", \"auto\" or"},
      {{{"tool_choice", 1}}, "tool_choice", "must be a string or an object"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    expect_invalid(parse_chat_request(chat_body(c.patch)), c.param, c.part);
  }
  EXPECT_TRUE(parse_chat_request(chat_body({{"tool_choice", "none"}})).is_ok());
}

TEST(ChatRequestTest, GenerationPromptAndContinuation) {
  auto off = parse_chat_request(chat_body({{"add_generation_prompt", false}}));
  ASSERT_TRUE(off.is_ok());
  EXPECT_FALSE(off->add_generation_prompt);

  Json convo = {user("hi"), {{"role", "assistant"}, {"content", "Hello, I"}}};
  auto cont = parse_chat_request(with_messages(convo, {{"continue_final_message", true}}));
  ASSERT_TRUE(cont.is_ok()) << cont.status().to_string();
  EXPECT_TRUE(cont->continue_final_message);
  EXPECT_FALSE(cont->add_generation_prompt);

  expect_invalid(parse_chat_request(with_messages(
                     convo, {{"continue_final_message", true}, {"add_generation_prompt", true}})),
                 "continue_final_message", "cannot be true together with add_generation_prompt");
  expect_invalid(parse_chat_request(chat_body({{"continue_final_message", true}})),
                 "continue_final_message", "the last message must be an assistant message");
  expect_invalid(parse_chat_request(chat_body({{"add_generation_prompt", "yes"}})),
                 "add_generation_prompt", "must be a boolean");
}

TEST(ChatRequestTest, ChatTemplateKwargs) {
  auto req = parse_chat_request(
      chat_body({{"chat_template_kwargs", {{"enable_thinking", false}, {"a", 1}}}}));
  ASSERT_TRUE(req.is_ok());
  EXPECT_EQ(req->chat_template_kwargs.dump(), R"({"enable_thinking":false,"a":1})");
  expect_invalid(parse_chat_request(chat_body({{"chat_template_kwargs", "x"}})),
                 "chat_template_kwargs", "must be an object, got string");
}

}  // namespace
}  // namespace baton::protocol
