#include "protocol/pd.h"

#include <limits>

#include "protocol/openai_error.h"

namespace baton::protocol::pd {

namespace {

// Typed reads of a message field; errors name the field's path.
class Reader {
 public:
  Reader(const Json& j, std::string path) : j_(j), path_(std::move(path)) {}

  Status object() const {
    return j_.is_object() ? Status::ok()
                          : type_error(path_.empty() ? "body" : path_, "an object", j_);
  }
  std::string at(std::string_view key) const {
    return path_.empty() ? std::string(key) : path_ + "." + std::string(key);
  }
  const Json* find(std::string_view key) const {
    auto it = j_.find(std::string(key));
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  Result<const Json*> required(std::string_view key) const {
    const Json* v = find(key);
    if (v == nullptr) return field_error(at(key), "required");
    return v;
  }
  Result<uint64_t> u64(std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_number_unsigned() && !(v->is_number_integer() && v->get<int64_t>() >= 0)) {
      return type_error(at(key), "a non-negative integer", *v);
    }
    return v->get<uint64_t>();
  }
  Result<int64_t> i64(std::string_view key, int64_t lo, int64_t hi) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_number_integer()) return type_error(at(key), "an integer", *v);
    const auto x = v->get<int64_t>();
    if (x < lo || x > hi) {
      return field_error(at(key),
                         "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
    }
    return x;
  }
  Result<double> number(std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_number()) return type_error(at(key), "a number", *v);
    return v->get<double>();
  }
  Result<std::string> string(std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_string()) return type_error(at(key), "a string", *v);
    return v->get<std::string>();
  }
  Result<bool> boolean(std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_boolean()) return type_error(at(key), "a boolean", *v);
    return v->get<bool>();
  }
  Result<const Json*> array(std::string_view key) const {
    BATON_ASSIGN_OR_RETURN(const Json* v, required(key));
    if (!v->is_array()) return type_error(at(key), "an array", *v);
    return v;
  }

 private:
  const Json& j_;
  std::string path_;
};

constexpr int64_t kI32Max = std::numeric_limits<int32_t>::max();

Result<TicketEntry> parse_entry(const Json& j, const std::string& path) {
  Reader r(j, path);
  BATON_RETURN_IF_ERROR(r.object());
  TicketEntry e;
  BATON_ASSIGN_OR_RETURN(e.transfer_id, r.u64("transfer_id"));
  BATON_ASSIGN_OR_RETURN(const Json* ids, r.array("prompt_token_ids"));
  if (ids->empty()) return field_error(r.at("prompt_token_ids"), "must not be empty");
  e.prompt_token_ids.reserve(ids->size());
  for (const Json& t : *ids) {
    if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > kI32Max) {
      return field_error(r.at("prompt_token_ids"), "every entry must be a token id");
    }
    e.prompt_token_ids.push_back(t.get<int32_t>());
  }
  BATON_ASSIGN_OR_RETURN(int64_t cached, r.i64("cached_tokens", 0, kI32Max));
  if (cached >= static_cast<int64_t>(e.prompt_token_ids.size())) {
    return field_error(r.at("cached_tokens"), "must be below the prompt length");
  }
  e.cached_tokens = static_cast<int32_t>(cached);
  BATON_ASSIGN_OR_RETURN(e.seed, r.u64("seed"));
  return e;
}

// The "api" and "body" members every coordinator request carries.
Status read_api_and_body(const Reader& r, Api& api, Json& body) {
  BATON_ASSIGN_OR_RETURN(std::string name, r.string("api"));
  BATON_ASSIGN_OR_RETURN(api, parse_api(name));
  BATON_ASSIGN_OR_RETURN(const Json* b, r.required("body"));
  if (!b->is_object()) return type_error("body", "an object", *b);
  body = *b;
  return Status::ok();
}

Result<FirstToken> parse_first_token(const Json& j, const std::string& path) {
  Reader r(j, path);
  BATON_RETURN_IF_ERROR(r.object());
  FirstToken t;
  BATON_ASSIGN_OR_RETURN(int64_t p, r.i64("prompt_index", 0, kI32Max));
  BATON_ASSIGN_OR_RETURN(int64_t s, r.i64("seq_index", 0, kI32Max));
  BATON_ASSIGN_OR_RETURN(int64_t tok, r.i64("token", 0, kI32Max));
  t.prompt_index = static_cast<int32_t>(p);
  t.seq_index = static_cast<int32_t>(s);
  t.token = static_cast<int32_t>(tok);
  BATON_ASSIGN_OR_RETURN(double lp, r.number("logprob"));
  t.logprob = static_cast<float>(lp);
  if (const Json* top = r.find("top_logprobs")) {
    if (!top->is_array()) return type_error(r.at("top_logprobs"), "an array", *top);
    for (const Json& e : *top) {
      // The id's range is checked as token's is: get<int32_t>() would wrap.
      if (!e.is_array() || e.size() != 2 || !e[0].is_number_integer() || !e[1].is_number() ||
          e[0].get<int64_t>() < 0 || e[0].get<int64_t>() > kI32Max) {
        return field_error(r.at("top_logprobs"), "entries must be [token id, logprob]");
      }
      t.top_logprobs.emplace_back(e[0].get<int32_t>(), e[1].get<float>());
    }
  }
  if (const Json* f = r.find("finish_reason")) {
    if (!f->is_string()) return type_error(r.at("finish_reason"), "a string", *f);
    t.finish_reason = f->get<std::string>();
    if (!t.finish_reason.empty() && t.finish_reason != "stop" && t.finish_reason != "length") {
      return field_error(r.at("finish_reason"), "must be \"\", \"stop\" or \"length\"");
    }
  }
  return t;
}

}  // namespace

