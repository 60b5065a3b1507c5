#include "sim/cluster.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <memory>
#include <random>
#include <unordered_map>

#include "gateway/forwarding.h"
#include "gateway/policy.h"
#include "sim/event_queue.h"

namespace baton::sim {

Status validate(const ClusterOptions& o) {
  if (o.groups.empty()) return invalid_argument("at least one group");
  for (const auto& g : o.groups) {
    if (g.prefill < 0 || g.decode < 0 || g.mixed < 0) {
      return invalid_argument("group '" + g.name + "': negative instance count");
    }
    if ((g.prefill > 0) != (g.decode > 0)) {
      return invalid_argument("group '" + g.name + "': needs both prefill and decode, or neither");
    }
    if (g.prefill + g.mixed == 0) return invalid_argument("group '" + g.name + "': no instance");
    if (g.prefill > 0 && g.mixed > 0) {
      return invalid_argument("group '" + g.name + "': P/D or mixed, not both");
    }
  }
  if (!(o.report_interval_s > 0) || !(o.control_interval_s > 0)) {
    return invalid_argument("report and control intervals must be positive");
  }
  if (o.retry_attempts < 1 || o.pd.max_prefill_tries < 1) {
    return invalid_argument("at least one attempt per request");
  }
  if (o.max_waiting < 1 || o.max_in_flight < 1) return invalid_argument("admission bounds >= 1");
  if (!(o.ttft_slo_s > 0) || !(o.tpot_slo_s > 0)) return invalid_argument("SLOs must be positive");
  if (o.dynamic_ratio) return controller::validate(o.ratio);
  return Status();
}

namespace {

using controller::Role;

// Histogram bounds of the instance's TTFT and TPOT metrics, seconds.
const std::vector<double> kLatencyBounds = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5,
                                            0.75,  1,    2.5,   5,    10,    20,  40,   80};

constexpr size_t kPrefixCacheGroups = 32;

void observe(controller::LatencyWindow& w, double x) {
  if (w.counts.empty()) {
    w.bounds = kLatencyBounds;
    w.counts.assign(kLatencyBounds.size() + 1, 0);
  }
  size_t i = std::lower_bound(w.bounds.begin(), w.bounds.end(), x) - w.bounds.begin();
  w.counts[i] += 1;
}

// server/admission.h's rule (AdmissionController::try_admit and friends),
// reimplemented because sim/ may not depend on server/: a request is
// refused when max_in_flight are open, when max_waiting wait, or when,
// with a TTFT budget, (prompt tokens queued ahead + its own) / measured
// prefill rate exceeds the budget while something is already waiting.
struct Admission {
  int32_t waiting = 0;
  int32_t in_flight = 0;
  int64_t queued_tokens = 0;

