#pragma once

// Instruction-set variants of the CPU kernels, chosen at run time so that one
// binary runs everywhere and uses the widest vectors the host has.

#include <string_view>

namespace baton::kernels {

enum class Isa {
  kScalar,  // portable C++; any CPU
  kAvx2,    // x86-64 with AVX2, FMA and F16C
  kAvx512,  // x86-64 with AVX-512F (plus the AVX2 set)
};

// Whether this CPU (and OS) can run `isa`'s kernels. kScalar always can.
bool isa_supported(Isa isa);
// The widest supported variant.
Isa best_isa();
std::string_view isa_name(Isa isa);

// Target attributes for the per-ISA translation units.
#if defined(__x86_64__)
#define BATON_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define BATON_TARGET_AVX512 __attribute__((target("avx512f,avx2,fma,f16c")))
#define BATON_HAVE_X86_KERNELS 1
#else
#define BATON_HAVE_X86_KERNELS 0
#endif

}  // namespace baton::kernels
