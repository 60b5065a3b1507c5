#include "model/tokenizer_regex.h"

#include <concepts>
#include <optional>

#include "model/unicode.h"

namespace baton::model {
namespace regex_detail {

// One element of a character class.
struct ClassItem {
  enum class Type { kRange, kCategories, kSpace, kWord, kDigit };
  Type type = Type::kRange;
  char32_t lo = 0;
  char32_t hi = 0;
  CategoryMask mask = 0;
  bool negated = false;

  bool contains(char32_t c) const {
    bool r = false;
    switch (type) {
      case Type::kRange:
        r = c >= lo && c <= hi;
        break;
      case Type::kCategories:
        r = (category_bit(general_category(c)) & mask) != 0;
        break;
      case Type::kSpace:
        r = is_whitespace(c);
        break;
      case Type::kWord:
        r = is_word_char(c);
        break;
      case Type::kDigit:
        r = general_category(c) == GeneralCategory::kNd;
        break;
    }
    return r != negated;
  }
};

struct CharClass {
  std::vector<ClassItem> items;
  bool negated = false;
  bool icase = false;

  bool raw_contains(char32_t c) const {
    for (const ClassItem& item : items) {
      if (item.contains(c)) return true;
    }
    return false;
  }
  bool matches(char32_t c) const {
    bool r = raw_contains(c);
    if (!r && icase) {
      // Simple case folding: try the folded form and, for ASCII, its upper
      // case; this covers what (?i) classes need in tokenizer patterns.
      const char32_t f = case_fold(c);
      r = (f != c && raw_contains(f)) || (f >= 'a' && f <= 'z' && raw_contains(f - 32));
    }
    return r != negated;
  }
};

enum class Kind { kEmpty, kChar, kClass, kAny, kConcat, kAlt, kRepeat, kLook, kAtomic, kAssert };
enum class RepeatMode { kGreedy, kLazy, kPossessive };
enum class AssertKind { kLineStart, kLineEnd, kTextStart, kTextEnd, kTextEndNewline };

struct Node {
  Kind kind = Kind::kEmpty;
  char32_t ch = 0;  // kChar (folded when icase)
  bool icase = false;
  CharClass cls;
  std::vector<std::unique_ptr<Node>> kids;
  int min = 0;
  int max = -1;  // -1: unbounded
  RepeatMode mode = RepeatMode::kGreedy;
  bool negative = false;  // kLook
  AssertKind assert_kind = AssertKind::kTextStart;

  bool is_single_char() const {
    return kind == Kind::kChar || kind == Kind::kClass || kind == Kind::kAny;
  }
  bool test(char32_t c) const {
    switch (kind) {
      case Kind::kChar:
        return icase ? case_fold(c) == ch : c == ch;
      case Kind::kClass:
        return cls.matches(c);
      case Kind::kAny:
        return c != '\n';
      default:
        return false;
    }
  }
};

namespace {

class Parser {
 public:
  explicit Parser(std::vector<char32_t> p) : p_(std::move(p)) {}

  Result<std::unique_ptr<Node>> parse() {
    bool icase = false;
    BATON_ASSIGN_OR_RETURN(auto node, parse_alt(icase));
    if (i_ < p_.size()) return error("unmatched ')'");
    return node;
  }

 private:
  Status error(const std::string& what) const {
    return invalid_argument("regex: " + what + " at position " + std::to_string(i_));
  }
  Status unsupported(const std::string& what) const {
    return unimplemented("regex: unsupported syntax " + what + " at position " +
                         std::to_string(i_));
  }
  bool at_end() const { return i_ >= p_.size(); }
  char32_t peek(size_t ahead = 0) const { return i_ + ahead < p_.size() ? p_[i_ + ahead] : 0; }

  Result<std::unique_ptr<Node>> parse_alt(bool icase) {
    std::vector<std::unique_ptr<Node>> alts;
    while (true) {
      BATON_ASSIGN_OR_RETURN(auto seq, parse_concat(icase));
      alts.push_back(std::move(seq));
      if (!at_end() && peek() == '|') {
        ++i_;
        continue;
      }
      break;
    }
    if (alts.size() == 1) return std::move(alts[0]);
    auto node = std::make_unique<Node>();
    node->kind = Kind::kAlt;
    node->kids = std::move(alts);
    return node;
  }

