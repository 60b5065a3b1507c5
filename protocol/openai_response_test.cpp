#include "protocol/openai_response.h"

#include <gtest/gtest.h>

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace baton::protocol {
namespace {

using Json = nlohmann::json;

const ResponseMeta kMeta{"cmpl-0123", 1700000000, "tiny-llama"};

TokenLogprobInfo token(std::string text, float lp, std::vector<std::pair<std::string, float>> top) {
  return TokenLogprobInfo{std::move(text), lp, std::move(top)};
}

void expect_envelope(const Json& j, const ResponseMeta& meta, const std::string& object) {
  EXPECT_EQ(j["id"], meta.id);
  EXPECT_EQ(j["object"], object);
  EXPECT_EQ(j["created"], meta.created);
  EXPECT_EQ(j["model"], meta.model);
}

TEST(ResponseIdTest, PrefixPlus32HexDigits) {
  std::string id = make_response_id(kChatCompletionIdPrefix, 0x0123456789abcdefULL, 0xffULL);
  EXPECT_EQ(id, "chatcmpl-0123456789abcdef00000000000000ff");
  EXPECT_EQ(make_response_id(kCompletionIdPrefix, 0, 0).size(), 5u + 32u);
}

TEST(LogprobClampTest, NeverWritesNanOrInfinity) {
  EXPECT_EQ(clamp_logprob(-std::numeric_limits<float>::infinity()), -9999.0);
  EXPECT_EQ(clamp_logprob(std::numeric_limits<float>::quiet_NaN()), -9999.0);
  EXPECT_EQ(clamp_logprob(-1e6f), -9999.0);
  EXPECT_EQ(clamp_logprob(std::numeric_limits<float>::infinity()), 0.0);
  EXPECT_EQ(clamp_logprob(-0.5f), -0.5);
}

TEST(CompletionResponseTest, ShapeFieldByField) {
  CompletionChoice a;
  a.index = 0;
  a.text = "Hello";
  a.finish_reason = FinishReason::kStop;
  a.stop_reason = std::string("\n\n");
  CompletionChoice b;
  b.index = 1;
  b.text = "Hi";
  b.finish_reason = FinishReason::kLength;
  CompletionChoice c;
  c.index = 2;
  c.finish_reason = FinishReason::kStop;
  c.stop_reason = int32_t{128009};
  Usage usage{7, 5, std::nullopt};

  Json j = Json::parse(completion_response(kMeta, {a, b, c}, usage));
  expect_envelope(j, kMeta, "text_completion");
  ASSERT_EQ(j["choices"].size(), 3u);
  const Json& c0 = j["choices"][0];
  EXPECT_EQ(c0["index"], 0);
  EXPECT_EQ(c0["text"], "Hello");
  EXPECT_TRUE(c0["logprobs"].is_null());
  EXPECT_EQ(c0["finish_reason"], "stop");
  EXPECT_EQ(c0["stop_reason"], "\n\n");
  EXPECT_EQ(j["choices"][1]["finish_reason"], "length");
  EXPECT_TRUE(j["choices"][1]["stop_reason"].is_null());
  EXPECT_EQ(j["choices"][2]["stop_reason"], 128009);
  EXPECT_EQ(j["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(j["usage"]["completion_tokens"], 5);
  EXPECT_EQ(j["usage"]["total_tokens"], 12);
  EXPECT_FALSE(j["usage"].contains("prompt_tokens_details"));

  Json cached = Json::parse(completion_response(kMeta, {a}, Usage{7, 5, 4}));
  EXPECT_EQ(cached["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
}

TEST(CompletionResponseTest, LegacyLogprobsFormat) {
  CompletionChoice c;
  c.text = "héllo";
  c.text_offset = 10;
  c.logprobs = std::vector<TokenLogprobInfo>{
      token("hé", -0.25f, {{"hé", -0.25f}, {"ha", -1.5f}}),
      token("llo", -std::numeric_limits<float>::infinity(), {{"lla", -0.5f}}),
  };
  Json lp = Json::parse(completion_response(kMeta, {c}, Usage{}))["choices"][0]["logprobs"];
  EXPECT_EQ(lp["tokens"], Json::array({"hé", "llo"}));
  EXPECT_EQ(lp["token_logprobs"], Json::array({-0.25, -9999.0}));
  // Chosen token first, then the alternatives; a repeated token appears once.
  ASSERT_EQ(lp["top_logprobs"].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][0], (Json{{"hé", -0.25}, {"ha", -1.5}}));
  EXPECT_EQ(lp["top_logprobs"][0].size(), 2u);
  EXPECT_EQ(lp["top_logprobs"][1], (Json{{"llo", -9999.0}, {"lla", -0.5}}));
  // Offsets in code points from text_offset: "hé" is 2 characters (3 bytes).
  EXPECT_EQ(lp["text_offset"], Json::array({10, 12}));
}

TEST(CompletionResponseTest, ChunksShareIdAndCreatedAndEndWithUsage) {
  CompletionChoice first;
  first.index = 1;
  first.text = "Hel";
  CompletionChoice last;
  last.index = 1;
  last.text = "lo";
  last.finish_reason = FinishReason::kLength;

  Json c1 = Json::parse(completion_chunk(kMeta, first));
  Json c2 = Json::parse(completion_chunk(kMeta, last, Usage{3, 2, std::nullopt}));
  Json u = Json::parse(completion_usage_chunk(kMeta, Usage{3, 2, std::nullopt}));
  for (const Json* c : {&c1, &c2, &u}) {
    expect_envelope(*c, kMeta, "text_completion");
  }
  ASSERT_EQ(c1["choices"].size(), 1u);
  EXPECT_EQ(c1["choices"][0]["index"], 1);
  EXPECT_EQ(c1["choices"][0]["text"], "Hel");
  EXPECT_TRUE(c1["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(c1.contains("usage"));
  EXPECT_EQ(c2["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(c2["usage"]["total_tokens"], 5);
  EXPECT_TRUE(u["choices"].is_array());
  EXPECT_TRUE(u["choices"].empty());
  EXPECT_EQ(u["usage"]["prompt_tokens"], 3);
}

TEST(ChatResponseTest, ShapeFieldByField) {
  const ResponseMeta meta{"chatcmpl-9", 1700000001, "m"};
  ChatChoice c;
  c.index = 0;
  c.content = "4";
  c.finish_reason = FinishReason::kStop;
  Json j = Json::parse(chat_completion_response(meta, {c}, Usage{10, 1, 8}));
  expect_envelope(j, meta, "chat.completion");
  ASSERT_EQ(j["choices"].size(), 1u);
  const Json& ch = j["choices"][0];
  EXPECT_EQ(ch["index"], 0);
  EXPECT_EQ(ch["message"], (Json{{"role", "assistant"}, {"content", "4"}}));
  EXPECT_TRUE(ch["logprobs"].is_null());
  EXPECT_EQ(ch["finish_reason"], "stop");
  EXPECT_TRUE(ch["stop_reason"].is_null());
  EXPECT_EQ(j["usage"]["total_tokens"], 11);
  EXPECT_EQ(j["usage"]["prompt_tokens_details"]["cached_tokens"], 8);
}

TEST(ChatResponseTest, LogprobsWithBytes) {
  ChatChoice c;
  c.content = "é!";
  // A token that is only the first byte of "é", as byte-level BPE can emit.
  c.logprobs = std::vector<TokenLogprobInfo>{
      token("\xC3", -0.1f, {{"\xC3", -0.1f}, {"e", -2.5f}}),
      token("!", std::numeric_limits<float>::quiet_NaN(), {}),
  };
  std::string body = chat_completion_response(kMeta, {c}, Usage{});
  Json content = Json::parse(body)["choices"][0]["logprobs"]["content"];
  ASSERT_EQ(content.size(), 2u);
  EXPECT_EQ(content[0]["token"], "\xEF\xBF\xBD");       // replaced in the text...
  EXPECT_EQ(content[0]["bytes"], Json::array({0xC3}));  // ...raw in the bytes
  EXPECT_NEAR(content[0]["logprob"].get<double>(), -0.1, 1e-6);
  ASSERT_EQ(content[0]["top_logprobs"].size(), 2u);
  EXPECT_EQ(content[0]["top_logprobs"][1]["token"], "e");
  EXPECT_EQ(content[0]["top_logprobs"][1]["logprob"], -2.5);
  EXPECT_EQ(content[0]["top_logprobs"][1]["bytes"], Json::array({101}));
  EXPECT_EQ(content[1]["logprob"], -9999.0);
  EXPECT_TRUE(content[1]["top_logprobs"].is_array());
  EXPECT_TRUE(content[1]["top_logprobs"].empty());
  EXPECT_EQ(body.find("NaN"), std::string::npos);
}

TEST(ChatResponseTest, StreamChunks) {
  const ResponseMeta meta{"chatcmpl-s", 1700000002, "m"};
  Json role = Json::parse(chat_role_chunk(meta, 0));
  ChatDelta mid;
  mid.content = "Hel";
  mid.logprobs = std::vector<TokenLogprobInfo>{token("Hel", -0.5f, {})};
  Json c1 = Json::parse(chat_chunk(meta, mid));
  ChatDelta fin;
  fin.finish_reason = FinishReason::kStop;
  fin.stop_reason = std::string("END");
  Json c2 = Json::parse(chat_chunk(meta, fin));
  Json usage = Json::parse(chat_usage_chunk(meta, Usage{5, 2, std::nullopt}));

  for (const Json* c : {&role, &c1, &c2, &usage}) {
    expect_envelope(*c, meta, "chat.completion.chunk");
  }
  ASSERT_EQ(role["choices"].size(), 1u);
  EXPECT_EQ(role["choices"][0]["index"], 0);
  EXPECT_EQ(role["choices"][0]["delta"], (Json{{"role", "assistant"}, {"content", ""}}));
  EXPECT_TRUE(role["choices"][0]["logprobs"].is_null());
  EXPECT_TRUE(role["choices"][0]["finish_reason"].is_null());
  EXPECT_FALSE(role["choices"][0].contains("stop_reason"));
  EXPECT_FALSE(role.contains("usage"));

  EXPECT_EQ(c1["choices"][0]["delta"], (Json{{"content", "Hel"}}));
  EXPECT_EQ(c1["choices"][0]["logprobs"]["content"][0]["token"], "Hel");

  EXPECT_TRUE(c2["choices"][0]["delta"].is_object());
  EXPECT_TRUE(c2["choices"][0]["delta"].empty());
  EXPECT_EQ(c2["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(c2["choices"][0]["stop_reason"], "END");

  EXPECT_TRUE(usage["choices"].is_array());
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["prompt_tokens"], 5);
  EXPECT_EQ(usage["usage"]["completion_tokens"], 2);
  EXPECT_EQ(usage["usage"]["total_tokens"], 7);

  ChatDelta with_usage;
  with_usage.content = "x";
  Json cu = Json::parse(chat_chunk(meta, with_usage, Usage{1, 1, std::nullopt}));
  EXPECT_EQ(cu["usage"]["total_tokens"], 2);
}

TEST(ChatResponseTest, OtherFinishReasons) {
  EXPECT_EQ(openai_finish_reason(FinishReason::kNone), std::nullopt);
  EXPECT_EQ(openai_finish_reason(FinishReason::kToolCalls), "tool_calls");
  EXPECT_EQ(openai_finish_reason(FinishReason::kAbort), "abort");
}

TEST(ModelsTest, ListAndCard) {
  std::vector<ModelCard> models = {{"llama", 1700000000, 4096, "baton"},
                                   {"qwen", 1700000005, 32768, "baton"}};
  Json list = Json::parse(models_list(models));
  EXPECT_EQ(list["object"], "list");
  ASSERT_EQ(list["data"].size(), 2u);
  const Json& m = list["data"][1];
  EXPECT_EQ(m["id"], "qwen");
  EXPECT_EQ(m["object"], "model");
  EXPECT_EQ(m["created"], 1700000005);
  EXPECT_EQ(m["owned_by"], "baton");
  EXPECT_EQ(m["max_model_len"], 32768);
  EXPECT_EQ(Json::parse(model_card(models[0])), list["data"][0]);
  EXPECT_EQ(Json::parse(models_list({}))["data"], Json::array());
}

}  // namespace
}  // namespace baton::protocol
