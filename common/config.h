#pragma once

// Config: a YAML document plus command-line overrides, read through typed,
// dotted-key getters whose errors say exactly where the bad value came from:
//
//   cluster.yaml:12: server.port: expected an integer, got 'abc'
//   --set server.port: expected an integer, got 'abc'
//
// Keys are dotted paths of map keys; a numeric segment indexes a list
// ("instances.0.port"). The empty key means the node the Config points at.
//
// Ownership: Config is a cheap handle. Copies and the sub-configs returned by
// sub()/sub_list() view the same document, so an override applied through any
// of them is visible through all. The intended use is load, apply overrides,
// then read. Thread-safety: const members may run concurrently with each
// other; apply_override() must not run concurrently with anything.
//
// Nothing here throws or aborts on input: every YAML error becomes a Status.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "common/status.h"

namespace baton {

namespace detail {
struct ConfigDoc;  // the parsed document and its override record; config.cpp
}  // namespace detail

template <typename T>
concept ConfigValue =
    std::is_same_v<T, bool> || std::is_same_v<T, int64_t> || std::is_same_v<T, double> ||
    std::is_same_v<T, std::string> || std::is_same_v<T, std::vector<std::string>> ||
    std::is_same_v<T, std::vector<int64_t>> || std::is_same_v<T, std::vector<double>>;

class Config {
 public:
  // An empty document (every key missing) named "<empty>".
  Config();

  // Missing or unreadable file: kNotFound naming the path. YAML syntax error:
  // kInvalidArgument "path:line:col: message" (1-based line and column).
  static Result<Config> load_file(const std::string& path);
  // Parses YAML text; source_name stands in for the file name in messages.
  static Result<Config> parse(std::string_view text, std::string_view source_name);

  // Applies one "a.b.c=value" override (the argument of --set). The value is
  // parsed as YAML, so "8080", "true", "[a, b]" and "{k: v}" keep their types;
  // an empty value is the empty string. Missing maps on the way are created.
  // Errors (kInvalidArgument): no '=', an empty key or key segment, a value
  // that is not valid YAML, or a path that goes through a scalar.
  Status apply_override(std::string_view assignment);
  // Applies each override in order; stops at the first error.
  Status apply_overrides(const std::vector<std::string>& assignments);

  // True when the key exists (even when its value is null).
  bool has(std::string_view key) const;

  // The value at key converted to T. Missing key: kNotFound; a value of the
  // wrong type or format: kInvalidArgument with its location.
  // bool accepts true/false/yes/no/on/off (any case); int64_t decimal with an
  // optional sign; double any number incl. .inf/.nan; std::string any scalar;
  // vectors a list of such scalars.
  template <ConfigValue T>
  Result<T> get(std::string_view key) const;

  // Like get(), but a missing or null value gives `fallback`. A present value
  // of the wrong type is still an error: typos in values never pass silently.
  template <ConfigValue T>
  Result<T> get_or(std::string_view key, T fallback) const;
  // So that get_or("port", 8080) and get_or("host", "0.0.0.0") need no casts.
  Result<int64_t> get_or(std::string_view key, int fallback) const {
    return get_or<int64_t>(key, int64_t{fallback});
  }
  Result<std::string> get_or(std::string_view key, const char* fallback) const {
    return get_or<std::string>(key, std::string(fallback));
  }

  // The keys of the map at `prefix`, in document order; empty when the prefix
  // is missing or not a map.
  std::vector<std::string> keys(std::string_view prefix = {}) const;

  // A Config viewing the map or value at key. Missing: kNotFound.
  Result<Config> sub(std::string_view key) const;
  // One Config per element of the list at key (e.g. "instances"). A missing or
  // null key is an empty list; anything but a list is kInvalidArgument.
  Result<std::vector<Config>> sub_list(std::string_view key) const;

  // Reports the first key of the map at `prefix` that is not in `allowed`:
  // kInvalidArgument "cluster.yaml:7: server.prot: unknown key (did you mean
  // 'port'?)". A missing prefix is fine; a prefix that is not a map is an error.
  Status check_known_keys(std::string_view prefix, const std::vector<std::string>& allowed) const;

  // Where this view points, as a dotted path from the document root ("" for
  // the root), and the file or source name.
  const std::string& path() const { return path_; }
  const std::string& source_name() const;

  // The effective document (after overrides) as YAML text; for `--print-config`.
  std::string to_yaml() const;

 private:
  Config(std::shared_ptr<detail::ConfigDoc> doc, std::string path);

  std::string full_key(std::string_view key) const;

  std::shared_ptr<detail::ConfigDoc> doc_;
  std::string path_;
};

extern template Result<bool> Config::get<bool>(std::string_view) const;
extern template Result<int64_t> Config::get<int64_t>(std::string_view) const;
extern template Result<double> Config::get<double>(std::string_view) const;
extern template Result<std::string> Config::get<std::string>(std::string_view) const;
extern template Result<std::vector<std::string>> Config::get<std::vector<std::string>>(
    std::string_view) const;
extern template Result<std::vector<int64_t>> Config::get<std::vector<int64_t>>(
    std::string_view) const;
extern template Result<std::vector<double>> Config::get<std::vector<double>>(
    std::string_view) const;
extern template Result<bool> Config::get_or<bool>(std::string_view, bool) const;
extern template Result<int64_t> Config::get_or<int64_t>(std::string_view, int64_t) const;
extern template Result<double> Config::get_or<double>(std::string_view, double) const;
extern template Result<std::string> Config::get_or<std::string>(std::string_view,
                                                                std::string) const;
extern template Result<std::vector<std::string>> Config::get_or<std::vector<std::string>>(
    std::string_view, std::vector<std::string>) const;
extern template Result<std::vector<int64_t>> Config::get_or<std::vector<int64_t>>(
    std::string_view, std::vector<int64_t>) const;
extern template Result<std::vector<double>> Config::get_or<std::vector<double>>(
    std::string_view, std::vector<double>) const;

}  // namespace baton
