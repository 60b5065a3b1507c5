#include "bench/serving/runner.h"

#include <fmt/format.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <ctime>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "protocol/http_client.h"

namespace baton::bench {

namespace net = boost::asio;

std::string request_body(const std::vector<ChatMessage>& messages, int max_tokens,
                         const RunOptions& options) {
  nlohmann::json j;
  j["model"] = options.model;
  if (options.api == Api::kChat) {
    nlohmann::json list = nlohmann::json::array();
    for (const ChatMessage& m : messages)
      list.push_back({{"role", m.role}, {"content", m.content}});
    j["messages"] = std::move(list);
    j["max_completion_tokens"] = max_tokens;
  } else {
    std::string prompt;
    for (const ChatMessage& m : messages) {
      if (!prompt.empty() && !m.content.empty()) prompt += ' ';
      prompt += m.content;
    }
    j["prompt"] = std::move(prompt);
    j["max_tokens"] = max_tokens;
  }
  j["stream"] = true;
  j["stream_options"] = {{"include_usage", true}};
  if (options.ignore_eos) j["ignore_eos"] = true;
  if (options.temperature) j["temperature"] = *options.temperature;
  return j.dump();
}

std::string request_body(const RequestSpec& spec, const RunOptions& options) {
  return request_body({{"user", prompt_text(spec, options.seed)}}, spec.output_len, options);
}

std::string new_message_text(const RequestSpec& spec, int words, uint64_t seed) {
  std::string text = prompt_text(spec, seed);
  size_t at = text.size();
  for (int n = 0; n < words && at > 0; ++n) {
    size_t space = text.rfind(' ', at - 1);
    at = space == std::string::npos ? 0 : space;
  }
  return text.substr(at == 0 ? 0 : at + 1);
}

namespace {

std::string iso_utc(Clock::SystemTime t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  // Milliseconds, so that other logs (a controller's decisions) can be placed
  // on the run's time axis.
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return std::string(buf) + "." +
         fmt::format("{:03d}", static_cast<int>(((ms % 1000) + 1000) % 1000)) + "Z";
}

// One pass over a list of specs on the io_context's thread.
class Phase {
 public:
  Phase(net::io_context& ioc, StreamingClient& client, const RunOptions& options,
        const std::vector<RequestSpec>& specs, bool timed, const Clock& clock)
      : ioc_(ioc),
        client_(client),
        options_(options),
        specs_(specs),
        timed_(timed),
        clock_(clock),
        timer_(ioc),
        records_(specs.size()) {}

  void run() {
    if (specs_.empty()) return;
    t0_ = clock_.now();
    net::post(ioc_, [this] { release_due(); });
    ioc_.restart();
    ioc_.run();
    end_ = clock_.now();
  }

  std::vector<RequestRecord>& records() { return records_; }
  double duration_s() const { return std::chrono::duration<double>(end_ - t0_).count(); }
  int64_t peak_in_flight() const { return peak_; }

 private:
  double due_at(size_t i) const { return timed_ ? specs_[i].arrival_s : 0.0; }

  // Moves every due request to the queue, sends what the limit allows, and
  // sets the timer for the next arrival.
  void release_due() {
    double now = std::chrono::duration<double>(clock_.now() - t0_).count();
    while (next_ < specs_.size() && due_at(next_) <= now) waiting_.push_back(next_++);
    pump();
    if (next_ < specs_.size()) {
      auto at = t0_ + std::chrono::duration_cast<Clock::Duration>(
                          std::chrono::duration<double>(due_at(next_)));
      timer_.expires_at(at);
      timer_.async_wait([this](boost::system::error_code ec) {
        if (!ec) release_due();
      });
    }
  }

  void pump() {
    while (!waiting_.empty() &&
           (options_.max_concurrency <= 0 || in_flight_ < options_.max_concurrency)) {
      size_t i = waiting_.front();
      waiting_.pop_front();
      int64_t c = specs_[i].conversation;
      if (c >= 0) {
        // A turn goes only after the previous turn of its conversation has
        // ended: its prompt holds that turn's answer.
        Conversation& conv = conversations_[c];
        if (conv.busy) {
          conv.parked.push_back(i);
          continue;
        }
        conv.busy = true;
      }
      send(i);
    }
  }

  // The messages of request i: its own prompt, or for a later turn of a
  // conversation the history as it happened (earlier prompts and the
  // answers the server gave) and a new user message of the words the turn
  // adds.
  std::vector<ChatMessage> messages_for(size_t i) {
    const RequestSpec& spec = specs_[i];
    if (spec.conversation < 0) return {{"user", prompt_text(spec, options_.seed)}};
    Conversation& conv = conversations_[spec.conversation];
    if (conv.history.empty()) return {{"user", prompt_text(spec, options_.seed)}};
    std::vector<ChatMessage> m = conv.history;
    int fresh = std::max(1, spec.input_len - conv.last_input_len - conv.last_output_len);
    m.push_back({"user", new_message_text(spec, fresh, options_.seed)});
    return m;
  }

