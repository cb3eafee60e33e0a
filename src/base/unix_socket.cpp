#include "base/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vgpu {

namespace {

Result<sockaddr_un> unix_address(const std::string& path)
{
    sockaddr_un address {};
    address.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(address.sun_path))
        return Error::format("socket path '{}' is empty or longer than {} bytes", path,
            sizeof(address.sun_path) - 1);
    std::memcpy(address.sun_path, path.data(), path.size());
    return address;
}

} // namespace

Result<Fd> listen_unix(const std::string& path, int backlog, mode_t mode, int type)
{
    sockaddr_un address = TRY(unix_address(path));
    Fd socket(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!socket.valid())
        return Error::from_errno("socket");
    struct stat st { };
    if (::lstat(path.c_str(), &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return Error::format("{} exists and is not a socket", path);
        // Replace a socket file only when nobody answers on it: a running server's socket
        // removed from under it would leave that server unreachable.
        Fd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
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
    // bind() creates the file with 0777 less the umask: under a umask that allows no more
    // than `mode`, so that no wider mode exists even for an instant, then exactly `mode`. The
    // umask is per process: this runs at start-up, before any worker thread exists.
    mode_t old_umask = ::umask(~mode & 0777);
    int bound = ::bind(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address));
    int bind_errno = errno;
    ::umask(old_umask);
    if (bound < 0)
        return Error::from_errno(fmt::format("bind({})", path), bind_errno);
    if (::chmod(path.c_str(), mode) < 0)
        return Error::from_errno(fmt::format("chmod({}, {:o})", path, mode));
    if (::listen(socket.get(), backlog) < 0)
        return Error::from_errno("listen");
    return socket;
}

Result<Fd> connect_unix(const std::string& path, int type)
{
    sockaddr_un address = TRY(unix_address(path));
    Fd socket(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!socket.valid())
        return Error::from_errno("socket");
    int rc = 0;
    do
        rc = ::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address));
    while (rc < 0 && errno == EINTR);
    if (rc < 0)
        return Error::from_errno(fmt::format("connect {}", path));
    return socket;
}

void attach_rights(msghdr& msg, RightsBuffer& buffer, std::span<const int> fds)
{
    VGPU_VERIFY(fds.size() <= MAX_RIGHTS);
    if (fds.empty())
        return;
    msg.msg_control = buffer.data;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
}

void expect_rights(msghdr& msg, RightsBuffer& buffer, size_t max)
{
    VGPU_VERIFY(max <= MAX_RIGHTS);
    msg.msg_control = buffer.data;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * max);
}

void take_rights(const msghdr& msg, std::vector<Fd>& out)
{
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&msg), c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
            int fd = -1;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            out.emplace_back(fd);
        }
    }
}

} // namespace vgpu