  bool try_admit(const ClusterOptions& o, double budget_s, double rate, int64_t prompt) {
    if (in_flight >= o.max_in_flight || waiting >= o.max_waiting) return false;
    if (budget_s > 0 && rate > 0 && waiting > 0 &&
        static_cast<double>(queued_tokens + prompt) / rate > budget_s) {
      return false;
    }
    ++waiting;
    ++in_flight;
    queued_tokens += prompt;
    return true;
  }
  void started(int64_t prompt) {
    waiting = std::max(0, waiting - 1);
    queued_tokens = std::max<int64_t>(0, queued_tokens - prompt);
  }
  void finished() { in_flight = std::max(0, in_flight - 1); }
};

struct Live {
  SimRequest r;
  int32_t group = 0;
  int32_t decode = -1;   // P/D: the decode instance holding the reservation
  int32_t prefill = -1;  // the prefill or mixed instance that admitted it
  SimTime forward_deadline = 0, lease_end = 0;
  int32_t forwards = 0;
  uint32_t next = 0;
  std::vector<uint32_t> candidates;
  SimTime first_token = -1;  // when the client got it
  double transfer_s = 0;
  int32_t generated = 0;
  int32_t cached = 0;
};

struct Inst {
  uint32_t id = 0;
  int32_t group = 0;
  Role role = Role::kMixed;
  bool draining = false;
  Role next_role = Role::kMixed;
  int32_t pool_pos = 0;
  Admission adm;
  std::deque<int32_t> queue;  // admitted, prefill not started
  std::vector<int32_t> step;  // prefilled in the current step
  // Decoding, as a min-heap of (the step count at which the request has
  // all its tokens, slot): a step costs O(finished log batch) instead of
  // touching every sequence, which keeps 10^7-request runs short.
  std::vector<std::pair<int64_t, int32_t>> running;
  int64_t steps = 0;            // decode steps completed
  std::deque<int32_t> joining;  // ready to decode from the next step on
  int64_t kv_used = 0;          // tokens reserved (decode, mixed)
  int64_t context = 0;          // tokens of context of `running`
  bool busy = false;
  size_t step_decodes = 0;
  SimTime link_free = 0;
  int32_t in_transfer = 0;
  std::vector<int32_t> prefixes;  // LRU of cached prefix groups, newest last
  int32_t load = 0;               // the gateway's count of requests open on it
  controller::LatencyWindow ttft_w, tpot_w;
  double rejected_w = 0, finished_w = 0;
};

struct Pool {
  std::vector<uint32_t> ids;  // ascending
  gateway::ClusterSnapshot snap;
  uint64_t sequence = 0;
};

struct Group {
  Pool pools[3];  // by Role
  controller::GroupState state;
  bool pd = false;
};

size_t role_index(Role r) { return static_cast<size_t>(r); }

class Simulator {
 public:
  Simulator(const ClusterOptions& o, RequestSource& source, const OutcomeFn& on_outcome)
      : o_(o), source_(source), on_outcome_(on_outcome), rng_(o.seed ^ 0x9e3779b97f4a7c15ull) {
    rate_ = measured_prefill_rate(o.profile);
    for (size_t g = 0; g < o.groups.size(); ++g) {
      const GroupSpec& spec = o.groups[g];
      groups_.emplace_back();
      groups_.back().pd = spec.prefill > 0;
      auto add = [&](Role role, int32_t n) {
        for (int32_t i = 0; i < n; ++i) {
          Inst inst;
          inst.id = static_cast<uint32_t>(insts_.size());
          inst.group = static_cast<int32_t>(g);
          inst.role = role;
          insts_.push_back(std::move(inst));
          groups_.back().pools[role_index(role)].ids.push_back(insts_.back().id);
        }
      };
      add(Role::kPrefill, spec.prefill);
      add(Role::kDecode, spec.decode);
      add(Role::kMixed, spec.mixed);
      for (auto& pool : groups_.back().pools) rebuild(pool);
      if (spec.scenarios.empty()) default_groups_.push_back(static_cast<int32_t>(g));
    }
    for (const auto& name : source_.scenarios()) {
      int32_t found = -1;
      for (size_t g = 0; g < o.groups.size() && found < 0; ++g) {
        for (const auto& s : o.groups[g].scenarios) {
          if (s == name) found = static_cast<int32_t>(g);
        }
      }
      scenario_group_.push_back(found);
    }
    if (default_groups_.empty()) default_groups_.push_back(0);
  }

  Summary run() {
    pull_arrival();
    if (o_.routing == Routing::kStaleReports) q_.push(0, EventKind::kReport);
    if (o_.dynamic_ratio) q_.push(o_.control_interval_s, EventKind::kControl);
    while (!q_.empty()) {
      Event e = q_.pop();
      switch (e.kind) {
        case EventKind::kArrival:
          on_arrival(e.slot);
          break;
        case EventKind::kPrefillAttempt:
          on_attempt(insts_[e.target], e.slot);
          break;
        case EventKind::kPrefillReject:
          try_next(e.slot, q_.now());
          break;
        case EventKind::kStepDone:
          on_step_done(insts_[e.target]);
          break;
        case EventKind::kTransferDone:
          on_transfer_done(insts_[e.target], e.slot);
          break;
        case EventKind::kReport:
          refresh_reports();
          if (work_left()) q_.push(q_.now() + o_.report_interval_s, EventKind::kReport);
          break;
        case EventKind::kControl:
          control_round();
          if (work_left()) q_.push(q_.now() + o_.control_interval_s, EventKind::kControl);
          break;
      }
    }
    return summarize();
  }

