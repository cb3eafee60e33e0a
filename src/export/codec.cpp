#include "export/codec.h"

#include "base/unix_socket.h"

#include <sys/socket.h>
#include <time.h>

#include <bit>
#include <cerrno>

namespace vgpu::exporting {

namespace {

static_assert(MAX_FDS <= MAX_RIGHTS);

struct TypeInfo {
    const char* name;
    uint32_t size;
    uint32_t fds;
};

template <Body T>
constexpr TypeInfo info(const char* name)
{
    return { name, uint32_t(sizeof(T)), T::fds };
}

// Indexed by type; entry 0 is no type.
constexpr TypeInfo TYPES[] = {
    { nullptr, 0, 0 },
    info<Hello>("HELLO"),
    info<Welcome>("WELCOME"),
    info<Probe>("PROBE"),
    info<ProbeReply>("PROBE_REPLY"),
    info<OutputInfo>("OUTPUT_INFO"),
    info<Lease>("LEASE"),
    info<Leased>("LEASED"),
    info<Release>("RELEASE"),
    info<Buffer>("BUFFER"),
    info<Extents>("EXTENTS"),
    info<BufferGone>("BUFFER_GONE"),
    info<Flip>("FLIP"),
    info<Crc>("CRC"),
    info<Cursor>("CURSOR"),
    info<Mode>("MODE"),
    info<Revoked>("REVOKED"),
    info<Ack>("ACK"),
    info<ErrorReply>("ERROR"),
};
static_assert(std::size(TYPES) == size_t(Type::Error) + 1);

const TypeInfo* lookup(uint16_t type)
{
    if (type == 0 || type >= std::size(TYPES))
        return nullptr;
    return &TYPES[type];
}

bool one_plane_type(uint32_t bits)
{
    return std::has_single_bit(bits) && (bits & ~ALL_PLANE_TYPES) == 0;
}
bool lease_kind(uint32_t kind)
{
    return kind == uint32_t(LeaseKind::Exclusive) || kind == uint32_t(LeaseKind::Shared);
}
bool boolean(uint32_t value) { return value <= 1; }

// What a body must satisfy beyond its size: reserved fields 0, enums and counts in range.
// Returns the first violation, or nullptr.
const char* body_problem(const Message& m)
{
    switch (m.type()) {
    case Type::Hello:
        return nullptr;
    case Type::Welcome:
        return m.as<Welcome>()->reserved ? "reserved field set" : nullptr;
    case Type::Probe:
        return m.as<Probe>()->reserved ? "reserved field set" : nullptr;
    case Type::ProbeReply: {
        auto b = *m.as<ProbeReply>();
        if (b.plane_types & ~ALL_PLANE_TYPES)
            return "unknown plane type bits";
        if (b.outputs > 16)
            return "more than 16 outputs";
        return nullptr;
    }
    case Type::OutputInfo: {
        auto b = *m.as<OutputInfo>();
        if (b.reserved)
            return "reserved field set";
        return boolean(b.enabled) ? nullptr : "enabled is neither 0 nor 1";
    }
    case Type::Lease: {
        auto b = *m.as<Lease>();
        if (b.reserved)
            return "reserved field set";
        if (!lease_kind(b.kind))
            return "kind is neither EXCLUSIVE nor SHARED";
        return one_plane_type(b.plane_type) ? nullptr : "plane_type is not one known plane type";
    }
    case Type::Leased: {
        auto b = *m.as<Leased>();
        if (!lease_kind(b.kind))
            return "kind is neither EXCLUSIVE nor SHARED";
        return one_plane_type(b.plane_type) ? nullptr : "plane_type is not one known plane type";
    }
    case Type::Release:
        return m.as<Release>()->reserved ? "reserved field set" : nullptr;
    case Type::Buffer: {
        auto b = *m.as<Buffer>();
        if (!one_plane_type(b.plane_type))
            return "plane_type is not one known plane type";
        if (b.extents && b.plane_type != PLANE_GUEST_MEMORY)
            return "extents for a plane that has none";
        return nullptr;
    }
    case Type::Extents: {
        auto b = *m.as<Extents>();
        return b.count >= 1 && b.count <= EXTENTS_PER_MESSAGE ? nullptr : "count outside 1..16";
    }
    case Type::BufferGone:
    case Type::Crc:
        return nullptr;
    case Type::Flip: {
        auto b = *m.as<Flip>();
        if (b.covers == 0)
            return "covers is 0";
        return b.rects >= 1 && b.rects <= FLIP_RECTS ? nullptr : "rects outside 1..8";
    }
    case Type::Cursor: {
        auto b = *m.as<Cursor>();
        if (b.reserved)
            return "reserved field set";
        return boolean(b.moved_only) ? nullptr : "moved_only is neither 0 nor 1";
    }
    case Type::Mode: {
        auto b = *m.as<Mode>();
        if (b.reserved)
            return "reserved field set";
        return boolean(b.enabled) ? nullptr : "enabled is neither 0 nor 1";
    }
    case Type::Revoked: {
        auto b = *m.as<Revoked>();
        return b.reason >= uint32_t(RevokeReason::Control)
                && b.reason <= uint32_t(RevokeReason::NoAck)
            ? nullptr
            : "unknown reason";
    }
    case Type::Ack:
        return m.as<Ack>()->reserved ? "reserved field set" : nullptr;
    case Type::Error: {
        auto b = *m.as<ErrorReply>();
        return b.code >= uint32_t(ErrorCode::BadMessage) && b.code <= uint32_t(ErrorCode::Order)
            ? nullptr
            : "unknown error code";
    }
    }
    return nullptr;
}

} // namespace

std::optional<uint32_t> body_size(uint16_t type)
{
    const auto* t = lookup(type);
    if (!t)
        return std::nullopt;
    return t->size;
}

uint32_t fd_count(uint16_t type)
{
    const auto* t = lookup(type);
    return t ? t->fds : 0;
}

const char* type_name(uint16_t type)
{
    const auto* t = lookup(type);
    return t ? t->name : "unknown";
}

Result<Message, BadPacket> parse(std::span<const std::byte> packet, std::vector<Fd> fds)
{
    auto bad = [](std::string reason) {
        return BadPacket { ErrorCode::BadMessage, std::move(reason) };
    };
    Message m;
    m.fds = std::move(fds);
    if (packet.size() < sizeof(Header))
        return bad(fmt::format("{} bytes: shorter than the 16-byte header", packet.size()));
    std::memcpy(&m.header, packet.data(), sizeof(Header));
    if (m.header.magic != MAGIC)
        return bad(fmt::format("magic {:#010x}, not {:#010x}", m.header.magic, MAGIC));
    if (m.header.size != packet.size())
        return bad(fmt::format("size field {} in a {}-byte packet", m.header.size, packet.size()));
    if (m.header.flags != 0)
        return bad(fmt::format("flags {:#x}: none are defined", m.header.flags));
    m.body.assign(packet.begin() + sizeof(Header), packet.end());
    const auto* t = lookup(m.header.type);
    if (!t) {
        if (!m.fds.empty())
            return bad(fmt::format("unknown type {} with descriptors", m.header.type));
        return m; // known = false: UNKNOWN_TYPE, and the connection stays
    }
    if (m.body.size() != t->size)
        return bad(fmt::format("{} with a {}-byte body, not {}", t->name, m.body.size(), t->size));
    if (m.fds.size() != t->fds)
        return bad(fmt::format("{} with {} descriptors, not {}", t->name, m.fds.size(), t->fds));
    m.known = true;
    if (const char* problem = body_problem(m))
        return bad(fmt::format("{}: {}", t->name, problem));
    return m;
}

Result<bool> send_packet(int socket, std::span<const std::byte> packet, std::span<const int> fds)
{
    VGPU_VERIFY(fds.size() <= MAX_FDS);
    iovec iov { const_cast<std::byte*>(packet.data()), packet.size() };
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    RightsBuffer control;
    attach_rights(msg, control, fds);
    for (;;) {
        ssize_t n = ::sendmsg(socket, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n == ssize_t(packet.size()))
            return true;
        if (n >= 0)
            return Error::format("sendmsg wrote {} of {} bytes", n, packet.size());
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return false;
        return Error::from_errno("sendmsg");
    }
}

Result<Received> receive_packet(int socket)
{
    std::vector<std::byte> buffer(MAX_PACKET + 1);
    iovec iov { buffer.data(), buffer.size() };
    msghdr msg {};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    RightsBuffer control;
    expect_rights(msg, control, MAX_FDS);
    ssize_t n = 0;
    do
        n = ::recvmsg(socket, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return Received {};
        return Error::from_errno("recvmsg");
    }
    // Descriptors first, so that they are closed on every error below.
    std::vector<Fd> fds;
    take_rights(msg, fds);
    if (n == 0)
        return Received { Received::State::Closed, {}, {} };
    if (msg.msg_flags & MSG_CTRUNC)
        return Error::format("more than {} descriptors in one packet", MAX_FDS);
    if ((msg.msg_flags & MSG_TRUNC) || size_t(n) > MAX_PACKET)
        return Error::format("a packet longer than {} bytes", MAX_PACKET);
    buffer.resize(size_t(n));
    return Received { Received::State::Packet, std::move(buffer), std::move(fds) };
}

uint64_t monotonic_ns()
{
    timespec now {};
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    return uint64_t(now.tv_sec) * 1000000000u + uint64_t(now.tv_nsec);
}

} // namespace vgpu::exporting
