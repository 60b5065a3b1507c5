// One client request in P/D mode (protocol/pd.h is the contract):
//
//   decode instance D  <- DecodeRequest; its stream gives the ticket, then the
//                         client's answer, which is relayed as it comes
//   prefill instance P <- PrefillRequest (the same ticket); a 429/503 is P's
//                         own rejection: the ticket goes at once to the next
//                         candidate, within pd.max_prefill_tries and
//                         pd.forward_deadline; P failing before its first
//                         token also moves the ticket on while D's lease lasts
//
// Nothing reaches the client before D's first answer event, so until then
// every failure is still an ordinary HTTP error, and D failing before any
// answer retries the whole request on another D (its reservation is dropped
// with the closed stream and an explicit abort).

#include <nlohmann/json.hpp>

#include "common/logging.h"
#include "gateway/forwarding.h"
#include "gateway/gateway_core.h"
#include "protocol/openai_error.h"
#include "protocol/pd.h"
#include "protocol/sse.h"

namespace baton::gateway::detail {

namespace pd = protocol::pd;

namespace {

int retry_after_of(const protocol::Headers& headers) {
  auto v = protocol::find_header(headers, "retry-after");
  if (!v) return 1;
  int s = std::atoi(std::string(*v).c_str());
  return std::clamp(s, 1, 3600);
}

class PdExchange : public std::enable_shared_from_this<PdExchange> {
 public:
  PdExchange(std::shared_ptr<GatewayCore> core, std::shared_ptr<const ClusterState> state,
             const GroupState* group, protocol::HttpRequest req, RequestInfo info,
             std::shared_ptr<protocol::ResponseWriter> writer, ExchangeLog log)
      : core_(std::move(core)),
        state_(std::move(state)),
        group_(group),
        req_(std::move(req)),
        info_(std::move(info)),
        writer_(std::move(writer)),
        log_(std::move(log)) {}

  void start() {
    writer_->on_close([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->on_client_close();
    });
    auto body = pd::Json::parse(req_.body, nullptr, false);
    std::lock_guard lock(mu_);
    body_ = std::move(body);
    decode_candidates_ =
        rank_pool(*core_, *group_, group_->decode, group_->config.decode_policy, nullptr, req_,
                  info_, static_cast<size_t>(config().retry.max_attempts));
    try_next_decode_locked();
  }

 private:
  const GatewayConfig& config() const { return *state_->config; }
  pd::Api api() const { return info_.chat ? pd::Api::kChatCompletions : pd::Api::kCompletions; }

  UpstreamRequest internal_request(std::string_view path, std::string body) const {
    UpstreamRequest ur;
    ur.method = "POST";
    ur.target = std::string(path);
    ur.headers = {{"content-type", "application/json"},
                  {std::string(pd::kTokenHeader), config().cluster_token}};
    if (auto id = req_.header("x-request-id")) ur.headers.emplace_back("x-request-id", *id);
    ur.body = std::move(body);
    ur.connect_timeout = config().limits.connect_timeout;
    ur.first_byte_timeout = config().limits.first_byte_timeout;
    ur.idle_timeout = config().limits.stream_idle_timeout;
    return ur;
  }

  void on_client_close() {
    std::lock_guard lock(mu_);
    if (finished_) return;
    client_closed_ = true;
    abort_decode_locked("client disconnected");
    cancel_prefill_locked();
    finish_locked(499);
  }

  // ---- decode side ----

  void try_next_decode_locked() {
    const auto now = core_->clock.now();
    while (next_decode_ < decode_candidates_.size()) {
      InstancePtr inst = decode_candidates_[next_decode_++];
      if (!inst->routable(now) || !inst->breaker.try_acquire(now)) continue;
      start_decode_locked(std::move(inst));
      return;
    }
    // A reload between ranking and sending may have drained every candidate:
    // rank once more against the configuration now in force.
    if (log_.attempts == 0 && !reranked_) {
      reranked_ = true;
      auto current = core_->state();
      for (const auto& g : current->groups) {
        if (current == state_ || g.config.name != group_->config.name) continue;
        state_ = current;
        group_ = &g;
        decode_candidates_ = rank_pool(*core_, g, g.decode, g.config.decode_policy, nullptr, req_,
                                       info_, static_cast<size_t>(config().retry.max_attempts));
        next_decode_ = 0;
        return try_next_decode_locked();
      }
    }
    if (last_error_status_ != 0) return respond_locked(last_error_status_, last_error_body_);
    core_->metrics.rejections.with({"no_decode_instance"}).inc();
    respond_locked(503, protocol::error_body(unavailable("no decode instance available")), 1);
  }

