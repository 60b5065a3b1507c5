#pragma once

// Typed reads of OpenAI request fields, shared by the request and message
// parsers of this folder. Every error is a kInvalidArgument whose message
// starts with the field's path and ": " ("messages[2].content: must be a
// string, an array or null, got number"), which openai_error.h turns into the
// error body's "param".
//
// A field that is absent or JSON null reads as "not given": OpenAI clients
// send explicit nulls for unset optional fields. Nothing here throws.

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace baton::protocol {

using OrderedJson = nlohmann::ordered_json;

// "string", "number", "boolean", "object", "array" or "null": the JSON name
// of a value's type, for messages.
std::string_view json_type_name(const OrderedJson& value);

// A number for a message: integral values as integers ("2", "-3"), others
// in the shortest form that reads back exactly ("3.5", "0.1").
std::string format_number(double value);

// "<path>: <what>" as a kInvalidArgument.
Status field_error(std::string_view path, std::string_view what);
// "<path>: must be <expected>, got <json type>".
Status type_error(std::string_view path, std::string_view expected, const OrderedJson& got);

// Reads the members of one JSON object. `path` is the object's own path
// ("" for the request body, "messages[0]" for a message) and prefixes the
// field names in errors. The object must outlive the reader.
class FieldReader {
 public:
  FieldReader(const OrderedJson& object, std::string path);

  // The member, or nullptr when it is absent or null.
  const OrderedJson* find(std::string_view key) const;
  // The path of a member: "messages[0].role", or "model" at the top level.
  std::string path_of(std::string_view key) const;

  // Each leaves `out` as nullopt when the field is not given.
  Status read_bool(std::string_view key, std::optional<bool>& out) const;
  Status read_string(std::string_view key, std::optional<std::string>& out) const;
  // A string that must be given: "<path>: required" when it is not.
  Status read_required_string(std::string_view key, std::string& out) const;
  // An object that must be given: "required" when absent, a type error when
  // it is not an object.
  Result<const OrderedJson*> required_object(std::string_view key) const;
  // A JSON number (integers included).
  Status read_number(std::string_view key, std::optional<double>& out) const;
  // An integer in [lo, hi]; a float with no fractional part (3.0) counts, as
  // Python clients may send one. Out of the range: "must be between lo and
  // hi" worded by the caller's bounds.
  Status read_int(std::string_view key, int64_t lo, int64_t hi, std::optional<int64_t>& out) const;

 private:
  const OrderedJson& object_;
  std::string path_;
};

// An integer value read the same way as FieldReader::read_int, for array
// elements and other values without a key.
Status read_int_value(const OrderedJson& value, std::string_view path, int64_t lo, int64_t hi,
                      int64_t& out);

// The message for an integer outside [lo, hi]: "must be a signed 64-bit
// integer" for the whole int64 range, "must be at least lo" when hi is the
// int32 or int64 maximum, else "must be between lo and hi".
std::string int_range_text(int64_t lo, int64_t hi);

}  // namespace baton::protocol
