#include "model/unicode.h"

#include <algorithm>
#include <array>

#include "model/unicode_tables.h"

namespace baton::model {
namespace {

namespace t = unicode_tables;
using GC = GeneralCategory;

constexpr char32_t kHangulSBase = 0xAC00;
constexpr char32_t kHangulLBase = 0x1100;
constexpr char32_t kHangulVBase = 0x1161;
constexpr char32_t kHangulTBase = 0x11A7;
constexpr int kHangulLCount = 19;
constexpr int kHangulVCount = 21;
constexpr int kHangulTCount = 28;
constexpr int kHangulNCount = kHangulVCount * kHangulTCount;
constexpr int kHangulSCount = kHangulLCount * kHangulNCount;

constexpr CategoryMask mask_of(std::initializer_list<GC> cats) {
  CategoryMask m = 0;
  for (GC c : cats) m |= category_bit(c);
  return m;
}

constexpr CategoryMask kLetters = mask_of({GC::kLu, GC::kLl, GC::kLt, GC::kLm, GC::kLo});
constexpr CategoryMask kMarks = mask_of({GC::kMn, GC::kMc, GC::kMe});
constexpr CategoryMask kNumbers = mask_of({GC::kNd, GC::kNl, GC::kNo});
constexpr CategoryMask kPunct =
    mask_of({GC::kPc, GC::kPd, GC::kPs, GC::kPe, GC::kPi, GC::kPf, GC::kPo});
constexpr CategoryMask kSymbols = mask_of({GC::kSm, GC::kSc, GC::kSk, GC::kSo});
constexpr CategoryMask kSeparators = mask_of({GC::kZs, GC::kZl, GC::kZp});
constexpr CategoryMask kOthers = mask_of({GC::kCc, GC::kCf, GC::kCs, GC::kCo, GC::kCn});

constexpr std::array<const char*, kGeneralCategoryCount> kCategoryNames = {
    "Cn", "Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Me", "Nd", "Nl", "No", "Pc", "Pd", "Ps",
    "Pe", "Pi", "Pf", "Po", "Sm", "Sc", "Sk", "So", "Zs", "Zl", "Zp", "Cc", "Cf", "Cs", "Co"};

// Full canonical decomposition of one code point appended to out.
void decompose_into(char32_t cp, std::vector<char32_t>& out) {
  if (cp >= kHangulSBase && cp < kHangulSBase + kHangulSCount) {
    const int s = static_cast<int>(cp - kHangulSBase);
    out.push_back(kHangulLBase + s / kHangulNCount);
    out.push_back(kHangulVBase + (s % kHangulNCount) / kHangulTCount);
    if (s % kHangulTCount != 0) out.push_back(kHangulTBase + s % kHangulTCount);
    return;
  }
  if (cp < 0xC0) {  // nothing below U+00C0 decomposes
    out.push_back(cp);
    return;
  }
  const auto* end = t::kDecompositions + t::kDecompositionCount;
  const auto* it = std::lower_bound(t::kDecompositions, end, cp,
                                    [](const t::Decomposition& d, char32_t c) { return d.cp < c; });
  if (it == end || it->cp != cp) {
    out.push_back(cp);
    return;
  }
  out.insert(out.end(), t::kDecompositionData + it->offset,
             t::kDecompositionData + it->offset + it->len);
}

std::optional<char32_t> compose_pair(char32_t a, char32_t b) {
  if (a >= kHangulLBase && a < kHangulLBase + kHangulLCount && b >= kHangulVBase &&
      b < kHangulVBase + kHangulVCount) {
    return kHangulSBase + ((a - kHangulLBase) * kHangulVCount + (b - kHangulVBase)) * kHangulTCount;
  }
  if (a >= kHangulSBase && a < kHangulSBase + kHangulSCount &&
      (a - kHangulSBase) % kHangulTCount == 0 && b > kHangulTBase &&
      b < kHangulTBase + kHangulTCount) {
    return a + (b - kHangulTBase);
  }
  const auto* end = t::kCompositions + t::kCompositionCount;
  const auto* it =
      std::lower_bound(t::kCompositions, end, std::pair{a, b},
                       [](const t::Composition& c, std::pair<char32_t, char32_t> k) {
                         return c.first < k.first || (c.first == k.first && c.second < k.second);
                       });
  if (it == end || it->first != a || it->second != b) return std::nullopt;
  return it->composite;
}

// Decomposes and puts combining marks in canonical order (stable by class).
std::vector<char32_t> canonical_decomposition(const std::vector<char32_t>& cps) {
  std::vector<char32_t> out;
  out.reserve(cps.size());
  for (char32_t cp : cps) decompose_into(cp, out);
  size_t i = 0;
  while (i < out.size()) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && combining_class(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + i, out.begin() + j, [](char32_t a, char32_t b) {
      return combining_class(a) < combining_class(b);
    });
    i = j;
  }
  return out;
}

std::string encode_all(const std::vector<char32_t>& cps) {
  std::string out;
  out.reserve(cps.size());
  for (char32_t cp : cps) append_utf8(out, cp);
  return out;
}

}  // namespace

