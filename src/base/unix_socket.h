// A listening unix stream socket at a path, replacing a stale socket file left by an earlier run
// (but nothing that is not a socket, and no socket a server still answers on).
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <span>
#include <string>
#include <vector>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu {

// The socket file gets exactly `mode` (0600 by default: only our user may connect), whatever
// the process umask.
// `type` is SOCK_STREAM or SOCK_SEQPACKET.
Result<Fd> listen_unix(
    const std::string& path, int backlog, mode_t mode = 0600, int type = SOCK_STREAM);

// A socket of `type` connected to the unix socket at `path` (blocking, close-on-exec); the error
// names the path.
Result<Fd> connect_unix(const std::string& path, int type = SOCK_STREAM);

// Descriptors carried with a message (SCM_RIGHTS): at most MAX_RIGHTS in one message here.
constexpr size_t MAX_RIGHTS = 8;
struct RightsBuffer {
    alignas(cmsghdr) char data[CMSG_SPACE(sizeof(int) * MAX_RIGHTS)] {};
};
// Makes `msg` carry `fds` (at most MAX_RIGHTS) in `buffer`; nothing for none.
void attach_rights(msghdr& msg, RightsBuffer& buffer, std::span<const int> fds);
// Room in `buffer` for a received message's descriptors, `max` of them: more set MSG_CTRUNC.
void expect_rights(msghdr& msg, RightsBuffer& buffer, size_t max);
// The descriptors a received message carried, as owned Fds appended to `out` (so that they are
// closed on every error path after).
void take_rights(const msghdr& msg, std::vector<Fd>& out);

} // namespace vgpu
