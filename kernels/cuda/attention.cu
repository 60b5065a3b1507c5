// Paged causal attention on the GPU, two kernels over one plan:
//
// - The row kernel (flash-decoding): one block per (query row, KV head,
//   context split). Its warps are the query heads of the KV head's GQA group,
//   so each K/V tile is read from memory once for the whole group. Tiles of 32
//   tokens are staged in shared memory as f32; each lane scores one token and
//   the online softmax runs on warp shuffles. Long contexts are split across
//   blocks and the partial (max, sum, output) triples are merged by a second
//   kernel. It serves decodes and short chunks, and any dtype and head size.
// - The tiled kernel (FlashAttention-2-style prefill): one block of 8 warps
//   per (sequence, query head, 128 query rows), bf16 tensor-core products
//   (mma.sync) for S = Q K^T and O += P V with f32 accumulation in registers,
//   online softmax in f32 over 64-token K/V tiles, causal over cached prefix
//   plus chunk.
//
// Scores are kept in base 2 (the scale is multiplied by log2 e) so that the
// exponentials are exp2f.

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/ops.h"

namespace baton::kernels::cuda {
namespace {

constexpr int kRowTile = 32;   // tokens per K/V tile of the row kernel
constexpr int kMaxAcc = 8;     // head_dim <= 32 * kMaxAcc
constexpr int kMinSplit = 64;  // fewest tokens worth a split of their own
constexpr int kMaxSplits = 64;
constexpr int kPrefetch = 4;  // 16-byte K and V pieces per thread held for the next tile
constexpr float kLog2e = 1.4426950408889634f;

template <typename T, typename C>
__global__ void attn_rows_kernel(const T* __restrict__ q, const C* __restrict__ kc,
                                 const C* __restrict__ vc, T* __restrict__ out,
                                 float* __restrict__ part, const int4* __restrict__ items,
                                 const int32_t* __restrict__ tables, int hq, int hk, int hd, int bs,
                                 float scale_log2, int split_len,
                                 const int32_t* __restrict__ split_len_dev, int num_splits) {
  extern __shared__ float sm[];
  const int G = hq / hk;
  const int ld = hd + 1;  // odd stride: lanes reading different tokens hit different banks
  float* q_s = sm;
  float* k_s = q_s + G * hd;
  float* v_s = k_s + kRowTile * ld;
  const int4 it = items[blockIdx.x];
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int row = it.y, ctx = it.z;
  const int32_t* table = tables + it.w;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int h = kvh * G + warp;

  const T* qrow = q + static_cast<int64_t>(row) * hq * hd + static_cast<int64_t>(kvh) * G * hd;
  for (int i = threadIdx.x; i < G * hd; i += blockDim.x) q_s[i] = to_f(qrow[i]) * scale_log2;

  if (split_len_dev != nullptr) split_len = *split_len_dev;  // a replayed graph's plan
  const int t0 = split * split_len;
  const int t1 = min(ctx, t0 + split_len);
  float m = -INFINITY, l = 0.0f;
  float acc[kMaxAcc];
#pragma unroll
  for (int i = 0; i < kMaxAcc; ++i) acc[i] = 0.0f;
  const float* qh = q_s + warp * hd;

  __shared__ int64_t slot_s[kRowTile];
  const bool vec = sizeof(C) == 2 && hd % 8 == 0;  // 16-byte loads of 8 elements
  // With few enough 16-byte pieces per thread, the next tile's K/V are
  // loaded into registers while the current one is computed (pipelined).
  const int vecs = hd / 8;
  const bool pipelined = vec && kRowTile * vecs <= kPrefetch * static_cast<int>(blockDim.x);
  uint4 pk[kPrefetch], pv[kPrefetch];
  auto fetch = [&](int tile) {
#pragma unroll
    for (int u = 0; u < kPrefetch; ++u) {
      const int i = static_cast<int>(threadIdx.x) + u * static_cast<int>(blockDim.x);
      const int t = i / vecs, d = (i - t * vecs) * 8;
      const int tok = tile + t;
      pk[u] = make_uint4(0, 0, 0, 0);
      pv[u] = pk[u];
      if (i < kRowTile * vecs && tok < t1) {
        const int64_t slot = static_cast<int64_t>(table[tok / bs]) * bs + tok % bs;
        const int64_t off = (slot * hk + kvh) * hd + d;
        pk[u] = *reinterpret_cast<const uint4*>(kc + off);
        pv[u] = *reinterpret_cast<const uint4*>(vc + off);
      }
    }
  };
  if (pipelined && t0 < t1) fetch(t0);
  for (int tile = t0; tile < t1; tile += kRowTile) {
    __syncthreads();  // q_s written / previous tile consumed
    const int n = min(kRowTile, t1 - tile);
    if (pipelined) {
#pragma unroll
      for (int u = 0; u < kPrefetch; ++u) {
        const int i = static_cast<int>(threadIdx.x) + u * static_cast<int>(blockDim.x);
        if (i < kRowTile * vecs) {
          const int t = i / vecs, d = (i - t * vecs) * 8;
          const C* ke = reinterpret_cast<const C*>(&pk[u]);
          const C* ve = reinterpret_cast<const C*>(&pv[u]);
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            k_s[t * ld + d + j] = to_f(ke[j]);
            v_s[t * ld + d + j] = to_f(ve[j]);
          }
        }
      }
      __syncthreads();
      if (tile + kRowTile < t1) fetch(tile + kRowTile);  // in flight during the compute below
    } else {
      if (threadIdx.x < kRowTile) {
        const int tok = tile + threadIdx.x;
        slot_s[threadIdx.x] =
            threadIdx.x < n ? static_cast<int64_t>(table[tok / bs]) * bs + tok % bs : -1;
      }
      __syncthreads();
      // Tokens past the range are zero-filled, so every lane reads defined data.
      if (vec) {
#pragma unroll 4
        for (int i = threadIdx.x; i < kRowTile * vecs; i += blockDim.x) {
          const int t = i / vecs, d = (i - t * vecs) * 8;
          const int64_t slot = slot_s[t];
          uint4 kr = make_uint4(0, 0, 0, 0), vr = kr;
          if (slot >= 0) {
            const int64_t off = (slot * hk + kvh) * hd + d;
            kr = *reinterpret_cast<const uint4*>(kc + off);
            vr = *reinterpret_cast<const uint4*>(vc + off);
          }
          const C* ke = reinterpret_cast<const C*>(&kr);
          const C* ve = reinterpret_cast<const C*>(&vr);
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            k_s[t * ld + d + j] = to_f(ke[j]);
            v_s[t * ld + d + j] = to_f(ve[j]);
          }
        }
      } else {
        for (int i = threadIdx.x; i < kRowTile * hd; i += blockDim.x) {
          const int t = i / hd, d = i - t * hd;
          const int64_t slot = slot_s[t];
          float kv = 0.0f, vv = 0.0f;
          if (slot >= 0) {
            const int64_t off = (slot * hk + kvh) * hd + d;
            kv = to_f(kc[off]);
            vv = to_f(vc[off]);
          }
          k_s[t * ld + d] = kv;
          v_s[t * ld + d] = vv;
        }
      }
      __syncthreads();
    }
    float s = -INFINITY;
    if (lane < n) {
      const float* kr = k_s + lane * ld;
      float p0 = 0.0f, p1 = 0.0f, p2 = 0.0f, p3 = 0.0f;  // four chains, not one
      int d = 0;
      for (; d + 4 <= hd; d += 4) {
        p0 = fmaf(qh[d], kr[d], p0);
        p1 = fmaf(qh[d + 1], kr[d + 1], p1);
        p2 = fmaf(qh[d + 2], kr[d + 2], p2);
        p3 = fmaf(qh[d + 3], kr[d + 3], p3);
      }
      for (; d < hd; ++d) p0 = fmaf(qh[d], kr[d], p0);
      s = (p0 + p1) + (p2 + p3);
    }
    const float nm = fmaxf(m, warp_max(s));  // finite: n >= 1
    const float p = lane < n ? exp2f(s - nm) : 0.0f;
    const float corr = exp2f(m - nm);  // 0 on the first tile (m = -inf)
    l = l * corr + warp_sum(p);
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i) acc[i] *= corr;
    for (int t = 0; t < n; ++t) {
      const float pt = __shfl_sync(0xffffffffu, p, t);
      const float* vr = v_s + t * ld;
#pragma unroll
      for (int i = 0; i < kMaxAcc; ++i) {
        const int d = lane + 32 * i;
        if (d < hd) acc[i] += pt * vr[d];
      }
    }
    m = nm;
  }

  if (num_splits == 1) {
    T* o = out + static_cast<int64_t>(row) * hq * hd + static_cast<int64_t>(h) * hd;
    const float inv = 1.0f / l;  // ctx >= 1: at least one token seen
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) o[d] = from_f<T>(acc[i] * inv);
    }
  } else {
    float* p = part + ((static_cast<int64_t>(blockIdx.x) * hq + h) * num_splits + split) * (hd + 2);
#pragma unroll
    for (int i = 0; i < kMaxAcc; ++i) {
      const int d = lane + 32 * i;
      if (d < hd) p[d] = acc[i];
    }
    if (lane == 0) {
      p[hd] = m;
      p[hd + 1] = l;
    }
  }
}

