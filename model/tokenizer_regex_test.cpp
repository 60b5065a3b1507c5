#include "model/tokenizer_regex.h"

#include <gtest/gtest.h>

namespace baton::model {
namespace {

constexpr const char* kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr const char* kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

std::vector<std::string> pieces(const char* pattern, std::string_view text) {
  auto re = Regex::compile(pattern);
  EXPECT_TRUE(re.is_ok()) << re.status().to_string();
  if (!re.is_ok()) return {};
  auto spans = re->find_all_utf8(text);
  EXPECT_TRUE(spans.is_ok());
  std::vector<std::string> out;
  for (auto [s, e] : *spans) out.emplace_back(text.substr(s, e - s));
  return out;
}

using V = std::vector<std::string>;

TEST(RegexTest, Llama3SplitPattern) {
  EXPECT_EQ(pieces(kLlama3, "Hello world's 12345 !!\n\n  x"),
            (V{"Hello", " world", "'s", " ", "123", "45", " !!\n\n", " ", " x"}));
  EXPECT_EQ(pieces(kLlama3, "I'M here"), (V{"I", "'M", " here"}));
  EXPECT_EQ(pieces(kLlama3, "h\u00e9llo w\u00f6rld \u4f60\u597d"),
            (V{"h\u00e9llo", " w\u00f6rld", " \u4f60\u597d"}));
  EXPECT_EQ(pieces(kLlama3, "a\r\n\r\nb   "), (V{"a", "\r\n\r\n", "b", "   "}));
  EXPECT_EQ(pieces(kLlama3, "(x)"), (V{"(x", ")"}));
}

TEST(RegexTest, Qwen2SplitsDigitsOneByOne) {
  EXPECT_EQ(pieces(kQwen2, "abc 2024!"), (V{"abc", " ", "2", "0", "2", "4", "!"}));
}

TEST(RegexTest, Gpt2PatternIsCaseSensitive) {
  EXPECT_EQ(pieces(kGpt2, "Hello world's 12345 !!"), (V{"Hello", " world", "'s", " 12345", " !!"}));
  EXPECT_EQ(pieces(kGpt2, "IT'S"), (V{"IT", "'", "S"}));
}

TEST(RegexTest, CaseInsensitiveGroupUsesCaseFolding) {
  EXPECT_EQ(pieces("(?i:'s)", "'S '\u017f"), (V{"'S", "'\u017f"}));
  EXPECT_EQ(pieces("(?i)ab", "AB aB"), (V{"AB", "aB"}));
}

TEST(RegexTest, Quantifiers) {
  EXPECT_EQ(pieces("a+?", "aaa"), (V{"a", "a", "a"}));
  EXPECT_EQ(pieces("a{2,3}", "aaaaaaa"), (V{"aaa", "aaa"}));
  EXPECT_EQ(pieces("a{2}", "aaaaa"), (V{"aa", "aa"}));
  EXPECT_EQ(pieces("ab*c", "ac abbbc"), (V{"ac", "abbbc"}));
  EXPECT_EQ(pieces("(?:ab)+", "ababa"), (V{"abab"}));
  EXPECT_EQ(pieces("a++a", "aaaa"), (V{}));  // possessive gives nothing back
  EXPECT_EQ(pieces("x{", "x{"), (V{"x{"}));  // not a quantifier: literal
}

TEST(RegexTest, AlternationIsLeftmostFirstNotLongest) {
  EXPECT_EQ(pieces("a|ab", "ab"), (V{"a"}));
  EXPECT_EQ(pieces("ab|a", "ab"), (V{"ab"}));
}

TEST(RegexTest, ClassesAndLookahead) {
  EXPECT_EQ(pieces("[^a-c\\d]+", "abxy1z"), (V{"xy", "z"}));
  EXPECT_EQ(pieces("[\\p{Lu}]+", "abCDe"), (V{"CD"}));
  EXPECT_EQ(pieces("\\P{L}+", "ab12c"), (V{"12"}));
  EXPECT_EQ(pieces("a(?=b)", "ac ab"), (V{"a"}));
  EXPECT_EQ(pieces("\\w+", "foo_bar baz"), (V{"foo_bar", "baz"}));
  EXPECT_EQ(pieces("[-a]+", "a-b"), (V{"a-"}));
  EXPECT_EQ(pieces("\\x41\\u0042", "AB"), (V{"AB"}));
}

TEST(RegexTest, EmptyMatchesAdvance) { EXPECT_EQ(pieces("x*", "ab"), (V{"", "", ""})); }

TEST(RegexTest, UnsupportedSyntaxIsAnError) {
  EXPECT_EQ(Regex::compile("(?<=a)b").status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(Regex::compile("\\bword").status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(Regex::compile("\\p{Greek}").status().code(), StatusCode::kUnimplemented);
  EXPECT_EQ(Regex::compile("(ab").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Regex::compile("ab)").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Regex::compile("*a").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Regex::compile("[abc").status().code(), StatusCode::kInvalidArgument);
  auto bad = Regex::compile("(?<=a)b");
  EXPECT_NE(bad.status().message().find("(?<=a)b"), std::string::npos);
}

TEST(RegexTest, LongInputIsLinearEnough) {
  // 200k characters of mixed text: must not blow the stack or take ages.
  std::string text;
  for (int i = 0; i < 10000; ++i) text += "word, 123 \n ";
  text += std::string(50000, ' ') + "x";
  auto re = Regex::compile(kLlama3);
  ASSERT_TRUE(re.is_ok());
  auto spans = re->find_all_utf8(text);
  ASSERT_TRUE(spans.is_ok());
  size_t covered = 0;
  for (auto [s, e] : *spans) covered += e - s;
  EXPECT_EQ(covered, text.size());  // the pattern matches every character
}

}  // namespace
}  // namespace baton::model
