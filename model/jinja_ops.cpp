// Operators, argument binding and Python string case/strip helpers.

#include <cmath>
#include <cstdio>

#include "model/jinja_builtins.h"

namespace baton::model::jinja {

namespace {

bool is_integral(const Value& v) { return v.is_int() || v.is_bool(); }
int64_t to_int(const Value& v) { return v.is_bool() ? int64_t{v.as_bool()} : v.as_int(); }

Status unsupported(const std::string& op, const Value& a, const Value& b) {
  return invalid_argument("unsupported operand type(s) for " + op + ": '" + type_name(a) +
                          "' and '" + type_name(b) + "'");
}

Status too_large() { return resource_exhausted("string or list grew past the render size limit"); }

Result<Value> repeat(const Value& seq, int64_t n, const BuiltinLimits& limits) {
  if (n < 0) n = 0;
  if (seq.is_string()) {
    const std::string& s = seq.as_string();
    if (!s.empty() && static_cast<uint64_t>(n) > limits.max_string_bytes / s.size()) {
      return too_large();
    }
    std::string out;
    out.reserve(s.size() * static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) out += s;
    return Value(std::move(out));
  }
  const auto& items = seq.as_list()->items;
  if (!items.empty() && static_cast<uint64_t>(n) > limits.max_string_bytes / items.size()) {
    return too_large();
  }
  std::vector<Value> out;
  for (int64_t i = 0; i < n; ++i) out.insert(out.end(), items.begin(), items.end());
  return make_list(std::move(out), seq.as_list()->is_tuple);
}

// printf-style `"%s" % args`, the subset templates use.
Result<Value> percent_format(const std::string& fmt, const Value& args) {
  std::vector<Value> list;
  if (args.is_list() && args.as_list()->is_tuple) {
    list = args.as_list()->items;
  } else {
    list.push_back(args);
  }
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) return invalid_argument("incomplete format");
    char c = fmt[i];
    if (c == '%') {
      out += '%';
      continue;
    }
    if (next >= list.size()) return invalid_argument("not enough arguments for format string");
    const Value& v = list[next++];
    if (c == 's') {
      out += py_str(v);
    } else if (c == 'r') {
      out += py_repr(v);
    } else if (c == 'd' || c == 'i') {
      if (!v.is_number()) return invalid_argument("%d format: a real number is required");
      out += std::to_string(v.is_float() ? static_cast<int64_t>(v.as_float()) : to_int(v));
    } else {
      return invalid_argument(std::string("unsupported format character '") + c + "'");
    }
  }
  if (next < list.size()) {
    return invalid_argument("not all arguments converted during string formatting");
  }
  return Value(std::move(out));
}

char32_t upper_cp(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if ((c >= 0xe0 && c <= 0xfe && c != 0xf7) || (c >= 0x3b1 && c <= 0x3c9 && c != 0x3c2) ||
      (c >= 0x430 && c <= 0x44f)) {
    return c - 32;
  }
  return c;
}
char32_t lower_cp(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if ((c >= 0xc0 && c <= 0xde && c != 0xd7) || (c >= 0x391 && c <= 0x3a9 && c != 0x3a2) ||
      (c >= 0x410 && c <= 0x42f)) {
    return c + 32;
  }
  return c;
}
// Approximates Python's "cased" property: ASCII letters and letters of the
// scripts upper_cp/lower_cp know, plus other non-ASCII letters generally.
bool is_cased(char32_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return true;
  if (c < 0xc0 || c == 0xd7 || c == 0xf7) return false;
  if (c >= 0x2000 && c <= 0x2bff) return false;  // punctuation, symbols
  if (c >= 0x3000) return false;                 // CJK has no case
  return true;
}

bool is_py_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f ||
         c == 0x205f || c == 0x3000;
}

}  // namespace

Status undefined_error(const Value& undefined) {
  const std::string& hint = undefined.as_undefined().hint;
  return invalid_argument(hint.empty() ? "value is undefined" : hint);
}

