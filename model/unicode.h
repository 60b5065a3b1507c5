#pragma once

// Unicode helpers for the tokenizer: UTF-8 coding, general categories, the
// White_Space property, simple case folding and NFC normalization.
//
// All functions are pure and thread-safe. Data comes from the tables that
// tools/gen_unicode_tables.py generates from Python's unicodedata (see
// unicode_version()). Code points are char32_t; strings are UTF-8 in
// std::string.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace baton::model {

// Unicode general categories. kCn (unassigned) is 0.
enum class GeneralCategory : uint8_t {
  kCn,
  kLu,
  kLl,
  kLt,
  kLm,
  kLo,
  kMn,
  kMc,
  kMe,
  kNd,
  kNl,
  kNo,
  kPc,
  kPd,
  kPs,
  kPe,
  kPi,
  kPf,
  kPo,
  kSm,
  kSc,
  kSk,
  kSo,
  kZs,
  kZl,
  kZp,
  kCc,
  kCf,
  kCs,
  kCo,
};
inline constexpr int kGeneralCategoryCount = 30;

// A set of general categories as a bit mask (bit i = category i).
using CategoryMask = uint32_t;
constexpr CategoryMask category_bit(GeneralCategory c) { return 1u << static_cast<int>(c); }
// Masks of the one-letter groups (\p{L}, \p{M}, \p{N}, \p{P}, \p{S}, \p{Z}, \p{C}).
CategoryMask category_group_mask(char group);
// The mask for a property name as written in \p{...}: "L", "Lu", "Letter",
// "Nd", "Punctuation", ... nullopt when unknown.
std::optional<CategoryMask> category_mask_by_name(std::string_view name);

const char* unicode_version();

GeneralCategory general_category(char32_t cp);
bool is_letter(char32_t cp);      // \p{L}
bool is_number(char32_t cp);      // \p{N}; Rust's char::is_numeric
bool is_whitespace(char32_t cp);  // White_Space property; \s
bool is_word_char(char32_t cp);   // \w: L, M, Nd, Pc
bool is_alphanumeric(char32_t cp);
uint8_t combining_class(char32_t cp);
// Simple case folding (cp itself when it has none).
char32_t case_fold(char32_t cp);

// ---- UTF-8 ----
inline constexpr char32_t kReplacementChar = 0xFFFD;

// Appends the UTF-8 form of cp to out.
void append_utf8(std::string& out, char32_t cp);
std::string to_utf8(char32_t cp);
// Byte length of the UTF-8 sequence led by byte b (1 for invalid lead bytes).
int utf8_sequence_length(unsigned char b);
// True when s is well-formed UTF-8 (no surrogates, no overlongs).
bool is_valid_utf8(std::string_view s);
// Decodes valid UTF-8; returns nullopt on malformed input.
std::optional<std::vector<char32_t>> decode_utf8(std::string_view s);
// Decodes s, replacing each maximal ill-formed subsequence by U+FFFD the way
// Rust's String::from_utf8_lossy does.
std::string utf8_lossy(std::string_view s);
// Decodes s (which must be valid UTF-8) into code points and, in byte_offsets,
// the byte offset of each code point plus a final entry s.size().
void decode_utf8_with_offsets(std::string_view s, std::vector<char32_t>& cps,
                              std::vector<size_t>& byte_offsets);
// Length of the longest prefix of s that is complete UTF-8 sequences; bytes
// after it are a truncated (possibly completable) sequence.
size_t complete_utf8_prefix(std::string_view s);

// ---- Normalization ----
// Canonical decomposition (NFD) and composition (NFC) of valid UTF-8.
std::string nfd(std::string_view s);
std::string nfc(std::string_view s);

}  // namespace baton::model
