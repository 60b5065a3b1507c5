#pragma once

// Engine: the model, the scheduler and the sampler behind one thread
// (DESIGN.md §4). Callers submit requests from any thread and read each
// request's outputs from its own RequestStream; only the engine thread touches
// scheduler, model and KV state.
//
// One step: plan -> block copies -> forward -> sample -> commit -> emit.
// Text is detokenized here, incrementally, so stop strings are found and cut
// before any of their text is emitted (a stream never shows part of a stop
// string).
//
// Thread-safety: submit(), cancel(), stats() and the RequestStream calls are
// thread safe. start()/stop() from the owning thread.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/llama_model.h"
#include "engine/sampler.h"
#include "engine/scheduler.h"
#include "model/model_config.h"
#include "model/tokenizer.h"

namespace baton::engine {

struct EngineConfig {
  std::string model = "";               // directory or dummy:<preset>
  int threads = 0;                      // CPU backend workers; 0: all cores
  std::string device = "cpu";           // "cpu", "cuda" (GPU 0) or "cuda:N"
  double gpu_memory_utilization = 0.9;  // cuda: share of GPU memory for weights, workspace, KV
  // cuda: dtype of activations, weights and KV, kBF16 (served) or kF32 (exact
  // f32 arithmetic, no TF32: twice the memory, for checks against references)
  DType cuda_dtype = DType::kBF16;
  int32_t block_size = 16;
  int32_t num_blocks = 0;            // 0: from kv_cache_bytes
  int64_t kv_cache_bytes = 1 << 30;  // KV pool size when num_blocks is 0
  int32_t max_num_seqs = 64;
  int32_t max_num_batched_tokens = 2048;
  int32_t max_model_len = 0;  // 0: the model's max_position_embeddings (capped by KV room)
  bool enable_prefix_caching = true;
  bool enable_chunked_prefill = true;
  SchedulingPolicy policy = SchedulingPolicy::kFcfs;
  DType dummy_dtype = DType::kBF16;
  uint64_t seed = 0;
};

// Backend memory (device memory of the engine's GPU) that a KV export is
// gathered into or an import scattered from, in place of host bytes: a slice
// of a GPU transport's staging area. Valid while `owner` lives.
struct KvDeviceSlice {
  void* data = nullptr;
  uint64_t bytes = 0;
  std::shared_ptr<void> owner;
};

struct EngineRequest {
  std::vector<int32_t> prompt;
  SamplingParams params;
  std::vector<std::string> stop;  // stop strings
  bool include_stop_str_in_output = false;
  bool skip_special_tokens = true;
  int32_t priority = 0;
  // Role prefill: stop after each sequence's first token (finish reason
  // kPrefillDone when it goes on elsewhere) and hand the prompt's KV, from
  // token export_from_token on, to the caller with the done event
  // (RequestInfo::kv_export). Stop strings are the decode side's business and
  // are ignored here.
  bool prefill_only = false;
  int32_t export_from_token = 0;
  // prefill_only: gather the exported KV into this backend memory (it must
  // hold all of it) instead of host bytes; the KvBuffer then refers to it.
  KvDeviceSlice export_to;
  // See RequestStream::set_on_ready.
  std::function<void()> on_ready;
};

// A request's KV as one contiguous buffer in the layout of
// kvtransfer/kv_layout.h: [layer][K then V][token][kv_heads * head_dim],
// either host bytes or, when device.data is set, backend memory (then
// `bytes` is empty).
struct KvBuffer {
  std::vector<std::byte> bytes;
  KvDeviceSlice device;
  int32_t first_token = 0;  // position of the buffer's first token in the prompt
  int32_t num_tokens = 0;
};

// New output of one sequence since the last event.
struct SeqDelta {
  int32_t index = 0;
  std::vector<int32_t> token_ids;
  std::vector<SampleResult> logprobs;  // one per token when logprobs were asked
  std::string text;                    // never part of a stop string
  FinishReason finish = FinishReason::kNone;
  std::string stop;  // the stop string that matched, if any
};

// What the engine knows of a request as a whole, repeated in every event.
struct RequestInfo {
  int32_t prompt_tokens = 0;
  int32_t cached_prompt_tokens = 0;  // prefix cache hit of sequence 0
  // Seconds from submit() to the first step that scheduled the request;
  // negative until then.
  double queue_time_s = -1;
  // prefill_only requests, on the done event: the exported KV, or null when
  // no sequence goes on (every one ended on its first token).
  std::shared_ptr<const KvBuffer> kv_export;
};

class RequestStream;

// A decode-side import (reserve_import): the request's stream, and which
// prompt tokens' KV must arrive.
struct ImportHandle {
  RequestId id = 0;
  std::shared_ptr<RequestStream> stream;
  int32_t cached_tokens = 0;  // KV of [0, cached_tokens) is already here
  int32_t prompt_tokens = 0;
  uint64_t kv_bytes = 0;  // bytes of the KV of [cached_tokens, prompt_tokens)
};

// The first token the prefill side sampled for one sequence.
struct FirstTokenIn {
  int32_t seq_index = 0;
  SampleResult sample;
  // kNone when the sequence goes on here; kStop or kLength when that token
  // already ended it on the prefill side.
  FinishReason finish = FinishReason::kNone;
};

struct EngineEvent {
  std::vector<SeqDelta> deltas;
  bool done = false;  // every sequence finished; nothing follows
  RequestInfo info;
};

// A request's output channel. The engine never blocks on it: it merges new
// output into one pending event that the reader takes whole, so the backlog is
// bounded by the request's own output.
class RequestStream {
 public:
  explicit RequestStream(RequestId id) : id_(id) {}
  RequestId id() const { return id_; }
  // Everything produced since the last call; kDeadlineExceeded if nothing
  // arrived by the deadline; after the done event, kNotFound.
  Result<EngineEvent> next(std::chrono::steady_clock::time_point deadline);

