#include "protocol/http_connection.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <cstdio>
#include <deque>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "common/logging.h"
#include "protocol/openai_error.h"

namespace baton::protocol::detail {

namespace net = boost::asio;
namespace http = boost::beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {

// After a response that ends the connection we stop sending, then read and
// discard what the client still sends for a moment before closing: closing a
// socket with unread input makes the kernel send RST, which can destroy the
// error response (413, 503, ...) before the client reads it.
constexpr size_t kLingerMaxBytes = 256 << 10;
constexpr std::chrono::milliseconds kLingerTimeout{1000};
// While a handler works we keep reading, only to notice a client that goes
// away; pipelined bytes read that way are kept for the next request, up to
// this much.
constexpr size_t kWatchMaxBuffered = 64 << 10;
constexpr size_t kReadChunk = 4096;

// Header names and values from handlers must not inject lines.
std::string sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    if (c != '\r' && c != '\n' && c != '\0') out += c;
  }
  return out;
}

bool is_framing_header(std::string_view name) {
  return iequals(name, "Content-Length") || iequals(name, "Transfer-Encoding") ||
         iequals(name, "Connection") || iequals(name, "Server");
}

bool status_has_body(int status) { return status >= 200 && status != 204 && status != 304; }

std::string_view sv(boost::beast::string_view s) { return {s.data(), s.size()}; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// What a connection and the writers of its responses share: whether the
// response is still pending, the cancellation hooks, the output backlog.
class ResponseState {
 public:
  std::atomic<bool> closed{false};
  std::atomic<size_t> backlog{0};

  void add_hook(std::function<void()> cb) {
    {
      std::lock_guard lock(mu_);
      if (!finished_) {
        hooks_.push_back(std::move(cb));
        return;
      }
    }
    if (closed.load()) cb();
  }
  // The connection went away first: run the hooks once.
  void fire_close() {
    std::vector<std::function<void()>> hooks;
    {
      std::lock_guard lock(mu_);
      closed.store(true);
      if (finished_) return;
      finished_ = true;
      hooks.swap(hooks_);
    }
    for (auto& hook : hooks) {
      try {
        hook();
      } catch (const std::exception& e) {
        BATON_LOG_ERROR("http: on_close hook threw: {}", e.what());
      } catch (...) {
        BATON_LOG_ERROR("http: on_close hook threw");
      }
    }
  }
  // The response completed: the hooks will never be needed.
  void complete() {
    std::lock_guard lock(mu_);
    finished_ = true;
    hooks_.clear();
  }

 private:
  std::mutex mu_;
  bool finished_ = false;
  std::vector<std::function<void()>> hooks_;
};

}  // namespace

