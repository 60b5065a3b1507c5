#pragma once

// InstanceServer's implementation, shared by instance_server.cpp (the public
// OpenAI routes and the output pump) and pd_routes.cpp (the internal P/D
// routes of prefill and decode instances). Not part of the server's API.

#include <atomic>
#include <chrono>
#include <map>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/bounded_queue.h"
#include "common/logging.h"
#include "common/thread_pool.h"
#include "engine/kv_device_staging.h"
#include "kvtransfer/tcp_transport.h"
#include "protocol/openai_error.h"
#include "protocol/openai_response.h"
#include "protocol/pd.h"
#include "protocol/sse.h"
#include "server/instance_server.h"
#include "server/request_builder.h"

namespace baton::server {

namespace impl {

using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

inline double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

inline int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

inline protocol::FinishReason to_protocol(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::kStop:
      return protocol::FinishReason::kStop;
    case engine::FinishReason::kLength:
      return protocol::FinishReason::kLength;
    case engine::FinishReason::kAbort:
      return protocol::FinishReason::kAbort;
    default:
      return protocol::FinishReason::kNone;
  }
}

inline const std::vector<double> kLatencyBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                                    0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                                    7.5,   10.0,  20.0, 40.0, 80.0};
// Finer steps where time per token sits, so that a quantile against a TPOT
// target of tens of milliseconds is read from narrow buckets.
inline const std::vector<double> kTokenLatencyBuckets = {
    0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025,
    0.03,  0.035, 0.04,  0.05,  0.06,  0.08,  0.1,   0.15, 0.2,    0.3,   0.5,    1.0,  2.5};

}  // namespace impl

using namespace impl;  // NOLINT(google-build-using-namespace): this header is private

// One HTTP call (one OpenAI request, possibly several prompts and n choices).
struct Call {
  std::shared_ptr<protocol::ResponseWriter> writer;
  PreparedRequest req;
  protocol::ResponseMeta meta;
  std::vector<std::shared_ptr<engine::RequestStream>> streams;
  std::vector<bool> stream_done;
  struct Choice {
    std::string text;
    int32_t tokens = 0;
    std::optional<std::vector<protocol::TokenLogprobInfo>> logprobs;
    protocol::FinishReason finish = protocol::FinishReason::kNone;
    protocol::StopReason stop_reason;
    int64_t text_offset = 0;
    bool role_sent = false;
  };
  std::vector<Choice> choices;
  int32_t cached_tokens = 0;
  double queue_time_s = -1;  // engine-side, of the first prompt
  Clock::time_point arrival;
  std::optional<Clock::time_point> first_token;
  Clock::time_point last_token;
  bool finished = false;
  std::atomic<bool> queued{false};
  std::atomic<bool> submitted{false};  // streams and headers in place: output may flow
  std::atomic<bool> client_gone{false};

  // Decode role: the response goes to the coordinator as a P/D stream (the
  // ticket event first, then the client's response; errors as event: error).
  bool pd = false;
  std::vector<uint64_t> transfer_ids;
  std::mutex pd_mu;  // guards the fields below
  Status failure;    // why the engine streams were cancelled, when it was us
  double prefill_queue_s = -1, prefill_s = -1;  // reported by the prefill side
  std::optional<Clock::time_point> first_tokens_at, kv_landed_at, decoded_after_import_at;

  void fail(Status s) {
    std::lock_guard lock(pd_mu);
    if (failure.is_ok()) failure = std::move(s);
  }
};

