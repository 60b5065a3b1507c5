// Attribute and item access, slicing, iteration and the Python methods of
// str, dict and list values.

#include <algorithm>
#include <array>

#include "model/jinja_builtins.h"

namespace baton::model::jinja {

namespace {

Value missing_attr(const Value& obj, const std::string& name) {
  if (obj.is_none()) return Value::undefined("'None' has no attribute '" + name + "'");
  return Value::undefined(object_description(obj) + " has no attribute '" + name + "'");
}

// What jinja2's ImmutableSandboxedEnvironment hands out for a mutating
// method: an undefined that fails when called.
Value unsafe(const Value& obj, const std::string& name) {
  return Value::undefined("access to attribute '" + name + "' of '" + type_name(obj) +
                          "' object is unsafe.");
}

bool is_int_like(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t int_of(const Value& v) { return v.is_bool() ? int64_t{v.as_bool()} : v.as_int(); }

Result<std::string> string_arg(const std::optional<Value>& v, const std::string& fn) {
  if (!v || !v->is_string()) return invalid_argument(fn + "() argument must be str");
  return v->as_string();
}

std::vector<std::string> split_whitespace(const std::u32string& u, int64_t maxsplit, bool right) {
  std::vector<std::string> parts;
  if (!right) {
    size_t i = 0;
    while (true) {
      while (i < u.size() && is_python_space(u[i])) ++i;
      if (i >= u.size()) break;
      if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
        size_t e = u.size();
        while (e > i && is_python_space(u[e - 1])) --e;
        parts.push_back(utf8_encode(std::u32string_view(u).substr(i, e - i)));
        break;
      }
      size_t j = i;
      while (j < u.size() && !is_python_space(u[j])) ++j;
      parts.push_back(utf8_encode(std::u32string_view(u).substr(i, j - i)));
      i = j;
    }
    return parts;
  }
  size_t e = u.size();
  while (true) {
    while (e > 0 && is_python_space(u[e - 1])) --e;
    if (e == 0) break;
    if (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit) {
      size_t b = 0;
      while (b < e && is_python_space(u[b])) ++b;
      parts.push_back(utf8_encode(std::u32string_view(u).substr(b, e - b)));
      break;
    }
    size_t b = e;
    while (b > 0 && !is_python_space(u[b - 1])) --b;
    parts.push_back(utf8_encode(std::u32string_view(u).substr(b, e - b)));
    e = b;
  }
  std::reverse(parts.begin(), parts.end());
  return parts;
}

Result<Value> str_split(const std::string& s, const std::optional<Value>& sep_v,
                        const std::optional<Value>& max_v, bool right) {
  int64_t maxsplit = (max_v && is_int_like(*max_v)) ? int_of(*max_v) : -1;
  std::vector<std::string> parts;
  if (!sep_v || sep_v->is_none()) {
    parts = split_whitespace(utf8_decode(s), maxsplit, right);
  } else {
    if (!sep_v->is_string()) return invalid_argument("must be str or None");
    const std::string& sep = sep_v->as_string();
    if (sep.empty()) return invalid_argument("empty separator");
    if (!right) {
      size_t start = 0;
      while (true) {
        size_t p = s.find(sep, start);
        if (p == std::string::npos ||
            (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit)) {
          parts.push_back(s.substr(start));
          break;
        }
        parts.push_back(s.substr(start, p - start));
        start = p + sep.size();
      }
    } else {
      size_t end = s.size();
      while (true) {
        size_t p = end >= sep.size() ? s.rfind(sep, end - sep.size()) : std::string::npos;
        if (p == std::string::npos ||
            (maxsplit >= 0 && static_cast<int64_t>(parts.size()) >= maxsplit)) {
          parts.push_back(s.substr(0, end));
          break;
        }
        parts.push_back(s.substr(p + sep.size(), end - p - sep.size()));
        end = p;
      }
      std::reverse(parts.begin(), parts.end());
    }
  }
  std::vector<Value> out;
  for (auto& p : parts) out.emplace_back(std::move(p));
  return make_list(std::move(out));
}

Result<Value> str_format(const std::string& fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    size_t close = fmt.find('}', i);
    if (close == std::string::npos)
      return invalid_argument("Single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, close - i - 1);
    field = field.substr(0, field.find_first_of(":!"));
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_index < args.positional.size()) v = &args.positional[auto_index];
      ++auto_index;
    } else if (std::all_of(field.begin(), field.end(),
                           [](char d) { return d >= '0' && d <= '9'; })) {
      size_t idx = std::stoul(field);
      if (idx < args.positional.size()) v = &args.positional[idx];
    } else {
      for (const auto& kv : args.keyword) {
        if (kv.first == field) v = &kv.second;
      }
    }
    if (v == nullptr) return invalid_argument("format field '" + field + "' has no value");
    out += py_str(*v);
    i = close;
  }
  return Value(std::move(out));
}

