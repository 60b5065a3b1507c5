#include "engine/scheduler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <numeric>
#include <thread>
#include <vector>

#include "engine/sampler.h"

namespace baton::engine {
namespace {

constexpr int32_t kVocab = 50;
constexpr int32_t kEos = 0;
constexpr uint64_t kEmptyKv = 0;

uint64_t mix(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9e3779b97f4a7c15ULL + b + 0x632be59bd9b4e019ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return (z ^ (z >> 31)) | 1;  // never kEmptyKv
}

// A fake model over a fake paged KV cache. The "KV" of position p is a hash of
// every token up to p, computed from the KV of position p - 1 read back
// through the block table, the way attention reads context. Logits are a
// function of the last position's KV. Every step it checks that the whole
// context read through the block table equals the hash chain of the
// sequence's true tokens, so any paging, prefix-cache, copy-on-write or
// preemption mistake fails the test at the step it happens.
class FakeRunner {
 public:
  FakeRunner(const SchedulerConfig& config) : bs_(config.block_size) {
    kv_.assign(static_cast<size_t>(config.num_blocks) * static_cast<size_t>(bs_), kEmptyKv);
  }

  std::vector<SampledToken> run(Scheduler& s, const StepPlan& plan) {
    for (const BlockCopy& c : plan.block_copies) {
      std::copy_n(kv_.begin() + c.src * bs_, bs_, kv_.begin() + c.dst * bs_);
    }
    std::vector<SampledToken> out;
    for (const ScheduledSeq& e : plan.seqs) {
      const Sequence* seq = s.sequence(e.request_id, e.seq_index);
      EXPECT_NE(seq, nullptr);
      if (seq == nullptr) continue;
      EXPECT_EQ(e.token_ids.size(), e.slots.size());
      EXPECT_EQ(e.context_len, e.start_pos + static_cast<int32_t>(e.token_ids.size()));
      EXPECT_GE(static_cast<int32_t>(e.block_table.size()) * bs_, e.context_len);
      uint64_t prev = e.start_pos == 0 ? 1 : kv_[slot(e.block_table, e.start_pos - 1)];
      for (size_t i = 0; i < e.token_ids.size(); ++i) {
        const int32_t pos = e.start_pos + static_cast<int32_t>(i);
        EXPECT_EQ(e.slots[i], slot(e.block_table, pos));
        EXPECT_EQ(e.token_ids[i], seq->token_at(pos));
        prev = mix(prev, static_cast<uint64_t>(e.token_ids[i]));
        kv_[static_cast<size_t>(e.slots[i])] = prev;
      }
      uint64_t truth = 1;
      for (int32_t p = 0; p < e.context_len; ++p) {
        truth = mix(truth, static_cast<uint64_t>(seq->token_at(p)));
        EXPECT_EQ(kv_[slot(e.block_table, p)], truth)
            << "request " << e.request_id << " seq " << e.seq_index << " position " << p;
      }
      if (!e.sample) continue;
      std::vector<float> logits(kVocab);
      for (int32_t t = 0; t < kVocab; ++t) {
        logits[static_cast<size_t>(t)] =
            static_cast<float>(mix(prev, static_cast<uint64_t>(t)) >> 40) /
            static_cast<float>(1 << 22);
      }
      for (int32_t idx : e.sample_seq_indices) {
        Sequence* target = s.sequence(e.request_id, idx);
        const int32_t token = sampler_.sample(logits, *target, s.eos_token_ids()).token;
        out.push_back({e.request_id, idx, token});
        outputs_[{e.request_id, idx}].push_back(token);
      }
    }
    return out;
  }

  // Stands in for a KV transfer: writes the true KV of tokens [0, n).
  void import(const std::vector<int32_t>& table, const std::vector<int32_t>& tokens) {
    uint64_t v = 1;
    for (int32_t p = 0; p < static_cast<int32_t>(tokens.size()); ++p) {
      v = mix(v, static_cast<uint64_t>(tokens[static_cast<size_t>(p)]));
      kv_[slot(table, p)] = v;
    }
  }

  const std::map<std::pair<RequestId, int32_t>, std::vector<int32_t>>& outputs() const {
    return outputs_;
  }

