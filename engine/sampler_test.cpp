#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "kernels/backend.h"

namespace baton::engine {
namespace {

// Distinct, tie-free logits with a long tail.
std::vector<float> test_logits(int32_t vocab, uint64_t salt = 1) {
  std::vector<float> x(static_cast<size_t>(vocab));
  SeqRng rng(salt, 0);
  for (auto& v : x) v = static_cast<float>(rng.next_unit() * 8.0 - 4.0);
  return x;
}

// Brute force: full sort, then top-k, top-p on the renormalised top-k, then
// min_p; all in double from the processed logits x.
std::vector<double> reference(const std::vector<float>& x, const SamplingParams& p) {
  const size_t v = x.size();
  std::vector<int32_t> order(v);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    return x[static_cast<size_t>(a)] > x[static_cast<size_t>(b)] ||
           (x[static_cast<size_t>(a)] == x[static_cast<size_t>(b)] && a < b);
  });
  const double mx = x[static_cast<size_t>(order[0])];
  std::vector<double> w(v);
  for (size_t i = 0; i < v; ++i) w[i] = std::exp(static_cast<double>(x[i]) - mx);
  size_t keep = p.top_k > 0 ? std::min(v, static_cast<size_t>(p.top_k)) : v;
  double mass = 0.0;
  for (size_t i = 0; i < keep; ++i) mass += w[static_cast<size_t>(order[i])];
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    size_t i = 0;
    while (i < keep && cum < p.top_p * mass) cum += w[static_cast<size_t>(order[i++])];
    keep = std::max<size_t>(i, 1);
  }
  std::vector<double> out(v, 0.0);
  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    const auto t = static_cast<size_t>(order[i]);
    if (w[t] >= p.min_p) {  // w is p_t / p_max
      out[t] = w[t];
      total += w[t];
    }
  }
  for (auto& o : out) o /= total;
  return out;
}

std::vector<float> scaled(std::vector<float> x, float t) {
  for (auto& v : x) v /= t;
  return x;
}

void expect_distribution(const std::vector<double>& got, const std::vector<double>& want) {
  ASSERT_EQ(got.size(), want.size());
  // Same support exactly; probabilities up to float rounding of the logits.
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i] > 0.0, want[i] > 0.0) << "token " << i;
    EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
  }
}

TEST(SamplerTest, GreedyPicksArgmaxWithLowestIdOnTies) {
  Sampler s;
  SamplingParams p;
  p.temperature = 0.0f;
  p.logprobs = 0;  // the drawn token's logprob only
  SeqRng rng(1, 0);
  const std::vector<float> logits{0.5f, 2.0f, -1.0f, 2.0f};
  SampleResult r = s.sample(logits, p, {}, rng);
  EXPECT_EQ(r.token, 1);
  const double z = std::log(std::exp(0.5) + 2 * std::exp(2.0) + std::exp(-1.0));
  EXPECT_NEAR(r.logprob, 2.0 - z, 1e-5);
}

TEST(SamplerTest, EachFilterMatchesBruteForce) {
  Sampler s;
  const auto logits = test_logits(1000);
  struct Case {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
  };
  const Case cases[] = {
      {1.0f, -1, 1.0f, 0.0f},  {0.7f, 50, 1.0f, 0.0f}, {1.0f, -1, 0.9f, 0.0f},
      {1.3f, -1, 0.3f, 0.0f},  {1.0f, -1, 1.0f, 0.2f}, {0.8f, 100, 0.8f, 0.0f},
      {1.0f, 40, 0.95f, 0.1f}, {1.0f, 1, 1.0f, 0.0f},  {2.0f, -1, 0.999f, 0.0f},
  };
  for (const Case& c : cases) {
    SamplingParams p;
    p.temperature = c.temperature;
    p.top_k = c.top_k;
    p.top_p = c.top_p;
    p.min_p = c.min_p;
    SCOPED_TRACE(testing::Message() << "T=" << c.temperature << " k=" << c.top_k << " p=" << c.top_p
                                    << " min_p=" << c.min_p);
    expect_distribution(s.distribution(logits, p, {}), reference(scaled(logits, c.temperature), p));
  }
}

