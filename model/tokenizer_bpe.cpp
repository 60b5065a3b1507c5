#include "model/tokenizer_bpe.h"

#include <cstdio>
#include <queue>

#include "model/tokenizer_json.h"
#include "model/unicode.h"

namespace baton::model {

namespace tj = tokenizer_json;
using tj::Json;

Result<BpeModel> BpeModel::from_json(const Json& j, const std::string& path) {
  if (!j.is_object()) return invalid_argument(path + ": expected an object");
  if (const Json* type = tj::find(j, "type"); type != nullptr) {
    if (!type->is_string()) return invalid_argument(tj::join(path, "type") + ": expected a string");
    if (type->get<std::string>() != "BPE") {
      return unimplemented(path + ": model type \"" + type->get<std::string>() +
                           "\" is not supported (only BPE)");
    }
  }
  BpeModel m;
  const Json* vocab = tj::find(j, "vocab");
  const std::string vocab_path = tj::join(path, "vocab");
  if (vocab == nullptr || !vocab->is_object())
    return invalid_argument(vocab_path + ": expected an object");
  m.vocab_.reserve(vocab->size());
  int32_t max_id = -1;
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0 ||
        it.value().get<int64_t>() > INT32_MAX) {
      return invalid_argument(vocab_path + "[\"" + it.key() + "\"]: expected a non-negative id");
    }
    const auto id = static_cast<int32_t>(it.value().get<int64_t>());
    m.vocab_[it.key()] = id;
    max_id = std::max(max_id, id);
  }
  m.id_to_token_.resize(static_cast<size_t>(max_id + 1));
  m.has_id_.assign(static_cast<size_t>(max_id + 1), false);
  for (const auto& [tok, id] : m.vocab_) {
    m.id_to_token_[id] = tok;
    m.has_id_[id] = true;
  }

  BATON_ASSIGN_OR_RETURN(m.unk_token_, tj::get_optional_string(j, "unk_token", path));
  if (m.unk_token_) {
    auto it = m.vocab_.find(*m.unk_token_);
    // tokenizers only fails when the unk token is needed; do the same.
    if (it != m.vocab_.end()) m.unk_id_ = it->second;
  }
  BATON_ASSIGN_OR_RETURN(auto prefix,
                         tj::get_optional_string(j, "continuing_subword_prefix", path));
  BATON_ASSIGN_OR_RETURN(auto suffix, tj::get_optional_string(j, "end_of_word_suffix", path));
  m.continuing_subword_prefix_ = prefix.value_or("");
  m.end_of_word_suffix_ = suffix.value_or("");
  BATON_ASSIGN_OR_RETURN(m.fuse_unk_, tj::get_bool(j, "fuse_unk", path, false));
  BATON_ASSIGN_OR_RETURN(m.byte_fallback_, tj::get_bool(j, "byte_fallback", path, false));
  BATON_ASSIGN_OR_RETURN(m.ignore_merges_, tj::get_bool(j, "ignore_merges", path, false));
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    auto it = m.vocab_.find(std::string_view(name));
    m.byte_ids_[b] = it == m.vocab_.end() ? -1 : it->second;
  }

  const Json* merges = tj::find(j, "merges");
  const std::string merges_path = tj::join(path, "merges");
  if (merges == nullptr || merges->is_null()) return m;
  if (!merges->is_array()) return invalid_argument(merges_path + ": expected an array");
  m.merges_.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& e = (*merges)[i];
    std::string a, b;
    if (e.is_string()) {
      const std::string& s = e.get_ref<const std::string&>();
      const size_t sp = s.find(' ');
      if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos) {
        return invalid_argument(tj::index(merges_path, i) + ": expected \"a b\", got \"" + s +
                                "\"");
      }
      a = s.substr(0, sp);
      b = s.substr(sp + 1);
    } else if (e.is_array() && e.size() == 2 && e[0].is_string() && e[1].is_string()) {
      a = e[0].get<std::string>();
      b = e[1].get<std::string>();
    } else {
      return invalid_argument(tj::index(merges_path, i) + ": expected \"a b\" or [\"a\", \"b\"]");
    }
    auto ia = m.vocab_.find(a);
    auto ib = m.vocab_.find(b);
    if (ia == m.vocab_.end() || ib == m.vocab_.end()) {
      return invalid_argument(tj::index(merges_path, i) + ": \"" + (ia == m.vocab_.end() ? a : b) +
                              "\" is not in the vocab");
    }
    std::string_view tail = b;
    if (!m.continuing_subword_prefix_.empty() && tail.starts_with(m.continuing_subword_prefix_)) {
      tail.remove_prefix(m.continuing_subword_prefix_.size());
    }
    const std::string merged = a + std::string(tail);
    auto in = m.vocab_.find(merged);
    if (in == m.vocab_.end()) {
      return invalid_argument(tj::index(merges_path, i) + ": merged token \"" + merged +
                              "\" is not in the vocab");
    }
    // A repeated pair keeps its last rank, as in tokenizers.
    m.merges_[pair_key(ia->second, ib->second)] = Merge{static_cast<int32_t>(i), in->second};
  }
  return m;
}

