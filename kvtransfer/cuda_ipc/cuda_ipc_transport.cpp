#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"

#include <unistd.h>

#include <cstring>
#include <future>
#include <random>

#include "kvtransfer/cuda_ipc/cuda_ipc_impl.h"
#include "kvtransfer/cuda_ipc/device_checksum.h"
#include "kvtransfer/transfer_table.h"

namespace baton::kvtransfer {

namespace cuda_ipc_detail {

std::string cuda_error(const std::string& what, cudaError_t e) {
  return what + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")";
}

namespace {

// Tells a grant from this process apart from one of another process (where
// the destination's address means nothing); fixed for the process's life.
uint64_t process_nonce() {
  static const uint64_t nonce = [] {
    std::random_device rd;
    uint64_t v = (uint64_t{rd()} << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
    return v == 0 ? 1 : v;
  }();
  return nonce;
}

using GetRange = int (*)(unsigned long long*, size_t*, unsigned long long);

}  // namespace
}  // namespace cuda_ipc_detail

using namespace cuda_ipc_detail;

int cuda_device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

Status CudaIpcTransport::Impl::run_on_io(const std::function<Status()>& fn) {
  if (on_io_thread()) return fn();
  std::promise<Status> done;
  auto result = done.get_future();
  asio::post(io, [&] { done.set_value(fn()); });
  return result.get();
}

Status CudaIpcTransport::Impl::init_cuda() {
  cudaError_t e = cudaSetDevice(options.device);
  if (e != cudaSuccess) return unavailable(cuda_error("cudaSetDevice", e));
  options.chunk_bytes = std::max<uint64_t>(16, options.chunk_bytes / 16 * 16);
  e = cudaStreamCreateWithFlags(&copy_stream, cudaStreamNonBlocking);
  if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&sum_stream, cudaStreamNonBlocking);
  if (e == cudaSuccess)
    e = cudaMalloc(reinterpret_cast<void**>(&dev_acc),
                   sizeof(unsigned long long) * 2 * kChecksumSlots);
  if (e == cudaSuccess) {
    e = cudaHostAlloc(reinterpret_cast<void**>(&host_acc),
                      sizeof(unsigned long long) * 2 * kChecksumSlots, cudaHostAllocDefault);
  }
  if (e != cudaSuccess) return unavailable(cuda_error("allocating transport resources", e));
  for (int i = kChecksumSlots - 1; i >= 0; --i) free_slots.push_back(i);
  for (Waiter* w : {&copy_waiter, &sum_waiter}) {
    w->thread = std::thread([this, w] { run_waiter(*w); });
  }
  return Status::ok();
}

void CudaIpcTransport::Impl::run_waiter(Waiter& w) {
  // Event queries need no current device, but a later CUDA call on this
  // thread would otherwise make device 0's context current.
  cudaSetDevice(options.device);
  for (;;) {
    Wait next;
    {
      std::unique_lock lock(w.mu);
      w.cv.wait(lock, [&] { return w.closed || !w.queue.empty(); });
      if (w.queue.empty()) return;  // closed and drained
      next = std::move(w.queue.front());
      w.queue.pop_front();
    }
    // Bounded by the GPU work queued before the event (a failed copy or
    // kernel completes the event too, with the error left on the stream).
    while (cudaEventQuery(next.event) == cudaErrorNotReady) std::this_thread::yield();
    cudaGetLastError();
    {
      std::lock_guard lock(event_mu);
      free_events.push_back(next.event);
    }
    asio::post(io, [this, op = std::move(next.op), counts = next.counts, end = next.end] {
      if (counts) {
        gpu_done(op);
      } else {
        chunk_copied(op, end);
      }
    });
  }
}

void CudaIpcTransport::Impl::stop_waiters() {
  for (Waiter* w : {&copy_waiter, &sum_waiter}) {
    {
      std::lock_guard lock(w->mu);
      w->closed = true;
    }
    w->cv.notify_all();
    if (w->thread.joinable()) w->thread.join();
  }
}

void CudaIpcTransport::Impl::release_cuda() {
  for (cudaStream_t st : {copy_stream, sum_stream}) {
    if (st) cudaStreamSynchronize(st);
  }
  stop_waiters();
  for (auto& [key, m] : mappings) {
    if (m.base) cudaIpcCloseMemHandle(m.base);
  }
  mappings.clear();
  {
    std::lock_guard lock(mu);
    mapping_count = 0;
  }
  for (cudaStream_t st : {copy_stream, sum_stream}) {
    if (st) cudaStreamDestroy(st);
  }
  for (cudaEvent_t ev : all_events) cudaEventDestroy(ev);
  all_events.clear();
  free_events.clear();
  if (dev_acc) cudaFree(dev_acc);
  if (host_acc) cudaFreeHost(host_acc);
  copy_stream = sum_stream = nullptr;
  dev_acc = host_acc = nullptr;
}

void CudaIpcTransport::Impl::finish(const std::shared_ptr<Op>& op, Status status) {
  TransferState state;
  std::shared_ptr<const KvTransport::FinishedCallback> cb;
  {
    std::lock_guard lock(mu);
    if (!op->state.pending()) return;
    op->state.phase = status.is_ok() ? TransferState::Phase::kDone : TransferState::Phase::kFailed;
    op->state.status = std::move(status);
    op->finished_at = now();
    auto r = regions.find(op->region);
    if (r != regions.end()) --r->second.users;
    if (!op->send) pending_receives.erase(op->wire_id);
    state = op->state;
    cb = on_finished;
  }
  cv.notify_all();
  if (op->timer) op->timer->cancel();
  if (op->grace_timer) op->grace_timer->cancel();
  if (cb && *cb) (*cb)(TransferId{op->local}, state);
}

void CudaIpcTransport::Impl::abort(const std::shared_ptr<Op>& op, Status status) {
  if (!is_pending(*op) || op->abort_requested) return;
  auto c = op->conn.lock();
  switch (op->io) {
    case Op::Io::kQueued:
      if (c) {
        auto& q = c->unsent;
        q.erase(std::remove(q.begin(), q.end(), op), q.end());
      }
      break;
    case Op::Io::kOffered: {
      // Withdraw the offer: the receiver drops it, or fails a receive it
      // granted meanwhile (its grant is ignored here).
      if (c && !c->closed) {
        control::Frame f;
        f.kind = control::Kind::kDone;
        f.transfer_id = op->wire_id;
        f.code = static_cast<uint64_t>(status.code());
        send_frame(c, f);
        c->sends.erase(op->wire_id);
      }
      break;
    }
    case Op::Io::kCopying:
      // The GPU is still reading the op's memory: finish once it stops
      // (gpu_done).
      op->abort_requested = true;
      op->aborted = std::move(status);
      return;
    case Op::Io::kAwaitingAck:
      // The copy is over; the receiver's verdict no longer matters here.
      if (c) c->sends.erase(op->wire_id);
      break;
    case Op::Io::kPosted: {
      auto p = posted.find(op->wire_id);
      if (p != posted.end() && p->second == op) posted.erase(p);
      break;
    }
    case Op::Io::kGranted:
    case Op::Io::kLanding: {
      // The sender may be writing into the destination, and our checksums
      // may be reading it: ask the sender to stop, and finish once it
      // confirms (or its connection goes) and the GPU is done with the bytes.
      op->abort_requested = true;
      op->aborted = std::move(status);
      if (!op->sender_settled && c && !c->closed) {
        op->io = Op::Io::kRevoking;
        control::Frame f;
        f.kind = control::Kind::kRevoke;
        f.transfer_id = op->wire_id;
        send_frame(c, f);
        op->grace_timer.emplace(io);
        op->grace_timer->expires_after(options.revoke_grace);
        op->grace_timer->async_wait([this, op, c](const error_code& ec) {
          if (ec || !is_pending(*op) || op->sender_settled) return;
          conn_failed(c, unavailable("peer " + c->peer + " did not confirm revoking transfer " +
                                     std::to_string(op->wire_id)));
        });
      } else if (!op->sender_settled) {
        op->sender_settled = true;
      }
      return maybe_finish_receive(op);
    }
    case Op::Io::kRevoking:
      return;
    case Op::Io::kNew:
      break;
  }
  finish(op, std::move(status));
}

void CudaIpcTransport::Impl::arm_deadline(const std::shared_ptr<Op>& op) {
  if (op->deadline.is_never() || stopping || !is_pending(*op)) return;
  op->timer.emplace(io);
  op->timer->expires_at(op->deadline.time_point());
  op->timer->async_wait([this, op](const error_code& ec) {
    if (ec) return;
    const std::string what = op->send ? "send of transfer " : "receive of transfer ";
    abort(op, deadline_exceeded(
                  what + std::to_string(op->wire_id) + " (" + std::to_string(op->bytes) + " bytes" +
                  (op->send ? " to " + op->peer : std::string()) + "): deadline passed"));
  });
}

Status CudaIpcTransport::Impl::notify(bool copy, const std::shared_ptr<Op>& op, bool counts,
                                      uint64_t end) {
  Waiter& w = copy ? copy_waiter : sum_waiter;
  {
    std::lock_guard lock(w.mu);
    if (w.queue.size() >= kMaxWaits) {
      return resource_exhausted("more than " + std::to_string(kMaxWaits) +
                                " GPU completions pending on one stream");
    }
  }
  cudaEvent_t ev = nullptr;
  {
    std::lock_guard lock(event_mu);
    if (!free_events.empty()) {
      ev = free_events.back();
      free_events.pop_back();
    }
  }
  cudaError_t e = cudaSuccess;
  if (ev == nullptr) {
    e = cudaEventCreateWithFlags(&ev, cudaEventDisableTiming);
    if (e != cudaSuccess) return internal_error(cuda_error("queueing a completion", e));
    all_events.push_back(ev);
  }
  e = cudaEventRecord(ev, copy ? copy_stream : sum_stream);
  if (e != cudaSuccess) {
    std::lock_guard lock(event_mu);
    free_events.push_back(ev);
    return internal_error(cuda_error("queueing a completion", e));
  }
  {
    // Only this thread adds to the queue, so the room checked above is
    // still there.
    std::lock_guard lock(w.mu);
    w.queue.push_back(Wait{ev, op, counts, end});
  }
  w.cv.notify_one();
  if (counts) ++op->gpu_pending;
  return Status::ok();
}

int CudaIpcTransport::Impl::take_slot() {
  if (free_slots.empty()) return -1;
  const int s = free_slots.back();
  free_slots.pop_back();
  return s;
}

void CudaIpcTransport::Impl::put_slot(int& slot) {
  if (slot >= 0) free_slots.push_back(slot);
  slot = -1;
}

Status CudaIpcTransport::Impl::queue_sum(const std::shared_ptr<Op>& op, uint64_t from,
                                         uint64_t to) {
  if (op->slot < 0) {
    op->slot = take_slot();
    if (op->slot < 0) {
      return resource_exhausted("more than " + std::to_string(kChecksumSlots) +
                                " transfers being verified at once");
    }
    const cudaError_t e =
        cudaMemsetAsync(dev_acc + 2 * op->slot, 0, 2 * sizeof(unsigned long long), sum_stream);
    if (e != cudaSuccess) {
      put_slot(op->slot);
      return internal_error(cuda_error("checksum launch", e));
    }
  }
  if (to <= from) return Status::ok();
  const cudaError_t e = cuda_ipc::launch_checksum(op->data + from, to - from, from / 8,
                                                  dev_acc + 2 * op->slot, sum_stream);
  if (e != cudaSuccess) return internal_error(cuda_error("checksum launch", e));
  return Status::ok();
}

Status CudaIpcTransport::Impl::collect_sum(const std::shared_ptr<Op>& op) {
  const cudaError_t e =
      cudaMemcpyAsync(host_acc + 2 * op->slot, dev_acc + 2 * op->slot,
                      2 * sizeof(unsigned long long), cudaMemcpyDeviceToHost, sum_stream);
  if (e != cudaSuccess) return internal_error(cuda_error("checksum read-back", e));
  return notify(false, op, true);
}

uint64_t CudaIpcTransport::Impl::slot_sum(int slot, uint64_t bytes) const {
  return cuda_ipc::finish_checksum(host_acc[2 * slot], host_acc[2 * slot + 1], bytes);
}

void CudaIpcTransport::Impl::gpu_done(const std::shared_ptr<Op>& op) {
  if (--op->gpu_pending > 0) return;
  if (stopping) return finish(op, cancelled("transport shut down"));
  // A failed asynchronous copy or kernel leaves a sticky error on the stream.
  const cudaError_t e = cudaStreamQuery(op->send ? copy_stream : sum_stream);
  if (e != cudaSuccess && e != cudaErrorNotReady && !op->abort_requested) {
    op->abort_requested = true;
    op->aborted =
        internal_error(cuda_error("transfer " + std::to_string(op->wire_id) + " on the GPU", e));
  }
  if (op->send) {
    unmap(op->mapping);
    op->mapping = {0, 0};
    send_finished_copy(op);
  } else {
    maybe_finish_receive(op);
  }
}

void CudaIpcTransport::Impl::sweep() {
  sweep_timer.expires_after(std::chrono::seconds(1));
  sweep_timer.async_wait([this](const error_code& ec) {
    if (ec || stopping) return;
    const auto t = now();
    for (auto it = offers.begin(); it != offers.end();) {
      if (it->second.expires > t) {
        ++it;
        continue;
      }
      const uint64_t id = it->first;
      auto c = it->second.conn.lock();
      it = offers.erase(it);
      Status why = unavailable("transfer " + std::to_string(id) +
                               ": offered but no receive was posted within the offer lease");
      if (c && !c->closed) {
        c->offers.erase(id);
        control::Frame f;
        f.kind = control::Kind::kRefuse;
        f.transfer_id = id;
        f.code = static_cast<uint64_t>(why.code());
        send_frame(c, f);
      }
      refuse(id, std::move(why));
    }
    set_offer_count();
    transfer_table::forget_expired(*this, t, options.finished_lease, options.offer_lease);
    sweep();
  });
}

void CudaIpcTransport::Impl::shutdown() {
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  sweep_timer.cancel();
  // Copies in flight finish first (their completions are queued behind this
  // handler and find their ops already failed).
  for (cudaStream_t st : {copy_stream, sum_stream}) {
    if (st) cudaStreamSynchronize(st);
  }
  std::vector<std::shared_ptr<Op>> pending;
  {
    std::lock_guard lock(mu);
    for (auto& [id, op] : ops) pending.push_back(op);
  }
  for (auto& op : pending) {
    op->gpu_pending = 0;
    finish(op, cancelled("transport shut down"));
  }
  auto outs = out_conns;
  for (auto& [peer, c] : outs) conn_failed(c, cancelled("transport shut down"));
  auto ins = in_conns;
  for (auto& c : ins) conn_failed(c, cancelled("transport shut down"));
  posted.clear();
  offers.clear();
  release_cuda();
  work.reset();
}

Result<std::shared_ptr<Op>> CudaIpcTransport::Impl::make_op(bool send, uint64_t wire_id,
                                                            const MemorySlice& s,
                                                            Deadline deadline) {
  std::lock_guard lock(mu);
  auto r = regions.find(s.handle.value);
  if (r == regions.end()) {
    return invalid_argument("unknown memory handle " + std::to_string(s.handle.value));
  }
  if (s.offset > r->second.bytes || s.bytes > r->second.bytes - s.offset) {
    return invalid_argument("slice [" + std::to_string(s.offset) + ", +" + std::to_string(s.bytes) +
                            ") outside its " + std::to_string(r->second.bytes) + "-byte region");
  }
  if (s.bytes == 0) return invalid_argument("a transfer of zero bytes");
  if (!send && pending_receives.count(wire_id) > 0) {
    return Status(StatusCode::kConflict,
                  "a receive for transfer " + std::to_string(wire_id) + " is already pending");
  }
  auto op = std::make_shared<Op>();
  op->local = next_id++;
  op->wire_id = wire_id;
  op->send = send;
  op->data = r->second.base + s.offset;
  op->bytes = s.bytes;
  op->region = s.handle.value;
  op->deadline = deadline;
  ++r->second.users;
  if (!send) pending_receives.insert(wire_id);
  ops[op->local] = op;
  return op;
}

CudaIpcTransport::CudaIpcTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<CudaIpcTransport>> CudaIpcTransport::create(
    CudaIpcTransportOptions options) {
  const int devices = cuda_device_count();
  if (devices == 0) return unavailable("cuda-ipc transport: no CUDA device is usable");
  if (options.device < 0 || options.device >= devices) {
    return invalid_argument("cuda-ipc transport: device " + std::to_string(options.device) +
                            " out of range (" + std::to_string(devices) + " devices)");
  }
  auto impl = std::make_unique<Impl>(std::move(options));
  impl->nonce = process_nonce();
  error_code ec;
  const auto addr = asio::ip::make_address(impl->options.host, ec);
  if (ec) return invalid_argument("listen host '" + impl->options.host + "': " + ec.message());
  const tcp::endpoint ep(addr, impl->options.port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return unavailable("listening on " + impl->options.host + ":" +
                       std::to_string(impl->options.port) + ": " + ec.message());
  }
  impl->port = impl->acceptor.local_endpoint().port();
  impl->endpoint = (addr.is_v6() ? "[" + impl->options.host + "]" : impl->options.host) + ":" +
                   std::to_string(impl->port);
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] { raw->io.run(); });
  Status init = raw->run_on_io([raw] { return raw->init_cuda(); });
  if (!init.is_ok()) {
    asio::post(raw->io, [raw] { raw->shutdown(); });
    raw->thread.join();
    return init;
  }
  asio::post(raw->io, [raw] {
    raw->accept();
    raw->sweep();
  });
  return std::unique_ptr<CudaIpcTransport>(new CudaIpcTransport(std::move(impl)));
}

