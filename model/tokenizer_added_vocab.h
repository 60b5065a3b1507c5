#pragma once

// Added tokens of tokenizer.json ("added_tokens"): matched in the input before
// the model sees it, longest match first at the leftmost position, honouring
// single_word, lstrip, rstrip and normalized. Immutable after construction;
// all const methods are thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "model/tokenizer_normalizer.h"

namespace baton::model {

struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;  // matched on normalized text (else on the raw input)
  bool special = false;
};

class AddedVocabulary {
 public:
  // A byte range of the text being split; `id` is set for a matched token.
  struct Segment {
    size_t start;
    size_t end;
    std::optional<int32_t> id;
  };

  AddedVocabulary() = default;
  // `normalizer` (may be null) is applied to the contents of normalized
  // tokens, which are then searched in normalized text.
  static Result<AddedVocabulary> create(std::vector<AddedToken> tokens,
                                        const Normalizer* normalizer);

  // Splits `text` by the raw (normalized=false) or by the normalized tokens.
  // Plain segments are never empty; the segments cover `text` except for
  // whitespace absorbed by lstrip/rstrip.
  std::vector<Segment> split(std::string_view text, bool normalized_tokens) const;

  const AddedToken* by_id(int32_t id) const;
  std::optional<int32_t> id_of(std::string_view content) const;
  // True when `content` is the content of a special added token.
  bool is_special_content(std::string_view content) const;
  const std::vector<AddedToken>& tokens() const { return tokens_; }

 private:
  // A byte trie of token patterns.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> next;  // sorted by byte
      int32_t token = -1;                             // index into tokens_
    };
    std::vector<Node> nodes{Node{}};
    void insert(std::string_view s, int32_t token);
    // Longest token starting at text[pos]: (token index, length).
    std::optional<std::pair<int32_t, size_t>> longest_at(std::string_view text, size_t pos) const;
  };

  std::vector<AddedToken> tokens_;
  std::unordered_map<int32_t, size_t> by_id_;
  std::unordered_map<std::string, size_t> by_content_;
  Trie raw_trie_;
  Trie normalized_trie_;
};

}  // namespace baton::model
