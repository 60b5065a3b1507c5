#include "engine/scheduler.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <tuple>
#include <utility>

namespace baton::engine {
namespace {

bool contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

int64_t steady_now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string str(int64_t v) { return std::to_string(v); }

}  // namespace

Status SchedulerConfig::validate() const {
  if (max_num_seqs < 1) return invalid_argument("max_num_seqs must be >= 1");
  if (max_num_batched_tokens < 1) return invalid_argument("max_num_batched_tokens must be >= 1");
  if (block_size < 1) return invalid_argument("block_size must be >= 1");
  if (num_blocks < 1) return invalid_argument("num_blocks must be >= 1");
  if (max_model_len < 2) return invalid_argument("max_model_len must be >= 2");
  if (max_num_batched_tokens < max_num_seqs) {
    return invalid_argument("max_num_batched_tokens (" + str(max_num_batched_tokens) +
                            ") must be >= max_num_seqs (" + str(max_num_seqs) +
                            ") so that every running sequence can decode each step");
  }
  if (!enable_chunked_prefill && max_num_batched_tokens < max_model_len) {
    return invalid_argument("max_num_batched_tokens (" + str(max_num_batched_tokens) +
                            ") must be >= max_model_len (" + str(max_model_len) +
                            ") without chunked prefill");
  }
  if (static_cast<int64_t>(num_blocks) * block_size < max_model_len) {
    return invalid_argument("max_model_len (" + str(max_model_len) + ") exceeds the KV cache (" +
                            str(static_cast<int64_t>(num_blocks) * block_size) + " tokens)");
  }
  return Status::ok();
}

Result<std::unique_ptr<Scheduler>> Scheduler::create(SchedulerConfig config,
                                                     std::function<int64_t()> clock_us) {
  BATON_RETURN_IF_ERROR(config.validate());
  if (!clock_us) clock_us = steady_now_us;
  return std::unique_ptr<Scheduler>(new Scheduler(std::move(config), std::move(clock_us)));
}

Scheduler::Scheduler(SchedulerConfig config, std::function<int64_t()> clock_us)
    : config_(std::move(config)),
      clock_us_(std::move(clock_us)),
      blocks_(config_.num_blocks, config_.block_size, config_.enable_prefix_caching),
      engine_rng_(config_.seed, -1) {}

// ---- requests -----------------------------------------------------------------

Status Scheduler::validate_request(const Request& r) const {
  BATON_RETURN_IF_ERROR(r.params.validate());
  if (r.prompt.empty()) return invalid_argument("prompt must not be empty");
  for (int32_t t : r.prompt) {
    if (t < 0) return invalid_argument("prompt token ids must be >= 0, got " + str(t));
  }
  if (static_cast<int64_t>(r.prompt.size()) >= config_.max_model_len) {
    return invalid_argument("prompt has " + str(static_cast<int64_t>(r.prompt.size())) +
                            " tokens; max_model_len " + str(config_.max_model_len) +
                            " leaves no room for output");
  }
  if (r.params.n > config_.max_num_seqs) {
    return invalid_argument("n (" + str(r.params.n) + ") exceeds max_num_seqs (" +
                            str(config_.max_num_seqs) + ")");
  }
  return Status::ok();
}

Status Scheduler::add(Request request) {
  BATON_RETURN_IF_ERROR(validate_request(request));
  if (request.arrival_us == 0) request.arrival_us = clock_us_();
  std::lock_guard lock(inbox_mu_);
  if (!live_ids_.insert(request.id).second) {
    return Status(StatusCode::kConflict,
                  "request id " + str(static_cast<int64_t>(request.id)) + " is already in use");
  }
  inbox_adds_.push_back(std::move(request));
  return Status::ok();
}

void Scheduler::abort(RequestId id) {
  std::lock_guard lock(inbox_mu_);
  inbox_aborts_.push_back(id);
}

void Scheduler::drain_inbox(StepPlan& plan) {
  std::vector<Request> adds;
  std::vector<RequestId> aborts;
  {
    std::lock_guard lock(inbox_mu_);
    adds.swap(inbox_adds_);
    aborts.swap(inbox_aborts_);
  }
  for (Request& r : adds) insert_request(std::move(r));
  // After the adds, so that an add followed by an abort from another thread
  // cancels the request whichever step they land in.
  for (RequestId id : aborts) abort_now(id, plan);
}

Scheduler::RequestState& Scheduler::create_request(Request request) {
  auto state = std::make_unique<RequestState>();
  state->request = std::move(request);
  const Request& r = state->request;
  // Drawn on the engine thread in arrival order, so a run is reproducible
  // from SchedulerConfig::seed alone.
  const uint64_t seed = r.params.seed ? *r.params.seed : engine_rng_.next_u64();
  const uint64_t order = next_arrival_order_++;
  state->seqs.resize(static_cast<size_t>(r.params.n));
  for (int32_t i = 0; i < r.params.n; ++i) {
    Sequence& s = state->seqs[static_cast<size_t>(i)];
    s.request_id = r.id;
    s.index = i;
    s.params = &r.params;
    s.prompt = r.prompt;
    s.priority = r.priority;
    s.arrival_us = r.arrival_us;
    s.arrival_order = order;
    s.rng = SeqRng(seed, i);
    s.status = i == 0 ? SeqStatus::kWaiting : SeqStatus::kPendingFork;
  }
  state->num_unfinished = r.params.n;
  state->num_pending_fork = r.params.n - 1;
  RequestState& ref = *state;
  requests_[r.id] = std::move(state);
  return ref;
}

void Scheduler::insert_request(Request request) {
  RequestState& state = create_request(std::move(request));
  enqueue_waiting(&state.seqs[0], false);
}

void Scheduler::abort_now(RequestId id, StepPlan& plan) {
  RequestState* state = find(id);
  if (state == nullptr) return;
  for (Sequence& s : state->seqs) {
    blocks_.free(s);  // also a held export or an import reservation
    if (s.is_finished()) continue;
    std::erase(running_, &s);
    std::erase(waiting_, &s);
    s.status = SeqStatus::kFinished;
    s.finish_reason = FinishReason::kAbort;
    plan.aborted.push_back({id, s.index});
  }
  forget(id);
}

void Scheduler::forget(RequestId id) {
  requests_.erase(id);
  std::lock_guard lock(inbox_mu_);
  live_ids_.erase(id);
}

Scheduler::RequestState* Scheduler::find(RequestId id) {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

const Scheduler::RequestState* Scheduler::find(RequestId id) const {
  auto it = requests_.find(id);
  return it == requests_.end() ? nullptr : it->second.get();
}

Sequence* Scheduler::sequence(RequestId id, int32_t seq_index) {
  RequestState* state = find(id);
  if (state == nullptr || seq_index < 0 || seq_index >= static_cast<int32_t>(state->seqs.size())) {
    return nullptr;
  }
  return &state->seqs[static_cast<size_t>(seq_index)];
}

// ---- ordering -----------------------------------------------------------------

// Preempted sequences wait ahead of fresh ones (within a priority level under
// kPriority): they were admitted before and hold output a client is waiting on.
bool Scheduler::waits_before(const Sequence& a, const Sequence& b) const {
  auto key = [&](const Sequence& s) {
    const int32_t prio = config_.policy == SchedulingPolicy::kPriority ? s.priority : 0;
    return std::make_tuple(prio, s.status != SeqStatus::kPreempted, s.arrival_us, s.arrival_order,
                           s.index);
  };
  return key(a) < key(b);
}

bool Scheduler::is_better_victim(const Sequence& a, const Sequence& b) const {
  if (config_.policy == SchedulingPolicy::kPriority) {
    auto key = [](const Sequence& s) {
      return std::make_tuple(s.priority, s.arrival_us, s.arrival_order, s.admission_order);
    };
    return key(a) > key(b);
  }
  return a.admission_order > b.admission_order;
}

void Scheduler::enqueue_waiting(Sequence* seq, bool preempted) {
  seq->status = preempted ? SeqStatus::kPreempted : SeqStatus::kWaiting;
  auto pos = waiting_.end();
  while (pos != waiting_.begin() && waits_before(*seq, **std::prev(pos))) --pos;
  waiting_.insert(pos, seq);
}

Sequence* Scheduler::pick_victim(const std::unordered_set<const Sequence*>& scheduled,
                                 const Sequence* newer_than) const {
  Sequence* victim = nullptr;
  for (Sequence* s : running_) {
    if (scheduled.contains(s)) continue;
    if (newer_than != nullptr && !is_better_victim(*s, *newer_than)) continue;
    if (victim == nullptr || is_better_victim(*s, *victim)) victim = s;
  }
  return victim;
}

void Scheduler::preempt(Sequence* seq, StepPlan& plan) {
  blocks_.free(*seq);
  seq->num_computed = 0;
  ++seq->num_preemptions;
  ++num_preemptions_;
  std::erase(running_, seq);
  enqueue_waiting(seq, true);
  plan.preempted.push_back({seq->request_id, seq->index});
}

// Sequence 0 of a request that has not forked yet holds the places of its
// siblings too, so that forking never overflows max_num_seqs.
int32_t Scheduler::seq_slots_needed(const Sequence& seq) const {
  if (seq.index != 0) return 1;
  const RequestState* state = find(seq.request_id);
  return 1 + (state == nullptr ? 0 : state->num_pending_fork);
}

int32_t Scheduler::seq_slots_used() const {
  int32_t used = 0;
  for (const Sequence* s : running_) used += seq_slots_needed(*s);
  return used;
}

// ---- plan -----------------------------------------------------------------------

void Scheduler::schedule(Sequence& seq, int32_t num_new, StepPlan& plan) {
  const int32_t start = seq.num_computed;
  const int32_t bs = config_.block_size;
  blocks_.grow(seq, num_new, plan.block_copies);
  ScheduledSeq e;
  e.request_id = seq.request_id;
  e.seq_index = seq.index;
  e.token_ids = seq.tokens(start, num_new);
  e.start_pos = start;
  e.block_table = seq.block_table;
  e.slots.reserve(static_cast<size_t>(num_new));
  for (int32_t p = start; p < start + num_new; ++p) {
    e.slots.push_back(seq.block_table[static_cast<size_t>(p / bs)] * bs + p % bs);
  }
  e.context_len = start + num_new;
  e.is_prefill = !(num_new == 1 && start == seq.num_tokens() - 1);
  e.sample = e.context_len == seq.num_tokens();
  if (e.sample) {
    e.sample_seq_indices.push_back(seq.index);
    const RequestState* state = find(seq.request_id);
    if (seq.index == 0 && state->num_pending_fork > 0) {
      for (const Sequence& sib : state->seqs) {
        if (sib.status == SeqStatus::kPendingFork) e.sample_seq_indices.push_back(sib.index);
      }
    }
  }
  plan.num_batched_tokens += num_new;
  plan.seqs.push_back(std::move(e));
}

StepPlan Scheduler::plan() {
  BATON_CHECK_MSG(!in_flight_step_, "plan() called twice without commit()");
  StepPlan plan;
  plan.step_id = next_step_id_++;
  drain_inbox(plan);

  int32_t budget = config_.max_num_batched_tokens;
  const auto max_seqs = static_cast<size_t>(config_.max_num_seqs);
  std::unordered_set<const Sequence*> scheduled;

  // Decodes: one token each, oldest admission first. A decode that cannot get
  // a block preempts the worst unscheduled running sequence, possibly itself.
  const std::vector<Sequence*> snapshot = running_;
  for (Sequence* seq : snapshot) {
    if (seq->status != SeqStatus::kRunning || seq->num_tokens() - seq->num_computed != 1) continue;
    if (budget == 0 || scheduled.size() >= max_seqs) break;
    bool self_preempted = false;
    while (!blocks_.can_take(blocks_.blocks_needed_to_grow(*seq, 1))) {
      Sequence* victim = pick_victim(scheduled, nullptr);
      BATON_CHECK(victim != nullptr);  // seq itself is a candidate
      preempt(victim, plan);
      if (victim == seq) {
        self_preempted = true;
        break;
      }
    }
    if (self_preempted) continue;
    schedule(*seq, 1, plan);
    scheduled.insert(seq);
    budget -= 1;
  }

  // Chunks of running prefills. These only preempt sequences less important
  // than themselves; otherwise they wait for decodes to free blocks.
  for (Sequence* seq : snapshot) {
    if (seq->status != SeqStatus::kRunning || scheduled.contains(seq)) continue;
    const int32_t remaining = seq->num_tokens() - seq->num_computed;
    if (remaining <= 1) continue;
    if (budget == 0 || scheduled.size() >= max_seqs) break;
    const int32_t num_new = std::min(remaining, budget);
    if (!config_.enable_chunked_prefill && num_new < remaining) continue;
    while (!blocks_.can_take(blocks_.blocks_needed_to_grow(*seq, num_new))) {
      Sequence* victim = pick_victim(scheduled, seq);
      if (victim == nullptr) break;
      preempt(victim, plan);
    }
    if (!blocks_.can_take(blocks_.blocks_needed_to_grow(*seq, num_new))) continue;
    schedule(*seq, num_new, plan);
    scheduled.insert(seq);
    budget -= num_new;
  }

  // Admission, strictly in queue order (no overtaking): a step that had to
  // preempt is short of blocks already and admits nothing.
  if (plan.preempted.empty()) {
    int32_t slots_used = seq_slots_used();
    while (!waiting_.empty() && budget > 0) {
      Sequence* seq = waiting_.front();
      const int32_t slots = seq_slots_needed(*seq);
      if (slots_used + slots > config_.max_num_seqs) break;
      const PrefixMatch match = blocks_.match_prefix(*seq);
      const int32_t remaining = seq->num_tokens() - match.num_tokens;
      int32_t num_new = remaining;
      if (num_new > budget) {
        if (!config_.enable_chunked_prefill) break;
        num_new = budget;
      }
      if (!blocks_.can_take(blocks_.blocks_needed_to_admit(match, num_new))) break;
      waiting_.pop_front();
      blocks_.admit(*seq, match);
      if (!seq->ever_admitted) {
        seq->ever_admitted = true;
        seq->num_cached_prompt_tokens = match.num_tokens;
      }
      seq->status = SeqStatus::kRunning;
      seq->admission_order = next_admission_order_++;
      running_.push_back(seq);
      slots_used += slots;
      schedule(*seq, num_new, plan);
      scheduled.insert(seq);
      budget -= num_new;
    }
  }

  in_flight_step_ = plan.step_id;
  return plan;
}

// ---- commit ---------------------------------------------------------------------

std::optional<FinishReason> Scheduler::stop_reason(const Sequence& seq, int32_t token) const {
  const SamplingParams& p = *seq.params;
  const auto num_out = static_cast<int32_t>(seq.output.size());
  if (num_out >= p.min_tokens) {
    if (!p.ignore_eos && contains(config_.eos_token_ids, token)) return FinishReason::kStop;
    if (contains(p.stop_token_ids, token)) return FinishReason::kStop;
  }
  if (num_out >= p.max_tokens || seq.num_tokens() >= config_.max_model_len) {
    return FinishReason::kLength;
  }
  const RequestState* state = find(seq.request_id);
  if (state != nullptr && state->request.prefill_only) return FinishReason::kPrefillDone;
  return std::nullopt;
}

FinishedSeq Scheduler::finish_seq(Sequence& seq, FinishReason reason) {
  std::erase(running_, &seq);
  std::erase(waiting_, &seq);
  RequestState* state = find(seq.request_id);
  BATON_CHECK(state != nullptr);
  if (seq.status == SeqStatus::kPendingFork) --state->num_pending_fork;
  if (state->request.prefill_only && reason != FinishReason::kAbort) {
    // Every sequence of a prefill-only request keeps its blocks (the prompt's
    // KV, shared after a fork) until release_export().
    state->holds_export = true;
  } else {
    blocks_.free(seq);
  }
  seq.status = SeqStatus::kFinished;
  seq.finish_reason = reason;
  --state->num_unfinished;
  FinishedSeq out{seq.request_id, seq.index, reason, false};
  if (state->num_unfinished == 0 && !state->holds_export) {
    forget(seq.request_id);
    out.request_done = true;
  }
  return out;
}

std::vector<FinishedSeq> Scheduler::commit(const StepPlan& plan,
                                           std::span<const SampledToken> sampled) {
  BATON_CHECK_MSG(in_flight_step_ == plan.step_id, "commit() of a plan that is not in flight");
  in_flight_step_.reset();
  std::map<std::pair<RequestId, int32_t>, int32_t> tokens;
  for (const SampledToken& t : sampled) {
    BATON_CHECK_MSG(tokens.emplace(std::make_pair(t.request_id, t.seq_index), t.token).second,
                    "two sampled tokens for one sequence");
  }
  size_t used = 0;
  std::vector<FinishedSeq> finished;
  for (const ScheduledSeq& e : plan.seqs) {
    RequestState* state = find(e.request_id);
    BATON_CHECK(state != nullptr);
    Sequence& seq = state->seqs[static_cast<size_t>(e.seq_index)];
    BATON_CHECK(seq.status == SeqStatus::kRunning);
    seq.num_computed = e.context_len;
    blocks_.register_computed(seq);
    if (!e.sample) continue;
    // Fork before anyone appends: the parent may finish on its token and
    // must not free the prompt blocks its siblings are about to share.
    for (int32_t idx : e.sample_seq_indices) {
      if (idx == e.seq_index) continue;
      Sequence& child = state->seqs[static_cast<size_t>(idx)];
      BATON_CHECK(child.status == SeqStatus::kPendingFork);
      blocks_.fork(seq, child);
      child.status = SeqStatus::kRunning;
      child.ever_admitted = true;
      child.num_cached_prompt_tokens = seq.num_cached_prompt_tokens;
      child.admission_order = next_admission_order_++;
      running_.push_back(&child);
      --state->num_pending_fork;
    }
    const RequestId rid = e.request_id;
    for (int32_t idx : e.sample_seq_indices) {
      auto it = tokens.find({rid, idx});
      BATON_CHECK_MSG(it != tokens.end(), "no sampled token for a sequence the plan sampled");
      ++used;
      RequestState* st = find(rid);
      BATON_CHECK(st != nullptr);
      Sequence& s = st->seqs[static_cast<size_t>(idx)];
      s.output.push_back(it->second);
      if (auto reason = stop_reason(s, it->second)) finished.push_back(finish_seq(s, *reason));
    }
  }
  BATON_CHECK_MSG(used == sampled.size(), "sampled tokens for sequences the plan did not sample");
  return finished;
}

Result<std::vector<FinishedSeq>> Scheduler::finish(RequestId id, int32_t seq_index,
                                                   FinishReason reason) {
  RequestState* state = find(id);
  if (state == nullptr || seq_index < 0 || seq_index >= static_cast<int32_t>(state->seqs.size())) {
    return not_found("no sequence " + str(seq_index) + " of request " +
                     str(static_cast<int64_t>(id)));
  }
  Sequence& seq = state->seqs[static_cast<size_t>(seq_index)];
  if (seq.is_finished()) {
    return Status(StatusCode::kConflict, "sequence already finished");
  }
  const bool orphans_siblings =
      seq_index == 0 && seq.status != SeqStatus::kPendingFork && state->num_pending_fork > 0;
  std::vector<Sequence*> to_finish{&seq};
  if (orphans_siblings) {
    for (Sequence& s : state->seqs) {
      if (s.status == SeqStatus::kPendingFork) to_finish.push_back(&s);
    }
  }
  std::vector<FinishedSeq> out;
  for (Sequence* s : to_finish) out.push_back(finish_seq(*s, reason));
  return out;
}

// ---- disaggregation ---------------------------------------------------------------

Result<ImportReservation> Scheduler::reserve_import(Request request) {
  BATON_RETURN_IF_ERROR(validate_request(request));
  if (request.prefill_only) return invalid_argument("a KV import cannot be prefill-only");
  int32_t slots = seq_slots_used();
  for (const auto& [id, st] : requests_) {
    if (st->seqs[0].status == SeqStatus::kAwaitingKv) slots += st->request.params.n;
  }
  if (slots + request.params.n > config_.max_num_seqs) {
    return resource_exhausted("KV import needs " + str(request.params.n) + " sequence slots; " +
                              str(config_.max_num_seqs - slots) + " free");
  }
  Sequence probe;
  probe.prompt = request.prompt;
  const PrefixMatch match = blocks_.match_prefix(probe);
  const auto prompt_len = static_cast<int32_t>(request.prompt.size());
  const int32_t need = blocks_.blocks_needed_to_admit(match, prompt_len - match.num_tokens);
  if (!blocks_.can_take(need)) {
    return resource_exhausted("KV import of " + str(prompt_len) + " tokens needs " + str(need) +
                              " blocks; " + str(blocks_.pool().num_free()) + " free");
  }
  if (request.arrival_us == 0) request.arrival_us = clock_us_();
  {
    std::lock_guard lock(inbox_mu_);
    if (!live_ids_.insert(request.id).second) {
      return Status(StatusCode::kConflict,
                    "request id " + str(static_cast<int64_t>(request.id)) + " is already in use");
    }
  }
  RequestState& state = create_request(std::move(request));
  Sequence& seq = state.seqs[0];
  seq.status = SeqStatus::kAwaitingKv;
  seq.block_hashes = std::move(probe.block_hashes);
  blocks_.admit(seq, match);
  seq.num_cached_prompt_tokens = match.num_tokens;
  std::vector<BlockCopy> no_copies;
  blocks_.grow(seq, prompt_len - match.num_tokens, no_copies);
  BATON_CHECK(no_copies.empty());
  return ImportReservation{seq.block_table, match.num_tokens};
}

Result<std::vector<FinishedSeq>> Scheduler::complete_import(RequestId id,
                                                            std::span<const int32_t> first_tokens) {
  RequestState* state = find(id);
  if (state == nullptr) {
    return not_found("no KV import for request " + str(static_cast<int64_t>(id)));
  }
  Sequence& seq = state->seqs[0];
  if (seq.status != SeqStatus::kAwaitingKv) {
    return Status(StatusCode::kConflict, "request is not awaiting a KV import");
  }
  if (first_tokens.size() != state->seqs.size()) {
    return invalid_argument(
        "first_tokens: expected " + str(static_cast<int64_t>(state->seqs.size())) +
        " tokens, one per sequence, got " + str(static_cast<int64_t>(first_tokens.size())));
  }
  for (int32_t t : first_tokens) {
    if (t < 0) return invalid_argument("first_tokens: token ids must be >= 0");
  }
  seq.num_computed = static_cast<int32_t>(seq.prompt.size());
  blocks_.register_computed(seq);
  seq.status = SeqStatus::kRunning;
  seq.ever_admitted = true;
  seq.admission_order = next_admission_order_++;
  running_.push_back(&seq);
  // Fork every sibling before any sequence can finish and free its blocks.
  for (Sequence& child : state->seqs) {
    if (child.index == 0) continue;
    BATON_CHECK(child.status == SeqStatus::kPendingFork);
    blocks_.fork(seq, child);
    child.status = SeqStatus::kRunning;
    child.ever_admitted = true;
    child.num_computed = seq.num_computed;
    child.num_cached_prompt_tokens = seq.num_cached_prompt_tokens;
    child.admission_order = next_admission_order_++;
    running_.push_back(&child);
    --state->num_pending_fork;
  }
  std::vector<FinishedSeq> finished;
  for (Sequence& s : state->seqs) {
    const int32_t token = first_tokens[static_cast<size_t>(s.index)];
    // The prefill side drew one number for this token; skipping it here keeps
    // a seeded request's output identical to an aggregated run.
    if (!s.params->greedy()) s.rng.next_unit();
    s.output.push_back(token);
    if (auto reason = stop_reason(s, token)) finished.push_back(finish_seq(s, *reason));
  }
  return finished;
}

Result<KvExport> Scheduler::export_kv(RequestId id) const {
  const RequestState* state = find(id);
  if (state == nullptr) return not_found("no request " + str(static_cast<int64_t>(id)));
  if (!state->holds_export || state->num_unfinished > 0) {
    return Status(StatusCode::kConflict, "request has not finished a prefill-only run");
  }
  const Sequence& seq = state->seqs[0];
  KvExport out{seq.block_table, static_cast<int32_t>(seq.prompt.size()), seq.prompt, {}, {}};
  for (const Sequence& s : state->seqs) {
    out.first_tokens.push_back(s.output.empty() ? -1 : s.output[0]);
    out.finish_reasons.push_back(s.finish_reason);
  }
  return out;
}

Status Scheduler::release_export(RequestId id) {
  RequestState* state = find(id);
  if (state == nullptr) return not_found("no request " + str(static_cast<int64_t>(id)));
  if (!state->holds_export || state->num_unfinished > 0) {
    return Status(StatusCode::kConflict, "request holds no exported KV");
  }
  for (Sequence& s : state->seqs) blocks_.free(s);
  forget(id);
  return Status::ok();
}

// ---- stats ----------------------------------------------------------------------

SchedulerStats Scheduler::stats() const {
  SchedulerStats s;
  s.num_running = static_cast<int32_t>(running_.size());
  s.num_waiting = static_cast<int32_t>(waiting_.size());
  for (const auto& [id, state] : requests_) {
    if (state->seqs[0].status == SeqStatus::kAwaitingKv) ++s.num_awaiting_kv;
  }
  s.num_free_blocks = blocks_.pool().num_free();
  s.kv_usage = blocks_.pool().usage();
  s.prefix = blocks_.prefix_stats();
  s.num_preemptions = num_preemptions_;
  return s;
}

bool Scheduler::has_work() const {
  {
    std::lock_guard lock(inbox_mu_);
    if (!inbox_adds_.empty() || !inbox_aborts_.empty()) return true;
  }
  return !waiting_.empty() || !running_.empty();
}

}  // namespace baton::engine
