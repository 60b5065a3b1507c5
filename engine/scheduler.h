#pragma once

// Scheduler: continuous batching over paged KV (DESIGN.md §4).
//
// One engine step is a plan/commit cycle on the engine thread:
//
//   StepPlan plan = scheduler.plan();            // capacity, batch, KV allocate
//   runner.run(plan)                             // copies, forward, sampling
//   auto done = scheduler.commit(plan, sampled); // advance, append, stop, free
//
// plan() decides the step in named parts: (1) apply queued adds and aborts;
// (2) decodes of running sequences, one token each, oldest first; (3) chunks of
// running, partially prefilled sequences; (4) admission of waiting sequences
// (FCFS, or priority then arrival), consulting the prefix cache. Every part
// spends the same token budget (max_num_batched_tokens) and sequence budget
// (max_num_seqs). When a running sequence cannot get a block, the most
// recently admitted (FCFS) or least important (priority) unscheduled running
// sequence is preempted by recompute: its blocks are freed and it goes back to
// the front of the waiting queue, keeping its output tokens, which are
// recomputed as part of its prompt when it is admitted again. No new sequence
// is admitted in a step that preempted.
//
// n > 1: sequence 0 prefills the prompt; the step that computes the prompt's
// last token lists every sequence of the request in sample_seq_indices, and
// commit() forks the others from sequence 0 (shared blocks, copy-on-write of
// the partial last block, reported as BlockCopy in a later plan).
//
// Threads: add() and abort() are thread safe; every other call is made on the
// engine thread. plan() and commit() alternate strictly.

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/status.h"
#include "engine/block_pool.h"
#include "engine/sequence.h"

namespace baton::engine {

enum class SchedulingPolicy { kFcfs, kPriority };

struct SchedulerConfig {
  int32_t max_num_seqs = 256;
  int32_t max_num_batched_tokens = 2048;  // token budget per step
  int32_t block_size = 16;
  int32_t num_blocks = 1024;
  bool enable_prefix_caching = true;
  bool enable_chunked_prefill = true;
  int32_t max_model_len = 4096;  // prompt + output tokens of one sequence
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  // The model's end-of-sequence tokens (finish with kStop unless ignore_eos).
  std::vector<int32_t> eos_token_ids;
  // Seeds the engine RNG that draws a seed for each request without one.
  uint64_t seed = 0;

  // invalid_argument naming the field; also rejects configurations in which
  // one sequence could never fit (max_model_len > num_blocks * block_size) or
  // decodes could starve (max_num_batched_tokens < max_num_seqs).
  Status validate() const;
};

struct SeqRef {
  RequestId request_id = 0;
  int32_t seq_index = 0;
  bool operator==(const SeqRef&) const = default;
};

// One sequence's share of a step. Token positions are
// [start_pos, start_pos + token_ids.size()); context_len = that end.
struct ScheduledSeq {
  RequestId request_id = 0;
  int32_t seq_index = 0;
  std::vector<int32_t> token_ids;
  int32_t start_pos = 0;
  // After this step's allocation; covers context_len tokens.
  std::vector<int32_t> block_table;
  // KV slot of each fed token: block_id * block_size + offset.
  std::vector<int32_t> slots;
  int32_t context_len = 0;
  bool is_prefill = false;  // feeds more than the one newest token
  // The last fed token's logits produce a token (the chunk reaches the end of
  // the known tokens). Then sample_seq_indices lists the sequences that draw
  // one token each from that logits row: seq_index itself, and on a prompt's
  // first sampling for n > 1 also the siblings that fork at commit.
  bool sample = false;
  std::vector<int32_t> sample_seq_indices;
};

struct StepPlan {
  uint64_t step_id = 0;
  // Decodes first, then prefill chunks.
  std::vector<ScheduledSeq> seqs;
  // Performed by the runner before the forward pass, in order.
  std::vector<BlockCopy> block_copies;
  // Preempted this step (blocks freed; they will recompute later).
  std::vector<SeqRef> preempted;
  // Finished by abort since the last plan (blocks freed, never committed).
  std::vector<SeqRef> aborted;
  int32_t num_batched_tokens = 0;
  bool empty() const { return seqs.empty(); }
};

struct SampledToken {
  RequestId request_id = 0;
  int32_t seq_index = 0;
  int32_t token = 0;
};

struct FinishedSeq {
  RequestId request_id = 0;
  int32_t seq_index = 0;
  FinishReason reason = FinishReason::kNone;
  // Every sequence of the request has finished; the scheduler forgot it.
  bool request_done = false;
};

// A prefill-only request's KV, held until release_export().
struct KvExport {
  std::vector<int32_t> block_table;  // sequence 0's; the prompt's KV
  int32_t num_tokens = 0;            // tokens whose KV is in the blocks (the prompt)
  std::vector<int32_t> prompt;
  // The token each sequence sampled, in sequence order, and why it finished:
  // kPrefillDone when it goes on elsewhere, kStop/kLength when that token
  // already ended it.
  std::vector<int32_t> first_tokens;
  std::vector<FinishReason> finish_reasons;
};

// Where a decode-side import lands.
struct ImportReservation {
  std::vector<int32_t> block_table;  // sequence 0's, covering the whole prompt
  // Leading prompt tokens whose KV this side already holds (prefix cache):
  // only [cached_tokens, prompt length) has to be imported.
  int32_t cached_tokens = 0;
};

struct SchedulerStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;  // including preempted, excluding the add queue
  int32_t num_awaiting_kv = 0;
  int32_t num_free_blocks = 0;
  double kv_usage = 0.0;  // used / total blocks
  PrefixCacheStats prefix;
  int64_t num_preemptions = 0;
};

