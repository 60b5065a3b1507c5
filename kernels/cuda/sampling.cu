// Sampling on the GPU (Backend::sample, kernels/sampling.h): one block of
// 1024 threads per row, reading that row's logits where the forward pass left
// them. Greedy rows cost one pass (argmax). Other rows find the top-k and
// top-p cuts without sorting: a binary search over the 32-bit order-preserving
// keys of the float logits, each probe one pass that counts tokens (top-k) or
// sums their weights (top-p) at or above it, so 32 passes at most per cut.
// The draw walks the candidates in id order: each thread owns a contiguous
// range of ids, a block-wide prefix sum of the ranges' weights finds the
// range that holds the target, and that thread walks it. Weights and sums are
// double, as on the host; every reduction has a fixed order, so a row's
// result depends only on its logits, params and uniform number.
//
// Rows with edits (penalties, min_tokens masks) copy their logits to a
// scratch row first and edit the copy: rows may share a logits row, and the
// logits stay as they were.

#include <cfloat>
#include <climits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace baton::kernels::cuda {
namespace {

constexpr int kThreads = 1024;
constexpr int kWarps = kThreads / 32;
// Most tokens a row's head may hold for the cuts to be searched in shared
// memory (16 KiB of values).
constexpr int32_t kHeadMax = 4096;

// Larger float, larger key (for every non-NaN value, -inf and +inf included).
__device__ __forceinline__ uint32_t order_key(float f) {
  const uint32_t u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float key_float(uint32_t k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7FFFFFFFu) : ~k);
}

struct Scratch {
  double d[kWarps];
  int32_t i[kWarps];
  float f[kWarps];
  int32_t j[kWarps];
};

// Block-wide reductions for blocks of exactly kThreads; every thread gets the
// result.
__device__ double block_sum(double v, Scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) s.d[warp] = v;
  __syncthreads();
  v = s.d[lane];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ int32_t block_sum(int32_t v, Scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) s.i[warp] = v;
  __syncthreads();
  v = s.i[lane];
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ int32_t block_max(int32_t v, Scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads();
  if (lane == 0) s.i[warp] = v;
  __syncthreads();
  v = s.i[lane];
  for (int o = 16; o > 0; o >>= 1) v = max(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// (value, id) with the larger value, ties to the lower id.
__device__ __forceinline__ void better_of(float& v, int32_t& id, float ov, int32_t oid) {
  if (ov > v || (ov == v && oid < id)) {
    v = ov;
    id = oid;
  }
}

__device__ void block_argmax(float& v, int32_t& id, Scratch& s) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int o = 16; o > 0; o >>= 1) {
    better_of(v, id, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, id, o));
  }
  __syncthreads();
  if (lane == 0) {
    s.f[warp] = v;
    s.j[warp] = id;
  }
  __syncthreads();
  v = s.f[lane];
  id = s.j[lane];
  for (int o = 16; o > 0; o >>= 1) {
    better_of(v, id, __shfl_xor_sync(0xffffffffu, v, o), __shfl_xor_sync(0xffffffffu, id, o));
  }
}

