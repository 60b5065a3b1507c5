// The fixture models on the GPU against transformers (tools/make_fixtures.py):
// with f32 activations, greedy tokens identical and top-5 logits within 1e-3
// as on the CPU; with bf16 activations (what `--device cuda` serves), top-5
// logits within bf16 tolerance under teacher forcing, and the greedy choice
// equal wherever transformers' top two logits are further apart than that
// tolerance. Sampling on the GPU: greedy rows pick the logits' argmax. Then
// the whole Engine on `device = "cuda"`, seeded sampling included.
//
// Needs a GPU: skipped with a message where none is visible.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/llama_model.h"

#if BATON_TEST_HAVE_CUDA
#include "kernels/cuda/cuda_backend.h"
#endif

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

std::unique_ptr<kernels::Backend> gpu_backend(DType act) {
#if BATON_TEST_HAVE_CUDA
  auto b = kernels::cuda::make_cuda_backend({.device = 0, .activation_dtype = act});
  if (b.is_ok()) return std::move(b).value();
#else
  (void)act;
#endif
  return nullptr;
}

std::unique_ptr<LlamaModel> load(kernels::Backend& backend, const std::string& name,
                                 bool graphs = true) {
  auto config = model::load_model_config(fixture(name));
  EXPECT_TRUE(config.is_ok()) << config.status().to_string();
  auto weights = model::load_model_weights(fixture(name), *config);
  EXPECT_TRUE(weights.is_ok()) << weights.status().to_string();
  ModelOptions opts;
  opts.num_blocks = 64;
  opts.max_num_tokens = 512;
  opts.max_num_seqs = 16;
  opts.kv_dtype = backend.activation_dtype();
  opts.cuda_graphs = graphs;
  auto m = LlamaModel::create(backend, *config, *weights, opts);
  EXPECT_TRUE(m.is_ok()) << m.status().to_string();
  return m.is_ok() ? std::move(m).value() : nullptr;
}

// Sequence whose blocks are 0, 1, 2, ...; appends tokens [from, to) to b.
void add_tokens(ForwardBatch& b, const std::vector<int32_t>& tokens, std::vector<int32_t>& blocks,
                int32_t from, int32_t to, int32_t bs) {
  while (static_cast<int32_t>(blocks.size()) * bs < to) {
    blocks.push_back(static_cast<int32_t>(blocks.size()));
  }
  const auto start = static_cast<int32_t>(b.tokens.size());
  for (int32_t p = from; p < to; ++p) {
    b.tokens.push_back(tokens[static_cast<size_t>(p)]);
    b.positions.push_back(p);
    b.slots.push_back(blocks[static_cast<size_t>(p / bs)] * bs + p % bs);
  }
  b.seqs.push_back({start, to - from, to, blocks.data(), static_cast<int32_t>(blocks.size())});
  b.logit_rows.push_back(start + (to - from) - 1);
}

class GpuFixture : public ::testing::TestWithParam<const char*> {};

// Teacher-forced run over transformers' greedy continuation; `check` sees
// each step's logits and the expected record.
template <typename Check>
void run_forced(LlamaModel& m, const json& c, Check check) {
  const int32_t bs = m.options().block_size;
  std::vector<int32_t> tokens = c["prompt_ids"].get<std::vector<int32_t>>();
  const auto out = c["output_ids"].get<std::vector<int32_t>>();
  std::vector<int32_t> blocks;
  std::vector<float> logits;
  ForwardBatch b;
  add_tokens(b, tokens, blocks, 0, static_cast<int32_t>(tokens.size()), bs);
  for (size_t step = 0; step < out.size(); ++step) {
    ASSERT_TRUE(m.forward(b, logits).is_ok());
    check(logits, step);
    tokens.push_back(out[step]);
    b.clear();
    const auto n = static_cast<int32_t>(tokens.size());
    add_tokens(b, tokens, blocks, n - 1, n, bs);
  }
}