std::string_view role_name(Role r) {
  switch (r) {
    case Role::kPrefill:
      return "prefill";
    case Role::kDecode:
      return "decode";
    case Role::kMixed:
      break;
  }
  return "mixed";
}

Result<Role> parse_role(std::string_view name) {
  if (name == "mixed") return Role::kMixed;
  if (name == "prefill") return Role::kPrefill;
  if (name == "decode") return Role::kDecode;
  return invalid_argument("role: must be prefill, decode or mixed, got \"" + std::string(name) +
                          "\"");
}

std::string_view api_name(Api a) {
  return a == Api::kChatCompletions ? "chat.completions" : "completions";
}

std::string_view api_path(Api a) {
  return a == Api::kChatCompletions ? "/v1/chat/completions" : "/v1/completions";
}

Result<Api> parse_api(std::string_view name) {
  if (name == "completions") return Api::kCompletions;
  if (name == "chat.completions") return Api::kChatCompletions;
  return field_error("api", "must be \"completions\" or \"chat.completions\"");
}

Json to_json(const KvShape& m) {
  return Json{{"num_layers", m.num_layers},
              {"num_kv_heads", m.num_kv_heads},
              {"head_dim", m.head_dim},
              {"dtype_size", m.dtype_size}};
}

Json to_json(const DecodeRequest& m) {
  return Json{{"api", api_name(m.api)}, {"body", m.body}, {"lease_ms", m.lease_ms}};
}

Json to_json(const TicketEntry& m) {
  return Json{{"transfer_id", m.transfer_id},
              {"prompt_token_ids", m.prompt_token_ids},
              {"cached_tokens", m.cached_tokens},
              {"seed", m.seed}};
}

Json to_json(const Ticket& m) {
  Json entries = Json::array();
  for (const auto& e : m.entries) entries.push_back(to_json(e));
  return Json{{"kv_endpoint", m.kv_endpoint},
              {"kv_shape", to_json(m.kv_shape)},
              {"lease_ms", m.lease_ms},
              {"entries", std::move(entries)}};
}

Json to_json(const PrefillRequest& m) {
  return Json{{"api", api_name(m.api)},
              {"body", m.body},
              {"ticket", to_json(m.ticket)},
              {"decode_address", m.decode_address}};
}

Json to_json(const FirstToken& m) {
  Json j{{"prompt_index", m.prompt_index},
         {"seq_index", m.seq_index},
         {"token", m.token},
         {"logprob", m.logprob}};
  if (!m.top_logprobs.empty()) {
    Json top = Json::array();
    for (const auto& [id, lp] : m.top_logprobs) top.push_back(Json::array({id, lp}));
    j["top_logprobs"] = std::move(top);
  }
  j["finish_reason"] = m.finish_reason;
  return j;
}

Json to_json(const FirstTokens& m) {
  Json tokens = Json::array();
  for (const auto& t : m.tokens) tokens.push_back(to_json(t));
  return Json{{"transfer_id", m.transfer_id},
              {"tokens", std::move(tokens)},
              {"kv_follows", m.kv_follows},
              {"queue_s", m.queue_s},
              {"prefill_s", m.prefill_s}};
}

Json to_json(const PrefillDone& m) {
  return Json{{"kv_bytes", m.kv_bytes}, {"transfer_s", m.transfer_s}};
}

Json to_json(const AbortRequest& m) {
  return Json{{"transfer_id", m.transfer_id}, {"reason", m.reason}};
}

Result<KvShape> parse_kv_shape(const Json& j) {
  Reader r(j, "kv_shape");
  BATON_RETURN_IF_ERROR(r.object());
  KvShape m;
  BATON_ASSIGN_OR_RETURN(m.num_layers, r.i64("num_layers", 1, kI32Max));
  BATON_ASSIGN_OR_RETURN(m.num_kv_heads, r.i64("num_kv_heads", 1, kI32Max));
  BATON_ASSIGN_OR_RETURN(m.head_dim, r.i64("head_dim", 1, kI32Max));
  BATON_ASSIGN_OR_RETURN(m.dtype_size, r.i64("dtype_size", 1, 8));
  return m;
}

