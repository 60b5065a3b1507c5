#pragma once

// KvLayout: the contiguous layout of one request's KV cache as the engine
// exports and imports it (engine/llama_model.h export_kv/import_kv) and as a
// KvTransport moves it: for a buffer holding `num_tokens` tokens,
//
//   [layer][K then V][token][num_kv_heads * head_dim] elements of dtype_size
//
// so one layer's K rows for all tokens come first, then its V rows, then the
// next layer. Token t of layer l, part p sits at byte
//   ((l * 2 + p) * num_tokens + t) * token_row_bytes().
//
// Because tokens are the inner index, a range of tokens of a buffer is not one
// contiguous range of bytes: it is 2 * num_layers runs. slice() lists those
// runs, so the prefill side can send only the suffix the decode side lacks
// (decode already holds a cached prefix) as one compact buffer of the same
// layout. All functions are pure and thread-safe; bad arguments give
// kInvalidArgument, never an abort.

#include <cstdint>
#include <vector>

#include "common/status.h"

namespace baton::kvtransfer {

enum class KvPart { kKey = 0, kValue = 1 };

// One run of bytes to copy: src_offset in the full buffer, dst_offset in the
// compact slice buffer.
struct KvRun {
  uint64_t src_offset = 0;
  uint64_t dst_offset = 0;
  uint64_t bytes = 0;
  bool operator==(const KvRun&) const = default;
};

struct KvLayout {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t dtype_size = 0;  // bytes per element (2 for bf16/f16)

  // kInvalidArgument unless every field is positive.
  Status validate() const;

  // Bytes of one token's K (or V) row in one layer.
  uint64_t token_row_bytes() const;
  // Bytes of all layers' K and V for one token.
  uint64_t bytes_per_token() const;
  // Bytes of a buffer holding num_tokens tokens (num_tokens >= 0).
  Result<uint64_t> bytes_for(int64_t num_tokens) const;

  // Byte offset of (layer, part, token) in a buffer of num_tokens tokens.
  Result<uint64_t> offset(int64_t num_tokens, int64_t layer, KvPart part, int64_t token) const;

  // Runs that copy tokens [first_token, first_token + count) of a buffer of
  // total_tokens tokens into a buffer of `count` tokens with the same layout,
  // in increasing src (and dst) order, 2 * num_layers runs (none when count
  // is 0).
  Result<std::vector<KvRun>> slice(int64_t total_tokens, int64_t first_token, int64_t count) const;
};

// Applies runs from slice(): copies src[run.src_offset...] to
// dst[run.dst_offset...]. The caller guarantees the buffers' sizes.
void copy_runs(const std::vector<KvRun>& runs, const void* src, void* dst);

}  // namespace baton::kvtransfer
