#include "common/logging.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <vector>

namespace baton {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

LogOptions options(std::string level, bool json = false) {
  LogOptions o;
  o.level = std::move(level);
  o.json = json;
  return o;
}

struct CapturedLogger {
  explicit CapturedLogger(LogOptions options) {
    auto made = make_logger(options, std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
    BATON_CHECK(made.is_ok());
    logger = *made;
  }
  std::ostringstream out;
  std::shared_ptr<spdlog::logger> logger;
};

TEST(LogLevelTest, ParsesEveryNameCaseInsensitively) {
  EXPECT_EQ(*parse_log_level("trace"), LogLevel::kTrace);
  EXPECT_EQ(*parse_log_level("DEBUG"), LogLevel::kDebug);
  EXPECT_EQ(*parse_log_level("Info"), LogLevel::kInfo);
  EXPECT_EQ(*parse_log_level("warn"), LogLevel::kWarn);
  EXPECT_EQ(*parse_log_level("warning"), LogLevel::kWarn);
  EXPECT_EQ(*parse_log_level("error"), LogLevel::kError);
  EXPECT_EQ(*parse_log_level("off"), LogLevel::kOff);
  for (LogLevel l : {LogLevel::kTrace, LogLevel::kDebug, LogLevel::kInfo, LogLevel::kWarn,
                     LogLevel::kError, LogLevel::kOff}) {
    EXPECT_EQ(*parse_log_level(log_level_name(l)), l);
  }
}

TEST(LogLevelTest, BadNameIsInvalidArgumentNamingIt) {
  auto r = parse_log_level("verbose");
  ASSERT_FALSE(r.is_ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("'verbose'"), std::string::npos);

  Status s = init_logging(options("loud"));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'loud'"), std::string::npos);
  EXPECT_FALSE(make_logger(options(""), std::make_shared<spdlog::sinks::ostream_sink_mt>(std::cerr))
                   .is_ok());
}

TEST(JsonLogTest, EveryLineIsValidJsonWithTheExactMessage) {
  CapturedLogger c(options("trace", true));
  const std::vector<std::string> messages = {
      "plain",
      R"(she said "hi" \ back\slash)",
      "line one\nline two\r\n",
      std::string("ctrl \x01\x02\x1f\t\b\f end"),
      std::string("nul \0 inside", 12),
      "utf8 h\xC3\xA9llo \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x8E\x89",
      "{\"looks\": [\"like json\"]}",
      "",
  };
  for (const auto& m : messages) c.logger->info("{}", m);
  c.logger->flush();

  auto lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), messages.size()) << c.out.str();
  const std::regex ts(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)");
  for (size_t i = 0; i < lines.size(); ++i) {
    auto j = nlohmann::json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << lines[i];
    EXPECT_EQ(j.at("msg").get<std::string>(), messages[i]);
    EXPECT_EQ(j.at("level").get<std::string>(), "info");
    EXPECT_TRUE(std::regex_match(j.at("ts").get<std::string>(), ts)) << j.at("ts");
    EXPECT_TRUE(j.at("thread").is_number_unsigned());
    EXPECT_EQ(j.size(), 4u);
  }
}

TEST(JsonLogTest, InvalidUtf8IsReplacedNotPassedThrough) {
  CapturedLogger c(options("info", true));
  c.logger->warn("bad \xFF byte, truncated \xE4\xB8 and overlong \xC0\xAF");
  c.logger->flush();
  auto j = nlohmann::json::parse(lines_of(c.out.str()).at(0), nullptr, false);
  ASSERT_FALSE(j.is_discarded()) << c.out.str();
  EXPECT_EQ(j.at("level"), "warn");
  EXPECT_EQ(j.at("msg").get<std::string>(),
            "bad \xEF\xBF\xBD byte, truncated \xEF\xBF\xBD\xEF\xBF\xBD and overlong "
            "\xEF\xBF\xBD\xEF\xBF\xBD");
}

