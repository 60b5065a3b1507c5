#include "protocol/openai_request.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>

namespace baton::protocol {
namespace {

using Json = nlohmann::ordered_json;

// A completion body: {"model": "m", "prompt": "hi"} with `patch` merged in.
std::string completion_body(const Json& patch = Json::object()) {
  Json body = {{"model", "m"}, {"prompt", "hi"}};
  body.update(patch);
  return body.dump();
}

// The status is a 400 whose message starts with "<param>: " and contains
// `part`.
template <typename T>
void expect_invalid(const Result<T>& result, const std::string& param, const std::string& part) {
  ASSERT_FALSE(result.is_ok()) << "expected an error naming " << param;
  Status st = result.status();
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << st.to_string();
  EXPECT_EQ(st.message().rfind(param + ": ", 0), 0u) << st.message();
  EXPECT_NE(st.message().find(part), std::string::npos) << st.message();
}

TEST(CompletionRequestTest, MinimalRequestHasNoParams) {
  auto req = parse_completion_request(completion_body());
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  EXPECT_EQ(req->model, "m");
  ASSERT_EQ(req->prompts.size(), 1u);
  EXPECT_TRUE(req->prompts[0].is_text());
  EXPECT_EQ(req->prompts[0].text, "hi");
  EXPECT_FALSE(req->stream);
  EXPECT_FALSE(req->include_usage);
  EXPECT_FALSE(req->params.max_tokens);
  EXPECT_FALSE(req->params.temperature);
  EXPECT_FALSE(req->params.logprobs);
  EXPECT_TRUE(req->params.stop.empty());
}

TEST(CompletionRequestTest, ReadsEveryField) {
  Json patch = {{"max_tokens", 64},
                {"temperature", 0.5},
                {"top_p", 0.9},
                {"top_k", 40},
                {"min_p", 0.05},
                {"n", 3},
                {"best_of", 3},
                {"stop", {"\n", "END"}},
                {"stop_token_ids", {2, 7}},
                {"seed", -42},
                {"presence_penalty", -1.5},
                {"frequency_penalty", 2},
                {"repetition_penalty", 1.1},
                {"logprobs", 5},
                {"ignore_eos", true},
                {"min_tokens", 4},
                {"include_stop_str_in_output", true},
                {"skip_special_tokens", false},
                {"user", "u1"},
                {"echo", false},
                {"logit_bias", Json::object()},
                {"suffix", ""},
                {"response_format", {{"type", "text"}}},
                {"stream", true},
                {"stream_options", {{"include_usage", true}}}};
  auto req = parse_completion_request(completion_body(patch));
  ASSERT_TRUE(req.is_ok()) << req.status().to_string();
  const SamplingFields& p = req->params;
  EXPECT_EQ(p.max_tokens, 64);
  EXPECT_FLOAT_EQ(*p.temperature, 0.5f);
  EXPECT_FLOAT_EQ(*p.top_p, 0.9f);
  EXPECT_EQ(p.top_k, 40);
  EXPECT_FLOAT_EQ(*p.min_p, 0.05f);
  EXPECT_EQ(p.n, 3);
  EXPECT_EQ(p.best_of, 3);
  EXPECT_EQ(p.stop, (std::vector<std::string>{"\n", "END"}));
  EXPECT_EQ(p.stop_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(p.seed, -42);
  EXPECT_FLOAT_EQ(*p.presence_penalty, -1.5f);
  EXPECT_FLOAT_EQ(*p.frequency_penalty, 2.0f);
  EXPECT_FLOAT_EQ(*p.repetition_penalty, 1.1f);
  EXPECT_EQ(p.logprobs, 5);
  EXPECT_EQ(p.ignore_eos, true);
  EXPECT_EQ(p.min_tokens, 4);
  EXPECT_EQ(p.include_stop_str_in_output, true);
  EXPECT_EQ(p.skip_special_tokens, false);
  EXPECT_EQ(p.user, "u1");
  EXPECT_TRUE(req->stream);
  EXPECT_TRUE(req->include_usage);
}

TEST(CompletionRequestTest, AcceptsRangeEdgesNullsAndUnknownFields) {
  const Json valid[] = {
      {{"temperature", 0}},
      {{"temperature", 2}},
      {{"top_p", 1}},
      {{"top_p", 1e-6}},
      {{"top_k", -1}},
      {{"top_k", 1}},
      {{"min_p", 0}},
      {{"min_p", 1}},
      {{"n", 1}},
      {{"n", 16}},
      {{"presence_penalty", -2}},
      {{"presence_penalty", 2}},
      {{"frequency_penalty", -2}},
      {{"repetition_penalty", 2}},
      {{"repetition_penalty", 0.01}},
      {{"max_tokens", 1}},
      {{"max_tokens", 3.0}},  // Python clients may send an integral float
      {{"logprobs", 0}},
      {{"logprobs", 20}},
      {{"seed", std::numeric_limits<int64_t>::max()}},
      {{"seed", std::numeric_limits<int64_t>::min()}},
      {{"stop", "x"}},
      {{"stop", Json::array()}},
      {{"min_tokens", 0}},
      {{"min_tokens", 5}, {"max_tokens", 5}},
      {{"temperature", nullptr}, {"stop", nullptr}, {"stream_options", nullptr}},
      {{"some_future_field", {1, 2}}, {"metadata", {{"k", "v"}}}},
  };
  for (const Json& patch : valid) {
    auto req = parse_completion_request(completion_body(patch));
    EXPECT_TRUE(req.is_ok()) << patch.dump() << " -> " << req.status().to_string();
  }
}

struct InvalidCase {
  Json patch;
  std::string param;
  std::string part;
};

TEST(CompletionRequestTest, RejectsEachBadParameterByName) {
  const InvalidCase cases[] = {
      {{{"temperature", 3.5}}, "temperature", "must be between 0 and 2, got 3.5"},
      {{{"temperature", -0.1}}, "temperature", "got -0.1"},
      {{{"temperature", "hot"}}, "temperature", "must be a number, got string"},
      {{{"top_p", 0}}, "top_p", "must be greater than 0 and at most 1, got 0"},
      {{{"top_p", 1.5}}, "top_p", "got 1.5"},
      {{{"top_k", 0}}, "top_k", "must be -1 (disabled) or at least 1, got 0"},
      {{{"top_k", -2}}, "top_k", "got -2"},
      {{{"top_k", 1.5}}, "top_k", "must be an integer, got 1.5"},
      {{{"min_p", -0.1}}, "min_p", "must be between 0 and 1"},
      {{{"min_p", 1.1}}, "min_p", "got 1.1"},
      {{{"n", 0}}, "n", "must be between 1 and 16, got 0"},
      {{{"n", 17}}, "n", "got 17"},
      {{{"n", "2"}}, "n", "must be an integer, got string"},
      {{{"presence_penalty", 2.5}}, "presence_penalty", "must be between -2 and 2, got 2.5"},
      {{{"frequency_penalty", -3}}, "frequency_penalty", "got -3"},
      {{{"repetition_penalty", 0}}, "repetition_penalty", "must be greater than 0 and at most 2"},
      {{{"repetition_penalty", 2.5}}, "repetition_penalty", "got 2.5"},
      {{{"max_tokens", 0}}, "max_tokens", "must be at least 1, got 0"},
      {{{"max_tokens", -5}}, "max_tokens", "got -5"},
      {{{"max_tokens", 1.5}}, "max_tokens", "must be an integer"},
      {{{"max_tokens", true}}, "max_tokens", "must be an integer, got boolean"},
      {{{"max_tokens", 4294967296LL}}, "max_tokens", "must be at least 1"},
      {{{"logprobs", 21}}, "logprobs", "must be between 0 and 20, got 21"},
      {{{"logprobs", -1}}, "logprobs", "got -1"},
      {{{"logprobs", true}}, "logprobs", "must be an integer, got boolean"},
      {{{"seed", std::numeric_limits<uint64_t>::max()}}, "seed", "signed 64-bit integer"},
      {{{"seed", "7"}}, "seed", "must be an integer, got string"},
      {{{"stop", ""}}, "stop", "must not be empty"},
      {{{"stop", {"a", ""}}}, "stop[1]", "must not be empty"},
      {{{"stop", {"a", 1}}}, "stop[1]", "must be a string, got number"},
      {{{"stop", 5}}, "stop", "must be a string or an array of strings, got number"},
      {{{"stop", Json(std::vector<std::string>(17, "x"))}}, "stop", "at most 16"},
      {{{"stop_token_ids", {1, -1}}}, "stop_token_ids[1]", "got -1"},
      {{{"stop_token_ids", {2147483648LL}}}, "stop_token_ids[0]", "got 2147483648"},
      {{{"stop_token_ids", "x"}}, "stop_token_ids", "must be an array of token ids"},
      {{{"ignore_eos", "yes"}}, "ignore_eos", "must be a boolean, got string"},
      {{{"include_stop_str_in_output", 1}}, "include_stop_str_in_output", "must be a boolean"},
      {{{"skip_special_tokens", "no"}}, "skip_special_tokens", "must be a boolean"},
      {{{"min_tokens", -1}}, "min_tokens", "must be at least 0, got -1"},
      {{{"min_tokens", 10}, {"max_tokens", 5}}, "min_tokens", "must be at most max_tokens (5)"},
      {{{"user", 5}}, "user", "must be a string, got number"},
      {{{"echo", true}}, "echo", "not supported"},
      {{{"echo", "yes"}}, "echo", "must be a boolean"},
      {{{"best_of", 2}}, "best_of", "must equal n (1)"},
      {{{"best_of", 3}, {"n", 2}}, "best_of", "must equal n (2)"},
      {{{"logit_bias", {{"50256", -100}}}}, "logit_bias", "not supported"},
      {{{"logit_bias", {1, 2}}}, "logit_bias", "must be an object, got array"},
      {{{"suffix", "tail"}}, "suffix", "not supported"},
      {{{"response_format", {{"type", "json_object"}}}}, "response_format.type", "not supported"},
      {{{"response_format", "json"}}, "response_format", "must be an object"},
      {{{"guided_json", {{"type", "object"}}}}, "guided_json", "not supported"},
      {{{"guided_regex", "a+"}}, "guided_regex", "not supported"},
      {{{"prompt_logprobs", 1}}, "prompt_logprobs", "not supported"},
      {{{"stream", "yes"}}, "stream", "must be a boolean"},
      {{{"stream_options", {{"include_usage", true}}}},
       "stream_options",
       "only allowed when stream is true"},
      {{{"stream", false}, {"stream_options", {{"include_usage", true}}}},
       "stream_options",
       "only allowed when stream is true"},
      {{{"stream", true}, {"stream_options", {{"include_usage", "x"}}}},
       "stream_options.include_usage",
       "must be a boolean"},
      {{{"stream", true}, {"stream_options", 1}}, "stream_options", "must be an object"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    expect_invalid(parse_completion_request(completion_body(c.patch)), c.param, c.part);
  }
}

TEST(CompletionRequestTest, ModelIsRequired) {
  expect_invalid(parse_completion_request(R"({"prompt": "hi"})"), "model", "required");
  expect_invalid(parse_completion_request(R"({"model": null, "prompt": "hi"})"), "model",
                 "required");
  expect_invalid(parse_completion_request(R"({"model": 5, "prompt": "hi"})"), "model",
                 "must be a string, got number");
  expect_invalid(parse_completion_request(R"({"model": "", "prompt": "hi"})"), "model",
                 "must not be empty");
  EXPECT_EQ(parse_completion_request(R"({"prompt": "hi"})").status().message(), "model: required");
}

TEST(CompletionRequestTest, PromptShapes) {
  auto text = parse_completion_request(R"({"model":"m","prompt":"once"})");
  ASSERT_TRUE(text.is_ok());
  ASSERT_EQ(text->prompts.size(), 1u);
  EXPECT_EQ(text->prompts[0].text, "once");

  auto texts = parse_completion_request(R"({"model":"m","prompt":["a","b","c"]})");
  ASSERT_TRUE(texts.is_ok());
  ASSERT_EQ(texts->prompts.size(), 3u);
  EXPECT_TRUE(texts->prompts[2].is_text());
  EXPECT_EQ(texts->prompts[2].text, "c");

  auto ids = parse_completion_request(R"({"model":"m","prompt":[1,2,3]})");
  ASSERT_TRUE(ids.is_ok());
  ASSERT_EQ(ids->prompts.size(), 1u);
  EXPECT_EQ(ids->prompts[0].kind, Prompt::Kind::kTokens);
  EXPECT_EQ(ids->prompts[0].token_ids, (std::vector<int32_t>{1, 2, 3}));

  auto batches = parse_completion_request(R"({"model":"m","prompt":[[1,2],[0],[2147483647]]})");
  ASSERT_TRUE(batches.is_ok());
  ASSERT_EQ(batches->prompts.size(), 3u);
  EXPECT_EQ(batches->prompts[0].token_ids, (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(batches->prompts[1].token_ids, (std::vector<int32_t>{0}));
  EXPECT_EQ(batches->prompts[2].token_ids, (std::vector<int32_t>{2147483647}));
}

TEST(CompletionRequestTest, RejectsBadPrompts) {
  const InvalidCase cases[] = {
      {{{"prompt", ""}}, "prompt", "must not be empty"},
      {{{"prompt", Json::array()}}, "prompt", "must not be empty"},
      {{{"prompt", {"a", ""}}}, "prompt[1]", "must not be empty"},
      {{{"prompt", {"a", 1}}}, "prompt[1]", "must be a string, got number"},
      {{{"prompt", {1, "a"}}}, "prompt[1]", "must be an integer, got string"},
      {{{"prompt", {1, -1}}}, "prompt[1]", "got -1"},
      {{{"prompt", {1, 2.5}}}, "prompt[1]", "must be an integer, got 2.5"},
      {{{"prompt", {{1}, Json::array()}}}, "prompt[1]", "must not be empty"},
      {{{"prompt", {{1}, 2}}}, "prompt[1]", "must be an array of token ids, got number"},
      {{{"prompt", {{1}, {3, "x"}}}}, "prompt[1][1]", "must be an integer, got string"},
      {{{"prompt", {true}}}, "prompt[0]", "must be a string, a token id or an array"},
      {{{"prompt", {{"k", "v"}}}}, "prompt", "must be a string or an array, got object"},
      {{{"prompt", nullptr}}, "prompt", "required"},
  };
  for (const InvalidCase& c : cases) {
    SCOPED_TRACE(c.patch.dump());
    expect_invalid(parse_completion_request(completion_body(c.patch)), c.param, c.part);
  }
  expect_invalid(parse_completion_request(R"({"model":"m"})"), "prompt", "required");
}

TEST(RequestBodyTest, RejectsMalformedBodies) {
  for (std::string_view body : {"", "{", "{\"model\": }", "nul", "{\"a\":1} x"}) {
    auto req = parse_completion_request(body);
    ASSERT_FALSE(req.is_ok()) << body;
    EXPECT_EQ(req.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(req.status().message().rfind("invalid JSON: ", 0), 0u) << req.status().message();
    // The library's "[json.exception...]" tag is not shown to clients.
    EXPECT_EQ(req.status().message().find("json.exception"), std::string::npos);
  }
  for (std::string_view body : {"[1]", "\"s\"", "3", "null"}) {
    auto req = parse_chat_request(body);
    ASSERT_FALSE(req.is_ok()) << body;
    EXPECT_EQ(req.status().message().rfind("request body must be a JSON object", 0), 0u);
  }
}

TEST(RequestBodyTest, RefusesDeepNestingWithoutRecursing) {
  std::string deep(1'000'000, '[');
  auto req = parse_completion_request(deep);
  ASSERT_FALSE(req.is_ok());
  EXPECT_NE(req.status().message().find("nested deeper than"), std::string::npos);

  // Brackets inside strings, and escaped quotes before them, are not nesting.
  std::string prompt(5000, '[');
  std::string body = R"({"model":"m","prompt":"\")" + prompt + R"("})";
  auto ok = parse_completion_request(body);
  ASSERT_TRUE(ok.is_ok()) << ok.status().to_string();
  EXPECT_EQ(ok->prompts[0].text, "\"" + prompt);
}

TEST(RequestBodyTest, ParseJsonObjectKeepsKeyOrder) {
  auto doc = parse_json_object(R"({"z":1,"a":2,"m":3})");
  ASSERT_TRUE(doc.is_ok());
  EXPECT_EQ(doc->dump(), R"({"z":1,"a":2,"m":3})");
}

}  // namespace
}  // namespace baton::protocol