template <typename T>
__global__ void attn_combine_kernel(const float* __restrict__ part, const int4* __restrict__ items,
                                    T* __restrict__ out, int hq, int hd, int num_splits) {
  const int item = blockIdx.x, h = blockIdx.y;
  const float* base = part + (static_cast<int64_t>(item) * hq + h) * num_splits * (hd + 2);
  float mx = -INFINITY;
  for (int s = 0; s < num_splits; ++s) mx = fmaxf(mx, base[s * (hd + 2) + hd]);
  float total = 0.0f;
  for (int s = 0; s < num_splits; ++s) {
    const float ms = base[s * (hd + 2) + hd];
    if (ms != -INFINITY) total += exp2f(ms - mx) * base[s * (hd + 2) + hd + 1];
  }
  const float inv = 1.0f / total;
  T* o = out + static_cast<int64_t>(items[item].y) * hq * hd + static_cast<int64_t>(h) * hd;
  for (int d = threadIdx.x; d < hd; d += blockDim.x) {
    float v = 0.0f;
    for (int s = 0; s < num_splits; ++s) {
      const float ms = base[s * (hd + 2) + hd];
      if (ms != -INFINITY) v += exp2f(ms - mx) * base[s * (hd + 2) + d];
    }
    o[d] = from_f<T>(v * inv);
  }
}

