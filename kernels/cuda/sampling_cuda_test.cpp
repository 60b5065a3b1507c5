// Backend::sample on the GPU against the host pipeline (HostSampler, the CPU
// backend's sample op) on the same logits:
// - greedy picks the very same token, penalties and masks included, with the
//   same logprobs (within 1e-4) and the same top-N ids;
// - a non-greedy draw lands on the token the host's distribution gives to
//   its uniform number when that distribution's tokens are laid out in id
//   order (the GPU's walk): checked at the middle of every candidate's
//   interval, which pins the support set of top-k / top-p / min-p and each
//   token's weight;
// - a seed gives the same tokens on every call, and the logits are left as
//   they were.
//
// Needs a GPU: skipped with a message where none is visible.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/sampling.h"

namespace baton::kernels::cuda {
namespace {

std::unique_ptr<Backend> gpu_or_null() {
  auto b = make_cuda_backend({});
  return b.is_ok() ? std::move(b).value() : nullptr;
}

std::vector<float> random_logits(std::mt19937& rng, int64_t rows, int64_t vocab, float sigma) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(static_cast<size_t>(rows * vocab));
  for (float& x : v) x = d(rng);
  return v;
}

// Logprobs agree within 1e-4, or are both -inf (a masked token).
void expect_logprob(float got, float want) {
  if (std::isinf(want) && want < 0) {
    EXPECT_EQ(got, want);
  } else {
    EXPECT_NEAR(got, want, 1e-4);
  }
}

class GpuSampling : public ::testing::Test {
 protected:
  void SetUp() override {
    gpu_ = gpu_or_null();
    if (!gpu_) GTEST_SKIP() << "no GPU here: the CUDA backend cannot start";
  }

  // Uploads logits [rows, vocab] and samples `rows_in` on the GPU.
  std::vector<SampleOutput> gpu_sample(const std::vector<float>& logits, int64_t vocab,
                                       const std::vector<SampleRow>& rows) {
    const auto n = static_cast<int64_t>(logits.size()) / vocab;
    auto buf = gpu_->allocate(logits.size() * 4);
    EXPECT_TRUE(buf.is_ok());
    EXPECT_TRUE(gpu_->upload(logits.data(), logits.size() * 4, buf->data()).is_ok());
    Tensor t = buf->tensor(DType::kF32, {n, vocab});
    std::vector<SampleOutput> out(rows.size());
    EXPECT_TRUE(gpu_->sample(t, rows, out).is_ok());
    std::vector<float> after(logits.size());
    EXPECT_TRUE(gpu_->download(buf->data(), after.size() * 4, after.data()).is_ok());
    EXPECT_EQ(after, logits) << "sampling changed the logits";
    return out;
  }

  static std::span<const float> row_of(const std::vector<float>& logits, int64_t vocab, int r) {
    return {logits.data() + static_cast<size_t>(r) * static_cast<size_t>(vocab),
            static_cast<size_t>(vocab)};
  }

