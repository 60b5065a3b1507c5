#include "gateway/upstream.h"

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

namespace baton::gateway {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

constexpr size_t kReadBuffer = 16 << 10;
// Idle connections older than this are not reused: the instance server closes
// its idle keep-alive connections after a minute by default.
constexpr std::chrono::seconds kMaxIdleAge{30};

std::string_view sv(beast::string_view s) { return {s.data(), s.size()}; }

bool hop_by_hop(std::string_view name) {
  for (std::string_view h : {"connection", "keep-alive", "transfer-encoding", "content-length",
                             "host", "te", "trailer", "upgrade", "proxy-connection"}) {
    if (protocol::iequals(name, h)) return true;
  }
  return false;
}

struct Loop {
  std::shared_ptr<net::io_context> ioc;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work;
  std::thread thread;  // only when the client owns the loop
};

struct Conn {
  explicit Conn(net::io_context& ioc) : stream(ioc) {}
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  std::chrono::steady_clock::time_point idle_since;
};

}  // namespace

class UpstreamClient::Impl {
 public:
  Impl(int threads, size_t max_idle) : max_idle(max_idle) {
    const int n = std::max(1, threads);
    for (int i = 0; i < n; ++i) {
      auto loop = std::make_unique<Loop>();
      loop->ioc = std::make_shared<net::io_context>(1);
      loops.push_back(std::move(loop));
    }
    for (auto& loop : loops) {
      loop->work.emplace(loop->ioc->get_executor());
      loop->thread = std::thread([ioc = loop->ioc] { ioc->run(); });
    }
  }

  Impl(std::vector<std::shared_ptr<net::io_context>> external, size_t max_idle)
      : max_idle(max_idle) {
    for (auto& ioc : external) {
      auto loop = std::make_unique<Loop>();
      loop->ioc = std::move(ioc);
      loops.push_back(std::move(loop));
    }
  }

  // The loop running on this thread if any (no hop), else the next in turn.
  size_t pick_loop() {
    for (size_t i = 0; i < loops.size(); ++i) {
      if (loops[i]->ioc->get_executor().running_in_this_thread()) return i;
    }
    return next.fetch_add(1, std::memory_order_relaxed) % loops.size();
  }

  uint64_t track(std::weak_ptr<UpstreamCall> call) {
    std::lock_guard lock(mu);
    const uint64_t id = ++next_id;
    calls.emplace(id, std::move(call));
    return id;
  }
  void untrack(uint64_t id) {
    std::lock_guard lock(mu);
    calls.erase(id);
  }
  void track_pool(std::weak_ptr<UpstreamPool> pool) {
    std::lock_guard lock(mu);
    std::erase_if(pools, [](const auto& w) { return w.expired(); });
    pools.push_back(std::move(pool));
  }

  void shutdown() {
    if (stopping.exchange(true)) return;
    std::vector<std::shared_ptr<UpstreamCall>> live;
    std::vector<std::shared_ptr<UpstreamPool>> live_pools;
    std::vector<std::pair<size_t, std::shared_ptr<net::steady_timer>>> live_timers;
    {
      std::lock_guard lock(mu);
      for (auto& [id, w] : calls) {
        if (auto c = w.lock()) live.push_back(std::move(c));
      }
      for (auto& w : pools) {
        if (auto p = w.lock()) live_pools.push_back(std::move(p));
      }
      for (auto& [id, t] : timers) {
        if (auto timer = t.second.lock()) live_timers.emplace_back(t.first, std::move(timer));
      }
      timers.clear();
    }
    for (auto& c : live) c->cancel();
    for (auto& p : live_pools) p->close_idle();
    for (auto& [loop, timer] : live_timers) {
      net::post(*loops[loop]->ioc, [timer] { timer->cancel(); });
    }
  }

  void stop() {
    shutdown();
    if (joined.exchange(true)) return;
    for (auto& loop : loops) {
      if (!loop->thread.joinable()) continue;
      loop->work.reset();
      loop->ioc->stop();
      loop->thread.join();
    }
  }

  size_t max_idle;
  std::vector<std::unique_ptr<Loop>> loops;
  std::atomic<size_t> next{0};
  std::atomic<bool> stopping{false};
  std::atomic<bool> joined{false};

  std::mutex mu;
  uint64_t next_id = 0;
  std::unordered_map<uint64_t, std::weak_ptr<UpstreamCall>> calls;
  std::vector<std::weak_ptr<UpstreamPool>> pools;
  std::unordered_map<uint64_t, std::pair<size_t, std::weak_ptr<net::steady_timer>>> timers;
};

