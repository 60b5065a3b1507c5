// The sending side of TcpTransport: one pooled connection per peer, one
// message per transfer, acks read back in order.

#include <algorithm>
#include <vector>

#include "kvtransfer/tcp_transport_impl.h"
#include "kvtransfer/wire.h"

namespace baton::kvtransfer {

Result<std::pair<std::string, uint16_t>> parse_peer(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == peer.size()) {
    return invalid_argument("peer '" + peer + "' is not host:port");
  }
  std::string host = peer.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  uint32_t port = 0;
  for (size_t i = colon + 1; i < peer.size(); ++i) {
    const char c = peer[i];
    if (c < '0' || c > '9' || port > 65535)
      return invalid_argument("peer '" + peer + "': bad port");
    port = port * 10 + static_cast<uint32_t>(c - '0');
  }
  if (port == 0 || port > 65535) return invalid_argument("peer '" + peer + "': bad port");
  return std::make_pair(host, static_cast<uint16_t>(port));
}

void TcpTransport::Impl::start_send(const std::shared_ptr<Op>& op) {
  if (!is_pending(*op)) return;
  if (stopping) return finish(op, cancelled("transport shut down"));
  auto& conn = out_conns[op->peer];
  if (!conn || conn->closed) {
    conn = std::make_shared<OutConn>(io, op->peer);
    {
      std::lock_guard lock(mu);
      out_count = out_conns.size();
    }
    connect(conn);
  }
  op->io = Op::Io::kQueued;
  op->out = conn;
  conn->last_used = now();
  conn->queue.push_back(op);
  if (conn->connected && !conn->writing) write_next(conn);
}

void TcpTransport::Impl::connect(const std::shared_ptr<OutConn>& c) {
  auto hp = parse_peer(c->peer);  // validated on submit
  c->connect_timer.expires_after(options.connect_timeout);
  c->connect_timer.async_wait([this, c](const error_code& ec) {
    if (ec || c->connected) return;
    out_failed(c, unavailable("connecting to " + c->peer + ": timed out"), false);
  });
  c->resolver.async_resolve(
      hp->first, std::to_string(hp->second),
      [this, c](const error_code& ec, const tcp::resolver::results_type& results) {
        if (c->closed) return;
        if (ec)
          return out_failed(c, unavailable("resolving " + c->peer + ": " + ec.message()), false);
        asio::async_connect(
            c->sock, results, [this, c](const error_code& ec2, const tcp::endpoint&) {
              if (c->closed) return;
              if (ec2) {
                return out_failed(c, unavailable("connecting to " + c->peer + ": " + ec2.message()),
                                  false);
              }
              c->connected = true;
              c->connect_timer.cancel();
              tune(c->sock);
              read_ack(c);
              write_next(c);
            });
      });
}

void TcpTransport::Impl::tune(tcp::socket& s) {
  error_code ignored;
  s.set_option(tcp::no_delay(true), ignored);
  s.set_option(asio::socket_base::keep_alive(true), ignored);
  if (options.socket_buffer_bytes > 0) {
    s.set_option(asio::socket_base::send_buffer_size(options.socket_buffer_bytes), ignored);
    s.set_option(asio::socket_base::receive_buffer_size(options.socket_buffer_bytes), ignored);
  }
}

void TcpTransport::Impl::write_next(const std::shared_ptr<OutConn>& c) {
  while (!c->queue.empty() && !is_pending(*c->queue.front())) c->queue.pop_front();
  if (c->queue.empty() || stopping) return;
  auto op = c->queue.front();
  c->queue.pop_front();
  c->writing = op;
  op->io = Op::Io::kWriting;
  c->sum = wire::Checksum64();
  c->sent = 0;
  wire::encode_header({wire::FrameKind::kData, op->wire_id, op->bytes, 0}, c->header.data());
  write_piece(c, true);
}

void TcpTransport::Impl::write_piece(const std::shared_ptr<OutConn>& c, bool first) {
  const auto& op = c->writing;
  const uint64_t n = std::min(options.write_chunk_bytes, op->bytes - c->sent);
  // Checksumming just before writing keeps the piece in cache for the
  // kernel's copy.
  c->sum.update(op->data + c->sent, n);
  const bool last = c->sent + n == op->bytes;
  std::vector<asio::const_buffer> bufs;
  if (first) bufs.push_back(asio::buffer(c->header));
  if (n > 0) bufs.push_back(asio::buffer(op->data + c->sent, n));
  if (last) {
    wire::encode_u64(c->sum.finish(), c->trailer.data());
    bufs.push_back(asio::buffer(c->trailer));
  }
  asio::async_write(c->sock, std::move(bufs), [this, c, n, last](const error_code& ec, size_t) {
    if (c->closed) return;
    if (ec) {
      return out_failed(c, unavailable("sending to " + c->peer + ": " + ec.message()), false);
    }
    c->sent += n;
    if (!last) return write_piece(c, false);
    auto op = std::move(c->writing);
    c->writing.reset();
    op->io = Op::Io::kAwaitingAck;
    c->awaiting.push_back(op);
    write_next(c);
  });
}

void TcpTransport::Impl::read_ack(const std::shared_ptr<OutConn>& c) {
  asio::async_read(c->sock, asio::buffer(c->ack), [this, c](const error_code& ec, size_t) {
    if (c->closed) return;
    if (ec) {
      return out_failed(c, unavailable("connection to " + c->peer + " lost: " + ec.message()),
                        false);
    }
    auto h = wire::decode_header(c->ack.data());
    if (!h || h->kind != wire::FrameKind::kAck || c->awaiting.empty() ||
        c->awaiting.front()->wire_id != h->transfer_id ||
        h->aux > static_cast<uint64_t>(StatusCode::kDeadlineExceeded)) {
      return out_failed(c, unavailable("peer " + c->peer + " sent an unexpected frame"), false);
    }
    auto op = c->awaiting.front();
    c->awaiting.pop_front();
    c->last_used = now();
    const auto code = static_cast<StatusCode>(h->aux);
    if (code == StatusCode::kOk) {
      finish(op, Status::ok());
    } else {
      finish(op, Status(code, "transfer " + std::to_string(op->wire_id) + " refused by " + c->peer +
                                  ": " + std::string(code_name(code))));
    }
    read_ack(c);
  });
}

void TcpTransport::Impl::out_failed(const std::shared_ptr<OutConn>& c, const Status& status,
                                    bool requeue_unsent) {
  if (c->closed) return;
  c->closed = true;
  error_code ignored;
  c->resolver.cancel();
  c->connect_timer.cancel();
  c->sock.close(ignored);
  auto it = out_conns.find(c->peer);
  if (it != out_conns.end() && it->second == c) out_conns.erase(it);
  {
    std::lock_guard lock(mu);
    out_count = out_conns.size();
  }
  if (c->writing) finish(c->writing, status);
  c->writing.reset();
  for (auto& op : c->awaiting) finish(op, status);
  c->awaiting.clear();
  auto queue = std::move(c->queue);
  c->queue.clear();
  for (auto& op : queue) {
    if (requeue_unsent) {
      start_send(op);
    } else {
      finish(op, status);
    }
  }
}

}  // namespace baton::kvtransfer