CudaIpcTransport::~CudaIpcTransport() {
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] { impl->shutdown(); });
  impl->thread.join();
}

std::string CudaIpcTransport::endpoint() const { return impl_->endpoint; }
uint16_t CudaIpcTransport::port() const { return impl_->port; }
int CudaIpcTransport::device() const { return impl_->options.device; }

size_t CudaIpcTransport::pending_offers() const {
  std::lock_guard lock(impl_->mu);
  return impl_->offer_count;
}

size_t CudaIpcTransport::open_mappings() const {
  std::lock_guard lock(impl_->mu);
  return impl_->mapping_count;
}

Result<MemoryHandle> CudaIpcTransport::register_memory(void* ptr, uint64_t bytes) {
  if (ptr == nullptr || bytes == 0) {
    return invalid_argument("register_memory: null pointer or zero bytes");
  }
  Impl* impl = impl_.get();
  Impl::Region region;
  region.base = static_cast<uint8_t*>(ptr);
  region.bytes = bytes;
  Status checked = impl->run_on_io([&]() -> Status {
    cudaPointerAttributes attr{};
    cudaError_t e = cudaPointerGetAttributes(&attr, ptr);
    if (e != cudaSuccess || attr.type != cudaMemoryTypeDevice) {
      cudaGetLastError();
      return invalid_argument("register_memory: the cuda-ipc transport moves device memory only");
    }
    if (attr.device != impl->options.device) {
      return invalid_argument("register_memory: memory of device " + std::to_string(attr.device) +
                              " given to the transport of device " +
                              std::to_string(impl->options.device));
    }
    // The IPC handle names the whole allocation: find where it starts.
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    e = cudaGetDriverEntryPointByVersion("cuMemGetAddressRange", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || fn == nullptr) {
      return unavailable(cuda_error("looking up cuMemGetAddressRange", e));
    }
    unsigned long long alloc_base = 0;
    size_t alloc_size = 0;
    const auto addr = reinterpret_cast<unsigned long long>(ptr);
    if (reinterpret_cast<GetRange>(fn)(&alloc_base, &alloc_size, addr) != 0) {
      return invalid_argument("register_memory: no allocation contains the pointer");
    }
    if (addr + bytes > alloc_base + alloc_size) {
      return invalid_argument("register_memory: region runs past the end of its allocation");
    }
    region.alloc_offset = addr - alloc_base;
    cudaIpcMemHandle_t h{};
    e = cudaIpcGetMemHandle(&h, reinterpret_cast<void*>(alloc_base));
    if (e != cudaSuccess) {
      cudaGetLastError();
      return invalid_argument(cuda_error(
          "register_memory: the allocation cannot be shared (cudaMalloc memory only)", e));
    }
    static_assert(sizeof(h) == control::kHandleBytes);
    std::memcpy(region.handle.data(), &h, sizeof(h));
    return Status::ok();
  });
  if (!checked.is_ok()) return checked;
  std::lock_guard lock(impl->mu);
  const uint64_t id = impl->next_id++;
  impl->regions[id] = region;
  return MemoryHandle{id};
}

