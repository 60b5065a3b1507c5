#pragma once

// Internals of CudaIpcTransport shared by cuda_ipc_transport.cpp (API,
// completion, leases, CUDA resources) and cuda_ipc_control.cpp (control
// connections and the offer/grant/done/ack exchange). Not part of the API:
// include cuda_ipc_transport.h.
//
// Threading: Impl's fields from `mu` to `mapping_count` and Op's fields
// marked "mu" are guarded by Impl::mu; the rest belong to the one I/O thread,
// which makes every CUDA call except the completion waiters' (Waiter): they
// only query events the I/O thread recorded and hand completions back to it.

#include <cuda_runtime_api.h>

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
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "kvtransfer/cuda_ipc/control_wire.h"
#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"

namespace baton::kvtransfer {

// "host:port" or "[v6]:port"; kInvalidArgument otherwise (tcp_send.cpp).
Result<std::pair<std::string, uint16_t>> parse_peer(const std::string& peer);

namespace cuda_ipc_detail {

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

inline constexpr uint64_t kMaxTransferBytes = uint64_t{1} << 40;
// Checksum accumulators (device) and their host copies (pinned): one slot per
// transfer being checksummed at a time.
inline constexpr int kChecksumSlots = 1024;
// Completions queued on one stream's waiter at most (each a recorded event);
// beyond that a transfer fails with kResourceExhausted rather than queueing
// without bound.
inline constexpr size_t kMaxWaits = 16384;

std::string cuda_error(const std::string& what, cudaError_t e);

struct Conn;

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
  enum class Io {
    kNew,
    kQueued,       // send: waiting for its control connection
    kOffered,      // send: offer sent, no grant yet
    kCopying,      // send: copy (and source checksum) queued on the GPU
    kAwaitingAck,  // send: kDone sent
    kPosted,       // receive: waiting for an offer
    kGranted,      // receive: grant sent, the sender may be writing
    kLanding,      // receive: some bytes landed, being checksummed
    kRevoking,     // receive: cancelled after its grant, waiting for kDone
  };
  Io io = Io::kNew;
  std::optional<asio::steady_timer> timer;
  std::optional<asio::steady_timer> grace_timer;
  std::weak_ptr<Conn> conn;
  int gpu_pending = 0;  // GPU completions still to come
  bool abort_requested = false;
  Status aborted;                               // why, once abort_requested
  bool revoked = false;                         // send: the receiver revoked its grant
  int slot = -1;                                // checksum slot in use
  std::pair<uint64_t, uint64_t> mapping{0, 0};  // send: (nonce, region) in use
  // Receive: the sender's side of the exchange is over (its kDone came or
  // its connection went), and what it said.
  bool sender_settled = false;
  Status sender_status;
  bool ack_needed = false;  // the sender waits for a kAck
  uint64_t covered = 0;     // bytes already queued for checksumming
  bool has_expected = false;
  uint64_t expected_sum = 0;  // the sender's checksum
};

struct Offer {
  uint64_t wire_id = 0;
  uint64_t bytes = 0;
  std::weak_ptr<Conn> conn;
  Clock::TimePoint expires{};
};

// A peer allocation opened with cudaIpcOpenMemHandle.
struct Mapping {
  std::array<uint8_t, control::kHandleBytes> handle{};
  uint8_t* base = nullptr;
  int users = 0;
  bool forget = false;  // close once unused
  Clock::TimePoint last_used{};
};

// A completion to report once the work queued before `event` on a stream is
// done: gpu_done(op) when `counts`, else chunk_copied(op, end).
struct Wait {
  cudaEvent_t event = nullptr;
  std::shared_ptr<Op> op;
  bool counts = false;
  uint64_t end = 0;
};

// One thread per working stream that takes its completions in stream order
// and polls each one's event (cudaEventQuery, yielding between polls: a
// host function or a blocking-sync event wakes up late, by up to hundreds of
// microseconds), then posts the completion to the I/O thread. It sleeps on
// `cv` while nothing is queued.
struct Waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Wait> queue;  // at most kMaxWaits
  bool closed = false;
  std::thread thread;
};

