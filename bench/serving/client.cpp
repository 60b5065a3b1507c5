#include "bench/serving/client.h"

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "protocol/sse.h"

namespace baton::bench {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;

namespace {
constexpr size_t kReadBuffer = 16 << 10;
constexpr size_t kMaxErrorBody = 4 << 10;  // of a non-200 body kept for the record

double seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

Result<Api> parse_backend(const std::string& name) {
  if (name == "openai") return Api::kCompletions;
  if (name == "openai-chat") return Api::kChat;
  return invalid_argument("backend '" + name + "': expected openai or openai-chat");
}

Result<Endpoint> parse_endpoint(const std::string& base_url, const std::string& path) {
  std::string rest = base_url;
  if (rest.rfind("https://", 0) == 0) {
    return Status(StatusCode::kUnimplemented, "https is not supported by baton bench: " + base_url);
  }
  if (rest.rfind("http://", 0) == 0) rest = rest.substr(7);
  size_t slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  std::string prefix = slash == std::string::npos ? "" : rest.substr(slash);
  while (!prefix.empty() && prefix.back() == '/') prefix.pop_back();
  Endpoint e;
  size_t colon = authority.rfind(':');
  e.host = authority.substr(0, colon);
  if (colon != std::string::npos) {
    try {
      size_t used = 0;
      int port = std::stoi(authority.substr(colon + 1), &used);
      if (used != authority.size() - colon - 1 || port < 1 || port > 65535)
        throw std::out_of_range("");
      e.port = static_cast<uint16_t>(port);
    } catch (const std::exception&) {
      return invalid_argument("base URL '" + base_url + "': bad port");
    }
  }
  if (e.host.empty()) return invalid_argument("base URL '" + base_url + "': no host");
  // A base URL ending in /v1 and an endpoint starting with /v1 name it once.
  std::string p = path.empty() || path[0] != '/' ? "/" + path : path;
  if (prefix.size() >= 3 && prefix.compare(prefix.size() - 3, 3, "/v1") == 0 &&
      p.rfind("/v1/", 0) == 0) {
    prefix.resize(prefix.size() - 3);
  }
  e.path = prefix + p;
  return e;
}

struct StreamingClient::Impl : std::enable_shared_from_this<StreamingClient::Impl> {
  net::io_context& ioc;
  Endpoint endpoint;
  Api api;
  std::chrono::milliseconds timeout;
  const Clock& clock;
  tcp::resolver::results_type resolved;
  std::vector<std::unique_ptr<beast::tcp_stream>> idle;

  Impl(net::io_context& c, Endpoint e, Api a, std::chrono::milliseconds t, const Clock& k)
      : ioc(c), endpoint(std::move(e)), api(a), timeout(t), clock(k) {}
};

namespace {

// One request in flight. Owned by the chain of its own callbacks.
class Call : public std::enable_shared_from_this<Call> {
 public:
  Call(std::shared_ptr<StreamingClient::Impl> client, std::string body, protocol::Headers headers,
       Clock::TimePoint t0, RequestRecord record, StreamingClient::Done done)
      : client_(std::move(client)), t0_(t0), record_(std::move(record)), done_(std::move(done)) {
    const Endpoint& e = client_->endpoint;
    req_.method(http::verb::post);
    req_.target(e.path);
    req_.version(11);
    req_.set(http::field::host, e.host + ":" + std::to_string(e.port));
    req_.set(http::field::content_type, "application/json");
    req_.set(http::field::accept, "text/event-stream");
    for (const auto& [name, value] : headers) req_.insert(name, value);
    req_.body() = std::move(body);
    req_.prepare_payload();
    req_.keep_alive(true);
  }

  void start() {
    sent_ = client_->clock.now();
    deadline_ = sent_ + client_->timeout;
    record_.start_s = seconds(sent_ - t0_);
    if (!client_->idle.empty()) {
      stream_ = std::move(client_->idle.back());
      client_->idle.pop_back();
      reused_ = true;
      write();
    } else {
      connect();
    }
  }

 private:
  void connect() {
    reused_ = false;
    stream_ = std::make_unique<beast::tcp_stream>(client_->ioc);
    stream_->expires_at(deadline_);
    stream_->async_connect(client_->resolved,
                           [self = shared_from_this()](error_code ec, const tcp::endpoint&) {
                             if (ec) return self->fail("connect: " + ec.message());
                             self->write();
                           });
  }

  void write() {
    stream_->expires_at(deadline_);
    http::async_write(*stream_, req_, [self = shared_from_this()](error_code ec, size_t) {
      if (ec) return self->stale_or_fail("write: " + ec.message());
      self->read_header();
    });
  }

  void read_header() {
    parser_.emplace();
    parser_->body_limit(std::numeric_limits<std::uint64_t>::max());
    http::async_read_header(
        *stream_, buffer_, *parser_, [self = shared_from_this()](error_code ec, size_t) {
          if (ec) return self->stale_or_fail("read: " + ec.message());
          self->record_.http_status = static_cast<int>(self->parser_->get().result_int());
          self->read_body();
        });
  }

  // A kept connection the server closed while idle fails before any byte of
  // the response: replay the request once on a fresh connection.
  void stale_or_fail(const std::string& what) {
    if (reused_) {
      buffer_.clear();
      connect();
      return;
    }
    fail(what);
  }

  void read_body() {
    if (parser_->is_done()) return finish();
    auto& body = parser_->get().body();
    body.data = chunk_.data();
    body.size = chunk_.size();
    http::async_read_some(*stream_, buffer_, *parser_,
                          [self = shared_from_this()](error_code ec, size_t) {
                            Clock::TimePoint at = self->client_->clock.now();
                            if (ec == http::error::need_buffer) ec = {};
                            size_t n = self->chunk_.size() - self->parser_->get().body().size;
                            if (n > 0) self->on_bytes(std::string_view(self->chunk_.data(), n), at);
                            if (ec) return self->fail("read: " + ec.message());
                            self->read_body();
                          });
  }

