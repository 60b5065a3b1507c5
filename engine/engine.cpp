#include "engine/engine.h"

#include <algorithm>

#include "common/logging.h"
#include "model/dummy_model.h"
#include "model/tokenizer_stream.h"

namespace baton::engine {

// ---- RequestStream ---------------------------------------------------------

Result<EngineEvent> RequestStream::next(std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  if (delivered_done_) return not_found("request " + std::to_string(id_) + " has ended");
  if (!cv_.wait_until(lock, deadline, [&] { return has_pending_; })) {
    return deadline_exceeded("no output from request " + std::to_string(id_) + " yet");
  }
  EngineEvent ev = std::move(pending_);
  pending_ = EngineEvent{};
  has_pending_ = false;
  delivered_done_ = ev.done;
  return ev;
}

void RequestStream::publish(SeqDelta delta, bool done, const RequestInfo& info) {
  {
    std::lock_guard lock(mu_);
    auto it = std::find_if(pending_.deltas.begin(), pending_.deltas.end(),
                           [&](const SeqDelta& d) { return d.index == delta.index; });
    if (it == pending_.deltas.end()) {
      pending_.deltas.push_back(std::move(delta));
    } else {
      it->token_ids.insert(it->token_ids.end(), delta.token_ids.begin(), delta.token_ids.end());
      it->logprobs.insert(it->logprobs.end(), delta.logprobs.begin(), delta.logprobs.end());
      it->text += delta.text;
      if (delta.finish != FinishReason::kNone) {
        it->finish = delta.finish;
        it->stop = delta.stop;
      }
    }
    pending_.done = pending_.done || done;
    pending_.info = info;
    has_pending_ = true;
  }
  cv_.notify_all();
  if (on_ready_) on_ready_();
}

// ---- per-request state on the engine thread -------------------------------

struct Engine::SeqText {
  std::optional<model::IncrementalDecoder> decoder;
  std::string held;  // decoded, not yet emitted (could begin a stop string)
  bool finished = false;
};

struct Engine::Live {
  RequestId id = 0;
  std::shared_ptr<RequestStream> stream;
  EngineRequest request;
  std::vector<SeqText> seqs;
  int32_t unfinished = 0;
  RequestInfo info;
  std::chrono::steady_clock::time_point submitted;
  size_t max_stop_len = 0;
  // Decode-side import: the first tokens (one per sequence, once delivered)
  // and the KV (once landed); the request joins the batch when both are here.
  bool importing = false;
  int32_t cached_tokens = 0;
  std::optional<std::vector<int32_t>> first_tokens;
  std::shared_ptr<const KvBuffer> kv;
};

namespace {

// Length of the longest prefix of `s` that ends on a UTF-8 character boundary.
size_t utf8_safe_prefix(const std::string& s, size_t n) {
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return n;
}

}  // namespace

// ---- creation --------------------------------------------------------------

Result<std::unique_ptr<Engine>> Engine::create(const EngineConfig& cfg) {
  std::unique_ptr<Engine> e(new Engine());
  BATON_ASSIGN_OR_RETURN(model::ModelSource source, model::resolve_model_spec(cfg.model));
  BATON_ASSIGN_OR_RETURN(e->model_config_, model::load_source_config(source));
  BATON_ASSIGN_OR_RETURN(
      model::ModelWeights weights,
      model::load_source_weights(source, e->model_config_, cfg.dummy_dtype, cfg.seed));
  std::optional<model::GenerationConfig> gen;
  if (source.kind == model::ModelSource::Kind::kDirectory) {
    e->model_dir_ = source.directory;
    BATON_ASSIGN_OR_RETURN(gen, model::load_generation_config(source.directory));
    if (std::filesystem::exists(source.directory / "tokenizer.json")) {
      BATON_ASSIGN_OR_RETURN(model::Tokenizer tok,
                             model::Tokenizer::from_dir(source.directory.string()));
      e->tokenizer_ = std::move(tok);
    }
  }
  e->eos_ = model::stop_token_ids(e->model_config_, gen);

  const model::ModelConfig& mc = e->model_config_;
  ModelOptions mo;
  mo.block_size = cfg.block_size;
  mo.max_num_tokens = cfg.max_num_batched_tokens;
  mo.max_num_seqs = cfg.max_num_seqs;
  mo.max_model_len = cfg.max_model_len;
  BATON_ASSIGN_OR_RETURN(ModelBackend mb,
                         make_model_backend(cfg.device, cfg.threads, cfg.gpu_memory_utilization, mc,
                                            mo, cfg.kv_cache_bytes, cfg.cuda_dtype));
  e->backend_ = std::move(mb.backend);
  mo.kv_dtype = mb.kv_dtype;
  const size_t per_token =
      static_cast<size_t>(2 * mc.num_hidden_layers * mc.kv_size()) * dtype_size(mo.kv_dtype);
  mo.num_blocks = cfg.num_blocks > 0
                      ? cfg.num_blocks
                      : static_cast<int32_t>(static_cast<size_t>(mb.kv_cache_bytes) /
                                             (per_token * static_cast<size_t>(cfg.block_size)));
  if (mo.num_blocks <= 0) return invalid_argument("kv cache too small for one block");
  int64_t len = cfg.max_model_len > 0 ? cfg.max_model_len : mc.max_position_embeddings;
  // Sliding-window attention is not implemented: serve within the window,
  // where it equals full attention.
  if (mc.sliding_window) len = std::min(len, *mc.sliding_window);
  len = std::min<int64_t>(len, static_cast<int64_t>(mo.num_blocks) * cfg.block_size);
  e->max_model_len_ = static_cast<int32_t>(len);
  mo.max_model_len = e->max_model_len_;
  BATON_ASSIGN_OR_RETURN(e->model_, LlamaModel::create(*e->backend_, mc, weights, mo));

  SchedulerConfig sc;
  sc.max_num_seqs = cfg.max_num_seqs;
  sc.max_num_batched_tokens = cfg.max_num_batched_tokens;
  sc.block_size = cfg.block_size;
  sc.num_blocks = mo.num_blocks;
  sc.enable_prefix_caching = cfg.enable_prefix_caching;
  sc.enable_chunked_prefill = cfg.enable_chunked_prefill;
  sc.max_model_len = e->max_model_len_;
  sc.policy = cfg.policy;
  sc.eos_token_ids = e->eos_;
  sc.seed = cfg.seed;
  BATON_ASSIGN_OR_RETURN(e->scheduler_, Scheduler::create(sc));
  e->update_stats(0, 0, /*counts_step=*/false);
  return e;
}

Engine::~Engine() { stop(); }

// ---- thread-safe API ---------------------------------------------------------

Result<std::shared_ptr<Engine::Live>> Engine::make_live(EngineRequest req) {
  if (req.prompt.empty()) return invalid_argument("prompt: must contain at least one token");
  for (int32_t t : req.prompt) {
    if (t < 0 || t >= model_config_.vocab_size) {
      return invalid_argument("prompt: token id " + std::to_string(t) +
                              " is outside the vocabulary");
    }
  }
  if (static_cast<int64_t>(req.prompt.size()) >= max_model_len_) {
    return invalid_argument("prompt: " + std::to_string(req.prompt.size()) +
                            " tokens leave no room to generate within the context length of " +
                            std::to_string(max_model_len_));
  }
  BATON_RETURN_IF_ERROR(req.params.validate());
  for (const auto& s : req.stop) {
    if (s.empty()) return invalid_argument("stop: stop strings must not be empty");
  }
  if (req.prefill_only) {
    req.stop.clear();
    if (req.export_from_token < 0 ||
        req.export_from_token >= static_cast<int32_t>(req.prompt.size())) {
      return invalid_argument("export_from_token: must be within the prompt");
    }
  }

  auto live = std::make_shared<Live>();
  live->id = next_id_.fetch_add(1);
  live->stream = std::make_shared<RequestStream>(live->id);
  if (req.on_ready) live->stream->set_on_ready(std::move(req.on_ready));
  live->seqs.resize(static_cast<size_t>(req.params.n));
  live->unfinished = req.params.n;
  live->info.prompt_tokens = static_cast<int32_t>(req.prompt.size());
  live->submitted = std::chrono::steady_clock::now();
  for (const auto& s : req.stop) live->max_stop_len = std::max(live->max_stop_len, s.size());
  if (tokenizer_) {
    for (auto& s : live->seqs) s.decoder.emplace(*tokenizer_, req.skip_special_tokens);
  }
  live->request = std::move(req);
  return live;
}

Request Engine::scheduler_request(const Live& live) {
  Request r;
  r.id = live.id;
  r.prompt = live.request.prompt;
  r.params = live.request.params;
  r.priority = live.request.priority;
  r.prefill_only = live.request.prefill_only;
  return r;
}

Result<std::shared_ptr<RequestStream>> Engine::submit(EngineRequest req) {
  BATON_ASSIGN_OR_RETURN(std::shared_ptr<Live> live, make_live(std::move(req)));
  Request r = scheduler_request(*live);
  {
    // Adding under mu_ orders every add before the loop's final abort sweep.
    std::lock_guard lock(mu_);
    if (stopping_) return unavailable("engine is stopping");
    BATON_RETURN_IF_ERROR(scheduler_->add(std::move(r)));
    live_[live->id] = live;
    wake_ = true;
  }
  cv_.notify_all();
  return live->stream;
}

size_t Engine::kv_bytes_per_token() const { return model_->kv_bytes_per_token(); }

void Engine::post(std::function<void()> command) {
  {
    std::lock_guard lock(mu_);
    commands_.push_back(std::move(command));
    wake_ = true;
  }
  cv_.notify_all();
}

void Engine::run_commands() {
  std::vector<std::function<void()>> todo;
  {
    std::lock_guard lock(mu_);
    todo.swap(commands_);
  }
  for (auto& c : todo) c();
  if (!todo.empty()) update_stats(0, 0, /*counts_step=*/false);
}

Result<ImportHandle> Engine::reserve_import(EngineRequest req,
                                            std::chrono::steady_clock::time_point deadline) {
  if (req.prefill_only) return invalid_argument("prefill_only: not allowed on a KV import");
  BATON_ASSIGN_OR_RETURN(std::shared_ptr<Live> live, make_live(std::move(req)));
  live->importing = true;
  Request r = scheduler_request(*live);

  // The scheduler lives on the engine thread: reserve there and wait for the
  // answer. A waiter that gives up marks the slot abandoned, so a late
  // reservation is dropped at once instead of leaking.
  struct Slot {
    std::mutex mu;
    std::condition_variable cv;
    std::optional<Result<ImportReservation>> result;
    bool abandoned = false;
  };
  auto slot = std::make_shared<Slot>();
  {
    std::lock_guard lock(mu_);
    if (stopping_ || !running_) return unavailable("engine is not running");
    commands_.push_back([this, slot, live, r = std::move(r)]() mutable {
      std::lock_guard lock(slot->mu);
      if (slot->abandoned) return;
      Result<ImportReservation> res = scheduler_->reserve_import(std::move(r));
      if (res.is_ok()) {
        live->cached_tokens = res->cached_tokens;
        live->info.cached_prompt_tokens = res->cached_tokens;
        std::lock_guard l2(mu_);
        live_[live->id] = live;
      }
      update_stats(0, 0, /*counts_step=*/false);  // the caller sees its reservation counted
      slot->result = std::move(res);
      slot->cv.notify_all();
    });
    wake_ = true;
  }
  cv_.notify_all();
  std::unique_lock lock(slot->mu);
  if (!slot->cv.wait_until(lock, deadline, [&] { return slot->result.has_value(); })) {
    slot->abandoned = true;
    return deadline_exceeded("the engine did not reserve KV room in time");
  }
  if (!slot->result->is_ok()) return slot->result->status();
  ImportHandle h;
  h.id = live->id;
  h.stream = live->stream;
  h.cached_tokens = live->cached_tokens;
  h.prompt_tokens = live->info.prompt_tokens;
  h.kv_bytes = static_cast<uint64_t>(h.prompt_tokens - h.cached_tokens) * kv_bytes_per_token();
  return h;
}

void Engine::deliver_first_tokens(RequestId id, std::vector<FirstTokenIn> tokens) {
  post([this, id, tokens = std::move(tokens)]() mutable {
    std::shared_ptr<Live> live;
    {
      std::lock_guard lock(mu_);
      auto it = live_.find(id);
      if (it != live_.end()) live = it->second;
    }
    if (!live || !live->importing || live->first_tokens) return;
    apply_first_tokens(*live, tokens);
  });
}

void Engine::import_kv(RequestId id, std::shared_ptr<const KvBuffer> kv) {
  post([this, id, kv = std::move(kv)]() mutable {
    std::shared_ptr<Live> live;
    {
      std::lock_guard lock(mu_);
      auto it = live_.find(id);
      if (it != live_.end()) live = it->second;
    }
    if (!live || !live->importing || live->kv) return;
    live->kv = std::move(kv);
    if (live->first_tokens) finish_import(*live);
  });
}

void Engine::apply_first_tokens(Live& live, std::vector<FirstTokenIn>& tokens) {
  const size_t n = live.seqs.size();
  std::vector<int32_t> ids(n, -1);
  for (const FirstTokenIn& t : tokens) {
    if (t.seq_index >= 0 && static_cast<size_t>(t.seq_index) < n) {
      ids[static_cast<size_t>(t.seq_index)] = t.sample.token;
    }
  }
  const bool complete = std::none_of(ids.begin(), ids.end(), [](int32_t t) { return t < 0; });
  if (!complete || tokens.size() != n) {
    BATON_LOG_WARN("request {}: first tokens do not cover its {} sequences; aborting it", live.id,
                   n);
    scheduler_->abort(live.id);
    return;
  }
  live.first_tokens = ids;
  if (live.info.queue_time_s < 0) {
    live.info.queue_time_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - live.submitted).count();
  }
  // Stream the tokens now. The scheduler learns of them when the KV lands,
  // so a stop string found here is only recorded (the sequence's text is
  // finished) and applied to the scheduler then.
  std::vector<FinishedSeq> unused;
  for (const FirstTokenIn& t : tokens) {
    emit_token(live, t.seq_index, t.sample, /*finished_by_commit=*/true, unused);
    if (t.finish != FinishReason::kNone) finish_seq(live, t.seq_index, t.finish);
  }
  if (live.unfinished == 0) {
    scheduler_->abort(live.id);  // nothing goes on: drop the reservation
    return;
  }
  if (live.kv) finish_import(live);
}

