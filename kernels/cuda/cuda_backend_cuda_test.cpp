// Every CudaBackend op against the CPU backend on fresh random inputs, with
// f32 and bf16 activations. Both backends see the same input values (rounded
// to bf16 first in bf16 mode); outputs are compared by relative L2 error
// ||gpu - cpu|| / ||cpu||: below 1e-5 (1e-4 for sums over many terms) with f32
// activations, below 1e-2 with bf16 ones (8 bits of mantissa). Outputs are
// poisoned with NaN first, so an element the GPU never writes fails.
//
// Needs a GPU: skipped with a message where none is visible.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cuda/cuda_backend.h"
#include "kernels/rope.h"

namespace baton::kernels::cuda {
namespace {

std::unique_ptr<Backend> gpu_or_null(DType act) {
  auto b = make_cuda_backend({.device = 0, .activation_dtype = act});
  return b.is_ok() ? std::move(b).value() : nullptr;
}

float round_to(DType t, float f) { return t == DType::kBF16 ? bf16_to_f32(f32_to_bf16(f)) : f; }

std::vector<float> random_floats(std::mt19937& rng, int64_t n, DType round, float lo = -1,
                                 float hi = 1) {
  std::uniform_real_distribution<float> d(lo, hi);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = round_to(round, d(rng));
  return v;
}

std::vector<uint8_t> encode(const std::vector<float>& v, DType t) {
  std::vector<uint8_t> out(v.size() * dtype_size(t));
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(out.data() + 4 * i, &v[i], 4);
    } else {
      const uint16_t h = t == DType::kBF16 ? f32_to_bf16(v[i]) : f32_to_f16(v[i]);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

std::vector<float> decode(const std::vector<uint8_t>& b, DType t) {
  std::vector<float> out(b.size() / dtype_size(t));
  for (size_t i = 0; i < out.size(); ++i) {
    if (t == DType::kF32) {
      std::memcpy(&out[i], b.data() + 4 * i, 4);
    } else {
      uint16_t h;
      std::memcpy(&h, b.data() + 2 * i, 2);
      out[i] = t == DType::kBF16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
  return out;
}

// One host array living on both backends: f32 on the CPU, `dtype` on the GPU.
struct Both {
  DeviceBuffer cpu_buf, gpu_buf;
  Tensor cpu, gpu;
};

class CudaParity : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    gpu_ = gpu_or_null(GetParam());
    if (!gpu_) GTEST_SKIP() << "no GPU here: the CUDA backend cannot start";
    cpu_ = make_cpu_backend(2);
  }
  DType act() const { return GetParam(); }
  // Relative L2 tolerance of this activation dtype.
  double tol(double f32_tol = 1e-5) const { return act() == DType::kBF16 ? 1e-2 : f32_tol; }

  Both make(const std::vector<float>& v, std::initializer_list<int64_t> dims, DType gpu_dtype,
            DType cpu_dtype = DType::kF32) {
    Both b;
    auto cb = encode(v, cpu_dtype), gb = encode(v, gpu_dtype);
    b.cpu_buf = cpu_->allocate(cb.size()).value();
    EXPECT_TRUE(cpu_->upload(cb.data(), cb.size(), b.cpu_buf.data()).is_ok());
    b.gpu_buf = gpu_->allocate(gb.size()).value();
    EXPECT_TRUE(gpu_->upload(gb.data(), gb.size(), b.gpu_buf.data()).is_ok());
    b.cpu = Tensor(b.cpu_buf.data(), cpu_dtype, dims);
    b.gpu = Tensor(b.gpu_buf.data(), gpu_dtype, dims);
    return b;
  }
  Both ints(const std::vector<int32_t>& v) {
    Both b;
    const size_t bytes = v.size() * 4;
    b.cpu_buf = cpu_->allocate(bytes).value();
    EXPECT_TRUE(cpu_->upload(v.data(), bytes, b.cpu_buf.data()).is_ok());
    b.gpu_buf = gpu_->allocate(bytes).value();
    EXPECT_TRUE(gpu_->upload(v.data(), bytes, b.gpu_buf.data()).is_ok());
    b.cpu = Tensor(b.cpu_buf.data(), DType::kI32, {static_cast<int64_t>(v.size())});
    b.gpu = Tensor(b.gpu_buf.data(), DType::kI32, {static_cast<int64_t>(v.size())});
    return b;
  }
  // An output on both sides, the GPU one poisoned with NaN bytes.
  Both output(std::initializer_list<int64_t> dims, DType gpu_dtype) {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    Both b = make(std::vector<float>(static_cast<size_t>(n), 0.0f), dims, gpu_dtype);
    std::vector<uint8_t> poison(static_cast<size_t>(n) * dtype_size(gpu_dtype), 0xff);
    EXPECT_TRUE(gpu_->upload(poison.data(), poison.size(), b.gpu_buf.data()).is_ok());
    return b;
  }
  std::vector<float> cpu_values(const Tensor& t) {
    std::vector<uint8_t> raw(t.bytes());
    EXPECT_TRUE(cpu_->download(t.data, raw.size(), raw.data()).is_ok());
    return decode(raw, t.dtype);
  }
  std::vector<float> gpu_values(const Tensor& t) {
    std::vector<uint8_t> raw(t.bytes());
    EXPECT_TRUE(gpu_->synchronize().is_ok());
    EXPECT_TRUE(gpu_->download(t.data, raw.size(), raw.data()).is_ok());
    return decode(raw, t.dtype);
  }
  // ||gpu - cpu|| / ||cpu||, NaN when the GPU left NaN anywhere.
  double rel_err(const Both& b) {
    std::vector<float> c = cpu_values(b.cpu), g = gpu_values(b.gpu);
    EXPECT_EQ(c.size(), g.size());
    double num = 0, den = 0;
    for (size_t i = 0; i < c.size(); ++i) {
      if (std::isnan(g[i])) return std::nan("");
      num += (static_cast<double>(g[i]) - c[i]) * (static_cast<double>(g[i]) - c[i]);
      den += static_cast<double>(c[i]) * c[i];
    }
    return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
  }

  std::unique_ptr<Backend> cpu_, gpu_;
};

TEST(CudaBackend, ReportsCapabilitiesAndRoundTripsMemory) {
  auto gpu = gpu_or_null(DType::kBF16);
  if (!gpu) GTEST_SKIP() << "no GPU here: the CUDA backend cannot start";
  EXPECT_EQ(gpu->name(), "cuda");
  EXPECT_EQ(gpu->capabilities().kind, DeviceKind::kCuda);
  EXPECT_EQ(gpu->activation_dtype(), DType::kBF16);
  EXPECT_TRUE(gpu->capabilities().weights_bf16);
  EXPECT_FALSE(gpu->capabilities().weights_f32);
  for (size_t bytes : {size_t{1}, size_t{4097}, size_t{3} << 20}) {
    std::vector<uint8_t> src(bytes);
    std::iota(src.begin(), src.end(), 7);
    DeviceBuffer a = gpu->allocate(bytes).value(), c = gpu->allocate(bytes).value();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 256, 0u);
    ASSERT_TRUE(gpu->upload(src.data(), bytes, a.data()).is_ok());
    ASSERT_TRUE(gpu->copy(a.data(), bytes, c.data()).is_ok());
    std::vector<uint8_t> back(bytes);
    ASSERT_TRUE(gpu->download(c.data(), bytes, back.data()).is_ok());
    EXPECT_EQ(back, src);
  }
  // Many small uploads wrap the staging ring; every one must land intact.
  DeviceBuffer many = gpu->allocate(4096 * 4).value();
  std::vector<int32_t> want(4096);
  for (int round = 0; round < 3000; ++round) {
    std::vector<int32_t> v(4096);
    std::iota(v.begin(), v.end(), round);
    ASSERT_TRUE(gpu->upload(v.data(), v.size() * 4, many.data()).is_ok());
    want = v;
  }
  std::vector<int32_t> got(4096);
  ASSERT_TRUE(gpu->download(many.data(), got.size() * 4, got.data()).is_ok());
  EXPECT_EQ(got, want);
}

TEST(CudaBackend, HugeAllocationIsResourceExhausted) {
  auto gpu = gpu_or_null(DType::kBF16);
  if (!gpu) GTEST_SKIP() << "no GPU here: the CUDA backend cannot start";
  auto buf = gpu->allocate(size_t{1} << 50);
  ASSERT_FALSE(buf.is_ok());
  EXPECT_EQ(buf.status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(gpu->allocate(1024).is_ok());  // the failure left the device usable
}

TEST(CudaBackend, RejectsBadActivationDtype) {
  auto b = make_cuda_backend({.device = 0, .activation_dtype = DType::kF16});
  EXPECT_FALSE(b.is_ok());
}

TEST_P(CudaParity, Embedding) {
  std::mt19937 rng(1);
  const int64_t vocab = 300, d = 96;
  Both table = make(random_floats(rng, vocab * d, act()), {vocab, d}, act());
  Both ids = ints({0, 299, 17, 17, 5});
  Both out = output({5, d}, act());
  cpu_->embedding(table.cpu, ids.cpu, out.cpu);
  gpu_->embedding(table.gpu, ids.gpu, out.gpu);
  EXPECT_EQ(rel_err(out), 0.0);  // a copy: exact
}

TEST_P(CudaParity, RmsNormAndFusedAdd) {
  std::mt19937 rng(2);
  for (auto [rows, d] : {std::pair<int64_t, int64_t>{1, 4096}, {7, 64}, {33, 1000}}) {
    Both x = make(random_floats(rng, rows * d, act(), -3, 3), {rows, d}, act());
    Both w = make(random_floats(rng, d, DType::kF32, 0.5, 1.5), {d}, DType::kF32);
    Both out = output({rows, d}, act());
    cpu_->rms_norm(x.cpu, w.cpu, 1e-5f, out.cpu);
    gpu_->rms_norm(x.gpu, w.gpu, 1e-5f, out.gpu);
    EXPECT_LT(rel_err(out), tol()) << rows << "x" << d;

    Both res = make(random_floats(rng, rows * d, act(), -2, 2), {rows, d}, act());
    Both out2 = output({rows, d}, act());
    cpu_->add_rms_norm(res.cpu, x.cpu, w.cpu, 1e-6f, out2.cpu);
    gpu_->add_rms_norm(res.gpu, x.gpu, w.gpu, 1e-6f, out2.gpu);
    EXPECT_LT(rel_err(res), tol()) << "residual " << rows << "x" << d;
    EXPECT_LT(rel_err(out2), tol()) << "normed " << rows << "x" << d;
  }
}

TEST_P(CudaParity, LinearWithAndWithoutBias) {
  std::mt19937 rng(3);
  // 1 x 4096 x 6144 takes the two-rows-per-warp GEMV on an H100 (its
  // one-row grid needs a little more than one wave), 6143 its odd last row.
  for (auto [n, k, m] : {std::array<int64_t, 3>{1, 4096, 1024},
                         {1, 4096, 6144},
                         {1, 4096, 6143},
                         {5, 64, 96},
                         {130, 256, 384}}) {
    Both x = make(random_floats(rng, n * k, act()), {n, k}, act());
    Both w = make(random_floats(rng, m * k, act(), -0.1f, 0.1f), {m, k}, act());
    Both bias = make(random_floats(rng, m, DType::kF32), {m}, DType::kF32);
    for (bool with_bias : {false, true}) {
      for (DType odt : {act(), DType::kF32}) {  // f32 output: the LM head's logits
        Both out = output({n, m}, odt);
        cpu_->linear(x.cpu, w.cpu, with_bias ? &bias.cpu : nullptr, out.cpu);
        gpu_->linear(x.gpu, w.gpu, with_bias ? &bias.gpu : nullptr, out.gpu);
        EXPECT_LT(rel_err(out), tol(1e-4)) << n << "x" << k << "x" << m << " bias " << with_bias;
      }
    }
  }
}

TEST_P(CudaParity, RopeFullAndPartial) {
  std::mt19937 rng(4);
  for (auto [head_dim, rotary_dim] : {std::pair<int32_t, int32_t>{128, 128}, {16, 16}, {64, 32}}) {
    const int64_t n = 9, hq = 4, hk = 2;
    const int32_t max_pos = 5000;
    RopeParams p{.theta = 500000.0f, .rotary_dim = rotary_dim};
    std::vector<float> cos(static_cast<size_t>(max_pos) * rotary_dim / 2), sin(cos.size());
    rope_fill_table(p, max_pos, cos.data(), sin.data());
    Both c = make(cos, {max_pos, rotary_dim / 2}, DType::kF32);
    Both s = make(sin, {max_pos, rotary_dim / 2}, DType::kF32);
    Both pos = ints({0, 1, 2, 100, 4999, 17, 17, 3000, 8});
    Both q = make(random_floats(rng, n * hq * head_dim, act()), {n, hq * head_dim}, act());
    Both k = make(random_floats(rng, n * hk * head_dim, act()), {n, hk * head_dim}, act());
    RopeTable tc{c.cpu, s.cpu, rotary_dim, max_pos}, tg{c.gpu, s.gpu, rotary_dim, max_pos};
    cpu_->rope(q.cpu, k.cpu, pos.cpu, head_dim, tc);
    gpu_->rope(q.gpu, k.gpu, pos.gpu, head_dim, tg);
    EXPECT_LT(rel_err(q), tol()) << head_dim << "/" << rotary_dim;
    EXPECT_LT(rel_err(k), tol()) << head_dim << "/" << rotary_dim;
  }
}

TEST_P(CudaParity, SiluMulAndGatherRows) {
  std::mt19937 rng(5);
  const int64_t rows = 11, inter = 1000;
  Both gu = make(random_floats(rng, rows * 2 * inter, act(), -6, 6), {rows, 2 * inter}, act());
  Both out = output({rows, inter}, act());
  cpu_->silu_mul(gu.cpu, out.cpu);
  gpu_->silu_mul(gu.gpu, out.gpu);
  EXPECT_LT(rel_err(out), tol());

  Both idx = ints({10, 0, 3, 3});
  Both g = output({4, inter}, act());
  cpu_->gather_rows(out.cpu, idx.cpu, g.cpu);
  gpu_->gather_rows(out.gpu, idx.gpu, g.gpu);
  EXPECT_LT(rel_err(g), tol());
}

// The fused SwiGLU product (decode sizes take the fused GEMV, larger ones
// the two ops) against the CPU's linear + silu_mul.
TEST_P(CudaParity, LinearSiluMulMatchesTheTwoOps) {
  std::mt19937 rng(7);
  for (auto [n, k, inter] : {std::array<int64_t, 3>{1, 4096, 1024}, {3, 512, 200}, {20, 256, 96}}) {
    Both x = make(random_floats(rng, n * k, act()), {n, k}, act());
    Both w = make(random_floats(rng, 2 * inter * k, act(), -0.1f, 0.1f), {2 * inter, k}, act());
    Both gu = output({n, 2 * inter}, act()), out = output({n, inter}, act());
    cpu_->linear_silu_mul(x.cpu, w.cpu, nullptr, gu.cpu, out.cpu);
    gpu_->linear_silu_mul(x.gpu, w.gpu, nullptr, gu.gpu, out.gpu);
    EXPECT_LT(rel_err(out), tol(1e-4)) << n << "x" << k << "x" << inter;
  }
}

// A paged cache on both backends, same values, in `cdt` on both sides.
struct Cache {
  Both k, v;
  KvCacheView cpu, gpu;
};

class CudaKv : public CudaParity {
 protected:
  Cache cache(std::mt19937& rng, DType cdt, int32_t blocks, int32_t bs, int32_t hk, int32_t hd) {
    Cache c;
    const int64_t n = static_cast<int64_t>(blocks) * bs * hk * hd;
    c.k = make(random_floats(rng, n, cdt), {blocks, bs, hk, hd}, cdt, cdt);
    c.v = make(random_floats(rng, n, cdt), {blocks, bs, hk, hd}, cdt, cdt);
    c.cpu = KvCacheView{c.k.cpu, c.v.cpu, bs, hk, hd};
    c.gpu = KvCacheView{c.k.gpu, c.v.gpu, bs, hk, hd};
    return c;
  }
};

TEST_P(CudaKv, AppendGatherScatter) {
  std::mt19937 rng(6);
  for (DType cdt : {DType::kF32, DType::kBF16}) {
    const int32_t blocks = 8, bs = 16, hk = 2, hd = 64, row = hk * hd;
    Cache c = cache(rng, cdt, blocks, bs, hk, hd);
    const int64_t n = 5;
    Both k = make(random_floats(rng, n * row, act()), {n, row}, act());
    Both v = make(random_floats(rng, n * row, act()), {n, row}, act());
    Both slots = ints({127, -1, 0, 40, 41});
    cpu_->kv_append(k.cpu, v.cpu, slots.cpu, c.cpu);
    gpu_->kv_append(k.gpu, v.gpu, slots.gpu, c.gpu);
    EXPECT_EQ(rel_err(c.k), 0.0);
    EXPECT_EQ(rel_err(c.v), 0.0);

    // Gather 37 tokens from token 5 of a scattered table, then scatter them
    // into other blocks and compare the whole cache.
    std::vector<int32_t> table = {6, 2, 7, 0};
    const int32_t first = 5, count = 37;
    Both kd = output({count, row}, act()), vd = output({count, row}, act());
    cpu_->kv_gather(c.cpu, table.data(), first, count, kd.cpu, vd.cpu);
    gpu_->kv_gather(c.gpu, table.data(), first, count, kd.gpu, vd.gpu);
    // Exact when the activations hold the cache's values; an f32 cache read
    // into bf16 activations is rounded once.
    const double t = cdt == act() || act() == DType::kF32 ? 0.0 : 4e-3;
    EXPECT_LE(rel_err(kd), t);
    EXPECT_LE(rel_err(vd), t);
    std::vector<int32_t> other = {1, 3, 4, 5};
    cpu_->kv_scatter(c.cpu, other.data(), first, count, kd.cpu, vd.cpu);
    gpu_->kv_scatter(c.gpu, other.data(), first, count, kd.gpu, vd.gpu);
    EXPECT_LE(rel_err(c.k), t);
    EXPECT_LE(rel_err(c.v), t);
  }
}

// RoPE with the KV append fused (full rotary) or not (partial): q, k and
// the cache as rope then kv_append leave them.
TEST_P(CudaKv, RopeKvAppendMatchesTheTwoOps) {
  std::mt19937 rng(9);
  for (auto [head_dim, rotary_dim] : {std::pair<int32_t, int32_t>{128, 128}, {64, 32}}) {
    const int32_t blocks = 4, bs = 16, hq = 4, hk = 2, max_pos = 512;
    const int64_t n = 6, row = static_cast<int64_t>(hk) * head_dim;
    Cache c = cache(rng, act(), blocks, bs, hk, head_dim);
    RopeParams p{.theta = 10000.0f, .rotary_dim = rotary_dim};
    std::vector<float> cos(static_cast<size_t>(max_pos) * rotary_dim / 2), sin(cos.size());
    rope_fill_table(p, max_pos, cos.data(), sin.data());
    Both ct = make(cos, {max_pos, rotary_dim / 2}, DType::kF32);
    Both st = make(sin, {max_pos, rotary_dim / 2}, DType::kF32);
    RopeTable tc{ct.cpu, st.cpu, rotary_dim, max_pos}, tg{ct.gpu, st.gpu, rotary_dim, max_pos};
    Both pos = ints({0, 5, 17, 300, 511, 2});
    Both slots = ints({3, -1, 20, 63, 40, 7});
    Both q = make(random_floats(rng, n * hq * head_dim, act()), {n, hq * head_dim}, act());
    Both k = make(random_floats(rng, n * row, act()), {n, row}, act());
    Both v = make(random_floats(rng, n * row, act()), {n, row}, act());
    cpu_->rope_kv_append(q.cpu, k.cpu, v.cpu, pos.cpu, slots.cpu, head_dim, tc, c.cpu);
    gpu_->rope_kv_append(q.gpu, k.gpu, v.gpu, pos.gpu, slots.gpu, head_dim, tg, c.gpu);
    EXPECT_LT(rel_err(q), tol()) << head_dim << "/" << rotary_dim;
    EXPECT_LT(rel_err(k), tol()) << head_dim << "/" << rotary_dim;
    EXPECT_LT(rel_err(c.k), tol()) << head_dim << "/" << rotary_dim;
    EXPECT_EQ(rel_err(c.v), 0.0) << head_dim << "/" << rotary_dim;
  }
}

// A mixed batch: decodes over long contexts (split-K), short chunks (row
// kernel), long chunks after a cached prefix (tiled kernel for bf16 and head
// sizes 64/128), GQA groups of 1, 4 and 8.
TEST_P(CudaKv, AttentionMatchesCpuOnMixedBatches) {
  std::mt19937 rng(7);
  struct Shape {
    int32_t hq, hk, hd;
  };
  for (Shape sh : {Shape{32, 8, 128}, Shape{4, 4, 64}, Shape{4, 2, 16}, Shape{16, 2, 64}}) {
    for (DType cdt : {act(), DType::kF32}) {
      const int32_t bs = 16, blocks = 400;
      Cache c = cache(rng, cdt, blocks, bs, sh.hk, sh.hd);
      std::vector<int32_t> ids(blocks);
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), rng);
      // {q_len, context_len}
      const std::vector<std::pair<int32_t, int32_t>> shapes = {
          {1, 1}, {1, 2000}, {130, 130}, {1, 77}, {7, 300}, {70, 1000}, {1, 4000}, {16, 16}};
      std::vector<std::vector<int32_t>> tables;
      std::vector<AttentionSeq> seqs;
      int32_t rows = 0, next = 0;
      for (auto [ql, ctx] : shapes) {
        const int32_t nb = (ctx + bs - 1) / bs;
        tables.emplace_back(ids.begin() + next, ids.begin() + next + nb);
        next = (next + nb) % (blocks - 260);  // sequences may share blocks: reads only
        seqs.push_back({rows, ql, ctx, tables.back().data(), nb});
        rows += ql;
      }
      const int64_t w = static_cast<int64_t>(sh.hq) * sh.hd;
      Both q = make(random_floats(rng, rows * w, act(), -2, 2), {rows, w}, act());
      Both out = output({rows, w}, act());
      const float scale = 1.0f / std::sqrt(static_cast<float>(sh.hd));
      cpu_->attention(q.cpu, c.cpu, seqs, sh.hq, scale, out.cpu);
      gpu_->attention(q.gpu, c.gpu, seqs, sh.hq, scale, out.gpu);
      EXPECT_LT(rel_err(out), tol(1e-4))
          << sh.hq << "/" << sh.hk << "/" << sh.hd << " cache " << dtype_name(cdt);
      // The same plan again (as the next layer would): same answer.
      Both again = output({rows, w}, act());
      gpu_->attention(q.gpu, c.gpu, seqs, sh.hq, scale, again.gpu);
      EXPECT_EQ(gpu_values(again.gpu), gpu_values(out.gpu));
    }
  }
}

std::string dtype_param(const ::testing::TestParamInfo<DType>& i) {
  return std::string(dtype_name(i.param));
}

INSTANTIATE_TEST_SUITE_P(Activations, CudaParity, ::testing::Values(DType::kF32, DType::kBF16),
                         dtype_param);
INSTANTIATE_TEST_SUITE_P(Activations, CudaKv, ::testing::Values(DType::kF32, DType::kBF16),
                         dtype_param);

}  // namespace
}  // namespace baton::kernels::cuda