// One accepted connection. Every member function runs on the connection's
// strand (the socket's executor), except the constructor.
class Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(std::shared_ptr<ServerState> state, tcp::socket socket, uint64_t id, bool counted)
      : state_(std::move(state)),
        opts_(state_->options),
        socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        id_(id),
        counted_(counted) {
    error_code ec;
    auto remote = socket_.remote_endpoint(ec);
    if (!ec) {
      remote_address_ = remote.address().to_string();
      remote_port_ = remote.port();
    }
  }

  ~Connection() {
    if (!closed_) state_->unregister(id_, counted_);
  }

  tcp::socket::executor_type executor() { return socket_.get_executor(); }
  const std::shared_ptr<ServerState>& state() const { return state_; }
  size_t max_backlog() const { return opts_.max_output_backlog; }

  void start() { read_request(); }

  void start_rejected(Refusal refusal) {
    first_request_ = false;
    if (refusal == Refusal::kClientFull) {
      fail(429,
           "too many connections from this client (the limit is " +
               std::to_string(opts_.max_connections_per_client) + "); retry later",
           "too_many_connections", {{"Retry-After", std::to_string(opts_.retry_after.count())}});
      return;
    }
    fail(503, "the server is at its connection limit; retry later", "server_overloaded",
         {{"Retry-After", std::to_string(opts_.retry_after.count())}});
  }

  void close_now() {
    if (closed_) return;
    closed_ = true;
    phase_ = Phase::kClosed;
    disarm();
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    if (response_) {
      response_->fire_close();
      response_.reset();
    }
    state_->unregister(id_, counted_);
  }

  // --- called (on the strand) on behalf of a ResponseWriter ---

  void respond(uint64_t seq, int status, const std::string& content_type, std::string body,
               const Headers& extra) {
    if (!owns(seq) || out_state_ != OutState::kNone) return;
    bool has_body = status_has_body(status);
    std::string framing;
    if (has_body) framing = "Content-Length: " + std::to_string(body.size()) + "\r\n";
    std::string bytes = head(status, content_type, extra, framing);
    if (has_body && !head_request_) bytes += body;
    enqueue(std::move(bytes), 0);
    out_state_ = OutState::kFinishing;
    flush();
  }

  void start_stream(uint64_t seq, int status, const std::string& content_type,
                    const Headers& extra) {
    if (!owns(seq) || out_state_ != OutState::kNone) return;
    chunked_ = version_ >= 11;
    // An HTTP/1.0 client cannot read chunks: the body ends with the connection.
    if (!chunked_) keep_alive_ = false;
    enqueue(head(status, content_type, extra, chunked_ ? "Transfer-Encoding: chunked\r\n" : ""), 0);
    out_state_ = head_request_ ? OutState::kFinishing : OutState::kStreaming;
    flush();
  }

  void write_chunk(uint64_t seq, std::string chunk) {
    size_t size = chunk.size();
    if (!owns(seq) || out_state_ != OutState::kStreaming) return;
    if (chunked_) {
      char hex[20];
      int n = std::snprintf(hex, sizeof(hex), "%zx\r\n", size);
      std::string framed;
      framed.reserve(size + static_cast<size_t>(n) + 2);
      framed.append(hex, static_cast<size_t>(n));
      framed += chunk;
      framed += "\r\n";
      enqueue(std::move(framed), size);
    } else {
      enqueue(std::move(chunk), size);
    }
    flush();
  }

  void end_stream(uint64_t seq) {
    if (!owns(seq) || out_state_ != OutState::kStreaming) return;
    if (chunked_) enqueue("0\r\n\r\n", 0);
    out_state_ = OutState::kFinishing;
    flush();
  }

  void abort(uint64_t seq) {
    if (owns(seq)) close_now();
  }

 private:
  enum class Phase { kIdle, kHeader, kBody, kRespond, kLinger, kClosed };
  enum class OutState { kNone, kStreaming, kFinishing };
  struct OutItem {
    std::string bytes;
    size_t accounted;  // bytes of the writer's backlog this item carries
  };

  bool owns(uint64_t seq) const { return !closed_ && phase_ == Phase::kRespond && seq == seq_; }

  // --- timers ---

  void arm(std::chrono::milliseconds timeout) {
    timed_out_ = false;
    uint64_t gen = ++timer_gen_;
    timer_.expires_after(timeout);
    timer_.async_wait([self = shared_from_this(), gen](error_code ec) {
      if (ec || gen != self->timer_gen_ || self->closed_) return;
      self->on_timeout();
    });
  }

  void disarm() {
    ++timer_gen_;
    timer_.cancel();
  }

  void on_timeout() {
    switch (phase_) {
      case Phase::kHeader:
      case Phase::kBody: {
        // The pending read completes with operation_aborted and answers 408.
        timed_out_ = true;
        error_code ignored;
        socket_.cancel(ignored);
        break;
      }
      case Phase::kIdle:
      case Phase::kRespond:
      case Phase::kLinger:
      case Phase::kClosed:
        close_now();
        break;
    }
  }

  // --- reading a request ---

  void read_request() {
    if (closed_) return;
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(
        std::min<size_t>(opts_.max_header_bytes, std::numeric_limits<std::uint32_t>::max())));
    parser_->body_limit(opts_.max_body_bytes);
    if (buffer_.size() == 0 && !first_request_) {
      // Keep-alive wait: idle_timeout until the first byte, then header_timeout.
      phase_ = Phase::kIdle;
      arm(opts_.idle_timeout);
      socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](error_code ec) {
        if (self->closed_) return;
        if (ec) return self->close_now();
        self->read_header();
      });
      return;
    }
    first_request_ = false;
    read_header();
  }

  void read_header() {
    phase_ = Phase::kHeader;
    arm(opts_.header_timeout);
    http::async_read_header(
        socket_, buffer_, *parser_,
        [self = shared_from_this()](error_code ec, size_t) { self->on_header(ec); });
  }

  void on_header(error_code ec) {
    if (closed_) return;
    bool timed_out = timed_out_;
    disarm();
    if (ec) return on_read_error(ec, timed_out);
    const auto& msg = parser_->get();
    if (msg.version() != 10 && msg.version() != 11) {
      return fail(505, "only HTTP/1.0 and HTTP/1.1 are supported", "http_version_not_supported");
    }
    if (static_cast<size_t>(std::distance(msg.begin(), msg.end())) > opts_.max_header_count) {
      return fail(431,
                  "too many header fields (limit " + std::to_string(opts_.max_header_count) + ")",
                  "header_too_large");
    }
    auto te = msg.find(http::field::transfer_encoding);
    if (te != msg.end() && !iequals(trim(sv(te->value())), "chunked")) {
      return fail(501, "unsupported Transfer-Encoding; only chunked is accepted",
                  "unsupported_transfer_encoding");
    }
    if (parser_->is_done()) return dispatch();
    phase_ = Phase::kBody;
    arm(opts_.body_timeout);
    auto expect = msg.find(http::field::expect);
    if (msg.version() == 11 && expect != msg.end() &&
        iequals(trim(sv(expect->value())), "100-continue")) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      net::async_write(socket_, net::buffer(kContinue.data(), kContinue.size()),
                       [self = shared_from_this()](error_code ec, size_t) {
                         if (self->closed_) return;
                         if (ec) return self->on_body(ec);
                         self->read_body();
                       });
      return;
    }
    read_body();
  }

  void read_body() {
    http::async_read(socket_, buffer_, *parser_,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_body(ec); });
  }

  void on_body(error_code ec) {
    if (closed_) return;
    bool timed_out = timed_out_;
    disarm();
    if (ec) return on_read_error(ec, timed_out);
    dispatch();
  }

  void on_read_error(error_code ec, bool timed_out) {
    if (timed_out) {
      return fail(408, "the request was not received within the server's timeout",
                  "request_timeout");
    }
    if (ec == http::error::header_limit) {
      return fail(431,
                  "request headers exceed " + std::to_string(opts_.max_header_bytes) + " bytes",
                  "header_too_large");
    }
    if (ec == http::error::body_limit) {
      return fail(413, "request body exceeds " + std::to_string(opts_.max_body_bytes) + " bytes",
                  "payload_too_large");
    }
    // A clean end between requests or a client gone mid-request: nobody to answer.
    if (ec == http::error::end_of_stream || ec == http::error::partial_message ||
        ec.category() != http::make_error_code(http::error::bad_target).category()) {
      return close_now();
    }
    fail(400, "malformed HTTP request: " + ec.message(), "bad_request");
  }

  void dispatch() {
    auto msg = parser_->release();
    parser_.reset();
    HttpRequest req;
    req.method = std::string(sv(msg.method_string()));
    req.target = std::string(sv(msg.target()));
    size_t q = req.target.find('?');
    req.path = req.target.substr(0, q);
    if (q != std::string::npos) req.query = req.target.substr(q + 1);
    req.version = static_cast<int>(msg.version());
    req.headers.reserve(static_cast<size_t>(std::distance(msg.begin(), msg.end())));
    for (const auto& field : msg) {
      req.headers.emplace_back(std::string(sv(field.name_string())),
                               std::string(sv(field.value())));
    }
    req.body = std::move(msg.body());
    req.remote_address = remote_address_;
    req.remote_port = remote_port_;

    phase_ = Phase::kRespond;
    ++seq_;
    keep_alive_ = msg.keep_alive();
    version_ = static_cast<int>(msg.version());
    head_request_ = msg.method() == http::verb::head;
    out_state_ = OutState::kNone;
    response_ = std::make_shared<ResponseState>();
    watch_peer();

    auto writer = make_writer();
    try {
      state_->handler(std::move(req), std::move(writer));
    } catch (const std::exception& e) {
      // The writer died with the handler's frame; its destructor answers 500.
      BATON_LOG_ERROR("http: handler threw: {}", e.what());
    } catch (...) {
      BATON_LOG_ERROR("http: handler threw");
    }
  }

  std::shared_ptr<ResponseWriter> make_writer();

  // A response the server makes itself; the connection closes after it.
  void fail(int status, std::string message, std::string_view code, Headers extra = {}) {
    BATON_LOG_DEBUG("http: {} to {}:{}: {}", status, remote_address_, remote_port_, message);
    phase_ = Phase::kRespond;
    ++seq_;
    keep_alive_ = false;
    head_request_ = false;
    out_state_ = OutState::kNone;
    response_.reset();
    respond(seq_, status, "application/json",
            error_body(Status(code_from_http(status), std::move(message))), extra);
  }

  // --- noticing a client that leaves while its request is handled ---

  void watch_peer() {
    if (watching_ || closed_ || buffer_.size() >= kWatchMaxBuffered) return;
    watching_ = true;
    socket_.async_read_some(
        buffer_.prepare(kReadChunk),
        [self = shared_from_this()](error_code ec, size_t n) { self->on_watch(ec, n); });
  }

  void on_watch(error_code ec, size_t n) {
    watching_ = false;
    if (closed_) return;
    if (!ec) buffer_.commit(n);
    if (phase_ == Phase::kLinger) {
      lingered_ += buffer_.size();
      buffer_.consume(buffer_.size());
      if (ec || lingered_ > kLingerMaxBytes) return close_now();
      return watch_peer();
    }
    if (resume_after_watch_) {
      resume_after_watch_ = false;
      return read_request();
    }
    if (ec) return close_now();  // EOF or reset: the client is gone
    watch_peer();
  }

  // --- writing ---

  std::string head(int status, std::string_view content_type, const Headers& extra,
                   std::string_view framing) const {
    std::string out = "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    out += reason_phrase(status);
    out += "\r\nServer: baton\r\n";
    if (!content_type.empty() && status_has_body(status)) {
      out += "Content-Type: ";
      out += sanitize(content_type);
      out += "\r\n";
    }
    for (const auto& [name, value] : extra) {
      if (is_framing_header(name) || name.empty()) continue;
      out += sanitize(name);
      out += ": ";
      out += sanitize(value);
      out += "\r\n";
    }
    out += framing;
    out += keep_alive_ ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
    return out;
  }

  void enqueue(std::string bytes, size_t accounted) {
    out_.push_back(OutItem{std::move(bytes), accounted});
  }

  void flush() {
    if (closed_ || writing_) return;
    if (out_.empty()) {
      if (out_state_ == OutState::kFinishing) on_response_complete();
      return;
    }
    // Everything queued goes out in one gathered write.
    inflight_.clear();
    while (!out_.empty()) {
      inflight_.push_back(std::move(out_.front()));
      out_.pop_front();
    }
    std::vector<net::const_buffer> buffers;
    buffers.reserve(inflight_.size());
    for (const auto& item : inflight_) buffers.push_back(net::buffer(item.bytes));
    writing_ = true;
    arm(opts_.write_timeout);
    net::async_write(socket_, buffers,
                     [self = shared_from_this()](error_code ec, size_t) { self->on_written(ec); });
  }

  void on_written(error_code ec) {
    writing_ = false;
    if (closed_) return;
    disarm();
    if (ec) return close_now();
    size_t accounted = 0;
    for (const auto& item : inflight_) accounted += item.accounted;
    inflight_.clear();
    if (response_ && accounted > 0) response_->backlog.fetch_sub(accounted);
    flush();
  }

  void on_response_complete() {
    out_state_ = OutState::kNone;
    ++seq_;  // late calls from this response's writer are ignored from now on
    if (response_) {
      response_->complete();
      response_.reset();
    }
    if (!keep_alive_) return linger();
    if (watching_) {
      // The watch read must finish before the parser reads; it resumes us.
      resume_after_watch_ = true;
      error_code ignored;
      socket_.cancel(ignored);
      return;
    }
    read_request();
  }

  void linger() {
    phase_ = Phase::kLinger;
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    arm(kLingerTimeout);
    lingered_ = buffer_.size();
    buffer_.consume(buffer_.size());
    watch_peer();
  }

  std::shared_ptr<ServerState> state_;
  const HttpServerOptions& opts_;
  tcp::socket socket_;
  net::steady_timer timer_;
  uint64_t id_;
  bool counted_;
  std::string remote_address_;
  uint16_t remote_port_ = 0;

  Phase phase_ = Phase::kHeader;
  bool closed_ = false;
  bool first_request_ = true;
  uint64_t timer_gen_ = 0;
  bool timed_out_ = false;

  boost::beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  bool watching_ = false;
  bool resume_after_watch_ = false;
  size_t lingered_ = 0;

  // The response in progress.
  uint64_t seq_ = 0;
  std::shared_ptr<ResponseState> response_;
  OutState out_state_ = OutState::kNone;
  bool keep_alive_ = false;
  int version_ = 11;
  bool head_request_ = false;
  bool chunked_ = false;
  std::deque<OutItem> out_;
  std::vector<OutItem> inflight_;
  bool writing_ = false;
};

