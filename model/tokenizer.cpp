#include "model/tokenizer.h"

#include <fstream>
#include <sstream>

#include "model/tokenizer_bpe.h"
#include "model/tokenizer_decoder.h"
#include "model/tokenizer_json.h"
#include "model/tokenizer_post_processor.h"
#include "model/tokenizer_pre_tokenizer.h"
#include "model/unicode.h"

namespace baton::model {

namespace tj = tokenizer_json;
using tj::Json;

struct Tokenizer::Impl {
  std::shared_ptr<const Normalizer> normalizer;
  std::shared_ptr<const PreTokenizer> pre_tokenizer;
  BpeModel model;
  std::shared_ptr<const PostProcessor> post_processor;
  std::shared_ptr<const Decoder> decoder;
  AddedVocabulary added;
};

namespace {

Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return not_found("cannot open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return internal_error("cannot read " + path);
  return ss.str();
}

Result<std::vector<AddedToken>> parse_added_tokens(const Json& root) {
  std::vector<AddedToken> out;
  const Json* list = tj::find(root, "added_tokens");
  if (list == nullptr || list->is_null()) return out;
  if (!list->is_array()) return invalid_argument("added_tokens: expected an array");
  for (size_t i = 0; i < list->size(); ++i) {
    const Json& e = (*list)[i];
    const std::string path = tj::index("added_tokens", i);
    if (!e.is_object()) return invalid_argument(path + ": expected an object");
    AddedToken t;
    BATON_ASSIGN_OR_RETURN(int64_t id, tj::get_int(e, "id", path));
    if (id < 0 || id > INT32_MAX) return invalid_argument(path + ".id: out of range");
    t.id = static_cast<int32_t>(id);
    BATON_ASSIGN_OR_RETURN(t.content, tj::get_string(e, "content", path));
    BATON_ASSIGN_OR_RETURN(t.single_word, tj::get_bool(e, "single_word", path, false));
    BATON_ASSIGN_OR_RETURN(t.lstrip, tj::get_bool(e, "lstrip", path, false));
    BATON_ASSIGN_OR_RETURN(t.rstrip, tj::get_bool(e, "rstrip", path, false));
    BATON_ASSIGN_OR_RETURN(t.special, tj::get_bool(e, "special", path, false));
    BATON_ASSIGN_OR_RETURN(t.normalized, tj::get_bool(e, "normalized", path, !t.special));
    out.push_back(std::move(t));
  }
  return out;
}

const Json& member_or_null(const Json& root, std::string_view key) {
  static const Json kNull;  // immutable: a shared JSON null
  const Json* v = tj::find(root, key);
  return v == nullptr ? kNull : *v;
}

}  // namespace

Result<Tokenizer> Tokenizer::from_json(std::string_view json) {
  Json root;
  try {
    root = Json::parse(json);
  } catch (const nlohmann::json::exception& e) {
    return invalid_argument(std::string("invalid JSON: ") + e.what());
  }
  if (!root.is_object()) return invalid_argument("expected a JSON object at the top level");
  auto impl = std::make_shared<Impl>();
  try {
    BATON_ASSIGN_OR_RETURN(impl->normalizer,
                           parse_normalizer(member_or_null(root, "normalizer"), "normalizer"));
    BATON_ASSIGN_OR_RETURN(
        impl->pre_tokenizer,
        parse_pre_tokenizer(member_or_null(root, "pre_tokenizer"), "pre_tokenizer"));
    const Json* model = tj::find(root, "model");
    if (model == nullptr || !model->is_object())
      return invalid_argument("model: expected an object");
    BATON_ASSIGN_OR_RETURN(impl->model, BpeModel::from_json(*model, "model"));
    BATON_ASSIGN_OR_RETURN(
        impl->post_processor,
        parse_post_processor(member_or_null(root, "post_processor"), "post_processor"));
    BATON_ASSIGN_OR_RETURN(impl->decoder,
                           parse_decoder(member_or_null(root, "decoder"), "decoder"));
    BATON_ASSIGN_OR_RETURN(auto added, parse_added_tokens(root));
    BATON_ASSIGN_OR_RETURN(impl->added,
                           AddedVocabulary::create(std::move(added), impl->normalizer.get()));
  } catch (const nlohmann::json::exception& e) {
    // The parsers check types first; this is a safety net for a missed case.
    return invalid_argument(std::string("unexpected JSON shape: ") + e.what());
  }
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

Result<Tokenizer> Tokenizer::from_file(const std::string& path) {
  BATON_ASSIGN_OR_RETURN(std::string text, read_file(path));
  auto t = from_json(text);
  if (!t.is_ok()) return t.status().with_context(path);
  return t;
}

Result<Tokenizer> Tokenizer::from_dir(const std::string& dir) {
  BATON_ASSIGN_OR_RETURN(Tokenizer t, from_file(dir + "/tokenizer.json"));
  const std::string config_path = dir + "/tokenizer_config.json";
  std::ifstream probe(config_path);
  if (!probe) return t;
  BATON_ASSIGN_OR_RETURN(std::string text, read_file(config_path));
  Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) {
    return invalid_argument(config_path + ": invalid JSON");
  }
  BATON_ASSIGN_OR_RETURN(bool cleanup,
                         tj::get_bool(config, "clean_up_tokenization_spaces", config_path, false));
  t.set_clean_up_tokenization_spaces(cleanup);
  return t;
}

Status Tokenizer::encode_plain(std::string_view piece, bool at_origin,
                               std::vector<int32_t>& out) const {
  std::vector<PreToken> tokens{PreToken{std::string(piece), at_origin}};
  if (impl_->pre_tokenizer) BATON_RETURN_IF_ERROR(impl_->pre_tokenizer->pre_tokenize(tokens));
  for (const PreToken& t : tokens) BATON_RETURN_IF_ERROR(impl_->model.tokenize(t.text, out));
  return Status::ok();
}

Result<std::vector<int32_t>> Tokenizer::encode_text(std::string_view text) const {
  if (!is_valid_utf8(text)) return invalid_argument("text is not valid UTF-8");
  std::vector<int32_t> ids;
  for (const auto& seg : impl_->added.split(text, /*normalized_tokens=*/false)) {
    if (seg.id) {
      ids.push_back(*seg.id);
      continue;
    }
    std::string normalized(text.substr(seg.start, seg.end - seg.start));
    if (impl_->normalizer) {
      BATON_ASSIGN_OR_RETURN(normalized, impl_->normalizer->normalize(normalized));
    }
    for (const auto& sub : impl_->added.split(normalized, /*normalized_tokens=*/true)) {
      if (sub.id) {
        ids.push_back(*sub.id);
        continue;
      }
      BATON_RETURN_IF_ERROR(
          encode_plain(std::string_view(normalized).substr(sub.start, sub.end - sub.start),
                       seg.start == 0 && sub.start == 0, ids));
    }
  }
  return ids;
}

Result<std::vector<int32_t>> Tokenizer::encode(std::string_view text,
                                               bool add_special_tokens) const {
  BATON_ASSIGN_OR_RETURN(auto ids, encode_text(text));
  if (add_special_tokens && impl_->post_processor) {
    return impl_->post_processor->process(std::move(ids), nullptr);
  }
  return ids;
}

Result<std::vector<int32_t>> Tokenizer::encode_pair(std::string_view a, std::string_view b,
                                                    bool add_special_tokens) const {
  BATON_ASSIGN_OR_RETURN(auto ids_a, encode_text(a));
  BATON_ASSIGN_OR_RETURN(auto ids_b, encode_text(b));
  if (add_special_tokens && impl_->post_processor) {
    return impl_->post_processor->process(std::move(ids_a), &ids_b);
  }
  ids_a.insert(ids_a.end(), ids_b.begin(), ids_b.end());
  return ids_a;
}

Result<std::string> Tokenizer::decode(std::span<const int32_t> ids,
                                      bool skip_special_tokens) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    const std::string* tok = nullptr;
    if (const AddedToken* added = impl_->added.by_id(id)) {
      tok = &added->content;
    } else {
      tok = impl_->model.id_to_token(id);
    }
    if (tok == nullptr) continue;
    if (skip_special_tokens && impl_->added.is_special_content(*tok)) continue;
    tokens.push_back(*tok);
  }
  std::string text;
  if (impl_->decoder) {
    BATON_RETURN_IF_ERROR(impl_->decoder->decode_chain(tokens));
    for (const std::string& t : tokens) text += t;
  } else {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) text += ' ';
      text += tokens[i];
    }
  }
  if (!is_valid_utf8(text)) text = utf8_lossy(text);
  if (cleanup_) text = clean_up_tokenization(text);
  return text;
}

