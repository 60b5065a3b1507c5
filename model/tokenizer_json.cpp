#include "model/tokenizer_json.h"

#include "model/unicode.h"

namespace baton::model::tokenizer_json {

std::string join(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  return std::string(path) + "." + std::string(key);
}

std::string index(std::string_view path, size_t i) {
  return std::string(path) + "[" + std::to_string(i) + "]";
}

const Json* find(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  return it == obj.end() ? nullptr : &*it;
}

bool is_null(const Json& obj, std::string_view key) {
  const Json* v = find(obj, key);
  return v == nullptr || v->is_null();
}

Result<std::string> get_string(const Json& obj, std::string_view key, std::string_view path) {
  const Json* v = find(obj, key);
  if (v == nullptr) return invalid_argument(join(path, key) + ": missing");
  if (!v->is_string()) return invalid_argument(join(path, key) + ": expected a string");
  return v->get<std::string>();
}

Result<std::optional<std::string>> get_optional_string(const Json& obj, std::string_view key,
                                                       std::string_view path) {
  const Json* v = find(obj, key);
  if (v == nullptr || v->is_null()) return std::optional<std::string>();
  if (!v->is_string()) return invalid_argument(join(path, key) + ": expected a string or null");
  return std::optional<std::string>(v->get<std::string>());
}

Result<bool> get_bool(const Json& obj, std::string_view key, std::string_view path,
                      std::optional<bool> fallback) {
  const Json* v = find(obj, key);
  if (v == nullptr || v->is_null()) {
    if (fallback) return *fallback;
    return invalid_argument(join(path, key) + ": missing");
  }
  if (!v->is_boolean()) return invalid_argument(join(path, key) + ": expected true or false");
  return v->get<bool>();
}

Result<int64_t> get_int(const Json& obj, std::string_view key, std::string_view path,
                        std::optional<int64_t> fallback) {
  const Json* v = find(obj, key);
  if (v == nullptr || v->is_null()) {
    if (fallback) return *fallback;
    return invalid_argument(join(path, key) + ": missing");
  }
  if (!v->is_number_integer()) return invalid_argument(join(path, key) + ": expected an integer");
  return v->get<int64_t>();
}

Result<char32_t> get_char(const Json& obj, std::string_view key, std::string_view path) {
  BATON_ASSIGN_OR_RETURN(std::string s, get_string(obj, key, path));
  auto cps = decode_utf8(s);
  if (!cps || cps->size() != 1) {
    return invalid_argument(join(path, key) + ": expected exactly one character");
  }
  return (*cps)[0];
}

Result<std::string> get_type(const Json& obj, std::string_view path) {
  if (!obj.is_object()) return invalid_argument(std::string(path) + ": expected an object");
  return get_string(obj, "type", path);
}

Result<Pattern> get_pattern(const Json& obj, std::string_view key, std::string_view path) {
  const Json* v = find(obj, key);
  const std::string p = join(path, key);
  if (v == nullptr) return invalid_argument(p + ": missing");
  if (v->is_string()) return Pattern{false, v->get<std::string>()};
  if (v->is_object()) {
    if (const Json* s = find(*v, "String"); s != nullptr && s->is_string()) {
      return Pattern{false, s->get<std::string>()};
    }
    if (const Json* r = find(*v, "Regex"); r != nullptr && r->is_string()) {
      return Pattern{true, r->get<std::string>()};
    }
  }
  return invalid_argument(p + ": expected {\"String\": ...} or {\"Regex\": ...}");
}

}  // namespace baton::model::tokenizer_json