// ---- tiled prefill (bf16, tensor cores) ------------------------------------
//
// FlashAttention-2 layout on mma.sync m16n8k16 (bf16 in, f32 accumulate):
// each warp owns 16 query rows; Q fragments, the scores S and the output O
// stay in registers, and the score accumulators are re-packed as the A
// operand of P V without a trip through shared memory. K is read as the B
// operand through ldmatrix, V through ldmatrix.trans. Fragment
// coordinates: g = lane / 4 (row, or column of B), t = lane % 4.

constexpr int kTileQ = 128;  // query rows per block (16 per warp)
constexpr int kTileK = 64;   // K/V tokens per step
constexpr int kTiledWarps = 8;

__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* p) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], const void* p) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(p));
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// 16 bytes global -> shared, asynchronously; zero-filled when !valid.
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const auto addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem),
               "r"(src_bytes));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

template <int HD>
struct TiledSmem {
  static constexpr int kLd = HD + 8;  // bf16 row stride: 16-byte aligned, conflict-free
  // Q, then K and V twice: the tile being computed and the one being loaded.
  static constexpr size_t kBytes = sizeof(__nv_bfloat16) * (kTileQ + 4 * kTileK) * kLd;
};

template <int HD>
__global__ void __launch_bounds__(kTiledWarps * 32)
    attn_tiled_kernel(const __nv_bfloat16* __restrict__ q, const __nv_bfloat16* __restrict__ kc,
                      const __nv_bfloat16* __restrict__ vc, __nv_bfloat16* __restrict__ out,
                      const int4* __restrict__ seqs, const int32_t* __restrict__ tables, int hq,
                      int hk, int bs, float scale_log2) {
  constexpr int kLd = TiledSmem<HD>::kLd;
  extern __shared__ __align__(16) unsigned char smem[];
  auto* q_s = reinterpret_cast<__nv_bfloat16*>(smem);
  auto* k_s = q_s + kTileQ * kLd;      // [2][kTileK][kLd]
  auto* v_s = k_s + 2 * kTileK * kLd;  // [2][kTileK][kLd]

  const int4 sq = seqs[blockIdx.z];
  const int q_start = sq.x, q_len = sq.y, ctx = sq.z;
  const int32_t* table = tables + sq.w;
  // Heaviest (last) query tiles first: the causal work grows with the tile.
  const int num_q_tiles = (q_len + kTileQ - 1) / kTileQ;
  const int tile = static_cast<int>(gridDim.x) - 1 - static_cast<int>(blockIdx.x);
  if (tile >= num_q_tiles) return;
  const int r0 = tile * kTileQ;
  const int h = blockIdx.y;
  const int kvh = h / (hq / hk);
  const int prefix = ctx - q_len;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int g = lane >> 2, t = lane & 3;
  constexpr int kVec = 8;  // bf16 per 16-byte load
  constexpr int kRowVecs = HD / kVec;

  for (int i = threadIdx.x; i < kTileQ * kRowVecs; i += blockDim.x) {
    const int r = i / kRowVecs, c = (i - r * kRowVecs) * kVec;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (r0 + r < q_len) {
      v = *reinterpret_cast<const uint4*>(q + static_cast<int64_t>(q_start + r0 + r) * hq * HD +
                                          static_cast<int64_t>(h) * HD + c);
    }
    *reinterpret_cast<uint4*>(q_s + r * kLd + c) = v;
  }
  __syncthreads();
  uint32_t qf[HD / 16][4];
  {
    const __nv_bfloat16* qw = q_s + warp * 16 * kLd;
#pragma unroll
    for (int k = 0; k < HD / 16; ++k) {
      qf[k][0] = *reinterpret_cast<const uint32_t*>(qw + g * kLd + k * 16 + 2 * t);
      qf[k][1] = *reinterpret_cast<const uint32_t*>(qw + (g + 8) * kLd + k * 16 + 2 * t);
      qf[k][2] = *reinterpret_cast<const uint32_t*>(qw + g * kLd + k * 16 + 8 + 2 * t);
      qf[k][3] = *reinterpret_cast<const uint32_t*>(qw + (g + 8) * kLd + k * 16 + 8 + 2 * t);
    }
  }
  float o[HD / 8][4];
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  const int qpos0 = prefix + r0 + warp * 16 + g;  // positions of this thread's two rows
  const int qpos1 = qpos0 + 8;

  const int last_row = min(r0 + kTileQ, q_len) - 1;
  const int kv_end = prefix + last_row + 1;  // tokens any row of this block sees
  const int64_t tok_stride = static_cast<int64_t>(hk) * HD;
  // ldmatrix.x4.trans source rows of V: matrix lane / 8, row lane % 8.
  const int v_tok = (lane & 7) + ((lane >> 3) & 1) * 8;
  const int v_dim = (lane >> 4) * 8;
  // ldmatrix.x4 source rows of K: tokens 0-7 / 8-15 by lane / 16, dims 0-7 /
  // 8-15 by (lane / 8) % 2.
  const int k_tok = (lane & 7) + (lane >> 4) * 8;
  const int k_dim = ((lane >> 3) & 1) * 8;

  // K/V tiles arrive by cp.async into one buffer while the other is used.
  auto issue = [&](int j0, int buf) {
    __nv_bfloat16* kd = k_s + buf * kTileK * kLd;
    __nv_bfloat16* vd = v_s + buf * kTileK * kLd;
    for (int i = threadIdx.x; i < kTileK * kRowVecs; i += blockDim.x) {
      const int r = i / kRowVecs, c = (i - r * kRowVecs) * kVec;
      const int tok = j0 + r;
      const bool ok = tok < kv_end;
      const __nv_bfloat16* ks = kc;
      const __nv_bfloat16* vs = vc;
      if (ok) {
        const int64_t slot = static_cast<int64_t>(table[tok / bs]) * bs + tok % bs;
        const int64_t off = slot * tok_stride + static_cast<int64_t>(kvh) * HD + c;
        ks = kc + off;
        vs = vc + off;
      }
      cp_async16(kd + r * kLd + c, ks, ok);  // zero-filled past the context
      cp_async16(vd + r * kLd + c, vs, ok);
    }
    asm volatile("cp.async.commit_group;\n" ::);
  };
  issue(0, 0);
  for (int j0 = 0, buf = 0; j0 < kv_end; j0 += kTileK, buf ^= 1) {
    if (j0 + kTileK < kv_end) {
      issue(j0 + kTileK, buf ^ 1);
      asm volatile("cp.async.wait_group 1;\n" ::);  // all but the newest: tile j0 is in
    } else {
      asm volatile("cp.async.wait_group 0;\n" ::);
    }
    __syncthreads();
    const __nv_bfloat16* kt = k_s + buf * kTileK * kLd;
    const __nv_bfloat16* vt = v_s + buf * kTileK * kLd;
    // Warps whose rows all precede the tile skip it (barriers stay uniform).
    if (j0 <= prefix + r0 + warp * 16 + 15) {
      float s[kTileK / 8][4];
#pragma unroll
      for (int j = 0; j < kTileK / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
      for (int k = 0; k < HD / 16; ++k) {
#pragma unroll
        for (int jj = 0; jj < kTileK / 16; ++jj) {
          uint32_t b[4];  // B fragments of the n-tiles 2 jj and 2 jj + 1
          ldmatrix_x4(b, kt + (jj * 16 + k_tok) * kLd + k * 16 + k_dim);
          mma_bf16(s[2 * jj], qf[k], b[0], b[1]);
          mma_bf16(s[2 * jj + 1], qf[k], b[2], b[3]);
        }
      }
      // Scale, mask, and the running max of the two rows.
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int j = 0; j < kTileK / 8; ++j) {
        const int tok = j0 + j * 8 + 2 * t;
        s[j][0] = tok <= qpos0 ? s[j][0] * scale_log2 : -INFINITY;
        s[j][1] = tok + 1 <= qpos0 ? s[j][1] * scale_log2 : -INFINITY;
        s[j][2] = tok <= qpos1 ? s[j][2] * scale_log2 : -INFINITY;
        s[j][3] = tok + 1 <= qpos1 ? s[j][3] * scale_log2 : -INFINITY;
        mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
        mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
      }
#pragma unroll
      for (int o_ = 1; o_ <= 2; o_ <<= 1) {
        mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, o_));
        mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, o_));
      }
      const float n0 = fmaxf(m0, mx0), n1 = fmaxf(m1, mx1);
      // A row with nothing visible yet keeps max -inf; its terms are all 0.
      const float b0 = n0 == -INFINITY ? 0.0f : n0, b1 = n1 == -INFINITY ? 0.0f : n1;
      const float c0 = exp2f(m0 - b0), c1 = exp2f(m1 - b1);
      float sum0 = 0.0f, sum1 = 0.0f;