  // icase is by value for the caller but (?i) changes it for the rest of
  // this sequence and the following alternatives of the enclosing group.
  Result<std::unique_ptr<Node>> parse_concat(bool& icase) {
    auto node = std::make_unique<Node>();
    node->kind = Kind::kConcat;
    while (!at_end() && peek() != '|' && peek() != ')') {
      if (peek() == '(' && peek(1) == '?' && (peek(2) == 'i' || peek(2) == '-')) {
        // Inline flags without a group: "(?i)".
        size_t j = i_ + 2;
        bool on = true, value = icase;
        while (j < p_.size() && (p_[j] == 'i' || p_[j] == '-')) {
          if (p_[j] == '-')
            on = false;
          else
            value = on;
          ++j;
        }
        if (j < p_.size() && p_[j] == ')') {
          icase = value;
          i_ = j + 1;
          continue;
        }
      }
      BATON_ASSIGN_OR_RETURN(auto atom, parse_atom(icase));
      BATON_ASSIGN_OR_RETURN(auto quantified, parse_quantifier(std::move(atom)));
      node->kids.push_back(std::move(quantified));
    }
    if (node->kids.size() == 1) return std::move(node->kids[0]);
    return node;
  }

  Result<std::unique_ptr<Node>> parse_quantifier(std::unique_ptr<Node> atom) {
    if (at_end()) return atom;
    int min = 0, max = -1;
    const char32_t c = peek();
    if (c == '?') {
      max = 1;
      ++i_;
    } else if (c == '*') {
      ++i_;
    } else if (c == '+') {
      min = 1;
      ++i_;
    } else if (c == '{') {
      auto bounds = parse_braces();
      if (!bounds) return atom;  // a literal '{' follows; handled as the next atom
      min = bounds->first;
      max = bounds->second;
    } else {
      return atom;
    }
    if (atom->kind == Kind::kLook || atom->kind == Kind::kAssert) {
      return error("quantifier after an assertion");
    }
    auto node = std::make_unique<Node>();
    node->kind = Kind::kRepeat;
    node->min = min;
    node->max = max;
    if (!at_end() && peek() == '?') {
      node->mode = RepeatMode::kLazy;
      ++i_;
    } else if (!at_end() && peek() == '+') {
      node->mode = RepeatMode::kPossessive;
      ++i_;
    }
    if (!at_end() && (peek() == '*' || peek() == '+' || peek() == '?' || peek() == '{')) {
      if (peek() != '{' || parse_braces_lookahead()) return error("nested quantifier");
    }
    node->kids.push_back(std::move(atom));
    return node;
  }

  // Parses "{m}", "{m,}", "{m,n}" at i_; nullopt (i_ unchanged) otherwise.
  std::optional<std::pair<int, int>> parse_braces() {
    size_t j = i_ + 1;
    auto number = [&](int& out) {
      size_t start = j;
      long v = 0;
      while (j < p_.size() && p_[j] >= '0' && p_[j] <= '9' && v < 100000) {
        v = v * 10 + (p_[j] - '0');
        ++j;
      }
      out = static_cast<int>(v);
      return j > start;
    };
    int lo = 0, hi = -1;
    if (!number(lo)) return std::nullopt;
    if (j < p_.size() && p_[j] == ',') {
      ++j;
      if (!number(hi)) hi = -1;
    } else {
      hi = lo;
    }
    if (j >= p_.size() || p_[j] != '}') return std::nullopt;
    if (hi != -1 && hi < lo) return std::nullopt;
    i_ = j + 1;
    return std::pair{lo, hi};
  }
  bool parse_braces_lookahead() {
    const size_t saved = i_;
    const bool ok = parse_braces().has_value();
    i_ = saved;
    return ok;
  }

