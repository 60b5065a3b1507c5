#include "kernels/cpu/attention.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "common/status.h"
#include "kernels/cpu/fork_join_pool.h"

namespace baton::kernels {
namespace {

// Query rows per task: enough to reuse each widened KV block across rows,
// few enough that a long prefill chunk still splits over the workers.
constexpr int32_t kRowBlock = 16;

struct Task {
  int32_t seq;
  int32_t head;
  int32_t row_begin;  // relative to the sequence's first q row
  int32_t row_end;
};

struct Scratch {
  std::vector<float> acc;     // [kRowBlock, head_dim]
  std::vector<float> max;     // [kRowBlock]
  std::vector<float> sum;     // [kRowBlock]
  std::vector<float> scores;  // [block_size]
  std::vector<float> k;       // [block_size, head_dim], widened K of one block
  std::vector<float> v;
};

void run_task(const Task& t, const VecOps& ops, const Tensor& q, const KvCacheView& cache,
              const AttentionSeq& s, int32_t hq, float scale, Tensor& out, Scratch& w) {
  const int32_t hd = cache.head_dim;
  const int32_t hk = cache.num_kv_heads;
  const int32_t bs = cache.block_size;
  const int32_t kv_head = t.head / (hq / hk);
  const int32_t rows = t.row_end - t.row_begin;
  const int32_t prefix = s.context_len - s.q_len;
  const int64_t token_stride = static_cast<int64_t>(hk) * hd;  // elements between tokens
  const DType cdt = cache.k.dtype;
  const size_t esize = dtype_size(cdt);

  std::fill_n(w.acc.begin(), static_cast<size_t>(rows) * hd, 0.0f);
  std::fill_n(w.max.begin(), rows, -std::numeric_limits<float>::infinity());
  std::fill_n(w.sum.begin(), rows, 0.0f);

  // The last context position any row of this task may see.
  const int32_t last = prefix + t.row_end - 1;
  for (int32_t blk = 0; blk * bs <= last; ++blk) {
    const int32_t t0 = blk * bs;
    const int32_t t1 = std::min(t0 + bs, last + 1);
    const int64_t first_elem = (static_cast<int64_t>(s.block_table[blk]) * bs * hk + kv_head) * hd;
    const float* kb;
    const float* vb;
    int64_t kstride;
    if (cdt == DType::kF32) {
      kb = cache.k.as<float>() + first_elem;
      vb = cache.v.as<float>() + first_elem;
      kstride = token_stride;
    } else {
      const char* kraw = static_cast<const char*>(cache.k.data) + first_elem * esize;
      const char* vraw = static_cast<const char*>(cache.v.data) + first_elem * esize;
      for (int32_t j = 0; j < t1 - t0; ++j) {
        const size_t off = static_cast<size_t>(j * token_stride) * esize;
        ops.to_f32(kraw + off, cdt, w.k.data() + static_cast<size_t>(j) * hd, hd);
        ops.to_f32(vraw + off, cdt, w.v.data() + static_cast<size_t>(j) * hd, hd);
      }
      kb = w.k.data();
      vb = w.v.data();
      kstride = hd;
    }

    for (int32_t r = 0; r < rows; ++r) {
      const int32_t row = t.row_begin + r;
      const int32_t limit = prefix + row;  // inclusive causal bound
      if (limit < t0) continue;
      const int32_t tend = std::min(t1, limit + 1);
      const float* qrow =
          q.as<float>() + (static_cast<int64_t>(s.q_start + row) * hq + t.head) * hd;
      float block_max = -std::numeric_limits<float>::infinity();
      for (int32_t j = 0; j < tend - t0; ++j) {
        const float sc = ops.dot(qrow, kb + j * kstride, hd) * scale;
        w.scores[static_cast<size_t>(j)] = sc;
        block_max = std::max(block_max, sc);
      }
      float* acc = w.acc.data() + static_cast<size_t>(r) * hd;
      const float old_max = w.max[static_cast<size_t>(r)];
      const float new_max = std::max(old_max, block_max);
      // Rescaling by exp(old - new) keeps every exponent <= 0, so nothing
      // overflows however large the logits are.
      if (new_max > old_max && old_max != -std::numeric_limits<float>::infinity()) {
        const float corr = std::exp(old_max - new_max);
        w.sum[static_cast<size_t>(r)] *= corr;
        ops.axpby(corr, acc, 0.0f, acc, hd);
      }
      w.max[static_cast<size_t>(r)] = new_max;
      float sum = w.sum[static_cast<size_t>(r)];
      for (int32_t j = 0; j < tend - t0; ++j) {
        const float p = std::exp(w.scores[static_cast<size_t>(j)] - new_max);
        sum += p;
        ops.axpby(1.0f, acc, p, vb + j * kstride, hd);
      }
      w.sum[static_cast<size_t>(r)] = sum;
    }
  }

  for (int32_t r = 0; r < rows; ++r) {
    float* dst =
        out.as<float>() + (static_cast<int64_t>(s.q_start + t.row_begin + r) * hq + t.head) * hd;
    const float* acc = w.acc.data() + static_cast<size_t>(r) * hd;
    // Row r always sees position 0, so sum >= 1 after the max subtraction.
    const float inv = 1.0f / w.sum[static_cast<size_t>(r)];
    for (int32_t d = 0; d < hd; ++d) dst[d] = acc[d] * inv;
  }
}

}  // namespace

void paged_attention(ForkJoinPool& pool, const VecOps& ops, const Tensor& q,
                     const KvCacheView& cache, const std::vector<AttentionSeq>& seqs,
                     int32_t num_q_heads, float scale, Tensor& out) {
  const int32_t hd = cache.head_dim;
  const int32_t hk = cache.num_kv_heads;
  const int32_t hq = num_q_heads;
  BATON_CHECK(q.dtype == DType::kF32 && out.dtype == DType::kF32);
  BATON_CHECK(hd > 0 && hk > 0 && hq > 0 && hq % hk == 0 && cache.block_size > 0);
  BATON_CHECK(cache.k.dtype == cache.v.dtype);
  BATON_CHECK(cache.k.dtype == DType::kF32 || cache.k.dtype == DType::kBF16 ||
              cache.k.dtype == DType::kF16);
  BATON_CHECK(q.cols() == static_cast<int64_t>(hq) * hd && out.cols() == q.cols());
  BATON_CHECK(out.rows() == q.rows());
  const int64_t cache_blocks = cache.k.numel() / (static_cast<int64_t>(cache.block_size) * hk * hd);

  std::vector<Task> tasks;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const AttentionSeq& s = seqs[i];
    BATON_CHECK(s.q_len >= 0 && s.context_len >= s.q_len && s.q_start >= 0);
    BATON_CHECK(s.q_start + s.q_len <= q.rows());
    BATON_CHECK_MSG(static_cast<int64_t>(s.num_blocks) * cache.block_size >= s.context_len,
                    "attention: block table shorter than the context");
    const int32_t used = (s.context_len + cache.block_size - 1) / cache.block_size;
    for (int32_t b = 0; b < used; ++b) {
      BATON_CHECK(s.block_table[b] >= 0 && s.block_table[b] < cache_blocks);
    }
    for (int32_t h = 0; h < hq; ++h) {
      for (int32_t r = 0; r < s.q_len; r += kRowBlock) {
        tasks.push_back(Task{static_cast<int32_t>(i), h, r, std::min(s.q_len, r + kRowBlock)});
      }
    }
  }
  if (tasks.empty()) return;

  std::vector<Scratch> scratch(static_cast<size_t>(pool.size()));
  for (Scratch& w : scratch) {
    w.acc.resize(static_cast<size_t>(kRowBlock) * hd);
    w.max.resize(kRowBlock);
    w.sum.resize(kRowBlock);
    w.scores.resize(static_cast<size_t>(cache.block_size));
    if (cache.k.dtype != DType::kF32) {
      w.k.resize(static_cast<size_t>(cache.block_size) * hd);
      w.v.resize(w.k.size());
    }
  }
  pool.run(static_cast<int64_t>(tasks.size()), [&](int64_t i, int worker) {
    const Task& t = tasks[static_cast<size_t>(i)];
    run_task(t, ops, q, cache, seqs[static_cast<size_t>(t.seq)], hq, scale, out,
             scratch[static_cast<size_t>(worker)]);
  });
}

}  // namespace baton::kernels
