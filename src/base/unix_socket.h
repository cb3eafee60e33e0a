// A listening unix stream socket at a path, replacing a stale socket file left by an earlier run
// (but nothing that is not a socket, and no socket a server still answers on).
#pragma once

#include <string>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu {

Result<Fd> listen_unix(const std::string& path, int backlog);

} // namespace vgpu
