#pragma once

// Normalizers of tokenizer.json: text -> text before pre-tokenization.
// Supported types: NFC, NFD, Prepend, Replace (String or Regex pattern),
// Strip, Sequence. Others fail to load with kUnimplemented naming the type.
// Instances are immutable after parsing; normalize() is thread-safe.

#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>

#include "common/status.h"

namespace baton::model {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `text` is valid UTF-8; so is the result.
  virtual Result<std::string> normalize(std::string_view text) const = 0;
};

// Parses the "normalizer" object at `path` (for error messages). A JSON null
// yields nullptr: no normalization.
Result<std::shared_ptr<const Normalizer>> parse_normalizer(const nlohmann::json& j,
                                                           const std::string& path);

}  // namespace baton::model