  std::unique_ptr<Backend> gpu_;
  HostSampler host_;
};

TEST_F(GpuSampling, GreedyPicksTheHostsTokenWithItsLogprobs) {
  std::mt19937 rng(1);
  for (int64_t vocab : {int64_t{5}, int64_t{1000}, int64_t{128256}}) {
    const int rows_n = 24;
    std::vector<float> logits = random_logits(rng, rows_n, vocab, 3.0f);
    // Row 1: a tie for the maximum goes to the lower id.
    float* r1 = logits.data() + vocab;
    r1[vocab - 1] = 50.0f;
    r1[vocab / 2] = 50.0f;
    // Row 2: every logit equal.
    std::fill(logits.begin() + 2 * vocab, logits.begin() + 3 * vocab, 0.25f);
    std::vector<std::vector<TokenEdit>> edits(rows_n);
    std::vector<SampleRow> rows;
    std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab) - 1);
    for (int r = 0; r < rows_n; ++r) {
      SampleRow s;
      s.logits_row = r;
      s.temperature = 0.0f;
      s.logprobs = r % 3 == 0 ? 5 : (r % 3 == 1 ? 0 : -1);
      if (r >= 8) {
        // Penalties: push the current best down, so the edits decide.
        const float* x = logits.data() + static_cast<size_t>(r * vocab);
        const auto best = static_cast<int32_t>(std::max_element(x, x + vocab) - x);
        s.repetition_penalty = 1.3f;
        s.frequency_penalty = 0.4f;
        s.presence_penalty = 0.3f;
        edits[r].push_back({best, 3, true, r % 4 == 0});
        for (int i = 0; i < 40; ++i) {
          const int32_t t = tok(rng);
          bool dup = false;
          for (const TokenEdit& e : edits[r]) dup = dup || e.token == t;
          if (!dup) edits[r].push_back({t, i % 3, i % 2 == 0, i % 7 == 0});
        }
      }
      rows.push_back(s);
    }
    for (int r = 0; r < rows_n; ++r) {
      rows[r].edits = edits[r].data();
      rows[r].num_edits = static_cast<int32_t>(edits[r].size());
    }
    std::vector<SampleOutput> got = gpu_sample(logits, vocab, rows);
    for (int r = 0; r < rows_n; ++r) {
      SCOPED_TRACE("vocab " + std::to_string(vocab) + " row " + std::to_string(r));
      const SampleOutput want = host_.sample(row_of(logits, vocab, r), rows[r]);
      EXPECT_EQ(got[r].token, want.token);
      if (rows[r].logprobs >= 0) {
        expect_logprob(got[r].logprob, want.logprob);
      }
      ASSERT_EQ(got[r].num_top, want.num_top);
      for (int i = 0; i < want.num_top; ++i) {
        EXPECT_EQ(got[r].top_tokens[i], want.top_tokens[i]);
        expect_logprob(got[r].top_logprobs[i], want.top_logprobs[i]);
      }
    }
    EXPECT_EQ(got[1].token, static_cast<int32_t>(vocab / 2));
    EXPECT_EQ(got[2].token, 0);
  }
}

// For each case, one row per probed candidate, all reading one logits row:
// the uniform number sits in the middle of that candidate's interval of the
// host's distribution laid out in id order.
struct DrawCase {
  float temperature;
  int32_t top_k;
  float top_p;
  float min_p;
  bool penalties;
  bool flat = false;  // the flat logits row: cuts far below the best token
};

TEST_F(GpuSampling, DrawsFollowTheHostDistribution) {
  const int64_t vocab = 128256;
  std::mt19937 rng(2);
  const std::vector<DrawCase> cases = {
      {0.7f, 50, 1.0f, 0.0f, false},       {1.0f, -1, 0.9f, 0.0f, false},
      {1.3f, 200, 0.8f, 0.0f, false},      {1.0f, -1, 1.0f, 0.05f, false},
      {0.5f, 1, 1.0f, 0.0f, false},        {1.0f, -1, 0.01f, 0.0f, false},
      {1.0f, -1, 1.0f, 0.0f, false},       {0.8f, 40, 0.95f, 0.1f, true},
      {1.0f, -1, 1.0f, 0.0f, true},        {2.0f, 1000, 0.5f, 0.0f, false},
      {1.0f, -1, 0.9f, 0.0f, false, true}, {1.0f, 5000, 0.95f, 0.0f, false, true},
  };
  // Row 0 sharp (the cuts lie within a few logits of the best token, where
  // the GPU searches a few thousand tokens in shared memory), row 1 flat
  // (top-p 0.9 keeps most of the vocabulary: the searches run over the row).
  std::vector<float> logits = random_logits(rng, 1, vocab, 4.0f);
  const std::vector<float> flat = random_logits(rng, 1, vocab, 0.5f);
  logits.insert(logits.end(), flat.begin(), flat.end());
  std::vector<TokenEdit> edits;
  std::uniform_int_distribution<int32_t> tok(0, static_cast<int32_t>(vocab) - 1);
  {
    // Penalise the current top tokens so that the edits reorder the head.
    std::vector<int32_t> order(static_cast<size_t>(vocab));
    for (int32_t i = 0; i < vocab; ++i) order[static_cast<size_t>(i)] = i;
    std::partial_sort(order.begin(), order.begin() + 30, order.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
    for (int i = 0; i < 30; ++i) edits.push_back({order[i], i % 4, i % 2 == 0, i == 3});
  }
  for (size_t c = 0; c < cases.size(); ++c) {
    const DrawCase& dc = cases[c];
    SCOPED_TRACE("case " + std::to_string(c));
    SampleRow base;
    base.temperature = dc.temperature;
    base.top_k = dc.top_k;
    base.top_p = dc.top_p;
    base.min_p = dc.min_p;
    base.logprobs = 2;
    if (dc.penalties) {
      base.repetition_penalty = 1.2f;
      base.frequency_penalty = 0.5f;
      base.presence_penalty = 0.2f;
      base.edits = edits.data();
      base.num_edits = static_cast<int32_t>(edits.size());
    }
    base.logits_row = dc.flat ? 1 : 0;
    const std::vector<double> p = host_.distribution(row_of(logits, vocab, base.logits_row), base);
    std::vector<int32_t> support;
    for (int32_t t = 0; t < vocab; ++t) {
      if (p[static_cast<size_t>(t)] > 0) support.push_back(t);
    }
    ASSERT_FALSE(support.empty());
    if (dc.top_k > 0) {
      EXPECT_LE(support.size(), static_cast<size_t>(dc.top_k));
    }
    // At most 512 probes, spread over the support.
    const size_t stride = std::max<size_t>(1, support.size() / 512);
    std::vector<SampleRow> rows;
    std::vector<int32_t> want;
    double cum = 0.0;
    for (size_t i = 0; i < support.size(); ++i) {
      const double w = p[static_cast<size_t>(support[i])];
      if (i % stride == 0 && w > 1e-9) {
        SampleRow r = base;
        r.uniform = cum + w / 2;
        rows.push_back(r);
        want.push_back(support[i]);
      }
      cum += w;
    }
    ASSERT_FALSE(rows.empty());
    std::vector<SampleOutput> got = gpu_sample(logits, vocab, rows);
    int wrong = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      if (got[i].token != want[i] && ++wrong <= 5) {
        ADD_FAILURE() << "uniform " << rows[i].uniform << ": gpu " << got[i].token << " (p "
                      << p[static_cast<size_t>(got[i].token)] << "), host " << want[i];
      }
    }
    // Processed logprobs, as the host reports them (the host's own draw may
    // be another token: it walks the candidates best first).
    const SampleOutput host = host_.sample(row_of(logits, vocab, base.logits_row), rows[0]);
    if (host.token == got[0].token) {
      expect_logprob(got[0].logprob, host.logprob);
    }
    ASSERT_EQ(got[0].num_top, 2);
    for (int i = 0; i < 2; ++i) {
      EXPECT_EQ(got[0].top_tokens[i], host.top_tokens[i]);
      expect_logprob(got[0].top_logprobs[i], host.top_logprobs[i]);
    }
  }
}