// A prefill-role call: runs the prompts prefill-only, tells the decode side
// the first tokens and sends it the KV, reporting progress to the coordinator
// as a P/D stream (accepted, first_token, done or error).
struct PrefillCall {
  std::shared_ptr<protocol::ResponseWriter> writer;
  protocol::pd::PrefillRequest req;
  PreparedRequest prepared;
  std::vector<std::shared_ptr<engine::RequestStream>> streams;
  Clock::time_point arrival;
  Clock::time_point lease_deadline;
  std::atomic<bool> queued{false};
  std::atomic<bool> submitted{false};
  std::atomic<bool> client_gone{false};
  std::mutex processing;  // held by the worker running process_prefill
  // Output side, on the worker running process_prefill (one at a time).
  std::vector<bool> stream_done;
  std::vector<protocol::pd::FirstTokens> firsts;  // per prompt
  std::vector<double> queue_s;
  bool started = false;  // admission told of the first token
  // Shared with the transport's callback.
  std::mutex mu;
  int32_t prompts_reported = 0;  // first tokens delivered to the decode side
  int32_t sends_pending = 0;
  std::vector<kvtransfer::TransferId> sends;
  uint64_t kv_bytes = 0;
  double transfer_s = 0;
  bool ended = false;  // the stream to the coordinator is over
};

// A decode-side reservation waiting for its first tokens and KV.
struct PendingImport {
  engine::RequestId request = 0;
  std::weak_ptr<Call> call;
  std::shared_ptr<engine::KvBuffer> buffer;  // where the KV lands
  kvtransfer::MemoryHandle memory;           // its own, or the staging area's
  uint64_t offset = 0;                       // of the buffer in `memory`
  std::optional<kvtransfer::TransferId> receive;
  Clock::time_point lease_deadline;
  bool first_tokens = false;
  bool landed = false;
};

// A prefill-side KV send in flight.
struct PendingSend {
  std::weak_ptr<PrefillCall> call;
  std::shared_ptr<const engine::KvBuffer> kv;
  kvtransfer::MemoryHandle memory;
  uint64_t transfer_id = 0;
  Clock::time_point started;
};

class InstanceServer::Impl {
 public:
  explicit Impl(ServerOptions o)
      : options_(std::move(o)),
        admission_(options_.admission),
        ready_queue_(static_cast<size_t>(options_.admission.max_in_flight) + 16) {
    auto& m = metrics_;
    running_ = &m.gauge("baton:num_requests_running", "Requests in the engine's running batch.");
    waiting_ = &m.gauge("baton:num_requests_waiting", "Requests waiting to be scheduled.");
    kv_usage_ = &m.gauge("baton:kv_cache_usage_perc", "KV cache usage, 1 = full.");
    prefix_hit_ = &m.gauge("baton:prefix_cache_hit_rate", "Prefix cache hit rate, 0 to 1.");
    preemptions_ = &m.gauge("baton:num_preemptions_total", "Sequences preempted so far.");
    prompt_tokens_ = &m.counter("baton:prompt_tokens_total", "Prompt tokens of finished requests.");
    generation_tokens_ =
        &m.counter("baton:generation_tokens_total", "Generated tokens of finished requests.");
    ttft_ =
        &m.histogram("baton:time_to_first_token_seconds", "Time to first token.", kLatencyBuckets);
    tpot_ =
        &m.histogram("baton:time_per_output_token_seconds",
                     "Mean time per output token after the first, per request.", kLatencyBuckets);
    itl_ = &m.histogram("baton:inter_token_latency_seconds",
                        "Time between consecutive output tokens of single-sequence requests, "
                        "observed as they are produced (per token).",
                        kTokenLatencyBuckets);
    e2e_ = &m.histogram("baton:e2e_request_latency_seconds", "End-to-end request latency.",
                        kLatencyBuckets);
    queue_ = &m.histogram("baton:request_queue_time_seconds",
                          "Time from arrival in the engine to the first step that scheduled the "
                          "request.",
                          kLatencyBuckets);
    success_ = &m.counter_family("baton:request_success_total", "Finished requests by reason.",
                                 {"finished_reason"});
    rejected_ = &m.counter_family("baton:request_rejected_total",
                                  "Requests refused by admission control, by reason.", {"reason"});
  }

  Status start_http() {
    BATON_RETURN_IF_ERROR(start_pd());
    auto server = protocol::HttpServer::start(
        options_.http,
        [this](protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
          handle(std::move(req), std::move(w));
        });
    if (!server.is_ok()) return server.status();
    http_ = std::move(*server);
    pump_ = std::thread([this] { pump_loop(); });
    return Status::ok();
  }

