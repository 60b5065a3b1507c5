#pragma once

// Field accessors for tokenizer.json parsing. Each returns a Status naming the
// JSON path of the offending field ("pre_tokenizer.pretokenizers[1].pattern:
// expected a string"). Internal to the tokenizer_*.cpp files; never throws.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace baton::model::tokenizer_json {

using Json = nlohmann::json;

// "a.b" + "c" -> "a.b.c"; "" + "c" -> "c".
std::string join(std::string_view path, std::string_view key);
std::string index(std::string_view path, size_t i);

// The value at obj[key], or nullptr when absent.
const Json* find(const Json& obj, std::string_view key);
// True when obj[key] is absent or JSON null.
bool is_null(const Json& obj, std::string_view key);

Result<std::string> get_string(const Json& obj, std::string_view key, std::string_view path);
Result<std::optional<std::string>> get_optional_string(const Json& obj, std::string_view key,
                                                       std::string_view path);
Result<bool> get_bool(const Json& obj, std::string_view key, std::string_view path,
                      std::optional<bool> fallback = std::nullopt);
Result<int64_t> get_int(const Json& obj, std::string_view key, std::string_view path,
                        std::optional<int64_t> fallback = std::nullopt);
// A string holding exactly one code point (Metaspace replacement, Strip content).
Result<char32_t> get_char(const Json& obj, std::string_view key, std::string_view path);
// The "type" field of a component object.
Result<std::string> get_type(const Json& obj, std::string_view path);
// {"String": s} or {"Regex": r}: the pattern form used by Split and Replace.
struct Pattern {
  bool is_regex = false;
  std::string text;
};
Result<Pattern> get_pattern(const Json& obj, std::string_view key, std::string_view path);

}  // namespace baton::model::tokenizer_json
