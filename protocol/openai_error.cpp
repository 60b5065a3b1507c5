#include "protocol/openai_error.h"

#include <utility>

namespace baton::protocol {
namespace {

bool is_param_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
         c == '.' || c == '[' || c == ']';
}

}  // namespace

std::string_view openai_error_type(int http_status) {
  switch (http_status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "server_overloaded";
    default:
      return (http_status >= 400 && http_status < 500) ? "invalid_request_error" : "server_error";
  }
}

std::optional<std::string> error_param(std::string_view message) {
  size_t colon = message.find(": ");
  if (colon == std::string_view::npos || colon == 0) {
    return std::nullopt;
  }
  std::string_view prefix = message.substr(0, colon);
  char first = prefix.front();
  if (!((first >= 'a' && first <= 'z') || (first >= 'A' && first <= 'Z') || first == '_')) {
    return std::nullopt;
  }
  for (char c : prefix) {
    if (!is_param_char(c)) {
      return std::nullopt;
    }
  }
  return std::string(prefix);
}

nlohmann::ordered_json error_object(const Status& status) {
  int http = status.is_ok() ? 500 : status.http();
  std::string message = status.is_ok() ? "unknown error" : status.message();
  if (message.empty()) {
    message = std::string(code_name(status.code()));
  }
  nlohmann::ordered_json param = nullptr;
  if (http >= 400 && http < 500) {
    if (std::optional<std::string> p = error_param(message)) {
      param = *p;
    }
  }
  nlohmann::ordered_json error = nlohmann::ordered_json::object();
  error["message"] = std::move(message);
  error["type"] = std::string(openai_error_type(http));
  error["param"] = std::move(param);
  error["code"] = http;
  nlohmann::ordered_json body = nlohmann::ordered_json::object();
  body["error"] = std::move(error);
  return body;
}

std::string error_body(const Status& status) {
  // Messages can quote client bytes; a stray invalid UTF-8 sequence must not
  // turn an error reply into an exception.
  return error_object(status).dump(-1, ' ', false,
                                   nlohmann::ordered_json::error_handler_t::replace);
}

std::string error_sse_event(const Status& status) {
  // A compact dump has no newline, so one data line carries the whole event.
  return "data: " + error_body(status) + "\n\n";
}

}  // namespace baton::protocol