  void on_bytes(std::string_view bytes, Clock::TimePoint at) {
    if (record_.http_status != 200) {
      if (error_body_.size() < kMaxErrorBody) error_body_.append(bytes.substr(0, kMaxErrorBody));
      return;
    }
    events_.clear();
    sse_.feed(bytes, events_);
    for (const protocol::SseEvent& ev : events_) on_event(ev, at);
  }

  void on_event(const protocol::SseEvent& ev, Clock::TimePoint at) {
    if (ev.is_done()) return;
    nlohmann::json j = nlohmann::json::parse(ev.data, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return;
    if (auto e = j.find("error"); e != j.end() && !e->is_null()) {
      server_error_ = e->is_object() ? e->value("message", e->dump()) : e->dump();
      return;
    }
    if (auto c = j.find("choices"); c != j.end() && c->is_array() && !c->empty()) {
      const nlohmann::json& choice = (*c)[0];
      std::string& text = record_.generated_text;
      if (client_->api == Api::kCompletions) {
        if (auto t = choice.find("text"); t != choice.end() && t->is_string()) {
          text += t->get_ref<const std::string&>();
        }
      } else if (auto d = choice.find("delta"); d != choice.end() && d->is_object()) {
        if (auto t = d->find("content"); t != d->end() && t->is_string()) {
          text += t->get_ref<const std::string&>();
        }
      }
      // Every chunk with a choice counts, text or not, as in vLLM: servers
      // stream one chunk per token, and a token may hold no complete
      // character yet.
      {
        if (record_.chunks == 0) {
          record_.ttft_s = seconds(at - sent_);
        } else {
          record_.itl_s.push_back(seconds(at - last_text_));
        }
        last_text_ = at;
        ++record_.chunks;
      }
    }
    if (auto u = j.find("usage"); u != j.end() && u->is_object()) {
      usage_completion_ = u->value("completion_tokens", 0);
      usage_prompt_ = u->value("prompt_tokens", 0);
    }
  }

  void finish() {
    bool keep = parser_->get().keep_alive();
    record_.generated_chars = static_cast<int64_t>(record_.generated_text.size());
    record_.latency_s =
        record_.chunks > 0 ? seconds(last_text_ - sent_) : seconds(client_->clock.now() - sent_);
    record_.prompt_tokens = usage_prompt_ > 0 ? usage_prompt_ : record_.input_len;
    record_.output_tokens =
        usage_completion_ > 0 ? usage_completion_ : static_cast<int>(record_.chunks);
    if (record_.http_status != 200) {
      record_.error = "HTTP " + std::to_string(record_.http_status) + ": " + error_body_;
    } else if (!server_error_.empty()) {
      record_.error = "stream error: " + server_error_;
    } else if (record_.chunks == 0) {
      record_.error = "no chunk with a choice was received";
    }
    record_.success = record_.error.empty();
    if (keep) {
      client_->idle.push_back(std::move(stream_));
    } else {
      close();
    }
    complete();
  }

  void fail(const std::string& what) {
    close();
    record_.success = false;
    record_.error = what;
    record_.latency_s = seconds(client_->clock.now() - sent_);
    record_.prompt_tokens = record_.input_len;
    record_.output_tokens = 0;
    complete();
  }

  void close() {
    if (!stream_) return;
    error_code ignored;
    stream_->socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_->close();
    stream_.reset();
  }

  void complete() {
    if (!done_) return;
    auto done = std::move(done_);
    done_ = nullptr;
    done(std::move(record_));
  }

  std::shared_ptr<StreamingClient::Impl> client_;
  Clock::TimePoint t0_, sent_, deadline_, last_text_;
  RequestRecord record_;
  StreamingClient::Done done_;
  http::request<http::string_body> req_;
  std::unique_ptr<beast::tcp_stream> stream_;
  bool reused_ = false;
  beast::flat_buffer buffer_;
  std::optional<http::response_parser<http::buffer_body>> parser_;
  std::array<char, kReadBuffer> chunk_{};
  protocol::SseParser sse_;
  std::vector<protocol::SseEvent> events_;
  std::string error_body_, server_error_;
  int usage_completion_ = 0, usage_prompt_ = 0;
};

}  // namespace

Result<std::unique_ptr<StreamingClient>> StreamingClient::create(net::io_context& ioc,
                                                                 Endpoint endpoint, Api api,
                                                                 std::chrono::milliseconds timeout,
                                                                 const Clock& clock) {
  auto impl = std::make_shared<Impl>(ioc, std::move(endpoint), api, timeout, clock);
  error_code ec;
  tcp::resolver resolver(ioc);
  impl->resolved = resolver.resolve(impl->endpoint.host, std::to_string(impl->endpoint.port), ec);
  if (ec) {
    return unavailable("cannot resolve '" + impl->endpoint.host + "': " + ec.message());
  }
  return std::unique_ptr<StreamingClient>(new StreamingClient(std::move(impl)));
}

StreamingClient::StreamingClient(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

StreamingClient::~StreamingClient() = default;

void StreamingClient::send(std::string body, protocol::Headers headers, Clock::TimePoint t0,
                           RequestRecord record, Done done) {
  std::make_shared<Call>(impl_, std::move(body), std::move(headers), t0, std::move(record),
                         std::move(done))
      ->start();
}

size_t StreamingClient::idle_connections() const { return impl_->idle.size(); }

}  // namespace baton::bench