// The server's ResponseWriter: forwards each call to the connection's strand.
// The stage is tracked here too, so that the boolean answers are immediate.
class ConnectionWriter final : public ResponseWriter {
 public:
  ConnectionWriter(std::shared_ptr<Connection> conn, std::shared_ptr<ResponseState> response,
                   uint64_t seq)
      : conn_(std::move(conn)), response_(std::move(response)), seq_(seq) {}

  ~ConnectionWriter() override {
    switch (stage_.load()) {
      case Stage::kNone:
        BATON_LOG_ERROR("http: a handler dropped its writer without responding; answering 500");
        post([seq = seq_](Connection& c) {
          c.respond(seq, 500, "application/json",
                    error_body(internal_error("the handler did not produce a response")), {});
        });
        break;
      case Stage::kStreaming:
        // Ending the stream cleanly would pass a truncated body off as complete.
        post([seq = seq_](Connection& c) { c.abort(seq); });
        break;
      default:
        break;
    }
  }

  void send(int status, std::string content_type, std::string body, Headers extra) override {
    if (!advance(Stage::kNone, Stage::kSent)) {
      BATON_LOG_WARN("http: send() after the response was started; ignored");
      return;
    }
    post([seq = seq_, status, ct = std::move(content_type), body = std::move(body),
          extra = std::move(extra)](Connection& c) mutable {
      c.respond(seq, status, ct, std::move(body), extra);
    });
  }