Result<Value> binary_op(const std::string& op, const Value& a, const Value& b,
                        const BuiltinLimits& limits) {
  if (op == "~") {
    std::string s = py_str(a);
    std::string t = py_str(b);
    if (s.size() + t.size() > limits.max_string_bytes) return too_large();
    return Value(s + t);
  }
  if (a.is_undefined()) return undefined_error(a);
  if (b.is_undefined()) return undefined_error(b);
  bool nums = a.is_number() && b.is_number();
  bool ints = is_integral(a) && is_integral(b);
  if (op == "+") {
    if (ints) {
      int64_t r;
      if (__builtin_add_overflow(to_int(a), to_int(b), &r))
        return invalid_argument("integer overflow");
      return Value(r);
    }
    if (nums) return Value(a.to_double() + b.to_double());
    if (a.is_string() && b.is_string()) {
      if (a.as_string().size() + b.as_string().size() > limits.max_string_bytes) return too_large();
      return Value(a.as_string() + b.as_string());
    }
    if (a.is_string()) {
      return invalid_argument("can only concatenate str (not \"" + type_name(b) + "\") to str");
    }
    if (a.is_list() && b.is_list() && a.as_list()->is_tuple == b.as_list()->is_tuple) {
      const auto& x = a.as_list()->items;
      const auto& y = b.as_list()->items;
      if (x.size() + y.size() > limits.max_string_bytes) return too_large();
      std::vector<Value> out = x;
      out.insert(out.end(), y.begin(), y.end());
      return make_list(std::move(out), a.as_list()->is_tuple);
    }
    return unsupported("+", a, b);
  }
  if (op == "-") {
    if (ints) {
      int64_t r;
      if (__builtin_sub_overflow(to_int(a), to_int(b), &r))
        return invalid_argument("integer overflow");
      return Value(r);
    }
    if (nums) return Value(a.to_double() - b.to_double());
    return unsupported("-", a, b);
  }
  if (op == "*") {
    if (ints) {
      int64_t r;
      if (__builtin_mul_overflow(to_int(a), to_int(b), &r))
        return invalid_argument("integer overflow");
      return Value(r);
    }
    if (nums) return Value(a.to_double() * b.to_double());
    if ((a.is_string() || a.is_list()) && is_integral(b)) return repeat(a, to_int(b), limits);
    if ((b.is_string() || b.is_list()) && is_integral(a)) return repeat(b, to_int(a), limits);
    return unsupported("*", a, b);
  }
  if (op == "/") {
    if (!nums) return unsupported("/", a, b);
    if (b.to_double() == 0.0) return invalid_argument("division by zero");
    return Value(a.to_double() / b.to_double());
  }
  if (op == "//" || op == "%") {
    if (op == "%" && a.is_string()) return percent_format(a.as_string(), b);
    if (!nums) return unsupported(op, a, b);
    if (b.to_double() == 0.0) {
      return invalid_argument(ints ? "integer division or modulo by zero" : "float modulo");
    }
    if (ints) {
      int64_t x = to_int(a);
      int64_t y = to_int(b);
      if (x == INT64_MIN && y == -1) return invalid_argument("integer overflow");
      int64_t q = x / y;
      int64_t r = x % y;
      if (r != 0 && ((r < 0) != (y < 0))) {
        --q;
        r += y;
      }
      return op == "//" ? Value(q) : Value(r);
    }
    double x = a.to_double();
    double y = b.to_double();
    if (op == "//") return Value(std::floor(x / y));
    double r = std::fmod(x, y);
    if (r != 0.0 && ((r < 0) != (y < 0))) r += y;
    return Value(r);
  }
  if (op == "**") {
    if (!nums) return unsupported("** or pow()", a, b);
    if (ints && to_int(b) >= 0) {
      int64_t base = to_int(a);
      int64_t e = to_int(b);
      int64_t r = 1;
      while (e > 0) {
        if (e & 1) {
          if (__builtin_mul_overflow(r, base, &r)) return invalid_argument("integer overflow");
        }
        e >>= 1;
        if (e > 0 && __builtin_mul_overflow(base, base, &base)) {
          return invalid_argument("integer overflow");
        }
      }
      return Value(r);
    }
    if (a.to_double() == 0.0 && b.to_double() < 0) {
      return invalid_argument("0.0 cannot be raised to a negative power");
    }
    return Value(std::pow(a.to_double(), b.to_double()));
  }
  return invalid_argument("unknown operator " + op);
}

