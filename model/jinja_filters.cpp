// jinja2's builtin filters and tests (plus transformers' tojson).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "model/jinja_builtins.h"

namespace baton::model::jinja {

namespace {

using Args = std::vector<std::optional<Value>>;

bool flag(const std::optional<Value>& v) { return v && truthy(*v); }

Status too_large() { return resource_exhausted("string grew past the render size limit"); }

// jinja2's make_attrgetter: "a.b.0" walks keys, attributes and indices.
Result<Value> attr_path(const Value& item, const Value& attribute, const BuiltinLimits& limits) {
  if (!attribute.is_string()) return get_item(item, attribute, limits);
  Value cur = item;
  const std::string& path = attribute.as_string();
  size_t start = 0;
  while (true) {
    size_t dot = path.find('.', start);
    std::string part =
        path.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
    Value key = numeric ? Value(static_cast<int64_t>(std::stoll(part))) : Value(part);
    BATON_ASSIGN_OR_RETURN(cur, get_item(cur, key, limits));
    if (dot == std::string::npos) return cur;
    start = dot + 1;
  }
}

// Sort key with jinja2's default case-insensitivity for strings.
Value fold(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(py_lower(v.as_string()));
  return v;
}

Result<std::vector<Value>> sorted(std::vector<Value> items, bool reverse, bool case_sensitive,
                                  const std::optional<Value>& attribute,
                                  const BuiltinLimits& limits) {
  std::vector<std::pair<Value, Value>> keyed;
  for (auto& item : items) {
    Value key = item;
    if (attribute && !attribute->is_none()) {
      BATON_ASSIGN_OR_RETURN(key, attr_path(item, *attribute, limits));
    }
    keyed.emplace_back(fold(key, case_sensitive), std::move(item));
  }
  Status err;
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
    if (!err.is_ok()) return false;
    auto r = reverse ? less_than(b.first, a.first) : less_than(a.first, b.first);
    if (!r.is_ok()) {
      err = r.status();
      return false;
    }
    return *r;
  });
  BATON_RETURN_IF_ERROR(err);
  std::vector<Value> out;
  for (auto& kv : keyed) out.push_back(std::move(kv.second));
  return out;
}

