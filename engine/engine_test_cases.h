#pragma once

// The engine's behavioural test bodies, shared by engine_test.cpp (device
// cpu) and engine_cuda_test.cpp (device cuda, f32 and bf16): transformers'
// greedy tokens through the scheduler, and outputs that do not depend on
// batching, prefix caching, chunking or preemption.
//
// An EngineTarget says where the engine runs and how exact its arithmetic
// is. With f32 arithmetic (the CPU, or the GPU with cuda_dtype kF32) every
// output must be identical token for token. With bf16 (what `--device cuda`
// serves) two runs that batch the same sequence differently round
// differently (a GEMV for up to 8 rows, cuBLAS beyond; prefill chunks of
// other sizes), so logits differ by bf16 noise and a greedy choice whose top
// two logits are closer than that may flip, after which the sequences go
// apart. There, outputs must be identical up to the first step whose
// decision, in the reference run, was within `bf16_tolerance`; a difference
// at a clear step fails, and some clear steps must have been compared.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace baton::engine::test_cases {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct EngineTarget {
  std::string device = "cpu";
  DType cuda_dtype = DType::kF32;
  // 0: f32 arithmetic, outputs identical. > 0: bf16, relative logit error
  // against f32; a decision is clear when the top two logits are more than
  // twice that apart (relative to max(1, |top logit|)).
  double bf16_tolerance = 0;
};

inline const EngineTarget kCpu{};

// |logits| of tiny-llama3 stay below this (its expected.json top-5 logits
// are within 3.8 to 6.3): the scale of bf16 error in engine-against-engine
// comparisons, where only log-probabilities are reported.
constexpr double kTinyLlama3LogitScale = 8.0;

inline std::string fixture(const std::string& name) {
  return (fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / name).string();
}

inline json expected(const std::string& name) {
  std::ifstream in(fs::path(fixture(name)) / "expected.json");
  return json::parse(in);
}

inline std::unique_ptr<Engine> make_engine(const EngineTarget& t, const std::string& model,
                                           EngineConfig cfg = {}) {
  cfg.model = model.find('/') == std::string::npos ? fixture(model) : model;
  cfg.threads = 2;
  cfg.device = t.device;
  cfg.cuda_dtype = t.cuda_dtype;
  if (cfg.num_blocks == 0) cfg.num_blocks = 256;
  auto e = Engine::create(cfg);
  EXPECT_TRUE(e.is_ok()) << e.status().to_string();
  return e.is_ok() ? std::move(*e) : nullptr;
}

struct Collected {
  std::map<int32_t, std::vector<int32_t>> tokens;
  // Per token, top logprob minus the runner-up's: only when logprobs were
  // asked (bf16 targets).
  std::map<int32_t, std::vector<float>> margins;
  std::map<int32_t, std::string> text;
  std::map<int32_t, FinishReason> finish;
  std::vector<std::string> text_chunks;
  bool done = false;
};

// Drains every event a stream has ready.
inline void drain(RequestStream& s, Collected& c) {
  while (!c.done) {
    auto ev = s.next(Clock::now());
    if (!ev.is_ok()) return;
    for (auto& d : ev->deltas) {
      auto& t = c.tokens[d.index];
      t.insert(t.end(), d.token_ids.begin(), d.token_ids.end());
      for (const auto& lp : d.logprobs) {
        if (lp.top_logprobs.size() >= 2) {
          c.margins[d.index].push_back(lp.top_logprobs[0].logprob - lp.top_logprobs[1].logprob);
        }
      }
      c.text[d.index] += d.text;
      if (!d.text.empty()) c.text_chunks.push_back(d.text);
      if (d.finish != FinishReason::kNone) c.finish[d.index] = d.finish;
    }
    c.done = ev->done;
  }
}

// bf16 targets ask for the top two logprobs, whose gap says whether a step's
// decision is clear of bf16 noise.
inline EngineRequest greedy_request(const EngineTarget& t, std::vector<int32_t> prompt,
                                    int32_t max_tokens) {
  EngineRequest r;
  r.prompt = std::move(prompt);
  r.params.temperature = 0;
  r.params.max_tokens = max_tokens;
  r.params.ignore_eos = true;
  if (t.bf16_tolerance > 0) r.params.logprobs = 2;
  return r;
}

