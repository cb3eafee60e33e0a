#include "vhost/connection.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

#include "base/unix_socket.h"
#include "vhost/message.h"

namespace vgpu::vhost {

namespace {

static_assert(MAX_FDS <= MAX_RIGHTS);

// Collects SCM_RIGHTS descriptors into owned Fds (so they are closed on any error path).
Result<void> collect_fds(msghdr& msg, std::vector<Fd>& fds)
{
    take_rights(msg, fds);
    if (msg.msg_flags & MSG_CTRUNC)
        return Error::format("control data truncated (more than {} file descriptors?)", MAX_FDS);
    return {};
}

// One non-blocking recvmsg into `out`, descriptors into `fds`: the bytes read, 0 at the end of
// the stream, nullopt when nothing is there now.
Result<std::optional<size_t>> receive_into(
    int socket, std::span<std::byte> out, std::vector<Fd>& fds)
{
    iovec iov { out.data(), out.size() };
    RightsBuffer control;
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    expect_rights(msg, control, MAX_FDS);
    ssize_t n = 0;
    do {
        n = ::recvmsg(socket, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return std::optional<size_t> {};
        return Error::from_errno("recvmsg");
    }
    TRY(collect_fds(msg, fds));
    return std::optional<size_t>(size_t(n));
}

} // namespace

Result<Connection> Connection::adopt(Fd socket)
{
    TRY(set_nonblocking(socket.get()));
    return Connection(std::move(socket));
}

Result<Connection::Received> Connection::receive()
{
    // Whatever goes wrong, the message being assembled is dropped with its descriptors.
    auto fail = [this](Error error) -> Result<Received> {
        m_partial = Message {};
        m_header_received = m_payload_received = 0;
        return error;
    };
    auto* header = reinterpret_cast<std::byte*>(&m_partial.header);
    while (m_header_received < sizeof(Header)) {
        // Descriptors travel with the header (QEMU sends each message with one sendmsg).
        auto n = receive_into(m_socket.get(),
            std::span(header + m_header_received, sizeof(Header) - m_header_received),
            m_partial.fds);
        if (!n)
            return fail(n.release_error());
        if (!n->has_value())
            return Received {};
        if (**n == 0) {
            if (m_header_received == 0 && m_partial.fds.empty())
                return Received { std::nullopt, true };
            return fail(Error::format("connection closed mid-message ({} of {} header bytes)",
                m_header_received, sizeof(Header)));
        }
        m_header_received += **n;
        if (m_header_received == sizeof(Header)) {
            if (auto valid = validate_header(m_partial.header); !valid)
                return fail(valid.release_error());
            m_partial.payload.resize(m_partial.header.size);
        }
    }
    while (m_payload_received < m_partial.payload.size()) {
        std::vector<Fd> late;
        auto n = receive_into(
            m_socket.get(), std::span(m_partial.payload).subspan(m_payload_received), late);
        if (!n)
            return fail(n.release_error());
        if (!late.empty())
            return fail(Error::format("file descriptors arrived in the middle of a message"));
        if (!n->has_value())
            return Received {};
        if (**n == 0)
            return fail(Error::format("connection closed mid-message ({} of {} payload bytes)",
                m_payload_received, m_partial.payload.size()));
        m_payload_received += **n;
    }
    Received received { std::move(m_partial), false };
    m_partial = Message {};
    m_header_received = m_payload_received = 0;
    return received;
}

Result<void> Connection::send(
    const Header& header, std::span<const std::byte> payload, std::span<const int> fds)
{
    if (fds.size() > MAX_FDS)
        return Error::format("too many descriptors to send ({})", fds.size());
    iovec iov[2] = { { const_cast<Header*>(&header), sizeof(Header) },
        { const_cast<std::byte*>(payload.data()), payload.size() } };
    RightsBuffer control;
    msghdr msg {};
    msg.msg_iov = iov;
    msg.msg_iovlen = payload.empty() ? 1 : 2;
    attach_rights(msg, control, fds);
    size_t total = sizeof(Header) + payload.size();
    ssize_t n = 0;
    do {
        n = ::sendmsg(m_socket.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return Error::from_errno(errno == EAGAIN ? "sendmsg (the peer does not read)" : "sendmsg");
    // A unix stream socket takes a small message whole or not at all; anything else leaves the
    // stream broken, and the caller drops the connection.
    if (size_t(n) != total)
        return Error::format("short send ({} of {} bytes)", n, total);
    return {};
}

} // namespace vgpu::vhost
