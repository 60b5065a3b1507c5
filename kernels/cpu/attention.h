#pragma once

// Paged causal attention on the CPU for a batch that mixes prefill chunks
// (q_len > 1 after a cached prefix) and decodes (q_len == 1); the semantics
// are Backend::attention's (kernels/backend.h).
//
// Work is split into tasks of (sequence, query head, block of query rows).
// A task walks the sequence's KV blocks once, widening each block to f32 when
// the cache is bf16/f16, and updates every row of its block with an online
// (flash-style) softmax in f32, so memory is linear in the row block and no
// score matrix is materialised.

#include <cstdint>
#include <vector>

#include "kernels/backend.h"
#include "kernels/cpu/vec_ops.h"

namespace baton::kernels {

class ForkJoinPool;

void paged_attention(ForkJoinPool& pool, const VecOps& ops, const Tensor& q,
                     const KvCacheView& cache, const std::vector<AttentionSeq>& seqs,
                     int32_t num_q_heads, float scale, Tensor& out);

}  // namespace baton::kernels