CategoryMask category_group_mask(char group) {
  switch (group) {
    case 'L':
      return kLetters;
    case 'M':
      return kMarks;
    case 'N':
      return kNumbers;
    case 'P':
      return kPunct;
    case 'S':
      return kSymbols;
    case 'Z':
      return kSeparators;
    case 'C':
      return kOthers;
    default:
      return 0;
  }
}

std::optional<CategoryMask> category_mask_by_name(std::string_view name) {
  if (name.size() == 1) {
    CategoryMask m = category_group_mask(name[0]);
    if (m != 0) return m;
    return std::nullopt;
  }
  for (int i = 0; i < kGeneralCategoryCount; ++i) {
    if (name == kCategoryNames[i]) return 1u << i;
  }
  struct Long {
    const char* name;
    char group;
  };
  static constexpr Long kLong[] = {{"Letter", 'L'},      {"Mark", 'M'},   {"Number", 'N'},
                                   {"Punctuation", 'P'}, {"Symbol", 'S'}, {"Separator", 'Z'},
                                   {"Other", 'C'}};
  for (const Long& l : kLong) {
    if (name == l.name) return category_group_mask(l.group);
  }
  if (name == "L&" || name == "LC") return mask_of({GC::kLu, GC::kLl, GC::kLt});
  return std::nullopt;
}

const char* unicode_version() { return t::kUnicodeVersion; }

GeneralCategory general_category(char32_t cp) {
  const auto* end = t::kCategoryRanges + t::kCategoryRangeCount;
  const auto* it = std::upper_bound(t::kCategoryRanges, end, cp,
                                    [](char32_t c, const t::CategoryRange& r) { return c < r.lo; });
  if (it == t::kCategoryRanges) return GC::kCn;
  --it;
  if (cp > it->hi) return GC::kCn;
  return static_cast<GC>(it->category);
}

bool is_letter(char32_t cp) {
  if (cp < 0x80) return (cp | 0x20) >= 'a' && (cp | 0x20) <= 'z';
  return (category_bit(general_category(cp)) & kLetters) != 0;
}

bool is_number(char32_t cp) {
  if (cp < 0x80) return cp >= '0' && cp <= '9';
  return (category_bit(general_category(cp)) & kNumbers) != 0;
}

bool is_whitespace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

bool is_word_char(char32_t cp) {
  if (cp < 0x80) return is_letter(cp) || is_number(cp) || cp == '_';
  constexpr CategoryMask kWord = kLetters | kMarks | mask_of({GC::kNd, GC::kPc});
  return (category_bit(general_category(cp)) & kWord) != 0;
}

bool is_alphanumeric(char32_t cp) { return is_letter(cp) || is_number(cp); }

uint8_t combining_class(char32_t cp) {
  if (cp < 0x300) return 0;
  const auto* end = t::kCombiningRanges + t::kCombiningRangeCount;
  const auto* it =
      std::upper_bound(t::kCombiningRanges, end, cp,
                       [](char32_t c, const t::CombiningRange& r) { return c < r.lo; });
  if (it == t::kCombiningRanges) return 0;
  --it;
  return cp <= it->hi ? it->ccc : 0;
}