TEST(SamplerTest, TopPNeedingMoreThanTheInitialPrefixStillMatches) {
  Sampler s;
  std::vector<float> flat(5000, 0.0f);
  for (size_t i = 0; i < flat.size(); ++i) flat[i] = 0.001f * static_cast<float>(i % 97);
  SamplingParams p;
  p.top_p = 0.9f;
  expect_distribution(s.distribution(flat, p, {}), reference(flat, p));
}

TEST(SamplerTest, DrawsFollowTheDistribution) {
  Sampler s;
  const std::vector<float> logits{0.0f, 1.0f, 2.0f, -0.5f, 1.5f};
  SamplingParams p;
  p.top_k = 4;
  const auto want = reference(logits, p);
  std::vector<int> counts(logits.size(), 0);
  SeqRng rng(123, 0);
  constexpr int kDraws = 20000;
  for (int i = 0; i < kDraws; ++i)
    ++counts[static_cast<size_t>(s.sample(logits, p, {}, rng).token)];
  EXPECT_EQ(counts[3], 0);  // outside the top 4
  for (size_t t = 0; t < logits.size(); ++t) {
    // 5 standard deviations of a binomial: deterministic with this seed.
    const double sd = std::sqrt(kDraws * want[t] * (1 - want[t]));
    EXPECT_NEAR(counts[t], kDraws * want[t], 5 * sd + 1) << "token " << t;
  }
}

TEST(SamplerTest, RepetitionPenaltyFollowsHuggingFace) {
  Sampler s;
  const std::vector<float> logits{2.0f, -2.0f, 1.0f, 0.5f};
  SamplingParams p;
  p.repetition_penalty = 2.0f;
  p.logprobs = 4;
  const std::vector<int32_t> prompt{0, 1};
  const std::vector<int32_t> output{1};
  SeqRng rng(1, 0);
  SampleResult r = s.sample(logits, p, {prompt, output, {}}, rng);
  // Processed: {1.0, -4.0, 1.0, 0.5}; each seen token penalised once.
  const std::vector<float> processed{1.0f, -4.0f, 1.0f, 0.5f};
  double z = 0;
  for (float v : processed) z += std::exp(v);
  z = std::log(z);
  ASSERT_EQ(r.top_logprobs.size(), 4u);
  EXPECT_EQ(r.top_logprobs[0].token, 0);  // tie with 2, lower id first
  EXPECT_EQ(r.top_logprobs[1].token, 2);
  EXPECT_EQ(r.top_logprobs[2].token, 3);
  EXPECT_EQ(r.top_logprobs[3].token, 1);
  EXPECT_NEAR(r.top_logprobs[3].logprob, -4.0 - z, 1e-5);
  EXPECT_NEAR(r.top_logprobs[0].logprob, 1.0 - z, 1e-5);
}

TEST(SamplerTest, FrequencyAndPresencePenaltiesCountOutputOnly) {
  Sampler s;
  const std::vector<float> logits{3.0f, 3.0f, 3.0f, 0.0f};
  SamplingParams p;
  p.temperature = 0.0f;
  p.frequency_penalty = 0.5f;
  p.presence_penalty = 1.0f;
  p.logprobs = 4;
  const std::vector<int32_t> prompt{2, 2, 2};  // the prompt is not penalised
  const std::vector<int32_t> output{0, 0, 1};
  SeqRng rng(1, 0);
  SampleResult r = s.sample(logits, p, {prompt, output, {}}, rng);
  EXPECT_EQ(r.token, 2);
  // token 0: 3 - 0.5*2 - 1 = 1; token 1: 3 - 0.5 - 1 = 1.5.
  const std::vector<float> processed{1.0f, 1.5f, 3.0f, 0.0f};
  double z = 0;
  for (float v : processed) z += std::exp(v);
  EXPECT_NEAR(r.top_logprobs[1].logprob, 1.5 - std::log(z), 1e-5);
  EXPECT_NEAR(r.top_logprobs[2].logprob, 1.0 - std::log(z), 1e-5);
  EXPECT_NEAR(r.logprob, 3.0 - std::log(z), 1e-5);
}