Result<Value> tojson(const Value& v, const CallArgs& args) {
  BATON_ASSIGN_OR_RETURN(
      Args a, bind_args(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"}));
  JsonDumpOptions o;
  o.ensure_ascii = flag(a[0]);
  std::string indent;
  if (a[1] && !a[1]->is_none()) {
    if (a[1]->is_string()) {
      indent = a[1]->as_string();
    } else if (a[1]->is_int()) {
      indent = std::string(
          static_cast<size_t>(std::max<int64_t>(0, std::min<int64_t>(a[1]->as_int(), 1024))), ' ');
    } else {
      return invalid_argument("tojson: indent must be an int or a string");
    }
    o.indent = &indent;
    o.item_separator = ",";
  }
  if (a[2] && !a[2]->is_none()) {
    if (!a[2]->is_list() || a[2]->as_list()->items.size() != 2 ||
        !a[2]->as_list()->items[0].is_string() || !a[2]->as_list()->items[1].is_string()) {
      return invalid_argument("tojson: separators must be a pair of strings");
    }
    o.item_separator = a[2]->as_list()->items[0].as_string();
    o.key_separator = a[2]->as_list()->items[1].as_string();
  }
  o.sort_keys = flag(a[3]);
  BATON_ASSIGN_OR_RETURN(std::string s, json_dumps(v, o));
  return Value(std::move(s));
}

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

// Python int(str): optional sign, digits and underscores, surrounding space.
std::optional<int64_t> parse_int(const std::string& raw, int base) {
  std::string s = py_strip(raw, std::nullopt, true, true);
  std::string digits;
  for (char c : s) {
    if (c != '_') digits += c;
  }
  if (digits.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(digits.c_str(), &end, base);
  if (errno != 0 || end == digits.c_str() || *end != '\0') return std::nullopt;
  return static_cast<int64_t>(v);
}

std::optional<double> parse_float(const std::string& raw) {
  std::string s = py_strip(raw, std::nullopt, true, true);
  if (s.empty()) return std::nullopt;
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (end == s.c_str() || *end != '\0') return std::nullopt;
  return d;
}

Result<Value> round_value(const Value& v, const Args& a) {
  if (!v.is_number()) return invalid_argument("type " + type_name(v) + " doesn't define __round__");
  int64_t precision = (a[0] && a[0]->is_int()) ? a[0]->as_int() : 0;
  std::string method = (a[1] && a[1]->is_string()) ? a[1]->as_string() : "common";
  double x = v.to_double();
  if (method == "common") {
    if (!v.is_float()) return v.is_bool() ? Value(int64_t{v.as_bool()}) : v;
    // printf rounds the exact binary value half-to-even, like Python's round().
    char buf[512];
    int p = static_cast<int>(std::clamp<int64_t>(precision, 0, 300));
    std::snprintf(buf, sizeof(buf), "%.*f", p, x);
    return Value(std::strtod(buf, nullptr));
  }
  double scale = std::pow(10.0, static_cast<double>(precision));
  if (method == "ceil") return Value(std::ceil(x * scale) / scale);
  if (method == "floor") return Value(std::floor(x * scale) / scale);
  return invalid_argument("method must be common, ceil or floor");
}

Result<Value> indent(const Value& v, const Args& a, const BuiltinLimits& limits) {
  std::string ind = "    ";
  if (a[0] && a[0]->is_string()) {
    ind = a[0]->as_string();
  } else if (a[0] && a[0]->is_int()) {
    ind = std::string(static_cast<size_t>(std::clamp<int64_t>(a[0]->as_int(), 0, 1024)), ' ');
  }
  std::string s = py_str(v) + "\n";
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\n' || s[i] == '\r') {
      lines.push_back(s.substr(start, i - start));
      if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
      start = i + 1;
    }
  }
  std::string out;
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (flag(a[2]) || !lines[i].empty()) out += ind;
    }
    out += lines[i];
    if (out.size() > limits.max_string_bytes) return too_large();
  }
  if (flag(a[1])) out = ind + out;
  return Value(std::move(out));
}

Result<Value> filter_items(const std::string& name, const Value& v, const CallArgs& args,
                           const BuiltinLimits& limits) {
  // select/reject(test, args...), selectattr/rejectattr(attr, test, args...)
  bool by_attr = name == "selectattr" || name == "rejectattr";
  bool keep = name == "select" || name == "selectattr";
  size_t idx = 0;
  std::optional<Value> attribute;
  if (by_attr) {
    if (args.positional.empty()) return invalid_argument(name + " needs an attribute");
    attribute = args.positional[idx++];
  }
  std::string test;
  if (idx < args.positional.size()) {
    if (!args.positional[idx].is_string())
      return invalid_argument(name + ": test name must be a string");
    test = args.positional[idx++].as_string();
  }
  CallArgs test_args;
  test_args.positional.assign(args.positional.begin() + static_cast<long>(idx),
                              args.positional.end());
  test_args.keyword = args.keyword;
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  std::vector<Value> out;
  for (auto& item : items) {
    Value subject = item;
    if (attribute) {
      BATON_ASSIGN_OR_RETURN(subject, attr_path(item, *attribute, limits));
    }
    bool pass;
    if (test.empty()) {
      pass = truthy(subject);
    } else {
      BATON_ASSIGN_OR_RETURN(pass, apply_test(test, subject, test_args));
    }
    if (pass == keep) out.push_back(std::move(item));
  }
  return make_list(std::move(out));
}