  Status attach(std::unique_ptr<engine::Engine> e) {
    if (options_.served_model_name.empty()) {
      options_.served_model_name =
          e->model_dir().empty() ? "baton-model" : e->model_dir().filename().string();
    }
    BATON_ASSIGN_OR_RETURN(ctx_, load_model_context(*e, options_.served_model_name));
    ctx_.max_tokens_limit = options_.max_tokens_limit;
    BATON_RETURN_IF_ERROR(start_staging(*e));
    BATON_RETURN_IF_ERROR(e->start());
    engine_ = std::move(e);
    ready_.store(true);
    return Status::ok();
  }

  void stop() {
    if (stopped_.exchange(true)) return;
    ready_.store(false);
    if (http_) http_->stop();
    if (engine_) engine_->stop();  // ends every stream
    ready_queue_.close();
    if (pump_.joinable()) pump_.join();
    stop_pd();
  }

  uint16_t port() const { return http_ ? http_->port() : 0; }

 private:
  void handle(protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
    const std::string& path = req.path;
    const bool post = req.method == "POST";
    const bool get = req.method == "GET";
    if (path == "/health" && get) {
      if (draining()) {
        send_changing_role(*w);
      } else if (ready_.load()) {
        w->send(200, "application/json", "{}");
      } else {
        w->send_error(unavailable("model: not loaded yet"));
      }
      return;
    }
    if (path == "/metrics" && get) {
      refresh_gauges();
      w->send(200, "text/plain; version=0.0.4; charset=utf-8", metrics_.render());
      return;
    }
    if (path.starts_with(protocol::pd::kInternalPrefix)) return handle_internal(req, std::move(w));
    const bool api = path == "/v1/completions" || path == "/v1/chat/completions" ||
                     path == "/v1/models" || path == "/tokenize" || path == "/detokenize";
    if (!api) {
      w->send_error(not_found("path: no route for " + path));
      return;
    }
    if ((path == "/v1/models" && !get) || (path != "/v1/models" && !post)) {
      w->send_error(405, "method " + req.method + " is not allowed on " + path,
                    "method_not_allowed");
      return;
    }
    if (draining() && path != "/v1/models") {
      rejected_->with({"changing_role"}).inc();
      send_changing_role(*w);
      return;
    }
    if (!ready_.load()) {
      rejected_->with({"not_ready"}).inc();
      w->send(503, "application/json", protocol::error_body(unavailable("model: not loaded yet")),
              {{"Retry-After", "1"}});
      return;
    }
    if (path == "/v1/models") {
      protocol::ModelCard card;
      card.id = ctx_.served_name;
      card.created = unix_now();
      card.max_model_len = ctx_.max_model_len;
      w->send(200, "application/json", protocol::models_list({card}));
      return;
    }
    if (path == "/tokenize") return tokenize(req, *w);
    if (path == "/detokenize") return detokenize(req, *w);

    const bool chat = path == "/v1/chat/completions";
    Result<PreparedRequest> prepared = prepare(chat, req.body);
    if (!prepared.is_ok()) {
      w->send_error(prepared.status());
      return;
    }
    submit(std::move(*prepared), chat, std::move(w));
  }

  void submit(PreparedRequest req, bool chat, std::shared_ptr<protocol::ResponseWriter> w) {
    AdmissionDecision d = admission_.try_admit(req.total_prompt_tokens());
    if (!d.admitted()) {
      const std::string reason(reject_reason_name(d.reason));
      rejected_->with({reason}).inc();
      Status s(d.reason == RejectReason::kTooManyRequests ? StatusCode::kResourceExhausted
                                                          : StatusCode::kUnavailable,
               "The instance cannot start this request in time (" + reason + ")");
      auto body = protocol::error_object(s);
      body["error"]["code"] = reason;
      w->send(s.http(), "application/json", body.dump(),
              {{"Retry-After", std::to_string(d.retry_after_s)},
               {"x-baton-reject-reason", reason},
               {"x-baton-admit-after-ms", std::to_string(d.admit_after_ms)}});
      return;
    }
    auto call = new_call(std::move(req), chat, std::move(w));
    std::weak_ptr<Call> weak = call;
    for (auto& p : call->req.prompts) {
      p.on_ready = [this, weak] {
        if (auto c = weak.lock()) notify(c);
      };
      auto s = engine_->submit(std::move(p));
      if (!s.is_ok()) {
        for (auto& st : call->streams) engine_->cancel(st->id());
        admission_.finished(call->req.total_prompt_tokens(), false);
        {
          std::lock_guard lock(active_mu_);
          active_.erase(call.get());
        }
        call->writer->send_error(s.status());
        return;
      }
      call->streams.push_back(*s);
    }
    if (call->req.stream) {
      call->writer->start_stream(200, "text/event-stream",
                                 {{"Cache-Control", "no-cache"}, {"X-Accel-Buffering", "no"}});
    }
    start_output(call);
  }

