#include "model/tokenizer_pre_tokenizer.h"

#include <functional>

#include "model/tokenizer_json.h"
#include "model/tokenizer_regex.h"
#include "model/unicode.h"

namespace baton::model {

char32_t byte_to_unicode(uint8_t b) {
  if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174) return b;
  // The other 68 bytes map, in order, to U+0100 onwards.
  if (b <= 32) return 256 + b;
  if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
  return 256 + 33 + 34;  // 173
}

std::optional<uint8_t> unicode_to_byte(char32_t cp) {
  if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255)) {
    return static_cast<uint8_t>(cp);
  }
  if (cp >= 256 && cp <= 288) return static_cast<uint8_t>(cp - 256);
  if (cp >= 289 && cp <= 322) return static_cast<uint8_t>(cp - 289 + 127);
  if (cp == 323) return 173;
  return std::nullopt;
}

namespace {

using tokenizer_json::Json;
namespace tj = tokenizer_json;

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

// A byte range of a pre-token and whether the pattern matched it.
struct Piece {
  size_t start;
  size_t end;
  bool is_match;
};

// Matches -> alternating pieces covering [0, len) (an empty text gives one
// empty non-match, like tokenizers' Pattern::find_matches).
std::vector<Piece> pieces_from_spans(size_t len, const std::vector<Regex::Span>& spans) {
  if (len == 0) return {Piece{0, 0, false}};
  std::vector<Piece> out;
  size_t prev = 0;
  for (auto [s, e] : spans) {
    if (prev != s) out.push_back({prev, s, false});
    out.push_back({s, e, true});
    prev = e;
  }
  if (prev != len) out.push_back({prev, len, false});
  return out;
}

// Every code point satisfying `pred` is its own match.
std::vector<Piece> pieces_from_predicate(std::string_view text,
                                         const std::function<bool(char32_t)>& pred) {
  if (text.empty()) return {Piece{0, 0, false}};
  std::vector<char32_t> cps;
  std::vector<size_t> off;
  decode_utf8_with_offsets(text, cps, off);
  std::vector<Piece> out;
  size_t last = 0;
  for (size_t i = 0; i < cps.size(); ++i) {
    if (!pred(cps[i])) continue;
    if (last < off[i]) out.push_back({last, off[i], false});
    out.push_back({off[i], off[i + 1], true});
    last = off[i + 1];
  }
  if (last < text.size()) out.push_back({last, text.size(), false});
  return out;
}

// Applies a split behavior the way tokenizers' NormalizedString::split does
// and appends the resulting non-empty pieces of `tok` to `out`.
void apply_split(const PreToken& tok, std::vector<Piece> pieces, SplitBehavior behavior,
                 bool invert, std::vector<PreToken>& out) {
  if (invert) {
    for (Piece& p : pieces) p.is_match = !p.is_match;
  }
  // (range, remove) pairs.
  std::vector<Piece> kept;
  switch (behavior) {
    case SplitBehavior::kIsolated:
      for (Piece p : pieces) kept.push_back({p.start, p.end, false});
      break;
    case SplitBehavior::kRemoved:
      kept = pieces;
      break;
    case SplitBehavior::kContiguous: {
      bool prev_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match == prev_match && !kept.empty()) {
          kept.back().end = p.end;
        } else {
          kept.push_back({p.start, p.end, false});
        }
        prev_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool prev_match = false;
      for (const Piece& p : pieces) {
        if (p.is_match && !prev_match && !kept.empty()) {
          kept.back().end = p.end;
        } else {
          kept.push_back({p.start, p.end, false});
        }
        prev_match = p.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool prev_match = false;  // of the piece after this one: we walk backwards
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        if (it->is_match && !prev_match && !kept.empty()) {
          kept.back().start = it->start;
        } else {
          kept.push_back({it->start, it->end, false});
        }
        prev_match = it->is_match;
      }
      std::reverse(kept.begin(), kept.end());
      break;
    }
  }
  for (const Piece& p : kept) {
    if (p.is_match || p.start == p.end) continue;  // removed or empty
    out.push_back(
        PreToken{tok.text.substr(p.start, p.end - p.start), tok.at_origin && p.start == 0});
  }
}

// Runs `split_one` over each token, replacing the list.
template <typename F>
Status split_each(std::vector<PreToken>& tokens, F&& split_one) {
  std::vector<PreToken> out;
  out.reserve(tokens.size());
  for (PreToken& t : tokens) {
    BATON_RETURN_IF_ERROR(split_one(t, out));
  }
  tokens = std::move(out);
  return Status::ok();
}

class SplitPreTokenizer : public PreTokenizer {
 public:
  SplitPreTokenizer(std::optional<Regex> regex, std::string literal, SplitBehavior b, bool invert)
      : regex_(std::move(regex)), literal_(std::move(literal)), behavior_(b), invert_(invert) {}

