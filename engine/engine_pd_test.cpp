// Disaggregation inside the engine: a prefill-only engine samples the first
// tokens and exports the prompt's KV; a decode engine reserves room, streams
// the first tokens, imports the KV and generates the rest. The output must be
// token for token (and text for text) what one engine produces alone.

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "engine/engine.h"

namespace baton::engine {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr auto kWait = std::chrono::seconds(60);

std::unique_ptr<Engine> started_engine(EngineConfig cfg = {}) {
  cfg.model = (fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / "tiny-llama3").string();
  cfg.threads = 1;
  if (cfg.num_blocks == 0) cfg.num_blocks = 256;
  auto e = Engine::create(cfg);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  EXPECT_TRUE((*e)->start().is_ok());
  return std::move(*e);
}

struct Output {
  std::map<int32_t, std::vector<int32_t>> tokens;
  std::map<int32_t, std::string> text;
  std::map<int32_t, FinishReason> finish;
  std::map<int32_t, std::vector<SampleResult>> samples;
  RequestInfo info;
};

// Reads a stream to its done event (each wait bounded).
Output read_all(RequestStream& s) {
  Output o;
  const auto deadline = Clock::now() + kWait;
  for (;;) {
    auto ev = s.next(deadline);
    EXPECT_TRUE(ev.is_ok()) << ev.status().to_string();
    if (!ev.is_ok()) return o;
    for (auto& d : ev->deltas) {
      auto& t = o.tokens[d.index];
      t.insert(t.end(), d.token_ids.begin(), d.token_ids.end());
      auto& sm = o.samples[d.index];
      sm.insert(sm.end(), d.logprobs.begin(), d.logprobs.end());
      o.text[d.index] += d.text;
      if (d.finish != FinishReason::kNone) o.finish[d.index] = d.finish;
    }
    o.info = ev->info;
    if (ev->done) return o;
  }
}

Output run_mixed(Engine& e, EngineRequest r) {
  auto s = e.submit(std::move(r));
  EXPECT_TRUE(s.is_ok()) << s.status().to_string();
  return read_all(**s);
}

struct PdResult {
  Output out;
  int32_t cached_tokens = 0;
  bool kv_sent = false;
};

// What the instance servers do over the network, done in process.
PdResult run_pd(Engine& p, Engine& d, const EngineRequest& r) {
  PdResult res;
  auto h = d.reserve_import(r, Clock::now() + kWait);
  EXPECT_TRUE(h.is_ok()) << h.status().to_string();
  if (!h.is_ok()) return res;
  res.cached_tokens = h->cached_tokens;
  EngineRequest pr = r;
  pr.prefill_only = true;
  pr.export_from_token = h->cached_tokens;
  pr.params.logprobs = pr.params.logprobs.value_or(0);  // the decode side may need them
  auto ps = p.submit(pr);
  EXPECT_TRUE(ps.is_ok()) << ps.status().to_string();
  Output first = read_all(**ps);
  std::vector<FirstTokenIn> tokens;
  for (auto& [idx, toks] : first.tokens) {
    EXPECT_EQ(toks.size(), 1u);
    FirstTokenIn t;
    t.seq_index = idx;
    t.sample = first.samples[idx].at(0);
    FinishReason f = first.finish[idx];
    t.finish = f == FinishReason::kPrefillDone ? FinishReason::kNone : f;
    tokens.push_back(t);
  }
  d.deliver_first_tokens(h->id, tokens);
  if (first.info.kv_export) {
    EXPECT_EQ(first.info.kv_export->bytes.size(), h->kv_bytes);
    d.import_kv(h->id, first.info.kv_export);
    res.kv_sent = true;
  }
  res.out = read_all(*h->stream);
  return res;
}

void expect_same(const Output& pd, const Output& mixed) {
  EXPECT_EQ(pd.tokens, mixed.tokens);
  EXPECT_EQ(pd.text, mixed.text);
  EXPECT_EQ(pd.finish, mixed.finish);
}

std::vector<int32_t> prompt_of_length(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(3 + (i * 37 + salt * 101) % 800);
  return p;
}

EngineRequest request(std::vector<int32_t> prompt, int32_t max_tokens) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  r.params.temperature = 0;
  return r;
}

class EnginePd : public ::testing::Test {
 protected:
  void SetUp() override {
    mixed_ = started_engine();
    EngineConfig pc;
    pc.max_num_batched_tokens = 64;  // long prompts prefill in chunks
    pc.max_num_seqs = 16;
    prefill_ = started_engine(pc);
    decode_ = started_engine();
  }
  void TearDown() override {
    // Nothing is left reserved or exported on either side.
    for (Engine* e : {prefill_.get(), decode_.get()}) {
      for (int i = 0; i < 200 && e->stats().num_free_blocks != e->stats().num_blocks; ++i) {
        // Stats refresh after the engine's next step; give it a request.
        run_mixed(*e, request({5, 6, 7}, 1));
      }
      EXPECT_EQ(e->stats().num_awaiting_kv, 0);
    }
  }
  std::unique_ptr<Engine> mixed_, prefill_, decode_;
};

