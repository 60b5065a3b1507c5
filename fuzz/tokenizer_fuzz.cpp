// Fuzz target: the tokenizer (model/tokenizer.h) on the fixture models'
// tokenizer.json files: tiny-llama3 (byte-level BPE) and tiny-llama2
// (SentencePiece-style BPE with byte fallback). The first byte picks the
// tokenizer and the direction; the rest is text or token ids.
//
// Checked, besides no crash or UB:
//  - encode() refuses invalid UTF-8 and accepts valid UTF-8;
//  - byte-level BPE is lossless: decode(encode(s)) == s for any valid UTF-8 s
//    (added tokens in s come back as themselves);
//  - the SentencePiece-style tokenizer is lossless on text without U+2581
//    (its space marker, which decodes to a space) and without added-token
//    strings (after which the normalizer prepends a space marker again, as
//    in Hugging Face's tokenizers);
//  - decode() of arbitrary ids returns valid UTF-8.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "model/tokenizer.h"

namespace {

using baton::model::Tokenizer;

struct Fixture {
  Tokenizer tokenizer;
  bool byte_level = false;
};

Fixture load(const char* dir, bool byte_level) {
  auto t = Tokenizer::from_file(std::string(BATON_SOURCE_DIR) + "/tests/fixtures/" + dir +
                                "/tokenizer.json");
  if (!t.is_ok()) {
    std::fprintf(stderr, "tokenizer_fuzz: %s\n", t.status().to_string().c_str());
    std::abort();
  }
  return Fixture{std::move(t).value(), byte_level};
}

const Fixture& fixture(int which) {
  static const Fixture llama3 = load("tiny-llama3", true);
  static const Fixture llama2 = load("tiny-llama2", false);
  return which == 0 ? llama3 : llama2;
}

void require(bool ok, const char* what, std::string_view a = "", std::string_view b = "") {
  if (ok) return;
  std::fprintf(stderr, "tokenizer_fuzz: %s\n  in:  %.*s\n  out: %.*s\n", what,
               static_cast<int>(a.size()), a.data(), static_cast<int>(b.size()), b.data());
  std::abort();
}

// Mirrors the UTF-8 rules encode() documents (no overlongs, no surrogates, at
// most U+10FFFF), written independently of model/unicode.h on purpose.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      auto cc = static_cast<uint8_t>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

bool has_added_token(const Tokenizer& t, std::string_view s) {
  for (const auto& added : t.added_tokens()) {
    if (!added.content.empty() && s.find(added.content) != std::string_view::npos) return true;
  }
  return false;
}

void fuzz_text(const Fixture& f, std::string_view text, bool add_special) {
  auto ids = f.tokenizer.encode(text, add_special);
  bool valid = valid_utf8(text);
  require(ids.is_ok() == valid, valid ? "valid UTF-8 refused" : "invalid UTF-8 accepted", text);
  if (!ids.is_ok()) return;
  for (int32_t id : ids.value())
    require(id >= 0 && id < f.tokenizer.vocab_size(), "id range", text);
  auto back = f.tokenizer.decode(ids.value(), /*skip_special_tokens=*/add_special);
  require(back.is_ok(), "decode of encode failed", text);
  require(valid_utf8(back.value()), "decode gave invalid UTF-8", text, back.value());
  bool lossless = f.byte_level || (text.find("\xE2\x96\x81") == std::string_view::npos &&
                                   !has_added_token(f.tokenizer, text));
  if (lossless && !add_special) {
    require(back.value() == text, "round trip changed the text", text, back.value());
  }
}

void fuzz_ids(const Fixture& f, const uint8_t* data, size_t size, bool skip_special) {
  std::vector<int32_t> ids(size / 2);
  for (size_t i = 0; i < ids.size(); ++i) {
    // Mostly ids near the vocabulary, some far outside it (and negative).
    int32_t v = static_cast<int16_t>(data[2 * i] | (data[2 * i + 1] << 8));
    ids[i] = v;
  }
  auto text = f.tokenizer.decode(ids, skip_special);
  if (text.is_ok()) require(valid_utf8(text.value()), "decode gave invalid UTF-8", text.value());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t selector = data[0];
  ++data;
  --size;
  const Fixture& f = fixture(selector & 1);
  if (selector & 2) {
    fuzz_ids(f, data, size, selector & 4);
  } else {
    fuzz_text(f, std::string_view(reinterpret_cast<const char*>(data), size), selector & 4);
  }
  return 0;
}