Result<DecodeRequest> parse_decode_request(const Json& j) {
  Reader r(j, "");
  BATON_RETURN_IF_ERROR(r.object());
  DecodeRequest m;
  BATON_RETURN_IF_ERROR(read_api_and_body(r, m.api, m.body));
  if (r.find("lease_ms") != nullptr) {
    BATON_ASSIGN_OR_RETURN(m.lease_ms, r.i64("lease_ms", 1, 3600 * 1000));
  }
  return m;
}

Result<Ticket> parse_ticket(const Json& j) {
  Reader r(j, "ticket");
  BATON_RETURN_IF_ERROR(r.object());
  Ticket m;
  BATON_ASSIGN_OR_RETURN(m.kv_endpoint, r.string("kv_endpoint"));
  BATON_ASSIGN_OR_RETURN(const Json* shape, r.required("kv_shape"));
  BATON_ASSIGN_OR_RETURN(m.kv_shape, parse_kv_shape(*shape));
  BATON_ASSIGN_OR_RETURN(m.lease_ms, r.i64("lease_ms", 0, 3600 * 1000));
  BATON_ASSIGN_OR_RETURN(const Json* entries, r.array("entries"));
  if (entries->empty()) return field_error("ticket.entries", "must not be empty");
  for (size_t i = 0; i < entries->size(); ++i) {
    BATON_ASSIGN_OR_RETURN(TicketEntry e,
                           parse_entry((*entries)[i], "ticket.entries[" + std::to_string(i) + "]"));
    m.entries.push_back(std::move(e));
  }
  return m;
}

Result<PrefillRequest> parse_prefill_request(const Json& j) {
  Reader r(j, "");
  BATON_RETURN_IF_ERROR(r.object());
  PrefillRequest m;
  BATON_RETURN_IF_ERROR(read_api_and_body(r, m.api, m.body));
  BATON_ASSIGN_OR_RETURN(const Json* ticket, r.required("ticket"));
  BATON_ASSIGN_OR_RETURN(m.ticket, parse_ticket(*ticket));
  BATON_ASSIGN_OR_RETURN(m.decode_address, r.string("decode_address"));
  return m;
}

Result<FirstTokens> parse_first_tokens(const Json& j) {
  Reader r(j, "");
  BATON_RETURN_IF_ERROR(r.object());
  FirstTokens m;
  BATON_ASSIGN_OR_RETURN(m.transfer_id, r.u64("transfer_id"));
  BATON_ASSIGN_OR_RETURN(const Json* tokens, r.array("tokens"));
  for (size_t i = 0; i < tokens->size(); ++i) {
    BATON_ASSIGN_OR_RETURN(FirstToken t,
                           parse_first_token((*tokens)[i], "tokens[" + std::to_string(i) + "]"));
    m.tokens.push_back(std::move(t));
  }
  BATON_ASSIGN_OR_RETURN(m.kv_follows, r.boolean("kv_follows"));
  if (r.find("queue_s") != nullptr) {
    BATON_ASSIGN_OR_RETURN(m.queue_s, r.number("queue_s"));
  }
  if (r.find("prefill_s") != nullptr) {
    BATON_ASSIGN_OR_RETURN(m.prefill_s, r.number("prefill_s"));
  }
  return m;
}

Result<PrefillDone> parse_prefill_done(const Json& j) {
  Reader r(j, "");
  BATON_RETURN_IF_ERROR(r.object());
  PrefillDone m;
  BATON_ASSIGN_OR_RETURN(m.kv_bytes, r.u64("kv_bytes"));
  BATON_ASSIGN_OR_RETURN(m.transfer_s, r.number("transfer_s"));
  return m;
}

Result<AbortRequest> parse_abort_request(const Json& j) {
  Reader r(j, "");
  BATON_RETURN_IF_ERROR(r.object());
  AbortRequest m;
  BATON_ASSIGN_OR_RETURN(m.transfer_id, r.u64("transfer_id"));
  if (r.find("reason") != nullptr) {
    BATON_ASSIGN_OR_RETURN(m.reason, r.string("reason"));
  }
  return m;
}

std::string error_event_data(const Status& s) {
  Json j = error_object(s);
  j["status"] = s.http();
  return j.dump();
}

Status parse_error_event(std::string_view data) {
  Json j = Json::parse(data, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_object() || !j.contains("status") ||
      !j["status"].is_number_integer()) {
    return Status(StatusCode::kBadGateway, "malformed error event: " + std::string(data));
  }
  const auto& e = j["error"];
  std::string message =
      e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
  return Status(code_from_http(j["status"].get<int>()), message);
}

}  // namespace baton::protocol::pd