  void start_decode_locked(InstancePtr inst) {
    ++log_.attempts;
    if (log_.attempts == 1) pre_ = core_->clock.now() - log_.start;
    decode_ = inst;
    inst->in_flight.fetch_add(1);
    d_status_ = 0;
    d_body_.clear();
    d_parser_ = protocol::SseParser();
    ticket_.reset();
    pd::DecodeRequest dr;
    dr.api = api();
    dr.body = body_;
    dr.lease_ms = config().pd.lease_ms;
    auto self = shared_from_this();
    const uint64_t gen = ++decode_gen_;
    UpstreamHandlers h;
    h.on_headers = [self, gen](int status, protocol::Headers headers) {
      std::lock_guard lock(self->mu_);
      if (gen != self->decode_gen_) return;
      self->d_status_ = status;
      self->d_headers_ = std::move(headers);
    };
    h.on_data = [self, gen](std::string_view piece) {
      std::lock_guard lock(self->mu_);
      if (gen != self->decode_gen_ || self->finished_) return false;
      return self->on_decode_data_locked(piece);
    };
    h.on_done = [self, gen, inst](const UpstreamResult& r) {
      std::lock_guard lock(self->mu_);
      inst->in_flight.fetch_sub(1);
      if (gen != self->decode_gen_) {
        inst->breaker.on_cancel();
        return;
      }
      self->on_decode_done_locked(inst, r);
    };
    decode_call_ =
        inst->pool->start(internal_request(pd::kDecodePath, pd::to_json(dr).dump()), std::move(h));
  }

  bool on_decode_data_locked(std::string_view piece) {
    if (d_status_ != 200) {
      if (d_body_.size() < (64 << 10)) d_body_.append(piece);
      return true;
    }
    std::vector<protocol::SseEvent> events;
    d_parser_.feed(piece, events);
    for (auto& ev : events) {
      if (!on_decode_event_locked(ev)) return false;
      if (finished_) return false;
    }
    return true;
  }

  // False to stop reading D's stream.
  bool on_decode_event_locked(protocol::SseEvent& ev) {
    if (ev.event == pd::kEventTicket) {
      auto j = pd::Json::parse(ev.data, nullptr, false);
      auto t = pd::parse_ticket(j);
      if (!t.is_ok()) {
        fail_locked(Status(StatusCode::kBadGateway,
                           "decode instance sent a bad ticket: " + t.status().message()));
        return false;
      }
      ticket_ = std::move(*t);
      lease_end_ = core_->clock.now() + std::chrono::milliseconds(ticket_->lease_ms);
      forward_deadline_ = core_->clock.now() + config().pd.forward_deadline;
      prefill_candidates_ =
          rank_pool(*core_, *group_, group_->prefill, group_->config.prefill_policy,
                    &GroupRouting::prefill_tree, req_, info_,
                    static_cast<size_t>(std::max(1, config().pd.max_prefill_tries)));
      next_prefill_ = 0;
      try_next_prefill_locked();
      return !finished_;
    }
    if (ev.event == pd::kEventError) {
      Status s = pd::parse_error_event(ev.data);
      auto j = pd::Json::parse(ev.data, nullptr, false);
      std::string body = j.is_object() && j.contains("error")
                             ? pd::Json{{"error", j["error"]}}.dump()
                             : protocol::error_body(s);
      if (!client_started_) {
        respond_locked(s.http(), body);
      } else {
        writer_->write(protocol::sse_event(body));
        writer_->write(std::string(protocol::kSseDone));
        finish_locked(log_.status == 0 ? 200 : log_.status);
        writer_->end_stream();
      }
      cancel_prefill_locked();
      return false;
    }
    if (ev.event == pd::kEventResponse) {
      observe_added_locked();
      log_.instance = decode_->config.name;
      log_.bytes_out += ev.data.size();
      d_answered_ = true;
      finish_locked(200);
      writer_->send(200, "application/json", std::move(ev.data), response_headers());
      return false;
    }
    if (ev.event.empty() || ev.event == "message") {
      if (!client_started_) {
        observe_added_locked();
        log_.instance = decode_->config.name;
        writer_->start_stream(200, std::string(protocol::kSseContentType), response_headers());
        client_started_ = true;
        log_.status = 200;
      }
      std::string out = protocol::sse_event(ev.data);
      log_.bytes_out += out.size();
      if (ev.is_done()) {
        d_answered_ = true;
        finish_locked(200);
        writer_->write(std::move(out));
        writer_->end_stream();
        return false;
      }
      if (!writer_->write(std::move(out))) return false;
    }
    return true;
  }

