#include "model/tokenizer_decoder.h"

#include <optional>

#include "model/tokenizer_json.h"
#include "model/tokenizer_pre_tokenizer.h"
#include "model/tokenizer_regex.h"
#include "model/unicode.h"

namespace baton::model {
namespace {

namespace tj = tokenizer_json;
using tj::Json;
using Ptr = std::shared_ptr<const Decoder>;

// Bytes of each token through the byte-level map, then one lossy UTF-8 text.
class ByteLevelDecoder : public Decoder {
 public:
  Status decode_chain(std::vector<std::string>& tokens) const override {
    std::string bytes;
    for (const std::string& t : tokens) {
      auto cps = decode_utf8(t);
      std::string mapped;
      bool ok = cps.has_value();
      if (ok) {
        for (char32_t c : *cps) {
          auto b = unicode_to_byte(c);
          if (!b) {
            ok = false;
            break;
          }
          mapped.push_back(static_cast<char>(*b));
        }
      }
      // A token outside the byte alphabet (an added token) stays as is.
      bytes += ok ? mapped : t;
    }
    tokens.assign(1, utf8_lossy(bytes));
    return Status::ok();
  }
};

class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(char32_t replacement, bool strip_first)
      : replacement_(replacement), strip_first_(strip_first) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      auto cps = decode_utf8(tokens[i]);
      if (!cps) continue;
      std::string out;
      for (char32_t c : *cps) {
        if (c != replacement_) {
          append_utf8(out, c);
        } else if (!(i == 0 && strip_first_)) {
          out.push_back(' ');
        }
      }
      tokens[i] = std::move(out);
    }
    return Status::ok();
  }

 private:
  char32_t replacement_;
  bool strip_first_;
};

class ReplaceDecoder : public Decoder {
 public:
  ReplaceDecoder(std::string literal, std::optional<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      std::string out;
      size_t prev = 0;
      if (regex_) {
        BATON_ASSIGN_OR_RETURN(auto spans, regex_->find_all_utf8(t));
        for (auto [s, e] : spans) {
          out.append(t, prev, s - prev);
          out += content_;
          prev = e;
        }
      } else if (!literal_.empty()) {
        for (size_t at = t.find(literal_); at != std::string::npos; at = t.find(literal_, prev)) {
          out.append(t, prev, at - prev);
          out += content_;
          prev = at + literal_.size();
        }
      }
      out.append(t, prev);
      t = std::move(out);
    }
    return Status::ok();
  }

 private:
  std::string literal_;
  std::optional<Regex> regex_;
  std::string content_;
};

std::optional<uint8_t> parse_byte_token(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  int v = 0;
  for (int k = 3; k < 5; ++k) {
    const char c = t[k];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return std::nullopt;
    v = v * 16 + d;
  }
  return static_cast<uint8_t>(v);
}

// Runs of <0xNN> tokens become their UTF-8 text, or one U+FFFD per byte
// when the run is not valid UTF-8.
class ByteFallbackDecoder : public Decoder {
 public:
  Status decode_chain(std::vector<std::string>& tokens) const override {
    std::vector<std::string> out;
    std::string run;
    size_t run_len = 0;
    auto flush = [&] {
      if (run_len == 0) return;
      if (is_valid_utf8(run)) {
        out.push_back(run);
      } else {
        for (size_t k = 0; k < run_len; ++k) out.push_back(to_utf8(kReplacementChar));
      }
      run.clear();
      run_len = 0;
    };
    for (std::string& t : tokens) {
      if (auto b = parse_byte_token(t)) {
        run.push_back(static_cast<char>(*b));
        ++run_len;
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    tokens = std::move(out);
    return Status::ok();
  }
};

class FuseDecoder : public Decoder {
 public:
  Status decode_chain(std::vector<std::string>& tokens) const override {
    std::string all;
    for (const std::string& t : tokens) all += t;
    tokens.assign(1, std::move(all));
    return Status::ok();
  }
};

class StripDecoder : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (std::string& t : tokens) {
      auto cps = decode_utf8(t);
      if (!cps) continue;
      size_t b = 0;
      while (b < start_ && b < cps->size() && (*cps)[b] == content_) ++b;
      size_t e = cps->size();
      size_t cut = 0;
      while (cut < stop_ && e > b && (*cps)[e - 1] == content_) {
        --e;
        ++cut;
      }
      std::string out;
      for (size_t k = b; k < e; ++k) append_utf8(out, (*cps)[k]);
      t = std::move(out);
    }
    return Status::ok();
  }

 private:
  char32_t content_;
  size_t start_;
  size_t stop_;
};