// Runs all requests to completion in one engine, returns outputs in order.
inline std::vector<Collected> run_all(Engine& e, std::vector<EngineRequest> reqs) {
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (auto& r : reqs) {
    auto s = e.submit(std::move(r));
    EXPECT_TRUE(s.is_ok()) << s.status().to_string();
    if (s.is_ok()) streams.push_back(*s);
  }
  std::vector<Collected> out(reqs.size());
  if (streams.size() != reqs.size()) return out;
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

// Expects `got` equal to `want` (see the header comment for bf16 targets,
// where want_margins and want_tops, one per step, are the reference run's
// top-two gaps and top logits). Returns the number of steps compared.
inline int expect_same_tokens(const EngineTarget& t, const std::vector<int32_t>& got,
                              const std::vector<int32_t>& want,
                              const std::vector<float>& want_margins,
                              const std::vector<double>& want_tops, const std::string& what) {
  if (t.bf16_tolerance <= 0) {
    EXPECT_EQ(got, want) << what;
    return static_cast<int>(want.size());
  }
  EXPECT_EQ(got.size(), want.size()) << what;
  EXPECT_EQ(want_margins.size(), want.size()) << what << ": logprobs missing";
  int compared = 0;
  const size_t n = std::min({got.size(), want.size(), want_margins.size(), want_tops.size()});
  for (size_t s = 0; s < n; ++s) {
    const double clear = 2 * t.bf16_tolerance * std::max(1.0, std::abs(want_tops[s]));
    if (got[s] != want[s]) {
      EXPECT_LE(want_margins[s], clear)
          << what << ": token " << s << " differs (" << got[s] << " for " << want[s]
          << ") where the reference's top two logits are " << want_margins[s] << " apart";
      // Allowed, but worth knowing how often bf16 rounding flips a choice.
      std::cout << "bf16 " << what << ": apart from token " << s << " of " << want.size()
                << " (top two " << want_margins[s] << " apart)\n";
      break;
    }
    if (want_margins[s] > clear) ++compared;
  }
  return compared;
}

// Engine-against-engine comparison on tiny-llama3 (margins from logprobs).
inline int expect_same_as(const EngineTarget& t, const Collected& got, const Collected& want,
                          const std::string& what, int32_t index = 0) {
  const auto& w = want.tokens.at(index);
  std::vector<float> margins;
  if (want.margins.count(index) != 0) margins = want.margins.at(index);
  const std::vector<double> tops(w.size(), kTinyLlama3LogitScale);
  auto g = got.tokens.count(index) != 0 ? got.tokens.at(index) : std::vector<int32_t>{};
  return expect_same_tokens(t, g, w, margins, tops, what);
}

// Greedy tokens of every fixture prompt, all in flight at once, against
// transformers' (tests/fixtures/<name>/expected.json; margins from its top-5
// logits). `model`: a fixture name, or a model directory whose expectations
// are the fixture `name`.
inline void greedy_matches_transformers(const EngineTarget& t, const std::string& name,
                                        const std::string& model = "") {
  auto e = make_engine(t, model.empty() ? name : model);
  ASSERT_TRUE(e);
  json cases = expected(name)["greedy"];
  std::vector<EngineRequest> reqs;
  for (const auto& c : cases) {
    std::vector<int32_t> ids = c["prompt_ids"].get<std::vector<int32_t>>();
    if (c.contains("prompt")) {
      auto enc = e->tokenizer()->encode(c["prompt"].get<std::string>(), true);
      ASSERT_TRUE(enc.is_ok());
      EXPECT_EQ(*enc, ids) << c["prompt"];
    }
    reqs.push_back(greedy_request(t, ids, static_cast<int32_t>(c["output_ids"].size())));
  }
  auto out = run_all(*e, std::move(reqs));
  int compared = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<float> margins;
    std::vector<double> tops;
    for (const auto& step : cases[i]["top5"]) {
      tops.push_back(step["logits"][0].get<double>());
      margins.push_back(static_cast<float>(tops.back() - step["logits"][1].get<double>()));
    }
    compared +=
        expect_same_tokens(t, out[i].tokens[0], cases[i]["output_ids"].get<std::vector<int32_t>>(),
                           margins, tops, name + " prompt " + std::to_string(i));
    EXPECT_EQ(out[i].finish[0], FinishReason::kLength);
    // Streamed text is exactly the decode of the streamed tokens.
    auto text = e->tokenizer()->decode(out[i].tokens[0], true);
    ASSERT_TRUE(text.is_ok());
    EXPECT_EQ(out[i].text[0], *text);
  }
  EXPECT_GT(compared, 0) << "no step compared";
  EXPECT_EQ(e->stats().kv_usage, 0.0);
}

inline std::vector<int32_t> prompt_of_length(int n, int salt) {
  std::vector<int32_t> p;
  for (int i = 0; i < n; ++i) p.push_back(3 + (i * 37 + salt * 101) % 800);
  return p;
}

// One request alone (decode batch 1) and among 15 others of other lengths.
inline void output_is_the_same_alone_or_in_a_batch_of_16(const EngineTarget& t) {
  auto alone_engine = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(alone_engine);
  auto alone = run_all(*alone_engine, {greedy_request(t, prompt_of_length(50, 7), 20)});

  auto e = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(e);
  std::vector<EngineRequest> reqs;
  for (int i = 0; i < 16; ++i) {
    reqs.push_back(
        greedy_request(t, i == 9 ? prompt_of_length(50, 7) : prompt_of_length(5 + 13 * i, i), 20));
  }
  auto batch = run_all(*e, std::move(reqs));
  EXPECT_GT(expect_same_as(t, batch[9], alone[0], "in a batch of 16"), 0) << "no step compared";
}

