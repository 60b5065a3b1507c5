// The internal P/D routes of an instance (protocol/pd.h): a decode instance
// reserves KV room and streams the client's response; a prefill instance
// runs prompts prefill-only, sends the first tokens and the KV to the decode
// instance, and reports to the coordinator.
//
// Threads: HTTP I/O threads parse and answer at once; anything that may
// block (a reservation waiting for the engine thread, a POST to the decode
// instance) runs on the worker pool; transfers end on the transport's thread
// through its finished callback; leases are checked by the output pump.

#include <algorithm>
#include <random>

#include "protocol/http_client.h"
#include "server/instance_server_impl.h"

#if BATON_HAVE_CUDA
#include "kvtransfer/cuda_ipc/cuda_ipc_transport.h"
#include "kvtransfer/cuda_ipc/device_memory.h"
#endif

namespace baton::server {

namespace pd = protocol::pd;

namespace {

// Constant-time comparison, so the token cannot be guessed byte by byte.
bool same_secret(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

const std::string* header(const protocol::HttpRequest& req, std::string_view name) {
  for (const auto& [k, v] : req.headers) {
    if (protocol::iequals(k, name)) return &v;
  }
  return nullptr;
}

Result<std::pair<std::string, uint16_t>> split_address(const std::string& a) {
  const auto colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return invalid_argument("decode_address: must be host:port, got \"" + a + "\"");
  }
  int port = 0;
  try {
    port = std::stoi(a.substr(colon + 1));
  } catch (...) {
    port = 0;
  }
  if (port <= 0 || port > 65535) {
    return invalid_argument("decode_address: bad port in \"" + a + "\"");
  }
  std::string host = a.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, static_cast<uint16_t>(port));
}

engine::FinishReason finish_from_name(const std::string& name) {
  if (name == "stop") return engine::FinishReason::kStop;
  if (name == "length") return engine::FinishReason::kLength;
  return engine::FinishReason::kNone;
}

std::string_view finish_name(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kStop:
      return "stop";
    case engine::FinishReason::kLength:
      return "length";
    default:
      return "";
  }
}

uint64_t random_u64() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng();
}

}  // namespace

// ---- lifecycle -------------------------------------------------------------

Status InstanceServer::Impl::start_pd() {
  const PdOptions& o = options_.pd;
  auto& m = metrics_;
  role_ = o.role;
  for (Role r : {Role::kMixed, Role::kPrefill, Role::kDecode}) {
    role_gauges_[r] =
        &m.gauge("baton:instance_role", "1 for the instance's role, 0 for the others.",
                 {{"role", std::string(role_name(r))}});
    role_gauges_[r]->set(r == o.role ? 1 : 0);
  }
  breakdown_ = &m.histogram_family("baton:pd_ttft_breakdown_seconds",
                                   "Time to first token of disaggregated requests by phase: queue "
                                   "and prefill on the prefill instance, transfer (first tokens "
                                   "to KV landed) and first_decode on the decode instance.",
                                   kLatencyBuckets, {"phase"});
  prefill_ttft_ = &m.histogram("baton:prefill_time_to_first_token_seconds",
                               "Prefill instances: time from a request's arrival to its first "
                               "token (queue and prefill), per prompt.",
                               kLatencyBuckets);
  transfer_time_ =
      &m.histogram("baton:kv_transfer_seconds",
                   "KV sends, submitted to verified by the decode instance.", kLatencyBuckets);
  transfer_bytes_ = &m.counter("baton:kv_transfer_bytes_total", "KV bytes sent or received.");
  pd_outcomes_ = &m.counter_family("baton:pd_requests_total", "P/D requests by side and outcome.",
                                   {"side", "outcome"});
  // Without a token a mixed instance has no internal routes at all; with one
  // it can take either P/D role later (POST /internal/role).
  if (o.role == Role::kMixed && o.cluster_token.empty()) return Status::ok();
  if (o.cluster_token.empty()) {
    return invalid_argument("cluster_token: the " + std::string(role_name(o.role)) +
                            " role needs a cluster token (--cluster-token or "
                            "BATON_CLUSTER_TOKEN)");
  }
  workers_ = std::make_unique<ThreadPool>(std::max(1, o.worker_threads),
                                          static_cast<size_t>(std::max(1, o.worker_queue)));
  if (o.kv_transport == "tcp") {
    kvtransfer::TcpTransportOptions to;
    to.host = o.kv_host;
    to.port = o.kv_port;
    BATON_ASSIGN_OR_RETURN(auto tcp, kvtransfer::TcpTransport::create(to));
    kv_endpoint_ = tcp->endpoint();
    transport_ = std::move(tcp);
  } else if (o.kv_transport == "cuda-ipc") {
#if BATON_HAVE_CUDA
    kvtransfer::CudaIpcTransportOptions co;
    co.device = o.kv_device;
    co.host = o.kv_host;
    co.port = o.kv_port;
    BATON_ASSIGN_OR_RETURN(auto ipc, kvtransfer::CudaIpcTransport::create(co));
    kv_endpoint_ = ipc->endpoint();
    transport_ = std::move(ipc);
    staging_used_ = &m.gauge("baton:kv_staging_used_bytes",
                             "Bytes of the device KV staging area held by transfers.");
#else
    return unavailable("kv_transport cuda-ipc: this build has no CUDA");
#endif
  } else {
    return invalid_argument("kv_transport: '" + o.kv_transport + "' is neither tcp nor cuda-ipc");
  }
  transport_->set_on_finished(
      [this](kvtransfer::TransferId id, const kvtransfer::TransferState& st) {
        on_transfer_finished(id, st);
      });
  return Status::ok();
}