  Result<std::unique_ptr<Node>> parse_atom(bool icase) {
    const char32_t c = peek();
    auto node = std::make_unique<Node>();
    switch (c) {
      case '(':
        return parse_group(icase);
      case '[': {
        ++i_;
        node->kind = Kind::kClass;
        BATON_ASSIGN_OR_RETURN(node->cls, parse_class(icase));
        return node;
      }
      case '.':
        ++i_;
        node->kind = Kind::kAny;
        return node;
      case '^':
      case '$':
        ++i_;
        node->kind = Kind::kAssert;
        node->assert_kind = c == '^' ? AssertKind::kLineStart : AssertKind::kLineEnd;
        return node;
      case '*':
      case '+':
      case '?':
        return error("nothing to repeat");
      case '\\': {
        ++i_;
        if (at_end()) return error("trailing backslash");
        const char32_t e = peek();
        if (e == 'A' || e == 'z' || e == 'Z') {
          ++i_;
          node->kind = Kind::kAssert;
          node->assert_kind = e == 'A'   ? AssertKind::kTextStart
                              : e == 'z' ? AssertKind::kTextEnd
                                         : AssertKind::kTextEndNewline;
          return node;
        }
        BATON_ASSIGN_OR_RETURN(auto esc, parse_escape(/*in_class=*/false));
        if (esc.item) {
          node->kind = Kind::kClass;
          node->cls.items.push_back(*esc.item);
          node->cls.icase = icase;
          return node;
        }
        node->kind = Kind::kChar;
        node->icase = icase;
        node->ch = icase ? case_fold(esc.ch) : esc.ch;
        return node;
      }
      default:
        ++i_;
        node->kind = Kind::kChar;
        node->icase = icase;
        node->ch = icase ? case_fold(c) : c;
        return node;
    }
  }

  Result<std::unique_ptr<Node>> parse_group(bool icase) {
    ++i_;  // '('
    auto node = std::make_unique<Node>();
    bool wrap = false;  // kLook/kAtomic wrap the inner expression
    if (peek() == '?') {
      const char32_t k = peek(1);
      if (k == ':') {
        i_ += 2;
      } else if (k == '=' || k == '!') {
        i_ += 2;
        node->kind = Kind::kLook;
        node->negative = k == '!';
        wrap = true;
      } else if (k == '>') {
        i_ += 2;
        node->kind = Kind::kAtomic;
        wrap = true;
      } else if (k == '<' && (peek(2) == '=' || peek(2) == '!')) {
        return unsupported("lookbehind '(?<'");
      } else if (k == 'P' || k == '<') {
        // Named group: matched like a plain group (captures are not reported).
        while (!at_end() && peek() != '>') ++i_;
        if (at_end()) return error("unterminated group name");
        ++i_;
      } else if (k == 'i' || k == '-') {
        size_t j = i_ + 1;
        bool on = true;
        while (j < p_.size() && (p_[j] == 'i' || p_[j] == '-')) {
          if (p_[j] == '-')
            on = false;
          else
            icase = on;
          ++j;
        }
        if (j >= p_.size() || p_[j] != ':') return unsupported("group flags");
        i_ = j + 1;
      } else {
        return unsupported(std::string("group '(?") + static_cast<char>(k & 0x7F) + "'");
      }
    }
    BATON_ASSIGN_OR_RETURN(auto inner, parse_alt(icase));
    if (at_end() || peek() != ')') return error("missing ')'");
    ++i_;
    if (!wrap) return inner;
    node->kids.push_back(std::move(inner));
    return node;
  }

  struct Escape {
    std::optional<ClassItem> item;
    char32_t ch = 0;
  };

  Result<uint32_t> parse_hex(size_t min_digits, size_t max_digits, bool braced) {
    uint32_t v = 0;
    size_t n = 0;
    while (!at_end() && n < max_digits) {
      const char32_t h = peek();
      int d = -1;
      if (h >= '0' && h <= '9')
        d = static_cast<int>(h - '0');
      else if (h >= 'a' && h <= 'f')
        d = static_cast<int>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        d = static_cast<int>(h - 'A' + 10);
      if (d < 0) break;
      v = v * 16 + static_cast<uint32_t>(d);
      ++i_;
      ++n;
    }
    if (n < min_digits) return error("bad hex escape");
    if (braced) {
      if (at_end() || peek() != '}') return error("bad \\x{...} escape");
      ++i_;
    }
    if (v > 0x10FFFF) return error("code point out of range");
    return v;
  }

