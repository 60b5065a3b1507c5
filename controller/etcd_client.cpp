#include "controller/etcd_client.h"

#include <array>
#include <charconv>
#include <nlohmann/json.hpp>
#include <optional>

namespace baton::controller {

using Json = nlohmann::json;

namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// etcd's gateway writes int64 fields as strings, but accept numbers too.
int64_t int_field(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    int64_t v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return 0;
}

Result<Json> parse_json(std::string_view text, std::string_view what) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status(StatusCode::kBadGateway, "etcd " + std::string(what) + ": not a JSON object");
  }
  return j;
}

// An {"error": ..., "code": N} body or a {"result": {"error": ...}} element.
Status etcd_error(const Json& j, std::string_view what) {
  // Read each field only when it has the expected type: during an etcd
  // restart "error" is an object, and json::value() would throw on it.
  auto string_at = [](const Json& o, const char* key) -> std::optional<std::string> {
    if (!o.is_object()) return std::nullopt;
    auto it = o.find(key);
    if (it == o.end() || !it->is_string()) return std::nullopt;
    return it->get<std::string>();
  };
  std::string message = string_at(j, "message")
                            .value_or(string_at(j, "error").value_or(std::string("unknown error")));
  if (j.is_object() && j.contains("error") && j["error"].is_object()) {
    message = string_at(j["error"], "message").value_or(message);
  }
  StatusCode code = StatusCode::kBadGateway;
  if (message.find("not found") != std::string::npos) code = StatusCode::kNotFound;
  if (message.find("compacted") != std::string::npos) code = StatusCode::kConflict;
  return Status(code, "etcd " + std::string(what) + ": " + message);
}

Result<EtcdKeyValue> parse_kv(const Json& kv) {
  EtcdKeyValue out;
  BATON_ASSIGN_OR_RETURN(out.key, base64_decode(kv.value("key", std::string())));
  BATON_ASSIGN_OR_RETURN(out.value, base64_decode(kv.value("value", std::string())));
  out.mod_revision = int_field(kv, "mod_revision");
  out.lease = int_field(kv, "lease");
  return out;
}

}  // namespace

std::string base64_encode(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t v = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int s = 18; s >= 0; s -= 6) out += kAlphabet[(v >> s) & 63];
  }
  size_t rest = bytes.size() - i;
  if (rest > 0) {
    uint32_t v = uint8_t(bytes[i]) << 16;
    if (rest == 2) v |= uint8_t(bytes[i + 1]) << 8;
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

Result<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return invalid_argument("base64: length is not a multiple of 4");
  std::array<int, 256> rev;
  rev.fill(-1);
  for (size_t k = 0; k < kAlphabet.size(); ++k) rev[uint8_t(kAlphabet[k])] = static_cast<int>(k);
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
        v <<= 6;
        continue;
      }
      if (pad > 0 || rev[uint8_t(c)] < 0) return invalid_argument("base64: bad character");
      v = (v << 6) | static_cast<uint32_t>(rev[uint8_t(c)]);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
  }
  return out;
}

std::string prefix_range_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<uint8_t>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<uint8_t>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

Result<EtcdEndpoint> parse_etcd_endpoint(std::string_view url) {
  if (url.starts_with("https://")) {
    return invalid_argument("etcd endpoint " + std::string(url) + ": https is not supported");
  }
  if (url.starts_with("http://")) url.remove_prefix(7);
  while (url.ends_with('/')) url.remove_suffix(1);
  EtcdEndpoint e;
  size_t colon = url.rfind(':');
  if (colon == std::string_view::npos) {
    e.host = std::string(url);
  } else {
    e.host = std::string(url.substr(0, colon));
    std::string_view p = url.substr(colon + 1);
    unsigned v = 0;
    auto [ptr, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (ec != std::errc() || ptr != p.data() + p.size() || v == 0 || v > 65535) {
      return invalid_argument("etcd endpoint " + std::string(url) + ": bad port");
    }
    e.port = static_cast<uint16_t>(v);
  }
  if (e.host.empty()) return invalid_argument("etcd endpoint: empty host");
  return e;
}

EtcdClient::EtcdClient(EtcdEndpoint endpoint, std::chrono::milliseconds request_timeout)
    : endpoint_(std::move(endpoint)),
      timeout_(request_timeout),
      http_(std::make_unique<protocol::HttpClient>(endpoint_.host, endpoint_.port)) {}

EtcdClient::~EtcdClient() = default;

Result<std::string> EtcdClient::call(std::string_view path, const std::string& body) {
  auto r = http_->request("POST", path, body, {{"Content-Type", "application/json"}},
                          protocol::deadline_in(timeout_));
  if (!r.is_ok()) return r.status().with_context("etcd " + std::string(path));
  if (r->status != 200) {
    auto j = Json::parse(r->body, nullptr, false);
    if (!j.is_discarded() && j.is_object()) return etcd_error(j, path);
    return Status(StatusCode::kBadGateway,
                  "etcd " + std::string(path) + ": HTTP " + std::to_string(r->status));
  }
  return std::move(r->body);
}

Result<EtcdLease> EtcdClient::grant_lease(int64_t ttl_s) {
  Json req = {{"TTL", ttl_s}};
  BATON_ASSIGN_OR_RETURN(std::string body, call("/v3/lease/grant", req.dump()));
  BATON_ASSIGN_OR_RETURN(Json j, parse_json(body, "lease grant"));
  if (j.contains("error") && !j["error"].is_null() && j["error"] != "") {
    return etcd_error(j, "lease grant");
  }
  EtcdLease lease{int_field(j, "ID"), int_field(j, "TTL")};
  if (lease.id == 0) return Status(StatusCode::kBadGateway, "etcd lease grant: no lease id");
  return lease;
}

Result<int64_t> EtcdClient::keep_alive(int64_t lease_id) {
  // A bidirectional stream in gRPC; through the gateway one request body gives
  // one answer and the stream ends.
  Json req = {{"ID", std::to_string(lease_id)}};
  BATON_ASSIGN_OR_RETURN(std::string body, call("/v3/lease/keepalive", req.dump()));
  size_t nl = body.find('\n');
  BATON_ASSIGN_OR_RETURN(Json j, parse_json(body.substr(0, nl), "lease keepalive"));
  if (j.contains("error")) return etcd_error(j, "lease keepalive");
  const Json& result = j.contains("result") ? j["result"] : j;
  int64_t ttl = int_field(result, "TTL");
  if (ttl <= 0) {
    return not_found("etcd lease " + std::to_string(lease_id) + ": expired or unknown");
  }
  return ttl;
}

Status EtcdClient::revoke_lease(int64_t lease_id) {
  Json req = {{"ID", std::to_string(lease_id)}};
  auto body = call("/v3/lease/revoke", req.dump());
  if (!body.is_ok() && body.status().code() != StatusCode::kNotFound) return body.status();
  return Status::ok();
}

Result<int64_t> EtcdClient::put(std::string_view key, std::string_view value, int64_t lease_id) {
  Json req = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease_id != 0) req["lease"] = std::to_string(lease_id);
  BATON_ASSIGN_OR_RETURN(std::string body, call("/v3/kv/put", req.dump()));
  BATON_ASSIGN_OR_RETURN(Json j, parse_json(body, "put"));
  return j.contains("header") ? int_field(j["header"], "revision") : int64_t{0};
}

