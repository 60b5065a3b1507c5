#include "common/logging.h"

#include <fmt/format.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <time.h>

#include <array>
#include <cctype>
#include <chrono>
#include <exception>

namespace baton {

namespace {

constexpr std::string_view kTextPattern = "%Y-%m-%d %H:%M:%S.%f %^%l%$ [%t] %v";

struct LevelName {
  std::string_view name;
  LogLevel level;
};
constexpr std::array<LevelName, 7> kLevelNames = {{
    {"trace", LogLevel::kTrace},
    {"debug", LogLevel::kDebug},
    {"info", LogLevel::kInfo},
    {"warn", LogLevel::kWarn},
    {"warning", LogLevel::kWarn},
    {"error", LogLevel::kError},
    {"off", LogLevel::kOff},
}};

// Our own names, not spdlog's ("warning", "critical"), so the JSON "level"
// field uses the same words as the --log-level flag.
std::string_view spdlog_level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "trace";
    case spdlog::level::debug:
      return "debug";
    case spdlog::level::info:
      return "info";
    case spdlog::level::warn:
      return "warn";
    case spdlog::level::err:
      return "error";
    case spdlog::level::critical:
      return "critical";
    default:
      return "off";
  }
}

bool is_continuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Length of the well-formed UTF-8 sequence starting at text[i] (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF), or 0.
size_t utf8_sequence_length(std::string_view text, size_t i) {
  auto byte = [&](size_t k) { return static_cast<unsigned char>(text[k]); };
  unsigned char c = byte(i);
  size_t left = text.size() - i;
  if (c >= 0xC2 && c <= 0xDF) {
    return left >= 2 && is_continuation(byte(i + 1)) ? 2 : 0;
  }
  if (c >= 0xE0 && c <= 0xEF) {
    if (left < 3 || !is_continuation(byte(i + 1)) || !is_continuation(byte(i + 2))) return 0;
    unsigned char c1 = byte(i + 1);
    if (c == 0xE0 && c1 < 0xA0) return 0;  // overlong
    if (c == 0xED && c1 > 0x9F) return 0;  // UTF-16 surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (left < 4 || !is_continuation(byte(i + 1)) || !is_continuation(byte(i + 2)) ||
        !is_continuation(byte(i + 3))) {
      return 0;
    }
    unsigned char c1 = byte(i + 1);
    if (c == 0xF0 && c1 < 0x90) return 0;  // overlong
    if (c == 0xF4 && c1 > 0x8F) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

spdlog::sink_ptr make_default_sink(const LogOptions& options) {
  if (options.file) {
    return std::make_shared<spdlog::sinks::basic_file_sink_mt>(*options.file, /*truncate=*/false);
  }
  // Colour codes would corrupt JSON lines; text gets colour only on a terminal
  // (the colour sink checks isatty itself).
  if (options.json) return std::make_shared<spdlog::sinks::stderr_sink_mt>();
  return std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
}

}  // namespace

Result<LogLevel> parse_log_level(std::string_view name) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (const auto& entry : kLevelNames) {
    if (entry.name == lower) return entry.level;
  }
  return invalid_argument(fmt::format(
      "unknown log level '{}' (expected one of: trace, debug, info, warn, error, off)", name));
}

std::string_view log_level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return "trace";
    case LogLevel::kDebug:
      return "debug";
    case LogLevel::kInfo:
      return "info";
    case LogLevel::kWarn:
      return "warn";
    case LogLevel::kError:
      return "error";
    case LogLevel::kOff:
      return "off";
  }
  return "off";
}

spdlog::level::level_enum to_spdlog_level(LogLevel level) {
  switch (level) {
    case LogLevel::kTrace:
      return spdlog::level::trace;
    case LogLevel::kDebug:
      return spdlog::level::debug;
    case LogLevel::kInfo:
      return spdlog::level::info;
    case LogLevel::kWarn:
      return spdlog::level::warn;
    case LogLevel::kError:
      return spdlog::level::err;
    case LogLevel::kOff:
      return spdlog::level::off;
  }
  return spdlog::level::off;
}

void append_json_escaped(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (size_t i = 0; i < text.size();) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      size_t n = utf8_sequence_length(text, i);
      if (n == 0) {
        out += "\xEF\xBF\xBD";  // U+FFFD for one bad byte, then resynchronise
        ++i;
      } else {
        out.append(text.substr(i, n));
        i += n;
      }
      continue;
    }
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
}

std::string json_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 8);
  append_json_escaped(out, text);
  return out;
}

std::string format_iso8601_utc(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  auto since_epoch = duration_cast<microseconds>(t.time_since_epoch());
  auto secs = floor<seconds>(since_epoch);
  auto micros = (since_epoch - secs).count();
  time_t tt = static_cast<time_t>(secs.count());
  struct tm tm_utc {};
  gmtime_r(&tt, &tm_utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm_utc.tm_year + 1900,
                     tm_utc.tm_mon + 1, tm_utc.tm_mday, tm_utc.tm_hour, tm_utc.tm_min,
                     tm_utc.tm_sec, micros);
}

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  std::string line;
  line.reserve(96 + msg.payload.size());
  line += R"({"ts":")";
  line += format_iso8601_utc(msg.time);
  line += R"(","level":")";
  line += spdlog_level_name(msg.level);
  line += R"(","msg":")";
  append_json_escaped(line, std::string_view(msg.payload.data(), msg.payload.size()));
  line += R"(","thread":)";
  line += std::to_string(msg.thread_id);
  line += "}\n";
  dest.append(line.data(), line.data() + line.size());
}

std::unique_ptr<spdlog::formatter> JsonLogFormatter::clone() const {
  return std::make_unique<JsonLogFormatter>();
}

Result<std::shared_ptr<spdlog::logger>> make_logger(const LogOptions& options,
                                                    spdlog::sink_ptr sink) {
  BATON_ASSIGN_OR_RETURN(LogLevel level, parse_log_level(options.level));
  if (options.json) {
    sink->set_formatter(std::make_unique<JsonLogFormatter>());
  } else {
    sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        std::string(kTextPattern), spdlog::pattern_time_type::utc));
  }
  auto logger = std::make_shared<spdlog::logger>("baton", std::move(sink));
  logger->set_level(to_spdlog_level(level));
  // Warnings and errors often precede a crash; do not leave them in a buffer.
  logger->flush_on(spdlog::level::warn);
  return logger;
}

Status init_logging(const LogOptions& options) {
  BATON_RETURN_IF_ERROR(parse_log_level(options.level).status());
  spdlog::sink_ptr sink;
  try {
    sink = make_default_sink(options);
  } catch (const std::exception& e) {
    return unavailable(
        fmt::format("cannot open log file '{}': {}", options.file.value_or(""), e.what()));
  }
  BATON_ASSIGN_OR_RETURN(auto logger, make_logger(options, std::move(sink)));
  spdlog::set_default_logger(std::move(logger));
  return Status::ok();
}

}  // namespace baton