  Status pre_tokenize(std::vector<PreToken>& tokens) const override {
    return split_each(tokens, [&](PreToken& t, std::vector<PreToken>& out) -> Status {
      std::vector<Regex::Span> spans;
      if (regex_) {
        BATON_ASSIGN_OR_RETURN(spans, regex_->find_all_utf8(t.text));
      } else if (!literal_.empty()) {
        for (size_t at = t.text.find(literal_); at != std::string::npos;
             at = t.text.find(literal_, at + literal_.size())) {
          spans.push_back({at, at + literal_.size()});
        }
      }
      apply_split(t, pieces_from_spans(t.text.size(), spans), behavior_, invert_, out);
      return Status::ok();
    });
  }

 private:
  std::optional<Regex> regex_;
  std::string literal_;
  SplitBehavior behavior_;
  bool invert_;
};

class PredicatePreTokenizer : public PreTokenizer {
 public:
  PredicatePreTokenizer(std::function<bool(char32_t)> pred, SplitBehavior b)
      : pred_(std::move(pred)), behavior_(b) {}
  Status pre_tokenize(std::vector<PreToken>& tokens) const override {
    return split_each(tokens, [&](PreToken& t, std::vector<PreToken>& out) {
      apply_split(t, pieces_from_predicate(t.text, pred_), behavior_, false, out);
      return Status::ok();
    });
  }

 private:
  std::function<bool(char32_t)> pred_;
  SplitBehavior behavior_;
};

constexpr const char* kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  ByteLevelPreTokenizer(bool add_prefix_space, std::optional<Regex> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  Status pre_tokenize(std::vector<PreToken>& tokens) const override {
    BATON_RETURN_IF_ERROR(
        split_each(tokens, [&](PreToken& t, std::vector<PreToken>& out) -> Status {
          if (add_prefix_space_ && (t.text.empty() || t.text[0] != ' ')) t.text.insert(0, " ");
          if (!regex_) {
            if (!t.text.empty()) out.push_back(t);
            return Status::ok();
          }
          BATON_ASSIGN_OR_RETURN(auto spans, regex_->find_all_utf8(t.text));
          apply_split(t, pieces_from_spans(t.text.size(), spans), SplitBehavior::kIsolated, false,
                      out);
          return Status::ok();
        }));
    for (PreToken& t : tokens) {
      std::string mapped;
      mapped.reserve(t.text.size() * 2);
      for (char c : t.text) append_utf8(mapped, byte_to_unicode(static_cast<uint8_t>(c)));
      t.text = std::move(mapped);
    }
    return Status::ok();
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> regex_;
};

enum class PrependScheme { kFirst, kAlways, kNever };

class MetaspacePreTokenizer : public PreTokenizer {
 public:
  MetaspacePreTokenizer(char32_t replacement, PrependScheme scheme, bool split)
      : replacement_(replacement), rep_(to_utf8(replacement)), scheme_(scheme), split_(split) {}

  Status pre_tokenize(std::vector<PreToken>& tokens) const override {
    return split_each(tokens, [&](PreToken& t, std::vector<PreToken>& out) {
      std::string s;
      s.reserve(t.text.size() + rep_.size());
      for (char c : t.text) {
        if (c == ' ')
          s += rep_;
        else
          s.push_back(c);
      }
      const bool starts = s.compare(0, rep_.size(), rep_) == 0;
      if (!starts && (scheme_ == PrependScheme::kAlways ||
                      (scheme_ == PrependScheme::kFirst && t.at_origin))) {
        s.insert(0, rep_);
      }
      PreToken replaced{std::move(s), t.at_origin};
      if (!split_) {
        if (!replaced.text.empty()) out.push_back(std::move(replaced));
        return Status::ok();
      }
      const char32_t r = replacement_;
      apply_split(replaced,
                  pieces_from_predicate(replaced.text, [r](char32_t c) { return c == r; }),
                  SplitBehavior::kMergedWithNext, false, out);
      return Status::ok();
    });
  }

 private:
  char32_t replacement_;
  std::string rep_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::shared_ptr<const PreTokenizer>> parts)
      : parts_(std::move(parts)) {}
  Status pre_tokenize(std::vector<PreToken>& tokens) const override {
    for (const auto& p : parts_) BATON_RETURN_IF_ERROR(p->pre_tokenize(tokens));
    return Status::ok();
  }

 private:
  std::vector<std::shared_ptr<const PreTokenizer>> parts_;
};

Result<SplitBehavior> parse_behavior(const Json& j, const std::string& path,
                                     SplitBehavior fallback) {
  if (tj::is_null(j, "behavior")) return fallback;
  BATON_ASSIGN_OR_RETURN(std::string b, tj::get_string(j, "behavior", path));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return invalid_argument(tj::join(path, "behavior") + ": unknown split behavior \"" + b + "\"");
}

Result<Regex> compile_at(const std::string& pattern, const std::string& path) {
  auto re = Regex::compile(pattern);
  if (!re.is_ok()) return re.status().with_context(path);
  return re;
}

bool is_punctuation(char32_t c) {
  if (c < 0x80) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
  }
  return (category_bit(general_category(c)) & category_group_mask('P')) != 0;
}

