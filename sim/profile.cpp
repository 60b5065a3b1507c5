#include "sim/profile.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>

namespace baton::sim {

double prefill_time(const Profile& p, int64_t new_tokens, int64_t cached_tokens, int batch) {
  return p.prefill.base_s + static_cast<double>(new_tokens) / p.prefill.tokens_per_s +
         static_cast<double>(cached_tokens) * p.prefill.cached_token_s +
         static_cast<double>(batch) * p.prefill.per_request_s;
}

double decode_step_time(const Profile& p, int batch, int64_t total_context) {
  return p.decode.base_s + static_cast<double>(batch) * p.decode.per_seq_s +
         static_cast<double>(total_context) * p.decode.per_context_token_s;
}

double kv_transfer_time(const Profile& p, int64_t tokens, bool contiguous) {
  const double bytes = static_cast<double>(tokens) * p.kv.bytes_per_token;
  const int64_t blocks = (tokens + p.kv.block_tokens - 1) / p.kv.block_tokens;
  const double messages = contiguous ? 1.0 : static_cast<double>(blocks * p.kv.messages_per_block);
  return bytes / p.link.bytes_per_s + messages * p.link.message_s;
}

double measured_prefill_rate(const Profile& p) {
  return static_cast<double>(p.prefill.step_tokens) / prefill_time(p, p.prefill.step_tokens, 0, 1);
}

namespace {

template <typename T>
Status read_positive(const YAML::Node& n, const std::string& key, T& out, bool allow_zero) {
  try {
    T v = n.as<T>();
    if (!(v > 0) && !(allow_zero && v == 0))
      return invalid_argument("profile: " + key + " must be positive");
    out = v;
    return Status();
  } catch (const YAML::Exception&) {
    return invalid_argument("profile: " + key + " is not a number");
  }
}

}  // namespace

Result<Profile> parse_profile(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return invalid_argument(std::string("profile: not YAML: ") + e.what());
  }
  if (!root.IsMap()) return invalid_argument("profile: expected a mapping");
  Profile p;
  using Setter = std::function<Status(const YAML::Node&)>;
  auto num = [](auto& field, const char* key, bool allow_zero = false) -> Setter {
    return [&field, key, allow_zero](const YAML::Node& n) {
      return read_positive(n, key, field, allow_zero);
    };
  };
  const std::map<std::string, std::map<std::string, Setter>> sections = {
      {"prefill",
       {{"base_s", num(p.prefill.base_s, "prefill.base_s", true)},
        {"tokens_per_s", num(p.prefill.tokens_per_s, "prefill.tokens_per_s")},
        {"cached_token_s", num(p.prefill.cached_token_s, "prefill.cached_token_s", true)},
        {"per_request_s", num(p.prefill.per_request_s, "prefill.per_request_s", true)},
        {"step_tokens", num(p.prefill.step_tokens, "prefill.step_tokens")}}},
      {"decode",
       {{"base_s", num(p.decode.base_s, "decode.base_s", true)},
        {"per_seq_s", num(p.decode.per_seq_s, "decode.per_seq_s", true)},
        {"per_context_token_s",
         num(p.decode.per_context_token_s, "decode.per_context_token_s", true)},
        {"max_batch", num(p.decode.max_batch, "decode.max_batch")}}},
      {"kv",
       {{"capacity_tokens", num(p.kv.capacity_tokens, "kv.capacity_tokens")},
        {"bytes_per_token", num(p.kv.bytes_per_token, "kv.bytes_per_token")},
        {"block_tokens", num(p.kv.block_tokens, "kv.block_tokens")},
        {"messages_per_block", num(p.kv.messages_per_block, "kv.messages_per_block")}}},
      {"link",
       {{"bytes_per_s", num(p.link.bytes_per_s, "link.bytes_per_s")},
        {"message_s", num(p.link.message_s, "link.message_s", true)}}},
  };
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (key == "name") {
      p.name = kv.second.as<std::string>();
      continue;
    }
    if (key == "network_rtt_s") {
      if (auto s = read_positive(kv.second, key, p.network_rtt_s, true); !s.is_ok()) return s;
      continue;
    }
    auto sec = sections.find(key);
    if (sec == sections.end()) return invalid_argument("profile: unknown key '" + key + "'");
    if (!kv.second.IsMap()) return invalid_argument("profile: '" + key + "' must be a mapping");
    for (const auto& field : kv.second) {
      const std::string name = field.first.as<std::string>();
      auto set = sec->second.find(name);
      if (set == sec->second.end())
        return invalid_argument("profile: unknown key '" + key + "." + name + "'");
      if (auto s = set->second(field.second); !s.is_ok()) return s;
    }
  }
  return p;
}

Result<Profile> load_profile(const std::string& path_or_name) {
  std::filesystem::path path(path_or_name);
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec) && path_or_name.find('/') == std::string::npos) {
    path = std::filesystem::path(BATON_SIM_PROFILE_DIR) / (path_or_name + ".yaml");
  }
  std::ifstream in(path);
  if (!in) {
    return Status(StatusCode::kNotFound,
                  "profile '" + path_or_name + "': no such file or shipped profile");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  auto p = parse_profile(ss.str());
  if (p.is_ok() && p->name.empty()) p->name = path.stem().string();
  return p;
}

}  // namespace baton::sim
