#include "model/tokenizer_post_processor.h"

#include <map>

#include "model/tokenizer_json.h"

namespace baton::model {
namespace {

namespace tj = tokenizer_json;
using tj::Json;
using Ptr = std::shared_ptr<const PostProcessor>;

class IdentityProcessor : public PostProcessor {
 public:
  std::vector<int32_t> process(std::vector<int32_t> a,
                               const std::vector<int32_t>* pair) const override {
    if (pair != nullptr) a.insert(a.end(), pair->begin(), pair->end());
    return a;
  }
};

// One element of a template: a special token's ids, or sequence A/B.
struct TemplatePiece {
  enum class Kind { kSpecial, kSequenceA, kSequenceB };
  Kind kind;
  std::vector<int32_t> ids;  // kSpecial
};

class TemplateProcessor : public PostProcessor {
 public:
  TemplateProcessor(std::vector<TemplatePiece> single, std::vector<TemplatePiece> pair)
      : single_(std::move(single)), pair_(std::move(pair)) {}

  std::vector<int32_t> process(std::vector<int32_t> a,
                               const std::vector<int32_t>* b) const override {
    std::vector<int32_t> out;
    for (const TemplatePiece& p : b == nullptr ? single_ : pair_) {
      switch (p.kind) {
        case TemplatePiece::Kind::kSpecial:
          out.insert(out.end(), p.ids.begin(), p.ids.end());
          break;
        case TemplatePiece::Kind::kSequenceA:
          out.insert(out.end(), a.begin(), a.end());
          break;
        case TemplatePiece::Kind::kSequenceB:
          if (b != nullptr) out.insert(out.end(), b->begin(), b->end());
          break;
      }
    }
    return out;
  }

 private:
  std::vector<TemplatePiece> single_;
  std::vector<TemplatePiece> pair_;
};

// cls A sep (single); cls A sep [sep] B sep (pair; Roberta doubles the sep).
class ClsSepProcessor : public PostProcessor {
 public:
  ClsSepProcessor(int32_t cls, int32_t sep, bool double_sep)
      : cls_(cls), sep_(sep), double_sep_(double_sep) {}
  std::vector<int32_t> process(std::vector<int32_t> a,
                               const std::vector<int32_t>* b) const override {
    std::vector<int32_t> out{cls_};
    out.insert(out.end(), a.begin(), a.end());
    out.push_back(sep_);
    if (b != nullptr) {
      if (double_sep_) out.push_back(sep_);
      out.insert(out.end(), b->begin(), b->end());
      out.push_back(sep_);
    }
    return out;
  }

 private:
  int32_t cls_;
  int32_t sep_;
  bool double_sep_;
};

class SequenceProcessor : public PostProcessor {
 public:
  explicit SequenceProcessor(std::vector<Ptr> parts) : parts_(std::move(parts)) {}
  std::vector<int32_t> process(std::vector<int32_t> a,
                               const std::vector<int32_t>* b) const override {
    // Like tokenizers: each processor sees the previous result; the pair is
    // merged by the first one.
    for (const auto& p : parts_) {
      a = p->process(std::move(a), b);
      b = nullptr;
    }
    if (b != nullptr) a.insert(a.end(), b->begin(), b->end());
    return a;
  }