int32_t Tokenizer::vocab_size() const {
  int32_t n = impl_->model.id_bound();
  for (const AddedToken& t : impl_->added.tokens()) n = std::max(n, t.id + 1);
  return n;
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (auto id = impl_->added.id_of(token)) return id;
  return impl_->model.token_to_id(token);
}

std::string Tokenizer::id_to_token(int32_t id) const {
  if (const AddedToken* t = impl_->added.by_id(id)) return t->content;
  const std::string* tok = impl_->model.id_to_token(id);
  return tok == nullptr ? std::string() : *tok;
}

bool Tokenizer::is_special(int32_t id) const {
  const AddedToken* t = impl_->added.by_id(id);
  return t != nullptr && t->special;
}

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added.tokens(); }

bool Tokenizer::clean_up_tokenization_spaces() const { return cleanup_; }
void Tokenizer::set_clean_up_tokenization_spaces(bool on) { cleanup_ = on; }

std::string clean_up_tokenization(std::string_view text) {
  // The replacements of transformers' clean_up_tokenization, in its order.
  static constexpr std::pair<std::string_view, std::string_view> kRules[] = {
      {" .", "."},     {" ?", "?"},   {" !", "!"},   {" ,", ","},     {" ' ", "'"},
      {" n't", "n't"}, {" 'm", "'m"}, {" 's", "'s"}, {" 've", "'ve"}, {" 're", "'re"}};
  std::string s(text);
  for (const auto& [from, to] : kRules) {
    std::string out;
    size_t prev = 0;
    for (size_t at = s.find(from); at != std::string::npos; at = s.find(from, prev)) {
      out.append(s, prev, at - prev);
      out += to;
      prev = at + from.size();
    }
    out.append(s, prev);
    s = std::move(out);
  }
  return s;
}

}  // namespace baton::model
