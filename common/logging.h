#pragma once

// Logging for every Baton process, on top of spdlog.
//
// init_logging() configures spdlog's process-wide default logger once at
// startup (the only global logging state); the BATON_LOG_* macros write to it
// with fmt formatting checked at compile time:
//
//   BATON_LOG_INFO("listening on {}:{}", host, port);
//
// Two formats: text for people ("2024-01-01 12:00:00.123456 info [tid] msg",
// UTC) and JSON lines for log collectors, one object per line:
//   {"ts":"2024-01-01T12:00:00.123456Z","level":"info","msg":"...","thread":123}
// The message is always valid JSON: quotes, backslashes and control characters
// are escaped and invalid UTF-8 is replaced by U+FFFD.
//
// Thread-safety: the macros and loggers made here are thread-safe (spdlog _mt
// sinks). init_logging() replaces the default logger and should run before
// other threads log.

#include <spdlog/formatter.h>
#include <spdlog/logger.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace baton {

enum class LogLevel { kTrace, kDebug, kInfo, kWarn, kError, kOff };

// Accepts trace, debug, info, warn (or warning), error, off; case-insensitive.
// Anything else: kInvalidArgument naming the value and the accepted names.
Result<LogLevel> parse_log_level(std::string_view name);
// "trace", "debug", "info", "warn", "error", "off".
std::string_view log_level_name(LogLevel level);
spdlog::level::level_enum to_spdlog_level(LogLevel level);

struct LogOptions {
  // A level name as parse_log_level() accepts it (from config or a flag).
  std::string level = "info";
  // JSON lines instead of the text format.
  bool json = false;
  // When set, logs are appended to this file instead of stderr.
  std::optional<std::string> file;
};

// Configures the default logger (named "baton"). Errors: kInvalidArgument for
// a bad level name, kUnavailable when the log file cannot be opened. On error
// the previous default logger is left in place.
Status init_logging(const LogOptions& options);

// A logger with the options' level and format writing to `sink` (options.file
// is ignored). For tests and for components that want their own destination,
// e.g. an ostream_sink over a std::ostringstream. Errors: bad level name.
Result<std::shared_ptr<spdlog::logger>> make_logger(const LogOptions& options,
                                                    spdlog::sink_ptr sink);

// The JSON-lines formatter used when LogOptions::json is set; stateless.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override;
};

// `text` as the inside of a JSON string literal (no surrounding quotes):
// ", \ and control characters escaped, invalid UTF-8 bytes replaced by U+FFFD.
std::string json_escape(std::string_view text);
void append_json_escaped(std::string& out, std::string_view text);

// "2024-01-01T12:00:00.123456Z" for a system_clock time point.
std::string format_iso8601_utc(std::chrono::system_clock::time_point t);

}  // namespace baton

#define BATON_LOG_AT(level, ...)                                                           \
  ::spdlog::default_logger_raw()->log(                                                     \
      ::spdlog::source_loc{__FILE__, __LINE__, static_cast<const char*>(__func__)}, level, \
      __VA_ARGS__)

#define BATON_LOG_TRACE(...) BATON_LOG_AT(::spdlog::level::trace, __VA_ARGS__)
#define BATON_LOG_DEBUG(...) BATON_LOG_AT(::spdlog::level::debug, __VA_ARGS__)
#define BATON_LOG_INFO(...) BATON_LOG_AT(::spdlog::level::info, __VA_ARGS__)
#define BATON_LOG_WARN(...) BATON_LOG_AT(::spdlog::level::warn, __VA_ARGS__)
#define BATON_LOG_ERROR(...) BATON_LOG_AT(::spdlog::level::err, __VA_ARGS__)
