#pragma once

// Pre-tokenizers of tokenizer.json: split normalized text into pre-tokens
// that the BPE model encodes independently.
// Supported types: Split, ByteLevel, Metaspace, Digits, Whitespace,
// WhitespaceSplit, Punctuation, BertPreTokenizer, Sequence. Others fail to load
// with kUnimplemented naming the type. Instances are immutable after parsing;
// pre_tokenize() is thread-safe.

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::model {

// One piece of text on its way to the model.
struct PreToken {
  std::string text;  // valid UTF-8
  // True when the piece starts at offset 0 of the original input (what
  // Metaspace's prepend_scheme "first" looks at).
  bool at_origin = false;
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `tokens` by their split; empty pieces are dropped.
  virtual Status pre_tokenize(std::vector<PreToken>& tokens) const = 0;
};

// Parses the "pre_tokenizer" object at `path`. JSON null yields nullptr.
Result<std::shared_ptr<const PreTokenizer>> parse_pre_tokenizer(const nlohmann::json& j,
                                                                const std::string& path);

// GPT-2's reversible byte <-> printable character mapping (ByteLevel).
char32_t byte_to_unicode(uint8_t b);
std::optional<uint8_t> unicode_to_byte(char32_t cp);

}  // namespace baton::model
