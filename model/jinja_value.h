#pragma once

// The value type of Baton's Jinja interpreter, with Python's semantics.
//
// Chat templates are Jinja2 run by Python, so every observable behaviour of a
// value (how it prints, what is truthy, how `==` and `<` compare, how
// json.dumps writes it) follows CPython. Lists and dicts are shared by
// reference like Python objects; only namespaces are ever mutated (the
// transformers sandbox forbids mutating lists and dicts), so sharing is safe.
// Dict keys are strings (all a chat template ever builds) and keep insertion
// order, as Python dicts do. Values are not thread-safe; one render owns its
// values.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "common/status.h"

namespace baton::model::jinja {

class Value;
struct List;
struct Dict;
struct Callable;
using ListPtr = std::shared_ptr<List>;
using DictPtr = std::shared_ptr<Dict>;
using CallablePtr = std::shared_ptr<Callable>;

// jinja2's Undefined: what a missing variable, key or attribute evaluates to.
// `hint` is the message used when the value is misused ("'x' is undefined").
struct Undefined {
  std::string hint;
};
struct None {};

// Arguments of a call: positional then keyword, as written at the call site.
struct CallArgs {
  std::vector<Value> positional;
  std::vector<std::pair<std::string, Value>> keyword;
};

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() : v_(Undefined{}) {}
  Value(Undefined u) : v_(std::move(u)) {}       // NOLINT(google-explicit-constructor)
  Value(None) : v_(None{}) {}                    // NOLINT(google-explicit-constructor)
  Value(bool b) : v_(b) {}                       // NOLINT(google-explicit-constructor)
  Value(int v) : v_(static_cast<int64_t>(v)) {}  // NOLINT(google-explicit-constructor)
  Value(int64_t v) : v_(v) {}                    // NOLINT(google-explicit-constructor)
  Value(double v) : v_(v) {}                     // NOLINT(google-explicit-constructor)
  Value(std::string s) : v_(std::move(s)) {}     // NOLINT(google-explicit-constructor)
  Value(const char* s) : v_(std::string(s)) {}   // NOLINT(google-explicit-constructor)
  Value(ListPtr l) : v_(std::move(l)) {}         // NOLINT(google-explicit-constructor)
  Value(DictPtr d) : v_(std::move(d)) {}         // NOLINT(google-explicit-constructor)
  Value(CallablePtr c) : v_(std::move(c)) {}     // NOLINT(google-explicit-constructor)

  static Value undefined(std::string hint) { return Value(Undefined{std::move(hint)}); }

  Kind kind() const { return static_cast<Kind>(v_.index()); }
  bool is_undefined() const { return kind() == Kind::kUndefined; }
  bool is_none() const { return kind() == Kind::kNone; }
  bool is_bool() const { return kind() == Kind::kBool; }
  bool is_int() const { return kind() == Kind::kInt; }
  bool is_float() const { return kind() == Kind::kFloat; }
  // int, float or bool (Python's bool is an int).
  bool is_number() const { return is_int() || is_float() || is_bool(); }
  bool is_string() const { return kind() == Kind::kString; }
  bool is_list() const { return kind() == Kind::kList; }
  bool is_dict() const { return kind() == Kind::kDict; }
  bool is_callable() const { return kind() == Kind::kCallable; }

  bool as_bool() const { return std::get<bool>(v_); }
  int64_t as_int() const { return std::get<int64_t>(v_); }
  double as_float() const { return std::get<double>(v_); }
  // For is_number() values: the numeric value as a double / as an integer
  // (bool counts as 0 or 1).
  double to_double() const;
  const std::string& as_string() const { return std::get<std::string>(v_); }
  const ListPtr& as_list() const { return std::get<ListPtr>(v_); }
  const DictPtr& as_dict() const { return std::get<DictPtr>(v_); }
  const CallablePtr& as_callable() const { return std::get<CallablePtr>(v_); }
  const Undefined& as_undefined() const { return std::get<Undefined>(v_); }

 private:
  std::variant<Undefined, None, bool, int64_t, double, std::string, ListPtr, DictPtr, CallablePtr>
      v_;
};

struct List {
  std::vector<Value> items;
  bool is_tuple = false;  // prints as (a, b) instead of [a, b]
};

struct Dict {
  std::vector<std::pair<std::string, Value>> items;
  bool is_namespace = false;  // jinja2's namespace(): the only mutable object

  // The value for key, or nullptr.
  const Value* find(std::string_view key) const;
  // Insert or overwrite, keeping the first insertion's position.
  void set(std::string key, Value value);
};

// A builtin function, bound method or macro. `fn` may capture the render it
// belongs to; callables never outlive their render.
struct Callable {
  std::string name;
  std::function<Result<Value>(const CallArgs&)> fn;
};

Value make_list(std::vector<Value> items, bool is_tuple = false);
Value make_dict();
Value make_callable(std::string name, std::function<Result<Value>(const CallArgs&)> fn);

// Python's type name, for error messages: 'str', 'int', 'NoneType', ...
std::string type_name(const Value& v);
// jinja2's object description in undefined messages: "'dict object'".
std::string object_description(const Value& v);

// Python truthiness (undefined is false).
bool truthy(const Value& v);
// Python `==` (1 == 1.0 == True; dicts compare unordered; undefined equals
// only undefined).
bool equals(const Value& a, const Value& b);
// Python `<`: numbers, strings (code point order) and lists; anything else is
// a TypeError.
Result<bool> less_than(const Value& a, const Value& b);

// Python str() and repr() of a value; undefined prints as "".
std::string py_str(const Value& v);
std::string py_repr(const Value& v);
// Python repr() of a float ("1.0", "1e+16", "inf").
std::string format_float(double d);

// json.dumps(v, ensure_ascii, indent, separators, sort_keys); indent is
// absent when indent_text is nullptr. Undefined and callables are TypeErrors.
struct JsonDumpOptions {
  bool ensure_ascii = false;
  const std::string* indent = nullptr;  // the per-level indent string
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};
Result<std::string> json_dumps(const Value& v, const JsonDumpOptions& options);

// UTF-8 helpers: Python strings index by code point.
std::u32string utf8_decode(std::string_view s);
std::string utf8_encode(std::u32string_view s);
void utf8_append(std::string& out, char32_t c);
size_t utf8_length(std::string_view s);

}  // namespace baton::model::jinja
