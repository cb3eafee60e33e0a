// File descriptors as a budget. At start the soft RLIMIT_NOFILE is raised to the hard limit.
// Peers whose number the backend does not choose (control clients; later export consumers) may
// only take descriptors while a reserve stays free for the frontend, whose messages carry up to
// 8 descriptors each besides the kick, call and err eventfds, the display socket and the
// backend channel: a frontend message must never arrive truncated for want of a descriptor.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace vgpu::fds {

// Descriptors kept free for the frontend and our own timers and workers.
constexpr size_t reserve = 64;

// Raises the soft limit to the hard one; returns the limit now in force.
Result<uint64_t> raise_limit();
// The soft limit now.
uint64_t limit();
// Descriptors open in this process now (from /proc/self/fd).
size_t open_count();
// Whether `wanted` more descriptors may be taken by an optional peer.
bool may_open(size_t wanted = 1);

} // namespace vgpu::fds
