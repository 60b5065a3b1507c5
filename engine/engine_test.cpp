// The engine end to end on the fixture models: transformers' greedy tokens
// through the scheduler, and outputs that do not depend on batching, prefix
// caching, chunking or preemption.

#include "engine/engine.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

namespace baton::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string fixture(const std::string& name) {
  return (fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / name).string();
}

json expected(const std::string& name) {
  std::ifstream in(fs::path(fixture(name)) / "expected.json");
  return json::parse(in);
}

std::unique_ptr<Engine> make_engine(const std::string& name, EngineConfig cfg = {}) {
  cfg.model = fixture(name);
  cfg.threads = 2;
  if (cfg.num_blocks == 0) cfg.num_blocks = 256;
  auto e = Engine::create(cfg);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  return std::move(*e);
}

struct Collected {
  std::map<int32_t, std::vector<int32_t>> tokens;
  std::map<int32_t, std::string> text;
  std::map<int32_t, FinishReason> finish;
  std::vector<std::string> text_chunks;
  bool done = false;
};

// Drains every event a stream has ready.
void drain(RequestStream& s, Collected& c) {
  while (!c.done) {
    auto ev = s.next(Clock::now());
    if (!ev.is_ok()) return;
    for (auto& d : ev->deltas) {
      auto& t = c.tokens[d.index];
      t.insert(t.end(), d.token_ids.begin(), d.token_ids.end());
      c.text[d.index] += d.text;
      if (!d.text.empty()) c.text_chunks.push_back(d.text);
      if (d.finish != FinishReason::kNone) c.finish[d.index] = d.finish;
    }
    c.done = ev->done;
  }
}

EngineRequest greedy_request(std::vector<int32_t> prompt, int32_t max_tokens) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  return r;
}

// Runs all requests to completion in one engine, returns outputs in order.
std::vector<Collected> run_all(Engine& e, std::vector<EngineRequest> reqs) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (auto& r : reqs) {
    auto s = e.submit(std::move(r));
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    streams.push_back(*s);
  }
  std::vector<Collected> out(streams.size());
  while (true) {
    EXPECT_TRUE(e.run_until_idle().is_ok());
    bool all = true;
    for (size_t i = 0; i < streams.size(); ++i) {
      drain(*streams[i], out[i]);
      all = all && out[i].done;
    }
    if (all) break;
  }
  return out;
}

class EngineFixture : public ::testing::TestWithParam<const char*> {};

TEST_P(EngineFixture, GreedyMatchesTransformersWithAllPromptsInFlight) {
  auto e = make_engine(GetParam());
  json cases = expected(GetParam())["greedy"];
  std::vector<EngineRequest> reqs;
  for (const auto& c : cases) {
    reqs.push_back(greedy_request(c["prompt_ids"].get<std::vector<int32_t>>(),
                                  static_cast<int32_t>(c["output_ids"].size())));
  }
  auto out = run_all(*e, std::move(reqs));
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(out[i].tokens[0], cases[i]["output_ids"].get<std::vector<int32_t>>()) << i;
    EXPECT_EQ(out[i].finish[0], FinishReason::kLength);
    // Streamed text is exactly the decode of the streamed tokens.
    auto text = e->tokenizer()->decode(out[i].tokens[0], true);
    ASSERT_TRUE(text.is_ok());
    EXPECT_EQ(out[i].text[0], *text);
  }
  EXPECT_EQ(e->stats().kv_usage, 0.0);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, EngineFixture,
                         ::testing::Values("tiny-llama3", "tiny-qwen2", "tiny-llama2",
                                           "tiny-mistral"));

std::vector<int32_t> prompt_of_length(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(3 + (i * 37 + salt * 101) % 800);
  return p;
}