 private:
  bool work_left() const { return live_count_ > 0 || !source_done_; }

  // ---- pools and snapshots ----

  void rebuild(Pool& pool) {
    std::sort(pool.ids.begin(), pool.ids.end());
    pool.snap.instances.clear();
    for (size_t i = 0; i < pool.ids.size(); ++i) {
      Inst& inst = insts_[pool.ids[i]];
      inst.pool_pos = static_cast<int32_t>(i);
      pool.snap.instances.push_back({inst.id, inst.load, !inst.draining});
    }
    pool.snap.ring = std::make_shared<gateway::HashRing>(pool.ids);
  }
  Pool& pool_of(const Inst& inst) { return groups_[inst.group].pools[role_index(inst.role)]; }

  void add_load(Inst& inst, int32_t delta) {
    inst.load += delta;
    // On-demand routing sees the gateway's own live count; the stale
    // scheduler only what the last report said.
    if (o_.routing == Routing::kOnDemand) {
      pool_of(inst).snap.instances[inst.pool_pos].in_flight = inst.load;
    }
  }

  void refresh_reports() {
    for (auto& g : groups_) {
      for (auto& pool : g.pools) {
        for (auto& il : pool.snap.instances) il.in_flight = insts_[il.id].load;
      }
    }
  }

  std::vector<uint32_t> rank(Pool& pool, gateway::PolicyKind policy, const SimRequest& r,
                             size_t max) {
    gateway::RouteRequest rr;
    rr.sequence = pool.sequence++;
    rr.random = rng_();
    rr.affinity = gateway::hash_bytes(std::to_string(r.prefix_group >= 0 ? r.prefix_group : r.id));
    std::vector<gateway::PrefixMatch> matches;
    if (policy == gateway::PolicyKind::kPrefixAware && r.prefix_group >= 0) {
      for (uint32_t id : pool.ids) {
        const auto& p = insts_[id].prefixes;
        if (std::find(p.begin(), p.end(), r.prefix_group) != p.end()) {
          // PrefixTree counts characters; about four per token.
          matches.push_back({id, r.prefix_len * 4});
        }
      }
      rr.prefix = matches;
    }
    return gateway::rank_instances(policy, pool.snap, rr, max);
  }

  // ---- requests ----

  void pull_arrival() {
    auto r = source_.next();
    if (!r) {
      source_done_ = true;
      return;
    }
    int32_t slot;
    if (!free_.empty()) {
      slot = free_.back();
      free_.pop_back();
    } else {
      slot = static_cast<int32_t>(live_.size());
      live_.emplace_back();
    }
    Live& l = live_[slot];
    l = Live{};
    l.r = *r;
    ++live_count_;
    ++requests_;
    if (requests_ == 1) first_arrival_ = r->arrival_s;
    q_.push(std::max(r->arrival_s, q_.now()), EventKind::kArrival, 0, slot);
  }

