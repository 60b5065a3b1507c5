#pragma once

// On-demand forwarding (DESIGN.md §3), the decision part: may the gateway
// hand a P/D request's ticket to one more prefill candidate? A prefill
// instance that cannot start the request within its TTFT budget rejects at
// once; the gateway then tries the next candidate, but only within a bounded
// number of tries, before the forwarding deadline and while the decode
// instance's KV reservation (its lease) still holds.
//
// Pure: the P/D exchange (pd_exchange.cpp) and the simulator (sim/) call it
// with their own clocks. Thread-safe.

#include "common/clock.h"
#include "gateway/gateway_config.h"

namespace baton::gateway {

// `forwards_done`: prefill instances already tried for this request;
// `forward_deadline`: when the first forward may no longer be followed by
// another (set when the ticket arrived, pd.forward_deadline later);
// `lease_end`: when the decode instance drops the reservation.
bool may_forward_prefill(const PdConfig& pd, int forwards_done, Clock::TimePoint now,
                         Clock::TimePoint forward_deadline, Clock::TimePoint lease_end);

}  // namespace baton::gateway
