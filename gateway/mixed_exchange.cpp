// One client request in aggregated mode: forward it to the first candidate,
// retry elsewhere (with backoff and jitter) on connect errors and 503 while
// nothing has reached the client, forward at once on an instance's own
// rejection (429, or 503 with x-baton-reject-reason: its admission control), and relay the answer:
// streamed bodies piece by piece as they arrive, plain bodies whole. Once a byte went to the client
// there is no retry, so a stream never repeats or skips tokens; a stream cut upstream ends with an
// error event.

#include "gateway/gateway_core.h"
#include "protocol/openai_error.h"
#include "protocol/sse.h"

namespace baton::gateway::detail {

namespace {

constexpr size_t kMaxBufferedBody = 64 << 20;

bool is_event_stream(const protocol::Headers& headers) {
  auto ct = protocol::find_header(headers, "content-type");
  return ct && ct->find("text/event-stream") != std::string_view::npos;
}

// Headers of an upstream response worth passing to the client.
protocol::Headers response_headers(const protocol::Headers& headers) {
  protocol::Headers out;
  for (const auto& [name, value] : headers) {
    for (std::string_view keep : {"retry-after", "x-baton-reject-reason", "x-request-id",
                                  "cache-control", "x-baton-instance"}) {
      if (protocol::iequals(name, keep)) {
        out.emplace_back(name, value);
        break;
      }
    }
  }
  return out;
}

class MixedExchange : public std::enable_shared_from_this<MixedExchange> {
 public:
  MixedExchange(std::shared_ptr<GatewayCore> core, std::shared_ptr<const ClusterState> state,
                const GroupState* group, std::vector<InstancePtr> candidates,
                protocol::HttpRequest req, RequestInfo info,
                std::shared_ptr<protocol::ResponseWriter> writer, ExchangeLog log)
      : core_(std::move(core)),
        state_(std::move(state)),
        group_(group),
        candidates_(std::move(candidates)),
        req_(std::move(req)),
        info_(std::move(info)),
        writer_(std::move(writer)),
        log_(std::move(log)),
        request_id_(core_->request_ids.fetch_add(1) + 1) {
    headers_ = forward_headers(req_, request_id_);
  }

  void start() {
    writer_->on_close([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->on_client_close();
    });
    std::lock_guard lock(mu_);
    try_next_locked();
  }

 private:
  const GatewayConfig& config() const { return *state_->config; }

  void on_client_close() {
    std::lock_guard lock(mu_);
    if (finished_) return;
    client_closed_ = true;
    if (call_) call_->cancel();
    if (!call_) finish_locked(499);
  }

  void try_next_locked() {
    const auto now = core_->clock.now();
    while (next_ < candidates_.size()) {
      InstancePtr inst = candidates_[next_++];
      if (inst->draining.load() || !inst->healthy.load()) continue;
      if (!inst->breaker.try_acquire(now)) continue;
      send_locked(std::move(inst));
      return;
    }
    // A reload between ranking and sending may have drained every candidate:
    // rank once more against the configuration now in force.
    if (log_.attempts == 0 && !reranked_ && group_ != nullptr) {
      reranked_ = true;
      auto current = core_->state();
      for (const auto& g : current->groups) {
        if (current == state_ || g.config.name != group_->config.name) continue;
        state_ = current;
        group_ = &g;
        candidates_ = rank_pool(*core_, g, g.mixed, g.config.policy, &GroupRouting::mixed_tree,
                                req_, info_, static_cast<size_t>(config().retry.max_attempts));
        next_ = 0;
        return try_next_locked();
      }
    }
    // Nothing left to try.
    if (last_error_status_ != 0) {
      respond_error_locked(last_error_status_, last_error_body_, last_error_headers_);
    } else {
      core_->metrics.rejections.with({"no_instance"}).inc();
      finish_locked(503);
      writer_->send(503, "application/json",
                    protocol::error_body(unavailable("no upstream instance available")),
                    {{"Retry-After", "1"}});
    }
  }

