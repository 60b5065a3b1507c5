#include "protocol/http_server.h"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <condition_variable>
#include <optional>
#include <thread>
#include <vector>

#include "common/logging.h"
#include "protocol/http_connection.h"
#include "protocol/openai_error.h"

namespace baton::protocol {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using boost::system::error_code;

void ResponseWriter::send_error(const Status& status) {
  send(status.http(), "application/json", error_body(status));
}

void ResponseWriter::send_error(int http_status, std::string_view message, std::string_view code) {
  send(http_status, "application/json",
       error_body(Status(code_from_http(http_status), std::string(message))));
}

bool ClientConnectionCounts::try_add(const std::string& client, int limit) {
  std::lock_guard lock(mu_);
  auto it = counts_.find(client);
  if (it != counts_.end() && it->second >= limit) return false;
  ++counts_[client];
  return true;
}

void ClientConnectionCounts::remove(const std::string& client) {
  std::lock_guard lock(mu_);
  auto it = counts_.find(client);
  if (it != counts_.end() && --it->second <= 0) counts_.erase(it);
}

int ClientConnectionCounts::count(const std::string& client) const {
  std::lock_guard lock(mu_);
  auto it = counts_.find(client);
  return it == counts_.end() ? 0 : it->second;
}

namespace {

// stop() waits this long for the I/O threads to drain before forcing them.
constexpr std::chrono::seconds kStopGrace{5};
constexpr std::chrono::milliseconds kAcceptRetry{50};

}  // namespace

using detail::Connection;
using detail::ServerState;

class HttpServer::Impl {
 public:
  explicit Impl(std::shared_ptr<ServerState> state)
      : state_(std::move(state)),
        acceptor_(net::make_strand(state_->ioc)),
        accept_retry_(acceptor_.get_executor()) {}

  Status listen(const tcp::endpoint& endpoint) {
    error_code ec;
    std::string where = endpoint.address().to_string() + ":" + std::to_string(endpoint.port());
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec && state_->options.reuse_port) {
      acceptor_.set_option(net::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>(true), ec);
    }
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return unavailable("http: cannot listen on " + where + ": " + ec.message());
    port_ = acceptor_.local_endpoint(ec).port();
    return Status::ok();
  }