  Result<PreparedRequest> prepare(bool chat, const std::string& body) const {
    if (chat) {
      BATON_ASSIGN_OR_RETURN(auto parsed, protocol::parse_chat_request(body));
      return prepare_chat(parsed, ctx_);
    }
    BATON_ASSIGN_OR_RETURN(auto parsed, protocol::parse_completion_request(body));
    return prepare_completion(parsed, ctx_);
  }

  // A call for a prepared request, owned by the server until finish(); the
  // engine only holds weak references, so a call never outlives its server.
  std::shared_ptr<Call> new_call(PreparedRequest req, bool chat,
                                 std::shared_ptr<protocol::ResponseWriter> w) {
    auto call = std::make_shared<Call>();
    call->writer = std::move(w);
    call->arrival = Clock::now();
    call->meta.created = unix_now();
    call->meta.model = ctx_.served_name;
    call->meta.id = protocol::make_response_id(
        chat ? protocol::kChatCompletionIdPrefix : protocol::kCompletionIdPrefix, id_base_,
        next_id_.fetch_add(1));
    call->choices.resize(req.prompts.size() * static_cast<size_t>(req.n));
    if (req.logprobs) {
      for (auto& c : call->choices) c.logprobs.emplace();
    }
    call->req = std::move(req);
    call->stream_done.assign(call->req.prompts.size(), false);
    std::lock_guard lock(active_mu_);
    active_[call.get()] = call;
    return call;
  }

  // The streams are in place: a client that goes away cancels them, and
  // output that arrived before they were recorded is picked up now.
  void start_output(const std::shared_ptr<Call>& call) {
    std::weak_ptr<Call> weak = call;
    call->writer->on_close([this, weak] {
      if (auto c = weak.lock()) {
        c->client_gone.store(true);
        for (auto& s : c->streams) engine_->cancel(s->id());
      }
    });
    call->submitted.store(true);
    call->queued.store(false);
    notify(call);
  }

  void notify(const std::shared_ptr<Call>& call) {
    if (!call->queued.exchange(true)) {
      // Capacity covers every admitted call once, so this cannot fail while
      // open; after close() the output no longer matters.
      (void)ready_queue_.try_push(call);
    }
  }

  void pump_loop() {
    for (;;) {
      auto item = ready_queue_.pop_until(Clock::now() + std::chrono::milliseconds(200));
      // ready_ (set after engine_ in attach) orders the read of engine_.
      if (ready_.load()) {
        expire_leases();
        finish_role_change();
        auto st = engine_->stats();
        admission_.observe_prefill(
            st.prompt_tokens,
            std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
                .count());
      }
      if (!item.is_ok()) {
        if (item.status().code() == StatusCode::kDeadlineExceeded) continue;
        return;  // closed
      }
      process(**item);
    }
  }

  std::string token_text(int32_t id) const {
    if (ctx_.tokenizer) {
      auto t = ctx_.tokenizer->decode(std::vector<int32_t>{id}, false);
      if (t.is_ok()) return *t;
    }
    return "token_id:" + std::to_string(id);
  }

  protocol::TokenLogprobInfo logprob_info(const engine::SampleResult& r) const {
    protocol::TokenLogprobInfo info;
    info.token = token_text(r.token);
    info.logprob = r.logprob;
    for (const auto& t : r.top_logprobs) info.top.emplace_back(token_text(t.token), t.logprob);
    return info;
  }