using Ptr = std::shared_ptr<const PreTokenizer>;

}  // namespace

Result<Ptr> parse_pre_tokenizer(const Json& j, const std::string& path) {
  if (j.is_null()) return Ptr();
  BATON_ASSIGN_OR_RETURN(std::string type, tj::get_type(j, path));
  if (type == "Split") {
    BATON_ASSIGN_OR_RETURN(auto pattern, tj::get_pattern(j, "pattern", path));
    BATON_ASSIGN_OR_RETURN(auto behavior, parse_behavior(j, path, SplitBehavior::kRemoved));
    BATON_ASSIGN_OR_RETURN(bool invert, tj::get_bool(j, "invert", path, false));
    std::optional<Regex> regex;
    if (pattern.is_regex) {
      BATON_ASSIGN_OR_RETURN(regex, compile_at(pattern.text, tj::join(path, "pattern")));
    }
    return Ptr(
        std::make_shared<SplitPreTokenizer>(std::move(regex), pattern.text, behavior, invert));
  }
  if (type == "ByteLevel") {
    BATON_ASSIGN_OR_RETURN(bool prefix, tj::get_bool(j, "add_prefix_space", path, true));
    BATON_ASSIGN_OR_RETURN(bool use_regex, tj::get_bool(j, "use_regex", path, true));
    std::optional<Regex> regex;
    if (use_regex) {
      BATON_ASSIGN_OR_RETURN(regex, compile_at(kGpt2Pattern, path));
    }
    return Ptr(std::make_shared<ByteLevelPreTokenizer>(prefix, std::move(regex)));
  }
  if (type == "Metaspace") {
    BATON_ASSIGN_OR_RETURN(char32_t replacement, tj::get_char(j, "replacement", path));
    PrependScheme scheme = PrependScheme::kAlways;
    if (!tj::is_null(j, "prepend_scheme")) {
      BATON_ASSIGN_OR_RETURN(std::string s, tj::get_string(j, "prepend_scheme", path));
      if (s == "first")
        scheme = PrependScheme::kFirst;
      else if (s == "always")
        scheme = PrependScheme::kAlways;
      else if (s == "never")
        scheme = PrependScheme::kNever;
      else
        return invalid_argument(tj::join(path, "prepend_scheme") + ": unknown value \"" + s + "\"");
    } else {
      // Older files: add_prefix_space instead of prepend_scheme.
      BATON_ASSIGN_OR_RETURN(bool prefix, tj::get_bool(j, "add_prefix_space", path, true));
      scheme = prefix ? PrependScheme::kAlways : PrependScheme::kNever;
    }
    BATON_ASSIGN_OR_RETURN(bool split, tj::get_bool(j, "split", path, true));
    return Ptr(std::make_shared<MetaspacePreTokenizer>(replacement, scheme, split));
  }
  if (type == "Digits") {
    BATON_ASSIGN_OR_RETURN(bool individual, tj::get_bool(j, "individual_digits", path, false));
    return Ptr(std::make_shared<PredicatePreTokenizer>(
        [](char32_t c) { return is_number(c); },
        individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous));
  }
  if (type == "WhitespaceSplit") {
    return Ptr(std::make_shared<PredicatePreTokenizer>([](char32_t c) { return is_whitespace(c); },
                                                       SplitBehavior::kRemoved));
  }
  if (type == "Whitespace") {
    BATON_ASSIGN_OR_RETURN(auto re, compile_at(R"(\w+|[^\w\s]+)", path));
    return Ptr(std::make_shared<SplitPreTokenizer>(std::move(re), "", SplitBehavior::kRemoved,
                                                   /*invert=*/true));
  }
  if (type == "Punctuation") {
    BATON_ASSIGN_OR_RETURN(auto behavior, parse_behavior(j, path, SplitBehavior::kIsolated));
    return Ptr(std::make_shared<PredicatePreTokenizer>(is_punctuation, behavior));
  }
  if (type == "BertPreTokenizer") {
    std::vector<Ptr> parts;
    parts.push_back(std::make_shared<PredicatePreTokenizer>(
        [](char32_t c) { return is_whitespace(c); }, SplitBehavior::kRemoved));
    parts.push_back(
        std::make_shared<PredicatePreTokenizer>(is_punctuation, SplitBehavior::kIsolated));
    return Ptr(std::make_shared<SequencePreTokenizer>(std::move(parts)));
  }
  if (type == "Sequence") {
    const Json* list = tj::find(j, "pretokenizers");
    const std::string list_path = tj::join(path, "pretokenizers");
    if (list == nullptr || !list->is_array())
      return invalid_argument(list_path + ": expected an array");
    std::vector<Ptr> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BATON_ASSIGN_OR_RETURN(auto part, parse_pre_tokenizer((*list)[i], tj::index(list_path, i)));
      if (part) parts.push_back(std::move(part));
    }
    return Ptr(std::make_shared<SequencePreTokenizer>(std::move(parts)));
  }
  return unimplemented(path + ": pre_tokenizer type \"" + type + "\" is not supported");
}

}  // namespace baton::model
