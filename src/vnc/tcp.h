// TCP endpoints for vgpu-vnc's listeners: ADDR:PORT parsed (IPv4, [IPv6], or localhost), a
// listening socket on exactly that address (no dual-stack surprises), and whether it is loopback.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu::vnc {

struct Endpoint {
    sockaddr_storage address {};
    socklen_t length = 0;
    std::string text; // as given, for messages

    int family() const { return address.ss_family; }
    uint16_t port() const;
    bool loopback() const;
    // "127.0.0.1:5900", "[::1]:5900": what a URL names.
    std::string host_port() const;
};

// "127.0.0.1:5900", "[::1]:5900", "localhost:5900" (127.0.0.1), "0.0.0.0:5900", or ":5900"
// (loopback). Names other than localhost are not looked up: an address is what gets bound.
Result<Endpoint> parse_endpoint(std::string_view text);

// A non-blocking listening socket on `endpoint` (SO_REUSEADDR; IPv6 sockets are IPv6-only).
// Port 0 takes a free port: the endpoint is updated to the one bound.
Result<Fd> listen_tcp(Endpoint& endpoint, int backlog = 16);

} // namespace vgpu::vnc
