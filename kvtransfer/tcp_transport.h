#pragma once

// TcpTransport: KvTransport over TCP (Boost.Asio), for hosts without RDMA and
// for tests. See transport.h for the API contract and wire.h for the frames.
//
// One transfer is one message on one connection: a 32-byte header, the
// payload written straight from the registered source with large
// scatter/gather writes (no per-block round trips), and a checksum trailer
// the sender computes while sending. The receiver reads the payload straight
// into the registered destination (or, when no receive is posted yet, into a
// bounded hold area), verifies length and checksum, and answers with one
// small ack frame; the send is kDone only when that ack says ok.
//
// Connections: the transport listens on options.host:options.port (0 picks a
// free port, see endpoint()). Outgoing connections are kept one per peer and
// reused (closed after idle_connection_lease without traffic); transfers to
// one peer go out in submission order on it. TCP keepalive is on, so a peer
// host that vanishes without closing its sockets is noticed eventually. Cancelling
// or timing out a send whose bytes are on the wire closes that connection
// (the receiver sees a truncated message); the other transfers that had not
// started yet move to a new connection, those already written fail.
// A peer that closes or resets a connection fails every transfer in flight on
// it at once, on both sides; a silent peer fails them at their deadline.
//
// Data for a transfer id no receive is posted for is held, up to
// max_unclaimed_bytes in all, for unclaimed_lease; beyond that it is refused
// (the send fails with kResourceExhausted and a later receive for that id
// fails at once with the same reason).
//
// Thread-safety: every public method is thread-safe. All I/O runs on one
// internal thread. Destroying the transport fails pending transfers with
// kCancelled; no call may run concurrently with the destructor.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "common/clock.h"
#include "common/status.h"
#include "kvtransfer/transport.h"

namespace baton::kvtransfer {

struct TcpTransportOptions {
  std::string host = "127.0.0.1";  // listen address
  uint16_t port = 0;               // 0: any free port
  // Bytes held in all for transfers whose receive is not posted yet.
  uint64_t max_unclaimed_bytes = uint64_t{256} << 20;
  // How long held bytes wait for their receive before they are dropped.
  Clock::Duration unclaimed_lease = std::chrono::seconds(30);
  // How long finished transfers stay pollable without release().
  Clock::Duration finished_lease = std::chrono::seconds(60);
  // An outgoing connection with nothing in flight for this long is closed.
  Clock::Duration idle_connection_lease = std::chrono::seconds(60);
  // Bound on establishing an outgoing connection.
  Clock::Duration connect_timeout = std::chrono::seconds(5);
  // The sender checksums and writes in pieces of this many bytes: small
  // enough that a piece is still in cache when the kernel copies it, large
  // enough that each is written with few syscalls.
  uint64_t write_chunk_bytes = uint64_t{512} << 10;
  // SO_SNDBUF / SO_RCVBUF for every connection; 0 keeps the OS default.
  int socket_buffer_bytes = 0;
};

class TcpTransport final : public KvTransport {
 public:
  // Binds and starts listening; kUnavailable when the address cannot be
  // bound, kInvalidArgument for a bad host.
  static Result<std::unique_ptr<TcpTransport>> create(TcpTransportOptions options);
  ~TcpTransport() override;
  TcpTransport(const TcpTransport&) = delete;
  TcpTransport& operator=(const TcpTransport&) = delete;

  // "host:port" that peers pass as TransferDesc::peer.
  std::string endpoint() const;
  uint16_t port() const;
  // Open outgoing connections (one per peer in use). Thread-safe.
  size_t outgoing_connections() const;
  // Bytes currently held for receives not posted yet. Thread-safe.
  uint64_t unclaimed_bytes() const;

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
  explicit TcpTransport(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::kvtransfer