  bool start_stream(int status, std::string content_type, Headers extra) override {
    if (response_->closed.load() || !advance(Stage::kNone, Stage::kStreaming)) return false;
    post([seq = seq_, status, ct = std::move(content_type),
          extra = std::move(extra)](Connection& c) { c.start_stream(seq, status, ct, extra); });
    return true;
  }

  bool write(std::string chunk) override {
    if (stage_.load() != Stage::kStreaming || response_->closed.load()) return false;
    if (chunk.empty()) return true;
    size_t size = chunk.size();
    if (response_->backlog.fetch_add(size) + size > conn_->max_backlog()) {
      BATON_LOG_WARN("http: output backlog over {} bytes; closing the connection",
                     conn_->max_backlog());
      response_->closed.store(true);
      post([seq = seq_](Connection& c) { c.abort(seq); });
      return false;
    }
    post([seq = seq_, chunk = std::move(chunk)](Connection& c) mutable {
      c.write_chunk(seq, std::move(chunk));
    });
    return true;
  }

  void end_stream() override {
    if (!advance(Stage::kStreaming, Stage::kEnded)) return;
    post([seq = seq_](Connection& c) { c.end_stream(seq); });
  }

  bool closed() const override { return response_->closed.load(); }

  void on_close(std::function<void()> cb) override {
    if (cb) response_->add_hook(std::move(cb));
  }