 private:
  size_t slot(const std::vector<int32_t>& table, int32_t pos) const {
    return static_cast<size_t>(table[static_cast<size_t>(pos / bs_)] * bs_ + pos % bs_);
  }

  int32_t bs_;
  std::vector<uint64_t> kv_;
  Sampler sampler_;
  std::map<std::pair<RequestId, int32_t>, std::vector<int32_t>> outputs_;
};

// Runs plan -> fake run -> commit cycles, checking each step's invariants and
// recording outputs, finish reasons and plans.
class Harness {
 public:
  explicit Harness(Scheduler& s) : s_(s), runner_(s.config()) {}

  const StepPlan& step() {
    StepPlan plan = s_.plan();
    EXPECT_LE(plan.num_batched_tokens, s_.config().max_num_batched_tokens);
    EXPECT_LE(static_cast<int32_t>(plan.seqs.size()), s_.config().max_num_seqs);
    int32_t sum = 0;
    for (const auto& e : plan.seqs) sum += static_cast<int32_t>(e.token_ids.size());
    EXPECT_EQ(sum, plan.num_batched_tokens);
    preemptions += static_cast<int64_t>(plan.preempted.size());
    for (const SeqRef& a : plan.aborted)
      reasons[{a.request_id, a.seq_index}] = FinishReason::kAbort;
    auto sampled = runner_.run(s_, plan);
    for (const FinishedSeq& f : s_.commit(plan, sampled)) {
      reasons[{f.request_id, f.seq_index}] = f.reason;
    }
    plans.push_back(std::move(plan));
    return plans.back();
  }

  void run_to_idle(int max_steps = 5000) {
    for (int i = 0; s_.has_work(); ++i) {
      if (i == max_steps) {
        ADD_FAILURE() << "no progress after " << max_steps << " steps";
        return;
      }
      step();
    }
  }

  const std::vector<int32_t>& output(RequestId id, int32_t idx = 0) {
    return runner_.outputs().at({id, idx});
  }

  FakeRunner& runner() { return runner_; }
  bool has_output(RequestId id, int32_t idx = 0) const {
    return runner_.outputs().contains({id, idx});
  }

  std::map<std::pair<RequestId, int32_t>, FinishReason> reasons;
  std::vector<StepPlan> plans;
  int64_t preemptions = 0;