struct Conn : std::enable_shared_from_this<Conn> {
  Conn(asio::io_context& io, bool out, std::string p)
      : outgoing(out), peer(std::move(p)), sock(io), resolver(io), connect_timer(io) {}
  bool outgoing;
  std::string peer;
  tcp::socket sock;
  tcp::resolver resolver;
  asio::steady_timer connect_timer;
  bool connected = false;
  bool closed = false;
  control::Buffer rbuf{};
  std::deque<control::Buffer> wq;
  bool writing = false;
  // Outgoing: sends by wire id, and those waiting for the connection.
  std::map<uint64_t, std::shared_ptr<Op>> sends;
  std::deque<std::shared_ptr<Op>> unsent;
  uint64_t peer_nonce = 0;
  // Incoming: receives granted to this peer, its waiting offers, and the
  // registrations it was granted (told to forget them on deregistration).
  std::map<uint64_t, std::shared_ptr<Op>> granted;
  std::set<uint64_t> offers;
  std::set<uint64_t> regions;
};

}  // namespace cuda_ipc_detail

struct CudaIpcTransport::Impl {
  using Op = cuda_ipc_detail::Op;
  using Conn = cuda_ipc_detail::Conn;
  using Offer = cuda_ipc_detail::Offer;
  using Mapping = cuda_ipc_detail::Mapping;
  using error_code = cuda_ipc_detail::error_code;
  using tcp = cuda_ipc_detail::tcp;

  struct Region {
    uint8_t* base = nullptr;
    uint64_t bytes = 0;
    int users = 0;
    uint64_t alloc_offset = 0;  // base minus the start of its allocation
    std::array<uint8_t, control::kHandleBytes> handle{};
  };

  explicit Impl(CudaIpcTransportOptions o)
      : options(std::move(o)),
        work(boost::asio::make_work_guard(io)),
        acceptor(io),
        sweep_timer(io) {}

  CudaIpcTransportOptions options;
  boost::asio::io_context io;
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work;
  tcp::acceptor acceptor;
  boost::asio::steady_timer sweep_timer;
  std::thread thread;
  std::string endpoint;
  uint16_t port = 0;
  uint64_t nonce = 0;  // this process's identity in grants

  // CUDA resources (I/O thread). Completions are reported by a waiter
  // thread per working stream (Waiter), each from an event recorded on the
  // stream; events are reused through `free_events` (guarded by event_mu:
  // the waiters return them).
  cudaStream_t copy_stream = nullptr;
  cudaStream_t sum_stream = nullptr;
  cuda_ipc_detail::Waiter copy_waiter;
  cuda_ipc_detail::Waiter sum_waiter;
  std::mutex event_mu;
  std::vector<cudaEvent_t> free_events;
  std::vector<cudaEvent_t> all_events;     // I/O thread
  unsigned long long* dev_acc = nullptr;   // kChecksumSlots x 2
  unsigned long long* host_acc = nullptr;  // pinned, kChecksumSlots x 2
  std::vector<int> free_slots;
  std::set<int> peer_enabled;  // devices this one has peer access to

  mutable std::mutex mu;
  std::condition_variable cv;
  uint64_t next_id = 1;
  std::map<uint64_t, Region> regions;
  std::map<uint64_t, std::shared_ptr<Op>> ops;
  std::set<uint64_t> pending_receives;
  size_t offer_count = 0;
  size_t mapping_count = 0;
  std::shared_ptr<const KvTransport::FinishedCallback> on_finished;

  // I/O thread only.
  bool stopping = false;
  std::map<std::string, std::shared_ptr<Conn>> out_conns;
  std::set<std::shared_ptr<Conn>> in_conns;
  std::map<uint64_t, std::shared_ptr<Op>> posted;
  std::map<uint64_t, Offer> offers;
  std::map<uint64_t, std::pair<Status, Clock::TimePoint>> refused;
  std::map<std::pair<uint64_t, uint64_t>, Mapping> mappings;

  Clock::TimePoint now() const { return SteadyClock::instance().now(); }
  bool on_io_thread() const { return std::this_thread::get_id() == thread.get_id(); }
  // Runs fn on the I/O thread and returns its status (inline when already on it).
  Status run_on_io(const std::function<Status()>& fn);

