#include "common/status.h"

#include <gtest/gtest.h>

#include <set>

namespace baton {
namespace {

TEST(Status, EveryCodeMapsToOneHttpStatusAndBack) {
  std::set<int> seen;
  for (int c = 0; c <= static_cast<int>(StatusCode::kDeadlineExceeded); ++c) {
    auto code = static_cast<StatusCode>(c);
    int http = http_status(code);
    EXPECT_TRUE(seen.insert(http).second) << "two codes share HTTP " << http;
    EXPECT_EQ(code_from_http(http), code) << code_name(code);
    EXPECT_NE(code_name(code), "unknown");
  }
}

TEST(Status, UnknownHttpStatusesMapToTheirClass) {
  EXPECT_EQ(code_from_http(418), StatusCode::kInvalidArgument);
  EXPECT_EQ(code_from_http(507), StatusCode::kInternal);
  EXPECT_EQ(code_from_http(204), StatusCode::kOk);
}

TEST(Status, ContextIsPrefixedAndOkStaysOk) {
  Status s = not_found("tensor model.norm.weight").with_context("loading /m/model.safetensors");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "loading /m/model.safetensors: tensor model.norm.weight");
  EXPECT_EQ(s.http(), 404);
  EXPECT_EQ(s.to_string(), "not_found: loading /m/model.safetensors: tensor model.norm.weight");
  EXPECT_TRUE(Status::ok().with_context("x").is_ok());
}

Result<int> parse_positive(int v) {
  if (v <= 0) return invalid_argument("must be positive, got " + std::to_string(v));
  return v;
}

Result<int> doubled(int v) {
  BATON_ASSIGN_OR_RETURN(int x, parse_positive(v));
  return 2 * x;
}

Status check_all(std::initializer_list<int> vs) {
  for (int v : vs) BATON_RETURN_IF_ERROR(parse_positive(v).status());
  return Status::ok();
}

TEST(Result, CarriesValueOrError) {
  auto ok = doubled(21);
  ASSERT_TRUE(ok.is_ok());
  EXPECT_EQ(*ok, 42);
  auto bad = doubled(-1);
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(), "must be positive, got -1");
  EXPECT_EQ(bad.value_or(7), 7);
  EXPECT_TRUE(check_all({1, 2}).is_ok());
  EXPECT_EQ(check_all({1, 0, 2}).code(), StatusCode::kInvalidArgument);
}

TEST(Result, OkStatusWithoutValueBecomesInternalError) {
  Result<int> r{Status::ok()};
  EXPECT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInternal);
}

TEST(ResultDeathTest, ValueOnErrorAborts) {
  Result<int> r = invalid_argument("x");
  EXPECT_DEATH((void)r.value(), "BATON_CHECK failed");
}

}  // namespace
}  // namespace baton