 private:
  Scheduler& s_;
  FakeRunner runner_;
};

SchedulerConfig small_config() {
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.max_num_batched_tokens = 32;
  c.block_size = 4;
  c.num_blocks = 64;
  c.max_model_len = 128;
  c.eos_token_ids = {kEos};
  return c;
}

std::unique_ptr<Scheduler> make(const SchedulerConfig& c, int64_t* now = nullptr) {
  std::function<int64_t()> clock;
  if (now != nullptr) clock = [now] { return *now; };
  auto r = Scheduler::create(c, clock);
  EXPECT_TRUE(r.is_ok()) << r.status().to_string();
  return std::move(r).value();
}

std::vector<int32_t> prompt_of(int32_t len, int32_t salt) {
  std::vector<int32_t> p(static_cast<size_t>(len));
  for (int32_t i = 0; i < len; ++i)
    p[static_cast<size_t>(i)] = 1 + (i * 7 + salt * 13) % (kVocab - 1);
  return p;
}

Request request(RequestId id, std::vector<int32_t> prompt, int32_t max_tokens, uint64_t seed = 0) {
  Request r;
  r.id = id;
  r.prompt = std::move(prompt);
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.params.seed = seed + id;
  return r;
}

void expect_all_free(const Scheduler& s) {
  EXPECT_EQ(s.block_manager().pool().num_free(), s.config().num_blocks);
  EXPECT_DOUBLE_EQ(s.stats().kv_usage, 0.0);
  EXPECT_EQ(s.stats().num_running, 0);
  EXPECT_EQ(s.stats().num_waiting, 0);
}

TEST(SchedulerTest, ConfigValidation) {
  SchedulerConfig c = small_config();
  c.max_model_len = c.num_blocks * c.block_size + 1;
  EXPECT_EQ(Scheduler::create(c).status().code(), StatusCode::kInvalidArgument);
  c = small_config();
  c.max_num_batched_tokens = 4;
  EXPECT_NE(Scheduler::create(c).status().message().find("max_num_seqs"), std::string::npos);
  c = small_config();
  c.enable_chunked_prefill = false;
  EXPECT_NE(Scheduler::create(c).status().message().find("chunked"), std::string::npos);
}

TEST(SchedulerTest, AddRejectsBadRequests) {
  auto s = make(small_config());
  Request r = request(1, {}, 4);
  EXPECT_EQ(s->add(r).code(), StatusCode::kInvalidArgument);
  r = request(1, prompt_of(128, 1), 4);
  EXPECT_NE(s->add(r).message().find("max_model_len"), std::string::npos);
  r = request(1, prompt_of(8, 1), 4);
  r.params.top_p = 0.0f;
  EXPECT_NE(s->add(r).message().find("top_p"), std::string::npos);
  r = request(1, prompt_of(8, 1), 4);
  EXPECT_TRUE(s->add(r).is_ok());
  EXPECT_EQ(s->add(r).code(), StatusCode::kConflict);
}

TEST(SchedulerTest, ChunkingSplitsALongPromptExactly) {
  auto s = make(small_config());
  ASSERT_TRUE(s->add(request(1, prompt_of(100, 1), 3)).is_ok());
  Harness h(*s);
  h.run_to_idle();
  ASSERT_GE(h.plans.size(), 4u);
  const std::vector<int32_t> want_starts{0, 32, 64, 96};
  const std::vector<int32_t> want_lens{32, 32, 32, 4};
  for (size_t i = 0; i < 4; ++i) {
    ASSERT_EQ(h.plans[i].seqs.size(), 1u);
    EXPECT_EQ(h.plans[i].seqs[0].start_pos, want_starts[i]);
    EXPECT_EQ(static_cast<int32_t>(h.plans[i].seqs[0].token_ids.size()), want_lens[i]);
    EXPECT_EQ(h.plans[i].seqs[0].sample, i == 3);
    EXPECT_TRUE(h.plans[i].seqs[0].is_prefill);
  }
  // Then one decode per step until max_tokens.
  EXPECT_EQ(h.plans.size(), 6u);
  EXPECT_FALSE(h.plans[4].seqs[0].is_prefill);
  EXPECT_EQ(h.output(1).size(), 3u);
  EXPECT_EQ((h.reasons.at({1, 0})), FinishReason::kLength);
  expect_all_free(*s);
}

TEST(SchedulerTest, DecodesAreScheduledFirstEveryStepWhileALongPromptPrefills) {
  auto s = make(small_config());
  Harness h(*s);
  for (RequestId id = 1; id <= 3; ++id)
    ASSERT_TRUE(s->add(request(id, prompt_of(5, id), 40)).is_ok());
  h.step();
  ASSERT_TRUE(s->add(request(9, prompt_of(120, 9), 2)).is_ok());
  int prefill_steps = 0;
  while (!h.has_output(9)) {
    const StepPlan& plan = h.step();
    ASSERT_GE(plan.seqs.size(), 3u);
    for (size_t i = 0; i < 3; ++i) {
      EXPECT_EQ(plan.seqs[i].token_ids.size(), 1u);
      EXPECT_FALSE(plan.seqs[i].is_prefill);
      EXPECT_EQ(plan.seqs[i].request_id, i + 1);
    }
    if (plan.seqs.size() == 4) {
      EXPECT_EQ(plan.seqs[3].request_id, 9u);
      // What the budget leaves after three decodes, then the 4-token rest.
      EXPECT_EQ(plan.seqs[3].token_ids.size(), prefill_steps < 4 ? 29u : 4u);
      ++prefill_steps;
    }
  }
  EXPECT_EQ(prefill_steps, 5);  // 29 * 4 + 4
  h.run_to_idle();
  expect_all_free(*s);
}

std::vector<RequestId> admission_order(const Harness& h) {
  std::vector<RequestId> order;
  for (const StepPlan& p : h.plans) {
    for (const ScheduledSeq& e : p.seqs) {
      if (e.start_pos == 0) order.push_back(e.request_id);
    }
  }
  return order;
}

TEST(SchedulerTest, FcfsAdmitsByArrivalTime) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  int64_t now = 100;
  auto s = make(c, &now);
  Request r1 = request(1, prompt_of(6, 1), 2);
  r1.arrival_us = 30;
  Request r2 = request(2, prompt_of(6, 2), 2);
  r2.arrival_us = 10;
  Request r3 = request(3, prompt_of(6, 3), 2);  // stamped by the clock: 100
  Request r4 = request(4, prompt_of(6, 4), 2);
  r4.arrival_us = 20;
  r4.priority = -5;  // ignored under FCFS
  for (auto* r : {&r1, &r2, &r3, &r4}) ASSERT_TRUE(s->add(*r).is_ok());
  Harness h(*s);
  h.run_to_idle();
  EXPECT_EQ(admission_order(h), (std::vector<RequestId>{2, 4, 1, 3}));
  expect_all_free(*s);
}

TEST(SchedulerTest, PriorityPolicyAdmitsByPriorityThenArrival) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 1;
  c.policy = SchedulingPolicy::kPriority;
  int64_t now = 1;
  auto s = make(c, &now);
  const std::vector<std::pair<RequestId, int32_t>> prios{{1, 5}, {2, 1}, {3, 0}, {4, 1}};
  for (auto [id, prio] : prios) {
    ++now;
    Request r = request(id, prompt_of(6, static_cast<int32_t>(id)), 2);
    r.priority = prio;
    ASSERT_TRUE(s->add(r).is_ok());
  }
  Harness h(*s);
  h.run_to_idle();
  EXPECT_EQ(admission_order(h), (std::vector<RequestId>{3, 2, 4, 1}));
}

