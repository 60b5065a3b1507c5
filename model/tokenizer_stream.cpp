#include "model/tokenizer_stream.h"

#include <cctype>

#include "model/unicode.h"

namespace baton::model {

namespace {

bool ends_with_replacement(const std::string& s) {
  static constexpr std::string_view kFffd = "\xEF\xBF\xBD";
  return s.size() >= kFffd.size() && std::string_view(s).substr(s.size() - kFffd.size()) == kFffd;
}

// A byte-fallback token such as <0xE2>: how it renders depends on the byte
// tokens that follow it (a run of them is decoded as one UTF-8 sequence, each
// byte of an invalid run becoming U+FFFD), so text after it is not final yet.
bool is_byte_token(const std::string& t) {
  return t.size() == 6 && t.starts_with("<0x") && t[5] == '>' &&
         std::isxdigit(static_cast<unsigned char>(t[3])) &&
         std::isxdigit(static_cast<unsigned char>(t[4]));
}

}  // namespace

IncrementalDecoder::IncrementalDecoder(Tokenizer tokenizer, bool skip_special_tokens)
    : tokenizer_(std::move(tokenizer)), skip_special_(skip_special_tokens) {}

Result<std::string> IncrementalDecoder::decode_range(size_t begin, size_t end) const {
  return tokenizer_.decode(std::span<const int32_t>(ids_).subspan(begin, end - begin),
                           skip_special_);
}

std::string IncrementalDecoder::release(bool all) {
  size_t keep = 0;
  if (!all && tokenizer_.clean_up_tokenization_spaces()) {
    // Hold back a tail that could start a clean-up pattern (" .", " n't"...).
    static constexpr std::string_view kStarts[] = {" n't", " 're", " 've", " ' ", " 'm", " 's"};
    for (size_t len = 1; len <= 3 && len <= held_.size(); ++len) {
      std::string_view tail = std::string_view(held_).substr(held_.size() - len);
      if (tail[0] != ' ') continue;
      bool prefix = len == 1;
      for (std::string_view s : kStarts) prefix = prefix || s.starts_with(tail);
      if (prefix) keep = len;
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  emitted_ += out;
  return out;
}

Result<std::string> IncrementalDecoder::step(int32_t id) {
  ids_.push_back(id);
  if (is_byte_token(tokenizer_.id_to_token(id))) return std::string();
  BATON_ASSIGN_OR_RETURN(std::string prefix_text, decode_range(prefix_offset_, read_offset_));
  BATON_ASSIGN_OR_RETURN(std::string new_text, decode_range(prefix_offset_, ids_.size()));
  // Wait while the newest bytes are an unfinished character.
  if (ends_with_replacement(new_text)) return std::string();
  if (new_text.starts_with(prefix_text)) {
    if (new_text.size() == prefix_text.size()) return std::string();  // nothing visible yet
    held_ += new_text.substr(prefix_text.size());
  } else {
    // The window disagrees with what came before (clean-up removed a space
    // across the boundary): rebuild from the full text.
    BATON_ASSIGN_OR_RETURN(std::string full, decode_range(0, ids_.size()));
    if (!full.starts_with(emitted_)) return std::string();
    held_ = full.substr(emitted_.size());
  }
  prefix_offset_ = read_offset_;
  read_offset_ = ids_.size();
  return release(/*all=*/false);
}

Result<std::string> IncrementalDecoder::finish() {
  if (read_offset_ < ids_.size() || !held_.empty()) {
    BATON_ASSIGN_OR_RETURN(std::string full, decode_range(0, ids_.size()));
    // Normally the emitted text is a prefix of the full decode; if a decoder
    // rewrote earlier text, emit what follows the part both agree on.
    size_t common = 0;
    while (common < full.size() && common < emitted_.size() && full[common] == emitted_[common]) {
      ++common;
    }
    held_ = full.substr(full.starts_with(emitted_) ? emitted_.size() : common);
    prefix_offset_ = read_offset_ = ids_.size();
  }
  return release(/*all=*/true);
}

}  // namespace baton::model
