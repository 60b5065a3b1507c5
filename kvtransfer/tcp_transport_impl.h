#pragma once

// Internals of TcpTransport shared by tcp_transport.cpp (API, completion,
// leases), tcp_send.cpp (outgoing connections) and tcp_receive.cpp (listener
// and incoming messages). Not part of the API: include tcp_transport.h.
//
// Threading: Impl's fields from `mu` to `held_bytes` and Op's fields marked
// "mu" are guarded by Impl::mu; the rest belong to the one I/O thread.

#include <algorithm>
#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <vector>

#include "kvtransfer/tcp_transport.h"
#include "kvtransfer/wire.h"

namespace baton::kvtransfer {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

inline constexpr uint64_t kMaxTransferBytes = uint64_t{1} << 40;
inline constexpr size_t kDiscardBytes = size_t{1} << 20;
// Payload reads are capped so that the bytes are checksummed while still in
// cache after the kernel's copy.
inline constexpr uint64_t kMaxReadBytes = uint64_t{512} << 10;

inline std::string bytes_str(uint64_t n) { return std::to_string(n); }

// "host:port" or "[v6]:port"; kInvalidArgument otherwise.
Result<std::pair<std::string, uint16_t>> parse_peer(const std::string& peer);

struct OutConn;
struct InConn;

// One transfer, either direction. Fields under "mu" are guarded by
// Impl::mu; the rest belong to the I/O thread after submission.
struct Op {
  uint64_t local = 0;
  uint64_t wire_id = 0;
  bool send = false;
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
  uint64_t region = 0;
  Deadline deadline = Deadline::never();
  std::string peer;

  // mu
  TransferState state;
  Clock::TimePoint finished_at{};

  // I/O thread
  enum class Io { kNew, kQueued, kWriting, kAwaitingAck, kPosted, kClaiming, kReading };
  Io io = Io::kNew;
  std::optional<asio::steady_timer> timer;
  std::weak_ptr<OutConn> out;
  std::weak_ptr<InConn> in;
};

// Bytes that arrived before their receive was posted.
struct Held {
  uint64_t wire_id = 0;
  std::unique_ptr<uint8_t[]> data;
  uint64_t bytes = 0;
  bool complete = false;
  Clock::TimePoint expires{};
  std::shared_ptr<Op> claimer;  // a receive posted while the bytes arrive
};

struct OutConn : std::enable_shared_from_this<OutConn> {
  OutConn(asio::io_context& io, std::string p)
      : peer(std::move(p)), sock(io), resolver(io), connect_timer(io) {}
  std::string peer;
  tcp::socket sock;
  tcp::resolver resolver;
  asio::steady_timer connect_timer;
  bool connected = false;
  bool closed = false;
  std::deque<std::shared_ptr<Op>> queue;
  std::shared_ptr<Op> writing;
  std::deque<std::shared_ptr<Op>> awaiting;  // acks come back in message order
  std::array<uint8_t, wire::kHeaderBytes> header{};
  std::array<uint8_t, wire::kTrailerBytes> trailer{};
  std::array<uint8_t, wire::kHeaderBytes> ack{};
  wire::Checksum64 sum;
  uint64_t sent = 0;
  Clock::TimePoint last_used{};
};

struct InConn : std::enable_shared_from_this<InConn> {
  explicit InConn(asio::io_context& io) : sock(io) {}
  enum class Sink { kNone, kDest, kHold, kDiscard };
  tcp::socket sock;
  bool closed = false;
  std::array<uint8_t, wire::kHeaderBytes> header{};
  std::array<uint8_t, wire::kTrailerBytes> trailer{};
  wire::FrameHeader msg;
  Sink sink = Sink::kNone;
  std::shared_ptr<Op> op;
  std::shared_ptr<Held> held;
  StatusCode discard_code = StatusCode::kOk;
  uint64_t got = 0;
  wire::Checksum64 sum;
  std::vector<uint8_t> discard;
  size_t trailer_got = 0;
  std::deque<std::array<uint8_t, wire::kHeaderBytes>> acks;
  size_t ack_sent = 0;  // bytes of acks.front() already written
  bool ack_writing = false;
};

struct TcpTransport::Impl {
  struct Region {
    uint8_t* base = nullptr;
    uint64_t bytes = 0;
    int users = 0;
  };

