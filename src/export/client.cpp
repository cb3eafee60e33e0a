#include "export/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/unix_socket.h"

namespace vgpu::exporting {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

Result<MappedBuffer> MappedBuffer::map(const Buffer& info, const Fd& fd)
{
    if (uint64_t(info.stride) * info.height > info.size || uint64_t(info.width) * 4 > info.stride)
        return Error::format("buffer {}: {}x{} with stride {} does not fit its {} bytes",
            info.buffer, info.width, info.height, info.stride, info.size);
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    uint64_t start = info.offset / page * page;
    MappedBuffer out;
    out.m_info = info;
    out.m_skip = size_t(info.offset - start);
    out.m_map = TRY(
        MemoryMap::map(fd.get(), info.size + out.m_skip, start, MemoryMap::Access::ReadOnly));
    return out;
}

Result<MappedBuffer> MappedBuffer::map_extents(
    const Buffer& info, const Fd& fd, std::span<const Extent> extents)
{
    if (extents.empty())
        return Error::format("buffer {}: no extents", info.buffer);
    uint64_t low = UINT64_MAX, high = 0, total = 0;
    for (const auto& e : extents) {
        if (e.length == 0 || e.offset + e.length < e.offset)
            return Error::format("buffer {}: a bad extent", info.buffer);
        low = std::min(low, e.offset);
        high = std::max(high, e.offset + e.length);
        total += e.length;
    }
    if (total != info.size || info.offset > info.size
        || uint64_t(info.stride) * (info.height ? info.height - 1 : 0) + uint64_t(info.width) * 4
            > info.size - info.offset)
        return Error::format(
            "buffer {}: {}x{} with stride {} at {} does not fit its {} bytes in {} "
            "extents",
            info.buffer, info.width, info.height, info.stride, info.offset, total, extents.size());
    const uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    uint64_t start = low / page * page;
    MappedBuffer out;
    out.m_info = info;
    out.m_map = TRY(MemoryMap::map(fd.get(), high - start, start, MemoryMap::Access::ReadOnly));
    uint64_t at = 0;
    for (const auto& e : extents) {
        out.m_extents.push_back({ at, e.length, out.m_map.data() + (e.offset - start) });
        at += e.length;
    }
    return out;
}

const std::byte* MappedBuffer::bytes(
    uint64_t position, size_t length, std::vector<std::byte>& scratch) const
{
    if (!scattered()) {
        if (position + length > m_info.size)
            return nullptr;
        return data() + position;
    }
    uint64_t at = m_info.offset + position;
    if (at + length > m_info.size)
        return nullptr;
    // The extent that holds `at`: the last one starting at or before it.
    auto it = std::upper_bound(m_extents.begin(), m_extents.end(), at,
        [](uint64_t value, const Piece& p) { return value < p.start; });
    --it;
    if (at + length <= it->start + it->length)
        return it->host + (at - it->start);
    scratch.resize(length);
    size_t done = 0;
    for (; done < length && it != m_extents.end(); ++it) {
        uint64_t from = at + done - it->start;
        size_t piece = size_t(std::min<uint64_t>(length - done, it->length - from));
        std::memcpy(scratch.data() + done, it->host + from, piece);
        done += piece;
    }
    return scratch.data();
}

Result<std::optional<MappedBuffer>> BufferAssembler::add(Message& message)
{
    if (auto b = message.as<Buffer>()) {
        if (b->extents == 0) {
            m_buffer.reset();
            return std::optional(TRY(MappedBuffer::map(*b, message.fds.at(0))));
        }
        m_buffer = *b;
        m_fd = std::move(message.fds.at(0));
        m_extents.clear();
        return std::optional<MappedBuffer>();
    }
    auto e = message.as<Extents>();
    if (!e)
        return Error::format("{} is not part of a buffer", type_name(message.header.type));
    if (!m_buffer || e->buffer != m_buffer->buffer || e->first != m_extents.size() || e->count == 0
        || e->count > EXTENTS_PER_MESSAGE || m_extents.size() + e->count > m_buffer->extents)
        return Error::format("EXTENTS of buffer {} from {} out of order", e->buffer, e->first);
    m_extents.insert(m_extents.end(), e->entry.begin(), e->entry.begin() + e->count);
    if (m_extents.size() < m_buffer->extents)
        return std::optional<MappedBuffer>();
    auto mapped = MappedBuffer::map_extents(*m_buffer, m_fd, m_extents);
    m_buffer.reset();
    m_fd.reset();
    if (!mapped)
        return mapped.error();
    return std::optional(std::move(mapped.value()));
}

Result<Client> Client::connect(const std::string& path, std::string_view name, milliseconds timeout)
{
    Fd socket = TRY(connect_unix(path, SOCK_SEQPACKET));
    Client client(std::move(socket), timeout);
    Hello hello { VERSION_MAJOR, VERSION_MINOR, {} };
    set_text(hello.name, name);
    uint32_t serial = TRY(client.send(hello));
    auto welcome = TRY(client.reply(serial, Type::Welcome));
    client.m_welcome = *welcome.as<Welcome>();
    return client;
}

template <Body T>
Result<uint32_t> Client::send(const T& body)
{
    uint32_t serial = ++m_serial;
    auto packet = encode(body, serial);
    // The backend reads its consumers as fast as they write; a full socket for this long means
    // it is not reading at all.
    auto deadline = Clock::now() + m_timeout;
    for (;;) {
        if (TRY(send_packet(m_socket.get(), packet, {})))
            return serial;
        if (Clock::now() > deadline)
            return Error::format("the backend does not read its export socket");
        pollfd p { m_socket.get(), POLLOUT, 0 };
        ::poll(&p, 1, 10);
    }
}

Result<std::optional<Message>> Client::receive(milliseconds timeout)
{
    auto deadline = Clock::now() + timeout;
    for (;;) {
        auto packet = TRY(receive_packet(m_socket.get()));
        if (packet.state == Received::State::Closed)
            return Error::format("the backend closed the export socket");
        if (packet.state == Received::State::Packet) {
            auto message = parse(packet.bytes, std::move(packet.fds));
            if (!message)
                return Error::format("the backend sent a bad packet: {}", message.error().reason);
            return std::optional<Message>(std::move(message.value()));
        }
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return std::optional<Message> {};
        pollfd p { m_socket.get(), POLLIN, 0 };
        ::poll(&p, 1, int(std::min<int64_t>(left.count(), 1000)) + 1);
    }
}

Result<Message> Client::reply(uint32_t serial, Type type)
{
    auto deadline = Clock::now() + m_timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        auto message = TRY(receive(std::max(left, milliseconds(0))));
        if (!message)
            return Error::format("no {} from the backend within {} ms", type_name(uint16_t(type)),
                m_timeout.count());
        // An ERROR that answers nothing in particular (serial 0: BUSY when the backend has all
        // the consumers it takes) ends the wait as well.
        if ((message->header.serial == serial || message->header.serial == 0)
            && message->type() == Type::Error) {
            auto e = *message->as<ErrorReply>();
            return Error::format("the backend refused it: {}", get_text(e.text));
        }
        if (message->header.serial == serial && message->type() == type)
            return std::move(*message);
        m_queued.push_back(std::move(*message));
    }
}