  void on_arrival(int32_t slot) {
    pull_arrival();
    Live& l = live_[slot];
    int32_t g = l.r.scenario >= 0 && static_cast<size_t>(l.r.scenario) < scenario_group_.size()
                    ? scenario_group_[static_cast<size_t>(l.r.scenario)]
                    : -1;
    if (g < 0) g = default_groups_[static_cast<size_t>(l.r.id) % default_groups_.size()];
    l.group = g;
    Group& group = groups_[g];
    const int64_t need = static_cast<int64_t>(l.r.input_len) + l.r.output_len;
    if (need > o_.profile.kv.capacity_tokens) return finish(slot, Outcome::kRejected);
    if (!group.pd) {
      l.candidates = rank(group.pools[role_index(Role::kMixed)], o_.mixed_policy, l.r,
                          static_cast<size_t>(o_.retry_attempts));
      return try_next(slot, q_.now());
    }
    // The decode instance reserves KV room before any bytes move (DESIGN.md
    // §3 step 4); a full one refuses at once and the next is asked.
    auto decodes = rank(group.pools[role_index(Role::kDecode)], o_.decode_policy, l.r,
                        static_cast<size_t>(o_.retry_attempts));
    for (uint32_t id : decodes) {
      Inst& d = insts_[id];
      if (d.kv_used + need > o_.profile.kv.capacity_tokens) continue;
      d.kv_used += need;
      add_load(d, 1);
      l.decode = static_cast<int32_t>(id);
      break;
    }
    if (l.decode < 0) return finish(slot, Outcome::kRejected);
    const SimTime ticket = q_.now() + o_.profile.network_rtt_s;
    l.forward_deadline = ticket + std::chrono::duration<double>(o_.pd.forward_deadline).count();
    l.lease_end = ticket + static_cast<double>(o_.pd.lease_ms) / 1000.0;
    l.candidates = rank(group.pools[role_index(Role::kPrefill)], o_.prefill_policy, l.r,
                        static_cast<size_t>(o_.pd.max_prefill_tries));
    try_next(slot, ticket);
  }

  // The gateway sends the request to its next candidate, or gives up.
  void try_next(int32_t slot, SimTime t) {
    Live& l = live_[slot];
    while (l.next < l.candidates.size()) {
      if (l.decode >= 0) {
        if (!gateway::may_forward_prefill(o_.pd, l.forwards, SimClock::at(t),
                                          SimClock::at(l.forward_deadline),
                                          SimClock::at(l.lease_end))) {
          break;
        }
      } else if (l.forwards >= o_.retry_attempts) {
        break;
      }
      const uint32_t id = l.candidates[l.next++];
      if (insts_[id].draining) continue;
      if (l.forwards > 0) ++forwards_;
      ++l.forwards;
      q_.push(t + o_.profile.network_rtt_s / 2, EventKind::kPrefillAttempt, id, slot);
      return;
    }
    release_decode(l);
    finish(slot, Outcome::kRejected);
  }

  void on_attempt(Inst& inst, int32_t slot) {
    Live& l = live_[slot];
    const double budget = o_.routing == Routing::kOnDemand ? o_.ttft_budget_s : 0;
    if (inst.draining || !inst.adm.try_admit(o_, budget, rate_, l.r.input_len)) {
      inst.rejected_w += 1;
      q_.push(q_.now() + o_.profile.network_rtt_s / 2, EventKind::kPrefillReject, inst.id, slot);
      return;
    }
    l.prefill = static_cast<int32_t>(inst.id);
    add_load(inst, 1);
    inst.queue.push_back(slot);
    maybe_start(inst);
  }

  bool timed_out(const Live& l, SimTime client_time) const {
    return o_.client_timeout_s > 0 && client_time - l.r.arrival_s > o_.client_timeout_s;
  }

