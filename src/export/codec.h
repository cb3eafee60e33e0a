// Encoding and checking export messages (docs/export.md), and moving them over a SOCK_SEQPACKET
// socket with their descriptors. Both ends use this: the backend reads a consumer's packets as
// untrusted input, and a consumer reads the backend's.
#pragma once

#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "export/wire.h"

namespace vgpu::exporting {

// The body size of a known type; nullopt for a type this version does not know.
std::optional<uint32_t> body_size(uint16_t type);
// How many descriptors a known type carries.
uint32_t fd_count(uint16_t type);
const char* type_name(uint16_t type);

// A packet that passed the header checks: a known type of the right size with the right number
// of descriptors, or an unknown type (`known` false: answer UNKNOWN_TYPE and go on).
struct Message {
    Header header {};
    bool known = false;
    std::vector<std::byte> body;
    std::vector<Fd> fds;

    Type type() const { return Type(header.type); }
    template <Body T>
    std::optional<T> as() const
    {
        if (!known || header.type != uint16_t(T::type) || body.size() != sizeof(T))
            return std::nullopt;
        T value;
        std::memcpy(&value, body.data(), sizeof(T));
        return value;
    }
};

// Why a packet was refused: the ERROR code to answer with (BAD_MESSAGE) and a one-line reason.
struct BadPacket {
    ErrorCode code = ErrorCode::BadMessage;
    std::string reason;
};

// Checks a received packet: magic, size field equal to the packet's length, flags 0, a known
// type's exact body size and descriptor count, and its reserved fields 0 (and enum fields in
// range). Unknown types pass with known = false. Takes the descriptors either way.
Result<Message, BadPacket> parse(std::span<const std::byte> packet, std::vector<Fd> fds);

template <Body T>
std::vector<std::byte> encode(const T& body, uint32_t serial)
{
    Header header { MAGIC, uint16_t(T::type), 0, uint32_t(sizeof(Header) + sizeof(T)), serial };
    std::vector<std::byte> out(sizeof(Header) + sizeof(T));
    std::memcpy(out.data(), &header, sizeof(header));
    std::memcpy(out.data() + sizeof(header), &body, sizeof(T));
    return out;
}

// Copies `text` into a fixed NUL-padded field (cut to fit, always NUL-terminated).
template <size_t N>
void set_text(std::array<char, N>& field, std::string_view text)
{
    field.fill('\0');
    std::memcpy(field.data(), text.data(), std::min(text.size(), N - 1));
}
template <size_t N>
std::string get_text(const std::array<char, N>& field)
{
    size_t length = 0;
    while (length < N && field[length] != '\0')
        ++length;
    return std::string(field.data(), length);
}

// One packet with its descriptors, never blocking: false with errno EAGAIN when the socket is
// full (the caller queues), an error for anything else (the peer is gone).
Result<bool> send_packet(int socket, std::span<const std::byte> packet, std::span<const int> fds);
// What one non-blocking read of the socket found.
struct Received {
    enum class State {
        Empty, // nothing to read now (EAGAIN)
        Packet, // a packet, with its descriptors
        Closed, // the peer closed its end (an empty packet reads the same)
    };
    State state = State::Empty;
    std::vector<std::byte> bytes;
    std::vector<Fd> fds;
};
// The next packet, never blocking; an error when it or its descriptors were cut short.
Result<Received> receive_packet(int socket);

// The clock of FLIP's time_ns (CLOCK_MONOTONIC, ns): flip to now is a consumer's latency.
uint64_t monotonic_ns();

// The largest packet of this protocol: a receiver's buffer (a longer one is refused).
constexpr size_t MAX_PACKET = 512;

} // namespace vgpu::exporting