  void on_decode_done_locked(const InstancePtr& inst, const UpstreamResult& r) {
    decode_call_.reset();
    const auto now = core_->clock.now();
    const bool failed = !r.status.is_ok() && r.status.code() != StatusCode::kCancelled;
    if (failed || d_status_ >= 500) {
      if (failed || d_status_ != 503) inst->breaker.on_failure(now);
      core_->metrics.upstream_errors
          .with({inst->config.name,
                 failed ? std::string(code_name(r.status.code())) : std::to_string(d_status_)})
          .inc();
    } else {
      inst->breaker.on_success();
    }
    if (finished_) return;
    if (d_status_ != 0 && d_status_ != 200) {
      // D refused before a ticket: no KV room (503) or a bad request (4xx).
      last_error_status_ = d_status_;
      last_error_body_ = d_body_;
      if (d_status_ == 503 || d_status_ == 429) {
        core_->metrics.rejections.with({"decode_" + std::to_string(d_status_)}).inc();
        return retry_decode_locked(inst, /*backoff=*/false);
      }
      return respond_locked(d_status_, d_body_);
    }
    if (client_started_) {
      // Cut after tokens went out: end with an error, never retry.
      writer_->write(protocol::error_sse_event(
          Status(StatusCode::kBadGateway, "decode instance stream ended early")));
      writer_->write(std::string(protocol::kSseDone));
      cancel_prefill_locked();
      finish_locked(200);
      writer_->end_stream();
      return;
    }
    // D died or timed out before answering anything: the whole request again.
    last_error_status_ = 502;
    last_error_body_ = protocol::error_body(
        Status(StatusCode::kBadGateway, "decode instance failed: " + r.status.message()));
    cancel_prefill_locked();
    retry_decode_locked(inst, /*backoff=*/true);
  }

  void retry_decode_locked(const InstancePtr& failed, bool backoff) {
    if (next_decode_ >= decode_candidates_.size() || log_.attempts >= config().retry.max_attempts) {
      next_decode_ = decode_candidates_.size();
      return try_next_decode_locked();
    }
    core_->metrics.retries.with({failed->config.name}).inc();
    if (!backoff) return try_next_decode_locked();
    auto delay = backoff_delay(config().retry, log_.attempts, core_->random());
    core_->upstream->run_after(delay, [self = shared_from_this()] {
      std::lock_guard lock(self->mu_);
      if (!self->finished_) self->try_next_decode_locked();
    });
  }

  void abort_decode_locked(std::string_view reason) {
    if (decode_call_) {
      decode_call_->cancel();
      decode_call_.reset();
    }
    ++decode_gen_;
    if (!ticket_ || !decode_ || d_answered_) return;
    // Closing the stream releases the reservation too; the explicit abort
    // makes it immediate whatever D's read timing.
    for (const auto& e : ticket_->entries) {
      pd::AbortRequest a{e.transfer_id, std::string(reason)};
      decode_->pool->start(internal_request(pd::kAbortPath, pd::to_json(a).dump()), {});
    }
  }

  // ---- prefill side ----

  void try_next_prefill_locked() {
    const auto now = core_->clock.now();
    while (next_prefill_ < prefill_candidates_.size()) {
      if (!may_forward_prefill(config().pd, log_.forwards, now, forward_deadline_, lease_end_)) {
        break;
      }
      InstancePtr inst = prefill_candidates_[next_prefill_++];
      if (!inst->routable(now) || inst->refusing(now) || !inst->breaker.try_acquire(now)) continue;
      start_prefill_locked(std::move(inst));
      return;
    }
    // Every candidate refused (or none was left): give D's room back.
    core_->metrics.rejections.with({"prefill_exhausted"}).inc();
    abort_decode_locked("no prefill instance accepted");
    if (client_started_) {
      writer_->write(protocol::error_sse_event(unavailable("no prefill instance accepted")));
      writer_->write(std::string(protocol::kSseDone));
      finish_locked(200);
      writer_->end_stream();
      return;
    }
    const int status = last_reject_status_ == 429 ? 429 : 503;
    std::string reason = last_reject_reason_.empty() ? "no_prefill_capacity" : last_reject_reason_;
    Status s(code_from_http(status),
             "every prefill instance refused the request (last reason: " + reason + ")");
    auto obj = protocol::error_object(s);
    obj["error"]["code"] = reason;
    respond_locked(status, obj.dump(), retry_after_);
  }