TEST_P(GpuFixture, F32GreedyMatchesTransformers) {
  auto backend = gpu_backend(DType::kF32);
  if (!backend) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  const std::string name = GetParam();
  auto m = load(*backend, name);
  ASSERT_TRUE(m);
  const json cases = expected(name)["greedy"];
  for (const auto& c : cases) {
    run_forced(*m, c, [&](const std::vector<float>& logits, size_t step) {
      const auto vocab = static_cast<size_t>(m->vocab_size());
      const int32_t top = static_cast<int32_t>(
          std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
      EXPECT_EQ(top, c["output_ids"][step].get<int32_t>()) << name << " step " << step;
      for (size_t j = 0; j < 5; ++j) {
        const int id = c["top5"][step]["ids"][j];
        const double want = c["top5"][step]["logits"][j];
        EXPECT_NEAR(logits[static_cast<size_t>(id)], want, 1e-3 * std::max(1.0, std::abs(want)))
            << name << " step " << step << " rank " << j;
      }
    });
  }
}

TEST_P(GpuFixture, Bf16LogitsWithinTolerance) {
  auto backend = gpu_backend(DType::kBF16);
  if (!backend) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  const std::string name = GetParam();
  auto m = load(*backend, name);
  ASSERT_TRUE(m);
  // bf16 keeps 8 bits: per-op rounding of ~4e-3 through two layers and the
  // LM head; logits are within a few hundredths of transformers' f32 ones.
  constexpr double kTol = 0.05;
  const json cases = expected(name)["greedy"];
  int decided = 0;
  for (const auto& c : cases) {
    run_forced(*m, c, [&](const std::vector<float>& logits, size_t step) {
      const json& top5 = c["top5"][step];
      for (size_t j = 0; j < 5; ++j) {
        const int id = top5["ids"][j];
        const double want = top5["logits"][j];
        EXPECT_NEAR(logits[static_cast<size_t>(id)], want, kTol * std::max(1.0, std::abs(want)))
            << name << " step " << step << " rank " << j;
      }
      const double margin = top5["logits"][0].get<double>() - top5["logits"][1].get<double>();
      if (margin > 2 * kTol * std::max(1.0, std::abs(top5["logits"][0].get<double>()))) {
        const auto vocab = static_cast<size_t>(m->vocab_size());
        const int32_t top = static_cast<int32_t>(
            std::max_element(logits.begin(), logits.begin() + vocab) - logits.begin());
        EXPECT_EQ(top, c["output_ids"][step].get<int32_t>()) << name << " step " << step;
        ++decided;
      }
    });
  }
  EXPECT_GT(decided, 0) << "no step had a clear winner: the check above never ran";
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GpuFixture, ::testing::ValuesIn(kModels));

// Decode steps replayed from captured graphs (batch sizes 1 and 3, the latter
// padded to 4) give the logits of the same steps run op by op.
TEST(GpuGraphs, ReplayedDecodeStepsMatchEagerOnes) {
  auto gb = gpu_backend(DType::kBF16), eb = gpu_backend(DType::kBF16);
  if (!gb || !eb) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  auto graphed = load(*gb, "tiny-llama3", true), eager = load(*eb, "tiny-llama3", false);
  ASSERT_TRUE(graphed && eager);
  const int32_t bs = graphed->options().block_size;
  const json cases = expected("tiny-llama3")["greedy"];
  for (size_t batch : {size_t{1}, size_t{3}}) {
    std::vector<std::vector<int32_t>> tokens, blocks(batch);
    for (size_t s = 0; s < batch; ++s) {
      tokens.push_back(cases[s]["prompt_ids"].get<std::vector<int32_t>>());
      // Disjoint blocks per sequence: 16 each.
      for (int32_t i = 0; i < 16; ++i) blocks[s].push_back(static_cast<int32_t>(s) * 16 + i);
    }
    auto step = [&](LlamaModel& m, bool prefill, std::vector<float>& logits) {
      ForwardBatch b;
      for (size_t s = 0; s < batch; ++s) {
        const auto len = static_cast<int32_t>(tokens[s].size());
        const int32_t from = prefill ? 0 : len - 1;
        const auto start = static_cast<int32_t>(b.tokens.size());
        for (int32_t p = from; p < len; ++p) {
          b.tokens.push_back(tokens[s][static_cast<size_t>(p)]);
          b.positions.push_back(p);
          b.slots.push_back(blocks[s][static_cast<size_t>(p / bs)] * bs + p % bs);
        }
        b.seqs.push_back({start, len - from, len, blocks[s].data(), 16});
        b.logit_rows.push_back(start + (len - from) - 1);
      }
      ASSERT_TRUE(m.forward(b, logits).is_ok());
    };
    std::vector<float> lg, le;
    step(*graphed, true, lg);
    step(*eager, true, le);
    for (int i = 0; i < 8; ++i) {
      for (size_t s = 0; s < batch; ++s) tokens[s].push_back((i * 37 + static_cast<int>(s)) % 900);
      step(*graphed, false, lg);
      step(*eager, false, le);
      ASSERT_EQ(lg.size(), le.size());
      for (size_t j = 0; j < lg.size(); ++j) {
        ASSERT_NEAR(lg[j], le[j], 1e-2 * std::max(1.0f, std::abs(le[j])))
            << "batch " << batch << " step " << i << " logit " << j;
      }
    }
  }
  EXPECT_EQ(graphed->graph_replays(), 16);  // every decode step of both batches
  EXPECT_EQ(eager->graph_replays(), 0);
}

// The engine on the GPU: KV pool sized from free memory, requests through the
// scheduler, greedy output equal to transformers' wherever the tokens so far
// agree and transformers' margin at the step is clear of bf16 error. A
// different token at an unclear step ends that prompt's check.
TEST(GpuEngine, ServesFixtureGreedily) {
  if (!gpu_backend(DType::kBF16)) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  EngineConfig ec;
  // tiny-qwen2: its logits are large and its margins wide, so many steps
  // are decided beyond doubt.
  ec.model = fixture("tiny-qwen2").string();
  ec.device = "cuda";
  ec.gpu_memory_utilization = 0.5;
  auto engine = Engine::create(ec);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  const json cases = expected("tiny-qwen2")["greedy"];
  std::vector<std::shared_ptr<RequestStream>> streams;
  for (const auto& c : cases) {
    EngineRequest r;
    r.prompt = c["prompt_ids"].get<std::vector<int32_t>>();
    r.params.temperature = 0.0f;
    r.params.max_tokens = static_cast<int32_t>(c["output_ids"].size());
    r.params.ignore_eos = true;
    auto s = (*engine)->submit(std::move(r));
    ASSERT_TRUE(s.is_ok()) << s.status().to_string();
    streams.push_back(*s);
  }
  ASSERT_TRUE((*engine)->run_until_idle().is_ok());
  int checked = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    std::vector<int32_t> got;
    for (;;) {
      auto ev = streams[i]->next(std::chrono::steady_clock::now() + std::chrono::seconds(5));
      ASSERT_TRUE(ev.is_ok()) << ev.status().to_string();
      for (const auto& d : ev->deltas)
        got.insert(got.end(), d.token_ids.begin(), d.token_ids.end());
      if (ev->done) break;
    }
    const auto want = cases[i]["output_ids"].get<std::vector<int32_t>>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t step = 0; step < want.size(); ++step) {
      const json& top5 = cases[i]["top5"][step];
      const double top = top5["logits"][0].get<double>();
      const bool clear = top - top5["logits"][1].get<double>() > 0.1 * std::max(1.0, std::abs(top));
      if (clear) {
        EXPECT_EQ(got[step], want[step]) << "prompt " << i << " step " << step;
        ++checked;
      }
      if (got[step] != want[step]) break;
    }
  }
  EXPECT_GT(checked, 0);
}

