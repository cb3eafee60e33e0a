#include "vnc/tcp.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace vgpu::vnc {

uint16_t Endpoint::port() const
{
    if (family() == AF_INET)
        return ntohs(reinterpret_cast<const sockaddr_in&>(address).sin_port);
    return ntohs(reinterpret_cast<const sockaddr_in6&>(address).sin6_port);
}

bool Endpoint::loopback() const
{
    if (family() == AF_INET)
        return (ntohl(reinterpret_cast<const sockaddr_in&>(address).sin_addr.s_addr) >> 24) == 127;
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(address).sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(&a6);
}

std::string Endpoint::host_port() const
{
    char buffer[INET6_ADDRSTRLEN] = "";
    if (family() == AF_INET) {
        ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(address).sin_addr, buffer,
            sizeof(buffer));
        return fmt::format("{}:{}", buffer, port());
    }
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(address).sin6_addr, buffer,
        sizeof(buffer));
    return fmt::format("[{}]:{}", buffer, port());
}

Result<Endpoint> parse_endpoint(std::string_view text)
{
    Endpoint e;
    e.text = std::string(text);
    size_t colon = text.rfind(':');
    if (colon == std::string_view::npos)
        return Error::format("'{}': expected ADDRESS:PORT", text);
    std::string_view host = text.substr(0, colon), port_text = text.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || port > 65535
        || port_text.empty())
        return Error::format("'{}': the port must be a number from 0 to 65535", text);
    if (host.empty() || host == "localhost")
        host = "127.0.0.1";
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
        std::string h(host.substr(1, host.size() - 2));
        sockaddr_in6 a6 {};
        a6.sin6_family = AF_INET6;
        a6.sin6_port = htons(uint16_t(port));
        if (::inet_pton(AF_INET6, h.c_str(), &a6.sin6_addr) != 1)
            return Error::format("'{}': '{}' is not an IPv6 address", text, h);
        std::memcpy(&e.address, &a6, sizeof(a6));
        e.length = sizeof(a6);
        return e;
    }
    std::string h(host);
    sockaddr_in a4 {};
    a4.sin_family = AF_INET;
    a4.sin_port = htons(uint16_t(port));
    if (::inet_pton(AF_INET, h.c_str(), &a4.sin_addr) != 1)
        return Error::format(
            "'{}': '{}' is not an IPv4 address ([...] for IPv6; names are not looked up)", text, h);
    std::memcpy(&e.address, &a4, sizeof(a4));
    e.length = sizeof(a4);
    return e;
}

Result<Fd> listen_tcp(Endpoint& endpoint, int backlog)
{
    Fd socket(::socket(endpoint.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket)
        return Error::from_errno("socket");
    int one = 1;
    ::setsockopt(socket.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (endpoint.family() == AF_INET6)
        ::setsockopt(socket.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (::bind(socket.get(), reinterpret_cast<const sockaddr*>(&endpoint.address), endpoint.length)
        < 0)
        return Error::from_errno(fmt::format("bind {}", endpoint.text));
    if (::listen(socket.get(), backlog) < 0)
        return Error::from_errno(fmt::format("listen {}", endpoint.text));
    socklen_t length = sizeof(endpoint.address);
    ::getsockname(socket.get(), reinterpret_cast<sockaddr*>(&endpoint.address), &length);
    endpoint.length = length;
    return socket;
}

} // namespace vgpu::vnc