Result<Value> map_items(const Value& v, const CallArgs& args, const BuiltinLimits& limits) {
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  std::optional<Value> attribute;
  std::optional<Value> dflt;
  for (const auto& [k, val] : args.keyword) {
    if (k == "attribute") attribute = val;
    if (k == "default") dflt = val;
  }
  std::vector<Value> out;
  if (attribute) {
    for (const auto& item : items) {
      BATON_ASSIGN_OR_RETURN(Value x, attr_path(item, *attribute, limits));
      if (x.is_undefined() && dflt) x = *dflt;
      out.push_back(std::move(x));
    }
    return make_list(std::move(out));
  }
  if (args.positional.empty() || !args.positional[0].is_string()) {
    return invalid_argument("map requires a filter argument");
  }
  std::string filter = args.positional[0].as_string();
  CallArgs rest;
  rest.positional.assign(args.positional.begin() + 1, args.positional.end());
  rest.keyword = args.keyword;
  for (const auto& item : items) {
    BATON_ASSIGN_OR_RETURN(Value x, apply_filter(filter, item, rest, limits));
    out.push_back(std::move(x));
  }
  return make_list(std::move(out));
}

Result<Value> join(const Value& v, const Args& a, const BuiltinLimits& limits) {
  std::string sep = a[0] ? py_str(*a[0]) : "";
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    Value item = items[i];
    if (a[1] && !a[1]->is_none()) {
      BATON_ASSIGN_OR_RETURN(item, attr_path(item, *a[1], limits));
    }
    if (i > 0) out += sep;
    out += py_str(item);
    if (out.size() > limits.max_string_bytes) return too_large();
  }
  return Value(std::move(out));
}

Result<Value> unique(const Value& v, const Args& a, const BuiltinLimits& limits) {
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  std::vector<Value> seen;
  std::vector<Value> out;
  for (auto& item : items) {
    Value key = item;
    if (a[1] && !a[1]->is_none()) {
      BATON_ASSIGN_OR_RETURN(key, attr_path(item, *a[1], limits));
    }
    key = fold(key, flag(a[0]));
    bool dup =
        std::any_of(seen.begin(), seen.end(), [&](const Value& s) { return equals(s, key); });
    if (dup) continue;
    seen.push_back(std::move(key));
    out.push_back(std::move(item));
  }
  return make_list(std::move(out));
}

Result<Value> min_max(bool want_max, const Value& v, const Args& a, const BuiltinLimits& limits) {
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  if (items.empty())
    return Value::undefined(std::string("No aggregated item, sequence was empty."));
  BATON_ASSIGN_OR_RETURN(std::vector<Value> s,
                         sorted(std::move(items), want_max, flag(a[0]), a[1], limits));
  return s.front();
}

Result<Value> sum(const Value& v, const Args& a, const BuiltinLimits& limits) {
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  Value total = a[1] ? *a[1] : Value(int64_t{0});
  for (auto& item : items) {
    Value x = item;
    if (a[0] && !a[0]->is_none()) {
      BATON_ASSIGN_OR_RETURN(x, attr_path(item, *a[0], limits));
    }
    BATON_ASSIGN_OR_RETURN(total, binary_op("+", total, x, limits));
  }
  return total;
}

Result<Value> batch(const Value& v, const Args& a) {
  if (!a[0] || !a[0]->is_int() || a[0]->as_int() <= 0)
    return invalid_argument("batch needs a positive size");
  size_t n = static_cast<size_t>(a[0]->as_int());
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  std::vector<Value> out;
  std::vector<Value> cur;
  for (auto& item : items) {
    cur.push_back(std::move(item));
    if (cur.size() == n) {
      out.push_back(make_list(std::move(cur)));
      cur.clear();
    }
  }
  if (!cur.empty()) {
    if (a[1] && !a[1]->is_none()) {
      while (cur.size() < n) cur.push_back(*a[1]);
    }
    out.push_back(make_list(std::move(cur)));
  }
  return make_list(std::move(out));
}

Result<Value> to_list(const Value& v) {
  BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
  return make_list(std::move(items));
}

size_t word_count(const std::string& s) {
  size_t n = 0;
  bool in_word = false;
  for (char32_t c : utf8_decode(s)) {
    bool w = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             c == '_' ||
             (c >= 0xc0 && !is_python_space(c) && !(c >= 0x2000 && c <= 0x2bff) &&
              !(c >= 0x3000 && c <= 0x303f));
    if (w && !in_word) ++n;
    in_word = w;
  }
  return n;
}