TEST_F(EnginePd, GreedyLongPromptMatchesAggregated) {
  EngineRequest r = request(prompt_of_length(300, 1), 24);
  auto pd = run_pd(*prefill_, *decode_, r);
  EXPECT_TRUE(pd.kv_sent);
  EXPECT_EQ(pd.cached_tokens, 0);
  expect_same(pd.out, run_mixed(*mixed_, r));
}

TEST_F(EnginePd, SeededSamplingWithSeveralSequencesMatchesAggregated) {
  EngineRequest r = request(prompt_of_length(70, 2), 16);
  r.params.temperature = 0.9f;
  r.params.top_p = 0.95f;
  r.params.n = 3;
  r.params.seed = 1234;
  auto pd = run_pd(*prefill_, *decode_, r);
  auto mixed = run_mixed(*mixed_, r);
  ASSERT_EQ(mixed.tokens.size(), 3u);
  expect_same(pd.out, mixed);
  EXPECT_NE(mixed.tokens[0], mixed.tokens[1]);  // the sequences really differ
}

TEST_F(EnginePd, StopStringsAndLogprobsMatchAggregated) {
  EngineRequest probe = request(prompt_of_length(40, 3), 12);
  auto full = run_mixed(*mixed_, probe);
  const std::string& text = full.text[0];
  ASSERT_GE(text.size(), 6u);
  EngineRequest r = probe;
  r.stop = {text.substr(text.size() / 2, 3)};
  r.params.logprobs = 2;
  auto pd = run_pd(*prefill_, *decode_, r);
  auto mixed = run_mixed(*mixed_, r);
  expect_same(pd.out, mixed);
  EXPECT_EQ(mixed.finish[0], FinishReason::kStop);
  ASSERT_EQ(pd.out.samples[0].size(), mixed.samples[0].size());
  for (size_t i = 0; i < mixed.samples[0].size(); ++i) {
    EXPECT_EQ(pd.out.samples[0][i].token, mixed.samples[0][i].token);
    EXPECT_FLOAT_EQ(pd.out.samples[0][i].logprob, mixed.samples[0][i].logprob);
    EXPECT_EQ(pd.out.samples[0][i].top_logprobs.size(), 2u);
  }
}

TEST_F(EnginePd, DecodePrefixCacheHitSendsOnlyTheRest) {
  EngineRequest r = request(prompt_of_length(100, 4), 8);
  auto first = run_pd(*prefill_, *decode_, r);
  EXPECT_EQ(first.cached_tokens, 0);
  auto second = run_pd(*prefill_, *decode_, r);
  EXPECT_EQ(second.cached_tokens, 96);  // six full blocks of 16
  auto mixed = run_mixed(*mixed_, r);
  expect_same(first.out, mixed);
  expect_same(second.out, mixed);
}

TEST_F(EnginePd, AFirstTokenThatEndsTheRequestNeedsNoKv) {
  EngineRequest r = request(prompt_of_length(30, 5), 1);
  auto pd = run_pd(*prefill_, *decode_, r);
  EXPECT_FALSE(pd.kv_sent);
  auto mixed = run_mixed(*mixed_, r);
  expect_same(pd.out, mixed);
  EXPECT_EQ(pd.out.finish[0], FinishReason::kLength);
}

TEST_F(EnginePd, CancellingAReservationReleasesItsBlocks) {
  const int32_t before = decode_->stats().num_free_blocks;
  auto h = decode_->reserve_import(request(prompt_of_length(200, 6), 8), Clock::now() + kWait);
  ASSERT_TRUE(h.is_ok());
  EXPECT_EQ(decode_->stats().num_awaiting_kv, 1);
  EXPECT_LT(decode_->stats().num_free_blocks, before);
  decode_->cancel(h->id);
  auto out = read_all(*h->stream);
  EXPECT_EQ(out.finish[0], FinishReason::kAbort);
}

TEST_F(EnginePd, AReservationThatDoesNotFitIsRefused) {
  EngineConfig small;
  small.num_blocks = 8;
  auto d = started_engine(small);
  auto h = d->reserve_import(request(prompt_of_length(120, 7), 4), Clock::now() + kWait);
  ASSERT_TRUE(h.is_ok()) << h.status().to_string();
  auto refused = d->reserve_import(request(prompt_of_length(120, 8), 4), Clock::now() + kWait);
  EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
  d->cancel(h->id);
  read_all(*h->stream);
}

}  // namespace
}  // namespace baton::engine
