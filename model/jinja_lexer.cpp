#include "model/jinja_lexer.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>

#include "model/jinja_value.h"

namespace baton::model::jinja {

namespace {

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

Status syntax_error(int line, const std::string& msg) {
  return data_error("template syntax error at line " + std::to_string(line) + ": " + msg);
}

class Lexer {
 public:
  explicit Lexer(std::string source) : src_(std::move(source)) {}

  Result<std::vector<Token>> run() {
    normalize();
    bool line_starting = true;  // jinja2: did the previous match end a line?
    while (pos_ < src_.size()) {
      size_t tag = find_tag(pos_);
      std::string text = src_.substr(pos_, tag - pos_);
      if (tag == src_.size()) {
        emit_text(std::move(text), pos_);
        pos_ = tag;
        break;
      }
      char type = src_[tag + 1];  // '{', '%' or '#'
      char sign = tag + 2 < src_.size() ? src_[tag + 2] : '\0';
      if (sign == '-') {
        text.erase(text.find_last_not_of(" \t\n\r\f\v") + 1);
      } else if (sign != '+' && type != '{') {
        // lstrip_blocks: drop the indentation before a block or comment tag
        // that starts its line.
        size_t l_pos = text.rfind('\n');
        l_pos = l_pos == std::string::npos ? 0 : l_pos + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() &&
            std::all_of(text.begin() + static_cast<long>(l_pos), text.end(), is_space)) {
          text.erase(l_pos);
        }
      }
      emit_text(std::move(text), pos_);
      pos_ = tag + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
      int line = line_at(tag);
      Status st;
      if (type == '#') {
        st = lex_comment(line);
      } else if (type == '%' && is_raw_tag()) {
        st = lex_raw(line);
      } else {
        st = lex_tag(type, line);
      }
      BATON_RETURN_IF_ERROR(st);
      line_starting = pos_ > 0 && src_[pos_ - 1] == '\n';
    }
    tokens_.push_back({TokenKind::kEnd, "", line_at(src_.size())});
    return std::move(tokens_);
  }

