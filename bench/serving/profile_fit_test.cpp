// The fits behind `baton bench profile`: synthetic measurements from known
// coefficients (with noise) give those coefficients back; negative costs
// are refused as noise; probes that cannot separate the terms are an error;
// the written profile carries the fitted numbers under the keys the
// simulator reads.

#include "bench/serving/profile_fit.h"

#include <gtest/gtest.h>

#include <random>

namespace baton::bench {
namespace {

TEST(FitNonnegative, RecoversAnExactLine) {
  std::vector<std::vector<double>> x;
  std::vector<double> y;
  for (double t : {1.0, 2.0, 5.0, 9.0}) {
    x.push_back({1.0, t});
    y.push_back(0.5 + 2.0 * t);
  }
  auto f = fit_nonnegative(x, y);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_NEAR(f->coef[0], 0.5, 1e-9);
  EXPECT_NEAR(f->coef[1], 2.0, 1e-9);
  EXPECT_NEAR(f->r2, 1.0, 1e-12);
  EXPECT_EQ(f->samples, 4);
}

TEST(FitNonnegative, ANegativeCoefficientIsFixedAtZeroAndTheRestRefitted) {
  // y falls slightly with the second column: unconstrained, its coefficient
  // would be negative; the fit keeps it at 0 and fits the mean instead.
  std::vector<std::vector<double>> x = {{1, 1}, {1, 2}, {1, 3}, {1, 4}};
  std::vector<double> y = {1.03, 1.02, 1.01, 1.00};
  auto f = fit_nonnegative(x, y);
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->coef[1], 0);
  EXPECT_NEAR(f->coef[0], 1.015, 1e-9);
}

TEST(FitNonnegative, AllZeroColumnsAreFixedAtZeroAndCollinearOnesRefused) {
  std::vector<std::vector<double>> x = {{1, 0, 3}, {1, 0, 4}, {1, 0, 8}};
  std::vector<double> y = {4, 5, 9};
  auto f = fit_nonnegative(x, y);
  ASSERT_TRUE(f.is_ok());
  EXPECT_EQ(f->coef[1], 0);
  EXPECT_NEAR(f->coef[2], 1, 1e-9);

  // The third column is twice the second: nothing tells them apart.
  auto bad = fit_nonnegative({{1, 1, 2}, {1, 2, 4}, {1, 3, 6}}, {1, 2, 3});
  ASSERT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("collinear"), std::string::npos);

  EXPECT_FALSE(fit_nonnegative({{1, 2}}, {1}).is_ok());          // fewer samples than unknowns
  EXPECT_FALSE(fit_nonnegative({{1, 2}, {1}}, {1, 2}).is_ok());  // ragged
}

TEST(FitPrefill, RecoversCoefficientsFromNoisyProbes) {
  // A 2-core CPU instance: 14 ms fixed, 2,400 tokens/s, 20 us per cached
  // token, 3 ms per request in the batch; 2% multiplicative noise.
  const double base = 0.014, rate = 2400, cached = 20e-6, per_req = 0.003;
  std::mt19937_64 rng(7);
  std::normal_distribution<double> noise(1.0, 0.02);
  std::vector<PrefillSample> samples;
  for (int64_t n : {60, 120, 240, 480, 720, 960}) {
    samples.push_back({n, 0, 1, (base + n / rate + per_req) * noise(rng)});
  }
  for (int b : {2, 4, 8}) {
    const int64_t n = 240LL * b;
    samples.push_back({n, 0, b, (base + n / rate + b * per_req) * noise(rng)});
  }
  for (int64_t c : {240, 480}) {
    samples.push_back({120, c, 1, (base + 120 / rate + c * cached + per_req) * noise(rng)});
  }
  auto f = fit_prefill(samples);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_NEAR(f->tokens_per_s, rate, rate * 0.05);
  EXPECT_NEAR(f->base_s + f->per_request_s, base + per_req, 0.006);
  EXPECT_NEAR(f->per_request_s, per_req, 0.003);
  EXPECT_NEAR(f->cached_token_s, cached, 10e-6);
  EXPECT_GT(f->fit.r2, 0.99);
  EXPECT_EQ(f->fit.samples, 11);
}

TEST(FitPrefill, OneBatchSizeFoldsThePerRequestCostIntoTheBase) {
  std::vector<PrefillSample> samples;
  for (int64_t n : {100, 200, 400}) samples.push_back({n, 0, 1, 0.01 + 0.002 + n / 1000.0});
  auto f = fit_prefill(samples);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_NEAR(f->base_s, 0.012, 1e-9);
  EXPECT_EQ(f->per_request_s, 0);
  EXPECT_EQ(f->cached_token_s, 0);
  EXPECT_NEAR(f->tokens_per_s, 1000, 1e-6);
}

