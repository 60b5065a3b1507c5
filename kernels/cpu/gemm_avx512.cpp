#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa.h"

#if BATON_HAVE_X86_KERNELS

#include "common/status.h"
#include "kernels/cpu/simd_x86.h"

namespace baton::kernels {
namespace {

using x86::load16;
using x86::load_scalar;

constexpr int kWidth = 16;
// 32 zmm registers: 4 x rows by 4 weight rows is 16 accumulators plus 4 weight and 1 x register.
constexpr int kMaxRows = 4;
constexpr int kCols = 4;
// Weight rows per tile when there is a single x row.
constexpr int kGemvCols = 8;

// out[r0 .. r0+R, c0 .. c0+C] for R x rows against C weight rows.
template <DType T, int R, int C>
BATON_TARGET_AVX512 void tile(const LinearArgs& a, int64_t r0, int64_t c0) {
  const int64_t k = a.k;
  const float* xr[R];
  const char* wr[C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) xr[r] = a.x + (r0 + r) * k;
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
    wr[c] = static_cast<const char*>(a.w) + static_cast<size_t>((c0 + c) * k) * dtype_size(T);
  }
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int64_t i = 0;
  for (; i + kWidth <= k; i += kWidth) {
    __m512 wv[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) wv[c] = load16<T>(wr[c], i);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(xr[r] + i);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      float s = x86::hsum16(acc[r][c]);
      for (int64_t j = i; j < k; ++j) s += xr[r][j] * load_scalar<T>(wr[c], j);
      if (a.bias) {
        switch (a.bias_dtype) {
          case DType::kBF16:
            s += load_scalar<DType::kBF16>(a.bias, c0 + c);
            break;
          case DType::kF16:
            s += load_scalar<DType::kF16>(a.bias, c0 + c);
            break;
          default:
            s += load_scalar<DType::kF32>(a.bias, c0 + c);
        }
      }
      a.out[(r0 + r) * a.m + c0 + c] = s;
    }
  }
}

template <DType T, int C>
BATON_TARGET_AVX512 void column_block(const LinearArgs& a, int64_t rb, int64_t re, int64_t c0) {
  // Every x row of the panel meets this weight tile while it is in cache.
  int64_t r = rb;
  for (; r + kMaxRows <= re; r += kMaxRows) tile<T, kMaxRows, C>(a, r, c0);
  switch (re - r) {
    case 3:
      if constexpr (kMaxRows > 3) tile<T, 3, C>(a, r, c0);
      break;
    case 2:
      if constexpr (kMaxRows > 2) tile<T, 2, C>(a, r, c0);
      break;
    case 1:
      tile<T, 1, C>(a, r, c0);
      break;
    default:
      break;
  }
}

template <DType T>
BATON_TARGET_AVX512 void tiles(const LinearArgs& a, int64_t rb, int64_t re, int64_t cb,
                               int64_t ce) {
  int64_t c = cb;
  if (re - rb == 1) {
    // A single x row (batch-1 decode) is a pure weight stream: eight rows in
    // flight at once keep more loads outstanding than the 4 x 4 tile does.
    for (; c + kGemvCols <= ce; c += kGemvCols) tile<T, 1, kGemvCols>(a, rb, c);
  }
  for (; c + kCols <= ce; c += kCols) column_block<T, kCols>(a, rb, re, c);
  for (; c < ce; ++c) column_block<T, 1>(a, rb, re, c);
}

}  // namespace

void linear_tile_avx512(const LinearArgs& a, int64_t rb, int64_t re, int64_t cb, int64_t ce) {
  switch (a.w_dtype) {
    case DType::kF32:
      return tiles<DType::kF32>(a, rb, re, cb, ce);
    case DType::kBF16:
      return tiles<DType::kBF16>(a, rb, re, cb, ce);
    case DType::kF16:
      return tiles<DType::kF16>(a, rb, re, cb, ce);
    default:
      BATON_CHECK_MSG(false, "linear: weights must be f32, bf16 or f16");
  }
}

}  // namespace baton::kernels

#endif  // BATON_HAVE_X86_KERNELS
