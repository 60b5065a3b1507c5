#include "protocol/pd_client.h"

#include <thread>

#include "protocol/http_client.h"
#include "protocol/sse.h"

namespace baton::protocol::pd {

namespace {

using Clock = std::chrono::steady_clock;

Headers internal_headers(const std::string& token) {
  return {{"Content-Type", "application/json"}, {std::string(kTokenHeader), token}};
}

double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

Result<PdOutcome> run_pd_request(const PdEndpoint& prefill, const PdEndpoint& decode, Api api,
                                 const Json& body, const PdRequestOptions& options) {
  PdOutcome out;
  const auto t0 = Clock::now();
  const DecodeRequest dr{api, body, options.lease_ms};
  SseParser parser;
  std::string raw;  // the body as sent, for a refusal that is not a stream
  std::thread prefill_thread;
  auto result = http_stream(
      decode.host, decode.port, "POST", kDecodePath, to_json(dr).dump(),
      internal_headers(options.cluster_token), deadline_in(options.timeout),
      [&](std::string_view piece) {
        if (raw.size() < (size_t{1} << 16)) raw.append(piece);
        for (auto& ev : parser.feed(piece)) {
          if (ev.event == kEventTicket) {
            auto ticket = parse_ticket(Json::parse(ev.data, nullptr, false));
            if (!ticket.is_ok()) {
              out.error = ticket.status();
              return false;
            }
            out.ticket = *ticket;
            if (options.on_ticket) options.on_ticket(*ticket);
            if (!options.send_prefill) continue;
            PrefillRequest pr{api, body, *ticket, decode.address()};
            prefill_thread = std::thread([&out, &prefill, &options, pr = std::move(pr)] {
              SseParser pp;
              auto r = http_stream(
                  prefill.host, prefill.port, "POST", kPrefillPath, to_json(pr).dump(),
                  internal_headers(options.cluster_token), deadline_in(options.timeout),
                  [&](std::string_view s) {
                    for (auto& e : pp.feed(s)) {
                      out.prefill_events.push_back(
                          e.event == kEventError ? parse_error_event(e.data).message() : e.event);
                    }
                    return true;
                  });
              if (r.is_ok()) {
                out.prefill_status = r->status;
                if (r->status != 200) out.prefill_events.push_back("rejected");
              } else {
                out.prefill_events.push_back("unreachable: " + r.status().message());
              }
            });
          } else if (ev.event == kEventResponse) {
            out.body = ev.data;
          } else if (ev.event == kEventError) {
            out.error = parse_error_event(ev.data);
          } else if (!ev.is_done()) {
            if (out.ttft_s < 0) out.ttft_s = since(t0);
            out.chunks.push_back(ev.data);
          }
        }
        return true;
      });
  if (prefill_thread.joinable()) prefill_thread.join();
  out.e2e_s = since(t0);
  if (!result.is_ok()) return result.status();
  out.decode_status = result->status;
  if (result->status != 200 && out.body.empty()) out.body = raw;
  return out;
}

}  // namespace baton::protocol::pd
