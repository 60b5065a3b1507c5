#pragma once

// Builtin behaviour of Baton's Jinja interpreter: operators, attribute and
// item access, iteration, slicing, Python str/dict/list methods, filters and
// tests, each with the semantics of jinja2 under transformers'
// ImmutableSandboxedEnvironment (methods that mutate lists or dicts are
// refused; ranges are capped at kMaxRange). Every function is pure apart
// from the values it returns; errors are Statuses whose message reads like
// the Python exception jinja2 would raise (no line number: the interpreter
// adds it).

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/jinja_value.h"

namespace baton::model::jinja {

// jinja2's sandbox refuses range() results longer than this.
inline constexpr int64_t kMaxRange = 100000;

// Limits builtins enforce on the values they build.
struct BuiltinLimits {
  size_t max_string_bytes = 32u << 20;
};

// The error a misused undefined value raises ("'x' is undefined").
Status undefined_error(const Value& undefined);

// Binary operators: + - * / // % ** and ~ (string concatenation).
Result<Value> binary_op(const std::string& op, const Value& a, const Value& b,
                        const BuiltinLimits& limits);
Result<Value> negate(const Value& v);
// Python `item in container`.
Result<bool> contains(const Value& container, const Value& item);
// Comparison operators == != < > <= >=.
Result<bool> compare(const std::string& op, const Value& a, const Value& b);

// jinja2's environment.getattr (obj.name) and getitem (obj[key]): methods and
// keys, an undefined value when neither exists.
Result<Value> get_attr(const Value& obj, const std::string& name, const BuiltinLimits& limits);
Result<Value> get_item(const Value& obj, const Value& key, const BuiltinLimits& limits);
// obj[start:stop:step]; absent parts are nullopt.
Result<Value> slice(const Value& obj, const std::optional<Value>& start,
                    const std::optional<Value>& stop, const std::optional<Value>& step);
// The items a for loop visits: list items, dict keys, string characters;
// undefined iterates as empty.
Result<std::vector<Value>> iterate(const Value& v);
// len(): strings count code points.
Result<int64_t> length(const Value& v);

// Filters and tests by name; an unknown name is an error.
Result<Value> apply_filter(const std::string& name, const Value& v, const CallArgs& args,
                           const BuiltinLimits& limits);
Result<bool> apply_test(const std::string& name, const Value& v, const CallArgs& args);
bool has_filter(const std::string& name);
bool has_test(const std::string& name);

// Binds call arguments to parameter names, Python style: positional first,
// then keywords; unset parameters are nullopt. Too many or unknown arguments
// are errors naming `fn`.
Result<std::vector<std::optional<Value>>> bind_args(const CallArgs& args, const std::string& fn,
                                                    const std::vector<std::string>& names,
                                                    size_t skip_positional = 0);

// String helpers shared by methods and filters (Python semantics).
std::string py_strip(const std::string& s, const std::optional<std::string>& chars, bool left,
                     bool right);
std::string py_upper(const std::string& s);
std::string py_lower(const std::string& s);
std::string py_capitalize(const std::string& s);
std::string py_title(const std::string& s);
// Python's str.isspace() for one code point.
bool is_python_space(char32_t c);

}  // namespace baton::model::jinja