 private:
  void normalize() {
    std::string out;
    out.reserve(src_.size());
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\r') {
        out += '\n';
        if (i + 1 < src_.size() && src_[i + 1] == '\n') ++i;
      } else {
        out += src_[i];
      }
    }
    // jinja2 drops one trailing newline (keep_trailing_newline=False).
    if (!out.empty() && out.back() == '\n') out.pop_back();
    src_ = std::move(out);
    line_starts_.push_back(0);
    for (size_t i = 0; i < src_.size(); ++i) {
      if (src_[i] == '\n') line_starts_.push_back(i + 1);
    }
  }

  int line_at(size_t pos) const {
    auto it = std::upper_bound(line_starts_.begin(), line_starts_.end(), pos);
    return static_cast<int>(it - line_starts_.begin());
  }

  size_t find_tag(size_t from) const {
    for (size_t i = from; i + 1 < src_.size(); ++i) {
      if (src_[i] == '{' && (src_[i + 1] == '{' || src_[i + 1] == '%' || src_[i + 1] == '#')) {
        return i;
      }
    }
    return src_.size();
  }

  void emit_text(std::string text, size_t at) {
    if (!text.empty()) tokens_.push_back({TokenKind::kText, std::move(text), line_at(at)});
  }

  // After a tag end: `-` strips all following whitespace; a plain block or
  // comment end eats one newline (trim_blocks); `+%}` keeps it.
  void after_end(bool minus, bool plus, bool trim) {
    if (minus) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
    } else if (!plus && trim && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
    }
  }

  Status lex_comment(int line) {
    size_t end = src_.find("#}", pos_);
    if (end == std::string::npos) return syntax_error(line, "missing end of comment tag");
    bool minus = end > pos_ && src_[end - 1] == '-';
    pos_ = end + 2;
    after_end(minus, false, true);
    return Status::ok();
  }

  bool is_raw_tag() const {
    size_t p = pos_;
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    return p >= src_.size() || !(is_name_start(src_[p]) || is_digit(src_[p]));
  }

  // Position of the end of a `{% name %}` tag starting at `p` (after `{%`),
  // or npos when the text at p is not that tag.
  size_t match_simple_tag(size_t p, std::string_view name, bool* minus_end) const {
    while (p < src_.size() && is_space(src_[p])) ++p;
    if (src_.compare(p, name.size(), name) != 0) return std::string::npos;
    p += name.size();
    while (p < src_.size() && is_space(src_[p])) ++p;
    *minus_end = false;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) {
      *minus_end = src_[p] == '-';
      ++p;
    }
    if (src_.compare(p, 2, "%}") != 0) return std::string::npos;
    return p + 2;
  }

  Status lex_raw(int line) {
    bool minus = false;
    size_t p = match_simple_tag(pos_, "raw", &minus);
    if (p == std::string::npos) return syntax_error(line, "malformed raw tag");
    pos_ = p;
    after_end(minus, false, true);
    for (size_t i = pos_; i + 1 < src_.size(); ++i) {
      if (src_[i] != '{' || src_[i + 1] != '%') continue;
      size_t q = i + 2;
      bool strip_before = q < src_.size() && src_[q] == '-';
      if (q < src_.size() && (src_[q] == '-' || src_[q] == '+')) ++q;
      bool end_minus = false;
      size_t end = match_simple_tag(q, "endraw", &end_minus);
      if (end == std::string::npos) continue;
      std::string body = src_.substr(pos_, i - pos_);
      if (strip_before) body.erase(body.find_last_not_of(" \t\n\r\f\v") + 1);
      emit_text(std::move(body), pos_);
      pos_ = end;
      after_end(end_minus, false, true);
      return Status::ok();
    }
    return syntax_error(line, "missing endraw tag");
  }

  Status lex_tag(char type, int begin_line) {
    bool block = type == '%';
    tokens_.push_back({block ? TokenKind::kBlockBegin : TokenKind::kVarBegin, "", begin_line});
    const char* close = block ? "%}" : "}}";
    while (true) {
      while (pos_ < src_.size() && is_space(src_[pos_])) ++pos_;
      if (pos_ >= src_.size()) {
        return syntax_error(begin_line, block ? "unexpected end of template, expected '%}'"
                                              : "unexpected end of template, expected '}}'");
      }
      int line = line_at(pos_);
      bool minus = src_[pos_] == '-' && src_.compare(pos_ + 1, 2, close) == 0;
      bool plus = block && src_[pos_] == '+' && src_.compare(pos_ + 1, 2, close) == 0;
      if (minus || plus || src_.compare(pos_, 2, close) == 0) {
        pos_ += (minus || plus) ? 3 : 2;
        tokens_.push_back({block ? TokenKind::kBlockEnd : TokenKind::kVarEnd, "", line});
        after_end(minus, plus, block);
        return Status::ok();
      }
      BATON_RETURN_IF_ERROR(lex_token(line));
    }
  }

  Status lex_token(int line) {
    char c = src_[pos_];
    if (is_name_start(c)) {
      size_t start = pos_;
      while (pos_ < src_.size() && (is_name_start(src_[pos_]) || is_digit(src_[pos_]))) ++pos_;
      tokens_.push_back({TokenKind::kName, src_.substr(start, pos_ - start), line});
      return Status::ok();
    }
    if (is_digit(c)) return lex_number(line);
    if (c == '\'' || c == '"') return lex_string(line);
    static constexpr std::array<const char*, 25> kOps = {
        "//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<",
        ">",  "=",  ".",  ",",  ":",  "|",  "(", ")", "[", "]", "{", "}"};
    for (const char* op : kOps) {
      size_t n = std::strlen(op);
      if (src_.compare(pos_, n, op) == 0) {
        tokens_.push_back({TokenKind::kOp, op, line});
        pos_ += n;
        return Status::ok();
      }
    }
    return syntax_error(line, std::string("unexpected char '") + c + "'");
  }

  Status lex_number(int line) {
    auto digits = [&](std::string& out) {
      while (pos_ < src_.size() &&
             (is_digit(src_[pos_]) ||
              (src_[pos_] == '_' && pos_ + 1 < src_.size() && is_digit(src_[pos_ + 1])))) {
        if (src_[pos_] != '_') out += src_[pos_];
        ++pos_;
      }
    };
    // jinja2: a number right after '.' (x.0.1) is an integer attribute.
    bool after_dot = pos_ > 0 && src_[pos_ - 1] == '.';
    std::string text;
    digits(text);
    bool is_float = false;
    if (!after_dot && pos_ + 1 < src_.size() && src_[pos_] == '.' && is_digit(src_[pos_ + 1])) {
      ++pos_;
      text += '.';
      digits(text);
      is_float = true;
    }
    if (!after_dot && pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && is_digit(src_[p])) {
        text += 'e';
        if (src_[pos_ + 1] == '-' || src_[pos_ + 1] == '+') text += src_[pos_ + 1];
        pos_ = p;
        digits(text);
        is_float = true;
      }
    }
    tokens_.push_back({is_float ? TokenKind::kFloat : TokenKind::kInt, std::move(text), line});
    return Status::ok();
  }

  static int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Python's unicode-escape decoding, which jinja2 applies to literals.
  Status lex_string(int line) {
    char quote = src_[pos_++];
    std::string out;
    while (true) {
      if (pos_ >= src_.size()) return syntax_error(line, "unterminated string");
      char c = src_[pos_++];
      if (c == quote) break;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= src_.size()) return syntax_error(line, "unterminated string");
      char e = src_[pos_++];
      switch (e) {
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'a':
          out += '\a';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'v':
          out += '\v';
          break;
        case '\n':
          break;
        case 'x':
        case 'u':
        case 'U': {
          int n = e == 'x' ? 2 : e == 'u' ? 4 : 8;
          char32_t cp = 0;
          for (int k = 0; k < n; ++k) {
            int h = pos_ < src_.size() ? hex_value(src_[pos_]) : -1;
            if (h < 0) return syntax_error(line, "truncated \\" + std::string(1, e) + " escape");
            cp = cp * 16 + static_cast<char32_t>(h);
            ++pos_;
          }
          if (cp > 0x10ffff) return syntax_error(line, "illegal Unicode character");
          utf8_append(out, cp);
          break;
        }
        default:
          if (e >= '0' && e <= '7') {
            int v = e - '0';
            for (int k = 0; k < 2 && pos_ < src_.size() && src_[pos_] >= '0' && src_[pos_] <= '7';
                 ++k) {
              v = v * 8 + (src_[pos_++] - '0');
            }
            utf8_append(out, static_cast<char32_t>(v));
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    tokens_.push_back({TokenKind::kString, std::move(out), line});
    return Status::ok();
  }

  std::string src_;
  size_t pos_ = 0;
  std::vector<size_t> line_starts_;
  std::vector<Token> tokens_;
};

}  // namespace

Result<std::vector<Token>> tokenize(const std::string& source) { return Lexer(source).run(); }

}  // namespace baton::model::jinja
