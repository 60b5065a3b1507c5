#include "model/tokenizer_added_vocab.h"

#include <algorithm>

#include "model/unicode.h"

namespace baton::model {

void AddedVocabulary::Trie::insert(std::string_view s, int32_t token) {
  int32_t at = 0;
  for (char ch : s) {
    const auto b = static_cast<uint8_t>(ch);
    auto& next = nodes[at].next;
    auto it = std::lower_bound(next.begin(), next.end(), b,
                               [](const auto& e, uint8_t v) { return e.first < v; });
    if (it != next.end() && it->first == b) {
      at = it->second;
      continue;
    }
    const auto child = static_cast<int32_t>(nodes.size());
    next.insert(it, {b, child});
    nodes.push_back(Node{});
    at = child;
  }
  // The first token with a given pattern wins.
  if (nodes[at].token < 0) nodes[at].token = token;
}

std::optional<std::pair<int32_t, size_t>> AddedVocabulary::Trie::longest_at(std::string_view text,
                                                                            size_t pos) const {
  std::optional<std::pair<int32_t, size_t>> best;
  int32_t at = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    const auto& next = nodes[at].next;
    auto it = std::lower_bound(next.begin(), next.end(), b,
                               [](const auto& e, uint8_t v) { return e.first < v; });
    if (it == next.end() || it->first != b) break;
    at = it->second;
    if (nodes[at].token >= 0) best = std::pair{nodes[at].token, i + 1 - pos};
  }
  return best;
}

Result<AddedVocabulary> AddedVocabulary::create(std::vector<AddedToken> tokens,
                                                const Normalizer* normalizer) {
  AddedVocabulary v;
  v.tokens_ = std::move(tokens);
  for (size_t i = 0; i < v.tokens_.size(); ++i) {
    const AddedToken& t = v.tokens_[i];
    v.by_id_.emplace(t.id, i);
    v.by_content_.emplace(t.content, i);
    if (t.content.empty()) continue;
    if (t.normalized) {
      std::string pattern = t.content;
      if (normalizer != nullptr) {
        BATON_ASSIGN_OR_RETURN(pattern, normalizer->normalize(t.content));
      }
      if (!pattern.empty()) v.normalized_trie_.insert(pattern, static_cast<int32_t>(i));
    } else {
      v.raw_trie_.insert(t.content, static_cast<int32_t>(i));
    }
  }
  return v;
}

namespace {

// The code point ending at byte `end` of valid UTF-8 `s` (end > 0).
char32_t last_cp(std::string_view s, size_t end) {
  size_t b = end - 1;
  while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
  auto cps = decode_utf8(s.substr(b, end - b));
  return cps && !cps->empty() ? cps->back() : 0;
}

char32_t first_cp(std::string_view s, size_t start) {
  const size_t n = std::min<size_t>(utf8_sequence_length(static_cast<unsigned char>(s[start])),
                                    s.size() - start);
  auto cps = decode_utf8(s.substr(start, n));
  return cps && !cps->empty() ? cps->front() : 0;
}

}  // namespace

std::vector<AddedVocabulary::Segment> AddedVocabulary::split(std::string_view text,
                                                             bool normalized_tokens) const {
  const Trie& trie = normalized_tokens ? normalized_trie_ : raw_trie_;
  std::vector<Segment> out;
  if (text.empty()) return out;
  if (trie.nodes[0].next.empty()) {
    out.push_back(Segment{0, text.size(), std::nullopt});
    return out;
  }
  size_t start_offset = 0;  // end of the last emitted segment
  size_t pos = 0;           // where the search for the next match resumes
  while (pos < text.size()) {
    auto m = trie.longest_at(text, pos);
    if (!m) {
      ++pos;
      continue;
    }
    const AddedToken& tok = tokens_[m->first];
    size_t start = pos;
    size_t stop = pos + m->second;
    pos = stop;
    if (start < start_offset) continue;  // inside whitespace an rstrip already took
    if (tok.single_word) {
      const bool word_before = start > 0 && is_word_char(last_cp(text, start));
      const bool word_after = stop < text.size() && is_word_char(first_cp(text, stop));
      if (word_before || word_after) continue;
    }
    if (tok.lstrip) {
      size_t s = start;
      while (s > start_offset && is_whitespace(last_cp(text, s))) {
        size_t b = s - 1;
        while (b > 0 && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) --b;
        s = b;
      }
      start = s;
    }
    if (tok.rstrip) {
      while (stop < text.size() && is_whitespace(first_cp(text, stop))) {
        stop += utf8_sequence_length(static_cast<unsigned char>(text[stop]));
      }
    }
    if (start_offset < start) out.push_back(Segment{start_offset, start, std::nullopt});
    out.push_back(Segment{start, stop, tok.id});
    start_offset = stop;
  }
  if (start_offset < text.size()) out.push_back(Segment{start_offset, text.size(), std::nullopt});
  return out;
}

const AddedToken* AddedVocabulary::by_id(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &tokens_[it->second];
}

std::optional<int32_t> AddedVocabulary::id_of(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  if (it == by_content_.end()) return std::nullopt;
  return tokens_[it->second].id;
}

bool AddedVocabulary::is_special_content(std::string_view content) const {
  auto it = by_content_.find(std::string(content));
  return it != by_content_.end() && tokens_[it->second].special;
}

}  // namespace baton::model
