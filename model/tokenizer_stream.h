#pragma once

// IncrementalDecoder: streaming detokenization for generated ids.
//
// Feed ids one at a time with step(); each call returns only newly completed
// text, never a partial UTF-8 character, and the concatenation of all step()
// outputs plus finish() equals tokenizer.decode(all ids). It decodes a small
// window (the tokens of the previous emission plus the new ones) and emits
// the difference, holding text back while it ends in an incomplete character
// (or, with clean_up_tokenization_spaces, in a space that a following token
// may remove). Cost per step is proportional to the window, not the stream.
//
// One instance per stream; not thread-safe. It keeps its own copy of the
// Tokenizer handle (cheap: the loaded data is shared).

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "model/tokenizer.h"

namespace baton::model {

class IncrementalDecoder {
 public:
  IncrementalDecoder(Tokenizer tokenizer, bool skip_special_tokens);

  // Appends `id`; returns the text it completes (possibly empty).
  Result<std::string> step(int32_t id);
  // Ends the stream: returns whatever is still held back (an unfinished
  // character comes out as U+FFFD, as decode() would give it).
  Result<std::string> finish();

  const std::vector<int32_t>& ids() const { return ids_; }
  // All text returned so far.
  const std::string& text() const { return emitted_; }

 private:
  Result<std::string> decode_range(size_t begin, size_t end) const;
  // Moves what can safely be shown from held_ to the output.
  std::string release(bool all);

  Tokenizer tokenizer_;
  bool skip_special_;
  std::vector<int32_t> ids_;
  size_t prefix_offset_ = 0;  // window start
  size_t read_offset_ = 0;    // ids before this are accounted for
  std::string emitted_;
  std::string held_;  // decoded but not yet returned
};

}  // namespace baton::model