  void start_prefill_locked(InstancePtr inst) {
    ++log_.forwards;
    prefill_ = inst;
    inst->in_flight.fetch_add(1);
    p_status_ = 0;
    p_first_token_ = false;
    p_done_ = false;
    p_parser_ = protocol::SseParser();
    pd::PrefillRequest pr;
    pr.api = api();
    pr.body = body_;
    pr.ticket = *ticket_;
    pr.decode_address = decode_->config.address();
    auto self = shared_from_this();
    const uint64_t gen = ++prefill_gen_;
    UpstreamHandlers h;
    h.on_headers = [self, gen](int status, protocol::Headers headers) {
      std::lock_guard lock(self->mu_);
      if (gen != self->prefill_gen_) return;
      self->p_status_ = status;
      if (status == 429 || status == 503) {
        self->retry_after_ = std::max(self->retry_after_, retry_after_of(headers));
        auto reason = protocol::find_header(headers, "x-baton-reject-reason");
        self->last_reject_reason_ = reason ? std::string(*reason) : "";
        self->last_reject_status_ = status;
        if (self->prefill_) self->prefill_->note_refusal(headers, self->core_->clock.now());
      }
    };
    h.on_data = [self, gen](std::string_view piece) {
      std::lock_guard lock(self->mu_);
      if (gen != self->prefill_gen_) return false;
      if (self->p_status_ != 200) {
        if (self->p_body_.size() < (64 << 10)) self->p_body_.append(piece);
        return true;
      }
      std::vector<protocol::SseEvent> events;
      self->p_parser_.feed(piece, events);
      for (const auto& ev : events) self->on_prefill_event_locked(ev);
      return true;
    };
    h.on_done = [self, gen, inst](const UpstreamResult& r) {
      std::lock_guard lock(self->mu_);
      inst->in_flight.fetch_sub(1);
      self->on_prefill_done_locked(gen, inst, r);
    };
    p_body_.clear();
    prefill_call_ =
        inst->pool->start(internal_request(pd::kPrefillPath, pd::to_json(pr).dump()), std::move(h));
  }

  void on_prefill_event_locked(const protocol::SseEvent& ev) {
    if (ev.event == pd::kEventAccepted) {
      if (!log_.prefill.empty() && log_.prefill != "-") return;
      log_.prefill = prefill_->config.name;
      if (group_->config.prefill_policy == PolicyKind::kPrefixAware) {
        record_prefix(*group_->routing, &GroupRouting::prefill_tree, info_.prompt, prefill_->id);
      }
    } else if (ev.event == pd::kEventFirstToken) {
      p_first_token_ = true;
    } else if (ev.event == pd::kEventDone) {
      p_done_ = true;
    } else if (ev.event == pd::kEventError) {
      p_error_ = pd::parse_error_event(ev.data);
    }
  }

  void on_prefill_done_locked(uint64_t gen, const InstancePtr& inst, const UpstreamResult& r) {
    const auto now = core_->clock.now();
    const bool failed = !r.status.is_ok() && r.status.code() != StatusCode::kCancelled;
    const bool rejected = p_status_ == 429 || p_status_ == 503;
    if (gen == prefill_gen_) prefill_call_.reset();
    if (failed || (p_status_ >= 500 && p_status_ != 503) ||
        (!p_done_ && p_status_ == 200 && r.status.is_ok())) {
      inst->breaker.on_failure(now);
      core_->metrics.upstream_errors
          .with({inst->config.name,
                 failed ? std::string(code_name(r.status.code())) : std::to_string(p_status_)})
          .inc();
    } else if (r.status.code() == StatusCode::kCancelled) {
      inst->breaker.on_cancel();
    } else {
      inst->breaker.on_success();
    }
    if (gen != prefill_gen_ || finished_) return;
    if (rejected) {
      core_->metrics.rejections.with({"prefill_" + std::to_string(p_status_)}).inc();
      return try_next_prefill_locked();  // on-demand forwarding: at once
    }
    if (p_status_ != 0 && p_status_ != 200) {
      // P refused the request itself (bad input): so would every other.
      abort_decode_locked("prefill refused the request");
      return respond_locked(p_status_, p_body_);
    }
    if (p_done_) return;  // KV delivered; D does the rest
    if (p_first_token_) {
      // P failed after its first token: D has the token but not all the KV;
      // its stream ends with an error (lease or abort) that is relayed.
      return;
    }
    // P died before its first token: the same ticket goes to another P.
    core_->metrics.retries.with({inst->config.name}).inc();
    try_next_prefill_locked();
  }