// The KV of a prompt exported from the GPU cache to host memory and imported
// into other blocks decodes exactly as the original (the P/D hand-off), and
// a second, smaller transfer reuses the staging memory of the first.
TEST(GpuKv, ExportImportRoundTrip) {
  auto backend = gpu_backend(DType::kBF16);
  if (!backend) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  auto m = load(*backend, "tiny-llama3");
  ASSERT_TRUE(m);
  const int32_t bs = m->options().block_size;
  std::vector<int32_t> tokens =
      expected("tiny-llama3")["greedy"][3]["prompt_ids"].get<std::vector<int32_t>>();
  const auto n = static_cast<int32_t>(tokens.size());
  std::vector<int32_t> src, dst;
  ForwardBatch b;
  add_tokens(b, tokens, src, 0, n, bs);
  std::vector<float> logits;
  ASSERT_TRUE(m->forward(b, logits).is_ok());
  for (int32_t repeat = 0; repeat < 2; ++repeat) {
    const int32_t count = repeat == 0 ? n : n / 2;
    std::vector<char> buf(m->kv_bytes_per_token() * static_cast<size_t>(count));
    Status st = m->export_kv(src.data(), 0, count, buf.data());
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    dst.clear();
    for (int32_t i = 0; i < 16; ++i) dst.push_back(40 + i);  // room for 256 tokens
    st = m->import_kv(dst.data(), 0, count, buf.data());
    ASSERT_TRUE(st.is_ok()) << st.to_string();
    // Decode one token after `count` cached tokens from each copy.
    std::vector<float> a, c;
    std::vector<int32_t> t(tokens.begin(), tokens.begin() + count);
    t.push_back(5);
    while (static_cast<int32_t>(src.size()) * bs < count + 1) {
      src.push_back(static_cast<int32_t>(src.size()));
    }
    ForwardBatch x;
    add_tokens(x, t, src, count, count + 1, bs);
    ASSERT_TRUE(m->forward(x, a).is_ok());
    x.clear();
    add_tokens(x, t, dst, count, count + 1, bs);
    ASSERT_TRUE(m->forward(x, c).is_ok());
    EXPECT_EQ(a, c) << "transfer of " << count << " tokens";
  }
}

