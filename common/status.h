#pragma once

// Status and Result<T>: how every fallible call in Baton reports failure.
//
// Each StatusCode maps to exactly one HTTP status and back, so an error raised
// deep in the engine reaches a client with the right status and no table of
// special cases in between. Messages say what failed and where ("config.yaml:3:
// server.port: expected an integer"). Exceptions never cross a module or thread
// boundary; BATON_CHECK is for programmer errors only, never for input.

#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace baton {

enum class StatusCode {
  kOk,                 // 200
  kInvalidArgument,    // 400: bad input from the caller
  kUnauthenticated,    // 401: missing or wrong credentials
  kPermissionDenied,   // 403: credentials fine, action not allowed
  kNotFound,           // 404: unknown model, route or id
  kRequestTimeout,     // 408: the peer was too slow sending its request
  kConflict,           // 409: state conflict (already exists, wrong state)
  kPayloadTooLarge,    // 413: body or prompt over a configured limit
  kUnprocessable,      // 422: well-formed but semantically unusable input
  kResourceExhausted,  // 429: rate limit or quota
  kCancelled,          // 499: the client went away
  kInternal,           // 500: a bug or an unexpected failure
  kUnimplemented,      // 501: a feature this build does not have
  kBadGateway,         // 502: an upstream answered badly
  kUnavailable,        // 503: overloaded or not ready; retry elsewhere/later
  kDeadlineExceeded,   // 504: a deadline passed before the work finished
};

// The HTTP status for a code (kOk is 200).
int http_status(StatusCode code);
// The code for an HTTP status; statuses with no code of their own map to the
// nearest class (other 4xx to kInvalidArgument, other 5xx to kInternal).
StatusCode code_from_http(int http);
// Stable lower-case name, e.g. "invalid_argument"; used in logs and JSON.
std::string_view code_name(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }

  bool is_ok() const { return code_ == StatusCode::kOk; }
  explicit operator bool() const { return is_ok(); }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  int http() const { return http_status(code_); }

  // Prefix context: Status(kNotFound, "x").with_context("loading m") has the
  // message "loading m: x".
  Status with_context(std::string_view context) const;
  // "not_found: loading m: x"
  std::string to_string() const;

  bool operator==(const Status& other) const = default;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Shorthands for building errors.
Status invalid_argument(std::string message);
Status not_found(std::string message);
Status internal_error(std::string message);
Status unavailable(std::string message);
Status resource_exhausted(std::string message);
Status deadline_exceeded(std::string message);
Status cancelled(std::string message);
Status unimplemented(std::string message);
Status data_error(std::string message);  // kUnprocessable: corrupt or inconsistent data

// Result<T>: a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<T, Status>, "Result<Status> makes no sense");

 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    if (std::get<Status>(v_).is_ok()) {
      v_ = Status(StatusCode::kInternal, "Result constructed from an ok Status without a value");
    }
  }

  bool is_ok() const { return std::holds_alternative<T>(v_); }
  explicit operator bool() const { return is_ok(); }

  // The status: ok when a value is held.
  Status status() const { return is_ok() ? Status() : std::get<Status>(v_); }

  // Accessors; calling them on an error is a programmer error and aborts.
  T& value() & { return checked(); }
  const T& value() const& { return const_cast<Result*>(this)->checked(); }
  T&& value() && { return std::move(checked()); }
  T& operator*() & { return checked(); }
  const T& operator*() const& { return const_cast<Result*>(this)->checked(); }
  T* operator->() { return &checked(); }
  const T* operator->() const { return &const_cast<Result*>(this)->checked(); }

  T value_or(T fallback) const& { return is_ok() ? std::get<T>(v_) : std::move(fallback); }

 private:
  T& checked() {
    if (!is_ok()) {
      detail_abort_on_error(std::get<Status>(v_));
    }
    return std::get<T>(v_);
  }
  [[noreturn]] static void detail_abort_on_error(const Status& s);

  std::variant<T, Status> v_;
};

namespace detail {
[[noreturn]] void check_failed(const char* expr, const char* file, int line,
                               const std::string& msg);
}  // namespace detail

template <typename T>
void Result<T>::detail_abort_on_error(const Status& s) {
  detail::check_failed("Result::value() on an error", __FILE__, __LINE__, s.to_string());
}

}  // namespace baton

// Programmer-error assertion: aborts with the location. Never use on input.
#define BATON_CHECK(cond)                                                      \
  do {                                                                         \
    if (!(cond)) ::baton::detail::check_failed(#cond, __FILE__, __LINE__, ""); \
  } while (0)
#define BATON_CHECK_MSG(cond, msg)                                                \
  do {                                                                            \
    if (!(cond)) ::baton::detail::check_failed(#cond, __FILE__, __LINE__, (msg)); \
  } while (0)

#define BATON_CONCAT_INNER(a, b) a##b
#define BATON_CONCAT(a, b) BATON_CONCAT_INNER(a, b)

// Return the Status if it is an error.
#define BATON_RETURN_IF_ERROR(expr)           \
  do {                                        \
    ::baton::Status _baton_st = (expr);       \
    if (!_baton_st.is_ok()) return _baton_st; \
  } while (0)

// `BATON_ASSIGN_OR_RETURN(auto x, make_x());` declares x from a Result or
// returns its error.
#define BATON_ASSIGN_OR_RETURN(lhs, expr) \
  BATON_ASSIGN_OR_RETURN_IMPL(BATON_CONCAT(_baton_res_, __LINE__), lhs, expr)
#define BATON_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.is_ok()) return tmp.status();            \
  lhs = std::move(tmp).value()
