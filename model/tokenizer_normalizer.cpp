#include "model/tokenizer_normalizer.h"

#include <vector>

#include "model/tokenizer_json.h"
#include "model/tokenizer_regex.h"
#include "model/unicode.h"

namespace baton::model {
namespace {

using tokenizer_json::Json;

class NfcNormalizer : public Normalizer {
 public:
  Result<std::string> normalize(std::string_view text) const override { return nfc(text); }
};

class NfdNormalizer : public Normalizer {
 public:
  Result<std::string> normalize(std::string_view text) const override { return nfd(text); }
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prefix) : prefix_(std::move(prefix)) {}
  Result<std::string> normalize(std::string_view text) const override {
    if (text.empty()) return std::string();  // empty pieces stay empty, as in tokenizers
    return prefix_ + std::string(text);
  }

 private:
  std::string prefix_;
};

class ReplaceNormalizer : public Normalizer {
 public:
  ReplaceNormalizer(std::string literal, std::optional<Regex> regex, std::string content)
      : literal_(std::move(literal)), regex_(std::move(regex)), content_(std::move(content)) {}

  Result<std::string> normalize(std::string_view text) const override {
    std::string out;
    size_t prev = 0;
    if (regex_) {
      BATON_ASSIGN_OR_RETURN(auto spans, regex_->find_all_utf8(text));
      for (auto [s, e] : spans) {
        out.append(text.substr(prev, s - prev));
        out.append(content_);
        prev = e;
      }
    } else if (!literal_.empty()) {
      for (size_t at = text.find(literal_); at != std::string_view::npos;
           at = text.find(literal_, prev)) {
        out.append(text.substr(prev, at - prev));
        out.append(content_);
        prev = at + literal_.size();
      }
    }
    out.append(text.substr(prev));
    return out;
  }

 private:
  std::string literal_;
  std::optional<Regex> regex_;
  std::string content_;
};

class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  Result<std::string> normalize(std::string_view text) const override {
    std::vector<char32_t> cps;
    std::vector<size_t> offsets;
    decode_utf8_with_offsets(text, cps, offsets);
    size_t b = 0, e = cps.size();
    if (left_) {
      while (b < e && is_whitespace(cps[b])) ++b;
    }
    if (right_) {
      while (e > b && is_whitespace(cps[e - 1])) --e;
    }
    return std::string(text.substr(offsets[b], offsets[e] - offsets[b]));
  }

 private:
  bool left_;
  bool right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::shared_ptr<const Normalizer>> parts)
      : parts_(std::move(parts)) {}
  Result<std::string> normalize(std::string_view text) const override {
    std::string s(text);
    for (const auto& p : parts_) {
      BATON_ASSIGN_OR_RETURN(s, p->normalize(s));
    }
    return s;
  }

 private:
  std::vector<std::shared_ptr<const Normalizer>> parts_;
};

}  // namespace

Result<std::shared_ptr<const Normalizer>> parse_normalizer(const Json& j, const std::string& path) {
  namespace tj = tokenizer_json;
  if (j.is_null()) return std::shared_ptr<const Normalizer>();
  BATON_ASSIGN_OR_RETURN(std::string type, tj::get_type(j, path));
  if (type == "NFC") return std::shared_ptr<const Normalizer>(std::make_shared<NfcNormalizer>());
  if (type == "NFD") return std::shared_ptr<const Normalizer>(std::make_shared<NfdNormalizer>());
  if (type == "Prepend") {
    BATON_ASSIGN_OR_RETURN(std::string prefix, tj::get_string(j, "prepend", path));
    return std::shared_ptr<const Normalizer>(std::make_shared<PrependNormalizer>(prefix));
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
    return std::shared_ptr<const Normalizer>(
        std::make_shared<ReplaceNormalizer>(pattern.text, std::move(regex), content));
  }
  if (type == "Strip") {
    BATON_ASSIGN_OR_RETURN(bool left, tj::get_bool(j, "strip_left", path, true));
    BATON_ASSIGN_OR_RETURN(bool right, tj::get_bool(j, "strip_right", path, true));
    return std::shared_ptr<const Normalizer>(std::make_shared<StripNormalizer>(left, right));
  }
  if (type == "Sequence") {
    const Json* list = tj::find(j, "normalizers");
    if (list == nullptr || !list->is_array()) {
      return invalid_argument(tj::join(path, "normalizers") + ": expected an array");
    }
    std::vector<std::shared_ptr<const Normalizer>> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BATON_ASSIGN_OR_RETURN(
          auto part, parse_normalizer((*list)[i], tj::index(tj::join(path, "normalizers"), i)));
      if (part) parts.push_back(std::move(part));
    }
    return std::shared_ptr<const Normalizer>(
        std::make_shared<SequenceNormalizer>(std::move(parts)));
  }
  return unimplemented(path + ": normalizer type \"" + type + "\" is not supported");
}

}  // namespace baton::model