  // Completion and CUDA (cuda_ipc_transport.cpp; I/O thread).
  Status init_cuda();
  void release_cuda();
  void finish(const std::shared_ptr<Op>& op, Status status);
  bool is_pending(const Op& op) {
    std::lock_guard lock(mu);
    return op.state.pending();
  }
  void abort(const std::shared_ptr<Op>& op, Status status);
  void arm_deadline(const std::shared_ptr<Op>& op);
  // Reports, on the I/O thread, when the work queued so far on copy_stream
  // (copy == true) or sum_stream is done: gpu_done(op) when `counts` (one of
  // the op's gpu_pending completions), else chunk_copied(op, end).
  Status notify(bool copy, const std::shared_ptr<Op>& op, bool counts, uint64_t end = 0);
  void run_waiter(cuda_ipc_detail::Waiter& w);  // a waiter thread's loop
  void stop_waiters();                          // drains and joins them
  void gpu_done(const std::shared_ptr<Op>& op);
  void chunk_copied(const std::shared_ptr<Op>& op, uint64_t end);
  int take_slot();
  void put_slot(int& slot);
  // Checksums [from, to) of the op's memory into its slot (taken and zeroed
  // on first use) on sum_stream.
  Status queue_sum(const std::shared_ptr<Op>& op, uint64_t from, uint64_t to);
  // Copies the slot to the host and notifies (sum_stream).
  Status collect_sum(const std::shared_ptr<Op>& op);
  uint64_t slot_sum(int slot, uint64_t bytes) const;
  void sweep();
  void shutdown();

  // Peer memory (cuda_ipc_control.cpp; I/O thread).
  // The destination of a grant in this process's address space;
  // direct_access says whether this GPU's SMs may store to it.
  Result<uint8_t*> map_destination(const std::shared_ptr<Op>& op, const control::Frame& grant,
                                   bool& direct_access);
  void unmap(std::pair<uint64_t, uint64_t> key);
  void close_mapping(std::map<std::pair<uint64_t, uint64_t>, Mapping>::iterator it);
  void trim_mappings();
  void forget_region(uint64_t region);

  // Control connections (cuda_ipc_control.cpp; I/O thread).
  void accept();
  void connect(const std::shared_ptr<Conn>& c);
  void read_frame(const std::shared_ptr<Conn>& c);
  void send_frame(const std::shared_ptr<Conn>& c, const control::Frame& f);
  void write_next(const std::shared_ptr<Conn>& c);
  void conn_failed(const std::shared_ptr<Conn>& c, const Status& status);
  void on_frame(const std::shared_ptr<Conn>& c, const control::Frame& f);

  // Sending side.
  void start_send(const std::shared_ptr<Op>& op);
  void offer(const std::shared_ptr<Conn>& c, const std::shared_ptr<Op>& op);
  void on_grant(const std::shared_ptr<Conn>& c, const control::Frame& f);
  void send_finished_copy(const std::shared_ptr<Op>& op);

  // Receiving side.
  void start_receive(const std::shared_ptr<Op>& op);
  void on_offer(const std::shared_ptr<Conn>& c, const control::Frame& f);
  void grant(const std::shared_ptr<Conn>& c, const std::shared_ptr<Op>& op);
  void on_done(const std::shared_ptr<Conn>& c, const control::Frame& f);
  void on_chunk(const std::shared_ptr<Conn>& c, const control::Frame& f);
  // The sender settled (or went) while the receive was granted.
  void sender_gone(const std::shared_ptr<Op>& op, Status why);
  // Finishes a granted receive once the sender has settled and its GPU work
  // is over; acks the sender when it waits for one.
  void maybe_finish_receive(const std::shared_ptr<Op>& op);
  void refuse(uint64_t id, Status why) { refused[id] = {std::move(why), now()}; }
  void set_offer_count();

  // API helpers (any thread).
  Result<std::shared_ptr<Op>> make_op(bool send, uint64_t wire_id, const MemorySlice& s,
                                      Deadline deadline);
};

}  // namespace baton::kvtransfer