TEST(SchedulerTest, PrefixCacheReusesComputedBlocksAndGivesTheSameOutput) {
  auto run = [](bool caching) {
    SchedulerConfig c = small_config();
    c.enable_prefix_caching = caching;
    auto s = make(c);
    Harness h(*s);
    std::vector<int32_t> shared = prompt_of(40, 1);
    std::vector<int32_t> a = shared;
    a.insert(a.end(), {3, 4, 5, 6, 7});
    std::vector<int32_t> b = shared;
    b.insert(b.end(), {9, 9, 9, 9, 9});
    EXPECT_TRUE(s->add(request(1, a, 4)).is_ok());
    h.run_to_idle();
    EXPECT_TRUE(s->add(request(2, b, 4)).is_ok());
    EXPECT_TRUE(s->add(request(3, shared, 4)).is_ok());
    h.step();
    std::map<RequestId, int32_t> starts;
    for (const auto& e : h.plans.back().seqs) starts[e.request_id] = e.start_pos;
    h.run_to_idle();
    expect_all_free(*s);
    return std::make_tuple(
        starts, s->stats().prefix,
        std::vector<std::vector<int32_t>>{h.output(1), h.output(2), h.output(3)});
  };
  auto [starts, stats, outputs] = run(true);
  EXPECT_EQ(starts[2], 40);
  EXPECT_EQ(starts[3], 36);  // an exact match still computes the last token
  EXPECT_EQ(stats.queried_tokens, 45 + 45 + 40);
  EXPECT_EQ(stats.hit_tokens, 40 + 36);
  EXPECT_NEAR(stats.hit_rate(), 76.0 / 130.0, 1e-12);
  auto [starts_off, stats_off, outputs_off] = run(false);
  EXPECT_EQ(starts_off[2], 0);
  EXPECT_EQ(stats_off.hit_tokens, 0);
  EXPECT_EQ(outputs, outputs_off);
}

TEST(SchedulerTest, LeastRecentlyUsedPrefixIsEvictedFirst) {
  SchedulerConfig c = small_config();
  c.num_blocks = 16;
  c.max_model_len = 64;
  c.max_num_seqs = 4;
  auto s = make(c);
  Harness h(*s);
  auto add_and_run = [&](RequestId id, std::vector<int32_t> prompt) {
    Request r = request(id, std::move(prompt), 1);
    r.params.seed = 7;  // same prompt, same token
    ASSERT_TRUE(s->add(r).is_ok());
    h.run_to_idle();
  };
  add_and_run(1, prompt_of(20, 1));  // 5 cached blocks
  add_and_run(2, prompt_of(20, 2));  // 5 more; 6 never-cached blocks left
  add_and_run(3, prompt_of(40, 3));  // 10 blocks: 6 fresh + 4 evicted from prefix 1
  const int64_t before = s->stats().prefix.hit_tokens;
  add_and_run(4, prompt_of(20, 2));  // prefix 2 survived
  EXPECT_EQ(s->stats().prefix.hit_tokens - before, 16);
  add_and_run(5, prompt_of(20, 1));  // prefix 1 is gone
  EXPECT_EQ(s->stats().prefix.hit_tokens - before, 16);
  EXPECT_EQ(h.output(4), h.output(2));
  EXPECT_EQ(h.output(5), h.output(1));
  expect_all_free(*s);
}