  void maybe_start(Inst& inst) {
    if (inst.busy) return;
    const Profile& p = o_.profile;
    const SimTime now = q_.now();
    int64_t new_tokens = 0, cached_tokens = 0;
    inst.step.clear();
    while (!inst.queue.empty()) {
      const int32_t slot = inst.queue.front();
      Live& l = live_[slot];
      if (timed_out(l, now + p.network_rtt_s / 2)) {
        inst.queue.pop_front();
        inst.adm.started(l.r.input_len);
        inst.adm.finished();
        add_load(inst, -1);
        release_decode(l);
        finish(slot, Outcome::kTimedOut);
        continue;
      }
      const int64_t need = static_cast<int64_t>(l.r.input_len) + l.r.output_len;
      if (!inst.step.empty() && new_tokens + l.r.input_len > p.prefill.step_tokens) break;
      if (inst.role == Role::kMixed) {
        if (inst.kv_used + need > p.kv.capacity_tokens) break;
        inst.kv_used += need;
      }
      inst.queue.pop_front();
      inst.adm.started(l.r.input_len);
      auto& pre = inst.prefixes;
      auto hit =
          l.r.prefix_group >= 0 ? std::find(pre.begin(), pre.end(), l.r.prefix_group) : pre.end();
      l.cached = hit != pre.end() ? l.r.prefix_len : 0;
      if (hit != pre.end()) pre.erase(hit);
      if (l.r.prefix_group >= 0) {
        pre.push_back(l.r.prefix_group);
        if (pre.size() > kPrefixCacheGroups) pre.erase(pre.begin());
      }
      new_tokens += l.r.input_len - l.cached;
      cached_tokens += l.cached;
      inst.step.push_back(slot);
    }
    while (!inst.joining.empty() && inst.running.size() < static_cast<size_t>(p.decode.max_batch)) {
      const int32_t slot = inst.joining.front();
      inst.joining.pop_front();
      const Live& l = live_[slot];
      inst.running.emplace_back(inst.steps + (l.r.output_len - l.generated), slot);
      std::push_heap(inst.running.begin(), inst.running.end(), std::greater<>());
      inst.context += l.r.input_len + l.generated;
    }
    inst.step_decodes = inst.running.size();
    if (inst.step.empty() && inst.step_decodes == 0) return maybe_switch(inst);
    double dt = 0;
    if (!inst.step.empty()) {
      dt += prefill_time(p, new_tokens, cached_tokens, static_cast<int>(inst.step.size()));
    }
    if (inst.step_decodes > 0) {
      dt += decode_step_time(p, static_cast<int>(inst.step_decodes), inst.context);
    }
    inst.busy = true;
    q_.push(now + dt, EventKind::kStepDone, inst.id);
  }

  void on_step_done(Inst& inst) {
    inst.busy = false;
    const SimTime now = q_.now();
    const double half_rtt = o_.profile.network_rtt_s / 2;
    // Decodes first: a request prefilled in this step decodes from the next.
    if (inst.step_decodes > 0) {
      ++inst.steps;
      inst.context += static_cast<int64_t>(inst.step_decodes);
      while (!inst.running.empty() && inst.running.front().first <= inst.steps) {
        std::pop_heap(inst.running.begin(), inst.running.end(), std::greater<>());
        const int32_t slot = inst.running.back().second;
        inst.running.pop_back();
        Live& l = live_[slot];
        l.generated = l.r.output_len;
        inst.context -= static_cast<int64_t>(l.r.input_len) + l.generated;
        complete(inst, slot, now + half_rtt);
      }
    }
    for (int32_t slot : inst.step) {
      Live& l = live_[slot];
      l.first_token = now + half_rtt;
      observe(inst.ttft_w, l.first_token - l.r.arrival_s);
      if (timed_out(l, l.first_token)) {
        inst.adm.finished();
        add_load(inst, -1);
        if (inst.role == Role::kMixed) {
          inst.kv_used -= static_cast<int64_t>(l.r.input_len) + l.r.output_len;
        }
        release_decode(l);
        finish(slot, Outcome::kTimedOut);
        continue;
      }
      l.generated = 1;
      if (inst.role == Role::kMixed) {
        inst.adm.finished();  // admission counts prefill work; KV bounds the rest
        if (l.generated >= l.r.output_len) {
          complete(inst, slot, l.first_token);
        } else {
          inst.joining.push_back(slot);
        }
        continue;
      }
      const SimTime start = std::max(now, inst.link_free);
      l.transfer_s = kv_transfer_time(o_.profile, l.r.input_len, o_.contiguous_kv);
      inst.link_free = start + l.transfer_s;
      ++inst.in_transfer;
      q_.push(inst.link_free, EventKind::kTransferDone, inst.id, slot);
    }
    inst.step.clear();
    maybe_start(inst);
  }