  void process(Call& call) {
    if (!call.submitted.load()) return;  // submit() notifies again once it is
    call.queued.store(false);
    if (call.finished) return;
    auto& w = *call.writer;
    const bool chat = call.req.chat;
    for (size_t p = 0; p < call.streams.size(); ++p) {
      while (!call.stream_done[p]) {
        auto ev = call.streams[p]->next(Clock::now());
        if (!ev.is_ok()) break;
        if (p == 0) {
          call.cached_tokens = ev->info.cached_prompt_tokens;
          if (ev->info.queue_time_s >= 0) call.queue_time_s = ev->info.queue_time_s;
        }
        for (auto& d : ev->deltas) {
          const size_t ci = p * static_cast<size_t>(call.req.n) + static_cast<size_t>(d.index);
          Call::Choice& c = call.choices[ci];
          if (!d.token_ids.empty()) {
            auto now = Clock::now();
            if (!call.first_token) {
              call.first_token = now;
              if (!call.pd) admission_.started(call.req.total_prompt_tokens());
              ttft_->observe(secs(now - call.arrival));
            } else if (call.choices.size() == 1) {
              itl_->observe(secs(now - call.last_token) / static_cast<double>(d.token_ids.size()));
            }
            if (call.pd) {
              std::lock_guard lock(call.pd_mu);
              if (call.kv_landed_at && !call.decoded_after_import_at) {
                call.decoded_after_import_at = now;
              }
            }
            call.last_token = now;
          }
          c.tokens += static_cast<int32_t>(d.token_ids.size());
          std::optional<std::vector<protocol::TokenLogprobInfo>> lps;
          if (c.logprobs) {
            lps.emplace();
            for (const auto& r : d.logprobs) lps->push_back(logprob_info(r));
            c.logprobs->insert(c.logprobs->end(), lps->begin(), lps->end());
          }
          if (d.finish != engine::FinishReason::kNone) {
            c.finish = to_protocol(d.finish);
            if (!d.stop.empty()) c.stop_reason = d.stop;
          }
          if (call.req.stream && !call.client_gone.load()) {
            if (chat && !c.role_sent) {
              w.write(protocol::sse_event(
                  protocol::chat_role_chunk(call.meta, static_cast<int32_t>(ci))));
              c.role_sent = true;
            }
            if (!d.text.empty() || !d.token_ids.empty() ||
                c.finish != protocol::FinishReason::kNone) {
              if (chat) {
                protocol::ChatDelta delta;
                delta.index = static_cast<int32_t>(ci);
                delta.content = d.text;
                delta.logprobs = std::move(lps);
                delta.finish_reason = d.finish == engine::FinishReason::kNone
                                          ? protocol::FinishReason::kNone
                                          : c.finish;
                delta.stop_reason = c.stop_reason;
                w.write(protocol::sse_event(protocol::chat_chunk(call.meta, delta)));
              } else {
                protocol::CompletionChoice choice;
                choice.index = static_cast<int32_t>(ci);
                choice.text = d.text;
                choice.logprobs = std::move(lps);
                choice.text_offset = c.text_offset;
                choice.finish_reason = d.finish == engine::FinishReason::kNone
                                           ? protocol::FinishReason::kNone
                                           : c.finish;
                choice.stop_reason = c.stop_reason;
                w.write(protocol::sse_event(protocol::completion_chunk(call.meta, choice)));
              }
            }
          }
          c.text_offset += static_cast<int64_t>(d.text.size());
          c.text += d.text;
        }
        if (ev->done) call.stream_done[p] = true;
      }
    }
    for (bool done : call.stream_done) {
      if (!done) return;
    }
    finish(call);
  }

