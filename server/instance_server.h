#pragma once

// InstanceServer: one engine behind the OpenAI-compatible HTTP API (what
// `baton serve` runs). The HTTP threads parse, validate, tokenize and admit;
// the engine thread runs the model; one output thread turns engine output
// into JSON and SSE and hands it to the connections. HTTP threads never touch
// engine state: requests go in through Engine::submit, output comes back
// through each request's RequestStream.
//
// Routes: POST /v1/completions, POST /v1/chat/completions, GET /v1/models,
// GET /health (200 only once the model is loaded), GET /metrics (Prometheus),
// POST /tokenize, POST /detokenize. Prefill and decode instances also serve
// the internal P/D routes of protocol/pd.h (cluster token required); the
// public routes stay available on every role.
//
// Thread-safety: start/attach_engine/stop from the owning thread; everything
// else is internal.

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/metrics.h"
#include "common/status.h"
#include "engine/engine.h"
#include "protocol/http_server.h"
#include "protocol/pd.h"
#include "server/admission.h"

namespace baton::server {

using Role = protocol::pd::Role;
using protocol::pd::parse_role;
using protocol::pd::role_name;

struct PdOptions {
  Role role = Role::kMixed;
  // Required on /internal/ routes (x-baton-cluster-token); prefill and decode
  // roles refuse to start without one.
  std::string cluster_token;
  // Where the KV transport listens (decode receives there); port 0 picks one.
  std::string kv_host = "127.0.0.1";
  uint16_t kv_port = 0;
  // What moves the KV: "tcp" (host memory, between any hosts) or "cuda-ipc"
  // (GPU to GPU inside one host, kvtransfer/cuda_ipc; needs an engine on
  // GPU kv_device). cuda-ipc exports and imports go through one device
  // staging area of kv_staging_bytes, registered once; 0: room for four
  // requests of the engine's max_model_len, at most 2 GiB (and at least
  // one). A transfer that finds it full is refused with 503 kv_staging_full.
  std::string kv_transport = "tcp";
  int kv_device = 0;
  uint64_t kv_staging_bytes = 0;
  // Longest lease a decode reservation may ask for.
  int64_t max_lease_ms = 120000;
  // How long a decode instance waits for its engine to reserve KV room.
  int64_t reserve_timeout_ms = 10000;
  // Bound on the internal worker queue (first-token messages, reservations).
  int32_t worker_threads = 4;
  int32_t worker_queue = 1024;
};

struct ServerOptions {
  protocol::HttpServerOptions http;
  AdmissionOptions admission;
  std::string served_model_name;  // the `model` clients send; default: the model's name
  int32_t max_tokens_limit = 0;   // largest max_tokens accepted; 0: the context length
  PdOptions pd;
  // Called once a role change (POST /internal/role) has switched the
  // instance, with its new role; changes are reported in order. It runs on a
  // thread that serves requests, under the role lock: it must not block or
  // call into the server (hand slow work, e.g. an etcd put, to a thread of
  // its own). Empty: nobody is told.
  std::function<void(Role)> on_role_changed;
};

class InstanceServer {
 public:
  // Binds and serves at once; until attach_engine() /health answers 503 and
  // the API answers 503 "not_ready".
  static Result<std::unique_ptr<InstanceServer>> start(ServerOptions options);
  ~InstanceServer();

  // Takes the loaded (not yet started) engine, starts it and becomes ready.
  Status attach_engine(std::unique_ptr<engine::Engine> engine);

  uint16_t port() const;
  // "host:port" of the KV transport (decode role); "" for other roles.
  std::string kv_endpoint() const;
  // Stops accepting, ends every stream, stops the engine. Idempotent.
  void stop();

  class Impl;

 private:
  explicit InstanceServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::server