inline void prefix_cache_chunking_and_preemption_do_not_change_outputs(const EngineTarget& t) {
  std::vector<EngineRequest> reqs;
  const auto shared = prompt_of_length(70, 3);
  for (int i = 0; i < 6; ++i) {
    auto p = shared;
    auto tail = prompt_of_length(3 + i * 5, 40 + i);
    p.insert(p.end(), tail.begin(), tail.end());
    reqs.push_back(greedy_request(t, p, 24));
  }
  EngineConfig base;
  base.enable_prefix_caching = false;
  base.enable_chunked_prefill = false;
  base.max_num_batched_tokens = 1024;
  base.max_model_len = 256;
  auto er = make_engine(t, "tiny-llama3", base);
  ASSERT_TRUE(er);
  auto reference = run_all(*er, reqs);

  EngineConfig cached = base;
  cached.enable_prefix_caching = true;
  auto ec = make_engine(t, "tiny-llama3", cached);
  ASSERT_TRUE(ec);
  // Run the first request alone so later ones hit its cached blocks.
  auto first = run_all(*ec, {reqs[0]});
  int compared = expect_same_as(t, first[0], reference[0], "first request alone");
  auto with_cache = run_all(*ec, reqs);
  EXPECT_GT(ec->stats().prefix_hit_rate, 0.3);

  EngineConfig chunked = base;
  chunked.enable_chunked_prefill = true;
  chunked.max_num_batched_tokens = 16;
  chunked.max_num_seqs = 8;
  auto ek = make_engine(t, "tiny-llama3", chunked);
  ASSERT_TRUE(ek);
  auto with_chunks = run_all(*ek, reqs);

  EngineConfig tiny = base;
  tiny.enable_chunked_prefill = true;
  tiny.max_num_batched_tokens = 64;
  tiny.num_blocks = 12;  // 192 slots: six ~100-token sequences must preempt
  tiny.max_model_len = 128;
  auto et = make_engine(t, "tiny-llama3", tiny);
  ASSERT_TRUE(et);
  auto preempted = run_all(*et, reqs);
  EXPECT_GT(et->stats().num_preemptions, 0);

  for (size_t i = 0; i < reqs.size(); ++i) {
    const std::string n = ", request " + std::to_string(i);
    compared += expect_same_as(t, with_cache[i], reference[i], "prefix cache" + n);
    compared += expect_same_as(t, with_chunks[i], reference[i], "chunked" + n);
    compared += expect_same_as(t, preempted[i], reference[i], "preempted" + n);
  }
  EXPECT_GT(compared, 0) << "no step compared";
}

// Seeded draws depend on the seed only, not on what else is in the batch.
inline void seeded_sampling_is_reproducible_whatever_the_batch(const EngineTarget& t) {
  EngineRequest r;
  r.prompt = prompt_of_length(12, 1);
  r.params.temperature = 0.9f;
  r.params.top_p = 0.95f;
  r.params.seed = 1234;
  r.params.max_tokens = 16;
  r.params.ignore_eos = true;
  r.params.n = 3;
  auto ea = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(ea);
  auto a = run_all(*ea, {r});
  std::vector<EngineRequest> crowd;
  for (int i = 0; i < 5; ++i) crowd.push_back(greedy_request(t, prompt_of_length(9 + i, i), 10));
  crowd.push_back(r);
  auto eb = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(eb);
  auto b = run_all(*eb, crowd);
  for (int32_t i = 0; i < 3; ++i) EXPECT_EQ(a[0].tokens[i], b[5].tokens[i]) << "sequence " << i;
  // Different sequences of one request draw differently.
  EXPECT_NE(a[0].tokens[0], a[0].tokens[1]);
}

inline void stop_strings_end_the_text_and_are_never_streamed_partially(const EngineTarget& t) {
  auto e = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(e);
  auto plain = run_all(*e, {greedy_request(t, prompt_of_length(10, 2), 30)});
  const std::string text = plain[0].text[0];
  ASSERT_GT(text.size(), 12u) << "fixture model produced too little text";
  const std::string stop = text.substr(text.size() / 2, 3);
  const size_t cut = text.find(stop);

  auto req = greedy_request(t, prompt_of_length(10, 2), 30);
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

inline void cancel_ends_the_stream_and_frees_kv(const EngineTarget& t) {
  auto e = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->start().is_ok());
  auto s = e->submit(greedy_request(t, prompt_of_length(40, 5), 100000 / 1000));
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

inline void rejects_bad_requests_with_the_field(const EngineTarget& t) {
  auto e = make_engine(t, "tiny-llama3");
  ASSERT_TRUE(e);
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

}  // namespace baton::engine::test_cases