  explicit Impl(TcpTransportOptions o)
      : options(std::move(o)), work(asio::make_work_guard(io)), acceptor(io), sweep_timer(io) {}

  TcpTransportOptions options;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  tcp::acceptor acceptor;
  asio::steady_timer sweep_timer;
  std::thread thread;
  std::string endpoint;
  uint16_t port = 0;

  mutable std::mutex mu;
  std::condition_variable cv;
  uint64_t next_id = 1;
  std::map<uint64_t, Region> regions;
  std::map<uint64_t, std::shared_ptr<Op>> ops;
  std::set<uint64_t> pending_receives;  // wire ids with a pending receive
  size_t out_count = 0;
  uint64_t held_bytes = 0;
  std::shared_ptr<const KvTransport::FinishedCallback> on_finished;

  // I/O thread only.
  bool stopping = false;
  std::map<std::string, std::shared_ptr<OutConn>> out_conns;
  std::set<std::shared_ptr<InConn>> in_conns;
  std::map<uint64_t, std::shared_ptr<Op>> posted;
  std::map<uint64_t, std::shared_ptr<Held>> held;
  std::map<uint64_t, std::pair<Status, Clock::TimePoint>> refused;  // wire id -> why

  Clock::TimePoint now() const { return SteadyClock::instance().now(); }

  // Completion (tcp_transport.cpp; I/O thread).
  // Marks the op finished (idempotent). The caller guarantees that no I/O on
  // the op's memory is in flight.
  void finish(const std::shared_ptr<Op>& op, Status status);
  bool is_pending(const Op& op) {
    std::lock_guard lock(mu);
    return op.state.pending();
  }
  // Stops a pending op with `status` (cancel, deadline, shutdown).
  void abort(const std::shared_ptr<Op>& op, Status status);
  void arm_deadline(const std::shared_ptr<Op>& op);

  // Sending (tcp_send.cpp; I/O thread).
  void start_send(const std::shared_ptr<Op>& op);
  void connect(const std::shared_ptr<OutConn>& c);
  void tune(tcp::socket& s);
  void write_next(const std::shared_ptr<OutConn>& c);
  void write_piece(const std::shared_ptr<OutConn>& c, bool first);
  void read_ack(const std::shared_ptr<OutConn>& c);
  void out_failed(const std::shared_ptr<OutConn>& c, const Status& status, bool requeue_unsent);

  // Receiving (tcp_receive.cpp; I/O thread).
  void accept();
  void read_header(const std::shared_ptr<InConn>& c);
  void begin_message(const std::shared_ptr<InConn>& c, const wire::FrameHeader& h);
  void refuse(uint64_t id, Status why) { refused[id] = {std::move(why), now()}; }
  void read_payload(const std::shared_ptr<InConn>& c);
  void read_trailer(const std::shared_ptr<InConn>& c);
  void end_message(const std::shared_ptr<InConn>& c);
  void drop_held(const std::shared_ptr<Held>& hd);
  // Copies complete held bytes into a receive's destination.
  void deliver(const std::shared_ptr<Held>& hd, const std::shared_ptr<Op>& op);
  void send_ack(const std::shared_ptr<InConn>& c, uint64_t id, StatusCode code);
  void write_acks(const std::shared_ptr<InConn>& c);
  void in_failed(const std::shared_ptr<InConn>& c, const error_code& ec);
  void start_receive(const std::shared_ptr<Op>& op);

  // Leases and shutdown (tcp_transport.cpp; I/O thread).
  void sweep();
  void shutdown();

  // API helpers (any thread).
  Result<std::shared_ptr<Op>> make_op(bool send, uint64_t wire_id, const MemorySlice& s,
                                      Deadline deadline);
  std::shared_ptr<Op> find(TransferId id);
};

}  // namespace baton::kvtransfer
