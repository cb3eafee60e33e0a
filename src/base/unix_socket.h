// A listening unix stream socket at a path, replacing a stale socket file left by an earlier run
// (but nothing that is not a socket, and no socket a server still answers on).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu {

// The socket file gets exactly `mode` (0600 by default: only our user may connect), whatever
// the process umask.
// `type` is SOCK_STREAM or SOCK_SEQPACKET.
Result<Fd> listen_unix(
    const std::string& path, int backlog, mode_t mode = 0600, int type = SOCK_STREAM);

} // namespace vgpu