Status EtcdClient::delete_key(std::string_view key) {
  Json req = {{"key", base64_encode(key)}};
  return call("/v3/kv/deleterange", req.dump()).status();
}

Result<EtcdRange> EtcdClient::range_prefix(std::string_view prefix) {
  Json req = {{"key", base64_encode(prefix)},
              {"range_end", base64_encode(prefix_range_end(prefix))}};
  BATON_ASSIGN_OR_RETURN(std::string body, call("/v3/kv/range", req.dump()));
  BATON_ASSIGN_OR_RETURN(Json j, parse_json(body, "range"));
  EtcdRange out;
  if (j.contains("header")) out.revision = int_field(j["header"], "revision");
  if (j.contains("kvs") && j["kvs"].is_array()) {
    for (const Json& kv : j["kvs"]) {
      BATON_ASSIGN_OR_RETURN(EtcdKeyValue v, parse_kv(kv));
      out.kvs.push_back(std::move(v));
    }
  }
  return out;
}

Result<int64_t> EtcdClient::watch_prefix(std::string_view prefix, int64_t start_revision,
                                         protocol::HttpDeadline deadline,
                                         const EtcdWatchCallback& on_events) {
  Json create = {{"key", base64_encode(prefix)},
                 {"range_end", base64_encode(prefix_range_end(prefix))}};
  if (start_revision > 0) create["start_revision"] = std::to_string(start_revision);
  Json req = {{"create_request", create}};
  int64_t resume = start_revision;
  std::string pending;
  Status failure;
  bool stopped = false;
  // The gateway writes one JSON object per line.
  auto handle_line = [&](std::string_view line) -> bool {
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) return true;
    auto parsed = parse_json(line, "watch");
    if (!parsed.is_ok()) {
      failure = parsed.status();
      return false;
    }
    const Json& j = *parsed;
    if (j.contains("error")) {
      failure = etcd_error(j, "watch");
      return false;
    }
    const Json& result = j.contains("result") ? j["result"] : j;
    if (int_field(result, "compact_revision") > 0) {
      failure = Status(StatusCode::kConflict,
                       "etcd watch: compacted past revision " + std::to_string(start_revision));
      return false;
    }
    if (result.value("canceled", false)) {
      failure = Status(StatusCode::kBadGateway,
                       "etcd watch: canceled: " + result.value("cancel_reason", std::string()));
      return false;
    }
    if (!result.contains("events") || !result["events"].is_array()) return true;
    std::vector<EtcdWatchEvent> events;
    for (const Json& e : result["events"]) {
      EtcdWatchEvent ev;
      ev.deleted = e.value("type", std::string()) == "DELETE";
      auto kv = parse_kv(e.value("kv", Json::object()));
      if (!kv.is_ok()) {
        failure = kv.status();
        return false;
      }
      ev.kv = std::move(*kv);
      resume = std::max(resume, ev.kv.mod_revision + 1);
      events.push_back(std::move(ev));
    }
    if (!events.empty() && !on_events(events)) {
      stopped = true;
      return false;
    }
    return true;
  };
  protocol::HttpClient stream_http(endpoint_.host, endpoint_.port);
  auto r =
      stream_http.stream("POST", "/v3/watch", req.dump(), {{"Content-Type", "application/json"}},
                         deadline, [&](std::string_view chunk) {
                           pending.append(chunk);
                           size_t nl;
                           while ((nl = pending.find('\n')) != std::string::npos) {
                             std::string line = pending.substr(0, nl);
                             pending.erase(0, nl + 1);
                             if (!handle_line(line)) return false;
                           }
                           return true;
                         });
  if (!failure.is_ok()) return failure;
  if (stopped) return resume;
  if (!r.is_ok()) {
    if (r.status().code() == StatusCode::kDeadlineExceeded) return resume;
    return r.status().with_context("etcd watch");
  }
  if (r->status != 200) {
    return Status(StatusCode::kBadGateway, "etcd watch: HTTP " + std::to_string(r->status));
  }
  if (!pending.empty() && !handle_line(pending) && !failure.is_ok()) return failure;
  return resume;
}

}  // namespace baton::controller