  void finish(Call& call) {
    call.finished = true;
    // Keep the call alive to the end of this function, then let it go.
    std::shared_ptr<Call> keep;
    {
      std::lock_guard lock(active_mu_);
      auto it = active_.find(&call);
      if (it != active_.end()) {
        keep = std::move(it->second);
        active_.erase(it);
      }
    }
    auto now = Clock::now();
    int32_t completion_tokens = 0;
    bool aborted = false;
    for (auto& c : call.choices) {
      completion_tokens += c.tokens;
      aborted = aborted || c.finish == protocol::FinishReason::kAbort;
      std::string reason = c.finish == protocol::FinishReason::kStop     ? "stop"
                           : c.finish == protocol::FinishReason::kLength ? "length"
                                                                         : "abort";
      success_->with({reason}).inc();
    }
    const auto prompt_tokens = static_cast<int32_t>(call.req.total_prompt_tokens());
    prompt_tokens_->inc(prompt_tokens);
    generation_tokens_->inc(completion_tokens);
    e2e_->observe(secs(now - call.arrival));
    if (call.queue_time_s >= 0) queue_->observe(call.queue_time_s);
    if (call.first_token) {
      const int32_t per_choice =
          call.choices.empty() ? 0 : completion_tokens / static_cast<int32_t>(call.choices.size());
      if (per_choice > 1)
        tpot_->observe(secs(call.last_token - *call.first_token) / (per_choice - 1));
    }
    if (call.pd) {
      end_imports(call);
      observe_breakdown(call);
    } else {
      admission_.finished(prompt_tokens, call.first_token.has_value());
    }
    finish_role_change();  // out of active_ already: the last request of a drain switches at once
    if (call.client_gone.load()) return;

    protocol::Usage usage;
    usage.prompt_tokens = prompt_tokens;
    usage.completion_tokens = completion_tokens;
    if (call.cached_tokens > 0) usage.cached_tokens = call.cached_tokens;
    auto& w = *call.writer;
    if (aborted) {
      // Not the client (it is still here): the engine stopped under it, or
      // the P/D side failed (call.failure says how).
      Status s = unavailable("the engine stopped before the request finished");
      {
        std::lock_guard lock(call.pd_mu);
        if (!call.failure.is_ok()) s = call.failure;
      }
      if (call.pd) {
        w.write(protocol::sse_event(protocol::pd::kEventError, protocol::pd::error_event_data(s)));
        w.end_stream();
        return;
      }
      if (call.req.stream) {
        w.write(protocol::error_sse_event(s));
        w.write(std::string(protocol::kSseDone));
        w.end_stream();
      } else {
        w.send_error(s);
      }
      return;
    }
    if (call.req.stream) {
      if (call.req.include_usage) {
        w.write(protocol::sse_event(call.req.chat
                                        ? protocol::chat_usage_chunk(call.meta, usage)
                                        : protocol::completion_usage_chunk(call.meta, usage)));
      }
      w.write(std::string(protocol::kSseDone));
      w.end_stream();
      return;
    }
    std::string body;
    if (call.req.chat) {
      std::vector<protocol::ChatChoice> out;
      for (size_t i = 0; i < call.choices.size(); ++i) {
        auto& c = call.choices[i];
        out.push_back({static_cast<int32_t>(i), c.text, c.logprobs, c.finish, c.stop_reason});
      }
      body = protocol::chat_completion_response(call.meta, out, usage);
    } else {
      std::vector<protocol::CompletionChoice> out;
      for (size_t i = 0; i < call.choices.size(); ++i) {
        auto& c = call.choices[i];
        out.push_back({static_cast<int32_t>(i), c.text, c.logprobs, 0, c.finish, c.stop_reason});
      }
      body = protocol::completion_response(call.meta, out, usage);
    }
    if (call.pd) {
      w.write(protocol::sse_event(protocol::pd::kEventResponse, body));
      w.end_stream();
    } else {
      w.send(200, "application/json", std::move(body));
    }
  }