namespace {

class PoolImpl final : public UpstreamPool, public std::enable_shared_from_this<PoolImpl> {
 public:
  PoolImpl(std::shared_ptr<UpstreamClient::Impl> client, std::string host, uint16_t port)
      : client_(std::move(client)), host_(std::move(host)), port_(port) {
    idle_.resize(client_->loops.size());
  }

  std::shared_ptr<UpstreamCall> start(UpstreamRequest request, UpstreamHandlers handlers) override;

  size_t idle_connections() const override {
    std::lock_guard lock(mu_);
    size_t n = 0;
    for (const auto& list : idle_) n += list.size();
    return n;
  }

  void close_idle() override {
    std::lock_guard lock(mu_);
    for (size_t i = 0; i < idle_.size(); ++i) {
      // Each connection belongs to its loop's thread: close it there.
      for (auto& c : idle_[i]) {
        net::post(*client_->loops[i]->ioc, [conn = std::shared_ptr<Conn>(std::move(c))] {
          error_code ignored;
          conn->stream.socket().close(ignored);
        });
      }
      idle_[i].clear();
    }
  }

  const std::string& host() const override { return host_; }
  uint16_t port() const override { return port_; }

  std::unique_ptr<Conn> take_idle(size_t loop) {
    std::lock_guard lock(mu_);
    auto& list = idle_[loop];
    const auto now = std::chrono::steady_clock::now();
    while (!list.empty()) {
      std::unique_ptr<Conn> c = std::move(list.back());
      list.pop_back();
      if (now - c->idle_since < kMaxIdleAge && c->stream.socket().is_open()) return c;
    }
    return nullptr;
  }

  void put_idle(size_t loop, std::unique_ptr<Conn> c) {
    c->idle_since = std::chrono::steady_clock::now();
    c->stream.expires_never();
    std::lock_guard lock(mu_);
    if (idle_[loop].size() < client_->max_idle) idle_[loop].push_back(std::move(c));
  }

  Result<std::vector<tcp::endpoint>> endpoints(net::io_context& ioc) {
    std::lock_guard lock(mu_);
    if (!endpoints_.empty()) return endpoints_;
    tcp::resolver resolver(ioc);
    error_code ec;
    auto results = resolver.resolve(host_, std::to_string(port_), ec);
    if (ec) return unavailable("resolving " + host_ + ": " + ec.message());
    for (const auto& r : results) endpoints_.push_back(r.endpoint());
    return endpoints_;
  }

  net::io_context& loop_ioc(size_t loop) { return *client_->loops[loop]->ioc; }
  const std::shared_ptr<UpstreamClient::Impl>& client() const { return client_; }

 private:
  std::shared_ptr<UpstreamClient::Impl> client_;
  std::string host_;
  uint16_t port_;
  mutable std::mutex mu_;
  std::vector<std::vector<std::unique_ptr<Conn>>> idle_;  // per loop
  std::vector<tcp::endpoint> endpoints_;
};

// One exchange on one connection, driven on one loop's thread. Pending
// operations keep the call (and so its connection, buffer and parser) alive
// through the shared_ptr in their handlers; a cancel only closes the socket,
// so nothing is destroyed under a pending operation.
class CallImpl final : public UpstreamCall, public std::enable_shared_from_this<CallImpl> {
 public:
  CallImpl(std::shared_ptr<PoolImpl> pool, size_t loop, UpstreamRequest request,
           UpstreamHandlers handlers)
      : pool_(std::move(pool)),
        loop_(loop),
        ioc_(pool_->loop_ioc(loop)),
        options_(std::move(request)),
        handlers_(std::move(handlers)) {
    req_.method_string(options_.method);
    req_.target(options_.target);
    req_.version(11);
    req_.set(http::field::host, pool_->host() + ":" + std::to_string(pool_->port()));
    for (const auto& [name, value] : options_.headers) {
      if (!hop_by_hop(name)) req_.insert(name, value);
    }
    req_.body() = std::move(options_.body);
    req_.keep_alive(true);
    req_.prepare_payload();
  }

  void begin() {
    track_id_ = pool_->client()->track(weak_from_this());
    net::post(ioc_, [self = shared_from_this()] { self->acquire(); });
  }

  void cancel() override {
    net::post(ioc_, [self = shared_from_this()] {
      if (self->done_) return;
      self->close_socket();
      self->finish({cancelled("upstream call cancelled"), false});
    });
  }

 private:
  // One timer per call, re-armed lazily: arm() only moves the deadline, and
  // the timer, when it fires early, waits again for the rest. The sockets
  // themselves carry no expiry, so a read or write arms no timer of its own.
  void arm(std::chrono::milliseconds d) {
    deadline_ = std::chrono::steady_clock::now() + d;
    if (!timer_) {
      timer_.emplace(ioc_);
      wait_timer();
    } else if (deadline_ < timer_->expiry()) {
      timer_->cancel();  // its handler waits again for the earlier deadline
    }
  }