  void on_turn_done(size_t i, const std::vector<ChatMessage>& sent, const RequestRecord& r) {
    Conversation& conv = conversations_[specs_[i].conversation];
    conv.busy = false;
    conv.history = sent;
    conv.history.push_back({"assistant", r.generated_text});
    conv.last_input_len = specs_[i].input_len;
    conv.last_output_len = specs_[i].output_len;
    if (!conv.parked.empty()) {
      // Already due: it goes before anything that became due after it.
      waiting_.push_front(conv.parked.front());
      conv.parked.pop_front();
    }
  }

  void send(size_t i) {
    const RequestSpec& spec = specs_[i];
    RequestRecord record;
    record.id = spec.id;
    record.scenario = spec.scenario;
    record.phase = spec.phase;
    record.scheduled_s = due_at(i);
    record.input_len = spec.input_len;
    record.output_len = spec.output_len;
    protocol::Headers headers = options_.headers;
    if (!spec.scenario.empty()) headers.emplace_back(kScenarioHeader, spec.scenario);
    ++in_flight_;
    peak_ = std::max(peak_, in_flight_);
    auto messages = std::make_shared<std::vector<ChatMessage>>(messages_for(i));
    client_.send(request_body(*messages, spec.output_len, options_), std::move(headers), t0_,
                 std::move(record), [this, i, messages](RequestRecord r) {
                   if (specs_[i].conversation >= 0) on_turn_done(i, *messages, r);
                   records_[i] = std::move(r);
                   --in_flight_;
                   ++finished_;
                   pump();
                 });
  }

  net::io_context& ioc_;
  StreamingClient& client_;
  const RunOptions& options_;
  const std::vector<RequestSpec>& specs_;
  bool timed_;
  const Clock& clock_;
  net::steady_timer timer_;
  std::vector<RequestRecord> records_;
  Clock::TimePoint t0_, end_;
  size_t next_ = 0;
  std::deque<size_t> waiting_;
  struct Conversation {
    bool busy = false;                 // a turn is in flight
    std::deque<size_t> parked;         // due turns waiting for it
    std::vector<ChatMessage> history;  // as sent and answered so far
    int last_input_len = 0, last_output_len = 0;
  };
  std::unordered_map<int64_t, Conversation> conversations_;
  int64_t in_flight_ = 0, peak_ = 0, finished_ = 0;
};

}  // namespace

Result<RunResult> run_benchmark(const std::vector<RequestSpec>& specs, const RunOptions& options,
                                const Clock& clock) {
  net::io_context ioc;
  BATON_ASSIGN_OR_RETURN(auto client, StreamingClient::create(ioc, options.endpoint, options.api,
                                                              options.timeout, clock));
  if (options.num_warmups > 0 && !specs.empty()) {
    std::vector<RequestSpec> warm;
    for (int i = 0; i < options.num_warmups; ++i) warm.push_back(specs[i % specs.size()]);
    Phase(ioc, *client, options, warm, /*timed=*/false, clock).run();
  }
  RunResult result;
  result.started_at = iso_utc(clock.wall_now());
  Phase phase(ioc, *client, options, specs, /*timed=*/true, clock);
  phase.run();
  result.records = std::move(phase.records());
  result.duration_s = phase.duration_s();
  result.peak_in_flight = phase.peak_in_flight();
  return result;
}

Result<std::string> discover_model(const Endpoint& endpoint, std::chrono::milliseconds timeout) {
  std::string prefix;
  if (size_t v1 = endpoint.path.find("/v1/"); v1 != std::string::npos) {
    prefix = endpoint.path.substr(0, v1);
  }
  auto r = protocol::http_request(endpoint.host, endpoint.port, "GET", prefix + "/v1/models", "",
                                  {}, protocol::deadline_in(timeout));
  if (!r.is_ok()) return r.status().with_context("GET /v1/models");
  if (r->status != 200) {
    return unavailable("GET /v1/models answered " + std::to_string(r->status) + ": " + r->body);
  }
  nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
  if (j.is_discarded() || !j.contains("data") || !j["data"].is_array() || j["data"].empty() ||
      !j["data"][0].contains("id") || !j["data"][0]["id"].is_string()) {
    return data_error("GET /v1/models: no model id in " + r->body);
  }
  return j["data"][0]["id"].get<std::string>();
}

}  // namespace baton::bench
