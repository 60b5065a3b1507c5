#pragma once

// Post-processors of tokenizer.json: add special tokens around encoded
// sequences. Supported types: TemplateProcessing, ByteLevel (no-op on ids),
// RobertaProcessing, BertProcessing, Sequence. Others fail to load with
// kUnimplemented. Immutable after parsing; process() is thread-safe.

#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace baton::model {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Combines the ids of sequence A (and B when `pair` is non-null) into the
  // final ids with the special tokens this processor adds.
  virtual std::vector<int32_t> process(std::vector<int32_t> a,
                                       const std::vector<int32_t>* pair) const = 0;
};

// Parses the "post_processor" object at `path`. JSON null yields nullptr.
Result<std::shared_ptr<const PostProcessor>> parse_post_processor(const nlohmann::json& j,
                                                                  const std::string& path);

}  // namespace baton::model