void InstanceServer::Impl::stop_pd() {
  if (workers_) (void)workers_->shutdown(Clock::now() + std::chrono::seconds(5));
  if (transport_) transport_->set_on_finished(nullptr);
  transport_.reset();  // fails what is still in flight
  workers_.reset();
  // Nothing reads or writes the staging area once the engine and the
  // transport are stopped.
  staging_.reset();
  staging_memory_.reset();
}

Status InstanceServer::Impl::start_staging(const engine::Engine& e) {
  if (!transport_ || options_.pd.kv_transport != "cuda-ipc") return Status::ok();
#if BATON_HAVE_CUDA
  const uint64_t per_request =
      static_cast<uint64_t>(e.max_model_len()) * static_cast<uint64_t>(e.kv_bytes_per_token());
  uint64_t bytes = options_.pd.kv_staging_bytes;
  if (bytes == 0) bytes = std::max(per_request, std::min(4 * per_request, uint64_t{2} << 30));
  BATON_ASSIGN_OR_RETURN(std::shared_ptr<kvtransfer::DeviceMemory> memory,
                         kvtransfer::DeviceMemory::allocate(options_.pd.kv_device, bytes));
  BATON_ASSIGN_OR_RETURN(staging_handle_, transport_->register_memory(memory->data(), bytes));
  staging_ = std::make_unique<engine::KvStagingArena>(memory->data(), bytes);
  staging_memory_ = std::move(memory);
  BATON_LOG_INFO("KV staging area: {} MiB on GPU {} (cuda-ipc)", bytes >> 20,
                 options_.pd.kv_device);
  return Status::ok();
#else
  (void)e;
  return unavailable("kv_transport cuda-ipc: this build has no CUDA");
#endif
}

uint64_t InstanceServer::Impl::kv_payload_bytes(const engine::KvBuffer& kv) {
  return kv.device.data ? kv.device.bytes : kv.bytes.size();
}

void InstanceServer::Impl::release_memory(kvtransfer::MemoryHandle memory) {
  if (memory.value == 0 || memory == staging_handle_) return;
  (void)transport_->deregister_memory(memory);
}

Result<std::pair<engine::KvDeviceSlice, uint64_t>> InstanceServer::Impl::take_staging(
    uint64_t bytes) {
  BATON_ASSIGN_OR_RETURN(engine::KvDeviceSlice slice, staging_->take(bytes));
  const uint64_t offset = static_cast<uint64_t>(static_cast<std::byte*>(slice.data) -
                                                static_cast<std::byte*>(staging_->base()));
  return std::make_pair(std::move(slice), offset);
}

void InstanceServer::Impl::send_no_room(protocol::ResponseWriter& w, bool staging,
                                        std::string_view side) {
  const std::string reason = staging ? "kv_staging_full" : "kv_full";
  auto body = protocol::error_object(unavailable(
      staging ? "The " + std::string(side) +
                    " instance's KV staging area (--kv-staging-mb) has no room for this request "
                    "now"
              : "The " + std::string(side) + " instance has no KV room for this request now"));
  body["error"]["code"] = reason;
  w.send(503, "application/json", body.dump(),
         {{"Retry-After", "1"}, {"x-baton-reject-reason", reason}});
}

pd::KvShape InstanceServer::Impl::kv_shape() const {
  const auto& mc = engine_->model_config();
  pd::KvShape k;
  k.num_layers = mc.num_hidden_layers;
  k.num_kv_heads = mc.num_key_value_heads;
  k.head_dim = mc.head_dim;
  k.dtype_size = static_cast<int64_t>(engine_->kv_bytes_per_token()) /
                 (2 * mc.num_hidden_layers * mc.kv_size());
  return k;
}

// ---- routing ---------------------------------------------------------------

void InstanceServer::Impl::handle_internal(const protocol::HttpRequest& req,
                                           std::shared_ptr<protocol::ResponseWriter> w) {
  const Role role = role_.load();
  const std::string& path = req.path;
  const bool known = path == pd::kDecodePath || path == pd::kPrefillPath ||
                     path == pd::kFirstTokenPath || path == pd::kAbortPath || path == pd::kRolePath;
  if (!known || options_.pd.cluster_token.empty()) {
    return w->send_error(not_found("path: no route for " + path));
  }
  const std::string* token = header(req, pd::kTokenHeader);
  if (token == nullptr) {
    return w->send_error(
        Status(StatusCode::kUnauthenticated, "internal routes need the cluster token header"));
  }
  if (!same_secret(*token, options_.pd.cluster_token)) {
    return w->send_error(Status(StatusCode::kPermissionDenied, "wrong cluster token"));
  }
  if (path == pd::kRolePath) return role_route(req, *w);
  if (req.method != "POST") {
    return w->send_error(405, "method " + req.method + " is not allowed on " + path,
                         "method_not_allowed");
  }
  if (!ready_.load()) {
    return w->send(503, "application/json",
                   protocol::error_body(unavailable("model: not loaded yet")),
                   {{"Retry-After", "1"}});
  }
  if (draining() && (path == pd::kDecodePath || path == pd::kPrefillPath)) {
    return send_changing_role(*w);
  }
  const bool decode_path = path == pd::kDecodePath || path == pd::kFirstTokenPath;
  if ((decode_path && role != Role::kDecode) ||
      (path == pd::kPrefillPath && role != Role::kPrefill)) {
    // A cheap, explicit refusal the coordinator forwards on (its view of the
    // roles is stale, e.g. after a role change).
    auto body = protocol::error_object(
        unavailable("this instance's role is " + std::string(role_name(role))));
    body["error"]["code"] = "wrong_role";
    return w->send(503, "application/json", body.dump(),
                   {{"Retry-After", "1"}, {"x-baton-reject-reason", "wrong_role"}});
  }
  if (path == pd::kAbortPath) return abort_route(req, *w);
  if (path == pd::kFirstTokenPath) return first_token_route(req, *w);
  if (path == pd::kPrefillPath) return prefill_route(req, std::move(w));

  auto body = protocol::parse_json_object(req.body);
  if (!body.is_ok()) return w->send_error(body.status());
  auto dr = pd::parse_decode_request(*body);
  if (!dr.is_ok()) return w->send_error(dr.status());
  if (dr->lease_ms > options_.pd.max_lease_ms) dr->lease_ms = options_.pd.max_lease_ms;
  // Reserving waits for the engine thread: not on an I/O thread.
  auto job = [this, dr = std::move(*dr), w]() mutable { decode_route(std::move(dr), w); };
  Status queued = workers_->submit(std::move(job));
  if (!queued.is_ok()) {
    w->send(503, "application/json", protocol::error_body(unavailable("decode instance is busy")),
            {{"Retry-After", "1"}});
  }
}