  void tokenize(const protocol::HttpRequest& req, protocol::ResponseWriter& w) {
    auto body = protocol::parse_json_object(req.body);
    if (!body.is_ok()) return w.send_error(body.status());
    if (!ctx_.tokenizer)
      return w.send_error(invalid_argument("prompt: this model has no tokenizer"));
    std::string text;
    bool add_special = true;
    if (body->contains("messages")) {
      if (!ctx_.chat_templates) return w.send_error(invalid_argument("messages: no chat template"));
      auto& msgs = (*body)["messages"];
      if (!msgs.is_array()) return w.send_error(invalid_argument("messages: must be an array"));
      auto r = ctx_.chat_templates->apply(msgs, body->value("add_generation_prompt", true), nullptr,
                                          ordered_json::object());
      if (!r.is_ok()) return w.send_error(invalid_argument("messages: " + r.status().message()));
      text = *r;
      add_special = false;
    } else if (body->contains("prompt") && (*body)["prompt"].is_string()) {
      text = (*body)["prompt"].get<std::string>();
    } else {
      return w.send_error(invalid_argument("prompt: required, a string"));
    }
    if (body->contains("add_special_tokens") && (*body)["add_special_tokens"].is_boolean()) {
      add_special = (*body)["add_special_tokens"].get<bool>();
    }
    auto ids = ctx_.tokenizer->encode(text, add_special);
    if (!ids.is_ok()) return w.send_error(invalid_argument("prompt: " + ids.status().message()));
    ordered_json out;
    out["count"] = ids->size();
    out["max_model_len"] = ctx_.max_model_len;
    out["tokens"] = *ids;
    w.send(200, "application/json", out.dump());
  }