class Scheduler {
 public:
  // clock_us: microseconds, thread safe; stamps arrival times of requests
  // added with arrival_us == 0. Defaults to std::chrono::steady_clock.
  static Result<std::unique_ptr<Scheduler>> create(SchedulerConfig config,
                                                   std::function<int64_t()> clock_us = {});

  // Queue a request for the next plan(). invalid_argument for bad sampling
  // params or an empty or over-long prompt; kConflict for an id in use.
  // Thread safe.
  Status add(Request request);
  // Abort every sequence of a request at the next plan(); unknown ids are
  // ignored. Thread safe.
  void abort(RequestId id);

  StepPlan plan();
  // Apply a step's result: one SampledToken per entry of every
  // sample_seq_indices of the plan. Returns the sequences that finished.
  std::vector<FinishedSeq> commit(const StepPlan& plan, std::span<const SampledToken> sampled);
  // Finish a sequence for a reason found by the engine (a stop string after
  // detokenization). not_found for an unknown sequence, kConflict when it has
  // already finished.
  // Finishing sequence 0 before its prompt was sampled also finishes the
  // siblings waiting to fork from it.
  Result<std::vector<FinishedSeq>> finish(RequestId id, int32_t seq_index, FinishReason reason);

  // The sequence, for the sampler's inputs (params, tokens, rng); null when
  // unknown. Valid until the next plan() or commit().
  Sequence* sequence(RequestId id, int32_t seq_index);
  const std::vector<int32_t>& eos_token_ids() const { return config_.eos_token_ids; }

  // ---- disaggregation hooks ---------------------------------------------------
  // Decode side: reserve blocks for the KV of a request's whole prompt,
  // taking the leading blocks this side already caches. Counts the request's
  // n sequences against max_num_seqs. kResourceExhausted when the blocks or
  // sequence slots are not free now (a normal answer: the caller tries
  // elsewhere). abort() releases the reservation.
  Result<ImportReservation> reserve_import(Request request);
  // The KV of [cached_tokens, prompt length) landed in the reserved blocks:
  // the sequences join the running batch, each with the first token the
  // prefill side sampled for it (first_tokens[i] for sequence i); sequences
  // 1..n-1 fork from sequence 0. Each sequence's RNG skips the draw the
  // prefill side made, so seeded output matches an aggregated run. Returns
  // the sequences those tokens already finish.
  Result<std::vector<FinishedSeq>> complete_import(RequestId id,
                                                   std::span<const int32_t> first_tokens);
  // Prefill side: the KV of a prefill_only request whose every sequence has
  // finished (kPrefillDone, or kStop/kLength on its first token). The blocks
  // stay held until release_export().
  Result<KvExport> export_kv(RequestId id) const;
  Status release_export(RequestId id);

  SchedulerStats stats() const;
  // True while anything is queued, waiting or running.
  bool has_work() const;
  const SchedulerConfig& config() const { return config_; }
  const BlockManager& block_manager() const { return blocks_; }

 private:
  struct RequestState {
    Request request;
    std::vector<Sequence> seqs;  // never resized: Sequence* stay valid
    int32_t num_unfinished = 0;
    int32_t num_pending_fork = 0;
    bool holds_export = false;
  };

  Scheduler(SchedulerConfig config, std::function<int64_t()> clock_us);

  void drain_inbox(StepPlan& plan);
  RequestState& create_request(Request request);
  void insert_request(Request request);
  void abort_now(RequestId id, StepPlan& plan);
  void enqueue_waiting(Sequence* seq, bool preempted);
  bool waits_before(const Sequence& a, const Sequence& b) const;
  bool is_better_victim(const Sequence& a, const Sequence& b) const;
  Sequence* pick_victim(const std::unordered_set<const Sequence*>& scheduled,
                        const Sequence* newer_than) const;
  void preempt(Sequence* seq, StepPlan& plan);
  int32_t seq_slots_needed(const Sequence& seq) const;
  int32_t seq_slots_used() const;
  void schedule(Sequence& seq, int32_t num_new, StepPlan& plan);
  std::optional<FinishReason> stop_reason(const Sequence& seq, int32_t token) const;
  Status validate_request(const Request& request) const;
  FinishedSeq finish_seq(Sequence& seq, FinishReason reason);
  RequestState* find(RequestId id);
  const RequestState* find(RequestId id) const;
  void forget(RequestId id);

  SchedulerConfig config_;
  std::function<int64_t()> clock_us_;
  BlockManager blocks_;

  // Shared with add()/abort() callers.
  mutable std::mutex inbox_mu_;
  std::vector<Request> inbox_adds_;
  std::vector<RequestId> inbox_aborts_;
  std::unordered_set<RequestId> live_ids_;

  // Engine thread only.
  std::unordered_map<RequestId, std::unique_ptr<RequestState>> requests_;
  std::deque<Sequence*> waiting_;
  std::vector<Sequence*> running_;  // admission order
  SeqRng engine_rng_;
  uint64_t next_arrival_order_ = 0;
  uint64_t next_admission_order_ = 0;
  uint64_t next_step_id_ = 1;
  std::optional<uint64_t> in_flight_step_;
  int64_t num_preemptions_ = 0;
};

}  // namespace baton::engine
