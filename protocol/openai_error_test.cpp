#include "protocol/openai_error.h"

#include <gtest/gtest.h>

#include <string>

#include "protocol/openai_request.h"

namespace baton::protocol {
namespace {

using Json = nlohmann::json;

Json parse_error(const Status& st) {
  Json body = Json::parse(error_body(st));
  EXPECT_TRUE(body.is_object());
  EXPECT_EQ(body.size(), 1u);
  EXPECT_TRUE(body.contains("error"));
  return body["error"];
}

TEST(OpenAiErrorTest, BodyShapeNamesTheParameter) {
  Json e = parse_error(invalid_argument("temperature: must be between 0 and 2, got 3.5"));
  EXPECT_EQ(e["message"], "temperature: must be between 0 and 2, got 3.5");
  EXPECT_EQ(e["type"], "invalid_request_error");
  EXPECT_EQ(e["param"], "temperature");
  EXPECT_EQ(e["code"], 400);
  // Key order as OpenAI writes it.
  EXPECT_EQ(error_body(invalid_argument("x")).rfind(R"({"error":{"message":"x","type":)", 0), 0u);
}

TEST(OpenAiErrorTest, TypesFollowTheHttpStatus) {
  struct Case {
    StatusCode code;
    int http;
    std::string type;
  };
  const Case cases[] = {
      {StatusCode::kInvalidArgument, 400, "invalid_request_error"},
      {StatusCode::kUnauthenticated, 401, "authentication_error"},
      {StatusCode::kPermissionDenied, 403, "permission_error"},
      {StatusCode::kNotFound, 404, "invalid_request_error"},
      {StatusCode::kPayloadTooLarge, 413, "invalid_request_error"},
      {StatusCode::kUnprocessable, 422, "invalid_request_error"},
      {StatusCode::kResourceExhausted, 429, "rate_limit_error"},
      {StatusCode::kInternal, 500, "server_error"},
      {StatusCode::kUnimplemented, 501, "server_error"},
      {StatusCode::kBadGateway, 502, "server_error"},
      {StatusCode::kUnavailable, 503, "server_overloaded"},
      {StatusCode::kDeadlineExceeded, 504, "server_error"},
  };
  for (const Case& c : cases) {
    Json e = parse_error(Status(c.code, "something went wrong"));
    EXPECT_EQ(e["code"], c.http) << code_name(c.code);
    EXPECT_EQ(e["type"], c.type) << code_name(c.code);
    EXPECT_EQ(openai_error_type(c.http), c.type);
  }
}

TEST(OpenAiErrorTest, ParamOnlyForFieldPathsOfClientErrors) {
  EXPECT_EQ(error_param("messages[0].content[1].type: unknown"), "messages[0].content[1].type");
  EXPECT_EQ(error_param("stream_options.include_usage: must be a boolean"),
            "stream_options.include_usage");
  EXPECT_EQ(error_param("model: required"), "model");
  EXPECT_FALSE(error_param("invalid JSON: parse error at line 1"));
  EXPECT_FALSE(error_param("line 3: oops"));
  EXPECT_FALSE(error_param("config.yaml:3: bad"));
  EXPECT_FALSE(error_param("no separator here"));
  EXPECT_FALSE(error_param(": empty prefix"));
  EXPECT_FALSE(error_param("3rd: starts with a digit"));

  EXPECT_TRUE(parse_error(not_found("model 'x' does not exist"))["param"].is_null());
  // A server-side message is never blamed on a request field.
  EXPECT_TRUE(parse_error(internal_error("cuda: out of memory"))["param"].is_null());
  EXPECT_TRUE(parse_error(unavailable("queue: full"))["param"].is_null());
}

TEST(OpenAiErrorTest, SseEventIsOneDataLine) {
  std::string event = error_sse_event(unavailable("engine\noverloaded"));
  ASSERT_EQ(event.rfind("data: ", 0), 0u);
  ASSERT_GE(event.size(), 8u);
  EXPECT_EQ(event.substr(event.size() - 2), "\n\n");
  std::string json = event.substr(6, event.size() - 8);
  EXPECT_EQ(json.find('\n'), std::string::npos);
  Json e = Json::parse(json)["error"];
  EXPECT_EQ(e["message"], "engine\noverloaded");
  EXPECT_EQ(e["code"], 503);
}

TEST(OpenAiErrorTest, InvalidUtf8AndOkStatusDoNotThrow) {
  Json e = parse_error(invalid_argument(std::string("prompt: bad byte \xff here")));
  EXPECT_EQ(e["param"], "prompt");
  EXPECT_NE(e["message"].get<std::string>().find("\xEF\xBF\xBD"), std::string::npos);
  Json ok = parse_error(Status::ok());
  EXPECT_EQ(ok["code"], 500);
  EXPECT_EQ(ok["type"], "server_error");
}

TEST(OpenAiErrorTest, ParserErrorsRoundTripIntoBodies) {
  auto req = parse_chat_request(
      R"({"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]})");
  ASSERT_FALSE(req.is_ok());
  Json e = parse_error(req.status());
  EXPECT_EQ(e["param"], "messages[0].content[0]");
  EXPECT_EQ(e["code"], 400);
  EXPECT_EQ(e["type"], "invalid_request_error");

  auto bad = parse_completion_request("{not json");
  Json b = parse_error(bad.status());
  EXPECT_TRUE(b["param"].is_null());
  EXPECT_EQ(b["code"], 400);
}

}  // namespace
}  // namespace baton::protocol