  void on_transfer_done(Inst& prefill, int32_t slot) {
    Live& l = live_[slot];
    --prefill.in_transfer;
    prefill.adm.finished();
    prefill.finished_w += 1;
    add_load(prefill, -1);
    transfers_.push_back(static_cast<float>(l.transfer_s));
    ttst_sum_ += l.first_token - l.r.arrival_s + l.transfer_s;
    Inst& d = insts_[l.decode];
    if (l.generated >= l.r.output_len) {
      complete(d, slot, l.first_token);
    } else {
      d.joining.push_back(slot);
      maybe_start(d);
    }
    if (!prefill.busy) maybe_start(prefill);
  }

  // `inst` is where it decoded (decode or mixed); `t` when the client got
  // the last token.
  void complete(Inst& inst, int32_t slot, SimTime t) {
    Live& l = live_[slot];
    const double ttft = l.first_token - l.r.arrival_s;
    const double tpot =
        l.r.output_len > 1 ? (t - l.first_token) / static_cast<double>(l.r.output_len - 1) : 0;
    ttfts_.push_back(static_cast<float>(ttft));
    tpots_.push_back(static_cast<float>(tpot));
    if (l.r.output_len > 1) observe(inst.tpot_w, tpot);
    inst.finished_w += inst.role == Role::kDecode ? 1 : 0;
    if (ttft <= o_.ttft_slo_s) ++ttft_ok_;
    if (ttft <= o_.ttft_slo_s && tpot <= o_.tpot_slo_s) ++slo_ok_;
    output_tokens_ += l.r.output_len;
    last_completion_ = std::max(last_completion_, t);
    inst.kv_used -= static_cast<int64_t>(l.r.input_len) + l.r.output_len;
    add_load(inst, -1);
    l.decode = -1;  // released above
    finish(slot, Outcome::kCompleted);
  }

  void release_decode(Live& l) {
    if (l.decode < 0) return;
    Inst& d = insts_[l.decode];
    d.kv_used -= static_cast<int64_t>(l.r.input_len) + l.r.output_len;
    add_load(d, -1);
    l.decode = -1;
    maybe_switch(d);
  }

  void finish(int32_t slot, Outcome outcome) {
    Live& l = live_[slot];
    switch (outcome) {
      case Outcome::kCompleted:
        ++completed_;
        break;
      case Outcome::kRejected:
        ++rejected_;
        break;
      case Outcome::kTimedOut:
        ++timed_out_;
        break;
    }
    if (on_outcome_) on_outcome_(l.r.id, outcome);
    l.candidates.clear();
    l.candidates.shrink_to_fit();
    free_.push_back(slot);
    --live_count_;
  }

  // ---- the controller ----

  void control_round() {
    const auto now = SimClock::at(q_.now());
    for (size_t g = 0; g < groups_.size(); ++g) {
      Group& group = groups_[g];
      if (!group.pd) continue;
      controller::GroupSnapshot snap;
      snap.group = o_.groups[g].name;
      for (Role role : {Role::kPrefill, Role::kDecode}) {
        for (uint32_t id : group.pools[role_index(role)].ids) {
          Inst& inst = insts_[id];
          controller::InstanceView v;
          v.id = std::to_string(id);
          v.role = role;
          v.healthy = true;
          v.changing_role = inst.draining;
          controller::LoadReport rep;
          rep.at = now;
          rep.running = static_cast<double>(inst.step.size() + inst.running.size());
          rep.waiting = static_cast<double>(inst.queue.size() + inst.joining.size());
          rep.kv_usage = static_cast<double>(inst.kv_used) /
                         static_cast<double>(o_.profile.kv.capacity_tokens);
          rep.ttft = inst.ttft_w;
          rep.tpot = inst.tpot_w;
          rep.rejected = inst.rejected_w;
          rep.finished = inst.finished_w;
          v.load = rep;
          inst.ttft_w = {};
          inst.tpot_w = {};
          inst.rejected_w = inst.finished_w = 0;
          snap.instances.push_back(std::move(v));
        }
      }
      auto eval = controller::evaluate_group(o_.ratio, snap, group.state, now);
      group.state = eval.next;
      if (eval.decision.action == controller::Action::kHold) continue;
      Inst& inst = insts_[std::stoul(eval.decision.instance)];
      inst.draining = true;
      inst.next_role = eval.decision.to;
      pool_of(inst).snap.instances[inst.pool_pos].available = false;
      maybe_switch(inst);
    }
  }