Status CudaIpcTransport::deregister_memory(MemoryHandle handle) {
  {
    std::lock_guard lock(impl_->mu);
    auto it = impl_->regions.find(handle.value);
    if (it == impl_->regions.end()) {
      return not_found("unknown memory handle " + std::to_string(handle.value));
    }
    if (it->second.users > 0) {
      return Status(StatusCode::kConflict, "memory handle " + std::to_string(handle.value) +
                                               " is in use by " + std::to_string(it->second.users) +
                                               " transfer(s)");
    }
    impl_->regions.erase(it);
  }
  Impl* impl = impl_.get();
  const uint64_t region = handle.value;
  asio::post(impl->io, [impl, region] { impl->forget_region(region); });
  return Status::ok();
}

Result<TransferId> CudaIpcTransport::submit_send(const TransferDesc& desc) {
  BATON_RETURN_IF_ERROR(parse_peer(desc.peer).status());
  BATON_ASSIGN_OR_RETURN(auto op,
                         impl_->make_op(true, desc.transfer_id, desc.source, desc.deadline));
  op->peer = desc.peer;
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl, op] {
    impl->arm_deadline(op);
    impl->start_send(op);
  });
  return TransferId{op->local};
}

Result<TransferId> CudaIpcTransport::submit_receive(uint64_t transfer_id,
                                                    const MemorySlice& destination,
                                                    Deadline deadline) {
  BATON_ASSIGN_OR_RETURN(auto op, impl_->make_op(false, transfer_id, destination, deadline));
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl, op] {
    impl->arm_deadline(op);
    impl->start_receive(op);
  });
  return TransferId{op->local};
}

Result<TransferState> CudaIpcTransport::poll(TransferId id) {
  return transfer_table::poll(*impl_, id);
}

Status CudaIpcTransport::wait(TransferId id, Deadline deadline) {
  return transfer_table::wait(*impl_, id, deadline);
}

Status CudaIpcTransport::cancel(TransferId id) { return transfer_table::cancel(*impl_, id); }

void CudaIpcTransport::release(TransferId id) { transfer_table::release(*impl_, id); }

Capabilities CudaIpcTransport::capabilities() const {
  Capabilities c;
  c.name = "cuda-ipc";
  c.host_memory = false;
  c.device_memory = true;
  c.zero_copy = true;
  c.receive_before_data = true;
  c.receive_after_data = true;
  c.end_to_end_checksum = impl_->options.verify;
  c.max_transfer_bytes = kMaxTransferBytes;
  return c;
}

void CudaIpcTransport::set_on_finished(FinishedCallback cb) {
  transfer_table::set_on_finished(*impl_, std::move(cb));
}

}  // namespace baton::kvtransfer