// BPEDecoder: the end-of-word suffix becomes a space (none after the last).
class BpeSuffixDecoder : public Decoder {
 public:
  explicit BpeSuffixDecoder(std::string suffix) : suffix_(std::move(suffix)) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      const std::string with = i + 1 == tokens.size() ? "" : " ";
      std::string& t = tokens[i];
      std::string out;
      size_t prev = 0;
      if (!suffix_.empty()) {
        for (size_t at = t.find(suffix_); at != std::string::npos; at = t.find(suffix_, prev)) {
          out.append(t, prev, at - prev);
          out += with;
          prev = at + suffix_.size();
        }
      }
      out.append(t, prev);
      t = std::move(out);
    }
    return Status::ok();
  }

 private:
  std::string suffix_;
};

class WordPieceDecoder : public Decoder {
 public:
  explicit WordPieceDecoder(std::string prefix) : prefix_(std::move(prefix)) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (size_t i = 0; i < tokens.size(); ++i) {
      std::string& t = tokens[i];
      if (i != 0) {
        if (!prefix_.empty() && t.starts_with(prefix_)) {
          t.erase(0, prefix_.size());
        } else {
          t.insert(0, " ");
        }
      }
    }
    return Status::ok();
  }

 private:
  std::string prefix_;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<Ptr> parts) : parts_(std::move(parts)) {}
  Status decode_chain(std::vector<std::string>& tokens) const override {
    for (const auto& p : parts_) BATON_RETURN_IF_ERROR(p->decode_chain(tokens));
    return Status::ok();
  }

 private:
  std::vector<Ptr> parts_;
};

}  // namespace

Result<Ptr> parse_decoder(const Json& j, const std::string& path) {
  if (j.is_null()) return Ptr();
  BATON_ASSIGN_OR_RETURN(std::string type, tj::get_type(j, path));
  if (type == "ByteLevel") return Ptr(std::make_shared<ByteLevelDecoder>());
  if (type == "Metaspace") {
    BATON_ASSIGN_OR_RETURN(char32_t replacement, tj::get_char(j, "replacement", path));
    bool strip_first = true;
    if (!tj::is_null(j, "prepend_scheme")) {
      BATON_ASSIGN_OR_RETURN(std::string s, tj::get_string(j, "prepend_scheme", path));
      strip_first = s != "never";
    } else {
      BATON_ASSIGN_OR_RETURN(strip_first, tj::get_bool(j, "add_prefix_space", path, true));
    }
    return Ptr(std::make_shared<MetaspaceDecoder>(replacement, strip_first));
  }
  if (type == "Replace") {
    BATON_ASSIGN_OR_RETURN(auto pattern, tj::get_pattern(j, "pattern", path));
    BATON_ASSIGN_OR_RETURN(std::string content, tj::get_string(j, "content", path));
    std::optional<Regex> regex;
    if (pattern.is_regex) {
      auto re = Regex::compile(pattern.text);
      if (!re.is_ok()) return re.status().with_context(tj::join(path, "pattern"));
      regex = std::move(re).value();
    }
    return Ptr(std::make_shared<ReplaceDecoder>(pattern.text, std::move(regex), content));
  }
  if (type == "ByteFallback") return Ptr(std::make_shared<ByteFallbackDecoder>());
  if (type == "Fuse") return Ptr(std::make_shared<FuseDecoder>());
  if (type == "Strip") {
    BATON_ASSIGN_OR_RETURN(char32_t content, tj::get_char(j, "content", path));
    BATON_ASSIGN_OR_RETURN(int64_t start, tj::get_int(j, "start", path, 0));
    BATON_ASSIGN_OR_RETURN(int64_t stop, tj::get_int(j, "stop", path, 0));
    if (start < 0 || stop < 0) return invalid_argument(path + ": start and stop must be >= 0");
    return Ptr(std::make_shared<StripDecoder>(content, static_cast<size_t>(start),
                                              static_cast<size_t>(stop)));
  }
  if (type == "BPEDecoder") {
    BATON_ASSIGN_OR_RETURN(auto suffix, tj::get_optional_string(j, "suffix", path));
    return Ptr(std::make_shared<BpeSuffixDecoder>(suffix.value_or("</w>")));
  }
  if (type == "WordPiece") {
    BATON_ASSIGN_OR_RETURN(auto prefix, tj::get_optional_string(j, "prefix", path));
    BATON_ASSIGN_OR_RETURN(bool cleanup, tj::get_bool(j, "cleanup", path, false));
    if (cleanup) {
      return unimplemented(path + ": WordPiece decoder with cleanup is not supported");
    }
    return Ptr(std::make_shared<WordPieceDecoder>(prefix.value_or("##")));
  }
  if (type == "Sequence") {
    const Json* list = tj::find(j, "decoders");
    const std::string list_path = tj::join(path, "decoders");
    if (list == nullptr || !list->is_array())
      return invalid_argument(list_path + ": expected an array");
    std::vector<Ptr> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BATON_ASSIGN_OR_RETURN(auto part, parse_decoder((*list)[i], tj::index(list_path, i)));
      if (part) parts.push_back(std::move(part));
    }
    return Ptr(std::make_shared<SequenceDecoder>(std::move(parts)));
  }
  return unimplemented(path + ": decoder type \"" + type + "\" is not supported");
}

}  // namespace baton::model