TEST_F(GpuSampling, UnfilteredDrawsEqualTheHostsAndSeedsRepeat) {
  // Without top-k / top-p both walk the candidates in id order, so the same
  // uniform number gives the same token.
  const int64_t vocab = 32000;
  std::mt19937 rng(3);
  std::vector<float> logits = random_logits(rng, 4, vocab, 2.0f);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::vector<SampleRow> rows;
  for (int i = 0; i < 64; ++i) {
    SampleRow r;
    r.logits_row = i % 4;
    r.temperature = 0.6f + 0.1f * static_cast<float>(i % 5);
    r.min_p = i % 2 == 0 ? 0.0f : 0.02f;
    r.uniform = u(rng);
    rows.push_back(r);
  }
  std::vector<SampleOutput> a = gpu_sample(logits, vocab, rows);
  std::vector<SampleOutput> b = gpu_sample(logits, vocab, rows);
  for (size_t i = 0; i < rows.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << "row " << i;
    const SampleOutput want = host_.sample(row_of(logits, vocab, rows[i].logits_row), rows[i]);
    EXPECT_EQ(a[i].token, want.token) << "row " << i;
  }
}

TEST_F(GpuSampling, AllMaskedFallsBackToTheRawLogits) {
  const int64_t vocab = 6;
  std::vector<float> logits = {0.1f, 2.0f, -1.0f, 0.5f, 1.5f, 0.0f};
  std::vector<TokenEdit> all;
  for (int32_t t = 0; t < vocab; ++t) all.push_back({t, 0, false, true});
  SampleRow greedy;
  greedy.temperature = 0.0f;
  greedy.edits = all.data();
  greedy.num_edits = static_cast<int32_t>(all.size());
  SampleRow drawn = greedy;
  drawn.temperature = 1.0f;
  drawn.top_k = 2;
  drawn.uniform = 0.99;
  std::vector<SampleOutput> got = gpu_sample(logits, vocab, {greedy, drawn});
  EXPECT_EQ(got[0].token, 1);
  EXPECT_EQ(got[1].token, host_.sample(logits, drawn).token);
}

}  // namespace
}  // namespace baton::kernels::cuda