  void send_locked(InstancePtr inst) {
    ++log_.attempts;
    current_ = inst;
    inst->in_flight.fetch_add(1);
    retry_response_ = false;
    streaming_ = false;
    buffered_.clear();
    if (log_.attempts == 1) pre_ = core_->clock.now() - log_.start;
    UpstreamRequest ur;
    ur.method = req_.method;
    ur.target = req_.target;
    ur.headers = headers_;
    ur.body = req_.body;
    ur.connect_timeout = config().limits.connect_timeout;
    ur.first_byte_timeout = config().limits.first_byte_timeout;
    ur.idle_timeout = config().limits.stream_idle_timeout;
    auto self = shared_from_this();
    UpstreamHandlers h;
    h.on_headers = [self](int status, protocol::Headers headers) {
      self->on_headers(status, std::move(headers));
    };
    h.on_data = [self](std::string_view piece) { return self->on_data(piece); };
    h.on_done = [self](const UpstreamResult& r) { self->on_done(r); };
    call_ = inst->pool->start(std::move(ur), std::move(h));
  }

  void on_headers(int status, protocol::Headers headers) {
    std::lock_guard lock(mu_);
    if (finished_) return;
    upstream_first_byte_ = core_->clock.now();
    status_ = status;
    const bool more = next_ < candidates_.size() && log_.attempts < config().retry.max_attempts;
    if (status == 503 || status == 429) current_->note_refusal(headers, upstream_first_byte_);
    if ((status == 503 || status == 429) && more && !client_closed_) {
      // The instance's own answer: overloaded (503) or refusing this request
      // now (429). Either way another instance may take it.
      retry_response_ = true;
      last_error_status_ = status;
      last_error_body_.clear();
      last_error_headers_ = response_headers(headers);
      return;
    }
    resp_headers_ = response_headers(headers);
    resp_headers_.emplace_back("x-baton-instance", current_->config.name);
    auto ct = protocol::find_header(headers, "content-type");
    content_type_ = ct ? std::string(*ct) : std::string("application/json");
    if (is_event_stream(headers) || !protocol::find_header(headers, "content-length")) {
      streaming_ = true;
      observe_added_locked();
      writer_->start_stream(status, content_type_, resp_headers_);
      sent_any_ = true;
    }
    if (status == 200 && group_ != nullptr && group_->config.policy == PolicyKind::kPrefixAware) {
      record_prefix(*group_->routing, &GroupRouting::mixed_tree, info_.prompt, current_->id);
    }
  }

  bool on_data(std::string_view piece) {
    std::lock_guard lock(mu_);
    if (finished_ || client_closed_) return false;
    if (retry_response_) {
      last_error_body_.append(piece.substr(0, 64 << 10));
      return true;
    }
    if (streaming_) {
      log_.bytes_out += piece.size();
      return writer_->write(std::string(piece));
    }
    if (buffered_.size() + piece.size() > kMaxBufferedBody) return false;
    buffered_.append(piece);
    return true;
  }

  void on_done(const UpstreamResult& r) {
    std::lock_guard lock(mu_);
    call_.reset();
    InstancePtr inst = std::move(current_);
    inst->in_flight.fetch_sub(1);
    if (finished_) return;
    const auto now = core_->clock.now();
    const bool failed_upstream = !r.status.is_ok() && r.status.code() != StatusCode::kCancelled;
    if (failed_upstream || status_ >= 500) {
      if (status_ != 503 || failed_upstream) inst->breaker.on_failure(now);
      core_->metrics.upstream_errors
          .with({inst->config.name, failed_upstream ? std::string(code_name(r.status.code()))
                                                    : std::to_string(status_)})
          .inc();
    } else if (r.status.code() == StatusCode::kCancelled && status_ == 0) {
      inst->breaker.on_cancel();
    } else {
      inst->breaker.on_success();
    }
    if (client_closed_) return finish_locked(499);
    if (retry_response_ || (failed_upstream && r.retryable && !sent_any_)) {
      if (failed_upstream) {
        last_error_status_ = 502;
        last_error_body_ =
            protocol::error_body(Status(StatusCode::kBadGateway, r.status.message()));
        last_error_headers_.clear();
      }
      const bool more = next_ < candidates_.size() && log_.attempts < config().retry.max_attempts;
      if (!more) return try_next_locked_exhausted();
      core_->metrics.retries.with({inst->config.name}).inc();
      if (retry_response_ &&
          (status_ == 429 || protocol::find_header(last_error_headers_, "x-baton-reject-reason"))) {
        // A rejection (429, or an admission control's 503 that names its
        // reason) is an answer, not a failure: forward at once.
        return try_next_locked();
      }
      auto delay = backoff_delay(config().retry, log_.attempts, core_->random());
      core_->upstream->run_after(delay, [self = shared_from_this()] {
        std::lock_guard lock(self->mu_);
        if (self->finished_) return;
        if (self->client_closed_) return self->finish_locked(499);
        self->try_next_locked();
      });
      return;
    }
    log_.instance = inst->config.name;
    if (!r.status.is_ok()) {
      if (streaming_) {
        // Cut mid-stream: say so explicitly instead of a silent end.
        writer_->write(protocol::error_sse_event(
            Status(StatusCode::kBadGateway, "upstream stream ended early: " + r.status.message())));
        writer_->write(std::string(protocol::kSseDone));
        finish_locked(status_);
        writer_->end_stream();
        return;
      }
      Status s = r.status.code() == StatusCode::kDeadlineExceeded
                     ? Status(StatusCode::kDeadlineExceeded, "upstream: " + r.status.message())
                     : Status(StatusCode::kBadGateway, "upstream: " + r.status.message());
      finish_locked(s.http());
      return writer_->send_error(s);
    }
    // Recorded before the client can see the end, so that metrics read
    // after a response always include it.
    if (streaming_) {
      finish_locked(status_);
      writer_->end_stream();
    } else {
      observe_added_locked();
      log_.bytes_out += buffered_.size();
      finish_locked(status_);
      writer_->send(status_, content_type_, std::move(buffered_), resp_headers_);
    }
  }