#pragma unroll
      for (int j = 0; j < kTileK / 8; ++j) {
        s[j][0] = exp2f(s[j][0] - b0);
        s[j][1] = exp2f(s[j][1] - b0);
        s[j][2] = exp2f(s[j][2] - b1);
        s[j][3] = exp2f(s[j][3] - b1);
        sum0 += s[j][0] + s[j][1];
        sum1 += s[j][2] + s[j][3];
      }
      l0 = l0 * c0 + sum0;  // quad partial sums; reduced once at the end
      l1 = l1 * c1 + sum1;
      m0 = n0;
      m1 = n1;
#pragma unroll
      for (int j = 0; j < HD / 8; ++j) {
        o[j][0] *= c0;
        o[j][1] *= c0;
        o[j][2] *= c1;
        o[j][3] *= c1;
      }
      // O += P V, 16 tokens per k-step.
#pragma unroll
      for (int kk = 0; kk < kTileK / 16; ++kk) {
        uint32_t a[4];
        a[0] = pack_bf16(s[2 * kk][0], s[2 * kk][1]);
        a[1] = pack_bf16(s[2 * kk][2], s[2 * kk][3]);
        a[2] = pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]);
        a[3] = pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
        for (int j = 0; j < HD / 16; ++j) {
          uint32_t b[4];
          ldmatrix_x4_trans(b, vt + (kk * 16 + v_tok) * kLd + j * 16 + v_dim);
          mma_bf16(o[2 * j], a, b[0], b[1]);
          mma_bf16(o[2 * j + 1], a, b[2], b[3]);
        }
      }
    }
    __syncthreads();  // this buffer is refilled by the next iteration's load
  }