const BpeModel::Merge* BpeModel::find_merge(int32_t a, int32_t b) const {
  auto it = merges_.find(pair_key(a, b));
  return it == merges_.end() ? nullptr : &it->second;
}

std::optional<int32_t> BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::id_to_token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !has_id_[id]) return nullptr;
  return &id_to_token_[id];
}

namespace {

// A symbol of the word being merged: a doubly linked list over a vector,
// len == 0 marks a symbol absorbed by its left neighbour.
struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  size_t len;
};

struct QueuedMerge {
  int32_t rank;
  int32_t pos;
  int32_t new_id;
  // std::priority_queue pops the largest: invert so the lowest rank, then
  // the leftmost position, comes first.
  bool operator<(const QueuedMerge& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

}  // namespace

Status BpeModel::tokenize(std::string_view word, std::vector<int32_t>& out) const {
  if (word.empty()) return Status::ok();
  if (ignore_merges_) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      out.push_back(it->second);
      return Status::ok();
    }
  }

  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  auto add = [&symbols](int32_t id, size_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    symbols.push_back(Symbol{id, n - 1, n + 1, len});
  };
  std::optional<std::pair<int32_t, size_t>> pending_unk;  // (id, byte length)
  std::string piece;
  size_t i = 0;
  while (i < word.size()) {
    const size_t n = std::min<size_t>(utf8_sequence_length(static_cast<unsigned char>(word[i])),
                                      word.size() - i);
    const bool first = i == 0;
    const bool last = i + n == word.size();
    piece.clear();
    if (!first) piece += continuing_subword_prefix_;
    piece.append(word.substr(i, n));
    if (last) piece += end_of_word_suffix_;
    i += n;

    if (auto it = vocab_.find(piece); it != vocab_.end()) {
      if (pending_unk) {
        add(pending_unk->first, pending_unk->second);
        pending_unk.reset();
      }
      add(it->second, n);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char c : piece) all = all && byte_ids_[static_cast<uint8_t>(c)] >= 0;
      if (all) {
        // Like tokenizers, a pending unk is not flushed here.
        for (char c : piece) add(byte_ids_[static_cast<uint8_t>(c)], 1);
        continue;
      }
    }
    if (!unk_token_) continue;  // no unk token: the character is dropped
    if (!unk_id_) {
      return invalid_argument("BPE: unk_token \"" + *unk_token_ + "\" is not in the vocab");
    }
    if (pending_unk && fuse_unk_) {
      pending_unk->second += n;
    } else {
      if (pending_unk) add(pending_unk->first, pending_unk->second);
      pending_unk = std::pair{*unk_id_, n};
    }
  }
  if (pending_unk) add(pending_unk->first, pending_unk->second);
  if (symbols.empty()) return Status::ok();
  symbols.back().next = -1;

  std::priority_queue<QueuedMerge> queue;
  for (size_t k = 0; k + 1 < symbols.size(); ++k) {
    if (const Merge* m = find_merge(symbols[k].id, symbols[k + 1].id)) {
      queue.push(QueuedMerge{m->rank, static_cast<int32_t>(k), m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const int32_t next_pos = cur.next;
    const Symbol right = symbols[next_pos];
    // Entries go stale when a neighbour merged first; re-check the pair.
    const Merge* now = find_merge(cur.id, right.id);
    if (now == nullptr || now->new_id != top.new_id) continue;

    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    symbols[next_pos].len = 0;
    if (right.next != -1) symbols[right.next].prev = top.pos;

    if (cur.prev >= 0) {
      if (const Merge* m = find_merge(symbols[cur.prev].id, cur.id)) {
        queue.push(QueuedMerge{m->rank, cur.prev, m->new_id});
      }
    }
    if (cur.next != -1) {
      if (const Merge* m = find_merge(cur.id, symbols[cur.next].id)) {
        queue.push(QueuedMerge{m->rank, top.pos, m->new_id});
      }
    }
  }
  for (int32_t k = 0; k != -1; k = symbols[k].next) out.push_back(symbols[k].id);
  return Status::ok();
}

}  // namespace baton::model
