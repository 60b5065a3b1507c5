#include "kernels/cpu/vec_ops.h"

#include <cstring>

#include "common/status.h"

namespace baton::kernels {
namespace {

float dot_scalar(const float* a, const float* b, int64_t n) {
  // Four partial sums: shorter dependency chains, and the same rounding
  // behaviour as the vector variants' split accumulators.
  float s[4] = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    for (int j = 0; j < 4; ++j) s[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) s[0] += a[i] * b[i];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

void axpby_scalar(float alpha, float* y, float beta, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = alpha * y[i] + beta * x[i];
}

void scale_mul_scalar(const float* x, float s, const float* w, float* out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * s * w[i];
}

void to_f32_scalar(const void* src, DType dtype, float* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kBF16: {
      const auto* p = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(p[i]);
      return;
    }
    case DType::kF16: {
      const auto* p = static_cast<const uint16_t*>(src);
      for (int64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(p[i]);
      return;
    }
    default:
      BATON_CHECK_MSG(false, "to_f32: source must be f32, bf16 or f16");
  }
}

}  // namespace

const VecOps& vec_ops_scalar() {
  static constexpr VecOps kOps{&dot_scalar, &axpby_scalar, &scale_mul_scalar, &to_f32_scalar};
  return kOps;
}

const VecOps& vec_ops(Isa isa) {
  BATON_CHECK_MSG(isa_supported(isa), "vec_ops: instruction set not supported by this CPU");
  switch (isa) {
    case Isa::kScalar:
      return vec_ops_scalar();
    case Isa::kAvx2:
      return vec_ops_avx2();
    case Isa::kAvx512:
      return vec_ops_avx512();
  }
  return vec_ops_scalar();
}

void from_f32(const float* src, DType dtype, void* dst, int64_t n) {
  switch (dtype) {
    case DType::kF32:
      std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
      return;
    case DType::kBF16: {
      auto* p = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) p[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::kF16: {
      auto* p = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) p[i] = f32_to_f16(src[i]);
      return;
    }
    default:
      BATON_CHECK_MSG(false, "from_f32: destination must be f32, bf16 or f16");
  }
}

#if !BATON_HAVE_X86_KERNELS
const VecOps& vec_ops_avx2() { return vec_ops_scalar(); }
const VecOps& vec_ops_avx512() { return vec_ops_scalar(); }
#endif

}  // namespace baton::kernels
