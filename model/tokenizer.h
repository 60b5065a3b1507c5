#pragma once

// Tokenizer: loads a Hugging Face tokenizer.json and encodes/decodes exactly
// like the Rust `tokenizers` library (as used by transformers).
//
// Pipeline of encode(): added tokens are cut out of the raw text, the rest is
// normalized, pre-tokenized and BPE-encoded, then the post-processor adds
// special tokens when asked. decode() maps ids back to token strings (added
// tokens first), drops special tokens when asked, and runs the decoder.
// Components: see tokenizer_normalizer.h, tokenizer_pre_tokenizer.h,
// tokenizer_bpe.h, tokenizer_post_processor.h, tokenizer_decoder.h.
//
// A Tokenizer is immutable after loading: every const method is thread-safe,
// and copies share the loaded data. Ids are int32_t.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model/tokenizer_added_vocab.h"

namespace baton::model {

class Tokenizer {
 public:
  // Loads tokenizer.json. Errors name the file and the JSON field.
  static Result<Tokenizer> from_file(const std::string& path);
  // Loads <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json
  // for transformers' clean_up_tokenization_spaces.
  static Result<Tokenizer> from_dir(const std::string& dir);
  static Result<Tokenizer> from_json(std::string_view json);

  // Encodes UTF-8 text; invalid UTF-8 is kInvalidArgument.
  Result<std::vector<int32_t>> encode(std::string_view text, bool add_special_tokens) const;
  // Encodes a pair of texts (the post-processor's pair template joins them).
  Result<std::vector<int32_t>> encode_pair(std::string_view a, std::string_view b,
                                           bool add_special_tokens) const;
  // Decodes ids to valid UTF-8 (invalid byte sequences become U+FFFD). Ids
  // that are not in the vocabulary are skipped, as in tokenizers.
  Result<std::string> decode(std::span<const int32_t> ids, bool skip_special_tokens) const;

  // One past the largest id of the vocab and the added tokens.
  int32_t vocab_size() const;
  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token string of `id` ("" when unknown).
  std::string id_to_token(int32_t id) const;
  // True for ids of added tokens marked special (bos, eos, chat markers...).
  bool is_special(int32_t id) const;
  const std::vector<AddedToken>& added_tokens() const;

  // transformers' clean_up_tokenization_spaces: decode() then removes the
  // space before . , ! ? and English contractions. Off unless set here or
  // by from_dir().
  bool clean_up_tokenization_spaces() const;
  void set_clean_up_tokenization_spaces(bool on);

 private:
  struct Impl;
  Result<std::vector<int32_t>> encode_text(std::string_view text) const;
  Status encode_plain(std::string_view normalized_piece, bool at_origin,
                      std::vector<int32_t>& out) const;

  std::shared_ptr<const Impl> impl_;
  bool cleanup_ = false;
};

// transformers' clean_up_tokenization on decoded text.
std::string clean_up_tokenization(std::string_view text);

}  // namespace baton::model