#pragma unroll
  for (int o_ = 1; o_ <= 2; o_ <<= 1) {
    l0 += __shfl_xor_sync(0xffffffffu, l0, o_);
    l1 += __shfl_xor_sync(0xffffffffu, l1, o_);
  }
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1;
  const int row0 = r0 + warp * 16 + g, row1 = row0 + 8;
  __nv_bfloat16* base = out + static_cast<int64_t>(h) * HD + 2 * t;
#pragma unroll
  for (int j = 0; j < HD / 8; ++j) {
    if (row0 < q_len) {
      *reinterpret_cast<uint32_t*>(base + static_cast<int64_t>(q_start + row0) * hq * HD + j * 8) =
          pack_bf16(o[j][0] * inv0, o[j][1] * inv0);
    }
    if (row1 < q_len) {
      *reinterpret_cast<uint32_t*>(base + static_cast<int64_t>(q_start + row1) * hq * HD + j * 8) =
          pack_bf16(o[j][2] * inv1, o[j][3] * inv1);
    }
  }
}

template <int HD>
void launch_tiled(const Tensor& q, const KvCacheView& cache, const AttentionPlan& plan, int hq,
                  float scale_log2, Tensor& out, cudaStream_t s) {
  constexpr size_t bytes = TiledSmem<HD>::kBytes;
  if constexpr (bytes > 48 * 1024) {
    static bool configured = false;  // per instantiation; the attribute is per function
    if (!configured) {
      cudaFuncSetAttribute(attn_tiled_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(bytes));
      configured = true;
    }
  }
  dim3 grid((plan.max_tiled_q + kTileQ - 1) / kTileQ, hq, plan.num_tiled);
  attn_tiled_kernel<HD><<<grid, kTiledWarps * 32, bytes, s>>>(
      q.as<__nv_bfloat16>(), cache.k.as<__nv_bfloat16>(), cache.v.as<__nv_bfloat16>(),
      out.as<__nv_bfloat16>(), plan.tiled, plan.tables, hq, cache.num_kv_heads, cache.block_size,
      scale_log2);
  BATON_CUDA_LAUNCH_CHECK();
}