// Many sampled (temperature 1, seeded) sequences through a cache far too small
// for all of them: the result must equal a run with a roomy cache.
TEST(SchedulerTest, PreemptionByRecomputeGivesIdenticalOutputAndFreesEverything) {
  for (bool caching : {false, true}) {
    SCOPED_TRACE(caching ? "prefix caching" : "no prefix caching");
    auto run = [&](int32_t num_blocks, int64_t* preemptions) {
      SchedulerConfig c = small_config();
      c.num_blocks = num_blocks;
      c.max_model_len = 96;
      c.enable_prefix_caching = caching;
      auto s = make(c);
      for (RequestId id = 1; id <= 6; ++id) {
        Request r = request(id, prompt_of(10 + static_cast<int32_t>(id), 1), 30);
        r.params.n = id == 3 ? 2 : 1;
        EXPECT_TRUE(s->add(r).is_ok());
      }
      Harness h(*s);
      h.run_to_idle();
      expect_all_free(*s);
      *preemptions = s->stats().num_preemptions;
      EXPECT_EQ(*preemptions, h.preemptions);
      std::vector<std::vector<int32_t>> out;
      for (RequestId id = 1; id <= 6; ++id) {
        out.push_back(h.output(id));
        EXPECT_EQ(h.output(id).size(), 30u);
        EXPECT_EQ((h.reasons.at({id, 0})), FinishReason::kLength);
      }
      out.push_back(h.output(3, 1));
      return out;
    };
    int64_t tight_preemptions = 0;
    int64_t roomy_preemptions = 0;
    auto tight = run(24, &tight_preemptions);
    auto roomy = run(256, &roomy_preemptions);
    EXPECT_GT(tight_preemptions, 0);
    EXPECT_EQ(roomy_preemptions, 0);
    EXPECT_EQ(tight, roomy);
  }
}

TEST(SchedulerTest, ForkSharesThePromptAndCopiesThePartialBlockOnWrite) {
  auto s = make(small_config());
  Request r = request(1, prompt_of(10, 1), 6);
  r.params.n = 3;
  ASSERT_TRUE(s->add(r).is_ok());
  Harness h(*s);
  const StepPlan& first = h.step();
  ASSERT_EQ(first.seqs.size(), 1u);  // the prompt is prefilled once
  EXPECT_TRUE(first.seqs[0].sample);
  EXPECT_EQ(first.seqs[0].sample_seq_indices, (std::vector<int32_t>{0, 1, 2}));
  const std::vector<int32_t> prompt_blocks = first.seqs[0].block_table;
  EXPECT_EQ(s->block_manager().pool().ref_count(prompt_blocks[0]), 3);
  const StepPlan& second = h.step();
  ASSERT_EQ(second.seqs.size(), 3u);
  // Tokens land at position 10, inside the shared third block: two of the
  // three sharers get a copy, the last writes in place.
  ASSERT_EQ(second.block_copies.size(), 2u);
  for (const BlockCopy& c : second.block_copies) EXPECT_EQ(c.src, prompt_blocks[2]);
  for (const ScheduledSeq& e : second.seqs) {
    EXPECT_EQ(e.block_table[0], prompt_blocks[0]);
    EXPECT_EQ(e.block_table[1], prompt_blocks[1]);
  }
  h.run_to_idle();
  EXPECT_EQ(h.output(1, 0).size(), 6u);
  EXPECT_EQ(h.output(1, 2).size(), 6u);
  EXPECT_FALSE(h.output(1, 0) == h.output(1, 1) && h.output(1, 1) == h.output(1, 2));
  expect_all_free(*s);
}