  // At i_: the character after a backslash.
  Result<Escape> parse_escape(bool in_class) {
    const char32_t e = peek();
    ++i_;
    Escape out;
    auto item = [&](ClassItem::Type type, bool negated) {
      ClassItem it;
      it.type = type;
      it.negated = negated;
      out.item = it;
    };
    switch (e) {
      case 'n':
        out.ch = '\n';
        return out;
      case 'r':
        out.ch = '\r';
        return out;
      case 't':
        out.ch = '\t';
        return out;
      case 'f':
        out.ch = 0x0C;
        return out;
      case 'v':
        out.ch = 0x0B;
        return out;
      case 'a':
        out.ch = 0x07;
        return out;
      case 'e':
        out.ch = 0x1B;
        return out;
      case '0':
        out.ch = 0;
        return out;
      case 'x': {
        if (peek() == '{') {
          ++i_;
          BATON_ASSIGN_OR_RETURN(out.ch, parse_hex(1, 8, true));
        } else {
          BATON_ASSIGN_OR_RETURN(out.ch, parse_hex(1, 2, false));
        }
        return out;
      }
      case 'u': {
        BATON_ASSIGN_OR_RETURN(out.ch, parse_hex(4, 4, false));
        return out;
      }
      case 's':
        item(ClassItem::Type::kSpace, false);
        return out;
      case 'S':
        item(ClassItem::Type::kSpace, true);
        return out;
      case 'd':
        item(ClassItem::Type::kDigit, false);
        return out;
      case 'D':
        item(ClassItem::Type::kDigit, true);
        return out;
      case 'w':
        item(ClassItem::Type::kWord, false);
        return out;
      case 'W':
        item(ClassItem::Type::kWord, true);
        return out;
      case 'p':
      case 'P': {
        bool negated = e == 'P';
        std::string name;
        if (peek() == '{') {
          ++i_;
          if (peek() == '^') {
            negated = !negated;
            ++i_;
          }
          while (!at_end() && peek() != '}') {
            if (peek() > 0x7F) return error("bad property name");
            name.push_back(static_cast<char>(peek()));
            ++i_;
          }
          if (at_end()) return error("unterminated \\p{");
          ++i_;
        } else if (!at_end() && peek() < 0x80) {
          name.push_back(static_cast<char>(peek()));
          ++i_;
        }
        auto mask = category_mask_by_name(name);
        if (!mask) return unsupported("property \\p{" + name + "}");
        ClassItem it;
        it.type = ClassItem::Type::kCategories;
        it.mask = *mask;
        it.negated = negated;
        out.item = it;
        return out;
      }
      default:
        break;
    }
    const bool alnum = (e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9');
    if (alnum) {
      return unsupported(std::string("escape '\\") + static_cast<char>(e) + "'" +
                         (in_class ? " in a class" : ""));
    }
    out.ch = e;  // escaped punctuation or any other literal
    return out;
  }

  // At i_: just after '['.
  Result<CharClass> parse_class(bool icase) {
    CharClass cls;
    cls.icase = icase;
    if (peek() == '^') {
      cls.negated = true;
      ++i_;
    }
    bool first = true;
    while (true) {
      if (at_end()) return error("unterminated character class");
      char32_t c = peek();
      if (c == ']' && !first) {
        ++i_;
        break;
      }
      first = false;
      if (c == '[') return unsupported("nested class or POSIX bracket");
      if (c == '&' && peek(1) == '&') return unsupported("class intersection");
      char32_t lo;
      if (c == '\\') {
        ++i_;
        if (at_end()) return error("trailing backslash");
        BATON_ASSIGN_OR_RETURN(auto esc, parse_escape(/*in_class=*/true));
        if (esc.item) {
          cls.items.push_back(*esc.item);
          continue;
        }
        lo = esc.ch;
      } else {
        lo = c;
        ++i_;
      }
      char32_t hi = lo;
      if (peek() == '-' && i_ + 1 < p_.size() && peek(1) != ']') {
        ++i_;
        char32_t h = peek();
        if (h == '\\') {
          ++i_;
          if (at_end()) return error("trailing backslash");
          BATON_ASSIGN_OR_RETURN(auto esc, parse_escape(/*in_class=*/true));
          if (esc.item) return error("class escape as a range bound");
          hi = esc.ch;
        } else {
          hi = h;
          ++i_;
        }
        if (hi < lo) return error("reversed range in class");
      }
      ClassItem it;
      it.type = ClassItem::Type::kRange;
      it.lo = lo;
      it.hi = hi;
      cls.items.push_back(it);
    }
    return cls;
  }

  std::vector<char32_t> p_;
  size_t i_ = 0;
};

// A non-owning reference to a `bool(size_t)` callable: the continuation of
// the backtracking matcher, cheap to pass down the recursion.
class Cont {
 public:
  template <typename F>
  requires(!std::same_as<std::remove_cvref_t<F>, Cont>)
      Cont(const F& f)  // NOLINT(google-explicit-constructor)
      : obj_(&f), call_([](const void* o, size_t p) { return (*static_cast<const F*>(o))(p); }) {}
  bool operator()(size_t p) const { return call_(obj_, p); }

