#include "common/status.h"

#include <cstdio>

namespace baton {

namespace {
struct CodeInfo {
  StatusCode code;
  int http;
  std::string_view name;
};
constexpr CodeInfo kCodes[] = {
    {StatusCode::kOk, 200, "ok"},
    {StatusCode::kInvalidArgument, 400, "invalid_argument"},
    {StatusCode::kUnauthenticated, 401, "unauthenticated"},
    {StatusCode::kPermissionDenied, 403, "permission_denied"},
    {StatusCode::kNotFound, 404, "not_found"},
    {StatusCode::kRequestTimeout, 408, "request_timeout"},
    {StatusCode::kConflict, 409, "conflict"},
    {StatusCode::kPayloadTooLarge, 413, "payload_too_large"},
    {StatusCode::kUnprocessable, 422, "unprocessable"},
    {StatusCode::kResourceExhausted, 429, "resource_exhausted"},
    {StatusCode::kCancelled, 499, "cancelled"},
    {StatusCode::kInternal, 500, "internal"},
    {StatusCode::kUnimplemented, 501, "unimplemented"},
    {StatusCode::kBadGateway, 502, "bad_gateway"},
    {StatusCode::kUnavailable, 503, "unavailable"},
    {StatusCode::kDeadlineExceeded, 504, "deadline_exceeded"},
};
}  // namespace

int http_status(StatusCode code) {
  for (const auto& c : kCodes) {
    if (c.code == code) return c.http;
  }
  return 500;
}

StatusCode code_from_http(int http) {
  for (const auto& c : kCodes) {
    if (c.http == http) return c.code;
  }
  if (http >= 200 && http < 300) return StatusCode::kOk;
  if (http >= 400 && http < 500) return StatusCode::kInvalidArgument;
  return StatusCode::kInternal;
}

std::string_view code_name(StatusCode code) {
  for (const auto& c : kCodes) {
    if (c.code == code) return c.name;
  }
  return "unknown";
}

Status Status::with_context(std::string_view context) const {
  if (is_ok()) return *this;
  std::string msg(context);
  msg += ": ";
  msg += message_;
  return Status(code_, std::move(msg));
}

std::string Status::to_string() const {
  std::string out(code_name(code_));
  if (!message_.empty()) {
    out += ": ";
    out += message_;
  }
  return out;
}

Status invalid_argument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
Status not_found(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
Status internal_error(std::string m) { return {StatusCode::kInternal, std::move(m)}; }
Status unavailable(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
Status resource_exhausted(std::string m) { return {StatusCode::kResourceExhausted, std::move(m)}; }
Status deadline_exceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }
Status cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
Status unimplemented(std::string m) { return {StatusCode::kUnimplemented, std::move(m)}; }
Status data_error(std::string m) { return {StatusCode::kUnprocessable, std::move(m)}; }

namespace detail {
void check_failed(const char* expr, const char* file, int line, const std::string& msg) {
  std::fprintf(stderr, "BATON_CHECK failed: %s at %s:%d%s%s\n", expr, file, line,
               msg.empty() ? "" : ": ", msg.c_str());
  std::fflush(stderr);
  std::abort();
}
}  // namespace detail

}  // namespace baton
