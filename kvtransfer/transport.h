#pragma once

// KvTransport: moves one request's KV cache, as one contiguous buffer, from a
// prefill instance to a decode instance (DESIGN.md §3 steps 4-6).
//
// The API is submit-then-poll, one transport per folder (tcp_transport.h is
// the first), and what a transport can do is described by Capabilities rather
// than by build flags.
//
// Lifecycle of one transfer:
//   * both sides register the memory the bytes come from / go to
//     (register_memory); a registered region must stay valid until it is
//     deregistered;
//   * the decode side posts submit_receive(transfer_id, destination) — before
//     or after the bytes arrive; the transfer id is the ticket it handed the
//     prefill side;
//   * the prefill side calls submit_send(TransferDesc{transfer_id, peer, ...});
//   * either side polls or waits on the local TransferId it got back.
// A send is kDone only once the receiver has the bytes and has verified them;
// a receive is kDone once the bytes sit verified in its destination.
// Once a transfer is kDone or kFailed the transport never touches its memory
// again; until then the caller must not free or reuse it.
//
// Every transfer carries a deadline (Deadline::never() is allowed but
// discouraged): when it passes the transfer fails with kDeadlineExceeded.
// Finished transfers are remembered until release() (or until the transport's
// finished-record lease runs out, see the implementation's options).
//
// All methods are thread-safe. Errors are Status values; nothing throws.

#include <cstdint>
#include <functional>
#include <string>

#include "common/clock.h"
#include "common/status.h"

namespace baton::kvtransfer {

// What a transport can do. Callers pick a path from these flags, never from
// #ifdefs.
struct Capabilities {
  std::string name;                  // "tcp"
  bool host_memory = false;          // registered memory may be ordinary host RAM
  bool device_memory = false;        // registered memory may be GPU memory
  bool zero_copy = false;            // no CPU copy on either side (RDMA-style)
  bool receive_before_data = true;   // submit_receive may precede the data
  bool receive_after_data = true;    // data may arrive before submit_receive
  bool end_to_end_checksum = false;  // payload integrity verified by the receiver
  uint64_t max_transfer_bytes = 0;   // largest single transfer
};

// A registered memory region. Value type; 0 is never a valid handle.
struct MemoryHandle {
  uint64_t value = 0;
  bool operator==(const MemoryHandle&) const = default;
};

// A local transfer handle returned by submit_send/submit_receive. It is not
// the wire transfer id (a transport may send and receive the same wire id).
struct TransferId {
  uint64_t value = 0;
  bool operator==(const TransferId&) const = default;
};

// A slice of a registered region.
struct MemorySlice {
  MemoryHandle handle;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// One outgoing transfer.
struct TransferDesc {
  uint64_t transfer_id = 0;  // the receiver's ticket; keys the receive side
  std::string peer;          // "host:port" of the receiving transport
  MemorySlice source;        // bytes to send
  Deadline deadline = Deadline::never();
};

struct TransferState {
  enum class Phase { kPending, kDone, kFailed };
  Phase phase = Phase::kPending;
  Status status;  // the failure when phase == kFailed, else ok

  bool pending() const { return phase == Phase::kPending; }
  bool done() const { return phase == Phase::kDone; }
  bool failed() const { return phase == Phase::kFailed; }
};

class KvTransport {
 public:
  virtual ~KvTransport() = default;

  // Registers [ptr, ptr + bytes) for transfers. kInvalidArgument for a null
  // pointer, zero bytes, or memory this transport cannot address (see
  // capabilities()). Thread-safe.
  virtual Result<MemoryHandle> register_memory(void* ptr, uint64_t bytes) = 0;
  // Forgets a region; kConflict while a pending transfer uses it, kNotFound
  // for an unknown handle. Thread-safe.
  virtual Status deregister_memory(MemoryHandle handle) = 0;

  // Starts sending desc.source to desc.peer. Errors here are about the
  // request itself (unknown handle, slice out of range, bad peer address);
  // everything that happens later is reported through poll()/wait().
  // Thread-safe.
  virtual Result<TransferId> submit_send(const TransferDesc& desc) = 0;

  // Posts where the bytes of wire transfer `transfer_id` go. The message must
  // carry exactly destination.bytes bytes, else the transfer fails. kConflict
  // when a receive for that id is already pending. Thread-safe.
  virtual Result<TransferId> submit_receive(uint64_t transfer_id, const MemorySlice& destination,
                                            Deadline deadline) = 0;

  // The transfer's state without blocking; kNotFound for an unknown or
  // released id. Thread-safe.
  virtual Result<TransferState> poll(TransferId id) = 0;

  // Blocks until the transfer finishes or `deadline` passes. Returns ok when
  // it is kDone, its failure when kFailed, kDeadlineExceeded when the wait's
  // deadline passed first (the transfer itself goes on), kNotFound for an
  // unknown id. Thread-safe.
  virtual Status wait(TransferId id, Deadline deadline) = 0;

  // Fails a pending transfer with kCancelled (no-op on a finished one). The
  // transfer is kFailed, and its memory free to reuse, once poll() says so —
  // normally at once, at worst after the I/O in progress on it stops.
  // kNotFound for an unknown id. Thread-safe.
  virtual Status cancel(TransferId id) = 0;

  // Forgets a finished transfer's record (a pending one is cancelled first).
  // Thread-safe.
  virtual void release(TransferId id) = 0;

  virtual Capabilities capabilities() const = 0;

  // Called once for every transfer as it finishes (kDone or kFailed), on the
  // thread that finished it (normally the transport's I/O thread), with no
  // transport lock held. It must not block; it may call the transport.
  // Set it before the first submit; null clears it. Thread-safe.
  using FinishedCallback = std::function<void(TransferId, const TransferState&)>;
  virtual void set_on_finished(FinishedCallback cb) = 0;
};

}  // namespace baton::kvtransfer
