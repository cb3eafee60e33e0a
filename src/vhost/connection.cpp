#include "vhost/connection.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

#include "vhost/message.h"

namespace vgpu::vhost {

namespace {

// Collects SCM_RIGHTS descriptors into owned Fds (so they are closed on any error path).
Result<void> collect_fds(msghdr& msg, std::vector<Fd>& fds)
{
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; ++i) {
            int fd;
            std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
            fds.emplace_back(fd);
        }
    }
    if (msg.msg_flags & MSG_CTRUNC)
        return Error::format("control data truncated (more than {} file descriptors?)", MAX_FDS);
    return {};
}

// Reads exactly out.size() bytes; fails on EOF, timeout or descriptors that arrive late.
Result<void> read_exact(int socket, std::span<std::byte> out, std::vector<Fd>& late_fds)
{
    size_t done = 0;
    while (done < out.size()) {
        iovec iov { out.data() + done, out.size() - done };
        alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        msghdr msg {};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        ssize_t n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return Error::from_errno(
                errno == EAGAIN ? "recvmsg (timed out mid-message)" : "recvmsg");
        TRY(collect_fds(msg, late_fds));
        if (!late_fds.empty())
            return Error::format("file descriptors arrived in the middle of a message");
        if (n == 0)
            return Error::format(
                "connection closed mid-message ({} of {} bytes)", done, out.size());
        done += size_t(n);
    }
    return {};
}

} // namespace

Result<Connection> Connection::adopt(Fd socket)
{
    timeval tv { receive_timeout_ms / 1000, (receive_timeout_ms % 1000) * 1000 };
    // Replies are small, but a frontend that stops reading must not block us for ever either.
    if (::setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) < 0
        || ::setsockopt(socket.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) < 0)
        return Error::from_errno("setsockopt(SO_RCVTIMEO/SO_SNDTIMEO)");
    return Connection(std::move(socket));
}

Result<std::optional<Message>> Connection::receive()
{
    Message message;
    auto* header_bytes = reinterpret_cast<std::byte*>(&message.header);
    iovec iov { header_bytes, sizeof(Header) };
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_FDS)];
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n;
    do {
        n = ::recvmsg(m_socket.get(), &msg, MSG_CMSG_CLOEXEC);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return Error::from_errno("recvmsg");
    TRY(collect_fds(msg, message.fds));
    if (n == 0) {
        if (!message.fds.empty())
            return Error::format("descriptors without a message");
        return std::optional<Message> {};
    }
    std::vector<Fd> late;
    if (size_t(n) < sizeof(Header))
        TRY(read_exact(
            m_socket.get(), std::span(header_bytes + n, sizeof(Header) - size_t(n)), late));
    TRY(validate_header(message.header));
    message.payload.resize(message.header.size);
    TRY(read_exact(m_socket.get(), message.payload, late));
    return std::optional<Message>(std::move(message));
}

Result<void> Connection::send_with_flags(
    const Header& header, std::span<const std::byte> payload, std::span<const int> fds, int flags)
{
    if (fds.size() > MAX_FDS)
        return Error::format("too many descriptors to send ({})", fds.size());
    iovec iov[2] = { { const_cast<Header*>(&header), sizeof(Header) },
        { const_cast<std::byte*>(payload.data()), payload.size() } };
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * MAX_FDS)] {};
    msghdr msg {};
    msg.msg_iov = iov;
    msg.msg_iovlen = payload.empty() ? 1 : 2;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        cmsghdr* c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
    }
    size_t total = sizeof(Header) + payload.size();
    ssize_t n;
    do {
        n = ::sendmsg(m_socket.get(), &msg, flags | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return Error::from_errno("sendmsg");
    if (size_t(n) != total)
        return Error::format("short send ({} of {} bytes)", n, total);
    return {};
}

Result<void> Connection::send(
    const Header& header, std::span<const std::byte> payload, std::span<const int> fds)
{
    return send_with_flags(header, payload, fds, 0);
}

Result<void> Connection::send_nonblocking(const Header& header, std::span<const std::byte> payload)
{
    return send_with_flags(header, payload, {}, MSG_DONTWAIT);
}

} // namespace vgpu::vhost