  void run(int threads) {
    work_.emplace(net::make_work_guard(state_->ioc));
    net::post(acceptor_.get_executor(), [this] { accept(); });
    running_ = threads;
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] {
        try {
          state_->ioc.run();
        } catch (const std::exception& e) {
          BATON_LOG_ERROR("http: I/O thread ended by an exception: {}", e.what());
        }
        std::lock_guard lock(exit_mu_);
        --running_;
        exit_cv_.notify_all();
      });
    }
  }

  void stop() {
    {
      std::lock_guard lock(stop_mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    BATON_CHECK_MSG(!state_->ioc.get_executor().running_in_this_thread(),
                    "HttpServer::stop() called from one of its own I/O threads");
    std::vector<std::shared_ptr<Connection>> conns;
    {
      std::lock_guard lock(state_->mu);
      state_->stopped = true;
      for (auto& [id, weak] : state_->connections) {
        if (auto conn = weak.lock()) conns.push_back(std::move(conn));
      }
    }
    net::post(acceptor_.get_executor(), [this] {
      error_code ignored;
      acceptor_.close(ignored);
      accept_retry_.cancel();
    });
    for (const auto& conn : conns) detail::close_connection(conn);
    conns.clear();
    work_.reset();
    {
      std::unique_lock lock(exit_mu_);
      if (!exit_cv_.wait_for(lock, kStopGrace, [this] { return running_ == 0; })) {
        BATON_LOG_WARN("http: I/O threads still busy {}s after stop; forcing them",
                       kStopGrace.count());
        state_->ioc.stop();
      }
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
    // Run what the forced stop left queued (all of it sees closed sockets), so
    // that no queued handler keeps a connection, and with it the state, alive.
    state_->ioc.restart();
    state_->ioc.poll();
  }

  uint16_t port() const { return port_; }
  size_t active() const { return state_->active.load(); }
  std::shared_ptr<net::io_context> io_context() const { return {state_, &state_->ioc}; }

 private:
  void accept() {
    acceptor_.async_accept(
        net::make_strand(state_->ioc),
        [this](error_code ec, tcp::socket socket) { on_accept(ec, std::move(socket)); });
  }

  void on_accept(error_code ec, tcp::socket socket) {
    if (!acceptor_.is_open()) return;
    if (ec) {
      // Typically out of file descriptors: back off instead of spinning.
      BATON_LOG_WARN("http: accept failed: {}", ec.message());
      accept_retry_.expires_after(kAcceptRetry);
      accept_retry_.async_wait([this](error_code wait_ec) {
        if (!wait_ec) accept();
      });
      return;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const int per_client_limit = state_->options.max_connections_per_client;
    std::string client;
    if (per_client_limit > 0) {
      auto remote = socket.remote_endpoint(ignored);
      if (!ignored) client = remote.address().to_string();
    }
    std::shared_ptr<Connection> conn;
    auto refusal = detail::Refusal::kNone;
    {
      std::lock_guard lock(state_->mu);
      if (state_->stopped) return;
      if (state_->active.load() >= static_cast<size_t>(state_->options.max_connections)) {
        refusal = detail::Refusal::kServerFull;
      } else if (!client.empty() &&
                 !state_->options.client_counts->try_add(client, per_client_limit)) {
        refusal = detail::Refusal::kClientFull;
      }
      const bool counted = refusal == detail::Refusal::kNone;
      uint64_t id = state_->next_id++;
      conn = detail::make_connection(state_, std::move(socket), id, counted);
      state_->connections.emplace(id, conn);
      if (counted) {
        state_->active.fetch_add(1);
        if (!client.empty()) state_->client_of.emplace(id, std::move(client));
      }
    }
    detail::start_connection(conn, refusal);
    accept();
  }

  std::shared_ptr<ServerState> state_;
  tcp::acceptor acceptor_;
  net::steady_timer accept_retry_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::vector<std::thread> threads_;
  uint16_t port_ = 0;

  std::mutex stop_mu_;
  bool stopped_ = false;
  std::mutex exit_mu_;
  std::condition_variable exit_cv_;
  int running_ = 0;
};

Result<std::unique_ptr<HttpServer>> HttpServer::start(HttpServerOptions options, Handler handler) {
  if (!handler) return invalid_argument("http: no handler");
  if (options.io_threads < 1) return invalid_argument("http: io_threads must be at least 1");
  if (options.max_connections < 1) {
    return invalid_argument("http: max_connections must be at least 1");
  }
  if (options.max_connections_per_client < 0) {
    return invalid_argument("http: max_connections_per_client must not be negative");
  }
  if (options.max_connections_per_client > 0 && !options.client_counts) {
    options.client_counts = std::make_shared<ClientConnectionCounts>();
  }
  auto state = std::make_shared<ServerState>();
  state->options = std::move(options);
  state->handler = std::move(handler);
  const auto& opts = state->options;

  error_code ec;
  tcp::resolver resolver(state->ioc);
  auto results = resolver.resolve(opts.host, std::to_string(opts.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty()) {
    return invalid_argument("http: cannot resolve host '" + opts.host + "': " + ec.message());
  }
  auto impl = std::make_unique<Impl>(state);
  BATON_RETURN_IF_ERROR(impl->listen(results.begin()->endpoint()));
  impl->run(opts.io_threads);
  BATON_LOG_INFO("http: listening on {}:{} with {} I/O threads", opts.host, impl->port(),
                 opts.io_threads);
  return std::unique_ptr<HttpServer>(new HttpServer(std::move(impl)));
}

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

HttpServer::~HttpServer() { stop(); }

uint16_t HttpServer::port() const { return impl_->port(); }

void HttpServer::stop() { impl_->stop(); }

size_t HttpServer::active_connections() const { return impl_->active(); }

std::shared_ptr<boost::asio::io_context> HttpServer::io_context() const {
  return impl_->io_context();
}

}  // namespace baton::protocol
