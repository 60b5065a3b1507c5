#pragma once

// CudaIpcTransport: KvTransport whose registered memory is GPU memory and
// which moves each transfer device to device inside one host, without a CPU
// copy. See transport.h for the API contract, control_wire.h for the control
// frames and docs/kv-transport-gpu.md for the design.
//
// One transfer:
//   sender                                  receiver (owns the destination)
//   kOffer(id, bytes)          ------>      waits for submit_receive(id)
//                              <------      kGrant(id, IPC handle of the
//                                           destination's allocation, offset)
//   opens the handle (cached), copies with
//   cudaMemcpyAsync on its own stream (over
//   NVLink/PCIe peer-to-peer), checksums the
//   source on the GPU meanwhile
//   kDone(id, checksum)        ------>      checksums the destination on its
//                                           GPU, compares
//                              <------      kAck(id, verdict)
// The receive is kDone once the bytes sit verified in its destination; the
// send once the ack says ok. Only small frames cross the TCP control
// connection; the payload never leaves the GPUs.
//
// Semantics shared with TcpTransport: deadlines on every transfer, cancel,
// receive posted before or after the offer (an offer with no receive waits up
// to options.offer_lease, at most options.max_pending_offers of them), the
// finished callback, and kFailed with kUnavailable at once when the control
// connection to the peer is lost (a killed peer process closes it).
// Differences: bytes are never held by the receiver (an early offer costs a
// table entry, not memory), and a receive cancelled after its grant finishes
// only once the sender confirms its copy has stopped (or the control
// connection is closed after options.revoke_grace), since a copy already
// queued on the sender's GPU cannot be recalled.
//
// Registered memory must come from cudaMalloc (or cudaMallocPitch) on
// options.device: the IPC handle covers the whole allocation, and a region
// may be any slice of one. Within one process (two transports in one
// program), the sender copies to the receiver's pointer directly instead of
// opening an IPC handle, which CUDA refuses within a process.
//
// Thread-safety: every public method is thread-safe. All control I/O and
// every CUDA call that queues work run on one internal thread, which makes
// options.device current for itself only; two more internal threads (one per
// working stream) poll the events that mark GPU work done and hand the
// completions to it. Destroying the transport waits for the copies in
// flight, then fails pending transfers with kCancelled; no call may run
// concurrently with the destructor.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "kvtransfer/transport.h"

namespace baton::kvtransfer {

struct CudaIpcTransportOptions {
  int device = 0;                  // the GPU whose memory this transport registers
  std::string host = "127.0.0.1";  // control listen address
  uint16_t port = 0;               // 0: any free port
  // Checksum source and destination on the GPUs and compare them before a
  // transfer is kDone (about one extra read of the bytes on each side).
  bool verify = true;
  // Offers whose receive is not posted yet: how many, and for how long.
  size_t max_pending_offers = 1024;
  Clock::Duration offer_lease = std::chrono::seconds(30);
  // How long finished transfers stay pollable without release().
  Clock::Duration finished_lease = std::chrono::seconds(60);
  // Bound on establishing a control connection.
  Clock::Duration connect_timeout = std::chrono::seconds(5);
  // How long a receiver waits for the sender to confirm a revoked copy has
  // stopped before it closes the control connection and lets go anyway.
  Clock::Duration revoke_grace = std::chrono::seconds(5);
  // With verify, the copy goes in pieces of this many bytes (a multiple of
  // 16), and the receiver checksums each piece as soon as it has landed, so
  // that verification hides behind the copy of the next ones.
  uint64_t chunk_bytes = uint64_t{64} << 20;
  // Copy with a kernel on this GPU's SMs (stores straight into the peer's
  // memory) instead of the copy engine (cudaMemcpyAsync); used when both
  // ends are 16-byte aligned, the copy engine otherwise.
  bool kernel_copy = false;
  // Peer allocations kept mapped (cudaIpcOpenMemHandle is slow; a decode
  // instance's import buffer is reused for every request).
  size_t max_open_mappings = 64;
};

class CudaIpcTransport final : public KvTransport {
 public:
  // Checks the device, creates streams and starts listening. kUnavailable
  // when no GPU can be used or the address cannot be bound,
  // kInvalidArgument for a bad device or host.
  static Result<std::unique_ptr<CudaIpcTransport>> create(CudaIpcTransportOptions options);
  ~CudaIpcTransport() override;
  CudaIpcTransport(const CudaIpcTransport&) = delete;
  CudaIpcTransport& operator=(const CudaIpcTransport&) = delete;

  // "host:port" that peers pass as TransferDesc::peer.
  std::string endpoint() const;
  uint16_t port() const;
  int device() const;
  // Offers received whose receive is not posted yet. Thread-safe.
  size_t pending_offers() const;
  // Peer allocations currently mapped into this process. Thread-safe.
  size_t open_mappings() const;

  // ptr must be device memory of options.device from cudaMalloc.
  Result<MemoryHandle> register_memory(void* ptr, uint64_t bytes) override;
  Status deregister_memory(MemoryHandle handle) override;
  Result<TransferId> submit_send(const TransferDesc& desc) override;
  Result<TransferId> submit_receive(uint64_t transfer_id, const MemorySlice& destination,
                                    Deadline deadline) override;
  Result<TransferState> poll(TransferId id) override;
  Status wait(TransferId id, Deadline deadline) override;
  Status cancel(TransferId id) override;
  void release(TransferId id) override;
  Capabilities capabilities() const override;
  void set_on_finished(FinishedCallback cb) override;

  struct Impl;

 private:
  explicit CudaIpcTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Number of CUDA devices usable by this process (0 without a driver or GPU).
int cuda_device_count();

}  // namespace baton::kvtransfer