TEST(SamplerTest, MinTokensMasksEosAndStopTokens) {
  Sampler s;
  const std::vector<float> logits{0.0f, 5.0f, 4.0f, 1.0f};
  const std::vector<int32_t> eos{1};
  SamplingParams p;
  p.temperature = 0.0f;
  p.min_tokens = 2;
  p.stop_token_ids = {2};
  SeqRng rng(1, 0);
  const std::vector<int32_t> one{3};
  EXPECT_EQ(s.sample(logits, p, {{}, one, eos}, rng).token, 3);
  const std::vector<int32_t> two{3, 3};
  EXPECT_EQ(s.sample(logits, p, {{}, two, eos}, rng).token, 1);
  p.ignore_eos = true;  // EOS is then not masked (and not a stop)
  EXPECT_EQ(s.sample(logits, p, {{}, one, eos}, rng).token, 1);
}

TEST(SamplerTest, SeededSequencesAreIndependentOfBatchOrder) {
  const auto a_logits = test_logits(2000, 7);
  const auto b_logits = test_logits(2000, 8);
  SamplingParams p;
  p.top_p = 0.95f;
  auto run = [&](bool a_first) {
    Sampler s;
    SeqRng a(42, 0);
    SeqRng b(42, 1);
    std::vector<int32_t> out_a;
    std::vector<int32_t> out_b;
    for (int step = 0; step < 20; ++step) {
      if (a_first) {
        out_a.push_back(s.sample(a_logits, p, {}, a).token);
        out_b.push_back(s.sample(b_logits, p, {}, b).token);
      } else {
        out_b.push_back(s.sample(b_logits, p, {}, b).token);
        // a second, unrelated sequence in this batch does not disturb a
        SeqRng other(7, 0);
        s.sample(a_logits, p, {}, other);
        out_a.push_back(s.sample(a_logits, p, {}, a).token);
      }
    }
    return std::make_pair(out_a, out_b);
  };
  const auto first = run(true);
  const auto second = run(false);
  EXPECT_EQ(first.first, second.first);
  EXPECT_EQ(first.second, second.second);
  // Sibling streams differ.
  EXPECT_NE(first.first, std::vector<int32_t>(first.first.size(), first.first[0]));
  SeqRng x(42, 0);
  SeqRng y(42, 1);
  EXPECT_NE(x.next_u64(), y.next_u64());
}

TEST(SamplerTest, TopLogprobsAreSortedAndMatchLogSoftmax) {
  Sampler s;
  const auto logits = test_logits(500, 3);
  SamplingParams p;
  p.temperature = 0.5f;
  p.top_k = 5;
  p.logprobs = 20;
  SeqRng rng(9, 0);
  SampleResult r = s.sample(logits, p, {}, rng);
  ASSERT_EQ(r.top_logprobs.size(), 20u);
  double z = 0;
  for (float v : logits) z += std::exp(static_cast<double>(v) / 0.5);
  z = std::log(z);
  for (size_t i = 0; i < r.top_logprobs.size(); ++i) {
    const auto& tl = r.top_logprobs[i];
    EXPECT_NEAR(tl.logprob, logits[static_cast<size_t>(tl.token)] / 0.5 - z, 1e-4);
    if (i > 0) {
      EXPECT_GE(r.top_logprobs[i - 1].logprob, tl.logprob);
    }
  }
  // Processed (pre-truncation) logprob of the drawn token, one of the top 5.
  EXPECT_NEAR(r.logprob, logits[static_cast<size_t>(r.token)] / 0.5 - z, 1e-4);
  EXPECT_GE(r.logprob, r.top_logprobs[4].logprob);
}

TEST(SamplingParamsTest, ValidationNamesTheField) {
  auto error_of = [](auto mutate) {
    SamplingParams p;
    mutate(p);
    Status st = p.validate();
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    return st.message();
  };
  EXPECT_TRUE(SamplingParams{}.validate().is_ok());
  EXPECT_NE(error_of([](auto& p) { p.temperature = -0.1f; }).find("temperature"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.top_p = 0.0f; }).find("top_p"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.top_p = 1.5f; }).find("top_p"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.top_k = 0; }).find("top_k"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.top_k = -2; }).find("top_k"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.min_p = 1.1f; }).find("min_p"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.presence_penalty = 2.5f; }).find("presence_penalty"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.frequency_penalty = -3.0f; }).find("frequency_penalty"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.repetition_penalty = 0.0f; }).find("repetition_penalty"),
            std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.max_tokens = 0; }).find("max_tokens"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.min_tokens = 20; }).find("min_tokens"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.n = 0; }).find("n must"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.logprobs = 21; }).find("logprobs"), std::string::npos);
  EXPECT_NE(error_of([](auto& p) { p.stop_token_ids = {-1}; }).find("stop_token_ids"),
            std::string::npos);
  SamplingParams ok;
  ok.temperature = 0.0f;
  ok.top_k = 1;
  ok.logprobs = 0;
  ok.presence_penalty = -2.0f;
  EXPECT_TRUE(ok.validate().is_ok());
}

}  // namespace
}  // namespace baton::engine