 private:
  const void* obj_;
  bool (*call_)(const void*, size_t);
};

// Recursion past this depth (deeply nested general repeats over long text)
// aborts the search instead of overflowing the stack.
constexpr int kMaxDepth = 4000;

class Matcher {
 public:
  explicit Matcher(const std::vector<char32_t>& text) : t_(text) {}

  bool aborted() const { return aborted_; }

  bool match(const Node& n, size_t pos, Cont k) {
    if (aborted_) return false;
    if (++depth_ > kMaxDepth) {
      aborted_ = true;
      --depth_;
      return false;
    }
    const bool r = match_inner(n, pos, k);
    --depth_;
    return r;
  }

 private:
  bool match_inner(const Node& n, size_t pos, Cont k) {
    switch (n.kind) {
      case Kind::kEmpty:
        return k(pos);
      case Kind::kChar:
      case Kind::kClass:
      case Kind::kAny:
        return pos < t_.size() && n.test(t_[pos]) && k(pos + 1);
      case Kind::kConcat:
        return seq(n, 0, pos, k);
      case Kind::kAlt:
        for (const auto& kid : n.kids) {
          if (match(*kid, pos, k)) return true;
          if (aborted_) return false;
        }
        return false;
      case Kind::kRepeat:
        return repeat(n, pos, k);
      case Kind::kLook: {
        const bool found = match(*n.kids[0], pos, [](size_t) { return true; });
        if (aborted_) return false;
        return found != n.negative && k(pos);
      }
      case Kind::kAtomic: {
        size_t end = 0;
        if (!match(*n.kids[0], pos, [&end](size_t p) {
              end = p;
              return true;
            })) {
          return false;
        }
        return k(end);
      }
      case Kind::kAssert:
        return assertion(n.assert_kind, pos) && k(pos);
    }
    return false;
  }

  bool assertion(AssertKind a, size_t pos) const {
    const size_t n = t_.size();
    switch (a) {
      case AssertKind::kTextStart:
        return pos == 0;
      case AssertKind::kTextEnd:
        return pos == n;
      case AssertKind::kTextEndNewline:
        return pos == n || (pos + 1 == n && t_[pos] == '\n');
      case AssertKind::kLineStart:
        return pos == 0 || t_[pos - 1] == '\n';
      case AssertKind::kLineEnd:
        return pos == n || t_[pos] == '\n';
    }
    return false;
  }

  bool seq(const Node& n, size_t i, size_t pos, Cont k) {
    if (i == n.kids.size()) return k(pos);
    if (i + 1 == n.kids.size()) return match(*n.kids[i], pos, k);
    return match(*n.kids[i], pos, [&](size_t p) { return seq(n, i + 1, p, k); });
  }