bool all_cp(const std::string& s, bool (*pred)(char32_t)) {
  std::u32string u = utf8_decode(s);
  return !u.empty() && std::all_of(u.begin(), u.end(), pred);
}

Result<Value> call_str_method(const std::string& s, const std::string& name, const CallArgs& args,
                              const BuiltinLimits& limits) {
  auto bind = [&](std::vector<std::string> names) { return bind_args(args, name, names); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"chars"}));
    std::optional<std::string> chars;
    if (a[0] && a[0]->is_string()) chars = a[0]->as_string();
    return Value(py_strip(s, chars, name != "rstrip", name != "lstrip"));
  }
  if (name == "split" || name == "rsplit") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"sep", "maxsplit"}));
    return str_split(s, a[0], a[1], name == "rsplit");
  }
  if (name == "startswith" || name == "endswith") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"prefix", "start", "end"}));
    std::vector<std::string> options;
    if (a[0] && a[0]->is_list()) {
      for (const auto& v : a[0]->as_list()->items) {
        if (!v.is_string()) return invalid_argument(name + "() arguments must be str");
        options.push_back(v.as_string());
      }
    } else {
      BATON_ASSIGN_OR_RETURN(std::string p, string_arg(a[0], name));
      options.push_back(std::move(p));
    }
    for (const auto& p : options) {
      bool hit = name == "startswith"
                     ? s.compare(0, p.size(), p) == 0
                     : s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
      if (hit) return Value(true);
    }
    return Value(false);
  }
  if (name == "upper") return Value(py_upper(s));
  if (name == "lower") return Value(py_lower(s));
  if (name == "title") return Value(py_title(s));
  if (name == "capitalize") return Value(py_capitalize(s));
  if (name == "replace") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"old", "new", "count"}));
    BATON_ASSIGN_OR_RETURN(std::string from, string_arg(a[0], name));
    BATON_ASSIGN_OR_RETURN(std::string to, string_arg(a[1], name));
    int64_t count = (a[2] && is_int_like(*a[2])) ? int_of(*a[2]) : -1;
    std::string out;
    if (from.empty()) {
      std::u32string u = utf8_decode(s);
      int64_t done = 0;
      for (size_t i = 0; i <= u.size(); ++i) {
        if (count < 0 || done < count) {
          out += to;
          ++done;
        }
        if (i < u.size()) utf8_append(out, u[i]);
        if (out.size() > limits.max_string_bytes) break;
      }
    } else {
      size_t start = 0;
      int64_t done = 0;
      while (count < 0 || done < count) {
        size_t p = s.find(from, start);
        if (p == std::string::npos) break;
        out.append(s, start, p - start);
        out += to;
        start = p + from.size();
        ++done;
        if (out.size() > limits.max_string_bytes) break;
      }
      out.append(s, start);
    }
    if (out.size() > limits.max_string_bytes) {
      return resource_exhausted("string grew past the render size limit");
    }
    return Value(std::move(out));
  }
  if (name == "join") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"iterable"}));
    if (!a[0]) return invalid_argument("join() takes exactly one argument");
    BATON_ASSIGN_OR_RETURN(std::vector<Value> items, iterate(*a[0]));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string()) {
        return invalid_argument("sequence item " + std::to_string(i) + ": expected str instance, " +
                                type_name(items[i]) + " found");
      }
      if (i > 0) out += s;
      out += items[i].as_string();
      if (out.size() > limits.max_string_bytes) {
        return resource_exhausted("string grew past the render size limit");
      }
    }
    return Value(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "count" || name == "index") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"sub"}));
    BATON_ASSIGN_OR_RETURN(std::string sub, string_arg(a[0], name));
    if (name == "count") {
      if (sub.empty()) return Value(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (name == "index") return invalid_argument("substring not found");
      return Value(int64_t{-1});
    }
    return Value(static_cast<int64_t>(utf8_length(std::string_view(s).substr(0, p))));
  }
  if (name == "splitlines") {
    std::vector<Value> out;
    size_t start = 0;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == '\n' || s[i] == '\r') {
        out.emplace_back(s.substr(start, i - start));
        if (s[i] == '\r' && i + 1 < s.size() && s[i + 1] == '\n') ++i;
        start = i + 1;
      }
    }
    if (start < s.size()) out.emplace_back(s.substr(start));
    return make_list(std::move(out));
  }
  if (name == "removeprefix" || name == "removesuffix") {
    BATON_ASSIGN_OR_RETURN(auto a, bind({"affix"}));
    BATON_ASSIGN_OR_RETURN(std::string p, string_arg(a[0], name));
    if (name == "removeprefix" && s.compare(0, p.size(), p) == 0) return Value(s.substr(p.size()));
    if (name == "removesuffix" && !p.empty() && s.size() >= p.size() &&
        s.compare(s.size() - p.size(), p.size(), p) == 0) {
      return Value(s.substr(0, s.size() - p.size()));
    }
    return Value(s);
  }
  if (name == "isdigit") return Value(all_cp(s, [](char32_t c) { return c >= '0' && c <= '9'; }));
  if (name == "isspace") return Value(all_cp(s, is_python_space));
  if (name == "isalpha") {
    return Value(all_cp(s, [](char32_t c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= 0xc0 && !is_python_space(c));
    }));
  }
  if (name == "isalnum") {
    return Value(all_cp(s, [](char32_t c) {
      return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
             (c >= 0xc0 && !is_python_space(c));
    }));
  }
  if (name == "islower") return Value(py_lower(s) == s && py_upper(s) != s);
  if (name == "isupper") return Value(py_upper(s) == s && py_lower(s) != s);
  if (name == "format") return str_format(s, args);
  return invalid_argument("'str' object has no attribute '" + name + "'");
}

