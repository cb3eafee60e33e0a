// One vhost-user socket: whole messages in (header, payload and SCM_RIGHTS descriptors) and out.
// Used for the frontend connection and, in the other direction, for the backend channel.
//
// The socket is non-blocking: receive() takes what has arrived and returns a message once it is
// whole, so a frontend that sends slowly (or stops mid-message) never holds the device loop.
// The caller bounds how long a started message may take (BackendServer: 2 s per message).
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
    static Result<Connection> adopt(Fd socket);
    int fd() const { return m_socket.get(); }

    struct Received {
        std::optional<Message> message; // a whole message
        bool closed = false; // an orderly end of stream between messages
    };
    // Reads what has arrived without waiting. Fails on a message cut off by the end of the
    // stream, MSG_CTRUNC (more descriptors than MAX_FDS), a bad header (validate_header) or
    // descriptors arriving with the payload; any received fds are closed.
    Result<Received> receive();
    // Some of a message has arrived, not all of it.
    bool mid_message() const { return m_header_received > 0; }

    // Sends a message whole (header, payload, descriptors) with one sendmsg, without waiting:
    // a peer that does not read its replies gets an error (EAGAIN), not our time.
    Result<void> send(
        const Header& header, std::span<const std::byte> payload, std::span<const int> fds = {});

private:
    explicit Connection(Fd socket)
        : m_socket(std::move(socket))
    {
    }
    Fd m_socket;
    // The message being assembled.
    Message m_partial;
    size_t m_header_received = 0;
    size_t m_payload_received = 0;
};

} // namespace vgpu::vhost