char32_t case_fold(char32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  const auto* end = t::kCaseFolds + t::kCaseFoldCount;
  const auto* it = std::lower_bound(t::kCaseFolds, end, cp,
                                    [](const t::CaseFold& f, char32_t c) { return f.cp < c; });
  return (it != end && it->cp == cp) ? it->fold : cp;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string to_utf8(char32_t cp) {
  std::string s;
  append_utf8(s, cp);
  return s;
}

int utf8_sequence_length(unsigned char b) {
  if (b < 0x80) return 1;
  if (b >= 0xC2 && b <= 0xDF) return 2;
  if (b >= 0xE0 && b <= 0xEF) return 3;
  if (b >= 0xF0 && b <= 0xF4) return 4;
  return 1;
}

namespace {

// Decodes one sequence at s[i]. Returns the number of bytes consumed; sets cp
// on success, or leaves ok=false and returns the length of the maximal
// ill-formed subpart (at least 1), which is what from_utf8_lossy replaces.
size_t decode_one(std::string_view s, size_t i, char32_t& cp, bool& ok) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  ok = false;
  if (b0 < 0x80) {
    cp = b0;
    ok = true;
    return 1;
  }
  const int len = utf8_sequence_length(b0);
  if (len == 1) return 1;
  unsigned char lo = 0x80, hi = 0xBF;  // valid range of the second byte
  if (b0 == 0xE0) lo = 0xA0;
  if (b0 == 0xED) hi = 0x9F;
  if (b0 == 0xF0) lo = 0x90;
  if (b0 == 0xF4) hi = 0x8F;
  char32_t value = b0 & (0xFF >> (len + 1));
  for (int k = 1; k < len; ++k) {
    if (i + k >= s.size()) return k;
    const auto b = static_cast<unsigned char>(s[i + k]);
    const bool in_range = k == 1 ? (b >= lo && b <= hi) : (b >= 0x80 && b <= 0xBF);
    if (!in_range) return k;
    value = (value << 6) | (b & 0x3F);
  }
  cp = value;
  ok = true;
  return len;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    bool ok;
    i += decode_one(s, i, cp, ok);
    if (!ok) return false;
  }
  return true;
}

std::optional<std::vector<char32_t>> decode_utf8(std::string_view s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    bool ok;
    i += decode_one(s, i, cp, ok);
    if (!ok) return std::nullopt;
    out.push_back(cp);
  }
  return out;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    bool ok;
    const size_t n = decode_one(s, i, cp, ok);
    if (ok) {
      out.append(s.substr(i, n));
    } else {
      append_utf8(out, kReplacementChar);
    }
    i += n;
  }
  return out;
}

void decode_utf8_with_offsets(std::string_view s, std::vector<char32_t>& cps,
                              std::vector<size_t>& byte_offsets) {
  cps.clear();
  byte_offsets.clear();
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    bool ok;
    const size_t n = decode_one(s, i, cp, ok);
    cps.push_back(ok ? cp : kReplacementChar);
    byte_offsets.push_back(i);
    i += n;
  }
  byte_offsets.push_back(s.size());
}

size_t complete_utf8_prefix(std::string_view s) {
  // A truncated sequence can only be the last 1-3 bytes.
  const size_t start = s.size() > 3 ? s.size() - 3 : 0;
  for (size_t i = s.size(); i > start; --i) {
    const auto b = static_cast<unsigned char>(s[i - 1]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte, keep looking back
    const int len = utf8_sequence_length(b);
    if (len > 1 && i - 1 + len > s.size()) return i - 1;
    return s.size();
  }
  return s.size();
}

std::string nfd(std::string_view s) {
  auto cps = decode_utf8(s);
  if (!cps) return std::string(s);
  return encode_all(canonical_decomposition(*cps));
}

std::string nfc(std::string_view s) {
  // Fast path: text below U+0300 is always in NFC (nothing there decomposes
  // into or composes with a later character of that range).
  if (std::all_of(s.begin(), s.end(),
                  [](char c) { return static_cast<unsigned char>(c) < 0xCC; })) {
    return std::string(s);
  }
  auto cps = decode_utf8(s);
  if (!cps) return std::string(s);
  std::vector<char32_t> d = canonical_decomposition(*cps);
  // Canonical composition: each character combines with the last starter
  // unless blocked by an intervening character of equal or higher class.
  std::vector<char32_t> out;
  out.reserve(d.size());
  std::optional<size_t> starter;
  int last_class = -1;
  for (char32_t cp : d) {
    const int cc = combining_class(cp);
    if (starter && (last_class < cc || (last_class == 0 && out.size() == *starter + 1))) {
      if (auto composed = compose_pair(out[*starter], cp)) {
        out[*starter] = *composed;
        continue;
      }
    }
    if (cc == 0) {
      starter = out.size();
      last_class = 0;
    } else {
      last_class = cc;
    }
    out.push_back(cp);
  }
  return encode_all(out);
}

}  // namespace baton::model