  void cancel_prefill_locked() {
    ++prefill_gen_;
    if (prefill_call_) {
      prefill_call_->cancel();
      prefill_call_.reset();
    }
  }

  // ---- client side ----

  protocol::Headers response_headers() const {
    protocol::Headers h{{"x-baton-instance", decode_ ? decode_->config.name : "-"}};
    if (prefill_) h.emplace_back("x-baton-prefill-instance", prefill_->config.name);
    return h;
  }

  void respond_locked(int status, std::string body, int retry_after = 0) {
    if (finished_) return;
    protocol::Headers headers;
    if (retry_after > 0 || status == 429 || status == 503) {
      headers.emplace_back("Retry-After", std::to_string(std::max(1, retry_after)));
    }
    if (body.empty()) body = protocol::error_body(Status(code_from_http(status), "upstream error"));
    cancel_prefill_locked();
    if (decode_call_) abort_decode_locked("request failed");
    finish_locked(status);
    writer_->send(status, "application/json", std::move(body), std::move(headers));
  }

  void fail_locked(const Status& s) {
    abort_decode_locked(s.message());
    respond_locked(s.http(), protocol::error_body(s));
  }

  void observe_added_locked() {
    core_->metrics.added_latency.with({log_.route})
        .observe(std::chrono::duration<double>(pre_).count());
  }

  void finish_locked(int status) {
    if (finished_) return;
    finished_ = true;
    log_.status = status;
    if (log_.forwards > 0) core_->metrics.forwards.observe(log_.forwards);
    finish_log(*core_, log_, config().access_log);
  }

  std::shared_ptr<GatewayCore> core_;
  std::shared_ptr<const ClusterState> state_;
  const GroupState* group_;
  protocol::HttpRequest req_;
  RequestInfo info_;
  std::shared_ptr<protocol::ResponseWriter> writer_;
  ExchangeLog log_;

  std::mutex mu_;
  pd::Json body_;
  bool finished_ = false;
  bool client_closed_ = false;
  bool client_started_ = false;
  bool reranked_ = false;
  int last_error_status_ = 0;
  std::string last_error_body_;
  Clock::Duration pre_{};

  std::vector<InstancePtr> decode_candidates_;
  size_t next_decode_ = 0;
  InstancePtr decode_;
  std::shared_ptr<UpstreamCall> decode_call_;
  uint64_t decode_gen_ = 0;
  int d_status_ = 0;
  protocol::Headers d_headers_;
  std::string d_body_;
  protocol::SseParser d_parser_;
  bool d_answered_ = false;
  std::optional<pd::Ticket> ticket_;
  Clock::TimePoint lease_end_{};
  Clock::TimePoint forward_deadline_{};

  std::vector<InstancePtr> prefill_candidates_;
  size_t next_prefill_ = 0;
  InstancePtr prefill_;
  std::shared_ptr<UpstreamCall> prefill_call_;
  uint64_t prefill_gen_ = 0;
  int p_status_ = 0;
  std::string p_body_;
  protocol::SseParser p_parser_;
  bool p_first_token_ = false;
  bool p_done_ = false;
  Status p_error_;
  int retry_after_ = 1;
  int last_reject_status_ = 0;
  std::string last_reject_reason_;
};

}  // namespace

void start_pd_exchange(std::shared_ptr<GatewayCore> core, std::shared_ptr<const ClusterState> state,
                       const GroupState* group, protocol::HttpRequest req, RequestInfo info,
                       std::shared_ptr<protocol::ResponseWriter> writer, ExchangeLog log) {
  auto ex = std::make_shared<PdExchange>(std::move(core), std::move(state), group, std::move(req),
                                         std::move(info), std::move(writer), std::move(log));
  ex->start();
}

}  // namespace baton::gateway::detail
