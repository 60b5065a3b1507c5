#pragma once

// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): vocab,
// ranked merges (both "a b" strings and ["a", "b"] pairs), unk_token,
// fuse_unk, byte_fallback, ignore_merges, continuing_subword_prefix and
// end_of_word_suffix. Dropout is ignored (inference is deterministic).
//
// Immutable after parsing; tokenize() is thread-safe.

#include <array>
#include <cstdint>
#include <nlohmann/json_fwd.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace baton::model {

// Transparent string hash so maps keyed by std::string accept string_view.
struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using TokenMap = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

class BpeModel {
 public:
  // Parses the "model" object at `path`.
  static Result<BpeModel> from_json(const nlohmann::json& j, const std::string& path);

  // Appends the ids of one pre-token (valid UTF-8) to `out`. Fails only when
  // a character is unknown and the model has neither byte fallback for it nor
  // an unk_token.
  Status tokenize(std::string_view word, std::vector<int32_t>& out) const;

  std::optional<int32_t> token_to_id(std::string_view token) const;
  // The token of `id`, or nullptr when the vocab has no such id.
  const std::string* id_to_token(int32_t id) const;
  // One past the largest id of the vocab.
  int32_t id_bound() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct Merge {
    int32_t rank;
    int32_t new_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  const Merge* find_merge(int32_t a, int32_t b) const;

  TokenMap vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_id_;
  std::unordered_map<uint64_t, Merge> merges_;
  std::optional<std::string> unk_token_;
  std::optional<int32_t> unk_id_;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::array<int32_t, 256> byte_ids_{};  // id of "<0xNN>", -1 when absent
};

}  // namespace baton::model
