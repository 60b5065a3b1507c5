#include "protocol/openai_json_reader.h"

#include <cmath>
#include <limits>
#include <utility>

namespace baton::protocol {

std::string_view json_type_name(const OrderedJson& value) {
  switch (value.type()) {
    case OrderedJson::value_t::null:
      return "null";
    case OrderedJson::value_t::object:
      return "object";
    case OrderedJson::value_t::array:
      return "array";
    case OrderedJson::value_t::string:
      return "string";
    case OrderedJson::value_t::boolean:
      return "boolean";
    case OrderedJson::value_t::number_integer:
    case OrderedJson::value_t::number_unsigned:
    case OrderedJson::value_t::number_float:
      return "number";
    default:
      return "binary";
  }
}

std::string format_number(double value) {
  // JSON's own writer gives the shortest form that reads back exactly, so the
  // message shows 3.5 rather than 3.500000.
  if (!std::isfinite(value)) {
    return value > 0 ? "inf" : (value < 0 ? "-inf" : "nan");
  }
  // Integral values read as the client most likely wrote them: 2, not 2.0.
  if (std::floor(value) == value && std::fabs(value) < 1e15) {
    return std::to_string(static_cast<int64_t>(value));
  }
  return OrderedJson(value).dump();
}

Status field_error(std::string_view path, std::string_view what) {
  std::string message(path);
  message += ": ";
  message += what;
  return invalid_argument(std::move(message));
}

Status type_error(std::string_view path, std::string_view expected, const OrderedJson& got) {
  std::string what = "must be ";
  what += expected;
  what += ", got ";
  what += json_type_name(got);
  return field_error(path, what);
}

std::string int_range_text(int64_t lo, int64_t hi) {
  if (lo == std::numeric_limits<int64_t>::min() && hi == std::numeric_limits<int64_t>::max()) {
    return "must be a signed 64-bit integer";
  }
  if (hi == std::numeric_limits<int64_t>::max() || hi == std::numeric_limits<int32_t>::max()) {
    return "must be at least " + std::to_string(lo);
  }
  return "must be between " + std::to_string(lo) + " and " + std::to_string(hi);
}

Status read_int_value(const OrderedJson& value, std::string_view path, int64_t lo, int64_t hi,
                      int64_t& out) {
  if (value.is_number_unsigned()) {
    // Only values past INT64_MAX stay unsigned once compared; none of them
    // fits any range we accept.
    uint64_t u = value.get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo))) {
      return field_error(path, int_range_text(lo, hi) + ", got " + value.dump());
    }
    out = static_cast<int64_t>(u);
    return Status::ok();
  }
  int64_t v = 0;
  if (value.is_number_integer()) {
    v = value.get<int64_t>();
  } else if (value.is_number_float()) {
    double d = value.get<double>();
    if (std::floor(d) != d) {
      return field_error(path, "must be an integer, got " + format_number(d));
    }
    // Past 2^53 a double no longer names one integer; no accepted range goes
    // that far except seed, and a seed sent as a float is a client bug.
    if (std::fabs(d) > 9007199254740992.0) {
      return field_error(path, int_range_text(lo, hi) + ", got " + format_number(d));
    }
    v = static_cast<int64_t>(d);
  } else {
    return type_error(path, "an integer", value);
  }
  if (v < lo || v > hi) {
    return field_error(path, int_range_text(lo, hi) + ", got " + std::to_string(v));
  }
  out = v;
  return Status::ok();
}

FieldReader::FieldReader(const OrderedJson& object, std::string path)
    : object_(object), path_(std::move(path)) {}

const OrderedJson* FieldReader::find(std::string_view key) const {
  if (!object_.is_object()) {
    return nullptr;
  }
  auto it = object_.find(std::string(key));
  if (it == object_.end() || it->is_null()) {
    return nullptr;
  }
  return &*it;
}

std::string FieldReader::path_of(std::string_view key) const {
  if (path_.empty()) {
    return std::string(key);
  }
  std::string p = path_;
  p += '.';
  p += key;
  return p;
}

Status FieldReader::read_bool(std::string_view key, std::optional<bool>& out) const {
  out.reset();
  const OrderedJson* v = find(key);
  if (v == nullptr) {
    return Status::ok();
  }
  if (!v->is_boolean()) {
    return type_error(path_of(key), "a boolean", *v);
  }
  out = v->get<bool>();
  return Status::ok();
}

Status FieldReader::read_string(std::string_view key, std::optional<std::string>& out) const {
  out.reset();
  const OrderedJson* v = find(key);
  if (v == nullptr) {
    return Status::ok();
  }
  if (!v->is_string()) {
    return type_error(path_of(key), "a string", *v);
  }
  out = v->get<std::string>();
  return Status::ok();
}

Status FieldReader::read_required_string(std::string_view key, std::string& out) const {
  std::optional<std::string> v;
  BATON_RETURN_IF_ERROR(read_string(key, v));
  if (!v) {
    return field_error(path_of(key), "required");
  }
  out = std::move(*v);
  return Status::ok();
}

Result<const OrderedJson*> FieldReader::required_object(std::string_view key) const {
  const OrderedJson* v = find(key);
  if (v == nullptr) {
    return field_error(path_of(key), "required");
  }
  if (!v->is_object()) {
    return type_error(path_of(key), "an object", *v);
  }
  return v;
}

Status FieldReader::read_number(std::string_view key, std::optional<double>& out) const {
  out.reset();
  const OrderedJson* v = find(key);
  if (v == nullptr) {
    return Status::ok();
  }
  if (!v->is_number()) {
    return type_error(path_of(key), "a number", *v);
  }
  out = v->get<double>();
  return Status::ok();
}

Status FieldReader::read_int(std::string_view key, int64_t lo, int64_t hi,
                             std::optional<int64_t>& out) const {
  out.reset();
  const OrderedJson* v = find(key);
  if (v == nullptr) {
    return Status::ok();
  }
  int64_t value = 0;
  BATON_RETURN_IF_ERROR(read_int_value(*v, path_of(key), lo, hi, value));
  out = value;
  return Status::ok();
}

}  // namespace baton::protocol