 private:
  enum class Stage { kNone, kSent, kStreaming, kEnded };

  bool advance(Stage from, Stage to) { return stage_.compare_exchange_strong(from, to); }

  template <typename Fn>
  void post(Fn&& fn) {
    conn_->state()->post_unless_stopped(
        conn_->executor(), [conn = conn_, fn = std::forward<Fn>(fn)]() mutable { fn(*conn); });
  }

  std::shared_ptr<Connection> conn_;
  std::shared_ptr<ResponseState> response_;
  uint64_t seq_;
  std::atomic<Stage> stage_{Stage::kNone};
};

std::shared_ptr<ResponseWriter> Connection::make_writer() {
  return std::make_shared<ConnectionWriter>(shared_from_this(), response_, seq_);
}

std::shared_ptr<Connection> make_connection(std::shared_ptr<ServerState> state, tcp::socket socket,
                                            uint64_t id, bool counted) {
  return std::make_shared<Connection>(std::move(state), std::move(socket), id, counted);
}

void start_connection(const std::shared_ptr<Connection>& conn, Refusal refusal) {
  net::post(conn->executor(), [conn, refusal] {
    if (refusal != Refusal::kNone) {
      conn->start_rejected(refusal);
    } else {
      conn->start();
    }
  });
}

void close_connection(const std::shared_ptr<Connection>& conn) {
  net::post(conn->executor(), [conn] { conn->close_now(); });
}

}  // namespace baton::protocol::detail
