// One vhost-user socket: whole messages in (header, payload and SCM_RIGHTS descriptors) and out.
// Used for the frontend connection and, in the other direction, for the backend channel.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "vhost/wire.h"

namespace vgpu::vhost {

struct Message {
    Header header {};
    std::vector<std::byte> payload;
    std::vector<Fd> fds;
};

class Connection {
public:
    // How long a message that has started arriving may take to arrive whole. A frontend that
    // stalls mid-message is disconnected instead of freezing the device loop.
    static constexpr int receive_timeout_ms = 2000;

    static Result<Connection> adopt(Fd socket);
    int fd() const { return m_socket.get(); }

    // Reads one message: the header and any descriptors with one recvmsg, then exactly
    // header.size payload bytes. Returns nullopt on an orderly end of stream before a header.
    // Fails on a truncated message, MSG_CTRUNC (more descriptors than MAX_FDS), a bad header
    // (validate_header) or descriptors arriving with the payload; any received fds are closed.
    Result<std::optional<Message>> receive();

    // Sends a message whole (header, payload, descriptors) with one sendmsg.
    Result<void> send(
        const Header& header, std::span<const std::byte> payload, std::span<const int> fds = {});
    // Non-blocking variant for the backend channel: fails with EAGAIN instead of waiting.
    Result<void> send_nonblocking(const Header& header, std::span<const std::byte> payload);

private:
    explicit Connection(Fd socket)
        : m_socket(std::move(socket))
    {
    }
    Result<void> send_with_flags(const Header& header, std::span<const std::byte> payload,
        std::span<const int> fds, int flags);
    Fd m_socket;
};

} // namespace vgpu::vhost