constexpr std::array<const char*, 22> kStrMethods = {
    "strip",        "lstrip",       "rstrip", "split",  "rsplit",     "startswith",
    "endswith",     "upper",        "lower",  "title",  "capitalize", "replace",
    "join",         "find",         "rfind",  "count",  "index",      "splitlines",
    "removeprefix", "removesuffix", "format", "isdigit"};
constexpr std::array<const char*, 6> kStrPredicates = {"isspace", "isalpha", "isalnum",
                                                       "islower", "isupper", "isdigit"};

bool is_str_method(const std::string& name) {
  for (const char* m : kStrMethods) {
    if (name == m) return true;
  }
  for (const char* m : kStrPredicates) {
    if (name == m) return true;
  }
  return false;
}

Value dict_items(const Dict& d) {
  std::vector<Value> out;
  for (const auto& [k, v] : d.items) out.push_back(make_list({Value(k), v}, true));
  return make_list(std::move(out));
}

}  // namespace

Result<Value> get_attr(const Value& obj, const std::string& name, const BuiltinLimits& limits) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return undefined_error(obj);
    case Value::Kind::kString:
      if (is_str_method(name)) {
        std::string s = obj.as_string();
        BuiltinLimits lim = limits;
        return make_callable("str." + name, [s, name, lim](const CallArgs& args) {
          return call_str_method(s, name, args, lim);
        });
      }
      break;
    case Value::Kind::kDict: {
      DictPtr d = obj.as_dict();
      if (d->is_namespace) {
        if (const Value* v = d->find(name)) return *v;
        break;
      }
      if (name == "items" || name == "keys" || name == "values") {
        return make_callable("dict." + name, [d, name](const CallArgs& args) -> Result<Value> {
          if (!args.positional.empty() || !args.keyword.empty()) {
            return invalid_argument(name + "() takes no arguments");
          }
          if (name == "items") return dict_items(*d);
          std::vector<Value> out;
          for (const auto& [k, v] : d->items) out.push_back(name == "keys" ? Value(k) : v);
          return make_list(std::move(out));
        });
      }
      if (name == "get") {
        return make_callable("dict.get", [d](const CallArgs& args) -> Result<Value> {
          BATON_ASSIGN_OR_RETURN(auto a, bind_args(args, "get", {"key", "default"}));
          if (!a[0]) return invalid_argument("get expected at least 1 argument, got 0");
          if (a[0]->is_string()) {
            if (const Value* v = d->find(a[0]->as_string())) return *v;
          }
          return a[1] ? *a[1] : Value(None{});
        });
      }
      if (name == "pop" || name == "popitem" || name == "setdefault" || name == "update" ||
          name == "clear") {
        return unsafe(obj, name);
      }
      if (const Value* v = d->find(name)) return *v;
      break;
    }
    case Value::Kind::kList: {
      ListPtr l = obj.as_list();
      if (name == "index" || name == "count") {
        return make_callable("list." + name, [l, name](const CallArgs& args) -> Result<Value> {
          BATON_ASSIGN_OR_RETURN(auto a, bind_args(args, name, {"value"}));
          if (!a[0]) return invalid_argument(name + "() takes exactly one argument");
          int64_t n = 0;
          for (size_t i = 0; i < l->items.size(); ++i) {
            if (!equals(l->items[i], *a[0])) continue;
            if (name == "index") return Value(static_cast<int64_t>(i));
            ++n;
          }
          if (name == "index") return invalid_argument("value is not in list");
          return Value(n);
        });
      }
      if (!l->is_tuple &&
          (name == "append" || name == "extend" || name == "insert" || name == "pop" ||
           name == "remove" || name == "reverse" || name == "sort" || name == "clear")) {
        return unsafe(obj, name);
      }
      break;
    }
    default:
      break;
  }
  return missing_attr(obj, name);
}