 private:
  std::vector<Ptr> parts_;
};

Result<std::vector<TemplatePiece>> parse_template(
    const Json& j, const std::string& path,
    const std::map<std::string, std::vector<int32_t>>& specials) {
  std::vector<TemplatePiece> out;
  if (!j.is_array()) return invalid_argument(path + ": expected an array");
  for (size_t i = 0; i < j.size(); ++i) {
    const std::string item_path = tj::index(path, i);
    const Json& item = j[i];
    if (const Json* s = tj::find(item, "SpecialToken")) {
      BATON_ASSIGN_OR_RETURN(std::string id, tj::get_string(*s, "id", item_path + ".SpecialToken"));
      auto it = specials.find(id);
      if (it == specials.end()) {
        return invalid_argument(item_path + ": special token \"" + id +
                                "\" is not in special_tokens");
      }
      out.push_back(TemplatePiece{TemplatePiece::Kind::kSpecial, it->second});
    } else if (const Json* q = tj::find(item, "Sequence")) {
      BATON_ASSIGN_OR_RETURN(std::string id, tj::get_string(*q, "id", item_path + ".Sequence"));
      if (id != "A" && id != "B")
        return invalid_argument(item_path + ": sequence id must be A or B");
      out.push_back(TemplatePiece{
          id == "A" ? TemplatePiece::Kind::kSequenceA : TemplatePiece::Kind::kSequenceB, {}});
    } else {
      return invalid_argument(item_path +
                              ": expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
  return out;
}

Result<int32_t> parse_token_pair(const Json& j, const std::string& key, const std::string& path) {
  const Json* v = tj::find(j, key);
  if (v == nullptr || !v->is_array() || v->size() != 2 || !(*v)[1].is_number_integer()) {
    return invalid_argument(tj::join(path, key) + ": expected [\"token\", id]");
  }
  return static_cast<int32_t>((*v)[1].get<int64_t>());
}

}  // namespace

Result<Ptr> parse_post_processor(const Json& j, const std::string& path) {
  if (j.is_null()) return Ptr();
  BATON_ASSIGN_OR_RETURN(std::string type, tj::get_type(j, path));
  if (type == "ByteLevel") return Ptr(std::make_shared<IdentityProcessor>());
  if (type == "TemplateProcessing") {
    std::map<std::string, std::vector<int32_t>> specials;
    const std::string sp_path = tj::join(path, "special_tokens");
    if (const Json* sp = tj::find(j, "special_tokens"); sp != nullptr && !sp->is_null()) {
      if (!sp->is_object()) return invalid_argument(sp_path + ": expected an object");
      for (auto it = sp->begin(); it != sp->end(); ++it) {
        const std::string p = sp_path + "[\"" + it.key() + "\"]";
        const Json* ids = tj::find(it.value(), "ids");
        if (ids == nullptr || !ids->is_array())
          return invalid_argument(p + ".ids: expected an array");
        std::vector<int32_t> v;
        for (const Json& id : *ids) {
          if (!id.is_number_integer()) return invalid_argument(p + ".ids: expected integers");
          v.push_back(static_cast<int32_t>(id.get<int64_t>()));
        }
        specials[it.key()] = std::move(v);
      }
    }
    const Json* single = tj::find(j, "single");
    if (single == nullptr) return invalid_argument(tj::join(path, "single") + ": missing");
    BATON_ASSIGN_OR_RETURN(auto single_t,
                           parse_template(*single, tj::join(path, "single"), specials));
    std::vector<TemplatePiece> pair_t;
    if (const Json* pair = tj::find(j, "pair"); pair != nullptr && !pair->is_null()) {
      BATON_ASSIGN_OR_RETURN(pair_t, parse_template(*pair, tj::join(path, "pair"), specials));
    }
    return Ptr(std::make_shared<TemplateProcessor>(std::move(single_t), std::move(pair_t)));
  }
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    BATON_ASSIGN_OR_RETURN(int32_t sep, parse_token_pair(j, "sep", path));
    BATON_ASSIGN_OR_RETURN(int32_t cls, parse_token_pair(j, "cls", path));
    return Ptr(std::make_shared<ClsSepProcessor>(cls, sep, type == "RobertaProcessing"));
  }
  if (type == "Sequence") {
    const Json* list = tj::find(j, "processors");
    const std::string list_path = tj::join(path, "processors");
    if (list == nullptr || !list->is_array())
      return invalid_argument(list_path + ": expected an array");
    std::vector<Ptr> parts;
    for (size_t i = 0; i < list->size(); ++i) {
      BATON_ASSIGN_OR_RETURN(auto part, parse_post_processor((*list)[i], tj::index(list_path, i)));
      if (part) parts.push_back(std::move(part));
    }
    return Ptr(std::make_shared<SequenceProcessor>(std::move(parts)));
  }
  return unimplemented(path + ": post_processor type \"" + type + "\" is not supported");
}

}  // namespace baton::model