// ---- decode side -----------------------------------------------------------

void InstanceServer::Impl::decode_route(pd::DecodeRequest dr,
                                        std::shared_ptr<protocol::ResponseWriter> w) {
  const bool chat = dr.api == pd::Api::kChatCompletions;
  Result<PreparedRequest> prepared = prepare(chat, dr.body.dump());
  if (!prepared.is_ok()) return w->send_error(prepared.status());
  auto call = new_call(std::move(*prepared), chat, w);
  call->pd = true;
  std::weak_ptr<Call> weak = call;
  const auto lease = Clock::now() + std::chrono::milliseconds(dr.lease_ms);

  pd::Ticket ticket;
  ticket.kv_endpoint = kv_endpoint_;
  ticket.kv_shape = kv_shape();
  ticket.lease_ms = dr.lease_ms;
  Status failed;
  bool staging_full = false;
  for (auto& p : call->req.prompts) {
    if (!p.params.seed) p.params.seed = random_u64() >> 1;
    pd::TicketEntry entry;
    entry.prompt_token_ids = p.prompt;
    entry.seed = *p.params.seed;
    p.on_ready = [this, weak] {
      if (auto c = weak.lock()) notify(c);
    };
    auto h = engine_->reserve_import(
        std::move(p), Clock::now() + std::chrono::milliseconds(options_.pd.reserve_timeout_ms));
    if (!h.is_ok()) {
      failed = h.status();
      break;
    }
    call->streams.push_back(h->stream);
    entry.cached_tokens = h->cached_tokens;
    entry.transfer_id = (id_base_ ^ (next_transfer_.fetch_add(1) * 0x9E3779B97F4A7C15ull)) | 1;
    PendingImport imp;
    imp.request = h->id;
    imp.call = weak;
    imp.lease_deadline = lease;
    if (h->kv_bytes > 0) {
      imp.buffer = std::make_shared<engine::KvBuffer>();
      imp.buffer->first_token = h->cached_tokens;
      imp.buffer->num_tokens = h->prompt_tokens - h->cached_tokens;
      if (staging_) {
        // The KV lands in a slice of the registered staging area.
        auto slice = take_staging(h->kv_bytes);
        if (!slice.is_ok()) {
          engine_->cancel(h->id);
          failed = slice.status();
          staging_full = failed.code() == StatusCode::kResourceExhausted;
          break;
        }
        imp.buffer->device = std::move(slice->first);
        imp.memory = staging_handle_;
        imp.offset = slice->second;
      } else {
        imp.buffer->bytes.resize(h->kv_bytes);
        auto mem = transport_->register_memory(imp.buffer->bytes.data(), h->kv_bytes);
        if (!mem.is_ok()) {
          engine_->cancel(h->id);
          failed = mem.status();
          break;
        }
        imp.memory = *mem;
      }
    }
    {
      std::lock_guard lock(pd_mu_);
      imports_[entry.transfer_id] = std::move(imp);
    }
    call->transfer_ids.push_back(entry.transfer_id);
    if (h->kv_bytes > 0) {
      PendingImport* pi = nullptr;
      std::lock_guard lock(pd_mu_);
      pi = &imports_[entry.transfer_id];
      auto rx = transport_->submit_receive(
          entry.transfer_id, kvtransfer::MemorySlice{pi->memory, pi->offset, h->kv_bytes},
          Deadline(lease));
      if (!rx.is_ok()) {
        failed = rx.status();
        break;
      }
      pi->receive = *rx;
      import_of_receive_[rx->value] = entry.transfer_id;
    }
    ticket.entries.push_back(std::move(entry));
  }
  if (!failed.is_ok()) {
    for (auto& s : call->streams) engine_->cancel(s->id());
    end_imports(*call);
    {
      std::lock_guard lock(active_mu_);
      active_.erase(call.get());
    }
    pd_outcomes_->with({"decode", "refused"}).inc();
    if (failed.code() == StatusCode::kResourceExhausted) {
      rejected_->with({staging_full ? "kv_staging_full" : "kv_full"}).inc();
      send_no_room(*w, staging_full, "decode");
    } else {
      w->send_error(failed);
    }
    return;
  }
  w->start_stream(200, std::string(protocol::kSseContentType),
                  {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
  w->write(protocol::sse_event(pd::kEventTicket, pd::to_json(ticket).dump()));
  start_output(call);
}

void InstanceServer::Impl::first_token_route(const protocol::HttpRequest& req,
                                             protocol::ResponseWriter& w) {
  auto body = protocol::parse_json_object(req.body);
  if (!body.is_ok()) return w.send_error(body.status());
  auto ft = pd::parse_first_tokens(*body);
  if (!ft.is_ok()) return w.send_error(ft.status());
  engine::RequestId request = 0;
  std::shared_ptr<Call> call;
  bool cancel_receive = false;
  std::optional<kvtransfer::TransferId> receive;
  {
    std::lock_guard lock(pd_mu_);
    auto it = imports_.find(ft->transfer_id);
    if (it == imports_.end()) {
      return w.send_error(not_found("transfer_id: no reservation " +
                                    std::to_string(ft->transfer_id) + " (ended or expired)"));
    }
    if (it->second.first_tokens) {
      return w.send_error(Status(StatusCode::kConflict, "first tokens already delivered"));
    }
    it->second.first_tokens = true;
    request = it->second.request;
    call = it->second.call.lock();
    if (!ft->kv_follows && it->second.receive && !it->second.landed) {
      cancel_receive = true;
      receive = it->second.receive;
      it->second.landed = true;  // nothing more is expected: no lease to enforce
    }
  }
  if (call) {
    std::lock_guard lock(call->pd_mu);
    call->first_tokens_at = Clock::now();
    call->prefill_queue_s = ft->queue_s;
    call->prefill_s = ft->prefill_s;
  }
  std::vector<engine::FirstTokenIn> tokens;
  for (const auto& t : ft->tokens) {
    engine::FirstTokenIn in;
    in.seq_index = t.seq_index;
    in.sample.token = t.token;
    in.sample.logprob = t.logprob;
    for (const auto& [id, lp] : t.top_logprobs) in.sample.top_logprobs.push_back({id, lp});
    in.finish = finish_from_name(t.finish_reason);
    tokens.push_back(std::move(in));
  }
  engine_->deliver_first_tokens(request, std::move(tokens));
  if (cancel_receive && receive) (void)transport_->cancel(*receive);
  w.send(200, "application/json", "{}");
}

void InstanceServer::Impl::abort_route(const protocol::HttpRequest& req,
                                       protocol::ResponseWriter& w) {
  auto body = protocol::parse_json_object(req.body);
  if (!body.is_ok()) return w.send_error(body.status());
  auto ab = pd::parse_abort_request(*body);
  if (!ab.is_ok()) return w.send_error(ab.status());
  const std::string why = ab->reason.empty() ? "no reason given" : ab->reason;
  // A transfer id is either a reservation here (decode side) or a prefill
  // here (prefill side); an instance that changed role may hold both kinds.
  std::shared_ptr<Call> call;
  engine::RequestId request = 0;
  std::shared_ptr<PrefillCall> prefill;
  {
    std::lock_guard lock(pd_mu_);
    auto it = imports_.find(ab->transfer_id);
    if (it != imports_.end()) {
      call = it->second.call.lock();
      request = it->second.request;
    }
    auto pt = prefills_.find(ab->transfer_id);
    if (pt != prefills_.end()) prefill = pt->second;
  }
  if (request == 0 && !prefill) {
    return w.send_error(
        not_found("transfer_id: no reservation or prefill " + std::to_string(ab->transfer_id)));
  }
  if (request != 0) {
    if (call) call->fail(Status(StatusCode::kBadGateway, "the request was aborted: " + why));
    engine_->cancel(request);
  }
  if (prefill) {
    cancel_prefill(*prefill);
    end_prefill(*prefill, Status(StatusCode::kCancelled, "aborted by the decode side: " + why));
  }
  w.send(200, "application/json", "{}");
}

void InstanceServer::Impl::end_imports(Call& call) {
  std::vector<kvtransfer::TransferId> cancel;
  std::vector<kvtransfer::MemoryHandle> deregister;
  {
    std::lock_guard lock(pd_mu_);
    for (uint64_t id : call.transfer_ids) {
      auto it = imports_.find(id);
      if (it == imports_.end()) continue;
      PendingImport& imp = it->second;
      if (imp.receive) {
        // The transport may be writing into the buffer right now: it stays
        // alive (and registered) until the cancelled receive reports its end
        // through on_transfer_finished.
        import_of_receive_.erase(imp.receive->value);
        draining_receives_[imp.receive->value] = {std::move(imp.buffer), imp.memory};
        cancel.push_back(*imp.receive);
      } else if (imp.memory.value != 0) {
        deregister.push_back(imp.memory);
      }
      imports_.erase(it);
    }
  }
  for (auto rx : cancel) (void)transport_->cancel(rx);
  for (auto mem : deregister) release_memory(mem);
}

void InstanceServer::Impl::observe_breakdown(Call& call) {
  std::lock_guard lock(call.pd_mu);
  if (call.prefill_queue_s >= 0) breakdown_->with({"queue"}).observe(call.prefill_queue_s);
  if (call.prefill_s >= 0) breakdown_->with({"prefill"}).observe(call.prefill_s);
  if (call.first_tokens_at && call.kv_landed_at) {
    breakdown_->with({"transfer"})
        .observe(std::max(0.0, secs(*call.kv_landed_at - *call.first_tokens_at)));
  }
  if (call.kv_landed_at && call.decoded_after_import_at) {
    breakdown_->with({"first_decode"})
        .observe(secs(*call.decoded_after_import_at - *call.kv_landed_at));
  }
  pd_outcomes_->with({"decode", call.failure.is_ok() ? "ok" : "failed"}).inc();
}

void InstanceServer::Impl::expire_leases() {
  // The pump calls this after every output event; leases are checked at most
  // every 50 ms, which is far finer than any lease.
  const auto now = Clock::now();
  if (now < next_lease_check_) return;
  next_lease_check_ = now + std::chrono::milliseconds(50);
  std::vector<std::pair<engine::RequestId, std::shared_ptr<Call>>> expired;
  {
    std::lock_guard lock(pd_mu_);
    for (auto& [id, imp] : imports_) {
      const bool waiting = !imp.first_tokens || (imp.receive && !imp.landed);
      if (!waiting || now < imp.lease_deadline || imp.request == 0) continue;
      expired.emplace_back(imp.request, imp.call.lock());
      imp.request = 0;  // reported once
    }
  }
  for (auto& [request, call] : expired) {
    if (call) {
      auto body = Status(StatusCode::kDeadlineExceeded,
                         "kv_lease_expired: the prefill side did not deliver the first tokens "
                         "and KV within the reservation's lease");
      call->fail(body);
    }
    engine_->cancel(request);
  }
}

void InstanceServer::Impl::on_transfer_finished(kvtransfer::TransferId id,
                                                const kvtransfer::TransferState& st) {
  // Decode side: a receive whose request already ended; its buffer can go.
  {
    std::unique_lock lock(pd_mu_);
    auto d = draining_receives_.find(id.value);
    if (d != draining_receives_.end()) {
      auto [buffer, memory] = std::move(d->second);
      draining_receives_.erase(d);
      lock.unlock();
      transport_->release(id);
      release_memory(memory);
      return;  // buffer freed here, after the transport let go of it
    }
  }
  // Decode side: a receive.
  std::shared_ptr<engine::KvBuffer> landed;
  engine::RequestId request = 0;
  std::shared_ptr<Call> call;
  kvtransfer::MemoryHandle memory;
  {
    std::lock_guard lock(pd_mu_);
    auto r = import_of_receive_.find(id.value);
    if (r != import_of_receive_.end()) {
      auto it = imports_.find(r->second);
      import_of_receive_.erase(r);
      if (it != imports_.end()) {
        PendingImport& imp = it->second;
        imp.receive.reset();
        call = imp.call.lock();
        request = imp.request;
        memory = imp.memory;
        imp.memory = {};
        if (st.done()) {
          imp.landed = true;
          landed = std::move(imp.buffer);
        }
      }
    }
  }
  if (memory.value != 0) {
    transport_->release(id);
    release_memory(memory);
    if (st.done() && landed) {
      transfer_bytes_->inc(static_cast<double>(kv_payload_bytes(*landed)));
      if (call) {
        std::lock_guard lock(call->pd_mu);
        call->kv_landed_at = Clock::now();
      }
      engine_->import_kv(request, std::move(landed));
    } else if (request != 0) {
      if (call) {
        if (st.status.code() == StatusCode::kDeadlineExceeded) {
          call->fail(Status(StatusCode::kDeadlineExceeded,
                            "kv_lease_expired: the KV did not arrive within the reservation's "
                            "lease"));
        } else {
          call->fail(
              Status(st.status.code() == StatusCode::kCancelled ? StatusCode::kBadGateway
                                                                : st.status.code(),
                     "KV transfer from the prefill instance failed: " + st.status.message()));
        }
      }
      engine_->cancel(request);
    }
    return;
  }

  // Prefill side: a send.
  PendingSend send;
  {
    std::lock_guard lock(pd_mu_);
    auto it = sends_.find(id.value);
    if (it == sends_.end()) return;
    send = std::move(it->second);
    sends_.erase(it);
  }
  transport_->release(id);
  release_memory(send.memory);
  auto pc = send.call.lock();
  const double took = secs(Clock::now() - send.started);
  if (st.done()) {
    transfer_time_->observe(took);
    transfer_bytes_->inc(static_cast<double>(kv_payload_bytes(*send.kv)));
  }
  send.kv.reset();
  if (!pc) return;
  if (!st.done()) {
    // The decode side will not get this request's KV: tell it, and the
    // coordinator.
    pd::AbortRequest ab{send.transfer_id, "KV send failed: " + st.status.message()};
    post_to_decode(pc->req.decode_address, pd::kAbortPath, pd::to_json(ab).dump());
    cancel_prefill(*pc);
    end_prefill(*pc, Status(st.status.code(), "KV send failed: " + st.status.message()));
    return;
  }
  bool all_done = false;
  {
    std::lock_guard lock(pc->mu);
    pc->transfer_s = std::max(pc->transfer_s, took);
    --pc->sends_pending;
    all_done =
        pc->sends_pending == 0 && pc->prompts_reported == static_cast<int32_t>(pc->streams.size());
  }
  if (all_done) end_prefill(*pc, Status::ok());
}

// ---- prefill side ------------------------------------------------------------

void InstanceServer::Impl::prefill_route(const protocol::HttpRequest& req,
                                         std::shared_ptr<protocol::ResponseWriter> w) {
  auto body = protocol::parse_json_object(req.body);
  if (!body.is_ok()) return w->send_error(body.status());
  auto pr = pd::parse_prefill_request(*body);
  if (!pr.is_ok()) return w->send_error(pr.status());
  if (!(pr->ticket.kv_shape == kv_shape())) {
    return w->send_error(invalid_argument(
        "ticket.kv_shape: the decode instance's KV shape " +
        pd::to_json(pr->ticket.kv_shape).dump() + " differs from this instance's " +
        pd::to_json(kv_shape()).dump() + " (not the same model?)"));
  }
  if (auto a = split_address(pr->decode_address); !a.is_ok()) return w->send_error(a.status());
  Result<PreparedRequest> prepared = prepare(pr->api == pd::Api::kChatCompletions, pr->body.dump());
  if (!prepared.is_ok()) return w->send_error(prepared.status());
  if (prepared->prompts.size() != pr->ticket.entries.size()) {
    return w->send_error(
        invalid_argument("ticket.entries: " + std::to_string(pr->ticket.entries.size()) +
                         " entries for " + std::to_string(prepared->prompts.size()) + " prompts"));
  }
  int64_t prompt_tokens = 0;
  for (size_t i = 0; i < prepared->prompts.size(); ++i) {
    const pd::TicketEntry& e = pr->ticket.entries[i];
    engine::EngineRequest& p = prepared->prompts[i];
    p.prompt = e.prompt_token_ids;
    p.params.seed = e.seed;
    p.prefill_only = true;
    p.export_from_token = e.cached_tokens;
    prepared->prompt_tokens[i] = static_cast<int32_t>(e.prompt_token_ids.size());
    const int64_t export_tokens = static_cast<int64_t>(e.prompt_token_ids.size()) - e.cached_tokens;
    if (staging_ && export_tokens > 0) {
      // The KV is gathered straight into a slice of the staging area, taken
      // now so that a full area is a refusal before any work.
      auto slice = take_staging(static_cast<uint64_t>(export_tokens) *
                                static_cast<uint64_t>(engine_->kv_bytes_per_token()));
      if (!slice.is_ok()) {
        if (slice.status().code() != StatusCode::kResourceExhausted) {
          return w->send_error(slice.status());
        }
        rejected_->with({"kv_staging_full"}).inc();
        pd_outcomes_->with({"prefill", "rejected"}).inc();
        return send_no_room(*w, true, "prefill");
      }
      p.export_to = std::move(slice->first);
    }
    prompt_tokens += export_tokens;
  }

  // On-demand forwarding: answer at once whether this instance can start the
  // prompt in time.
  AdmissionDecision d = admission_.try_admit(prompt_tokens);
  if (!d.admitted()) {
    const std::string reason(reject_reason_name(d.reason));
    rejected_->with({reason}).inc();
    pd_outcomes_->with({"prefill", "rejected"}).inc();
    Status s(d.reason == RejectReason::kTooManyRequests ? StatusCode::kResourceExhausted
                                                        : StatusCode::kUnavailable,
             "The prefill instance cannot start this request in time (" + reason + ")");
    auto eb = protocol::error_object(s);
    eb["error"]["code"] = reason;
    return w->send(s.http(), "application/json", eb.dump(),
                   {{"Retry-After", std::to_string(d.retry_after_s)},
                    {"x-baton-reject-reason", reason},
                    {"x-baton-admit-after-ms", std::to_string(d.admit_after_ms)}});
  }

  auto call = std::make_shared<PrefillCall>();
  call->writer = w;
  call->arrival = Clock::now();
  call->lease_deadline = call->arrival + std::chrono::milliseconds(pr->ticket.lease_ms);
  call->req = std::move(*pr);
  call->stream_done.assign(prepared->prompts.size(), false);
  call->firsts.resize(prepared->prompts.size());
  call->queue_s.assign(prepared->prompts.size(), 0.0);
  call->prepared.prompt_tokens = prepared->prompt_tokens;
  call->prepared.n = prepared->n;
  {
    std::lock_guard lock(pd_mu_);
    for (const auto& e : call->req.ticket.entries) prefills_[e.transfer_id] = call;
  }
  std::weak_ptr<PrefillCall> weak = call;
  for (auto& p : prepared->prompts) {
    p.on_ready = [this, weak] {
      if (auto c = weak.lock()) notify_prefill(c);
    };
    auto s = engine_->submit(std::move(p));
    if (!s.is_ok()) {
      for (auto& st : call->streams) engine_->cancel(st->id());
      admission_.finished(prompt_tokens, false);
      {
        std::lock_guard lock(pd_mu_);
        for (const auto& e : call->req.ticket.entries) prefills_.erase(e.transfer_id);
      }
      call->ended = true;
      return w->send_error(s.status());
    }
    call->streams.push_back(*s);
  }
  w->start_stream(200, std::string(protocol::kSseContentType),
                  {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
  w->write(protocol::sse_event(pd::kEventAccepted, "{}"));
  w->on_close([this, weak] {
    if (auto c = weak.lock()) {
      c->client_gone.store(true);
      cancel_prefill(*c);
    }
  });
  call->submitted.store(true);
  call->queued.store(false);
  notify_prefill(call);
}

void InstanceServer::Impl::notify_prefill(const std::shared_ptr<PrefillCall>& call) {
  if (call->queued.exchange(true)) return;
  Status st = workers_->submit([this, call] { process_prefill(call); });
  if (!st.is_ok()) {
    // The pool is stopping or full; the stream is ended rather than left
    // waiting.
    call->queued.store(false);
    cancel_prefill(*call);
    end_prefill(*call, unavailable("prefill instance is shutting down or overloaded"));
  }
}

void InstanceServer::Impl::process_prefill(const std::shared_ptr<PrefillCall>& call) {
  if (!call->submitted.load()) return;
  // Two workers may hold this call (an event arrived while one was reading);
  // they take turns, and the later one finds what the earlier left.
  std::lock_guard turn(call->processing);
  call->queued.store(false);
  for (size_t p = 0; p < call->streams.size(); ++p) {
    while (!call->stream_done[p]) {
      auto ev = call->streams[p]->next(Clock::now());
      if (!ev.is_ok()) break;
      pd::FirstTokens& ft = call->firsts[p];
      ft.transfer_id = call->req.ticket.entries[p].transfer_id;
      bool aborted = false;
      for (auto& d : ev->deltas) {
        auto it = std::find_if(ft.tokens.begin(), ft.tokens.end(),
                               [&](const pd::FirstToken& t) { return t.seq_index == d.index; });
        if (it == ft.tokens.end() && !d.token_ids.empty()) {
          pd::FirstToken t;
          t.prompt_index = static_cast<int32_t>(p);
          t.seq_index = d.index;
          t.token = d.token_ids[0];
          if (!d.logprobs.empty()) {
            t.logprob = d.logprobs[0].logprob;
            for (const auto& tl : d.logprobs[0].top_logprobs) {
              t.top_logprobs.emplace_back(tl.token, tl.logprob);
            }
          }
          ft.tokens.push_back(std::move(t));
          it = ft.tokens.end() - 1;
        }
        if (d.finish == engine::FinishReason::kAbort) aborted = true;
        if (it != ft.tokens.end() && d.finish != engine::FinishReason::kNone) {
          it->finish_reason = std::string(finish_name(d.finish));
        }
      }
      if (ev->info.queue_time_s >= 0) call->queue_s[p] = ev->info.queue_time_s;
      if (!call->started && !ft.tokens.empty()) {
        call->started = true;
        int64_t total = 0;
        for (int32_t n : call->prepared.prompt_tokens) total += n;
        admission_.started(total);
      }
      if (!ev->done) continue;
      call->stream_done[p] = true;
      if (aborted || ft.tokens.size() != static_cast<size_t>(call->prepared.n)) {
        if (!call->client_gone.load()) {
          pd::AbortRequest ab{ft.transfer_id, "the prefill was aborted"};
          post_to_decode(call->req.decode_address, pd::kAbortPath, pd::to_json(ab).dump());
        }
        cancel_prefill(*call);
        end_prefill(*call, unavailable("the prefill was aborted before its first token"));
        return;
      }
      ft.queue_s = std::max(0.0, call->queue_s[p]);
      ft.prefill_s = std::max(0.0, secs(Clock::now() - call->arrival) - ft.queue_s);
      prefill_ttft_->observe(ft.queue_s + ft.prefill_s);
      ft.kv_follows = ev->info.kv_export != nullptr;
      if (ev->info.kv_export) {
        // Start the KV on its way before the first tokens' message, so the
        // two overlap.
        const auto& kv = ev->info.kv_export;
        const uint64_t kv_bytes = kv_payload_bytes(*kv);
        uint64_t offset = 0;
        Result<kvtransfer::MemoryHandle> mem = staging_handle_;
        if (kv->device.data) {
          // Gathered into its slice of the registered staging area.
          offset = static_cast<uint64_t>(static_cast<const std::byte*>(kv->device.data) -
                                         static_cast<const std::byte*>(staging_->base()));
        } else {
          mem = transport_->register_memory(const_cast<std::byte*>(kv->bytes.data()), kv_bytes);
        }
        Result<kvtransfer::TransferId> tx = mem.status();
        if (mem.is_ok()) {
          std::lock_guard lock(pd_mu_);
          tx = transport_->submit_send(kvtransfer::TransferDesc{
              ft.transfer_id, call->req.ticket.kv_endpoint,
              kvtransfer::MemorySlice{*mem, offset, kv_bytes}, Deadline(call->lease_deadline)});
          if (tx.is_ok()) {
            {
              std::lock_guard l2(call->mu);
              ++call->sends_pending;
              call->sends.push_back(*tx);
              call->kv_bytes += kv_bytes;
            }
            sends_[tx->value] = PendingSend{call, kv, *mem, ft.transfer_id, Clock::now()};
          }
        }
        if (!tx.is_ok()) {
          if (mem.is_ok()) release_memory(*mem);
          pd::AbortRequest ab{ft.transfer_id, "KV send failed: " + tx.status().message()};
          post_to_decode(call->req.decode_address, pd::kAbortPath, pd::to_json(ab).dump());
          cancel_prefill(*call);
          end_prefill(*call, tx.status());
          return;
        }
      }
      report_first_tokens(call, p);
    }
  }
}

void InstanceServer::Impl::report_first_tokens(const std::shared_ptr<PrefillCall>& call,
                                               size_t prompt) {
  const pd::FirstTokens& ft = call->firsts[prompt];
  const std::string msg = pd::to_json(ft).dump();
  // This worker posts it itself: the first token reaches the client through
  // the decode instance, so it is the latency that matters most here.
  auto addr = split_address(call->req.decode_address);
  Status st = addr.status();
  if (addr.is_ok()) {
    thread_local std::unordered_map<std::string, std::unique_ptr<protocol::HttpClient>> clients;
    auto& client = clients[call->req.decode_address];
    if (!client) client = std::make_unique<protocol::HttpClient>(addr->first, addr->second);
    protocol::Headers h{{"Content-Type", "application/json"},
                        {std::string(pd::kTokenHeader), options_.pd.cluster_token}};
    auto r = client->request("POST", pd::kFirstTokenPath, msg, h,
                             protocol::deadline_in(std::chrono::seconds(5)));
    if (!r.is_ok()) {
      st = Status(StatusCode::kBadGateway,
                  "decode instance unreachable for first tokens: " + r.status().message());
    } else if (r->status != 200) {
      st = Status(code_from_http(r->status), "decode instance refused the first tokens (HTTP " +
                                                 std::to_string(r->status) + "): " + r->body);
    }
  }
  if (!st.is_ok()) {
    cancel_prefill(*call);
    end_prefill(*call, st);
    return;
  }
  bool all_done = false;
  {
    std::lock_guard lock(call->mu);
    ++call->prompts_reported;
    if (!call->ended) {
      call->writer->write(protocol::sse_event(pd::kEventFirstToken, msg));
    }
    all_done = call->sends_pending == 0 &&
               call->prompts_reported == static_cast<int32_t>(call->streams.size());
  }
  if (all_done) end_prefill(*call, Status::ok());
}

void InstanceServer::Impl::cancel_prefill(PrefillCall& call) {
  for (auto& s : call.streams) engine_->cancel(s->id());
  std::vector<kvtransfer::TransferId> sends;
  {
    std::lock_guard lock(call.mu);
    sends = call.sends;
  }
  // Each cancelled send ends through on_transfer_finished, which frees it.
  for (auto id : sends) (void)transport_->cancel(id);
}

void InstanceServer::Impl::end_prefill(PrefillCall& call, const Status& status) {
  {
    std::lock_guard lock(call.mu);
    if (call.ended) return;
    call.ended = true;
    if (!call.client_gone.load()) {
      if (status.is_ok()) {
        pd::PrefillDone done{call.kv_bytes, call.transfer_s};
        call.writer->write(protocol::sse_event(pd::kEventDone, pd::to_json(done).dump()));
      } else {
        call.writer->write(protocol::sse_event(pd::kEventError, pd::error_event_data(status)));
      }
      call.writer->end_stream();
    }
  }
  {
    std::lock_guard lock(pd_mu_);
    for (const auto& e : call.req.ticket.entries) prefills_.erase(e.transfer_id);
  }
  int64_t total = 0;
  for (int32_t n : call.prepared.prompt_tokens) total += n;
  admission_.finished(total, call.started);
  pd_outcomes_->with({"prefill", status.is_ok() ? "ok" : "failed"}).inc();
  finish_role_change();  // the last request of a drain switches at once
}

void InstanceServer::Impl::post_to_decode(const std::string& address, std::string_view path,
                                          std::string body) {
  auto job = [this, address, path = std::string(path), body = std::move(body)] {
    auto addr = split_address(address);
    if (!addr.is_ok()) return;
    protocol::Headers h{{"Content-Type", "application/json"},
                        {std::string(pd::kTokenHeader), options_.pd.cluster_token}};
    auto r = protocol::http_request(addr->first, addr->second, "POST", path, body, h,
                                    protocol::deadline_in(std::chrono::seconds(2)));
    if (!r.is_ok()) {
      BATON_LOG_WARN("P/D message to {} failed: {}", address, r.status().to_string());
    }
  };
  if (workers_ && !workers_->submit(std::move(job)).is_ok()) {
    BATON_LOG_WARN("P/D message to {} dropped: worker queue full", address);
  }
}

// ---- role changes ------------------------------------------------------------

void InstanceServer::Impl::send_changing_role(protocol::ResponseWriter& w) {
  auto body = protocol::error_object(
      unavailable("The instance is draining to change its role; retry elsewhere"));
  body["error"]["code"] = "changing_role";
  w.send(503, "application/json", body.dump(),
         {{"Retry-After", "1"}, {"x-baton-reject-reason", "changing_role"}});
}

size_t InstanceServer::Impl::in_flight() {
  size_t n = 0;
  {
    std::lock_guard lock(active_mu_);
    n += active_.size();
  }
  std::lock_guard lock(pd_mu_);
  return n + prefills_.size();
}

std::string InstanceServer::Impl::role_status() const {
  nlohmann::ordered_json j;
  j["role"] = role_name(role_.load());
  std::lock_guard lock(role_mu_);
  if (draining_.load()) {
    j["state"] = "draining";
    j["target"] = role_name(target_role_);
  } else {
    j["state"] = "serving";
  }
  return j.dump();
}

void InstanceServer::Impl::role_route(const protocol::HttpRequest& req,
                                      protocol::ResponseWriter& w) {
  auto with_in_flight = [&](std::string body) {
    auto j = nlohmann::ordered_json::parse(body);
    if (j["state"] == "draining") j["in_flight"] = in_flight();
    return j.dump();
  };
  if (req.method == "GET") return w.send(200, "application/json", with_in_flight(role_status()));
  if (req.method != "POST") {
    return w.send_error(405, "method " + req.method + " is not allowed on " + req.path,
                        "method_not_allowed");
  }
  auto body = protocol::parse_json_object(req.body);
  if (!body.is_ok()) return w.send_error(body.status());
  const auto* role_field =
      body->contains("role") && (*body)["role"].is_string() ? &(*body)["role"] : nullptr;
  if (role_field == nullptr) return w.send_error(invalid_argument("role: required, a string"));
  auto target = parse_role(role_field->get<std::string>());
  if (!target.is_ok()) return w.send_error(target.status());
  int64_t drain_ms = 30000;
  if (body->contains("drain_timeout_ms")) {
    const auto& v = (*body)["drain_timeout_ms"];
    if (!v.is_number_integer() || v.get<int64_t>() < 0) {
      return w.send_error(invalid_argument("drain_timeout_ms: must be a non-negative integer"));
    }
    drain_ms = v.get<int64_t>();
  }
  const std::string reason = body->contains("reason") && (*body)["reason"].is_string()
                                 ? (*body)["reason"].get<std::string>()
                                 : "";
  {
    std::lock_guard lock(role_mu_);
    if (draining_.load()) {
      nlohmann::ordered_json j = {{"role", role_name(role_.load())},
                                  {"state", "draining"},
                                  {"target", role_name(target_role_)}};
      return w.send(409, "application/json", j.dump());
    }
    if (*target == role_.load()) {
      nlohmann::ordered_json j = {{"role", role_name(role_.load())}, {"state", "serving"}};
      return w.send(200, "application/json", j.dump());
    }
    target_role_ = *target;
    drain_deadline_ = Clock::now() + std::chrono::milliseconds(drain_ms);
    draining_.store(true);
  }
  BATON_LOG_INFO("role change {} -> {} started (drain up to {} ms): {}", role_name(role_.load()),
                 role_name(*target), drain_ms, reason);
  w.send(202, "application/json", with_in_flight(role_status()));
  finish_role_change();  // nothing in flight: switch at once
}

void InstanceServer::Impl::finish_role_change() {
  if (!draining_.load()) return;
  const size_t busy = in_flight();
  std::lock_guard lock(role_mu_);
  if (!draining_.load()) return;
  if (busy > 0 && Clock::now() < drain_deadline_) return;
  const Role from = role_.load();
  role_.store(target_role_);
  for (auto& [r, g] : role_gauges_) g->set(r == target_role_ ? 1 : 0);
  draining_.store(false);
  BATON_LOG_INFO("role change {} -> {} done ({} requests still in flight go on)", role_name(from),
                 role_name(target_role_), busy);
  if (options_.on_role_changed) options_.on_role_changed(target_role_);
}

}  // namespace baton::server