Result<Value> get_item(const Value& obj, const Value& key, const BuiltinLimits& limits) {
  if (obj.is_undefined()) return undefined_error(obj);
  if (obj.is_dict() && key.is_string()) {
    if (const Value* v = obj.as_dict()->find(key.as_string())) return *v;
  }
  if ((obj.is_list() || obj.is_string()) && is_int_like(key)) {
    int64_t i = int_of(key);
    if (obj.is_list()) {
      const auto& items = obj.as_list()->items;
      int64_t n = static_cast<int64_t>(items.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n) return items[static_cast<size_t>(i)];
    } else {
      std::u32string u = utf8_decode(obj.as_string());
      int64_t n = static_cast<int64_t>(u.size());
      if (i < 0) i += n;
      if (i >= 0 && i < n)
        return Value(utf8_encode(std::u32string_view(u).substr(static_cast<size_t>(i), 1)));
    }
  }
  if (key.is_string()) return get_attr(obj, key.as_string(), limits);
  if (obj.is_none()) return Value::undefined("'None' has no element " + py_repr(key));
  return Value::undefined(type_name(obj) + " object has no element " + py_repr(key));
}

Result<Value> slice(const Value& obj, const std::optional<Value>& start_v,
                    const std::optional<Value>& stop_v, const std::optional<Value>& step_v) {
  if (obj.is_undefined()) return undefined_error(obj);
  auto part = [](const std::optional<Value>& v,
                 const char* what) -> Result<std::optional<int64_t>> {
    if (!v || v->is_none()) return std::optional<int64_t>();
    if (!is_int_like(*v)) {
      return invalid_argument(std::string("slice ") + what + " must be an integer or None");
    }
    return std::optional<int64_t>(int_of(*v));
  };
  BATON_ASSIGN_OR_RETURN(auto start_o, part(start_v, "indices"));
  BATON_ASSIGN_OR_RETURN(auto stop_o, part(stop_v, "indices"));
  BATON_ASSIGN_OR_RETURN(auto step_o, part(step_v, "step"));
  int64_t step = step_o.value_or(1);
  if (step == 0) return invalid_argument("slice step cannot be zero");
  std::u32string chars;
  const std::vector<Value>* items = nullptr;
  int64_t n = 0;
  if (obj.is_string()) {
    chars = utf8_decode(obj.as_string());
    n = static_cast<int64_t>(chars.size());
  } else if (obj.is_list()) {
    items = &obj.as_list()->items;
    n = static_cast<int64_t>(items->size());
  } else {
    return invalid_argument("'" + type_name(obj) + "' object is not subscriptable");
  }
  // CPython's slice.indices().
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = step < 0 ? -1 : 0;
    } else if (x >= n) {
      x = step < 0 ? n - 1 : n;
    }
    return x;
  };
  int64_t start = clamp(start_o, step < 0 ? n - 1 : 0);
  int64_t stop = clamp(stop_o, step < 0 ? -1 : n);
  std::vector<size_t> picks;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step)
    picks.push_back(static_cast<size_t>(i));
  if (obj.is_string()) {
    std::u32string out;
    for (size_t i : picks) out += chars[i];
    return Value(utf8_encode(out));
  }
  std::vector<Value> out;
  for (size_t i : picks) out.push_back((*items)[i]);
  return make_list(std::move(out), obj.as_list()->is_tuple);
}

Result<std::vector<Value>> iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      return v.as_list()->items;
    case Value::Kind::kDict: {
      if (v.as_dict()->is_namespace) break;
      std::vector<Value> keys;
      for (const auto& kv : v.as_dict()->items) keys.emplace_back(kv.first);
      return keys;
    }
    case Value::Kind::kString: {
      std::vector<Value> out;
      for (char32_t c : utf8_decode(v.as_string()))
        out.emplace_back(utf8_encode(std::u32string(1, c)));
      return out;
    }
    default:
      break;
  }
  return invalid_argument("'" + type_name(v) + "' object is not iterable");
}

Result<int64_t> length(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return int64_t{0};
    case Value::Kind::kString:
      return static_cast<int64_t>(utf8_length(v.as_string()));
    case Value::Kind::kList:
      return static_cast<int64_t>(v.as_list()->items.size());
    case Value::Kind::kDict:
      if (v.as_dict()->is_namespace) break;
      return static_cast<int64_t>(v.as_dict()->items.size());
    default:
      break;
  }
  return invalid_argument("object of type '" + type_name(v) + "' has no len()");
}

}  // namespace baton::model::jinja
