#include "kvtransfer/tcp_transport.h"

#include <vector>

#include "kvtransfer/tcp_transport_impl.h"
#include "kvtransfer/transfer_table.h"

namespace baton::kvtransfer {

void TcpTransport::Impl::finish(const std::shared_ptr<Op>& op, Status status) {
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
  if (cb && *cb) (*cb)(TransferId{op->local}, state);
}

void TcpTransport::Impl::abort(const std::shared_ptr<Op>& op, Status status) {
  if (!is_pending(*op)) return;
  switch (op->io) {
    case Op::Io::kWriting:
      // Its bytes are on the wire: the message cannot be taken back, so the
      // connection goes; closing it stops all I/O on the op's memory.
      if (auto c = op->out.lock()) {
        c->writing.reset();
        out_failed(c,
                   unavailable("connection to " + c->peer + " closed to abort transfer " +
                               std::to_string(op->wire_id)),
                   /*requeue_unsent=*/true);
        finish(op, std::move(status));  // the socket is closed: no more I/O on it
        return;
      }
      break;
    case Op::Io::kReading:
      if (auto c = op->in.lock()) {
        // Cancelling the pending read guarantees nothing more lands in the
        // destination; the rest of the message is read and dropped.
        error_code ignored;
        c->sock.cancel(ignored);
        c->sink = InConn::Sink::kDiscard;
        c->discard_code = status.code();
        c->op.reset();
        finish(op, std::move(status));
        return;
      }
      break;
    case Op::Io::kPosted: {
      auto p = posted.find(op->wire_id);
      if (p != posted.end() && p->second == op) posted.erase(p);
      break;
    }
    case Op::Io::kClaiming: {
      auto h = held.find(op->wire_id);
      if (h != held.end() && h->second->claimer == op) h->second->claimer.reset();
      break;
    }
    default:
      break;
  }
  finish(op, std::move(status));
}

void TcpTransport::Impl::arm_deadline(const std::shared_ptr<Op>& op) {
  if (op->deadline.is_never() || stopping || !is_pending(*op)) return;
  op->timer.emplace(io);
  op->timer->expires_at(op->deadline.time_point());
  op->timer->async_wait([this, op](const error_code& ec) {
    if (ec) return;
    const std::string what = op->send ? "send of transfer " : "receive of transfer ";
    abort(op, deadline_exceeded(what + std::to_string(op->wire_id) + " (" + bytes_str(op->bytes) +
                                " bytes" + (op->send ? " to " + op->peer : std::string()) +
                                "): deadline passed"));
  });
}

void TcpTransport::Impl::sweep() {
  sweep_timer.expires_after(std::chrono::seconds(1));
  sweep_timer.async_wait([this](const error_code& ec) {
    if (ec || stopping) return;
    const auto t = now();
    for (auto it = held.begin(); it != held.end();) {
      auto hd = it++->second;
      if (hd->complete && !hd->claimer && hd->expires <= t) {
        drop_held(hd);
        refuse(hd->wire_id,
               unavailable("transfer " + std::to_string(hd->wire_id) +
                           ": its data arrived but no receive claimed it within the hold lease"));
      }
    }
    std::vector<std::shared_ptr<OutConn>> idle;
    for (auto& [peer, c] : out_conns) {
      if (c->connected && !c->writing && c->queue.empty() && c->awaiting.empty() &&
          c->last_used + options.idle_connection_lease <= t) {
        idle.push_back(c);
      }
    }
    for (auto& c : idle) out_failed(c, unavailable("idle connection closed"), false);
    transfer_table::forget_expired(*this, t, options.finished_lease, options.unclaimed_lease);
    sweep();
  });
}

void TcpTransport::Impl::shutdown() {
  stopping = true;
  error_code ignored;
  acceptor.close(ignored);
  sweep_timer.cancel();
  auto outs = out_conns;
  for (auto& [peer, c] : outs) out_failed(c, cancelled("transport shut down"), false);
  auto ins = in_conns;
  for (auto& c : ins) in_failed(c, asio::error::operation_aborted);
  std::vector<std::shared_ptr<Op>> pending;
  {
    std::lock_guard lock(mu);
    for (auto& [id, op] : ops) pending.push_back(op);
  }
  for (auto& op : pending) abort(op, cancelled("transport shut down"));
  posted.clear();
  held.clear();
  work.reset();
}

Result<std::shared_ptr<Op>> TcpTransport::Impl::make_op(bool send, uint64_t wire_id,
                                                        const MemorySlice& s, Deadline deadline) {
  std::lock_guard lock(mu);
  auto r = regions.find(s.handle.value);
  if (r == regions.end()) {
    return invalid_argument("unknown memory handle " + std::to_string(s.handle.value));
  }
  if (s.offset > r->second.bytes || s.bytes > r->second.bytes - s.offset) {
    return invalid_argument("slice [" + bytes_str(s.offset) + ", +" + bytes_str(s.bytes) +
                            ") outside its " + bytes_str(r->second.bytes) + "-byte region");
  }
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

std::shared_ptr<Op> TcpTransport::Impl::find(TransferId id) {
  return transfer_table::find(*this, id);
}

TcpTransport::TcpTransport(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<TcpTransport>> TcpTransport::create(TcpTransportOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
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
  asio::post(raw->io, [raw] {
    raw->accept();
    raw->sweep();
  });
  raw->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<TcpTransport>(new TcpTransport(std::move(impl)));
}

TcpTransport::~TcpTransport() {
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] { impl->shutdown(); });
  impl->thread.join();
}

std::string TcpTransport::endpoint() const { return impl_->endpoint; }
uint16_t TcpTransport::port() const { return impl_->port; }

size_t TcpTransport::outgoing_connections() const {
  std::lock_guard lock(impl_->mu);
  return impl_->out_count;
}

uint64_t TcpTransport::unclaimed_bytes() const {
  std::lock_guard lock(impl_->mu);
  return impl_->held_bytes;
}

Result<MemoryHandle> TcpTransport::register_memory(void* ptr, uint64_t bytes) {
  if (ptr == nullptr || bytes == 0) {
    return invalid_argument("register_memory: null pointer or zero bytes");
  }
  std::lock_guard lock(impl_->mu);
  const uint64_t id = impl_->next_id++;
  impl_->regions[id] = Impl::Region{static_cast<uint8_t*>(ptr), bytes, 0};
  return MemoryHandle{id};
}

Status TcpTransport::deregister_memory(MemoryHandle handle) {
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
  return Status::ok();
}

Result<TransferId> TcpTransport::submit_send(const TransferDesc& desc) {
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

Result<TransferId> TcpTransport::submit_receive(uint64_t transfer_id,
                                                const MemorySlice& destination, Deadline deadline) {
  BATON_ASSIGN_OR_RETURN(auto op, impl_->make_op(false, transfer_id, destination, deadline));
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl, op] {
    impl->arm_deadline(op);
    impl->start_receive(op);
  });
  return TransferId{op->local};
}

Result<TransferState> TcpTransport::poll(TransferId id) { return transfer_table::poll(*impl_, id); }

Status TcpTransport::wait(TransferId id, Deadline deadline) {
  return transfer_table::wait(*impl_, id, deadline);
}

Status TcpTransport::cancel(TransferId id) { return transfer_table::cancel(*impl_, id); }

void TcpTransport::release(TransferId id) { transfer_table::release(*impl_, id); }

Capabilities TcpTransport::capabilities() const {
  Capabilities c;
  c.name = "tcp";
  c.host_memory = true;
  c.device_memory = false;
  c.zero_copy = false;
  c.receive_before_data = true;
  c.receive_after_data = true;
  c.end_to_end_checksum = true;
  c.max_transfer_bytes = kMaxTransferBytes;
  return c;
}

void TcpTransport::set_on_finished(FinishedCallback cb) {
  transfer_table::set_on_finished(*impl_, std::move(cb));
}

}  // namespace baton::kvtransfer