namespace baton::engine {
namespace {

// The engine's path: rows prepared for a batch (several reading one logits
// row, as forks of one prompt do), sampled by the CPU backend in one call,
// give what Sampler::sample gives each sequence alone, draw for draw.
TEST(SamplerTest, BackendRowsSampleLikeTheSampler) {
  const int32_t vocab = 3000;
  std::vector<float> logits;
  for (uint64_t r = 0; r < 3; ++r) {
    const std::vector<float> row = test_logits(vocab, 100 + r);
    logits.insert(logits.end(), row.begin(), row.end());
  }
  const std::vector<int32_t> prompt = {5, 17, 17, 2999, 40};
  const std::vector<int32_t> output = {17, 8, 8, 8, 1200};
  const std::vector<int32_t> eos = {8};
  std::vector<SamplingParams> params(6);
  params[0].temperature = 0.0f;
  params[0].logprobs = 3;
  params[1].temperature = 0.7f;
  params[1].top_k = 40;
  params[1].top_p = 0.9f;
  params[1].logprobs = 0;
  params[2].temperature = 1.2f;
  params[2].min_p = 0.05f;
  params[2].repetition_penalty = 1.3f;
  params[2].frequency_penalty = 0.5f;
  params[2].presence_penalty = 0.25f;
  params[3].temperature = 0.0f;
  params[3].repetition_penalty = 0.8f;
  params[3].min_tokens = 10;  // masks EOS (8) and the stop token
  params[3].stop_token_ids = {1200};
  params[4] = params[3];
  params[4].temperature = 0.9f;
  params[4].ignore_eos = true;
  params[5].temperature = 1.0f;
  params[5].top_k = 1;

  auto backend = kernels::make_cpu_backend(1);
  auto buf = backend->allocate(logits.size() * 4);
  ASSERT_TRUE(buf.is_ok());
  ASSERT_TRUE(backend->upload(logits.data(), logits.size() * 4, buf->data()).is_ok());
  const kernels::Tensor t = buf->tensor(DType::kF32, {3, vocab});

  Sampler sampler;
  for (int step = 0; step < 4; ++step) {
    SampleBatch batch;
    std::vector<SeqRng> rngs, copies;
    for (size_t i = 0; i < params.size(); ++i) rngs.emplace_back(7 + step, static_cast<int32_t>(i));
    copies = rngs;
    for (size_t i = 0; i < params.size(); ++i) {
      sampler.prepare(params[i], SampleContext{prompt, output, eos}, rngs[i],
                      static_cast<int32_t>(i % 3), vocab, batch);
    }
    batch.finalize();
    std::vector<kernels::SampleOutput> out(batch.rows.size());
    ASSERT_TRUE(backend->sample(t, batch.rows, out).is_ok());
    for (size_t i = 0; i < params.size(); ++i) {
      const std::span<const float> row(logits.data() + (i % 3) * vocab, vocab);
      const SampleResult want =
          sampler.sample(row, params[i], SampleContext{prompt, output, eos}, copies[i]);
      const SampleResult got = Sampler::result(out[i], params[i]);
      EXPECT_EQ(got.token, want.token) << "step " << step << " params " << i;
      EXPECT_EQ(got.logprob, want.logprob) << "params " << i;
      EXPECT_EQ(got.top_logprobs, want.top_logprobs) << "params " << i;
      EXPECT_EQ(rngs[i].next_u64(), copies[i].next_u64()) << "rng use differs, params " << i;
    }
    if (step == 0) {
      // min_tokens: neither EOS nor the stop token can come out.
      EXPECT_NE(Sampler::result(out[3], params[3]).token, 8);
      EXPECT_NE(Sampler::result(out[3], params[3]).token, 1200);
    }
  }
}

}  // namespace
}  // namespace baton::engine