  bool repeat(const Node& n, size_t pos, Cont k) {
    const Node& kid = *n.kids[0];
    const size_t max = n.max < 0 ? SIZE_MAX : static_cast<size_t>(n.max);
    const size_t min = static_cast<size_t>(n.min);
    if (kid.is_single_char()) {
      // Iterative: no recursion per repetition, so long runs are cheap.
      size_t count = 0;
      while (count < max && pos + count < t_.size() && kid.test(t_[pos + count])) ++count;
      if (count < min) return false;
      switch (n.mode) {
        case RepeatMode::kPossessive:
          return k(pos + count);
        case RepeatMode::kGreedy:
          for (size_t c = count + 1; c-- > min;) {
            if (k(pos + c)) return true;
            if (aborted_) return false;
          }
          return false;
        case RepeatMode::kLazy:
          for (size_t c = min; c <= count; ++c) {
            if (k(pos + c)) return true;
            if (aborted_) return false;
          }
          return false;
      }
    }
    if (n.mode == RepeatMode::kPossessive) {
      size_t end = 0;
      if (!general_repeat(n, 0, pos, [&end](size_t p) {
            end = p;
            return true;
          })) {
        return false;
      }
      return k(end);
    }
    return general_repeat(n, 0, pos, k);
  }

  bool general_repeat(const Node& n, size_t count, size_t pos, Cont k) {
    const size_t max = n.max < 0 ? SIZE_MAX : static_cast<size_t>(n.max);
    const size_t min = static_cast<size_t>(n.min);
    auto again = [&](size_t p) {
      // An empty iteration past the minimum cannot make progress.
      if (p == pos && count >= min) return false;
      return general_repeat(n, count + 1, p, k);
    };
    if (n.mode == RepeatMode::kLazy) {
      if (count >= min && k(pos)) return true;
      return count < max && match(*n.kids[0], pos, again);
    }
    if (count < max && match(*n.kids[0], pos, again)) return true;
    if (aborted_) return false;
    return count >= min && k(pos);
  }

  const std::vector<char32_t>& t_;
  int depth_ = 0;
  bool aborted_ = false;
};

}  // namespace
}  // namespace regex_detail

Result<Regex> Regex::compile(std::string_view pattern) {
  auto cps = decode_utf8(pattern);
  if (!cps) return invalid_argument("regex: pattern is not valid UTF-8");
  regex_detail::Parser parser(std::move(*cps));
  auto root = parser.parse();
  if (!root.is_ok()) {
    return Status(root.status().code(),
                  root.status().message() + " in pattern \"" + std::string(pattern) + "\"");
  }
  Regex re;
  re.pattern_ = std::string(pattern);
  re.root_ = std::shared_ptr<const regex_detail::Node>(std::move(root).value());
  return re;
}

Result<std::vector<Regex::Span>> Regex::find_all(const std::vector<char32_t>& text) const {
  std::vector<Span> out;
  regex_detail::Matcher m(text);
  size_t pos = 0;
  while (pos <= text.size()) {
    std::optional<Span> found;
    for (size_t s = pos; s <= text.size() && !found; ++s) {
      size_t end = 0;
      if (m.match(*root_, s, [&end](size_t p) {
            end = p;
            return true;
          })) {
        found = Span{s, end};
      }
      if (m.aborted()) {
        return resource_exhausted("regex: backtracking too deep for pattern \"" + pattern_ + "\"");
      }
    }
    if (!found) break;
    out.push_back(*found);
    pos = found->second == found->first ? found->second + 1 : found->second;
  }
  return out;
}

Result<std::vector<Regex::Span>> Regex::find_all_utf8(std::string_view text) const {
  std::vector<char32_t> cps;
  std::vector<size_t> offsets;
  decode_utf8_with_offsets(text, cps, offsets);
  BATON_ASSIGN_OR_RETURN(auto spans, find_all(cps));
  for (Span& s : spans) s = Span{offsets[s.first], offsets[s.second]};
  return spans;
}

}  // namespace baton::model