void Engine::finish_import(Live& live) {
  const Sequence* seq = scheduler_->sequence(live.id, 0);
  if (seq == nullptr) return;  // aborted meanwhile
  const auto prompt = static_cast<int32_t>(seq->prompt.size());
  const KvBuffer& kv = *live.kv;
  const uint64_t need = static_cast<uint64_t>(kv.num_tokens) * model_->kv_bytes_per_token();
  Status st;
  if (kv.first_token != live.cached_tokens || kv.num_tokens != prompt - live.cached_tokens) {
    st = invalid_argument("KV import covers tokens [" + std::to_string(kv.first_token) + ", " +
                          std::to_string(kv.first_token + kv.num_tokens) + "), expected [" +
                          std::to_string(live.cached_tokens) + ", " + std::to_string(prompt) + ")");
  } else if ((kv.device.data ? kv.device.bytes : kv.bytes.size()) < need) {
    st = invalid_argument("KV import of " + std::to_string(kv.num_tokens) +
                          " tokens holds fewer bytes than their KV");
  } else if (kv.device.data) {
    st = model_->import_kv_device(seq->block_table.data(), kv.first_token, kv.num_tokens,
                                  kv.device.data);
  } else {
    st = model_->import_kv(seq->block_table.data(), kv.first_token, kv.num_tokens, kv.bytes.data());
  }
  live.kv.reset();
  if (!st.is_ok()) {
    BATON_LOG_WARN("request {}: KV import failed: {}", live.id, st.to_string());
    scheduler_->abort(live.id);
    return;
  }
  live.importing = false;
  auto finished = scheduler_->complete_import(live.id, *live.first_tokens);
  if (!finished.is_ok()) {
    BATON_LOG_WARN("request {}: {}", live.id, finished.status().to_string());
    scheduler_->abort(live.id);
    return;
  }
  std::vector<FinishedSeq> more;
  for (size_t i = 0; i < live.seqs.size(); ++i) {
    if (!live.seqs[i].finished) continue;
    // Ended before the import (stop string, or on the prefill side): tell the
    // scheduler now, unless its own stop rules just did.
    auto r = scheduler_->finish(live.id, static_cast<int32_t>(i), FinishReason::kStop);
    (void)r;
  }
  for (const FinishedSeq& f : *finished) finish_seq(live, f.seq_index, f.reason);
}

