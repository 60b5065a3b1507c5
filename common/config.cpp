#include "common/config.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <set>
#include <sstream>

namespace baton {

namespace detail {
struct ConfigDoc {
  YAML::Node root;
  std::string source;
  // Dotted keys set by apply_override(): values at or under them did not come
  // from the file, so their messages name the --set flag instead of a line.
  std::set<std::string, std::less<>> overridden;
};
}  // namespace detail

namespace {

constexpr size_t kMaxShownValue = 60;

std::vector<std::string_view> split_key(std::string_view key) {
  std::vector<std::string_view> parts;
  if (key.empty()) return parts;
  size_t start = 0;
  while (true) {
    size_t dot = key.find('.', start);
    parts.push_back(key.substr(start, dot == std::string_view::npos ? dot : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

std::string join_key(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  return fmt::format("{}.{}", a, b);
}

std::optional<size_t> parse_index(std::string_view s) {
  size_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// A node and where it is reported: a map value at its key's line (a null or
// block value starts after the key), a list element or the root at its own.
// Never assign one Located to another: YAML::Node's operator= writes through
// to the document. Construct fresh ones instead.
struct Located {
  YAML::Node node;
  YAML::Mark mark;
};

// Looks up one segment without ever creating nodes (yaml-cpp's non-const
// operator[] inserts, and its const one returns "zombie" nodes).
std::optional<Located> child_of(const YAML::Node& node, std::string_view segment) {
  if (node.IsMap()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == segment) {
        return Located{it->second, it->first.Mark()};
      }
    }
    return std::nullopt;
  }
  if (node.IsSequence()) {
    auto index = parse_index(segment);
    if (!index || *index >= node.size()) return std::nullopt;
    size_t i = 0;
    for (auto it = node.begin(); it != node.end(); ++it, ++i) {
      if (i == *index) return Located{*it, it->Mark()};
    }
  }
  return std::nullopt;
}

// Replaces or adds parent's child `segment`; for a list, segment is an index
// already known to be in range (a string key would turn the list into a map).
void set_child(YAML::Node& parent, std::string_view segment, const YAML::Node& value) {
  if (parent.IsSequence()) {
    parent[*parse_index(segment)] = value;
  } else {
    parent[std::string(segment)] = value;
  }
}

std::optional<Located> find_node(const YAML::Node& root, std::string_view key) {
  YAML::Node cur(root);
  YAML::Mark mark = root.Mark();
  for (std::string_view segment : split_key(key)) {
    auto next = child_of(cur, segment);
    if (!next) return std::nullopt;
    cur.reset(next->node);  // rebinds the handle; operator= would edit the document
    mark = next->mark;
  }
  return Located{cur, mark};
}

std::string describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar: {
      const std::string& s = node.Scalar();
      if (s.size() > kMaxShownValue) return fmt::format("'{}...'", s.substr(0, kMaxShownValue));
      return fmt::format("'{}'", s);
    }
    default:
      return "nothing (null)";
  }
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Each decoder returns the value or the expectation to report ("an integer").
template <typename T>
struct Decode;

template <>
struct Decode<bool> {
  static constexpr std::string_view kExpected = "a boolean (true or false)";
  static std::optional<bool> scalar(const std::string& s) {
    std::string l = lower(s);
    if (l == "true" || l == "yes" || l == "on") return true;
    if (l == "false" || l == "no" || l == "off") return false;
    return std::nullopt;
  }
};

template <>
struct Decode<int64_t> {
  static constexpr std::string_view kExpected = "an integer";
  static std::optional<int64_t> scalar(const std::string& s) {
    std::string_view v = s;
    if (!v.empty() && v.front() == '+') v.remove_prefix(1);
    int64_t value = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
    if (ec != std::errc() || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return value;
  }
};

template <>
struct Decode<double> {
  static constexpr std::string_view kExpected = "a number";
  static std::optional<double> scalar(const std::string& s) {
    std::string l = lower(s);
    if (l == ".inf" || l == "+.inf") return std::numeric_limits<double>::infinity();
    if (l == "-.inf") return -std::numeric_limits<double>::infinity();
    if (l == ".nan") return std::numeric_limits<double>::quiet_NaN();
    std::string_view v = s;
    if (!v.empty() && v.front() == '+') v.remove_prefix(1);
    double value = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), value);
    if (ec != std::errc() || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return value;
  }
};

template <>
struct Decode<std::string> {
  static constexpr std::string_view kExpected = "a string";
  static std::optional<std::string> scalar(const std::string& s) { return s; }
};

template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

// Optimal-string-alignment distance: like Levenshtein, but a swap of two
// adjacent letters ("prot" for "port") costs one edit, as typos usually do.
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

namespace {

using detail::ConfigDoc;

// "cluster.yaml:12: server.port", or "--set server.port" when an override
// supplied the value ("--set server: server.port" when it overrode an
// ancestor). The most specific override wins: it was applied last over that key.
std::string locate(const ConfigDoc& doc, const std::string& key,
                   const std::optional<YAML::Mark>& mark) {
  std::string_view k = key;
  size_t end = k.size();
  while (end > 0) {
    std::string_view prefix = k.substr(0, end);
    if (doc.overridden.count(prefix) > 0) {
      if (prefix.size() == k.size()) return fmt::format("--set {}", key);
      return fmt::format("--set {}: {}", prefix, key);
    }
    size_t dot = prefix.rfind('.');
    if (dot == std::string_view::npos) break;
    end = dot;
  }
  std::string where = doc.source;
  if (mark && !mark->is_null()) where += fmt::format(":{}", mark->line + 1);
  if (key.empty()) return where;
  return fmt::format("{}: {}", where, key);
}

template <typename E>
std::string_view plural_of() {
  if constexpr (std::is_same_v<E, std::string>) return "strings";
  if constexpr (std::is_same_v<E, int64_t>) return "integers";
  if constexpr (std::is_same_v<E, double>) return "numbers";
  return "values";
}

template <typename T>
Result<T> decode_scalar(const ConfigDoc& doc, const std::string& key, const YAML::Node& node,
                        const YAML::Mark& mark) {
  if (node.IsScalar()) {
    if (auto value = Decode<T>::scalar(node.Scalar())) return std::move(*value);
  }
  return invalid_argument(fmt::format("{}: expected {}, got {}", locate(doc, key, mark),
                                      Decode<T>::kExpected, describe(node)));
}

template <typename T>
Result<T> decode(const ConfigDoc& doc, const std::string& key, const Located& at) {
  if constexpr (IsVector<T>::value) {
    using E = typename T::value_type;
    if (!at.node.IsSequence()) {
      return invalid_argument(fmt::format("{}: expected a list of {}, got {}",
                                          locate(doc, key, at.mark), plural_of<E>(),
                                          describe(at.node)));
    }
    T out;
    out.reserve(at.node.size());
    size_t i = 0;
    for (auto it = at.node.begin(); it != at.node.end(); ++it, ++i) {
      BATON_ASSIGN_OR_RETURN(
          E item, decode_scalar<E>(doc, join_key(key, std::to_string(i)), *it, it->Mark()));
      out.push_back(std::move(item));
    }
    return out;
  } else {
    return decode_scalar<T>(doc, key, at.node, at.mark);
  }
}

Status yaml_failure(const ConfigDoc& doc, std::string_view key, const std::exception& e) {
  return internal_error(
      fmt::format("{}: {}: unexpected YAML error: {}", doc.source, key, e.what()));
}

std::shared_ptr<ConfigDoc> make_doc(YAML::Node root, std::string_view source) {
  auto doc = std::make_shared<ConfigDoc>();
  doc->root = std::move(root);
  doc->source = std::string(source);
  return doc;
}

}  // namespace

Config::Config() : Config(make_doc(YAML::Node(), "<empty>"), "") {}

Config::Config(std::shared_ptr<detail::ConfigDoc> doc, std::string path)
    : doc_(std::move(doc)), path_(std::move(path)) {}

Result<Config> Config::parse(std::string_view text, std::string_view source_name) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    return Config(make_doc(std::move(root), source_name), "");
  } catch (const YAML::Exception& e) {
    if (e.mark.is_null()) return invalid_argument(fmt::format("{}: {}", source_name, e.msg));
    return invalid_argument(
        fmt::format("{}:{}:{}: {}", source_name, e.mark.line + 1, e.mark.column + 1, e.msg));
  } catch (const std::exception& e) {
    return invalid_argument(fmt::format("{}: {}", source_name, e.what()));
  }
}

Result<Config> Config::load_file(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    return not_found(fmt::format("config file '{}' not found", path));
  }
  if (std::filesystem::is_directory(path, ec)) {
    return not_found(fmt::format("config file '{}' is a directory", path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return not_found(fmt::format("cannot read config file '{}': {}", path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return not_found(fmt::format("cannot read config file '{}'", path));
  return parse(text.str(), path);
}

Status Config::apply_override(std::string_view assignment) {
  auto bad = [&](std::string_view why) {
    return invalid_argument(fmt::format("--set {}: {}", assignment, why));
  };
  size_t eq = assignment.find('=');
  if (eq == std::string_view::npos) return bad("expected key=value");
  std::string_view key = assignment.substr(0, eq);
  std::string_view text = assignment.substr(eq + 1);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.remove_suffix(1);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.front())))
    key.remove_prefix(1);
  if (key.empty()) return bad("empty key");
  std::vector<std::string_view> segments = split_key(key);
  for (std::string_view s : segments) {
    if (s.empty()) return bad("empty key segment");
  }

  try {
    YAML::Node value;
    if (text.empty()) {
      value = YAML::Node(std::string());
    } else {
      try {
        value = YAML::Load(std::string(text));
      } catch (const YAML::Exception& e) {
        return bad(fmt::format("value is not valid YAML: {}", e.msg));
      }
    }

    std::string full = full_key(key);
    std::vector<std::string_view> all = split_key(full);
    if (!doc_->root.IsMap() && !doc_->root.IsNull()) return bad("the document is not a map");
    if (doc_->root.IsNull()) doc_->root = YAML::Node(YAML::NodeType::Map);

    YAML::Node cur(doc_->root);
    std::string walked;
    for (size_t i = 0; i + 1 < all.size(); ++i) {
      std::string seg(all[i]);
      std::optional<Located> next = child_of(cur, seg);
      if (cur.IsSequence() && !next) {
        return bad(fmt::format("'{}' is not an index of the list at '{}'", seg, walked));
      }
      walked = join_key(walked, seg);
      if (next && !next->node.IsNull() && !next->node.IsMap() && !next->node.IsSequence()) {
        return bad(fmt::format("'{}' is {}, not a map", walked, describe(next->node)));
      }
      if (!next || next->node.IsNull()) {
        set_child(cur, seg, YAML::Node(YAML::NodeType::Map));
        std::optional<Located> created = child_of(cur, seg);
        cur.reset(created->node);
      } else {
        cur.reset(next->node);
      }
    }
    std::string_view last = all.back();
    if (cur.IsSequence() && !child_of(cur, last)) {
      return bad(fmt::format("'{}' is not an index of the list at '{}'", last, walked));
    }
    set_child(cur, last, value);
    // Earlier overrides below this key were replaced along with their values.
    std::string below = full + ".";
    for (auto it = doc_->overridden.lower_bound(below);
         it != doc_->overridden.end() && it->starts_with(below);) {
      it = doc_->overridden.erase(it);
    }
    doc_->overridden.insert(full);
    return Status::ok();
  } catch (const std::exception& e) {
    return bad(fmt::format("unexpected YAML error: {}", e.what()));
  }
}

Status Config::apply_overrides(const std::vector<std::string>& assignments) {
  for (const auto& a : assignments) BATON_RETURN_IF_ERROR(apply_override(a));
  return Status::ok();
}

std::string Config::full_key(std::string_view key) const { return join_key(path_, key); }

const std::string& Config::source_name() const { return doc_->source; }

bool Config::has(std::string_view key) const {
  try {
    return find_node(doc_->root, full_key(key)).has_value();
  } catch (const std::exception&) {
    return false;
  }
}

template <ConfigValue T>
Result<T> Config::get(std::string_view key) const {
  std::string full = full_key(key);
  try {
    auto at = find_node(doc_->root, full);
    if (!at) {
      return not_found(
          fmt::format("{}: required key is missing", locate(*doc_, full, std::nullopt)));
    }
    return decode<T>(*doc_, full, *at);
  } catch (const std::exception& e) {
    return yaml_failure(*doc_, full, e);
  }
}

template <ConfigValue T>
Result<T> Config::get_or(std::string_view key, T fallback) const {
  std::string full = full_key(key);
  try {
    auto at = find_node(doc_->root, full);
    if (!at || at->node.IsNull()) return fallback;
    return decode<T>(*doc_, full, *at);
  } catch (const std::exception& e) {
    return yaml_failure(*doc_, full, e);
  }
}

std::vector<std::string> Config::keys(std::string_view prefix) const {
  std::vector<std::string> out;
  try {
    auto at = find_node(doc_->root, full_key(prefix));
    if (!at || !at->node.IsMap()) return out;
    for (auto it = at->node.begin(); it != at->node.end(); ++it) {
      if (it->first.IsScalar()) out.push_back(it->first.Scalar());
    }
  } catch (const std::exception&) {
    out.clear();
  }
  return out;
}

Result<Config> Config::sub(std::string_view key) const {
  std::string full = full_key(key);
  if (!has(key)) {
    return not_found(fmt::format("{}: required key is missing", locate(*doc_, full, std::nullopt)));
  }
  return Config(doc_, full);
}

Result<std::vector<Config>> Config::sub_list(std::string_view key) const {
  std::string full = full_key(key);
  try {
    auto at = find_node(doc_->root, full);
    std::vector<Config> out;
    if (!at || at->node.IsNull()) return out;
    if (!at->node.IsSequence()) {
      return invalid_argument(fmt::format("{}: expected a list, got {}",
                                          locate(*doc_, full, at->mark), describe(at->node)));
    }
    for (size_t i = 0; i < at->node.size(); ++i)
      out.push_back(Config(doc_, join_key(full, std::to_string(i))));
    return out;
  } catch (const std::exception& e) {
    return yaml_failure(*doc_, full, e);
  }
}

Status Config::check_known_keys(std::string_view prefix,
                                const std::vector<std::string>& allowed) const {
  std::string full = full_key(prefix);
  try {
    auto at = find_node(doc_->root, full);
    if (!at || at->node.IsNull()) return Status::ok();
    if (!at->node.IsMap()) {
      return invalid_argument(fmt::format("{}: expected a map, got {}",
                                          locate(*doc_, full, at->mark), describe(at->node)));
    }
    for (auto it = at->node.begin(); it != at->node.end(); ++it) {
      if (!it->first.IsScalar()) {
        return invalid_argument(
            fmt::format("{}: keys must be plain strings", locate(*doc_, full, it->first.Mark())));
      }
      const std::string& name = it->first.Scalar();
      if (std::find(allowed.begin(), allowed.end(), name) != allowed.end()) continue;

      std::string where = locate(*doc_, join_key(full, name), it->first.Mark());
      const std::string* best = nullptr;
      size_t best_distance = std::numeric_limits<size_t>::max();
      for (const auto& candidate : allowed) {
        size_t d = edit_distance(name, candidate);
        if (d < best_distance) {
          best_distance = d;
          best = &candidate;
        }
      }
      // Suggest only near misses; a far "closest" key would mislead.
      if (best != nullptr && best_distance <= std::max<size_t>(1, best->size() / 3)) {
        return invalid_argument(fmt::format("{}: unknown key (did you mean '{}'?)", where, *best));
      }
      return invalid_argument(
          fmt::format("{}: unknown key (known keys: {})", where, fmt::join(allowed, ", ")));
    }
    return Status::ok();
  } catch (const std::exception& e) {
    return yaml_failure(*doc_, full, e);
  }
}

std::string Config::to_yaml() const {
  try {
    auto at = find_node(doc_->root, path_);
    if (!at) return "";
    YAML::Emitter out;
    out << at->node;
    return out.c_str();
  } catch (const std::exception&) {
    return "";
  }
}

template Result<bool> Config::get<bool>(std::string_view) const;
template Result<int64_t> Config::get<int64_t>(std::string_view) const;
template Result<double> Config::get<double>(std::string_view) const;
template Result<std::string> Config::get<std::string>(std::string_view) const;
template Result<std::vector<std::string>> Config::get<std::vector<std::string>>(
    std::string_view) const;
template Result<std::vector<int64_t>> Config::get<std::vector<int64_t>>(std::string_view) const;
template Result<std::vector<double>> Config::get<std::vector<double>>(std::string_view) const;
template Result<bool> Config::get_or<bool>(std::string_view, bool) const;
template Result<int64_t> Config::get_or<int64_t>(std::string_view, int64_t) const;
template Result<double> Config::get_or<double>(std::string_view, double) const;
template Result<std::string> Config::get_or<std::string>(std::string_view, std::string) const;
template Result<std::vector<std::string>> Config::get_or<std::vector<std::string>>(
    std::string_view, std::vector<std::string>) const;
template Result<std::vector<int64_t>> Config::get_or<std::vector<int64_t>>(
    std::string_view, std::vector<int64_t>) const;
template Result<std::vector<double>> Config::get_or<std::vector<double>>(std::string_view,
                                                                         std::vector<double>) const;

}  // namespace baton