// ---- GQA decode kernel (bf16 cache, head size 64 or 128) -------------------
//
// The same work items, splits and partial layout as the row kernel, without
// shared-memory staging: each warp walks its own tokens of the split, a token
// spread over HD / 8 lanes that each hold 8 of its dimensions (one 16-byte
// load of K and one of V), and scores it against all G query heads of the KV
// head from registers. Online softmax state is per lane group; groups and
// warps are merged once at the end. Shared memory traffic per token is then
// nil, so the loop is bound by the KV reads alone.

constexpr int kGqaWarps = 4;
constexpr int kGqaUnroll = 4;  // tokens of a lane group in flight

__device__ __forceinline__ void bf16x8_to_float(const uint4& v, float (&f)[8]) {
  const auto* h = reinterpret_cast<const __nv_bfloat162*>(&v);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 x = __bfloat1622float2(h[i]);
    f[2 * i] = x.x;
    f[2 * i + 1] = x.y;
  }
}

template <typename T, int HD, int G>
__global__ void __launch_bounds__(kGqaWarps * 32)
    attn_gqa_kernel(const T* __restrict__ q, const __nv_bfloat16* __restrict__ kc,
                    const __nv_bfloat16* __restrict__ vc, T* __restrict__ out,
                    float* __restrict__ part, const int4* __restrict__ items,
                    const int32_t* __restrict__ tables, int hk, int bs, float scale_log2,
                    int split_len, const int32_t* __restrict__ split_len_dev, int num_splits) {
  constexpr int kLanes = HD / 8;         // lanes per token
  constexpr int kPerStep = 32 / kLanes;  // tokens per warp step
  __shared__ float merge_s[kGqaWarps][G][HD + 2];
  const int4 it = items[blockIdx.x];
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int row = it.y, ctx = it.z;
  const int32_t* table = tables + it.w;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int sub = lane / kLanes, piece = lane % kLanes;
  const int hq = hk * G;
  if (split_len_dev != nullptr) split_len = *split_len_dev;
  const int t0 = split * split_len;
  const int t1 = min(ctx, t0 + split_len);

  float qf[G][8];
  {
    const T* qrow = q + static_cast<int64_t>(row) * hq * HD + static_cast<int64_t>(kvh) * G * HD;
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int j = 0; j < 8; ++j) qf[g][j] = to_f(qrow[g * HD + piece * 8 + j]) * scale_log2;
    }
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int g = 0; g < G; ++g) {
    m[g] = -INFINITY;
    l[g] = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; ++j) acc[g][j] = 0.0f;
  }
  const int64_t tok_stride = static_cast<int64_t>(hk) * HD;
  constexpr int kStride = kGqaWarps * kPerStep;  // tokens between a group's steps
  // The loop bound is the same for the whole warp (shuffles inside).
  for (int base = t0 + warp * kPerStep; base < t1; base += kStride * kGqaUnroll) {
    uint4 kr[kGqaUnroll], vr[kGqaUnroll];
#pragma unroll
    for (int u = 0; u < kGqaUnroll; ++u) {
      const int tok = base + sub + u * kStride;
      kr[u] = make_uint4(0, 0, 0, 0);
      vr[u] = kr[u];
      if (tok < t1) {
        const int64_t slot = static_cast<int64_t>(table[tok / bs]) * bs + tok % bs;
        const int64_t off = slot * tok_stride + static_cast<int64_t>(kvh) * HD + piece * 8;
        kr[u] = *reinterpret_cast<const uint4*>(kc + off);
        vr[u] = *reinterpret_cast<const uint4*>(vc + off);
      }
    }
#pragma unroll
    for (int u = 0; u < kGqaUnroll; ++u) {
      // Every lane of a warp takes part in the shuffles, valid token or not.
      const bool valid = base + sub + u * kStride < t1;
      float kf[8], vf[8];
      bf16x8_to_float(kr[u], kf);
      bf16x8_to_float(vr[u], vf);
#pragma unroll
      for (int g = 0; g < G; ++g) {
        float sc = 0.0f;
#pragma unroll
        for (int j = 0; j < 8; ++j) sc = fmaf(qf[g][j], kf[j], sc);
#pragma unroll
        for (int o = 1; o < kLanes; o <<= 1) sc += __shfl_xor_sync(0xffffffffu, sc, o);
        if (valid) {
          const float nm = fmaxf(m[g], sc);
          const float corr = exp2f(m[g] - nm);  // 0 while m is -inf
          const float p = exp2f(sc - nm);
          l[g] = l[g] * corr + p;
#pragma unroll
          for (int j = 0; j < 8; ++j) acc[g][j] = fmaf(acc[g][j], corr, p * vf[j]);
          m[g] = nm;
        }
      }
    }
  }

  // Merge the lane groups of the warp (same piece, other tokens), then warps.
