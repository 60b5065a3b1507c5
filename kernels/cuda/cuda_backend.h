#pragma once

// The CUDA implementation of Backend (kernels/backend.h) on one GPU.
//
// Activations are bf16 (the default) or f32, accumulation is always f32.
// Matrix weights must have the activation dtype (capabilities() says so, and
// LlamaModel converts on upload); norm weights and biases may be f32 or bf16;
// the KV cache may be f32, bf16 or f16. GEMMs run through cuBLAS (bf16 in,
// f32 compute); everything else is Baton's own kernels.
//
// Every op is enqueued on the backend's one stream and returns at once.
// Arguments the interface passes as host memory (attention block tables,
// kv_gather/kv_scatter tables) are copied through a pinned staging ring into
// device memory owned by the backend, in stream order, so the caller may
// reuse them as soon as the op returns. download() waits for the stream.
//
// This header needs no CUDA headers: the engine includes it in any build that
// links baton_kernels_cuda.
//
// Thread-safety: as every Backend, used by one thread at a time (any thread:
// the device is made current on each call).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "kernels/backend.h"

namespace baton::kernels::cuda {

struct CudaBackendOptions {
  int device = 0;
  DType activation_dtype = DType::kBF16;   // kBF16 or kF32
  size_t staging_bytes = size_t{8} << 20;  // pinned ring for host-side arguments
};

// kUnavailable when there is no usable GPU; kInvalidArgument for a bad dtype.
Result<std::unique_ptr<Backend>> make_cuda_backend(const CudaBackendOptions& options = {});

// Decode steps as CUDA graphs, beside the Backend interface. A caller that
// enqueues the same ops on the same device addresses step after step (a
// model's decode step at a fixed batch size) captures them once under a key
// and replays them. Attention is the one op whose arguments change between
// steps: while capturing, attention() takes its plan (block tables, context
// lengths) from a device buffer of the graph, which replay() refills from the
// step's sequences before launching. Only decode attention (every q_len 1,
// sequence i on row i) may be captured.
//
// Same thread-safety as the backend. Graphs live as long as the backend.
class StepGraphs {
 public:
  virtual ~StepGraphs() = default;
  virtual bool has_graph(uint64_t key) const = 0;
  // Ops enqueued between these two calls are recorded, not run.
  virtual Status begin_capture(uint64_t key) = 0;
  virtual Status end_capture() = 0;
  // Uploads the plan of `seqs` (as many as at capture) and launches the
  // graph. false (nothing enqueued) when the block tables outgrow the room
  // reserved at capture or `key` has no graph; then run the ops directly.
  virtual Result<bool> replay(uint64_t key, const std::vector<AttentionSeq>& seqs) = 0;
};

// The backend's graph support; nullptr unless `backend` is a CUDA backend.
StepGraphs* step_graphs(Backend& backend);

// Free and total bytes of the backend's GPU as the driver reports them now.
struct MemoryInfo {
  uint64_t free_bytes = 0;
  uint64_t total_bytes = 0;
};
Result<MemoryInfo> device_memory(int device);

}  // namespace baton::kernels::cuda
