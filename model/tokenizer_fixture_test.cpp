// Parity with the Python `tokenizers`/transformers libraries: every directory
// tests/fixtures/<name>/ holding tokenizer.json and expected.json (written by
// the reference implementation) must give identical ids and text.

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/tokenizer.h"
#include "model/tokenizer_stream.h"

namespace baton::model {
namespace {

namespace fs = std::filesystem;

std::vector<fs::path> fixture_dirs() {
  std::vector<fs::path> out;
  const fs::path root = fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root, ec)) {
    if (entry.is_directory() && fs::exists(entry.path() / "tokenizer.json") &&
        fs::exists(entry.path() / "expected.json")) {
      out.push_back(entry.path());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return nlohmann::json::parse(ss.str());
}

std::string streamed(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip) {
  IncrementalDecoder dec(tok, skip);
  std::string out;
  for (int32_t id : ids) {
    auto piece = dec.step(id);
    EXPECT_TRUE(piece.is_ok());
    if (piece.is_ok()) out += *piece;
  }
  auto rest = dec.finish();
  EXPECT_TRUE(rest.is_ok());
  if (rest.is_ok()) out += *rest;
  return out;
}

TEST(TokenizerFixtureTest, MatchesReferenceImplementation) {
  const auto dirs = fixture_dirs();
  ASSERT_FALSE(dirs.empty()) << "tokenizer fixtures are missing: expected directories "
                                "tests/fixtures/tiny-*/ with tokenizer.json and expected.json";
  size_t cases = 0;
  for (const fs::path& dir : dirs) {
    SCOPED_TRACE(dir.filename().string());
    auto tok = Tokenizer::from_dir(dir.string());
    ASSERT_TRUE(tok.is_ok()) << tok.status().to_string();
    const nlohmann::json expected = read_json(dir / "expected.json");
    ASSERT_TRUE(expected.contains("tokenizer")) << "no \"tokenizer\" key in expected.json";
    for (const auto& c : expected["tokenizer"]) {
      const std::string text = c["text"].get<std::string>();
      SCOPED_TRACE("text: " + nlohmann::json(text).dump());
      const auto ids = c["ids"].get<std::vector<int32_t>>();
      const auto ids_no_special = c["ids_no_special"].get<std::vector<int32_t>>();

      auto got = tok->encode(text, /*add_special_tokens=*/true);
      ASSERT_TRUE(got.is_ok()) << got.status().to_string();
      EXPECT_EQ(*got, ids);
      auto got_plain = tok->encode(text, /*add_special_tokens=*/false);
      ASSERT_TRUE(got_plain.is_ok());
      EXPECT_EQ(*got_plain, ids_no_special);

      auto decoded = tok->decode(ids, /*skip_special_tokens=*/false);
      ASSERT_TRUE(decoded.is_ok());
      EXPECT_EQ(*decoded, c["decoded"].get<std::string>());
      auto decoded_skip = tok->decode(ids, /*skip_special_tokens=*/true);
      ASSERT_TRUE(decoded_skip.is_ok());
      EXPECT_EQ(*decoded_skip, c["decoded_skip"].get<std::string>());

      EXPECT_EQ(streamed(*tok, ids, false), *decoded);
      EXPECT_EQ(streamed(*tok, ids, true), *decoded_skip);
      ++cases;
    }
  }
  EXPECT_GT(cases, 0u);
}

}  // namespace
}  // namespace baton::model
