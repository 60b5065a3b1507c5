// Hand-made tokenizer.json files exercising each component; expected ids are
// worked out by hand from the vocab and merge ranks written here.

#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "model/tokenizer_stream.h"

namespace baton::model {
namespace {

using nlohmann::json;
using Ids = std::vector<int32_t>;

Tokenizer load(const json& j) {
  auto t = Tokenizer::from_json(j.dump());
  EXPECT_TRUE(t.is_ok()) << t.status().to_string();
  return std::move(t).value();
}

Ids enc(const Tokenizer& t, std::string_view text, bool special = false) {
  auto r = t.encode(text, special);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : Ids{};
}

std::string dec(const Tokenizer& t, const Ids& ids, bool skip = false) {
  auto r = t.decode(ids, skip);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return r.is_ok() ? *r : std::string();
}

// GPT-2 style: ByteLevel pre-tokenizer and decoder ("\u0120" is the byte-level
// form of a space).
json gpt2_style() {
  json vocab = {{"h", 0},
                {"e", 1},
                {"l", 2},
                {"o", 3},
                {"\u0120", 4},
                {"w", 5},
                {"r", 6},
                {"d", 7},
                {"he", 8},
                {"ll", 9},
                {"hell", 10},
                {"hello", 11},
                {"\u0120w", 12},
                {"or", 13},
                {"\u0120wor", 14},
                {"\u0120worl", 15},
                {"\u0120world", 16},
                {"\u00c3", 17},
                {"\u00a9", 18},
                {"!", 19}};
  json merges = {"h e", "l l",        "he ll",       "hell o",      "\u0120 w",
                 "o r", "\u0120w or", "\u0120wor l", "\u0120worl d"};
  return {
      {"added_tokens",
       {{{"id", 20}, {"content", "<|end|>"}, {"special", true}, {"normalized", false}},
        {{"id", 21},
         {"content", "<mask>"},
         {"special", false},
         {"lstrip", true},
         {"normalized", false}},
        {{"id", 22},
         {"content", "<r>"},
         {"special", false},
         {"rstrip", true},
         {"normalized", false}},
        {{"id", 23},
         {"content", "lo"},
         {"special", false},
         {"single_word", true},
         {"normalized", true}}}},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"post_processor", {{"type", "ByteLevel"}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

TEST(TokenizerTest, ByteLevelBpeMergesByRank) {
  Tokenizer t = load(gpt2_style());
  EXPECT_EQ(enc(t, "hello world"), (Ids{11, 16}));
  EXPECT_EQ(enc(t, "hello world", /*special=*/true), (Ids{11, 16}));  // ByteLevel adds nothing
  EXPECT_EQ(dec(t, {11, 16}), "hello world");
  EXPECT_EQ(enc(t, "\u00e9!"), (Ids{17, 18, 19}));  // é is bytes C3 A9
  EXPECT_EQ(dec(t, {17, 18, 19}), "\u00e9!");
  EXPECT_EQ(dec(t, {17}), "\uFFFD");  // half a character
  EXPECT_EQ(t.vocab_size(), 24);
  EXPECT_EQ(t.token_to_id("hello"), 11);
  EXPECT_EQ(t.token_to_id("<|end|>"), 20);
  EXPECT_EQ(t.token_to_id("nope"), std::nullopt);
  EXPECT_EQ(t.id_to_token(16), "\u0120world");
  EXPECT_EQ(t.id_to_token(999), "");
}

TEST(TokenizerTest, AddedTokensAreMatchedInRawText) {
  Tokenizer t = load(gpt2_style());
  EXPECT_EQ(enc(t, "hello<|end|> world"), (Ids{11, 20, 16}));
  EXPECT_TRUE(t.is_special(20));
  EXPECT_FALSE(t.is_special(21));
  EXPECT_FALSE(t.is_special(11));
  EXPECT_EQ(dec(t, {11, 20, 16}), "hello<|end|> world");
  EXPECT_EQ(dec(t, {11, 20, 16}, /*skip=*/true), "hello world");
  // lstrip swallows the spaces before the token; rstrip those after.
  EXPECT_EQ(enc(t, "hello  <mask>"), (Ids{11, 21}));
  EXPECT_EQ(enc(t, "<r>  hello"), (Ids{22, 11}));
  // single_word: "lo" only matches as a whole word.
  EXPECT_EQ(enc(t, "lo"), (Ids{23}));
  EXPECT_EQ(enc(t, "hello"), (Ids{11}));
  // Ids the tokenizer does not know are skipped when decoding.
  EXPECT_EQ(dec(t, {11, 12345}), "hello");
}

TEST(TokenizerTest, MergeRankDecidesAndPairFormIsAccepted) {
  auto make = [](json merges) {
    return load({{"model",
                  {{"type", "BPE"},
                   {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}}},
                   {"merges", merges}}}});
  };
  // b+c has the better (lower) rank, so a stays alone.
  EXPECT_EQ(enc(make(json::array({json::array({"b", "c"}), json::array({"a", "b"})})), "abc"),
            (Ids{0, 4}));
  EXPECT_EQ(enc(make(json::array({"a b", "b c"})), "abc"), (Ids{3, 2}));
  // Without a decoder, tokens are joined by spaces.
  EXPECT_EQ(dec(make(json::array({"a b"})), {3, 2}), "ab c");
}

TEST(TokenizerTest, IgnoreMergesTakesWholeWordsFromTheVocab) {
  json j = {{"model",
             {{"type", "BPE"},
              {"vocab", {{"a", 0}, {"b", 1}, {"ab", 2}, {"aab", 3}}},
              {"merges", {"a b"}},
              {"ignore_merges", true}}}};
  EXPECT_EQ(enc(load(j), "aab"), (Ids{3}));
  j["model"]["ignore_merges"] = false;
  EXPECT_EQ(enc(load(j), "aab"), (Ids{0, 2}));  // no merge builds "aab"
}

TEST(TokenizerTest, SubwordPrefixAndSuffix) {
  json j = {{"model",
             {{"type", "BPE"},
              {"vocab", {{"a", 0}, {"##b", 1}, {"##c</w>", 2}, {"a##b", 3}, {"ab", 4}}},
              {"merges", {"a ##b"}},
              {"continuing_subword_prefix", "##"},
              {"end_of_word_suffix", "</w>"}}}};
  // a ##b ##c</w>; merging "a" with "##b" gives "ab" (the prefix is dropped).
  EXPECT_EQ(enc(load(j), "abc"), (Ids{4, 2}));
}

// Llama 2 style: Prepend/Replace normalizer, byte fallback, Strip decoder.
json llama2_style() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  vocab["\u2581"] = 259;
  vocab["h"] = 260;
  vocab["i"] = 261;
  vocab["hi"] = 262;
  vocab["\u2581hi"] = 263;
  return {{"added_tokens",
           {{{"id", 0}, {"content", "<unk>"}, {"special", true}, {"normalized", false}},
            {{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}},
            {{"id", 2}, {"content", "</s>"}, {"special", true}, {"normalized", false}}}},
          {"normalizer",
           {{"type", "Sequence"},
            {"normalizers",
             {{{"type", "Prepend"}, {"prepend", "\u2581"}},
              {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}}},
          {"pre_tokenizer", nullptr},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"pair",
             {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
              {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
            {"special_tokens",
             {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}},
              {"</s>", {{"id", "</s>"}, {"ids", {2}}, {"tokens", {"</s>"}}}}}}}},
          {"decoder",
           {{"type", "Sequence"},
            {"decoders",
             {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
              {{"type", "ByteFallback"}},
              {{"type", "Fuse"}},
              {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", {"h i", "\u2581 hi"}},
            {"unk_token", "<unk>"},
            {"fuse_unk", true},
            {"byte_fallback", true}}}};
}

TEST(TokenizerTest, Llama2StyleNormalizerTemplateAndByteFallback) {
  Tokenizer t = load(llama2_style());
  EXPECT_EQ(enc(t, "hi hi"), (Ids{263, 263}));
  EXPECT_EQ(enc(t, "hi hi", /*special=*/true), (Ids{1, 263, 263}));
  auto pair = t.encode_pair("hi", "hi", true);
  ASSERT_TRUE(pair.is_ok());
  EXPECT_EQ(*pair, (Ids{1, 263, 2, 263}));
  // é is not in the vocab: its UTF-8 bytes C3 A9 become <0xC3> <0xA9>.
  EXPECT_EQ(enc(t, "h\u00e9"), (Ids{259, 260, 3 + 0xC3, 3 + 0xA9}));
  EXPECT_EQ(dec(t, {259, 260, 3 + 0xC3, 3 + 0xA9}), "h\u00e9");
  EXPECT_EQ(dec(t, {263, 3 + 0xC3}), "hi\uFFFD");
  EXPECT_EQ(dec(t, {1, 263, 263}), "<s> hi hi");
  EXPECT_EQ(dec(t, {1, 263, 263}, /*skip=*/true), "hi hi");
  // The Prepend normalizer runs on every piece between added tokens.
  EXPECT_EQ(enc(t, "hi</s>hi"), (Ids{263, 2, 263}));
}

TEST(TokenizerTest, UnknownCharactersWithoutByteFallback) {
  json j = llama2_style();
  j["model"]["byte_fallback"] = false;
  EXPECT_EQ(enc(load(j), "hxyi"), (Ids{259, 260, 0, 261}));  // x and y fused into one <unk>
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(enc(load(j), "hxyi"), (Ids{259, 260, 0, 0, 261}));
}

// Mistral style: Metaspace pre-tokenizer and decoder.
json metaspace_style(const std::string& scheme, bool split) {
  json ms = {{"type", "Metaspace"},
             {"replacement", "\u2581"},
             {"prepend_scheme", scheme},
             {"split", split}};
  return {
      {"added_tokens", {{{"id", 1}, {"content", "<s>"}, {"special", true}, {"normalized", false}}}},
      {"pre_tokenizer", ms},
      {"decoder", ms},
      {"model",
       {{"type", "BPE"},
        {"vocab",
         {{"\u2581", 3},
          {"a", 4},
          {"\u2581a", 5},
          {"\u2581b", 6},
          {"b", 7},
          {"a\u2581", 8},
          {"a\u2581b", 9}}},
        {"merges", {"a \u2581", "a\u2581 b", "\u2581 a", "\u2581 b"}}}}};
}

TEST(TokenizerTest, MetaspacePrependSchemes) {
  Tokenizer first = load(metaspace_style("first", true));
  EXPECT_EQ(enc(first, "a b"), (Ids{5, 6}));
  // After an added token the piece does not start the input: no prefix.
  EXPECT_EQ(enc(first, "<s>a b"), (Ids{1, 4, 6}));
  EXPECT_EQ(dec(first, {5, 6}), "a b");
  EXPECT_EQ(enc(load(metaspace_style("always", true)), "<s>a b"), (Ids{1, 5, 6}));
  EXPECT_EQ(enc(load(metaspace_style("never", true)), "a b"), (Ids{4, 6}));
  Tokenizer never = load(metaspace_style("never", true));
  EXPECT_EQ(dec(never, {4, 6}), "a b");
  // Without split the whole text is one pre-token, so merges cross spaces.
  EXPECT_EQ(enc(load(metaspace_style("never", false)), "a b"), (Ids{9}));
}

TEST(TokenizerTest, SplitBehaviorsAndDigits) {
  auto make = [](json pre) {
    json vocab;
    const std::string chars = "ab1234-";
    for (size_t i = 0; i < chars.size(); ++i) vocab[std::string(1, chars[i])] = i;
    vocab["12"] = 10;
    vocab["34"] = 11;
    vocab["a-"] = 12;
    vocab["-b"] = 13;
    return load(
        {{"pre_tokenizer", pre},
         {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", {"1 2", "3 4", "a -", "- b"}}}}});
  };
  json split = {{"type", "Split"}, {"pattern", {{"String", "-"}}}, {"invert", false}};
  split["behavior"] = "Removed";
  EXPECT_EQ(enc(make(split), "a-b"), (Ids{0, 1}));
  split["behavior"] = "Isolated";
  EXPECT_EQ(enc(make(split), "a-b"), (Ids{0, 6, 1}));
  split["behavior"] = "MergedWithPrevious";
  EXPECT_EQ(enc(make(split), "a-b"), (Ids{12, 1}));
  split["behavior"] = "MergedWithNext";
  EXPECT_EQ(enc(make(split), "a-b"), (Ids{0, 13}));
  split["behavior"] = "Contiguous";
  EXPECT_EQ(enc(make(split), "a--b"), (Ids{0, 6, 6, 1}));  // "--" is one pre-token
  EXPECT_EQ(enc(make({{"type", "Digits"}, {"individual_digits", true}}), "1234"),
            (Ids{2, 3, 4, 5}));
  EXPECT_EQ(enc(make({{"type", "Digits"}, {"individual_digits", false}}), "a1234"),
            (Ids{0, 10, 11}));
  json seq = {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "Split"}, {"pattern", {{"Regex", "\\d{2}"}}}, {"behavior", "Isolated"}},
                {{"type", "Digits"}, {"individual_digits", false}}}}};
  EXPECT_EQ(enc(make(seq), "1234"), (Ids{10, 11}));
}

TEST(TokenizerTest, NfcNormalizerComposes) {
  json j = {{"normalizer", {{"type", "NFC"}}},
            {"model",
             {{"type", "BPE"}, {"vocab", {{"\u00e9", 0}, {"e", 1}}}, {"merges", json::array()}}}};
  EXPECT_EQ(enc(load(j), "e\u0301"), (Ids{0}));
}

TEST(TokenizerTest, InvalidUtf8IsRejected) {
  Tokenizer t = load(gpt2_style());
  auto r = t.encode("hi \xC3", false);
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(enc(t, "").empty());
}

TEST(TokenizerTest, LoadErrorsNameTheFileAndField) {
  auto missing = Tokenizer::from_file("/nonexistent/tokenizer.json");
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/tokenizer.json"), std::string::npos);

  EXPECT_EQ(Tokenizer::from_json("{not json").status().code(), StatusCode::kInvalidArgument);

  json j = gpt2_style();
  j["normalizer"] = {{"type", "Lowercase"}};
  auto r = Tokenizer::from_json(j.dump());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("Lowercase"), std::string::npos);

  j = gpt2_style();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers", {{{"type", "ByteLevel"}}, {{"type", "Split"}}}}};
  r = Tokenizer::from_json(j.dump());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("pre_tokenizer.pretokenizers[1].pattern"), std::string::npos)
      << r.status().message();

  j = gpt2_style();
  j["model"]["merges"] = {"h zz"};
  r = Tokenizer::from_json(j.dump());
  EXPECT_NE(r.status().message().find("model.merges[0]"), std::string::npos);

  j = gpt2_style();
  j["model"]["type"] = "Unigram";
  EXPECT_EQ(Tokenizer::from_json(j.dump()).status().code(), StatusCode::kUnimplemented);

  j = gpt2_style();
  j["decoder"] = {{"type", "CTC"}};
  r = Tokenizer::from_json(j.dump());
  EXPECT_EQ(r.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(r.status().message().find("decoder"), std::string::npos);
}

std::vector<std::string> stream(const Tokenizer& t, const Ids& ids, bool skip = false) {
  IncrementalDecoder d(t, skip);
  std::vector<std::string> out;
  for (int32_t id : ids) {
    auto s = d.step(id);
    EXPECT_TRUE(s.is_ok());
    out.push_back(*s);
  }
  auto rest = d.finish();
  EXPECT_TRUE(rest.is_ok());
  out.push_back(*rest);
  return out;
}

using V = std::vector<std::string>;

TEST(IncrementalDecoderTest, WaitsForWholeCharacters) {
  Tokenizer t = load(gpt2_style());
  EXPECT_EQ(stream(t, {11, 17, 18, 16}), (V{"hello", "", "\u00e9", " world", ""}));
  // An unfinished character at the end comes out as decode() shows it.
  EXPECT_EQ(stream(t, {11, 17}), (V{"hello", "", "\uFFFD"}));
  EXPECT_EQ(stream(t, {11, 20, 16}, /*skip=*/true), (V{"hello", "", " world", ""}));
}

TEST(IncrementalDecoderTest, KeepsSpacesThatWindowDecodingWouldStrip) {
  Tokenizer t = load(llama2_style());
  // A run of byte-fallback tokens is held until a token that ends the run.
  EXPECT_EQ(stream(t, {1, 263, 263, 3 + 0xC3, 3 + 0xA9, 260}),
            (V{"<s>", " hi", " hi", "", "", "\u00e9h", ""}));
  EXPECT_EQ(stream(t, {263, 263}, /*skip=*/true), (V{"hi", " hi", ""}));
  Tokenizer ms = load(metaspace_style("first", true));
  EXPECT_EQ(stream(ms, {5, 6, 5}), (V{"a", " b", " a", ""}));
}

TEST(IncrementalDecoderTest, CleanUpTokenizationSpaces) {
  json j = gpt2_style();
  j["model"]["vocab"]["\u0120."] = 30;
  j["model"]["vocab"]["."] = 31;
  Tokenizer t = load(j);
  t.set_clean_up_tokenization_spaces(true);
  const Ids ids = {11, 4, 31, 16};  // "hello" " " "." " world"
  EXPECT_EQ(dec(t, ids), "hello. world");
  std::string joined;
  for (const auto& s : stream(t, ids)) joined += s;
  EXPECT_EQ(joined, "hello. world");
}

}  // namespace
}  // namespace baton::model

namespace baton::model {
namespace {

// A byte token that is valid on its own (0x02) followed by one that makes the
// run invalid: decode() renders both as U+FFFD, and the stream must agree.
TEST(IncrementalDecoderTest, ByteRunsRenderAsTheFullDecodeDoes) {
  Tokenizer t = load(llama2_style());
  const std::vector<int32_t> ids = {263, 3 + 0x02, 3 + 0xF3, 263, 3 + 0xA9};
  std::string joined;
  for (const auto& s : stream(t, ids, /*skip=*/true)) joined += s;
  auto full = t.decode(ids, true);
  ASSERT_TRUE(full.is_ok());
  EXPECT_EQ(joined, *full);
  EXPECT_NE(full->find("\xEF\xBF\xBD"), std::string::npos);
}

}  // namespace
}  // namespace baton::model
