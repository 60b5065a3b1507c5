#pragma once

// A small backtracking regular-expression engine over Unicode code points,
// for the split patterns of Hugging Face tokenizer.json files (GPT-2, Llama 3,
// Qwen2 and similar).
//
// Semantics follow the Oniguruma/Perl family that `tokenizers` uses:
// leftmost-first alternation, greedy/lazy/possessive quantifiers. Supported
// syntax: literals and escapes (\n \r \t \f \v \xHH \x{H..} \uHHHH, escaped
// punctuation), `.`, classes `[...]` with ranges, negation and escapes inside,
// \s \S \d \D \w \W, \p{..} / \P{..} / \pL over general categories, groups
// `( )`, `(?: )`, `(?i: )`, `(?i)`, lookahead `(?= )` / `(?! )`, atomic
// `(?> )`, quantifiers ? * + {m} {m,} {m,n} with lazy `?` and possessive `+`
// suffixes, anchors \A \z. Anything else is rejected by compile() with an
// error naming the construct and its position.
//
// A compiled Regex is immutable; copies share the program. All const methods
// are thread-safe.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace baton::model {

namespace regex_detail {
struct Node;
}

class Regex {
 public:
  // [start, end) offsets of one match.
  using Span = std::pair<size_t, size_t>;

  static Result<Regex> compile(std::string_view pattern);

  // All non-overlapping leftmost-first matches in `text`, as code point
  // offsets. After an empty match the search resumes one code point later.
  // Fails (kResourceExhausted) only when backtracking nests too deeply.
  Result<std::vector<Span>> find_all(const std::vector<char32_t>& text) const;
  // The same over UTF-8 text (which must be valid), as byte offsets.
  Result<std::vector<Span>> find_all_utf8(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  std::shared_ptr<const regex_detail::Node> root_;
};

}  // namespace baton::model
