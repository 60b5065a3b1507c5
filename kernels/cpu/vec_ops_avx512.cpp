#include "kernels/cpu/isa.h"
#include "kernels/cpu/vec_ops.h"

#if BATON_HAVE_X86_KERNELS

#include <cstring>

#include "common/status.h"
#include "kernels/cpu/simd_x86.h"

namespace baton::kernels {
namespace {

constexpr int kWidth = 16;

BATON_TARGET_AVX512 float dot(const float* a, const float* b, int64_t n) {
  // Two accumulators hide the FMA latency on head_dim-sized rows.
  __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 2 * kWidth <= n; i += 2 * kWidth) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + kWidth), _mm512_loadu_ps(b + i + kWidth), s1);
  }
  if (i + kWidth <= n) {
    s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    i += kWidth;
  }
  float s = x86::hsum16(_mm512_add_ps(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

BATON_TARGET_AVX512 void axpby(float alpha, float* y, float beta, const float* x, int64_t n) {
  const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(vb, _mm512_loadu_ps(x + i),
                                            _mm512_mul_ps(va, _mm512_loadu_ps(y + i))));
  }
  for (; i < n; ++i) y[i] = alpha * y[i] + beta * x[i];
}

BATON_TARGET_AVX512 void scale_mul(const float* x, float s, const float* w, float* out, int64_t n) {
  const __m512 vs = _mm512_set1_ps(s);
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) {
    _mm512_storeu_ps(
        out + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
  }
  for (; i < n; ++i) out[i] = x[i] * s * w[i];
}

template <DType T>
BATON_TARGET_AVX512 void widen(const void* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + kWidth <= n; i += kWidth) _mm512_storeu_ps(dst + i, x86::load16<T>(src, i));
  for (; i < n; ++i) dst[i] = x86::load_scalar<T>(src, i);
}

void to_f32(const void* src, DType dtype, float* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kBF16:
      return widen<DType::kBF16>(src, dst, n);
    case DType::kF16:
      return widen<DType::kF16>(src, dst, n);
    default:
      BATON_CHECK_MSG(false, "to_f32: source must be f32, bf16 or f16");
  }
}

}  // namespace

const VecOps& vec_ops_avx512() {
  static constexpr VecOps kOps{&dot, &axpby, &scale_mul, &to_f32};
  return kOps;
}

}  // namespace baton::kernels

#endif  // BATON_HAVE_X86_KERNELS
