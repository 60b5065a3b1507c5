#pragma once

// Decoders of tokenizer.json: token strings -> text.
// Supported types: ByteLevel, Metaspace, Replace, ByteFallback, Fuse, Strip,
// BPEDecoder, WordPiece, Sequence. Others fail to load with kUnimplemented.
// Immutable after parsing; decode_chain() is thread-safe.

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::model {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token strings in place; the caller concatenates them.
  virtual Status decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Parses the "decoder" object at `path`. JSON null yields nullptr (tokens are
// then joined with spaces, as tokenizers does).
Result<std::shared_ptr<const Decoder>> parse_decoder(const nlohmann::json& j,
                                                     const std::string& path);

}  // namespace baton::model
