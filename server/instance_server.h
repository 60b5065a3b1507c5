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
// POST /tokenize, POST /detokenize.
//
// Thread-safety: start/attach_engine/stop from the owning thread; everything
// else is internal.

#include <memory>
#include <string>

#include "common/metrics.h"
#include "common/status.h"
#include "engine/engine.h"
#include "protocol/http_server.h"
#include "server/admission.h"

namespace baton::server {

struct ServerOptions {
  protocol::HttpServerOptions http;
  AdmissionOptions admission;
  std::string served_model_name;  // the `model` clients send; default: the model's name
  int32_t max_tokens_limit = 0;   // largest max_tokens accepted; 0: the context length
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
  // Stops accepting, ends every stream, stops the engine. Idempotent.
  void stop();

  class Impl;

 private:
  explicit InstanceServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace baton::server