const std::vector<std::string>& filter_names() {
  static const std::vector<std::string> kNames = {
      "abs",     "attr",     "batch",  "capitalize", "center",     "count",      "d",
      "default", "dictsort", "e",      "escape",     "first",      "float",      "forceescape",
      "indent",  "int",      "items",  "join",       "last",       "length",     "list",
      "lower",   "map",      "max",    "min",        "reject",     "rejectattr", "replace",
      "reverse", "round",    "safe",   "select",     "selectattr", "sort",       "string",
      "sum",     "title",    "tojson", "trim",       "unique",     "upper",      "wordcount"};
  return kNames;
}

const std::vector<std::string>& test_names() {
  static const std::vector<std::string> kNames = {
      "boolean", "callable", "defined",  "divisibleby", "eq",       "equalto",     "escaped",
      "even",    "false",    "filter",   "float",       "ge",       "greaterthan", "gt",
      "in",      "integer",  "iterable", "le",          "lessthan", "lower",       "lt",
      "mapping", "ne",       "none",     "number",      "odd",      "sameas",      "sequence",
      "string",  "test",     "true",     "undefined",   "upper",    "==",          "!=",
      "<",       "<=",       ">",        ">="};
  return kNames;
}

}  // namespace

bool has_filter(const std::string& name) {
  const auto& n = filter_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

bool has_test(const std::string& name) {
  const auto& n = test_names();
  return std::find(n.begin(), n.end(), name) != n.end();
}

Result<Value> apply_filter(const std::string& name, const Value& v, const CallArgs& args,
                           const BuiltinLimits& limits) {
  auto bind = [&](std::vector<std::string> names) { return bind_args(args, name, names); };
  if (name == "tojson") return tojson(v, args);
  if (name == "default" || name == "d") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"default_value", "boolean"}));
    bool use_default = v.is_undefined() || (flag(a[1]) && !truthy(v));
    if (use_default) return a[0] ? *a[0] : Value("");
    return v;
  }
  if (name == "length" || name == "count") {
    BATON_ASSIGN_OR_RETURN(int64_t n, length(v));
    return Value(n);
  }
  if (name == "trim") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"chars"}));
    std::optional<std::string> chars;
    if (a[0] && a[0]->is_string()) chars = a[0]->as_string();
    return Value(py_strip(py_str(v), chars, true, true));
  }
  if (name == "upper") return Value(py_upper(py_str(v)));
  if (name == "lower") return Value(py_lower(py_str(v)));
  if (name == "capitalize") return Value(py_capitalize(py_str(v)));
  if (name == "title") {
    // jinja2 capitalises after whitespace, '-', and opening brackets.
    std::u32string u = utf8_decode(py_str(v));
    std::string out;
    bool boundary = true;
    for (char32_t c : u) {
      bool sep = is_python_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
      std::string one = utf8_encode(std::u32string(1, c));
      out += sep ? one : boundary ? py_upper(one) : py_lower(one);
      boundary = sep;
    }
    return Value(std::move(out));
  }
  if (name == "string") return v.is_string() ? v : Value(py_str(v));
  if (name == "safe") return v;
  if (name == "escape" || name == "e" || name == "forceescape")
    return Value(html_escape(py_str(v)));
  if (name == "join") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"d", "attribute"}));
    return join(v, a, limits);
  }
  if (name == "first" || name == "last") {
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
    if (items.empty()) return Value::undefined("No " + name + " item, sequence was empty.");
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return to_list(v);
  if (name == "items") {
    if (v.is_undefined()) return make_list({});
    if (!v.is_dict() || v.as_dict()->is_namespace) {
      return invalid_argument("Can only get item pairs from a mapping.");
    }
    std::vector<Value> out;
    for (const auto& [k, x] : v.as_dict()->items) out.push_back(make_list({Value(k), x}, true));
    return make_list(std::move(out));
  }
  if (name == "dictsort") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"case_sensitive", "by", "reverse"}));
    if (!v.is_dict()) return invalid_argument("dictsort needs a mapping");
    std::vector<Value> pairs;
    for (const auto& [k, x] : v.as_dict()->items) pairs.push_back(make_list({Value(k), x}, true));
    bool by_value = a[1] && a[1]->is_string() && a[1]->as_string() == "value";
    BATON_ASSIGN_OR_RETURN(std::vector<Value> s, sorted(std::move(pairs), flag(a[2]), flag(a[0]),
                                                        Value(int64_t{by_value ? 1 : 0}), limits));
    return make_list(std::move(s));
  }
  if (name == "int") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"default", "base"}));
    Value dflt = a[0] ? *a[0] : Value(int64_t{0});
    int base = (a[1] && a[1]->is_int()) ? static_cast<int>(a[1]->as_int()) : 10;
    if (v.is_int()) return v;
    if (v.is_bool()) return Value(int64_t{v.as_bool()});
    if (v.is_float()) {
      double d = v.as_float();
      if (!std::isfinite(d) || std::fabs(d) > 9.2e18) return dflt;
      return Value(static_cast<int64_t>(d));
    }
    if (v.is_string()) {
      if (auto i = parse_int(v.as_string(), base)) return Value(*i);
      if (auto d = parse_float(v.as_string()); d && std::isfinite(*d) && std::fabs(*d) < 9.2e18) {
        return Value(static_cast<int64_t>(*d));
      }
    }
    return dflt;
  }
  if (name == "float") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"default"}));
    Value dflt = a[0] ? *a[0] : Value(0.0);
    if (v.is_number()) return Value(v.to_double());
    if (v.is_string()) {
      if (auto d = parse_float(v.as_string())) return Value(*d);
    }
    return dflt;
  }
  if (name == "abs") {
    if (v.is_float()) return Value(std::fabs(v.as_float()));
    if (v.is_int() || v.is_bool()) {
      int64_t i = v.is_bool() ? int64_t{v.as_bool()} : v.as_int();
      if (i == INT64_MIN) return invalid_argument("integer overflow");
      return Value(i < 0 ? -i : i);
    }
    return invalid_argument("bad operand type for abs(): '" + type_name(v) + "'");
  }
  if (name == "round") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"precision", "method"}));
    return round_value(v, a);
  }
  if (name == "replace") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"old", "new", "count"}));
    if (!a[0] || !a[1]) return invalid_argument("replace needs old and new");
    CallArgs m;
    m.positional = {Value(py_str(*a[0])), Value(py_str(*a[1]))};
    if (a[2] && !a[2]->is_none()) m.positional.push_back(*a[2]);
    BATON_ASSIGN_OR_RETURN(Value method, get_attr(Value(py_str(v)), "replace", limits));
    return method.as_callable()->fn(m);
  }
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr") {
    return filter_items(name, v, args, limits);
  }
  if (name == "map") return map_items(v, args, limits);
  if (name == "unique") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"case_sensitive", "attribute"}));
    return unique(v, a, limits);
  }
  if (name == "sort") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"reverse", "case_sensitive", "attribute"}));
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
    BATON_ASSIGN_OR_RETURN(std::vector<Value> s,
                           sorted(std::move(items), flag(a[0]), flag(a[1]), a[2], limits));
    return make_list(std::move(s));
  }
  if (name == "reverse") {
    if (v.is_string()) {
      std::u32string u = utf8_decode(v.as_string());
      std::reverse(u.begin(), u.end());
      return Value(utf8_encode(u));
    }
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(v));
    std::reverse(items.begin(), items.end());
    return make_list(std::move(items));
  }
  if (name == "min" || name == "max") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"case_sensitive", "attribute"}));
    return min_max(name == "max", v, a, limits);
  }
  if (name == "sum") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"attribute", "start"}));
    return sum(v, a, limits);
  }
  if (name == "indent") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"width", "first", "blank"}));
    return indent(v, a, limits);
  }
  if (name == "center") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"width"}));
    std::string s = py_str(v);
    int64_t width = (a[0] && a[0]->is_int()) ? std::min<int64_t>(a[0]->as_int(), 1 << 20) : 80;
    int64_t len = static_cast<int64_t>(utf8_length(s));
    if (width <= len) return Value(s);
    int64_t pad = width - len;
    // CPython puts the odd space on the right unless both pads and width are odd.
    int64_t left = pad / 2 + (pad & width & 1);
    return Value(std::string(static_cast<size_t>(left), ' ') + s +
                 std::string(static_cast<size_t>(pad - left), ' '));
  }
  if (name == "wordcount") return Value(static_cast<int64_t>(word_count(py_str(v))));
  if (name == "batch") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"linecount", "fill_with"}));
    return batch(v, a);
  }
  if (name == "attr") {
    BATON_ASSIGN_OR_RETURN(Args a, bind({"name"}));
    if (!a[0] || !a[0]->is_string()) return invalid_argument("attr needs a name");
    return get_attr(v, a[0]->as_string(), limits);
  }
  return invalid_argument("No filter named '" + name + "'.");
}

