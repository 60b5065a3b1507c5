#pragma once

// Small socket helpers shared by `baton up` and the tests that start real
// processes.

#include <cstdint>

#include "common/status.h"

namespace baton {

// A TCP port on 127.0.0.1 that was free when called: the kernel's pick for an
// ephemeral bind, released again at once. Another process may take it before
// the caller binds it. kUnavailable when no socket could be bound.
Result<uint16_t> free_loopback_port();

}  // namespace baton