// forward_sample on the GPU: greedy rows pick the argmax of the logits that
// forward() returns for the same step (eager prefill and replayed decode
// steps alike), and two rows may read one logits row.
TEST(GpuSampling, GreedyRowsPickTheArgmaxOfTheLogits) {
  auto backend = gpu_backend(DType::kBF16);
  if (!backend) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  auto m = load(*backend, "tiny-llama3");
  ASSERT_TRUE(m);
  const int32_t bs = m->options().block_size;
  const json cases = expected("tiny-llama3")["greedy"];
  std::vector<std::vector<int32_t>> tokens, blocks(3);
  for (size_t s = 0; s < 3; ++s) {
    tokens.push_back(cases[s]["prompt_ids"].get<std::vector<int32_t>>());
    for (int32_t i = 0; i < 16; ++i) blocks[s].push_back(static_cast<int32_t>(s) * 16 + i);
  }
  std::vector<kernels::SampleRow> rows(4);
  for (int i = 0; i < 4; ++i) {
    rows[static_cast<size_t>(i)].logits_row = std::min(i, 2);
    rows[static_cast<size_t>(i)].temperature = 0.0f;
  }
  const auto vocab = static_cast<size_t>(m->vocab_size());
  for (int step = 0; step < 6; ++step) {
    ForwardBatch b;
    for (size_t s = 0; s < 3; ++s) {
      const auto len = static_cast<int32_t>(tokens[s].size());
      const int32_t from = step == 0 ? 0 : len - 1;
      const auto start = static_cast<int32_t>(b.tokens.size());
      for (int32_t p = from; p < len; ++p) {
        b.tokens.push_back(tokens[s][static_cast<size_t>(p)]);
        b.positions.push_back(p);
        b.slots.push_back(blocks[s][static_cast<size_t>(p / bs)] * bs + p % bs);
      }
      b.seqs.push_back({start, len - from, len, blocks[s].data(), 16});
      b.logit_rows.push_back(start + (len - from) - 1);
    }
    // The same step twice: KV appends are idempotent, so both calls see the
    // same context.
    std::vector<float> logits;
    ASSERT_TRUE(m->forward(b, logits).is_ok());
    std::vector<kernels::SampleOutput> out;
    ASSERT_TRUE(m->forward_sample(b, rows, out).is_ok());
    ASSERT_EQ(out.size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      const float* row = logits.data() + static_cast<size_t>(rows[i].logits_row) * vocab;
      const auto want = static_cast<int32_t>(std::max_element(row, row + vocab) - row);
      EXPECT_EQ(out[i].token, want) << "step " << step << " row " << i;
    }
    for (size_t s = 0; s < 3; ++s) tokens[s].push_back(out[s].token);
  }
  EXPECT_GT(m->graph_replays(), 0);
}