TEST(SchedulerTest, AbortFreesRunningAndWaitingRequests) {
  SchedulerConfig c = small_config();
  c.max_num_seqs = 2;
  auto s = make(c);
  for (RequestId id = 1; id <= 4; ++id)
    ASSERT_TRUE(s->add(request(id, prompt_of(9, 1), 50)).is_ok());
  Harness h(*s);
  h.step();
  h.step();
  EXPECT_EQ(s->stats().num_running, 2);
  EXPECT_EQ(s->stats().num_waiting, 2);
  s->abort(1);   // running
  s->abort(4);   // waiting
  s->abort(77);  // unknown: ignored
  const StepPlan& plan = h.step();
  EXPECT_EQ(plan.aborted, (std::vector<SeqRef>{{1, 0}, {4, 0}}));
  for (const auto& e : plan.seqs) {
    EXPECT_NE(e.request_id, 1u);
    EXPECT_NE(e.request_id, 4u);
  }
  s->abort(2);
  s->abort(3);
  h.step();
  EXPECT_FALSE(s->has_work());
  expect_all_free(*s);
  EXPECT_EQ(s->sequence(2, 0), nullptr);
  // The id can be used again once the request is gone.
  EXPECT_TRUE(s->add(request(1, prompt_of(9, 1), 2)).is_ok());
}

TEST(SchedulerTest, StopConditions) {
  SchedulerConfig c = small_config();
  auto greedy = [](RequestId id, int32_t max_tokens) {
    Request r = request(id, prompt_of(7, 5), max_tokens);
    r.params.temperature = 0.0f;
    return r;
  };
  // Reference: greedy output without stops.
  std::vector<int32_t> ref;
  {
    auto s = make(c);
    ASSERT_TRUE(s->add(greedy(1, 12)).is_ok());
    Harness h(*s);
    h.run_to_idle();
    ref = h.output(1);
  }
  const int32_t stop_tok = ref[4];
  const auto first_stop = std::find(ref.begin(), ref.end(), stop_tok) - ref.begin();
  {
    auto s = make(c);
    Request r = greedy(1, 12);
    r.params.stop_token_ids = {stop_tok};
    ASSERT_TRUE(s->add(r).is_ok());
    Harness h(*s);
    h.run_to_idle();
    EXPECT_EQ(h.output(1), std::vector<int32_t>(ref.begin(), ref.begin() + first_stop + 1));
    EXPECT_EQ((h.reasons.at({1, 0})), FinishReason::kStop);
  }
  {
    SchedulerConfig ce = c;
    ce.eos_token_ids = {stop_tok};
    auto s = make(ce);
    Request stops = greedy(1, 12);
    stops.params.ignore_eos = false;
    Request ignores = greedy(2, 12);  // ignore_eos
    ASSERT_TRUE(s->add(stops).is_ok());
    ASSERT_TRUE(s->add(ignores).is_ok());
    Harness h(*s);
    h.run_to_idle();
    EXPECT_EQ(h.output(1).size(), static_cast<size_t>(first_stop + 1));
    EXPECT_EQ((h.reasons.at({1, 0})), FinishReason::kStop);
    EXPECT_EQ(h.output(2), ref);
    EXPECT_EQ((h.reasons.at({2, 0})), FinishReason::kLength);
  }
  {
    auto s = make(c);
    Request r = greedy(1, 12);
    r.params.stop_token_ids = {stop_tok};
    r.params.min_tokens = static_cast<int32_t>(first_stop) + 2;
    ASSERT_TRUE(s->add(r).is_ok());
    Harness h(*s);
    h.run_to_idle();
    EXPECT_GE(h.output(1).size(), static_cast<size_t>(first_stop + 2));
    for (size_t i = 0; i < static_cast<size_t>(r.params.min_tokens); ++i) {
      EXPECT_NE(h.output(1)[i], stop_tok);
    }
  }
  {
    auto s = make(c);
    ASSERT_TRUE(s->add(request(1, prompt_of(120, 1), 100)).is_ok());
    Harness h(*s);
    h.run_to_idle();
    EXPECT_EQ(h.output(1).size(), 8u);  // max_model_len 128
    EXPECT_EQ((h.reasons.at({1, 0})), FinishReason::kLength);
  }
}

