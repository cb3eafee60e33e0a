#include "base/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vgpu {

Result<Fd> listen_unix(const std::string& path, int backlog)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path))
        return Error::format("socket path '{}' is empty or longer than {} bytes", path,
            sizeof(address.sun_path) - 1);
    std::memcpy(address.sun_path, path.data(), path.size());
    Fd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!socket.valid())
        return Error::from_errno("socket");
    struct stat st { };
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error::format("{} exists and is not a socket", path);
        // Replace a socket file only when nobody answers on it: a running server's socket
        // removed from under it would leave that server unreachable.
        Fd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        if (!probe.valid())
            return Error::from_errno("socket");
        int connected = ::connect(
            probe.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
        // EAGAIN: a server whose backlog is full is still a server.
        if (connected == 0 || errno == EAGAIN || errno == EINPROGRESS)
            return Error::format("{} is in use by a running server", path);
        if (errno != ECONNREFUSED)
            return Error::from_errno(fmt::format("connect({})", path));
        ::unlink(path.c_str());
    }
    if (::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) < 0)
        return Error::from_errno(fmt::format("bind({})", path));
    if (::listen(socket.get(), backlog) < 0)
        return Error::from_errno("listen");
    return socket;
}

} // namespace vgpu