// Seeded sampling through the engine on the GPU: the same seed gives the
// same tokens whether the request runs alone or among others, and another
// seed gives other tokens.
TEST(GpuEngine, SeededSamplingIsReproducibleWhateverTheBatch) {
  if (!gpu_backend(DType::kBF16)) GTEST_SKIP() << "no GPU here (or a build without CUDA)";
  EngineConfig ec;
  ec.model = fixture("tiny-llama3").string();
  ec.device = "cuda";
  ec.gpu_memory_utilization = 0.5;
  auto engine = Engine::create(ec);
  ASSERT_TRUE(engine.is_ok()) << engine.status().to_string();
  const std::vector<int32_t> prompt = expected("tiny-llama3")["greedy"][0]["prompt_ids"];
  auto request = [&](uint64_t seed) {
    EngineRequest r;
    r.prompt = prompt;
    r.params.temperature = 1.0f;
    r.params.top_p = 0.95f;
    r.params.top_k = 50;
    r.params.repetition_penalty = 1.1f;
    r.params.seed = seed;
    r.params.max_tokens = 24;
    r.params.ignore_eos = true;
    return r;
  };
  auto run = [&](const std::vector<uint64_t>& seeds) {
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (uint64_t seed : seeds) {
      auto s = (*engine)->submit(request(seed));
      EXPECT_TRUE(s.is_ok());
      streams.push_back(*s);
    }
    EXPECT_TRUE((*engine)->run_until_idle().is_ok());
    std::vector<std::vector<int32_t>> outs;
    for (auto& st : streams) {
      std::vector<int32_t> got;
      for (;;) {
        auto ev = st->next(std::chrono::steady_clock::now() + std::chrono::seconds(5));
        EXPECT_TRUE(ev.is_ok());
        if (!ev.is_ok()) break;
        for (const auto& d : ev->deltas)
          got.insert(got.end(), d.token_ids.begin(), d.token_ids.end());
        if (ev->done) break;
      }
      outs.push_back(got);
    }
    return outs;
  };
  const auto alone = run({7});
  const auto batched = run({1, 2, 7, 3, 4});
  ASSERT_EQ(alone[0].size(), 24u);
  EXPECT_EQ(alone[0], batched[2]);
  EXPECT_NE(batched[0], batched[1]);
}

TEST(GpuEngine, UnknownDeviceIsAnError) {
  EngineConfig ec;
  ec.model = fixture("tiny-llama3").string();
  ec.device = "tpu";
  auto engine = Engine::create(ec);
  ASSERT_FALSE(engine.is_ok());
  EXPECT_EQ(engine.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace baton::engine