Result<Value> negate(const Value& v) {
  if (v.is_undefined()) return undefined_error(v);
  if (v.is_float()) return Value(-v.as_float());
  if (is_integral(v)) {
    if (to_int(v) == INT64_MIN) return invalid_argument("integer overflow");
    return Value(-to_int(v));
  }
  return invalid_argument("bad operand type for unary -: '" + type_name(v) + "'");
}

Result<bool> contains(const Value& container, const Value& item) {
  switch (container.kind()) {
    case Value::Kind::kString:
      if (!item.is_string()) {
        return invalid_argument("'in <string>' requires string as left operand, not " +
                                type_name(item));
      }
      return container.as_string().find(item.as_string()) != std::string::npos;
    case Value::Kind::kList:
      for (const auto& v : container.as_list()->items) {
        if (equals(v, item)) return true;
      }
      return false;
    case Value::Kind::kDict:
      if (container.as_dict()->is_namespace) break;
      return item.is_string() && container.as_dict()->find(item.as_string()) != nullptr;
    case Value::Kind::kUndefined:
      return false;
    default:
      break;
  }
  return invalid_argument("argument of type '" + type_name(container) + "' is not iterable");
}

Result<bool> compare(const std::string& op, const Value& a, const Value& b) {
  if (op == "==") return equals(a, b);
  if (op == "!=") return !equals(a, b);
  if (op == "<") return less_than(a, b);
  if (op == ">") return less_than(b, a);
  if (op == "<=" || op == ">=") {
    const Value& x = op == "<=" ? a : b;
    const Value& y = op == "<=" ? b : a;
    if (equals(x, y)) return true;
    return less_than(x, y);
  }
  if (op == "in") return contains(b, a);
  if (op == "notin") {
    BATON_ASSIGN_OR_RETURN(bool in, contains(b, a));
    return !in;
  }
  return invalid_argument("unknown comparison " + op);
}

Result<std::vector<std::optional<Value>>> bind_args(const CallArgs& args, const std::string& fn,
                                                    const std::vector<std::string>& names,
                                                    size_t skip_positional) {
  std::vector<std::optional<Value>> out(names.size());
  if (args.positional.size() > names.size() + skip_positional) {
    return invalid_argument(fn + "() takes at most " + std::to_string(names.size()) +
                            " argument(s)");
  }
  for (size_t i = skip_positional; i < args.positional.size(); ++i) {
    out[i - skip_positional] = args.positional[i];
  }
  for (const auto& [key, value] : args.keyword) {
    bool found = false;
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == key) {
        if (out[i])
          return invalid_argument(fn + "() got multiple values for argument '" + key + "'");
        out[i] = value;
        found = true;
        break;
      }
    }
    if (!found) return invalid_argument(fn + "() got an unexpected keyword argument '" + key + "'");
  }
  return out;
}

std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                     bool right) {
  std::u32string u = utf8_decode(s);
  std::u32string set;
  if (chars) set = utf8_decode(*chars);
  auto strip_me = [&](char32_t c) {
    return chars ? set.find(c) != std::u32string::npos : is_py_space(c);
  };
  size_t b = 0;
  size_t e = u.size();
  if (left) {
    while (b < e && strip_me(u[b])) ++b;
  }
  if (right) {
    while (e > b && strip_me(u[e - 1])) --e;
  }
  return utf8_encode(std::u32string_view(u).substr(b, e - b));
}

std::string py_upper(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (auto& c : u) c = upper_cp(c);
  return utf8_encode(u);
}

std::string py_lower(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (auto& c : u) c = lower_cp(c);
  return utf8_encode(u);
}

std::string py_capitalize(const std::string& s) {
  std::u32string u = utf8_decode(s);
  for (size_t i = 0; i < u.size(); ++i) u[i] = i == 0 ? upper_cp(u[i]) : lower_cp(u[i]);
  return utf8_encode(u);
}

std::string py_title(const std::string& s) {
  std::u32string u = utf8_decode(s);
  bool prev_cased = false;
  for (auto& c : u) {
    bool cased = is_cased(c);
    c = prev_cased ? lower_cp(c) : upper_cp(c);
    prev_cased = cased;
  }
  return utf8_encode(u);
}

bool is_python_space(char32_t c) { return is_py_space(c); }

}  // namespace baton::model::jinja