TEST(JsonLogTest, EscapesControlCharactersAsJson) {
  EXPECT_EQ(json_escape("a\"b\\c\nd\x01"), "a\\\"b\\\\c\\nd\\u0001");
  EXPECT_EQ(json_escape("\xF0\x9F\x8E\x89"), "\xF0\x9F\x8E\x89");
  EXPECT_EQ(json_escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(LoggingTest, LevelFiltersMessages) {
  CapturedLogger c(options("warn"));
  c.logger->info("hidden");
  c.logger->warn("shown {}", 1);
  c.logger->error("also shown");
  c.logger->flush();
  auto lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), 2u) << c.out.str();
  EXPECT_NE(lines[0].find("warning"), std::string::npos);
  EXPECT_NE(lines[0].find("shown 1"), std::string::npos);
  EXPECT_NE(lines[1].find("also shown"), std::string::npos);
}

TEST(LoggingTest, TextFormatHasUtcTimestampLevelAndMessage) {
  CapturedLogger c(LogOptions{});
  c.logger->info("hello {}", "world");
  c.logger->flush();
  const std::regex line(R"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6} info \[\d+\] hello world)");
  auto lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_TRUE(std::regex_match(lines[0], line)) << lines[0];
}

TEST(LoggingTest, FormatsIso8601Utc) {
  auto t = std::chrono::system_clock::time_point(std::chrono::seconds(1704067200) +
                                                 std::chrono::microseconds(123456));
  EXPECT_EQ(format_iso8601_utc(t), "2024-01-01T00:00:00.123456Z");
  EXPECT_EQ(format_iso8601_utc(std::chrono::system_clock::time_point{}),
            "1970-01-01T00:00:00.000000Z");
}

// The macros write to the process-wide default logger; restore it afterwards.
class DefaultLoggerTest : public ::testing::Test {
 protected:
  void SetUp() override { saved_ = spdlog::default_logger(); }
  void TearDown() override { spdlog::set_default_logger(saved_); }
  std::shared_ptr<spdlog::logger> saved_;
};

TEST_F(DefaultLoggerTest, MacrosWriteToTheDefaultLogger) {
  CapturedLogger c(options("debug", true));
  spdlog::set_default_logger(c.logger);
  BATON_LOG_TRACE("dropped");
  BATON_LOG_DEBUG("d {}", 1);
  BATON_LOG_INFO("i {}", "two");
  BATON_LOG_WARN("w");
  BATON_LOG_ERROR("e {:.1f}", 2.5);
  c.logger->flush();
  auto lines = lines_of(c.out.str());
  ASSERT_EQ(lines.size(), 4u) << c.out.str();
  std::vector<std::pair<std::string, std::string>> got;
  for (const auto& l : lines) {
    auto j = nlohmann::json::parse(l);
    got.emplace_back(j.at("level"), j.at("msg"));
  }
  EXPECT_EQ(got, (std::vector<std::pair<std::string, std::string>>{
                     {"debug", "d 1"}, {"info", "i two"}, {"warn", "w"}, {"error", "e 2.5"}}));
}

TEST_F(DefaultLoggerTest, InitLoggingWritesJsonLinesToAFile) {
  auto dir =
      std::filesystem::temp_directory_path() / ("baton_logging_test_" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = dir / "baton.log";
  ASSERT_TRUE(
      init_logging(LogOptions{.level = "info", .json = true, .file = file.string()}).is_ok());
  BATON_LOG_INFO("to file {}", 1);
  BATON_LOG_DEBUG("below level");
  spdlog::default_logger()->flush();
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  auto lines = lines_of(text.str());
  ASSERT_EQ(lines.size(), 1u) << text.str();
  EXPECT_EQ(nlohmann::json::parse(lines[0]).at("msg"), "to file 1");
  spdlog::set_default_logger(saved_);
  std::filesystem::remove_all(dir);
}

TEST_F(DefaultLoggerTest, UnopenableFileIsUnavailableAndKeepsThePreviousLogger) {
  auto blocker = std::filesystem::temp_directory_path() /
                 ("baton_logging_blocker_" + std::to_string(::getpid()));
  std::ofstream(blocker) << "a file, so it cannot be a directory";
  auto before = spdlog::default_logger();
  Status s = init_logging(LogOptions{.file = (blocker / "x.log").string()});
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("x.log"), std::string::npos);
  EXPECT_EQ(spdlog::default_logger(), before);
  std::filesystem::remove(blocker);
}

}  // namespace
}  // namespace baton