#pragma unroll
  for (int o = kLanes; o < 32; o <<= 1) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
      const float om = __shfl_xor_sync(0xffffffffu, m[g], o);
      const float ol = __shfl_xor_sync(0xffffffffu, l[g], o);
      const float nm = fmaxf(m[g], om);
      const float a = nm == -INFINITY ? 0.0f : exp2f(m[g] - nm);
      const float b = nm == -INFINITY ? 0.0f : exp2f(om - nm);
      l[g] = l[g] * a + ol * b;
#pragma unroll
      for (int j = 0; j < 8; ++j) {
        const float oa = __shfl_xor_sync(0xffffffffu, acc[g][j], o);
        acc[g][j] = acc[g][j] * a + oa * b;
      }
      m[g] = nm;
    }
  }
  if (sub == 0) {
#pragma unroll
    for (int g = 0; g < G; ++g) {
#pragma unroll
      for (int j = 0; j < 8; ++j) merge_s[warp][g][piece * 8 + j] = acc[g][j];
      if (piece == 0) {
        merge_s[warp][g][HD] = m[g];
        merge_s[warp][g][HD + 1] = l[g];
      }
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < G * HD; i += blockDim.x) {
    const int g = i / HD, d = i - g * HD;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kGqaWarps; ++w) mx = fmaxf(mx, merge_s[w][g][HD]);
    float lsum = 0.0f, v = 0.0f;
    if (mx != -INFINITY) {
#pragma unroll
      for (int w = 0; w < kGqaWarps; ++w) {
        const float e = exp2f(merge_s[w][g][HD] - mx);
        lsum += e * merge_s[w][g][HD + 1];
        v += e * merge_s[w][g][d];
      }
    }
    const int h = kvh * G + g;
    if (num_splits == 1) {
      out[static_cast<int64_t>(row) * hq * HD + static_cast<int64_t>(h) * HD + d] =
          from_f<T>(v / lsum);
    } else {
      float* p =
          part + ((static_cast<int64_t>(blockIdx.x) * hq + h) * num_splits + split) * (HD + 2);
      p[d] = v;
      if (d == 0) {
        p[HD] = mx;
        p[HD + 1] = lsum;
      }
    }
  }
}

template <typename T>
bool launch_gqa(const Tensor& q, const KvCacheView& cache, const AttentionPlan& plan, int hq,
                float scale_log2, Tensor& out, cudaStream_t s) {
  const int hk = cache.num_kv_heads, hd = cache.head_dim, G = hq / hk;
  if (cache.k.dtype != DType::kBF16 || (hd != 64 && hd != 128)) return false;
  if (G != 1 && G != 2 && G != 4 && G != 8) return false;
  dim3 grid(plan.num_items, hk, plan.num_splits);
  auto go = [&](auto hd_c, auto g_c) {
    constexpr int HD = decltype(hd_c)::value, GG = decltype(g_c)::value;
    attn_gqa_kernel<T, HD, GG><<<grid, kGqaWarps * 32, 0, s>>>(
        q.as<T>(), cache.k.as<__nv_bfloat16>(), cache.v.as<__nv_bfloat16>(), out.as<T>(),
        plan.partials, plan.items, plan.tables, hk, cache.block_size, scale_log2, plan.split_len,
        plan.split_len_dev, plan.num_splits);
  };
  auto with_g = [&](auto hd_c) {
    switch (G) {
      case 1:
        go(hd_c, std::integral_constant<int, 1>{});
        break;
      case 2:
        go(hd_c, std::integral_constant<int, 2>{});
        break;
      case 4:
        go(hd_c, std::integral_constant<int, 4>{});
        break;
      default:
        go(hd_c, std::integral_constant<int, 8>{});
    }
  };
  if (hd == 128) {
    with_g(std::integral_constant<int, 128>{});
  } else {
    with_g(std::integral_constant<int, 64>{});
  }
  BATON_CUDA_LAUNCH_CHECK();
  return true;
}

}  // namespace