  void wait_timer() {
    timer_->expires_at(deadline_);
    timer_->async_wait([self = shared_from_this()](error_code) {
      if (self->done_) return;
      if (std::chrono::steady_clock::now() < self->deadline_) return self->wait_timer();
      self->timed_out_ = true;
      self->close_socket();
    });
  }

  void acquire() {
    if (done_) return;
    if (pool_->client()->stopping.load()) {
      return finish({unavailable("upstream client shut down"), false});
    }
    conn_ = pool_->take_idle(loop_);
    if (conn_) {
      reused_ = true;
      write();
    } else {
      connect();
    }
  }

  void connect() {
    reused_ = false;
    auto eps = pool_->endpoints(ioc_);
    if (!eps.is_ok()) return finish({eps.status(), true});
    conn_ = std::make_unique<Conn>(ioc_);
    arm(options_.connect_timeout);
    conn_->stream.async_connect(*eps, [self = shared_from_this()](error_code ec, const auto&) {
      if (self->done_) return;
      if (ec) {
        return self->finish({self->timed_out_ ? deadline_exceeded("connecting upstream: timed out")
                                              : unavailable("connecting upstream: " + ec.message()),
                             true});
      }
      error_code ignored;
      self->conn_->stream.socket().set_option(tcp::no_delay(true), ignored);
      self->write();
    });
  }

  // A kept connection the upstream closed while idle fails on first use; that
  // is no failure of the upstream, so the request goes again on a new one.
  bool retry_fresh() {
    if (!reused_ || got_bytes_ || timed_out_) return false;
    close_socket();
    conn_.reset();
    connect();
    return true;
  }

  void write() {
    arm(options_.first_byte_timeout);
    http::async_write(conn_->stream, req_, [self = shared_from_this()](error_code ec, size_t) {
      if (self->done_) return;
      if (ec) {
        if (self->retry_fresh()) return;
        return self->finish({unavailable("writing upstream request: " + ec.message()), true});
      }
      self->read_header();
    });
  }

  void read_header() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    // The expiry write() set covers the wait for the headers too.
    http::async_read_header(
        conn_->stream, conn_->buffer, *parser_, [self = shared_from_this()](error_code ec, size_t) {
          if (self->done_) return;
          if (ec) {
            const bool nothing = self->conn_->buffer.size() == 0;
            if (nothing && self->retry_fresh()) return;
            if (self->timed_out_) {
              return self->finish({deadline_exceeded("upstream sent no response in time"), false});
            }
            return self->finish(
                {nothing ? unavailable("upstream closed without a response: " + ec.message())
                         : Status(StatusCode::kBadGateway,
                                  "malformed upstream response: " + ec.message()),
                 nothing});
          }
          self->got_bytes_ = true;
          protocol::Headers headers;
          for (const auto& f : self->parser_->get().base()) {
            headers.emplace_back(std::string(sv(f.name_string())), std::string(sv(f.value())));
          }
          if (self->handlers_.on_headers) {
            self->handlers_.on_headers(static_cast<int>(self->parser_->get().result_int()),
                                       std::move(headers));
          }
          if (self->done_) return;
          self->read_body();
        });
  }

  // Parses everything already buffered into one piece for on_data, then
  // reads the socket again: one upstream read becomes at most one piece, so
  // a burst of small SSE chunks is relayed as one write, not one each.
  void read_body() {
    // Parsing is synchronous, so one scratch buffer per thread serves every
    // call (a 16 KiB array in each call made each call a large allocation).
    thread_local char scratch[kReadBuffer];
    std::string piece;
    error_code ec;
    while (!parser_->is_done() && conn_->buffer.size() > 0) {
      auto& body = parser_->get().body();
      body.data = scratch;
      body.size = kReadBuffer;
      const size_t used = parser_->put(conn_->buffer.data(), ec);
      conn_->buffer.consume(used);
      const size_t got = kReadBuffer - parser_->get().body().size;
      piece.append(scratch, got);
      if (ec == http::error::need_buffer) ec = {};
      if (ec == http::error::need_more) {
        ec = {};
        break;
      }
      if (ec) break;
      if (used == 0 && got == 0) break;
    }
    if (!piece.empty() && !deliver(piece)) return;
    if (ec) return fail_body(ec);
    if (parser_->is_done()) return complete();
    arm(options_.idle_timeout);
    conn_->stream.async_read_some(conn_->buffer.prepare(kReadBuffer),
                                  [self = shared_from_this()](error_code ec, size_t n) {
                                    if (self->done_) return;
                                    self->conn_->buffer.commit(n);
                                    if (ec == net::error::eof) {
                                      // A body delimited by the end of the connection ends here.
                                      error_code eof_ec;
                                      self->parser_->put_eof(eof_ec);
                                      if (!eof_ec && self->conn_->buffer.size() == 0) {
                                        self->close_socket();
                                        return self->finish({Status::ok(), false});
                                      }
                                      if (!eof_ec) return self->read_body();
                                      ec = eof_ec;
                                    }
                                    if (ec) return self->fail_body(ec);
                                    self->read_body();
                                  });
  }

