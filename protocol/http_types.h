#pragma once

// Plain HTTP value types shared by the server, the clients and the layers
// above them (OpenAI API, gateway, controller). No I/O and no Beast here, so
// that including this header stays cheap.

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace baton::protocol {

// Header fields in wire order. Names keep the case the peer sent; compare them
// with iequals().
using Headers = std::vector<std::pair<std::string, std::string>>;

// ASCII case-insensitive equality (header names, tokens).
bool iequals(std::string_view a, std::string_view b);

// The first value of header `name` (case-insensitive), or nullopt.
std::optional<std::string_view> find_header(const Headers& headers, std::string_view name);

// One parsed request as a handler sees it. A value: the handler owns it.
struct HttpRequest {
  std::string method;  // "GET", "POST", ... as sent (upper case by convention)
  std::string target;  // the request target as sent: "/v1/models?limit=2"
  std::string path;    // target before '?': "/v1/models"
  std::string query;   // target after '?', without it: "limit=2" ("" when none)
  int version = 11;    // 10 for HTTP/1.0, 11 for HTTP/1.1
  Headers headers;
  std::string body;
  std::string remote_address;  // peer IP as text, e.g. "127.0.0.1"
  uint16_t remote_port = 0;

  // Case-insensitive header lookup; the first value when repeated.
  std::optional<std::string_view> header(std::string_view name) const {
    return find_header(headers, name);
  }
};

// One response as a client sees it.
struct HttpResponse {
  int status = 0;
  Headers headers;
  std::string body;  // decoded (chunked encoding removed); empty for streams

  std::optional<std::string_view> header(std::string_view name) const {
    return find_header(headers, name);
  }
};

// The standard reason phrase for a status ("Not Found"); "Unknown" otherwise.
std::string_view reason_phrase(int status);

}  // namespace baton::protocol