TEST(Engine, OutputIsTheSameAloneOrInABatchOf16) {
  auto alone_engine = make_engine("tiny-llama3");
  auto alone = run_all(*alone_engine, {greedy_request(prompt_of_length(50, 7), 20)});

  auto e = make_engine("tiny-llama3");
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    reqs.push_back(
        greedy_request(i == 9 ? prompt_of_length(50, 7) : prompt_of_length(5 + 13 * i, i), 20));
  }
  auto batch = run_all(*e, std::move(reqs));
  EXPECT_EQ(batch[9].tokens[0], alone[0].tokens[0]);
}

TEST(Engine, PrefixCacheChunkingAndPreemptionDoNotChangeOutputs) {
  std::vector<EngineRequest> reqs;
  const auto shared = prompt_of_length(70, 3);
  for (int i = 0; i < 6; ++i) {
    auto p = shared;
    auto tail = prompt_of_length(3 + i * 5, 40 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    reqs.push_back(greedy_request(p, 24));
  }
  EngineConfig base;
  base.enable_prefix_caching = false;
  base.enable_chunked_prefill = false;
  base.max_num_batched_tokens = 1024;
  base.max_model_len = 256;
  auto reference = run_all(*make_engine("tiny-llama3", base), reqs);

  EngineConfig cached = base;
  cached.enable_prefix_caching = true;
  auto ec = make_engine("tiny-llama3", cached);
  // Run the first request alone so later ones hit its cached blocks.
  auto first = run_all(*ec, {reqs[0]});
  EXPECT_EQ(first[0].tokens[0], reference[0].tokens[0]);
  auto with_cache = run_all(*ec, reqs);
  EXPECT_GT(ec->stats().prefix_hit_rate, 0.3);

  EngineConfig chunked = base;
  chunked.enable_chunked_prefill = true;
  chunked.max_num_batched_tokens = 16;
  chunked.max_num_seqs = 8;
  auto with_chunks = run_all(*make_engine("tiny-llama3", chunked), reqs);

  EngineConfig tiny = base;
  tiny.enable_chunked_prefill = true;
  tiny.max_num_batched_tokens = 64;
  tiny.num_blocks = 12;  // 192 slots: six ~100-token sequences must preempt
  tiny.max_model_len = 128;
  auto et = make_engine("tiny-llama3", tiny);
  auto preempted = run_all(*et, reqs);
  EXPECT_GT(et->stats().num_preemptions, 0);

  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(with_cache[i].tokens[0], reference[i].tokens[0]) << "prefix cache, request " << i;
    EXPECT_EQ(with_chunks[i].tokens[0], reference[i].tokens[0]) << "chunked, request " << i;
    EXPECT_EQ(preempted[i].tokens[0], reference[i].tokens[0]) << "preempted, request " << i;
  }
}

TEST(Engine, SeededSamplingIsReproducibleWhateverTheBatch) {
  EngineRequest r;
  r.prompt = prompt_of_length(12, 1);
  r.params.temperature = 0.9f;
  r.params.top_p = 0.95f;
  r.params.seed = 1234;
  r.params.max_tokens = 16;
  r.params.ignore_eos = true;
  r.params.n = 3;
  auto a = run_all(*make_engine("tiny-llama3"), {r});
  std::vector<EngineRequest> crowd;
  for (int i = 0; i < 5; ++i) crowd.push_back(greedy_request(prompt_of_length(9 + i, i), 10));
  crowd.push_back(r);
  auto b = run_all(*make_engine("tiny-llama3"), crowd);
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(a[0].tokens[i], b[5].tokens[i]) << "sequence " << i;
  // Different sequences of one request draw differently.
  EXPECT_NE(a[0].tokens[0], a[0].tokens[1]);
}