void Engine::cancel(RequestId id) {
  scheduler_->abort(id);
  {
    std::lock_guard lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

EngineStats Engine::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

// ---- engine thread -----------------------------------------------------------

Status Engine::start() {
  std::lock_guard lock(mu_);
  if (running_) return Status::ok();
  running_ = true;
  stopping_ = false;
  thread_ = std::thread([this] { loop(); });
  return Status::ok();
}

void Engine::stop() {
  {
    std::lock_guard lock(mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard lock(mu_);
  running_ = false;
}

void Engine::loop() {
  for (;;) {
    run_commands();
    {
      std::unique_lock lock(mu_);
      if (stopping_) break;
      if (!commands_.empty()) continue;
      if (!scheduler_->has_work()) {
        // Woken by submit/cancel/stop; the timeout only bounds a missed wake.
        cv_.wait_for(lock, std::chrono::milliseconds(100), [&] { return wake_ || stopping_; });
        wake_ = false;
        continue;
      }
    }
    Status st = step();
    if (!st.is_ok()) {
      // A step that failed half way (the backend ran out of memory, say)
      // leaves the scheduler mid-step: stop serving, and end every stream
      // with an abort rather than leave it waiting.
      BATON_LOG_ERROR("engine step failed, stopping the engine: {}", st.to_string());
      std::vector<std::shared_ptr<Live>> all;
      {
        std::lock_guard lock(mu_);
        stopping_ = true;
        for (auto& [id, l] : live_) all.push_back(l);
      }
      for (auto& l : all) {
        for (size_t i = 0; i < l->seqs.size(); ++i) {
          finish_seq(*l, static_cast<int32_t>(i), FinishReason::kAbort);
        }
      }
      return;
    }
  }
  // Stopping: abort what is left so every stream ends.
  run_commands();
  std::vector<std::shared_ptr<Live>> rest;
  {
    std::lock_guard lock(mu_);
    for (auto& [id, l] : live_) rest.push_back(l);
  }
  for (auto& l : rest) scheduler_->abort(l->id);
  while (scheduler_->has_work()) {
    StepPlan plan = scheduler_->plan();
    for (const SeqRef& a : plan.aborted) {
      std::shared_ptr<Live> l;
      {
        std::lock_guard lock(mu_);
        auto it = live_.find(a.request_id);
        if (it != live_.end()) l = it->second;
      }
      if (l) finish_seq(*l, a.seq_index, FinishReason::kAbort);
    }
    // Every request was aborted before this plan, so it schedules nothing.
    BATON_CHECK(plan.empty());
    scheduler_->commit(plan, {});
  }
  update_stats(0, 0);
}

Status Engine::run_until_idle() {
  run_commands();
  while (scheduler_->has_work()) {
    BATON_RETURN_IF_ERROR(step());
    run_commands();
  }
  return Status::ok();
}

void Engine::export_finished(const std::vector<FinishedSeq>& finished) {
  std::vector<RequestId> done;
  for (const FinishedSeq& f : finished) {
    if (std::find(done.begin(), done.end(), f.request_id) != done.end()) continue;
    auto exported = scheduler_->export_kv(f.request_id);
    if (!exported.is_ok()) continue;  // not prefill-only, or siblings still running
    done.push_back(f.request_id);
    std::shared_ptr<Live> live;
    {
      std::lock_guard lock(mu_);
      auto it = live_.find(f.request_id);
      if (it != live_.end()) live = it->second;
    }
    const bool goes_on =
        std::any_of(exported->finish_reasons.begin(), exported->finish_reasons.end(),
                    [](FinishReason r) { return r == FinishReason::kPrefillDone; });
    if (live && goes_on) {
      auto kv = std::make_shared<KvBuffer>();
      kv->first_token = live->request.export_from_token;
      kv->num_tokens = exported->num_tokens - kv->first_token;
      const size_t need = static_cast<size_t>(kv->num_tokens) * model_->kv_bytes_per_token();
      Status st;
      if (live->request.export_to.data) {
        kv->device = live->request.export_to;
        st = kv->device.bytes < need
                 ? invalid_argument("KV export: its device slice is smaller than the KV")
                 : model_->export_kv_device(exported->block_table.data(), kv->first_token,
                                            kv->num_tokens, kv->device.data);
      } else {
        kv->bytes.resize(need);
        st = model_->export_kv(exported->block_table.data(), kv->first_token, kv->num_tokens,
                               kv->bytes.data());
      }
      if (st.is_ok()) {
        live->info.kv_export = std::move(kv);
      } else {
        BATON_LOG_WARN("request {}: KV export failed: {}", f.request_id, st.to_string());
      }
      live->request.export_to = {};  // the export (if any) owns the slice now
    }
    (void)scheduler_->release_export(f.request_id);
  }
}

bool Engine::emit_token(Live& live, int32_t idx, const SampleResult& r, bool finished_by_commit,
                        std::vector<FinishedSeq>& finished) {
  SeqText& st = live.seqs[static_cast<size_t>(idx)];
  SeqDelta d;
  d.index = idx;
  d.token_ids.push_back(r.token);
  if (live.request.params.logprobs) d.logprobs.push_back(r);
  if (st.decoder) {
    Result<std::string> text = st.decoder->step(r.token);
    if (text.is_ok()) st.held += *text;
  }
  // Earliest stop string in the text not yet emitted; every occurrence lies
  // there, since emitted text was checked when it was held.
  size_t best = std::string::npos;
  const std::string* hit = nullptr;
  for (const auto& s : live.request.stop) {
    size_t p = st.held.find(s);
    if (p != std::string::npos && p < best) {
      best = p;
      hit = &s;
    }
  }
  if (hit == nullptr) {
    // Emit what can no longer be the start of a stop string.
    size_t keep = live.max_stop_len > 0 ? live.max_stop_len - 1 : 0;
    size_t emit = st.held.size() > keep ? utf8_safe_prefix(st.held, st.held.size() - keep) : 0;
    d.text = st.held.substr(0, emit);
    st.held.erase(0, emit);
    live.stream->publish(std::move(d), false, live.info);
    return false;
  }
  // A stop string ends the sequence (and wins over length/EOS of this step).
  if (finished_by_commit) {
    finished.erase(std::remove_if(finished.begin(), finished.end(),
                                  [&](const FinishedSeq& f) {
                                    return f.request_id == live.id && f.seq_index == idx;
                                  }),
                   finished.end());
  } else {
    auto more = scheduler_->finish(live.id, idx, FinishReason::kStop);
    if (more.is_ok()) {
      for (const FinishedSeq& f : *more) {
        if (!(f.request_id == live.id && f.seq_index == idx)) finished.push_back(f);
      }
    }
    update_stats(0, 0, /*counts_step=*/false);  // before anyone sees the sequence end
  }
  st.held.resize(best + (live.request.include_stop_str_in_output ? hit->size() : 0));
  d.text = std::move(st.held);
  st.held.clear();
  st.decoder.reset();
  st.finished = true;
  d.finish = FinishReason::kStop;
  d.stop = *hit;
  bool done = --live.unfinished == 0;
  live.stream->publish(std::move(d), done, live.info);
  if (done) {
    std::lock_guard lock(mu_);
    live_.erase(live.id);
  }
  return true;
}

void Engine::finish_seq(Live& live, int32_t idx, FinishReason reason) {
  SeqText& st = live.seqs[static_cast<size_t>(idx)];
  if (st.finished) return;
  st.finished = true;
  SeqDelta d;
  d.index = idx;
  d.finish = reason;
  if (st.decoder) {
    Result<std::string> tail = st.decoder->finish();
    if (tail.is_ok()) st.held += *tail;
  }
  d.text = std::move(st.held);
  st.held.clear();
  bool done = --live.unfinished == 0;
  live.stream->publish(std::move(d), done, live.info);
  if (done) {
    std::lock_guard lock(mu_);
    live_.erase(live.id);
  }
}

Status Engine::step() {
  StepPlan plan = scheduler_->plan();
  if (!plan.aborted.empty()) update_stats(0, 0, /*counts_step=*/false);
  auto find_live = [&](RequestId id) {
    std::lock_guard lock(mu_);
    auto it = live_.find(id);
    return it == live_.end() ? nullptr : it->second;
  };
  for (const SeqRef& a : plan.aborted) {
    if (auto l = find_live(a.request_id)) finish_seq(*l, a.seq_index, FinishReason::kAbort);
  }
  if (plan.empty()) {
    scheduler_->commit(plan, {});
    update_stats(0, 0);
    return Status::ok();
  }

  const auto now = std::chrono::steady_clock::now();
  for (const ScheduledSeq& s : plan.seqs) {
    if (s.seq_index != 0) continue;
    auto l = find_live(s.request_id);
    if (l && l->info.queue_time_s < 0) {
      l->info.queue_time_s = std::chrono::duration<double>(now - l->submitted).count();
    }
  }
  for (const BlockCopy& c : plan.block_copies)
    BATON_RETURN_IF_ERROR(model_->copy_block(c.src, c.dst));
  batch_.clear();
  int64_t prompt_tokens = 0;
  for (const ScheduledSeq& s : plan.seqs) {
    auto start = static_cast<int32_t>(batch_.tokens.size());
    auto n = static_cast<int32_t>(s.token_ids.size());
    batch_.tokens.insert(batch_.tokens.end(), s.token_ids.begin(), s.token_ids.end());
    for (int32_t i = 0; i < n; ++i) batch_.positions.push_back(s.start_pos + i);
    batch_.slots.insert(batch_.slots.end(), s.slots.begin(), s.slots.end());
    batch_.seqs.push_back({start, n, s.context_len, s.block_table.data(),
                           static_cast<int32_t>(s.block_table.size())});
    if (s.sample) batch_.logit_rows.push_back(start + n - 1);
    if (s.is_prefill) prompt_tokens += n;
  }
  // Sampling runs on the backend, where the logits are; the uniform numbers
  // are drawn here, from each sequence's own rng.
  std::vector<SampledToken> sampled;
  std::vector<const Sequence*> sampled_seqs;
  sample_batch_.clear();
  int32_t row = 0;
  for (const ScheduledSeq& s : plan.seqs) {
    if (!s.sample) continue;
    for (int32_t idx : s.sample_seq_indices) {
      Sequence* seq = scheduler_->sequence(s.request_id, idx);
      BATON_CHECK(seq != nullptr && seq->params != nullptr);
      sampler_.prepare(*seq->params, SampleContext{seq->prompt, seq->output, eos_}, seq->rng, row,
                       model_->vocab_size(), sample_batch_);
      sampled.push_back({s.request_id, idx, 0});
      sampled_seqs.push_back(seq);
    }
    ++row;
  }
  sample_batch_.finalize();
  BATON_RETURN_IF_ERROR(model_->forward_sample(batch_, sample_batch_.rows, sample_out_));
  std::vector<SampleResult> results;
  results.reserve(sampled.size());
  for (size_t i = 0; i < sampled.size(); ++i) {
    results.push_back(Sampler::result(sample_out_[i], *sampled_seqs[i]->params));
    sampled[i].token = results.back().token;
  }
  std::vector<FinishedSeq> finished = scheduler_->commit(plan, sampled);
  export_finished(finished);
  // Stats first, so that whoever sees a request end also sees its blocks free.
  update_stats(prompt_tokens, static_cast<int64_t>(sampled.size()));

  // Emit tokens, then look for stop strings in the text they completed.
  for (size_t i = 0; i < sampled.size(); ++i) {
    auto live = find_live(sampled[i].request_id);
    if (!live) continue;
    Live& l = *live;
    const int32_t idx = sampled[i].seq_index;
    if (idx == 0 && l.info.cached_prompt_tokens == 0) {
      if (Sequence* s0 = scheduler_->sequence(l.id, 0)) {
        l.info.cached_prompt_tokens = s0->num_cached_prompt_tokens;
      }
    }
    bool by_commit = std::any_of(finished.begin(), finished.end(), [&](const FinishedSeq& f) {
      return f.request_id == l.id && f.seq_index == idx;
    });
    emit_token(l, idx, results[i], by_commit, finished);
  }
  for (const FinishedSeq& f : finished) {
    if (auto l = find_live(f.request_id)) finish_seq(*l, f.seq_index, f.reason);
  }
  return Status::ok();
}

void Engine::update_stats(int64_t prompt_tokens, int64_t generated, bool counts_step) {
  SchedulerStats ss = scheduler_->stats();
  std::lock_guard lock(mu_);
  stats_.num_running = ss.num_running;
  stats_.num_waiting = ss.num_waiting;
  stats_.kv_usage = ss.kv_usage;
  stats_.prefix_hit_rate = ss.prefix.hit_rate();
  stats_.num_preemptions = ss.num_preemptions;
  stats_.num_awaiting_kv = ss.num_awaiting_kv;
  stats_.num_free_blocks = ss.num_free_blocks;
  stats_.num_blocks = scheduler_->config().num_blocks;
  stats_.prompt_tokens += prompt_tokens;
  stats_.generation_tokens += generated;
  if (counts_step) stats_.steps += 1;
}

}  // namespace baton::engine