  // A draining instance takes its new role once nothing is left on it.
  void maybe_switch(Inst& inst) {
    if (!inst.draining || inst.busy || !inst.queue.empty() || !inst.running.empty() ||
        !inst.joining.empty() || inst.in_transfer > 0 || inst.kv_used > 0 ||
        inst.adm.in_flight > 0) {
      return;
    }
    Group& group = groups_[inst.group];
    Pool& from = pool_of(inst);
    from.ids.erase(std::find(from.ids.begin(), from.ids.end(), inst.id));
    inst.role = inst.next_role;
    inst.draining = false;
    inst.prefixes.clear();
    Pool& to = group.pools[role_index(inst.role)];
    to.ids.push_back(inst.id);
    rebuild(from);
    rebuild(to);
    ++role_changes_;
  }

  // ---- results ----

  static double quantile(std::vector<float>& v, double q) {
    if (v.empty()) return 0;
    size_t k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return v[k];
  }
  static double mean(const std::vector<float>& v) {
    double s = 0;
    for (float x : v) s += x;
    return v.empty() ? 0 : s / static_cast<double>(v.size());
  }

  Summary summarize() {
    Summary s;
    s.requests = requests_;
    s.completed = completed_;
    s.rejected = rejected_;
    s.timed_out = timed_out_;
    s.duration_s = completed_ > 0 ? last_completion_ - first_arrival_ : 0;
    s.ttft_mean_s = mean(ttfts_);
    s.ttft_p50_s = quantile(ttfts_, 0.5);
    s.ttft_p90_s = quantile(ttfts_, 0.9);
    s.ttft_p99_s = quantile(ttfts_, 0.99);
    s.tpot_mean_s = mean(tpots_);
    s.tpot_p90_s = quantile(tpots_, 0.9);
    if (requests_ > 0) {
      s.ttft_attainment = static_cast<double>(ttft_ok_) / static_cast<double>(requests_);
      s.slo_attainment = static_cast<double>(slo_ok_) / static_cast<double>(requests_);
    }
    if (s.duration_s > 0) {
      s.goodput_rps = static_cast<double>(slo_ok_) / s.duration_s;
      s.output_tokens_per_s = static_cast<double>(output_tokens_) / s.duration_s;
    }
    s.transfer_mean_s = mean(transfers_);
    s.transfer_p99_s = quantile(transfers_, 0.99);
    if (!transfers_.empty() && ttst_sum_ > 0) {
      s.transfer_share = s.transfer_mean_s * static_cast<double>(transfers_.size()) / ttst_sum_;
    }
    s.forwards = forwards_;
    s.role_changes = role_changes_;
    s.events = q_.processed();
    return s;
  }

  const ClusterOptions& o_;
  RequestSource& source_;
  const OutcomeFn& on_outcome_;
  std::mt19937_64 rng_;
  double rate_ = 0;
  EventQueue q_;
  std::vector<Inst> insts_;
  std::vector<Group> groups_;
  std::vector<int32_t> default_groups_;
  std::vector<int32_t> scenario_group_;
  std::vector<Live> live_;
  std::vector<int32_t> free_;
  int64_t live_count_ = 0;
  bool source_done_ = false;

  int64_t requests_ = 0, completed_ = 0, rejected_ = 0, timed_out_ = 0;
  int64_t ttft_ok_ = 0, slo_ok_ = 0, output_tokens_ = 0, forwards_ = 0, role_changes_ = 0;
  double first_arrival_ = 0, last_completion_ = 0, ttst_sum_ = 0;
  std::vector<float> ttfts_, tpots_, transfers_;
};

}  // namespace

Summary simulate(const ClusterOptions& options, RequestSource& source,
                 const OutcomeFn& on_outcome) {
  Simulator sim(options, source, on_outcome);
  return sim.run();
}

}  // namespace baton::sim