int32_t attention_splits(int32_t num_items, int32_t num_kv_heads, int32_t max_ctx, int num_sms,
                         int32_t* split_len) {
  const int64_t blocks = static_cast<int64_t>(num_items) * num_kv_heads;
  int64_t splits = 1;
  if (blocks < 2 * static_cast<int64_t>(num_sms)) {
    splits = (2 * num_sms + blocks - 1) / blocks;
    splits = std::min<int64_t>(splits, (max_ctx + kMinSplit - 1) / kMinSplit);
    splits = std::clamp<int64_t>(splits, 1, kMaxSplits);
  }
  int64_t len = (max_ctx + splits - 1) / splits;
  len = (len + kRowTile - 1) / kRowTile * kRowTile;
  if (len < kRowTile) len = kRowTile;
  *split_len = static_cast<int32_t>(len);
  return static_cast<int32_t>((max_ctx + len - 1) / len);
}

size_t attention_partial_floats(int32_t num_items, int32_t num_q_heads, int32_t head_dim,
                                int32_t num_splits) {
  if (num_splits <= 1) return 0;
  return static_cast<size_t>(num_items) * num_q_heads * num_splits * (head_dim + 2);
}

bool tiled_prefill_supported(DType q_dtype, DType cache_dtype, int32_t head_dim) {
  return q_dtype == DType::kBF16 && cache_dtype == DType::kBF16 &&
         (head_dim == 64 || head_dim == 128);
}

void launch_attention(const Tensor& q, const KvCacheView& cache, const AttentionPlan& plan,
                      int32_t num_q_heads, float scale, Tensor& out, cudaStream_t s) {
  const int hq = num_q_heads, hk = cache.num_kv_heads, hd = cache.head_dim;
  const float scale_log2 = scale * kLog2e;
  if (plan.num_tiled > 0) {
    if (hd == 128) {
      launch_tiled<128>(q, cache, plan, hq, scale_log2, out, s);
    } else {
      launch_tiled<64>(q, cache, plan, hq, scale_log2, out, s);
    }
  }
  if (plan.num_items == 0) return;
  BATON_CHECK_MSG(hd <= 32 * kMaxAcc, "cuda attention: head_dim above 256");
  const int G = hq / hk;
  const size_t smem = sizeof(float) * (static_cast<size_t>(G) * hd + 2 * kRowTile * (hd + 1));
  dim3 grid(plan.num_items, hk, plan.num_splits);
  dispatch_act(q.dtype, [&](auto qt) {
    using T = typename decltype(qt)::type;
    const bool gqa = launch_gqa<T>(q, cache, plan, hq, scale_log2, out, s);
    dispatch_float(cache.k.dtype, [&](auto ct) {
      using C = typename decltype(ct)::type;
      if (gqa) return;
      if (smem > 48 * 1024) {
        cudaFuncSetAttribute(attn_rows_kernel<T, C>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem));
      }
      attn_rows_kernel<T, C><<<grid, G * 32, smem, s>>>(
          q.as<T>(), cache.k.as<C>(), cache.v.as<C>(), out.as<T>(), plan.partials, plan.items,
          plan.tables, hq, hk, hd, cache.block_size, scale_log2, plan.split_len, plan.split_len_dev,
          plan.num_splits);
      BATON_CUDA_LAUNCH_CHECK();
    });
    if (plan.num_splits > 1) {
      attn_combine_kernel<T><<<dim3(plan.num_items, hq), 128, 0, s>>>(
          plan.partials, plan.items, out.as<T>(), hq, hd, plan.num_splits);
      BATON_CUDA_LAUNCH_CHECK();
    }
  });
}

}  // namespace baton::kernels::cuda
