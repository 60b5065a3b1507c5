#include "model/chat_template.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

namespace baton::model {
namespace {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

ordered_json load_cases() {
  std::ifstream in(fs::path(BATON_SOURCE_DIR) / "tests/fixtures/templates/cases.json");
  std::stringstream ss;
  ss << in.rdbuf();
  return ordered_json::parse(ss.str(), nullptr, false);
}

// Every case of tools/make_template_fixtures.py: jinja2, configured as
// transformers configures it, rendered these bytes or raised this error.
TEST(ChatTemplateFixtures, RendersExactlyWhatJinja2Rendered) {
  ordered_json fixtures = load_cases();
  ASSERT_FALSE(fixtures.is_discarded()) << "cases.json missing or invalid";
  ASSERT_GE(fixtures["cases"].size(), 100u);
  RenderOptions options;
  options.now = std::chrono::system_clock::from_time_t(fixtures["now"].get<std::time_t>());

  std::map<std::string, ChatTemplateSet> sets;
  for (auto it = fixtures["templates"].begin(); it != fixtures["templates"].end(); ++it) {
    auto parsed = ChatTemplate::parse(it.value()["source"].get<std::string>());
    ASSERT_TRUE(parsed.is_ok()) << it.key() << ": " << parsed.status().to_string();
    ChatTemplateSet set;
    set.templates["default"] = *parsed;
    set.special_tokens = it.value()["special_tokens"];
    sets[it.key()] = set;
  }
  int rendered = 0;
  int errors = 0;
  for (const auto& c : fixtures["cases"]) {
    std::string name = c["template"].get<std::string>() + "/" +
                       c["conversation"].get<std::string>() +
                       (c["add_generation_prompt"].get<bool>() ? "/gen" : "") +
                       (c["extra_kwargs"].empty() ? "" : "/kwargs");
    SCOPED_TRACE(name);
    const ordered_json* tools = c["tools"].is_null() ? nullptr : &c["tools"];
    auto out = sets[c["template"].get<std::string>()].apply(
        c["messages"], c["add_generation_prompt"].get<bool>(), tools, c["extra_kwargs"], options);
    if (c.contains("expected")) {
      ASSERT_TRUE(out.is_ok()) << out.status().to_string();
      EXPECT_EQ(*out, c["expected"].get<std::string>());
      ++rendered;
    } else {
      ASSERT_FALSE(out.is_ok()) << "jinja2 raised " << c["error"] << " but Baton rendered:\n"
                                << *out;
      EXPECT_NE(out.status().message().find(c["error"].get<std::string>()), std::string::npos)
          << out.status().to_string();
      ++errors;
    }
  }
  EXPECT_GT(rendered, 0);
  EXPECT_GT(errors, 0);
}

class TempModelDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("baton_chat_template_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void write(const std::string& name, const std::string& text) {
    fs::create_directories((dir_ / name).parent_path());
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }
  fs::path dir_;
};

TEST_F(TempModelDir, LoadsStringTemplateAndSpecialTokensFromTokenizerConfig) {
  ordered_json config = {
      {"bos_token", {{"__type", "AddedToken"}, {"content", "<s>"}, {"lstrip", false}}},
      {"eos_token", "</s>"},
      {"pad_token", nullptr},
      {"additional_special_tokens", {"<extra_0>", {{"content", "<extra_1>"}}}},
      {"chat_template",
       "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
       "{% if add_generation_prompt %}[assistant]{% endif %}{{ eos_token }}"
       "{{ additional_special_tokens | join(',') }}|{{ pad_token is defined }}"}};
  write("tokenizer_config.json", config.dump());
  auto set = load_chat_template(dir_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  EXPECT_EQ(set->special_tokens["bos_token"], "<s>");
  EXPECT_FALSE(set->special_tokens.contains("pad_token"));
  ordered_json messages = {{{"role", "user"}, {"content", "hi"}}};
  auto out = set->apply(messages, true, nullptr, ordered_json::object());
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "<s>[user]hi[assistant]</s><extra_0>,<extra_1>|False");
}

TEST_F(TempModelDir, ChatTemplateJinjaFileWinsOverTokenizerConfig) {
  write("tokenizer_config.json", R"({"eos_token": "E", "chat_template": "old"})");
  write("chat_template.jinja", "new {{ eos_token }}\n");
  auto set = load_chat_template(dir_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  auto out = set->apply(ordered_json::array(), false, nullptr, ordered_json::object());
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "new E");  // jinja2 drops the file's trailing newline
}

TEST_F(TempModelDir, NamedTemplatesUseToolUseForRequestsWithTools) {
  write("tokenizer_config.json", R"({"chat_template": [
      {"name": "default", "template": "plain {{ tools is none }}"},
      {"name": "tool_use", "template": "tools {{ tools | length }}"}]})");
  auto set = load_chat_template(dir_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  ordered_json tools = ordered_json::array({{{"type", "function"}}});
  auto with_tools = set->apply(ordered_json::array(), false, &tools, ordered_json::object());
  auto without = set->apply(ordered_json::array(), false, nullptr, ordered_json::object());
  ASSERT_TRUE(with_tools.is_ok() && without.is_ok());
  EXPECT_EQ(*with_tools, "tools 1");
  EXPECT_EQ(*without, "plain True");
}