  void detokenize(const protocol::HttpRequest& req, protocol::ResponseWriter& w) {
    auto body = protocol::parse_json_object(req.body);
    if (!body.is_ok()) return w.send_error(body.status());
    if (!ctx_.tokenizer)
      return w.send_error(invalid_argument("tokens: this model has no tokenizer"));
    if (!body->contains("tokens") || !(*body)["tokens"].is_array()) {
      return w.send_error(invalid_argument("tokens: required, a list of token ids"));
    }
    std::vector<int32_t> ids;
    for (const auto& t : (*body)["tokens"]) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= ctx_.vocab_size) {
        return w.send_error(
            invalid_argument("tokens: every entry must be a token id of the vocabulary"));
      }
      ids.push_back(t.get<int32_t>());
    }
    auto text = ctx_.tokenizer->decode(ids, false);
    if (!text.is_ok()) return w.send_error(text.status());
    ordered_json out;
    out["prompt"] = *text;
    w.send(200, "application/json", out.dump());
  }

  void refresh_gauges() {
    if (!ready_.load()) return;
    auto st = engine_->stats();
    running_->set(st.num_running);
    waiting_->set(st.num_waiting);
    kv_usage_->set(st.kv_usage);
    prefix_hit_->set(st.prefix_hit_rate);
    preemptions_->set(static_cast<double>(st.num_preemptions));
    if (staging_) staging_used_->set(static_cast<double>(staging_->used()));
  }

  // ---- P/D (pd_routes.cpp) ----------------------------------------------------
 public:
  Status start_pd();
  void stop_pd();
  std::string kv_endpoint() const { return kv_endpoint_; }
  // cuda-ipc: allocates and registers the device staging area (its size
  // from the engine) before the engine starts.
  Status start_staging(const engine::Engine& e);

 private:
  void handle_internal(const protocol::HttpRequest& req,
                       std::shared_ptr<protocol::ResponseWriter> w);
  void decode_route(protocol::pd::DecodeRequest dr, std::shared_ptr<protocol::ResponseWriter> w);
  void first_token_route(const protocol::HttpRequest& req, protocol::ResponseWriter& w);
  void abort_route(const protocol::HttpRequest& req, protocol::ResponseWriter& w);
  void prefill_route(const protocol::HttpRequest& req, std::shared_ptr<protocol::ResponseWriter> w);
  void notify_prefill(const std::shared_ptr<PrefillCall>& call);
  void process_prefill(const std::shared_ptr<PrefillCall>& call);
  void report_first_tokens(const std::shared_ptr<PrefillCall>& call, size_t prompt);
  void end_prefill(PrefillCall& call, const Status& status);
  void cancel_prefill(PrefillCall& call);
  void on_transfer_finished(kvtransfer::TransferId id, const kvtransfer::TransferState& st);
  void post_to_decode(const std::string& address, std::string_view path, std::string body);
  void end_imports(Call& call);
  void observe_breakdown(Call& call);
  void expire_leases();
  protocol::pd::KvShape kv_shape() const;
  // The KV payload's size, host bytes or a device slice.
  static uint64_t kv_payload_bytes(const engine::KvBuffer& kv);
  // Deregisters a per-transfer registration (never the staging area's).
  void release_memory(kvtransfer::MemoryHandle memory);
  // A staging slice for `bytes` of KV, and its offset in the staging area.
  Result<std::pair<engine::KvDeviceSlice, uint64_t>> take_staging(uint64_t bytes);
  // 503 kv_staging_full (or kv_full): no room now, try elsewhere or later.
  static void send_no_room(protocol::ResponseWriter& w, bool staging, std::string_view side);
  void role_route(const protocol::HttpRequest& req, protocol::ResponseWriter& w);
  void finish_role_change();
  std::string role_status() const;  // GET /internal/role's body
  size_t in_flight();
  // Draining for a role change: new work is refused with 503 changing_role.
  bool draining() const { return draining_.load(); }
  void send_changing_role(protocol::ResponseWriter& w);

  // cuda-ipc: the device staging area (owned memory, type-erased so this
  // header needs no CUDA), its registration and the slices it hands out.
  // Declared before the transport, which must go first.
  std::shared_ptr<void> staging_memory_;
  std::unique_ptr<engine::KvStagingArena> staging_;
  kvtransfer::MemoryHandle staging_handle_;
  Gauge* staging_used_ = nullptr;
  std::unique_ptr<kvtransfer::KvTransport> transport_;
  std::string kv_endpoint_;
  std::unique_ptr<ThreadPool> workers_;
  std::mutex pd_mu_;
  std::unordered_map<uint64_t, PendingImport> imports_;       // by transfer id
  std::unordered_map<uint64_t, uint64_t> import_of_receive_;  // local id -> transfer id
  std::unordered_map<uint64_t, PendingSend> sends_;           // by local send id
  // Receives cancelled after their request ended: buffer and registration
  // kept until the transport reports the receive finished; by local id.
  std::unordered_map<uint64_t,
                     std::pair<std::shared_ptr<engine::KvBuffer>, kvtransfer::MemoryHandle>>
      draining_receives_;
  // Owns every prefill call until end_prefill(); by transfer id.
  std::unordered_map<uint64_t, std::shared_ptr<PrefillCall>> prefills_;
  std::atomic<uint64_t> next_transfer_{1};
  Clock::time_point next_lease_check_{};  // output pump only
  std::atomic<Role> role_{Role::kMixed};
  std::atomic<bool> draining_{false};
  mutable std::mutex role_mu_;  // guards the change under way
  Role target_role_ = Role::kMixed;
  Clock::time_point drain_deadline_;
  std::map<Role, Gauge*> role_gauges_;
  HistogramFamily* breakdown_ = nullptr;
  Histogram* prefill_ttft_ = nullptr;  // prefill instances: queue + prefill to the first token
  Histogram* itl_ = nullptr;
  Histogram* transfer_time_ = nullptr;
  Counter* transfer_bytes_ = nullptr;
  CounterFamily* pd_outcomes_ = nullptr;

  ServerOptions options_;
  AdmissionController admission_;
  MetricsRegistry metrics_;
  Gauge *running_, *waiting_, *kv_usage_, *prefix_hit_, *preemptions_;
  Counter *prompt_tokens_, *generation_tokens_;
  Histogram *ttft_, *tpot_, *e2e_, *queue_;
  CounterFamily *success_, *rejected_;
  std::unique_ptr<protocol::HttpServer> http_;
  std::unique_ptr<engine::Engine> engine_;
  ModelContext ctx_;
  std::atomic<bool> ready_{false};
  std::atomic<bool> stopped_{false};
  BoundedQueue<std::shared_ptr<Call>> ready_queue_;
  std::mutex active_mu_;
  std::unordered_map<Call*, std::shared_ptr<Call>> active_;
  std::thread pump_;
  const uint64_t id_base_ = std::random_device{}() * 0x9E3779B97F4A7C15ull;
  std::atomic<uint64_t> next_id_{1};
};

}  // namespace baton::server