TEST(FitPrefill, TimeThatDoesNotGrowWithTokensIsRefused) {
  std::vector<PrefillSample> samples = {{100, 0, 1, 0.05}, {200, 0, 1, 0.05}, {400, 0, 1, 0.04}};
  auto f = fit_prefill(samples);
  ASSERT_FALSE(f.is_ok());
  EXPECT_NE(f.status().message().find("did not grow"), std::string::npos);
}

TEST(FitDecode, SeparatesBatchAndContextCosts) {
  // An H100-like decode step: 6.44 ms + 43.4 us/seq + 65 ns/context token.
  const double base = 0.00644, per_seq = 43.4e-6, per_ctx = 65e-9;
  std::mt19937_64 rng(3);
  std::normal_distribution<double> noise(1.0, 0.01);
  std::vector<DecodeSample> samples;
  for (int b : {1, 2, 4, 8, 16, 32, 64}) {
    for (int64_t l : {128, 1024, 4096}) {
      const int64_t ctx = b * l;
      samples.push_back({b, ctx, (base + b * per_seq + ctx * per_ctx) * noise(rng)});
    }
  }
  auto f = fit_decode(samples);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_NEAR(f->base_s, base, base * 0.05);
  EXPECT_NEAR(f->per_seq_s, per_seq, per_seq * 0.25);
  EXPECT_NEAR(f->per_context_token_s, per_ctx, per_ctx * 0.1);
}

TEST(FitLink, GivesBandwidthPerMessageCostAndBytesPerToken) {
  // 12 KiB per token over 1.69 GB/s with 200 us per message.
  std::vector<TransferSample> samples;
  for (int64_t t : {128, 512, 1024}) {
    const double bytes = 12288.0 * t;
    samples.push_back({bytes, t, 200e-6 + bytes / 1.69e9});
  }
  auto f = fit_link(samples);
  ASSERT_TRUE(f.is_ok()) << f.status().to_string();
  EXPECT_NEAR(f->bytes_per_s, 1.69e9, 1e6);
  EXPECT_NEAR(f->message_s, 200e-6, 1e-9);
  EXPECT_NEAR(f->bytes_per_token, 12288, 1e-6);
}

TEST(ProfileYaml, WritesTheFittedNumbersUnderTheSimulatorsKeys) {
  MeasuredProfile p;
  p.name = "cpu-test";
  p.description = "line one\nline two";
  p.network_rtt_s = 0.0004;
  p.prefill.base_s = 0.0125;
  p.prefill.tokens_per_s = 2400;
  p.prefill.fit.samples = 9;
  p.prefill.fit.r2 = 0.998;
  p.step_tokens = 2048;
  p.decode.base_s = 0.011;
  p.decode.per_seq_s = 0.0007;
  p.max_batch = 64;
  p.kv_capacity_tokens = 70000;
  const std::string without_link = profile_yaml(p);
  EXPECT_EQ(without_link.rfind("# line one\n# line two\nname: cpu-test\n", 0), 0u) << without_link;
  EXPECT_NE(without_link.find("  base_s: 0.0125\n  tokens_per_s: 2400\n"), std::string::npos);
  EXPECT_NE(without_link.find("least squares over 9 probes: R^2 0.9980"), std::string::npos);
  EXPECT_NE(without_link.find("  step_tokens: 2048"), std::string::npos);
  EXPECT_NE(without_link.find("  per_seq_s: 0.0007\n"), std::string::npos);
  EXPECT_NE(without_link.find("  capacity_tokens: 70000\n"), std::string::npos);
  EXPECT_NE(without_link.find("network_rtt_s: 0.0004\n"), std::string::npos);
  EXPECT_EQ(without_link.find("\nlink:"), std::string::npos);
  EXPECT_EQ(without_link.find("bytes_per_token"), std::string::npos);

  LinkFit link;
  link.bytes_per_s = 1.5e9;
  link.message_s = 0.00021;
  link.bytes_per_token = 12288;
  p.link = link;
  const std::string with_link = profile_yaml(p);
  EXPECT_NE(with_link.find("  bytes_per_token: 12288\n"), std::string::npos);
  EXPECT_NE(with_link.find("\nlink:\n"), std::string::npos);
  EXPECT_NE(with_link.find("  bytes_per_s: 1.5e+09\n  message_s: 0.00021\n"), std::string::npos)
      << with_link;
}

}  // namespace
}  // namespace baton::bench