TEST_F(TempModelDir, AdditionalChatTemplatesDirectoryAddsNamedTemplates) {
  write("chat_template.jinja", "main");
  write("additional_chat_templates/rag.jinja", "rag {{ documents }}");
  auto set = load_chat_template(dir_);
  ASSERT_TRUE(set.is_ok()) << set.status().to_string();
  auto out = set->apply(ordered_json::array(), false, nullptr, ordered_json{{"documents", "D"}}, {},
                        "rag");
  ASSERT_TRUE(out.is_ok()) << out.status().to_string();
  EXPECT_EQ(*out, "rag D");
}

TEST_F(TempModelDir, MissingTemplateIsNotFound) {
  write("tokenizer_config.json", R"({"eos_token": "</s>"})");
  auto set = load_chat_template(dir_);
  ASSERT_FALSE(set.is_ok());
  EXPECT_EQ(set.status().code(), StatusCode::kNotFound);
}

TEST_F(TempModelDir, BrokenTemplateIsRejectedAtLoadWithItsLine) {
  write("chat_template.jinja", "ok\n{% for m in messages %}\n{{ m.content }}\n");
  auto set = load_chat_template(dir_);
  ASSERT_FALSE(set.is_ok());
  EXPECT_EQ(set.status().code(), StatusCode::kUnprocessable);
  EXPECT_NE(set.status().message().find("endfor"), std::string::npos) << set.status().message();
}

TEST(ChatTemplate, RaiseExceptionIsAnInvalidArgumentWithLineAndMessage) {
  auto t = ChatTemplate::parse(
      "a\n{% if messages | length == 0 %}\n"
      "{{ raise_exception('need a message') }}\n{% endif %}");
  ASSERT_TRUE(t.is_ok());
  auto out = t->render(ordered_json{{"messages", ordered_json::array()}});
  ASSERT_FALSE(out.is_ok());
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(out.status().message(), "line 3: need a message");
}

TEST(ChatTemplate, ToolsAreNoneButDefinedWhenAbsent) {
  ChatTemplateSet set;
  set.templates["default"] =
      *ChatTemplate::parse("{{ tools is defined }} {{ tools is none }} {{ documents is none }}");
  auto out = set.apply(ordered_json::array(), false, nullptr, ordered_json::object());
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "True True True");
}

TEST(ChatTemplate, ExtraKwargsOverrideSpecialTokensButNotMessages) {
  ChatTemplateSet set;
  set.templates["default"] = *ChatTemplate::parse("{{ bos_token }}{{ enable_thinking }}");
  set.special_tokens["bos_token"] = "<s>";
  auto out = set.apply(ordered_json::array(), false, nullptr,
                       ordered_json{{"bos_token", "B"}, {"enable_thinking", false}});
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "BFalse");
  auto bad = set.apply(ordered_json::array(), false, nullptr, ordered_json{{"messages", 1}});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
}

TEST(ChatTemplate, OrderedJsonKeepsKeyOrderInTojson) {
  auto t = ChatTemplate::parse("{{ tool | tojson }}");
  ASSERT_TRUE(t.is_ok());
  ordered_json ctx = {
      {"tool", {{"type", "function"}, {"name", "f"}, {"arguments", {{"z", 1}, {"a", 2}}}}}};
  auto out = t->render(ctx);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, R"({"type": "function", "name": "f", "arguments": {"z": 1, "a": 2}})");
}

TEST(ChatTemplate, StrftimeNowReadsTheInjectedClock) {
  auto t = ChatTemplate::parse("{{ strftime_now('%Y-%m-%d') }}");
  ASSERT_TRUE(t.is_ok());
  RenderOptions options;
  options.now = std::chrono::system_clock::from_time_t(1721995200);  // 2024-07-26 12:00 UTC
  auto out = t->render(ordered_json::object(), options);
  ASSERT_TRUE(out.is_ok());
  EXPECT_EQ(*out, "2024-07-26");
}

TEST(ChatTemplate, EmptyTemplateObjectFailsToRender) {
  ChatTemplate t;
  EXPECT_FALSE(t.render(ordered_json::object()).is_ok());
}

}  // namespace
}  // namespace baton::model

namespace baton::model {
namespace {

// Model directories written by transformers itself (tests/fixtures/tiny-*):
// each expected.json lists apply_chat_template results for its "chat" cases.
TEST(ChatTemplateModelFixtures, MatchTransformersForEveryTinyModel) {
  fs::path root = fs::path(BATON_SOURCE_DIR) / "tests/fixtures";
  int checked = 0;
  for (const auto& entry : fs::directory_iterator(root)) {
    if (entry.path().filename().string().rfind("tiny-", 0) != 0) continue;
    std::ifstream in(entry.path() / "expected.json");
    if (!in) continue;
    std::stringstream ss;
    ss << in.rdbuf();
    ordered_json expected = ordered_json::parse(ss.str(), nullptr, false);
    if (expected.is_discarded() || !expected.contains("chat")) continue;
    SCOPED_TRACE(entry.path().filename().string());
    auto set = load_chat_template(entry.path());
    ASSERT_TRUE(set.is_ok()) << set.status().to_string();
    for (const auto& c : expected["chat"]) {
      auto out = set->apply(c["messages"], c.value("add_generation_prompt", false), nullptr,
                            ordered_json::object());
      if (c.contains("error")) {
        EXPECT_FALSE(out.is_ok()) << "transformers raised " << c["error"];
      } else {
        ASSERT_TRUE(out.is_ok()) << out.status().to_string();
        EXPECT_EQ(*out, c["text"].get<std::string>());
      }
      ++checked;
    }
  }
  if (checked == 0) GTEST_SKIP() << "no tests/fixtures/tiny-* model directories with chat cases";
}

}  // namespace
}  // namespace baton::model
