#include "server/instance_server.h"

#include <atomic>
#include <chrono>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/bounded_queue.h"
#include "common/logging.h"
#include "protocol/openai_error.h"
#include "protocol/openai_response.h"
#include "protocol/sse.h"
#include "server/request_builder.h"

namespace baton::server {

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::ordered_json;

double secs(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

protocol::FinishReason to_protocol(engine::FinishReason r) {
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

const std::vector<double> kLatencyBuckets = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08,
                                             0.1,   0.25,  0.5,  0.75, 1.0,  2.5,  5.0,
                                             7.5,   10.0,  20.0, 40.0, 80.0};

}  // namespace

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
  }

  uint16_t port() const { return http_ ? http_->port() : 0; }

 private:
  void handle(protocol::HttpRequest req, std::shared_ptr<protocol::ResponseWriter> w) {
    const std::string& path = req.path;
    const bool post = req.method == "POST";
    const bool get = req.method == "GET";
    if (path == "/health" && get) {
      if (ready_.load()) {
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
    Result<PreparedRequest> prepared = [&]() -> Result<PreparedRequest> {
      if (chat) {
        BATON_ASSIGN_OR_RETURN(auto parsed, protocol::parse_chat_request(req.body));
        return prepare_chat(parsed, ctx_);
      }
      BATON_ASSIGN_OR_RETURN(auto parsed, protocol::parse_completion_request(req.body));
      return prepare_completion(parsed, ctx_);
    }();
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
      w->send(
          s.http(), "application/json", body.dump(),
          {{"Retry-After", std::to_string(d.retry_after_s)}, {"x-baton-reject-reason", reason}});
      return;
    }
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
    {
      // The server owns the call until finish(); the engine only holds weak
      // references, so a call never outlives its server.
      std::lock_guard lock(active_mu_);
      active_[call.get()] = call;
    }
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
    call->writer->on_close([this, weak] {
      if (auto c = weak.lock()) {
        c->client_gone.store(true);
        for (auto& s : c->streams) engine_->cancel(s->id());
      }
    });
    // Output that arrived before the streams were recorded is picked up here.
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
              admission_.started(call.req.total_prompt_tokens());
              ttft_->observe(secs(now - call.arrival));
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
    admission_.finished(prompt_tokens, call.first_token.has_value());
    if (call.client_gone.load()) return;

    protocol::Usage usage;
    usage.prompt_tokens = prompt_tokens;
    usage.completion_tokens = completion_tokens;
    if (call.cached_tokens > 0) usage.cached_tokens = call.cached_tokens;
    auto& w = *call.writer;
    if (aborted) {
      // Not the client (it is still here): the engine stopped under it.
      Status s = unavailable("the engine stopped before the request finished");
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
    if (call.req.chat) {
      std::vector<protocol::ChatChoice> out;
      for (size_t i = 0; i < call.choices.size(); ++i) {
        auto& c = call.choices[i];
        out.push_back({static_cast<int32_t>(i), c.text, c.logprobs, c.finish, c.stop_reason});
      }
      w.send(200, "application/json", protocol::chat_completion_response(call.meta, out, usage));
    } else {
      std::vector<protocol::CompletionChoice> out;
      for (size_t i = 0; i < call.choices.size(); ++i) {
        auto& c = call.choices[i];
        out.push_back({static_cast<int32_t>(i), c.text, c.logprobs, 0, c.finish, c.stop_reason});
      }
      w.send(200, "application/json", protocol::completion_response(call.meta, out, usage));
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
  }

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

InstanceServer::InstanceServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
InstanceServer::~InstanceServer() { stop(); }

Result<std::unique_ptr<InstanceServer>> InstanceServer::start(ServerOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  BATON_RETURN_IF_ERROR(impl->start_http());
  return std::unique_ptr<InstanceServer>(new InstanceServer(std::move(impl)));
}

Status InstanceServer::attach_engine(std::unique_ptr<engine::Engine> engine) {
  return impl_->attach(std::move(engine));
}

uint16_t InstanceServer::port() const { return impl_->port(); }

void InstanceServer::stop() {
  if (impl_) impl_->stop();
}

}  // namespace baton::server