TEST(SchedulerTest, EngineFinishForStopStringsFreesTheSequence) {
  auto s = make(small_config());
  ASSERT_TRUE(s->add(request(1, prompt_of(9, 1), 50)).is_ok());
  ASSERT_TRUE(s->add(request(2, prompt_of(9, 2), 3)).is_ok());
  Harness h(*s);
  h.step();
  h.step();
  auto done = s->finish(1, 0, FinishReason::kStop);
  ASSERT_TRUE(done.is_ok());
  ASSERT_EQ(done->size(), 1u);
  EXPECT_TRUE((*done)[0].request_done);
  EXPECT_EQ(s->finish(1, 0, FinishReason::kStop).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(s->finish(2, 5, FinishReason::kStop).status().code(), StatusCode::kNotFound);
  h.run_to_idle();
  EXPECT_EQ(h.output(1).size(), 2u);
  expect_all_free(*s);
}

TEST(SchedulerTest, PrefillExportAndDecodeImportMatchAnAggregatedRun) {
  const std::vector<int32_t> prompt = prompt_of(18, 4);
  auto make_request = [&](bool prefill_only) {
    Request r = request(1, prompt, 8);
    r.prefill_only = prefill_only;
    return r;
  };
  std::vector<int32_t> aggregated;
  {
    auto s = make(small_config());
    ASSERT_TRUE(s->add(make_request(false)).is_ok());
    Harness h(*s);
    h.run_to_idle();
    aggregated = h.output(1);
  }
  // Prefill side.
  auto p = make(small_config());
  ASSERT_TRUE(p->add(make_request(true)).is_ok());
  Harness hp(*p);
  hp.run_to_idle();
  EXPECT_EQ((hp.reasons.at({1, 0})), FinishReason::kPrefillDone);
  auto exported = p->export_kv(1);
  ASSERT_TRUE(exported.is_ok()) << exported.status().to_string();
  EXPECT_EQ(exported->num_tokens, 18);
  EXPECT_EQ(exported->block_table.size(), 5u);
  EXPECT_EQ(exported->first_tokens, std::vector<int32_t>{aggregated[0]});
  EXPECT_EQ(exported->finish_reasons, std::vector<FinishReason>{FinishReason::kPrefillDone});
  EXPECT_EQ(p->block_manager().pool().num_used(), 5);
  ASSERT_TRUE(p->release_export(1).is_ok());
  expect_all_free(*p);

  // Decode side.
  SchedulerConfig dc = small_config();
  dc.num_blocks = 32;
  auto d = make(dc);
  auto reservation = d->reserve_import(make_request(false));
  ASSERT_TRUE(reservation.is_ok()) << reservation.status().to_string();
  EXPECT_EQ(reservation->block_table.size(), 5u);
  EXPECT_EQ(reservation->cached_tokens, 0);
  EXPECT_EQ(d->stats().num_awaiting_kv, 1);
  Harness hd(*d);
  hd.step();  // nothing to do while the KV is in flight
  EXPECT_TRUE(hd.plans.back().empty());
  hd.runner().import(reservation->block_table, prompt);
  auto finished = d->complete_import(1, exported->first_tokens);
  ASSERT_TRUE(finished.is_ok());
  EXPECT_TRUE(finished->empty());
  hd.run_to_idle();
  std::vector<int32_t> disaggregated{exported->first_tokens[0]};
  const auto& rest = hd.output(1);
  disaggregated.insert(disaggregated.end(), rest.begin(), rest.end());
  EXPECT_EQ(disaggregated, aggregated);
  EXPECT_TRUE(hd.plans[1].seqs.size() == 1 && !hd.plans[1].seqs[0].is_prefill);

  // The same prompt again: the decode side's prefix cache holds its first
  // full blocks, so only the rest has to arrive.
  Request again = make_request(false);
  again.id = 7;
  auto second = d->reserve_import(again);
  ASSERT_TRUE(second.is_ok());
  EXPECT_EQ(second->cached_tokens, 16);
  EXPECT_EQ(second->block_table[0], reservation->block_table[0]);
  d->abort(7);
  hd.step();
  expect_all_free(*d);

  // A reservation that does not fit is a normal refusal; abort releases one.
  Request big = make_request(false);
  big.id = 2;
  big.prompt = prompt_of(127, 1);
  SchedulerConfig small = small_config();
  small.num_blocks = 32;
  auto d2 = make(small);
  ASSERT_TRUE(d2->reserve_import(big).is_ok());
  big.id = 3;
  EXPECT_EQ(d2->reserve_import(big).status().code(), StatusCode::kResourceExhausted);
  d2->abort(2);
  Harness hd2(*d2);
  hd2.step();
  expect_all_free(*d2);
}

TEST(SchedulerTest, ImportOfSeveralSequencesForksThemFromTheImportedPrompt) {
  const std::vector<int32_t> prompt = prompt_of(21, 3);
  auto make_request = [&](bool prefill_only) {
    Request r = request(1, prompt, 6);
    r.params.n = 3;
    r.prefill_only = prefill_only;
    return r;
  };
  std::map<int32_t, std::vector<int32_t>> aggregated;
  {
    auto s = make(small_config());
    ASSERT_TRUE(s->add(make_request(false)).is_ok());
    Harness h(*s);
    h.run_to_idle();
    for (int32_t i = 0; i < 3; ++i) aggregated[i] = h.output(1, i);
  }
  auto p = make(small_config());
  ASSERT_TRUE(p->add(make_request(true)).is_ok());
  Harness hp(*p);
  hp.run_to_idle();
  auto exported = p->export_kv(1);
  ASSERT_TRUE(exported.is_ok()) << exported.status().to_string();
  ASSERT_EQ(exported->first_tokens.size(), 3u);
  for (int32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(exported->first_tokens[static_cast<size_t>(i)], aggregated[i][0]);
    EXPECT_EQ(exported->finish_reasons[static_cast<size_t>(i)], FinishReason::kPrefillDone);
  }
  ASSERT_TRUE(p->release_export(1).is_ok());
  expect_all_free(*p);

  SchedulerConfig dc = small_config();
  dc.num_blocks = 32;
  auto d = make(dc);
  auto reservation = d->reserve_import(make_request(false));
  ASSERT_TRUE(reservation.is_ok()) << reservation.status().to_string();
  Harness hd(*d);
  hd.runner().import(reservation->block_table, prompt);
  EXPECT_EQ(d->complete_import(1, std::vector<int32_t>{1, 2}).status().code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(d->complete_import(1, exported->first_tokens).is_ok());
  hd.run_to_idle();
  for (int32_t i = 0; i < 3; ++i) {
    std::vector<int32_t> got{exported->first_tokens[static_cast<size_t>(i)]};
    const auto& rest = hd.output(1, i);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, aggregated[i]) << "sequence " << i;
  }
  expect_all_free(*d);
}

TEST(SchedulerTest, ImportsCountAgainstTheSequenceLimit) {
  SchedulerConfig c = small_config();
  c.num_blocks = 64;
  c.max_num_seqs = 4;
  auto d = make(c);
  Request a = request(1, prompt_of(5, 1), 4);
  a.params.n = 3;
  ASSERT_TRUE(d->reserve_import(a).is_ok());
  Request b = request(2, prompt_of(5, 2), 4);
  b.params.n = 2;
  EXPECT_EQ(d->reserve_import(b).status().code(), StatusCode::kResourceExhausted);
  b.params.n = 1;
  EXPECT_TRUE(d->reserve_import(b).is_ok());
  d->abort(1);
  d->abort(2);
  Harness h(*d);
  h.step();
  expect_all_free(*d);
}

TEST(SchedulerTest, AddAndAbortFromOtherThreads) {
  SchedulerConfig c = small_config();
  c.num_blocks = 128;
  c.max_model_len = 64;
  auto s = make(c);
  constexpr int kPerThread = 20;
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&s, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const auto id = static_cast<RequestId>(t * 1000 + i + 1);
        EXPECT_TRUE(s->add(request(id, prompt_of(5 + i % 7, i), 4)).is_ok());
        if (i % 5 == 0) s->abort(id);
      }
    });
  }
  Harness h(*s);
  size_t done = 0;
  for (int step = 0; step < 5000 && done < 2 * kPerThread; ++step) {
    h.step();
    done = h.reasons.size();
  }
  for (auto& th : threads) th.join();
  h.run_to_idle();
  EXPECT_EQ(h.reasons.size(), 2u * kPerThread);
  int aborted = 0;
  for (const auto& [key, reason] : h.reasons) aborted += reason == FinishReason::kAbort;
  // An abort can land after its request finished; then it is a no-op.
  EXPECT_LE(aborted, 8);
  expect_all_free(*s);
}

}  // namespace
}  // namespace baton::engine