// Exclusive prefix sums over the threads in order; `total` gets the sum.
template <typename T>
__device__ T block_exclusive_scan(T v, T* warp_totals, T& total) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  T inc = v;
  for (int o = 1; o < 32; o <<= 1) {
    const T n = __shfl_up_sync(0xffffffffu, inc, o);
    if (lane >= o) inc += n;
  }
  __syncthreads();
  if (lane == 31) warp_totals[warp] = inc;
  __syncthreads();
  T before = lane < warp ? warp_totals[lane] : T(0);
  T all = warp_totals[lane];
  for (int o = 16; o > 0; o >>= 1) {
    before += __shfl_xor_sync(0xffffffffu, before, o);
    all += __shfl_xor_sync(0xffffffffu, all, o);
  }
  total = all;
  return before + inc - v;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* logits, int32_t vocab, const SampleRowDev* rows,
                  const SampleEditDev* edits, float* scratch, SampleOutDev* outs) {
  __shared__ Scratch red;
  __shared__ int32_t s_token;
  const SampleRowDev row = rows[blockIdx.x];
  const int tid = threadIdx.x;
  const float* raw = logits + static_cast<size_t>(row.logits_row) * vocab;
  const float* src = raw;

  if (row.num_edits > 0) {
    float* copy = scratch + static_cast<size_t>(row.scratch_row) * vocab;
    for (int32_t t = tid; t < vocab; t += kThreads) copy[t] = raw[t];
    __syncthreads();
    const bool counts = row.frequency_penalty != 0.0f || row.presence_penalty != 0.0f;
    for (int32_t i = tid; i < row.num_edits; i += kThreads) {
      const SampleEditDev e = edits[row.edit_begin + i];
      if (e.token < 0 || e.token >= vocab) continue;
      float v = copy[e.token];
      if (e.flags & kEditMasked) {
        v = -INFINITY;
      } else {
        // The host's operations one by one, rounded alike (no contraction).
        const float rp = row.repetition_penalty;
        if ((e.flags & kEditSeen) && rp != 1.0f) v = v > 0.0f ? __fdiv_rn(v, rp) : __fmul_rn(v, rp);
        if (counts && e.output_count > 0) {
          v = __fsub_rn(
              v, __fadd_rn(__fmul_rn(row.frequency_penalty, static_cast<float>(e.output_count)),
                           row.presence_penalty));
        }
      }
      copy[e.token] = v;
    }
    __syncthreads();
    src = copy;
  }

  const bool greedy = row.temperature == 0.0f;
  const float inv_t = greedy ? 1.0f : __fdiv_rn(1.0f, row.temperature);
  bool scale = !greedy;
  auto X = [&](int32_t t) {
    const float v = src[t];
    return scale ? __fmul_rn(v, inv_t) : v;
  };

  float M = -INFINITY;
  int32_t amax = INT_MAX;
  for (int32_t t = tid; t < vocab; t += kThreads) better_of(M, amax, X(t), t);
  block_argmax(M, amax, red);
  if (!isfinite(M)) {
    // Everything masked: the raw logits, unscaled, as on the host.
    src = raw;
    scale = false;
    M = -INFINITY;
    amax = INT_MAX;
    for (int32_t t = tid; t < vocab; t += kThreads) better_of(M, amax, X(t), t);
    block_argmax(M, amax, red);
  }
  if (amax == INT_MAX) amax = 0;  // NaN everywhere

  int32_t token = amax;
  const double md = M;
  if (!greedy) {
    auto W = [&](float x) { return exp(static_cast<double>(x) - md); };
    const float min_logit = row.min_p > 0.0f ? M + logf(row.min_p) : -FLT_MAX;
    // Candidates: keys above `cut`, and the first `need` (by id) equal to it.
    uint32_t cut = 0;
    int32_t need = INT_MAX;
    const uint32_t top = order_key(M);
    const bool use_k = row.top_k > 0 && row.top_k < vocab;
    const bool use_p = row.top_p < 1.0f;
    // The head: when the tokens within a few logits of the best one are few
    // enough for shared memory and certainly hold both cuts, the searches
    // run over them instead of over the whole row. Levels below the maximum,
    // in (scaled) logits; the most inclusive one that fits is taken.
    constexpr int kLevels = 6;
    constexpr float kDepth[kLevels] = {2.0f, 4.0f, 8.0f, 16.0f, 32.0f, 64.0f};
    __shared__ float s_head[kHeadMax];
    __shared__ int32_t s_warp[kWarps];
    int32_t n_head = -1;  // -1: search the whole row
    uint32_t head_key = 0;
    double total_all = 0.0;
    if (use_k || use_p) {
      int32_t cnt[kLevels] = {};
      double mass[kLevels] = {};
      uint32_t lk[kLevels];
#pragma unroll
      for (int l = 0; l < kLevels; ++l) lk[l] = order_key(M - kDepth[l]);
      for (int32_t t = tid; t < vocab; t += kThreads) {
        const float x = X(t);
        const uint32_t k = order_key(x);
        const double w = use_p ? W(x) : 0.0;
        total_all += w;
#pragma unroll
        for (int l = 0; l < kLevels; ++l) {
          if (k >= lk[l]) {
            ++cnt[l];
            mass[l] += w;
          }
        }
      }
      if (use_p) total_all = block_sum(total_all, red);
      int chosen = -1;
      for (int l = 0; l < kLevels; ++l) {
        const int32_t c = block_sum(cnt[l], red);
        const double m = use_p ? block_sum(mass[l], red) : 0.0;
        if (c > kHeadMax) break;
        // Top-k: the k-th best is inside. Top-p alone: the mass is reached
        // inside (with top-k, the top-k set inside holds the top-p cut).
        const bool holds_k = !use_k || c >= row.top_k;
        const bool holds_p = use_k || !use_p || m >= static_cast<double>(row.top_p) * total_all;
        if (holds_k && holds_p) {
          chosen = l;
          n_head = c;
        }
      }
      if (chosen >= 0) {
        // Ordered compaction (id order), a tile of kThreads ids at a time.
        head_key = lk[chosen];
        const int lane = tid & 31, warp = tid >> 5;
        int32_t base = 0;
        for (int32_t t0 = 0; t0 < vocab; t0 += kThreads) {
          const int32_t t = t0 + tid;
          float x = 0.0f;
          bool in = false;
          if (t < vocab) {
            x = X(t);
            in = order_key(x) >= head_key;
          }
          const unsigned ballot = __ballot_sync(0xffffffffu, in);
          __syncthreads();
          if (lane == 0) s_warp[warp] = __popc(ballot);
          __syncthreads();
          int32_t before = 0, tile = 0;
          for (int w = 0; w < kWarps; ++w) {
            const int32_t c = s_warp[w];
            tile += c;
            before += w < warp ? c : 0;
          }
          if (in) s_head[base + before + __popc(ballot & ((1u << lane) - 1u))] = x;
          base += tile;
        }
        __syncthreads();
      }
    }
    // Every value the searches look at: the head, or the whole row.
    auto for_each = [&](auto&& f) {
      if (n_head >= 0) {
        for (int32_t i = tid; i < n_head; i += kThreads) f(s_head[i]);
      } else {
        for (int32_t t = tid; t < vocab; t += kThreads) f(X(t));
      }
    };
    const uint32_t floor_key = n_head >= 0 ? head_key : 0u;

    if (use_k) {
      uint32_t lo = floor_key, hi = top;  // count(key >= lo) >= k always holds
      while (lo < hi) {
        const uint32_t mid = lo + static_cast<uint32_t>((static_cast<uint64_t>(hi) - lo + 1) / 2);
        int32_t c = 0;
        for_each([&](float x) { c += order_key(x) >= mid; });
        if (block_sum(c, red) >= row.top_k) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      int32_t gt = 0;
      for_each([&](float x) { gt += order_key(x) > lo; });
      cut = lo;
      need = row.top_k - block_sum(gt, red);
    }
    if (use_p) {
      double above = 0.0;
      int32_t ties = 0;
      for_each([&](float x) {
        const uint32_t k = order_key(x);
        if (k > cut) above += W(x);
        ties += k == cut;
      });
      above = block_sum(above, red);
      ties = block_sum(ties, red);
      // Without top-k the candidate set is the whole row, head or not.
      const double total =
          !use_k
              ? total_all
              : above + (ties > 0 ? static_cast<double>(min(need, ties)) * W(key_float(cut)) : 0.0);
      const double target = static_cast<double>(row.top_p) * total;
      uint32_t lo = max(cut, floor_key), hi = top;  // mass(key >= lo) reaches the target
      while (lo < hi) {
        const uint32_t mid = lo + static_cast<uint32_t>((static_cast<uint64_t>(hi) - lo + 1) / 2);
        double m = 0.0;
        for_each([&](float x) {
          if (order_key(x) >= mid) m += W(x);
        });
        if (block_sum(m, red) >= target) {
          lo = mid;
        } else {
          hi = mid - 1;
        }
      }
      above = 0.0;
      ties = 0;
      for_each([&](float x) {
        const uint32_t k = order_key(x);
        if (k > lo) above += W(x);
        ties += k == lo;
      });
      above = block_sum(above, red);
      ties = block_sum(ties, red);
      const int32_t limit = lo == cut ? min(need, ties) : ties;
      const double w = W(key_float(lo));
      const double more = w > 0.0 ? ceil((target - above) / w) : 1.0;
      need = static_cast<int32_t>(fmin(fmax(more, 1.0), static_cast<double>(max(limit, 1))));
      cut = lo;
    }

    // The draw, in id order over contiguous ranges of ids.
    const int32_t chunk = (vocab + kThreads - 1) / kThreads;
    const int32_t begin = min(vocab, tid * chunk), end = min(vocab, begin + chunk);
    int32_t my_ties = 0;
    if (need != INT_MAX) {
      for (int32_t t = begin; t < end; ++t) my_ties += order_key(X(t)) == cut;
    }
    int32_t unused = 0;
    __shared__ int32_t int_totals[kWarps];
    __shared__ double double_totals[kWarps];
    const int32_t tie_base = block_exclusive_scan(my_ties, int_totals, unused);
    auto candidate = [&](int32_t t, int32_t& rank, float& x) {
      x = X(t);
      const uint32_t k = order_key(x);
      const bool in = k > cut || (k == cut && rank++ < need);
      return in && x >= min_logit && x != -INFINITY;
    };
    double my_sum = 0.0;
    int32_t my_n = 0, my_last = -1;
    int32_t rank = tie_base;
    for (int32_t t = begin; t < end; ++t) {
      float x;
      if (candidate(t, rank, x)) {
        my_sum += W(x);
        ++my_n;
        my_last = t;
      }
    }
    double total = 0.0;
    const double base = block_exclusive_scan(my_sum, double_totals, total);
    const int32_t n_cand = block_sum(my_n, red);
    const int32_t last = block_max(my_last, red);
    if (tid == 0) s_token = INT_MAX;
    __syncthreads();
    if (n_cand > 0) {
      const double target = row.uniform * total;
      if (my_n > 0 && target >= base && target < base + my_sum) {
        double cum = base;
        int32_t pick = my_last;  // if rounding leaves target unreached
        rank = tie_base;
        for (int32_t t = begin; t < end; ++t) {
          float x;
          if (candidate(t, rank, x)) {
            cum += W(x);
            if (target < cum) {
              pick = t;
              break;
            }
          }
        }
        atomicMin(&s_token, pick);
      }
      __syncthreads();
      token = s_token != INT_MAX ? s_token : last;
    }
  }

  SampleOutDev* out = outs + blockIdx.x;
  if (tid == 0) {
    out->token = token;
    out->num_top = 0;
  }
  if (row.logprobs >= 0) {
    double s = 0.0;
    for (int32_t t = tid; t < vocab; t += kThreads) s += exp(static_cast<double>(X(t)) - md);
    const double log_z = md + log(block_sum(s, red));
    if (tid == 0) out->logprob = static_cast<float>(static_cast<double>(X(token)) - log_z);
    const int32_t n = min(min(row.logprobs, vocab), kMaxTopLogprobs);
    float pv = INFINITY;
    int32_t pi = -1;
    for (int32_t i = 0; i < n; ++i) {
      float bv = -INFINITY;
      int32_t bi = INT_MAX;
      for (int32_t t = tid; t < vocab; t += kThreads) {
        const float x = X(t);
        if (x < pv || (x == pv && t > pi)) better_of(bv, bi, x, t);
      }
      block_argmax(bv, bi, red);
      if (bi == INT_MAX) break;
      if (tid == 0) {
        out->top_tokens[i] = bi;
        out->top_logprobs[i] = static_cast<float>(static_cast<double>(bv) - log_z);
        out->num_top = i + 1;
      }
      pv = bv;
      pi = bi;
    }
  }
}

}  // namespace

void launch_sample(const float* logits, int32_t vocab, const SampleRowDev* rows, int32_t num_rows,
                   const SampleEditDev* edits, float* scratch, SampleOutDev* out, cudaStream_t s) {
  if (num_rows == 0) return;
  sample_kernel<<<num_rows, kThreads, 0, s>>>(logits, vocab, rows, edits, scratch, out);
  BATON_CUDA_LAUNCH_CHECK();
}

}  // namespace baton::kernels::cuda
