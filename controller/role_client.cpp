#include "controller/role_client.h"

#include <nlohmann/json.hpp>

namespace baton::controller {

using Json = nlohmann::json;

Result<RoleStatus> parse_role_status(std::string_view json) {
  Json j = Json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Status(StatusCode::kBadGateway, "role status: not a JSON object");
  }
  auto bad = [](std::string_view field) {
    return Status(StatusCode::kBadGateway, "role status: bad or missing " + std::string(field));
  };
  RoleStatus s;
  if (!j.contains("role") || !j["role"].is_string()) return bad("role");
  auto role = parse_role(j["role"].get<std::string>());
  if (!role.is_ok()) return bad("role");
  s.role = *role;
  std::string state = j.value("state", std::string("serving"));
  if (state != "serving" && state != "draining") return bad("state");
  s.draining = state == "draining";
  if (j.contains("target") && j["target"].is_string()) {
    auto target = parse_role(j["target"].get<std::string>());
    if (!target.is_ok()) return bad("target");
    s.target = *target;
  }
  if (j.contains("in_flight") && j["in_flight"].is_number_integer()) {
    s.in_flight = j["in_flight"].get<int64_t>();
  }
  return s;
}

namespace {

Status http_failure(int status, const std::string& body, std::string_view what) {
  std::string message = "HTTP " + std::to_string(status);
  Json j = Json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_object()) {
    message += ": " + j["error"].value("message", std::string());
  }
  StatusCode code = code_from_http(status);
  if (status == 404 || status == 405 || status == 501) code = StatusCode::kUnimplemented;
  return Status(code, std::string(what) + ": " + message);
}

}  // namespace

Result<RoleStatus> request_role_change(const Member& member, std::string_view token, Role to,
                                       std::chrono::milliseconds drain_timeout,
                                       std::string_view reason, protocol::HttpDeadline deadline) {
  Json body = {{"role", std::string(role_name(to))},
               {"drain_timeout_ms", drain_timeout.count()},
               {"reason", std::string(reason)}};
  protocol::Headers headers = {{"Content-Type", "application/json"},
                               {std::string(kClusterTokenHeader), std::string(token)}};
  auto r = protocol::http_request(member.host, member.port, "POST", kRolePath, body.dump(), headers,
                                  deadline);
  const std::string what = "role change of " + member.id;
  if (!r.is_ok()) return r.status().with_context(what);
  if (r->status != 200 && r->status != 202) return http_failure(r->status, r->body, what);
  return parse_role_status(r->body);
}

Result<RoleStatus> get_role_status(const Member& member, std::string_view token,
                                   protocol::HttpDeadline deadline) {
  protocol::Headers headers = {{std::string(kClusterTokenHeader), std::string(token)}};
  auto r =
      protocol::http_request(member.host, member.port, "GET", kRolePath, "", headers, deadline);
  const std::string what = "role of " + member.id;
  if (!r.is_ok()) return r.status().with_context(what);
  if (r->status != 200) return http_failure(r->status, r->body, what);
  return parse_role_status(r->body);
}

}  // namespace baton::controller