  // Called (on the engine thread, without locks held) each time output
  // becomes ready, so a reader need not block in next(). Set it before the
  // first output can arrive: at submit(), through EngineRequest::on_ready.
  void set_on_ready(std::function<void()> cb) { on_ready_ = std::move(cb); }

  // Engine side.
  void publish(SeqDelta delta, bool done, const RequestInfo& info);

 private:
  RequestId id_;
  std::function<void()> on_ready_;
  std::mutex mu_;
  std::condition_variable cv_;
  EngineEvent pending_;
  bool has_pending_ = false;
  bool delivered_done_ = false;
};

struct EngineStats {
  int32_t num_running = 0;
  int32_t num_waiting = 0;
  double kv_usage = 0.0;
  double prefix_hit_rate = 0.0;
  int64_t num_preemptions = 0;
  int64_t prompt_tokens = 0;      // computed by forward passes (excludes cache hits)
  int64_t generation_tokens = 0;  // sampled
  int64_t steps = 0;
  int32_t num_awaiting_kv = 0;  // imports reserved, KV not landed yet
  int32_t num_free_blocks = 0;
  int32_t num_blocks = 0;
};

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> create(const EngineConfig& config);
  ~Engine();

  Status start();
  // Stops the loop; unfinished requests end with an abort event.
  void stop();

  // Queue a request. invalid_argument for a bad prompt or params (naming the
  // field), kUnavailable when stopped. Thread safe.
  Result<std::shared_ptr<RequestStream>> submit(EngineRequest request);
  // Abort a request; its stream ends with finish reason abort. Thread safe.
  void cancel(RequestId id);

  EngineStats stats() const;

  // ---- disaggregation (decode side) -------------------------------------------
  // Reserves KV room for the request's prompt (taking what the prefix cache
  // already holds) and returns its stream; output starts once the first
  // tokens and the KV arrive. kResourceExhausted when there is no room now,
  // kDeadlineExceeded when the engine thread did not get to it by the
  // deadline (nothing is then reserved), plus submit()'s errors. cancel()
  // releases the reservation. Thread safe.
  Result<ImportHandle> reserve_import(EngineRequest request,
                                      std::chrono::steady_clock::time_point deadline);
  // The prefill side's first tokens, one per sequence: streamed at once,
  // before the KV lands. Thread safe; applied on the engine thread.
  void deliver_first_tokens(RequestId id, std::vector<FirstTokenIn> tokens);
  // The KV of [cached_tokens, prompt_tokens) arrived (handle.kv_bytes bytes):
  // scattered into the reserved blocks, after which the request joins the
  // running batch. Thread safe; applied on the engine thread.
  void import_kv(RequestId id, std::shared_ptr<const KvBuffer> kv);
  // Bytes of one token's KV over all layers (the KvBuffer layout).
  size_t kv_bytes_per_token() const;
  const model::ModelConfig& model_config() const { return model_config_; }
  // Null for dummy models (they have no tokenizer).
  const model::Tokenizer* tokenizer() const { return tokenizer_ ? &*tokenizer_ : nullptr; }
  const std::filesystem::path& model_dir() const { return model_dir_; }
  int32_t max_model_len() const { return max_model_len_; }
  std::vector<int32_t> eos_token_ids() const { return eos_; }

  // Runs steps on the calling thread until no work is left (tests, offline
  // benchmarks). Must not be mixed with start().
  Status run_until_idle();

 private:
  struct SeqText;
  struct Live;

  Engine() = default;
  Status step();
  void loop();
  // Publishes a sampled token and its text; true when a stop string ended
  // the sequence (then `finished` is updated to match the scheduler).
  bool emit_token(Live& live, int32_t seq_index, const SampleResult& r, bool finished_by_commit,
                  std::vector<FinishedSeq>& finished);
  void finish_seq(Live& live, int32_t seq_index, FinishReason reason);
  void update_stats(int64_t prompt_tokens, int64_t generated, bool counts_step = true);
  // Validates the request and builds its engine-side state, which keeps it.
  Result<std::shared_ptr<Live>> make_live(EngineRequest req);
  static Request scheduler_request(const Live& live);
  // Runs on the engine thread at the top of each loop turn.
  void post(std::function<void()> command);
  void run_commands();
  void apply_first_tokens(Live& live, std::vector<FirstTokenIn>& tokens);
  void finish_import(Live& live);
  void export_finished(const std::vector<FinishedSeq>& finished);

  model::ModelConfig model_config_;
  std::filesystem::path model_dir_;
  std::optional<model::Tokenizer> tokenizer_;
  std::vector<int32_t> eos_;
  int32_t max_model_len_ = 0;
  std::unique_ptr<kernels::Backend> backend_;
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Scheduler> scheduler_;
  Sampler sampler_;
  ForwardBatch batch_;
  SampleBatch sample_batch_;
  std::vector<kernels::SampleOutput> sample_out_;

  std::atomic<RequestId> next_id_{1};
  mutable std::mutex mu_;  // guards live_, stats_, stopping_, wake_
  std::condition_variable cv_;
  std::unordered_map<RequestId, std::shared_ptr<Live>> live_;
  EngineStats stats_;
  bool stopping_ = false;
  bool running_ = false;
  bool wake_ = false;
  std::vector<std::function<void()>> commands_;  // guarded by mu_
  std::thread thread_;
};

}  // namespace baton::engine