Result<bool> apply_test(const std::string& name, const Value& v, const CallArgs& args) {
  auto arg = [&]() -> Result<Value> {
    if (args.positional.empty()) {
      if (!args.keyword.empty()) return args.keyword[0].second;
      return invalid_argument("test '" + name + "' needs an argument");
    }
    return args.positional[0];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.is_bool();
  if (name == "true") return v.is_bool() && v.as_bool();
  if (name == "false") return v.is_bool() && !v.as_bool();
  if (name == "integer") return v.is_int();
  if (name == "float") return v.is_float();
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_dict() && !v.as_dict()->is_namespace;
  if (name == "iterable") {
    return v.is_undefined() || v.is_string() || v.is_list() ||
           (v.is_dict() && !v.as_dict()->is_namespace);
  }
  if (name == "sequence") {
    return v.is_undefined() || v.is_string() || v.is_list() ||
           (v.is_dict() && !v.as_dict()->is_namespace);
  }
  if (name == "callable") return v.is_callable();
  if (name == "escaped") return false;
  if (name == "lower") return v.is_string() && py_lower(v.as_string()) == v.as_string();
  if (name == "upper") return v.is_string() && py_upper(v.as_string()) == v.as_string();
  if (name == "filter") return v.is_string() && has_filter(v.as_string());
  if (name == "test") return v.is_string() && has_test(v.as_string());
  if (name == "odd" || name == "even" || name == "divisibleby") {
    Value divisor(int64_t{2});
    if (name == "divisibleby") {
      BATON_ASSIGN_OR_RETURN(divisor, arg());
    }
    BATON_ASSIGN_OR_RETURN(Value r, binary_op("%", v, divisor, BuiltinLimits{}));
    bool zero = equals(r, Value(int64_t{0}));
    return name == "odd" ? !zero : zero;
  }
  if (name == "sameas") {
    BATON_ASSIGN_OR_RETURN(Value other, arg());
    if (v.kind() != other.kind()) return false;
    if (v.is_list()) return v.as_list() == other.as_list();
    if (v.is_dict()) return v.as_dict() == other.as_dict();
    if (v.is_none() || v.is_undefined()) return true;
    if (v.is_bool()) return v.as_bool() == other.as_bool();
    return false;
  }
  if (name == "in") {
    BATON_ASSIGN_OR_RETURN(Value other, arg());
    return contains(other, v);
  }
  std::string op;
  if (name == "eq" || name == "equalto" || name == "==") op = "==";
  if (name == "ne" || name == "!=") op = "!=";
  if (name == "lt" || name == "lessthan" || name == "<") op = "<";
  if (name == "le" || name == "<=") op = "<=";
  if (name == "gt" || name == "greaterthan" || name == ">") op = ">";
  if (name == "ge" || name == ">=") op = ">=";
  if (!op.empty()) {
    BATON_ASSIGN_OR_RETURN(Value other, arg());
    return compare(op, v, other);
  }
  return invalid_argument("No test named '" + name + "'.");
}

}  // namespace baton::model::jinja