TEST(Engine, StopStringsEndTheTextAndAreNeverStreamedPartially) {
  auto e = make_engine("tiny-llama3");
  auto plain = run_all(*e, {greedy_request(prompt_of_length(10, 2), 30)});
  const std::string text = plain[0].text[0];
  ASSERT_GT(text.size(), 12u) << "fixture model produced too little text";
  const std::string stop = text.substr(text.size() / 2, 3);
  const size_t cut = text.find(stop);

  auto req = greedy_request(prompt_of_length(10, 2), 30);
  req.stop = {stop, "\x01never"};
  auto out = run_all(*e, {req});
  EXPECT_EQ(out[0].text[0], text.substr(0, cut));
  EXPECT_EQ(out[0].finish[0], FinishReason::kStop);
  for (const auto& chunk : out[0].text_chunks) {
    EXPECT_EQ(chunk.find(stop.substr(0, 2)), std::string::npos) << chunk;
  }
  req.include_stop_str_in_output = true;
  out = run_all(*e, {req});
  EXPECT_EQ(out[0].text[0], text.substr(0, cut + stop.size()));
}

TEST(Engine, CancelEndsTheStreamAndFreesKv) {
  auto e = make_engine("tiny-llama3");
  ASSERT_TRUE(e->start().is_ok());
  auto s = e->submit(greedy_request(prompt_of_length(40, 5), 100000 / 1000));
  ASSERT_TRUE(s.is_ok());
  // Wait for the first token, then cancel.
  auto ev = (*s)->next(Clock::now() + std::chrono::seconds(30));
  ASSERT_TRUE(ev.is_ok()) << ev.status().to_string();
  e->cancel((*s)->id());
  Collected c;
  for (int i = 0; i < 1000 && !c.done; ++i) {
    auto next = (*s)->next(Clock::now() + std::chrono::seconds(30));
    ASSERT_TRUE(next.is_ok()) << next.status().to_string();
    for (auto& d : next->deltas) {
      if (d.finish != FinishReason::kNone) c.finish[d.index] = d.finish;
    }
    c.done = next->done;
  }
  ASSERT_TRUE(c.done);
  EXPECT_TRUE(c.finish[0] == FinishReason::kAbort || c.finish[0] == FinishReason::kLength);
  e->stop();
  EXPECT_EQ(e->stats().kv_usage, 0.0);
}

TEST(Engine, RejectsBadRequestsWithTheField) {
  auto e = make_engine("tiny-llama3");
  EngineRequest r;
  EXPECT_EQ(e->submit(r).status().code(), StatusCode::kInvalidArgument);
  r.prompt = {1, 2, 99999};
  auto s = e->submit(r);
  EXPECT_NE(s.status().message().find("prompt"), std::string::npos);
  r.prompt = {1, 2};
  r.params.temperature = -1;
  s = e->submit(r);
  EXPECT_NE(s.status().message().find("temperature"), std::string::npos);
  r.params.temperature = 1;
  r.prompt = std::vector<int32_t>(static_cast<size_t>(e->max_model_len()), 5);
  EXPECT_EQ(e->submit(r).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton::engine

namespace baton::engine {
namespace {

// The built-in default model (models/baton-tiny, trained by
// tools/train_tiny.py) against transformers' greedy outputs for it.
TEST(BuiltInModel, GreedyMatchesTransformers) {
  EngineConfig cfg;
  cfg.model = (fs::path(BATON_SOURCE_DIR) / "models" / "baton-tiny").string();
  cfg.threads = 2;
  cfg.num_blocks = 128;
  auto e = Engine::create(cfg);
  ASSERT_TRUE(e.is_ok()) << e.status().to_string();
  std::ifstream in(fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / "baton-tiny" /
                   "expected.json");
  json cases = json::parse(in)["greedy"];
  std::vector<EngineRequest> reqs;
  for (const auto& c : cases) {
    auto ids = (*e)->tokenizer()->encode(c["prompt"].get<std::string>(), true);
    ASSERT_TRUE(ids.is_ok());
    EXPECT_EQ(*ids, c["prompt_ids"].get<std::vector<int32_t>>()) << c["prompt"];
    reqs.push_back(greedy_request(*ids, static_cast<int32_t>(c["output_ids"].size())));
  }
  auto out = run_all(**e, std::move(reqs));
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(out[i].tokens[0], cases[i]["output_ids"].get<std::vector<int32_t>>()) << i;
  }
}

}  // namespace
}  // namespace baton::engine
