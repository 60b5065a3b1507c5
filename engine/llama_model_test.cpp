// The forward pass against transformers: greedy tokens and top-5 logits of the
// fixture models (tools/make_fixtures.py), alone, chunked and batched.

#include "engine/llama_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <numeric>

namespace baton::engine {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kModels[] = {"tiny-llama3", "tiny-qwen2", "tiny-llama2", "tiny-mistral"};

fs::path fixture(const std::string& name) {
  return fs::path(BATON_SOURCE_DIR) / "tests" / "fixtures" / name;
}

json expected(const std::string& name) {
  std::ifstream in(fixture(name) / "expected.json");
  return json::parse(in);
}

struct Loaded {
  std::unique_ptr<kernels::Backend> backend;
  std::unique_ptr<LlamaModel> model;
};

Loaded load(const std::string& name, int32_t num_blocks = 64) {
  Loaded l;
  l.backend = kernels::make_cpu_backend(2);
  auto config = model::load_model_config(fixture(name));
  EXPECT_TRUE(config.is_ok()) << config.status().to_string();
  auto weights = model::load_model_weights(fixture(name), *config);
  EXPECT_TRUE(weights.is_ok()) << weights.status().to_string();
  ModelOptions opts;
  opts.num_blocks = num_blocks;
  opts.max_num_tokens = 512;
  opts.max_num_seqs = 16;
  auto m = LlamaModel::create(*l.backend, *config, *weights, opts);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  l.model = std::move(*m);
  return l;
}

// One sequence's state in these tests: blocks handed out consecutively.
struct Seq {
  std::vector<int32_t> tokens;
  std::vector<int32_t> blocks;
  int32_t computed = 0;
};

// Appends seq's tokens [computed, computed + count) to the batch.
void add_chunk(ForwardBatch& b, Seq& s, int32_t count, int32_t block_size, bool want_logits) {
  auto start = static_cast<int32_t>(b.tokens.size());
  for (int32_t i = 0; i < count; ++i) {
    int32_t p = s.computed + i;
    b.tokens.push_back(s.tokens[static_cast<size_t>(p)]);
    b.positions.push_back(p);
    b.slots.push_back(s.blocks[static_cast<size_t>(p / block_size)] * block_size + p % block_size);
  }
  s.computed += count;
  kernels::AttentionSeq a;
  a.q_start = start;
  a.q_len = count;
  a.context_len = s.computed;
  a.block_table = s.blocks.data();
  a.num_blocks = static_cast<int32_t>(s.blocks.size());
  b.seqs.push_back(a);
  if (want_logits) b.logit_rows.push_back(start + count - 1);
}

int32_t argmax(const float* row, int32_t n) {
  return static_cast<int32_t>(std::max_element(row, row + n) - row);
}

void expect_top5(const float* row, const json& top5, const std::string& where) {
  for (size_t j = 0; j < 5; ++j) {
    int id = top5["ids"][j];
    double want = top5["logits"][j];
    EXPECT_NEAR(row[id], want, 1e-3 * std::max(1.0, std::abs(want))) << where << " rank " << j;
  }
}

class FixtureModel : public ::testing::TestWithParam<const char*> {};

TEST_P(FixtureModel, GreedyMatchesTransformers) {
  const std::string name = GetParam();
  Loaded l = load(name);
  const int32_t bs = l.model->options().block_size;
  const int32_t vocab = l.model->vocab_size();
  int32_t next_block = 0;
  // Keep the document alive for the loop: a range over a temporary's member
  // would dangle.
  const json cases = expected(name)["greedy"];
  for (const auto& c : cases) {
    Seq s;
    s.tokens = c["prompt_ids"].get<std::vector<int32_t>>();
    size_t steps = c["output_ids"].size();
    for (size_t i = 0; i < (s.tokens.size() + steps + bs - 1) / bs; ++i)
      s.blocks.push_back(next_block++);
    std::vector<float> logits;
    ForwardBatch b;
    add_chunk(b, s, static_cast<int32_t>(s.tokens.size()), bs, true);
    for (size_t step = 0; step < steps; ++step) {
      ASSERT_TRUE(l.model->forward(b, logits).is_ok());
      const std::string where =
          name + " '" + c["prompt"].get<std::string>() + "' step " + std::to_string(step);
      expect_top5(logits.data(), c["top5"][step], where);
      int32_t tok = argmax(logits.data(), vocab);
      ASSERT_EQ(tok, c["output_ids"][step].get<int32_t>()) << where;
      s.tokens.push_back(tok);
      b.clear();
      add_chunk(b, s, 1, bs, true);
    }
    next_block = 0;  // the next prompt may reuse the cache from the start
  }
}

TEST_P(FixtureModel, ChunkedPrefillAndBatchingGiveTheSameLogits) {
  const std::string name = GetParam();
  Loaded l = load(name);
  const int32_t bs = l.model->options().block_size;
  const int32_t vocab = l.model->vocab_size();
  json cases = expected(name)["greedy"];

  // All prompts in one batch, blocks interleaved in reverse order.
  std::vector<Seq> seqs(cases.size());
  int32_t next_block = 63;
  for (size_t i = 0; i < cases.size(); ++i) {
    seqs[i].tokens = cases[i]["prompt_ids"].get<std::vector<int32_t>>();
    for (size_t j = 0; j < (seqs[i].tokens.size() + bs - 1) / bs; ++j) {
      seqs[i].blocks.push_back(next_block--);
    }
  }
  // Long prompt in chunks of 37 tokens, the rest whole, all in shared steps.
  std::vector<float> logits;
  std::vector<std::vector<float>> last(cases.size());
  bool pending = true;
  while (pending) {
    pending = false;
    ForwardBatch b;
    std::vector<size_t> finishing;
    for (size_t i = 0; i < seqs.size(); ++i) {
      Seq& s = seqs[i];
      auto left = static_cast<int32_t>(s.tokens.size()) - s.computed;
      if (left == 0) continue;
      int32_t chunk = std::min(left, 37);
      bool done = chunk == left;
      add_chunk(b, s, chunk, bs, done);
      if (done) finishing.push_back(i);
      pending = pending || !done;
    }
    if (b.tokens.empty()) break;
    ASSERT_TRUE(l.model->forward(b, logits).is_ok());
    for (size_t r = 0; r < finishing.size(); ++r) {
      last[finishing[r]].assign(logits.begin() + static_cast<long>(r) * vocab,
                                logits.begin() + static_cast<long>(r + 1) * vocab);
    }
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    ASSERT_EQ(last[i].size(), static_cast<size_t>(vocab));
    expect_top5(last[i].data(), cases[i]["top5"][0], name + " batched prompt " + std::to_string(i));
    EXPECT_EQ(argmax(last[i].data(), vocab), cases[i]["output_ids"][0].get<int32_t>());
  }
}

TEST_P(FixtureModel, KvExportImportRoundTrip) {
  const std::string name = GetParam();
  Loaded l = load(name);
  const int32_t bs = l.model->options().block_size;
  Seq s;
  s.tokens = expected(name)["greedy"][3]["prompt_ids"].get<std::vector<int32_t>>();
  for (size_t j = 0; j < (s.tokens.size() + bs - 1) / bs; ++j)
    s.blocks.push_back(static_cast<int32_t>(j));
  ForwardBatch b;
  add_chunk(b, s, static_cast<int32_t>(s.tokens.size()), bs, true);
  std::vector<float> logits;
  ASSERT_TRUE(l.model->forward(b, logits).is_ok());

  auto n = static_cast<int32_t>(s.tokens.size());
  std::vector<char> buf(l.model->kv_bytes_per_token() * static_cast<size_t>(n));
  ASSERT_TRUE(l.model->export_kv(s.blocks.data(), 0, n, buf.data()).is_ok());
  // Import into other blocks, then decode one token from each copy: identical.
  Seq t = s;
  t.blocks.clear();
  for (size_t j = 0; j < s.blocks.size() + 1; ++j) t.blocks.push_back(static_cast<int32_t>(40 + j));
  s.blocks.push_back(static_cast<int32_t>(s.blocks.size()));
  ASSERT_TRUE(l.model->import_kv(t.blocks.data(), 0, n, buf.data()).is_ok());
  std::vector<float> a, c;
  s.tokens.push_back(5);
  t.tokens.push_back(5);
  b.clear();
  add_chunk(b, s, 1, bs, true);
  ASSERT_TRUE(l.model->forward(b, a).is_ok());
  b.clear();
  add_chunk(b, t, 1, bs, true);
  ASSERT_TRUE(l.model->forward(b, c).is_ok());
  EXPECT_EQ(a, c);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, FixtureModel, ::testing::ValuesIn(kModels));

TEST(LlamaModel, RejectsInvalidBatches) {
  Loaded l = load("tiny-llama3");
  std::vector<int32_t> table = {0};
  ForwardBatch b;
  b.tokens = {100000};
  b.positions = {0};
  b.slots = {0};
  b.seqs.push_back({0, 1, 1, table.data(), 1});
  b.logit_rows = {0};
  std::vector<float> logits;
  Status s = l.model->forward(b, logits);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("vocabulary"), std::string::npos);
  b.tokens = {1};
  b.slots = {64 * 16};
  EXPECT_EQ(l.model->forward(b, logits).code(), StatusCode::kInvalidArgument);
  b.slots = {0};
  b.positions = {1 << 30};
  EXPECT_EQ(l.model->forward(b, logits).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton::engine
