#pragma once

// Request and Sequence: the state the scheduler keeps per generation.
//
// A Request is what the server hands the scheduler. It becomes n Sequences
// (n = params.n). Sequence 0 prefills the prompt; the others are created in
// state kPendingFork and fork from it when the prompt's last token is sampled,
// sharing its prompt KV blocks (copy-on-write for the partial last block).
//
// Sequences are owned by the Scheduler and touched only on the engine thread.

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "engine/sampling_params.h"

namespace baton::engine {

using RequestId = uint64_t;

enum class SeqStatus {
  kWaiting,      // queued, never admitted
  kRunning,      // holds KV blocks and is scheduled every step it fits
  kPreempted,    // blocks taken back; waits to recompute prompt + output so far
  kPendingFork,  // sibling of sequence 0 waiting for the prompt to be prefilled
  kAwaitingKv,   // blocks reserved for a KV import that has not landed yet
  kFinished,
};

enum class FinishReason {
  kNone,
  kStop,         // EOS, a stop token id, or a stop string (engine)
  kLength,       // max_tokens or max_model_len
  kAbort,        // aborted by the client or the server
  kPrefillDone,  // prefill-only request: first token sampled, KV held for export
};

std::string_view seq_status_name(SeqStatus s);
std::string_view finish_reason_name(FinishReason r);

// A sequence's own random stream: SplitMix64 seeded from the request seed and
// the sequence index, so a sequence draws the same numbers whatever else is in
// the batch. Specified bit for bit (no std:: distributions), so results are
// the same on every platform.
class SeqRng {
 public:
  SeqRng() = default;
  SeqRng(uint64_t request_seed, int32_t seq_index);
  uint64_t next_u64();
  // Uniform in [0, 1) with 53 random bits.
  double next_unit();

 private:
  uint64_t state_ = 0;
};

// The input to Scheduler::add.
struct Request {
  RequestId id = 0;
  std::vector<int32_t> prompt;
  SamplingParams params;
  // Smaller value = scheduled earlier under SchedulingPolicy::kPriority.
  int32_t priority = 0;
  // Microseconds on the scheduler's clock; 0 = stamp it on add().
  int64_t arrival_us = 0;
  // Role prefill: finish with kPrefillDone after the first sampled token and
  // keep the KV blocks until Scheduler::release_export().
  bool prefill_only = false;
};

struct Sequence {
  RequestId request_id = 0;
  int32_t index = 0;                       // 0..n-1 within the request
  const SamplingParams* params = nullptr;  // owned by the scheduler's request

  std::vector<int32_t> prompt;
  std::vector<int32_t> output;
  // Tokens whose KV is in the cache: positions [0, num_computed).
  int32_t num_computed = 0;
  std::vector<int32_t> block_table;
  // Leading full blocks of block_table already offered to the prefix cache.
  int32_t num_registered_blocks = 0;
  // Chained hashes of the first block_hashes.size() full blocks of the
  // tokens; a pure function of the tokens, so it survives preemption.
  std::vector<uint64_t> block_hashes;

  SeqStatus status = SeqStatus::kWaiting;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t priority = 0;
  int64_t arrival_us = 0;
  uint64_t arrival_order = 0;    // tie-break among equal arrival times
  uint64_t admission_order = 0;  // larger = admitted later (preemption victim)
  int32_t num_preemptions = 0;
  int32_t num_cached_prompt_tokens = 0;  // prefix cache hit at first admission
  bool ever_admitted = false;
  SeqRng rng;

  // Prompt plus output: every token whose KV the sequence eventually needs.
  int32_t num_tokens() const { return static_cast<int32_t>(prompt.size() + output.size()); }
  int32_t token_at(int32_t pos) const;
  // Tokens [begin, begin + count) of prompt + output.
  std::vector<int32_t> tokens(int32_t begin, int32_t count) const;
  bool is_finished() const { return status == SeqStatus::kFinished; }
  // True while the KV of some known token is still to be computed.
  bool in_prefill() const { return num_computed < num_tokens() - 1; }
};

}  // namespace baton::engine
