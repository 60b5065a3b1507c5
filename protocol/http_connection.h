#pragma once

// Internal to protocol/: one accepted HTTP connection of HttpServer, and the
// state the server shares with its connections. Not part of the public API
// (http_server.h is); included by http_server.cpp and http_connection.cpp.

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "protocol/http_server.h"

namespace baton::protocol::detail {

class Connection;

// Shared by the server, its connections and writers that outlive them, so the
// io_context lives as long as anything can still post to it.
struct ServerState {
  HttpServerOptions options;
  Handler handler;
  boost::asio::io_context ioc;

  std::mutex mu;
  bool stopped = false;  // once set, nothing new is posted or registered
  uint64_t next_id = 0;
  std::unordered_map<uint64_t, std::weak_ptr<Connection>> connections;
  std::atomic<size_t> active{0};
  // The remote address of each counted connection, kept only with a
  // per-client limit (then client_counts is set).
  std::unordered_map<uint64_t, std::string> client_of;

  template <typename Executor, typename Fn>
  void post_unless_stopped(const Executor& ex, Fn&& fn) {
    std::lock_guard lock(mu);
    if (!stopped) boost::asio::post(ex, std::forward<Fn>(fn));
  }

  void unregister(uint64_t id, bool counted) {
    std::lock_guard lock(mu);
    connections.erase(id);
    if (!counted) return;
    active.fetch_sub(1);
    auto it = client_of.find(id);
    if (it == client_of.end()) return;
    options.client_counts->remove(it->second);
    client_of.erase(it);
  }
};

// A connection for an accepted socket (on a strand of state->ioc), already
// registered by the caller in state->connections. `counted` says whether it
// counts in state->active (it does not when it is refused with 503).
std::shared_ptr<Connection> make_connection(std::shared_ptr<ServerState> state,
                                            boost::asio::ip::tcp::socket socket, uint64_t id,
                                            bool counted);

// Why a new connection is refused, if it is.
enum class Refusal { kNone, kServerFull, kClientFull };

// Posts the connection's start to its strand: reading requests, or when
// refused answering 503 (server full) or 429 (this client has too many
// connections) with Retry-After, and closing. Thread-safe.
void start_connection(const std::shared_ptr<Connection>& conn, Refusal refusal);

// Posts a close to the connection's strand (its on_close hooks fire if a
// response was pending). Thread-safe.
void close_connection(const std::shared_ptr<Connection>& conn);

}  // namespace baton::protocol::detail