  bool deliver(std::string_view piece) {
    if (!handlers_.on_data) return true;
    if (!handlers_.on_data(piece)) {
      close_socket();
      finish({cancelled("upstream body refused by the reader"), false});
      return false;
    }
    return !done_;
  }

  void fail_body(error_code ec) {
    close_socket();
    finish({timed_out_ ? deadline_exceeded("upstream stalled mid-response")
                       : Status(StatusCode::kBadGateway,
                                "upstream connection lost mid-response: " + ec.message()),
            false});
  }

  void complete() {
    if (parser_->keep_alive() && conn_) {
      pool_->put_idle(loop_, std::move(conn_));
    } else {
      close_socket();
    }
    finish({Status::ok(), false});
  }

  void close_socket() {
    if (!conn_) return;
    error_code ignored;
    conn_->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    conn_->stream.socket().close(ignored);
  }

  void finish(UpstreamResult result) {
    if (done_) return;
    done_ = true;
    if (timer_) timer_->cancel();
    pool_->client()->untrack(track_id_);
    auto on_done = std::move(handlers_.on_done);
    handlers_ = {};
    if (on_done) on_done(result);
  }

  std::shared_ptr<PoolImpl> pool_;
  size_t loop_;
  net::io_context& ioc_;
  UpstreamRequest options_;
  UpstreamHandlers handlers_;
  http::request<http::string_body> req_;
  std::unique_ptr<Conn> conn_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  uint64_t track_id_ = 0;
  std::optional<net::steady_timer> timer_;
  std::chrono::steady_clock::time_point deadline_{};
  bool timed_out_ = false;
  bool done_ = false;
  bool reused_ = false;
  bool got_bytes_ = false;
};

std::shared_ptr<UpstreamCall> PoolImpl::start(UpstreamRequest request, UpstreamHandlers handlers) {
  auto call = std::make_shared<CallImpl>(shared_from_this(), client_->pick_loop(),
                                         std::move(request), std::move(handlers));
  call->begin();
  return call;
}

}  // namespace

UpstreamClient::UpstreamClient(int threads, size_t max_idle_per_pool)
    : impl_(std::make_shared<Impl>(threads, max_idle_per_pool)) {}

UpstreamClient::UpstreamClient(std::vector<std::shared_ptr<net::io_context>> loops,
                               size_t max_idle_per_pool)
    : impl_(std::make_shared<Impl>(std::move(loops), max_idle_per_pool)) {}

UpstreamClient::~UpstreamClient() { stop(); }

std::shared_ptr<UpstreamPool> UpstreamClient::make_pool(std::string host, uint16_t port) {
  auto pool = std::make_shared<PoolImpl>(impl_, std::move(host), port);
  impl_->track_pool(pool);
  return pool;
}

void UpstreamClient::run_after(std::chrono::nanoseconds delay, std::function<void()> fn) {
  if (impl_->stopping.load()) return;
  const size_t loop = impl_->pick_loop();
  auto& ioc = *impl_->loops[loop]->ioc;
  if (delay <= std::chrono::nanoseconds::zero()) {
    net::post(ioc, std::move(fn));
    return;
  }
  auto timer = std::make_shared<net::steady_timer>(ioc, delay);
  uint64_t id;
  {
    std::lock_guard lock(impl_->mu);
    id = ++impl_->next_id;
    impl_->timers.emplace(id, std::make_pair(loop, std::weak_ptr<net::steady_timer>(timer)));
  }
  timer->async_wait([timer, id, weak = std::weak_ptr<Impl>(impl_),
                     fn = std::move(fn)](boost::system::error_code ec) {
    if (auto impl = weak.lock()) {
      std::lock_guard lock(impl->mu);
      impl->timers.erase(id);
    }
    if (!ec) fn();
  });
}

void UpstreamClient::shutdown() { impl_->shutdown(); }

void UpstreamClient::stop() { impl_->stop(); }

}  // namespace baton::gateway