  void try_next_locked_exhausted() {
    next_ = candidates_.size();
    try_next_locked();
  }

  void respond_error_locked(int status, const std::string& body, const protocol::Headers& hdrs) {
    protocol::Headers headers = hdrs;
    if ((status == 429 || status == 503) && !protocol::find_header(headers, "retry-after")) {
      headers.emplace_back("Retry-After", "1");
    }
    core_->metrics.rejections.with({"upstream_" + std::to_string(status)}).inc();
    finish_locked(status);
    writer_->send(status, "application/json",
                  body.empty() ? protocol::error_body(Status(code_from_http(status),
                                                             "every upstream instance refused"))
                               : body,
                  headers);
  }

  void observe_added_locked() {
    const auto post = core_->clock.now() - upstream_first_byte_;
    core_->metrics.added_latency.with({log_.route})
        .observe(std::chrono::duration<double>(pre_ + post).count());
  }

  void finish_locked(int status) {
    if (finished_) return;
    finished_ = true;
    log_.status = status;
    finish_log(*core_, log_, config().access_log);
  }

  std::shared_ptr<GatewayCore> core_;
  std::shared_ptr<const ClusterState> state_;
  const GroupState* group_;
  std::vector<InstancePtr> candidates_;
  protocol::HttpRequest req_;
  RequestInfo info_;
  std::shared_ptr<protocol::ResponseWriter> writer_;
  ExchangeLog log_;
  uint64_t request_id_;
  protocol::Headers headers_;

  std::mutex mu_;
  size_t next_ = 0;
  InstancePtr current_;
  std::shared_ptr<UpstreamCall> call_;
  int status_ = 0;
  bool reranked_ = false;
  bool retry_response_ = false;
  bool streaming_ = false;
  bool sent_any_ = false;
  bool client_closed_ = false;
  bool finished_ = false;
  std::string content_type_;
  protocol::Headers resp_headers_;
  std::string buffered_;
  int last_error_status_ = 0;
  std::string last_error_body_;
  protocol::Headers last_error_headers_;
  Clock::Duration pre_{};
  Clock::TimePoint upstream_first_byte_{};
};

}  // namespace

void start_mixed_exchange(std::shared_ptr<GatewayCore> core,
                          std::shared_ptr<const ClusterState> state, const GroupState* group,
                          std::vector<InstancePtr> candidates, protocol::HttpRequest req,
                          RequestInfo info, std::shared_ptr<protocol::ResponseWriter> writer,
                          ExchangeLog log) {
  auto ex = std::make_shared<MixedExchange>(std::move(core), std::move(state), group,
                                            std::move(candidates), std::move(req), std::move(info),
                                            std::move(writer), std::move(log));
  ex->start();
}

}  // namespace baton::gateway::detail