Result<ProbeResult> Client::probe()
{
    uint32_t serial = TRY(send(Probe {}));
    auto reply_message = TRY(reply(serial, Type::ProbeReply));
    auto r = *reply_message.as<ProbeReply>();
    ProbeResult result { r.plane_types, r.flags, r.release_timeout_ms, {} };
    for (uint32_t i = 0; i < r.outputs; ++i) {
        auto info_message = TRY(reply(serial, Type::OutputInfo));
        auto o = *info_message.as<OutputInfo>();
        result.outputs.push_back(
            { o.output, o.enabled != 0, o.width, o.height, o.fourcc, o.generation });
    }
    return result;
}

Result<LeaseHandle> Client::lease(uint32_t output, LeaseKind kind, uint32_t plane_type)
{
    uint32_t serial = TRY(send(Lease { output, uint32_t(kind), plane_type, 0 }));
    auto message = TRY(reply(serial, Type::Leased));
    auto l = *message.as<Leased>();
    return LeaseHandle { l.lease, l.output, LeaseKind(l.kind), l.plane_type,
        std::move(message.fds[0]) };
}

Result<void> Client::release(uint32_t lease)
{
    TRY(send(Release { lease, 0 }));
    return {};
}

Result<void> Client::ack(uint32_t lease, uint64_t generation)
{
    TRY(send(Ack { lease, 0, generation }));
    return {};
}

Result<std::optional<Message>> Client::next(milliseconds timeout)
{
    if (!m_queued.empty()) {
        Message m = std::move(m_queued.front());
        m_queued.pop_front();
        return std::optional<Message>(std::move(m));
    }
    return receive(timeout);
}

Result<void> Client::send_raw(std::span<const std::byte> packet, std::span<const int> fds)
{
    if (!TRY(send_packet(m_socket.get(), packet, fds)))
        return Error::format("the export socket is full");
    return {};
}

} // namespace vgpu::exporting
