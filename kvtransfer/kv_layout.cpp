#include "kvtransfer/kv_layout.h"

#include <cstring>
#include <limits>
#include <string>

namespace baton::kvtransfer {
namespace {

// Products of the layout's fields must stay far below 2^63; 2^40 bytes per
// buffer is far beyond any KV cache and keeps every product below that.
constexpr uint64_t kMaxBufferBytes = uint64_t{1} << 40;

}  // namespace

Status KvLayout::validate() const {
  if (num_layers <= 0 || num_kv_heads <= 0 || head_dim <= 0 || dtype_size <= 0) {
    return invalid_argument(
        "kv layout: num_layers, num_kv_heads, head_dim and dtype_size must be "
        "positive (got " +
        std::to_string(num_layers) + ", " + std::to_string(num_kv_heads) + ", " +
        std::to_string(head_dim) + ", " + std::to_string(dtype_size) + ")");
  }
  if (static_cast<uint64_t>(num_kv_heads) * static_cast<uint64_t>(head_dim) *
          static_cast<uint64_t>(dtype_size) * static_cast<uint64_t>(num_layers) * 2 >
      kMaxBufferBytes) {
    return invalid_argument("kv layout: one token's KV exceeds 1 TiB");
  }
  return Status::ok();
}

uint64_t KvLayout::token_row_bytes() const {
  return static_cast<uint64_t>(num_kv_heads) * static_cast<uint64_t>(head_dim) *
         static_cast<uint64_t>(dtype_size);
}

uint64_t KvLayout::bytes_per_token() const {
  return 2 * static_cast<uint64_t>(num_layers) * token_row_bytes();
}

Result<uint64_t> KvLayout::bytes_for(int64_t num_tokens) const {
  BATON_RETURN_IF_ERROR(validate());
  if (num_tokens < 0) {
    return invalid_argument("kv layout: negative token count " + std::to_string(num_tokens));
  }
  if (num_tokens > 0 && static_cast<uint64_t>(num_tokens) > kMaxBufferBytes / bytes_per_token()) {
    return invalid_argument("kv layout: " + std::to_string(num_tokens) +
                            " tokens exceed the 1 TiB buffer limit");
  }
  return static_cast<uint64_t>(num_tokens) * bytes_per_token();
}

Result<uint64_t> KvLayout::offset(int64_t num_tokens, int64_t layer, KvPart part,
                                  int64_t token) const {
  BATON_RETURN_IF_ERROR(bytes_for(num_tokens).status());
  if (layer < 0 || layer >= num_layers) {
    return invalid_argument("kv layout: layer " + std::to_string(layer) + " outside [0, " +
                            std::to_string(num_layers) + ")");
  }
  if (token < 0 || token >= num_tokens) {
    return invalid_argument("kv layout: token " + std::to_string(token) + " outside [0, " +
                            std::to_string(num_tokens) + ")");
  }
  const uint64_t row = (static_cast<uint64_t>(layer) * 2 + static_cast<uint64_t>(part)) *
                           static_cast<uint64_t>(num_tokens) +
                       static_cast<uint64_t>(token);
  return row * token_row_bytes();
}

Result<std::vector<KvRun>> KvLayout::slice(int64_t total_tokens, int64_t first_token,
                                           int64_t count) const {
  BATON_RETURN_IF_ERROR(bytes_for(total_tokens).status());
  if (first_token < 0 || count < 0 || first_token > total_tokens ||
      count > total_tokens - first_token) {
    return invalid_argument("kv layout: tokens [" + std::to_string(first_token) + ", " +
                            std::to_string(first_token) + "+" + std::to_string(count) +
                            ") outside a buffer of " + std::to_string(total_tokens) + " tokens");
  }
  std::vector<KvRun> runs;
  if (count == 0) return runs;
  runs.reserve(static_cast<size_t>(2 * num_layers));
  const uint64_t row = token_row_bytes();
  const uint64_t run_bytes = static_cast<uint64_t>(count) * row;
  for (int64_t l = 0; l < num_layers; ++l) {
    for (uint64_t p = 0; p < 2; ++p) {
      const uint64_t plane = static_cast<uint64_t>(l) * 2 + p;
      KvRun r;
      r.src_offset =
          (plane * static_cast<uint64_t>(total_tokens) + static_cast<uint64_t>(first_token)) * row;
      r.dst_offset = plane * run_bytes;
      r.bytes = run_bytes;
      runs.push_back(r);
    }
  }
  return runs;
}

void copy_runs(const std::vector<KvRun>& runs, const void* src, void* dst) {
  const auto* s = static_cast<const char*>(src);
  auto* d = static_cast<char*>(dst);
  for (const KvRun& r : runs) std::memcpy(d + r.dst_offset, s + r.src_offset, r.bytes);
}

}  // namespace baton::kvtransfer
