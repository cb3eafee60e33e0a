// The export socket's client (docs/export.md): what a consumer (vgpu-view, vgpu-ctl watch, later
// vgpu-vnc) links to probe the backend, lease outputs, map the buffers it is given and read its
// records. Blocking calls with timeouts, on one thread; nothing of the device.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/fd.h"
#include "base/memory_map.h"
#include "base/result.h"
#include "export/codec.h"

namespace vgpu::exporting {

struct OutputState {
    uint32_t output = 0;
    bool enabled = false;
    uint32_t width = 0;
    uint32_t height = 0;
    uint32_t fourcc = 0;
    uint64_t generation = 0;
};

struct ProbeResult {
    uint32_t plane_types = 0;
    uint32_t flags = 0;
    uint32_t release_timeout_ms = 0;
    std::vector<OutputState> outputs;
};

struct LeaseHandle {
    uint32_t lease = 0;
    uint32_t output = 0;
    LeaseKind kind = LeaseKind::Shared;
    uint32_t plane_type = 0;
    Fd eventfd; // signalled at each flip of the output
};

// A buffer mapped read-only from its BUFFER message's descriptor: PLANE_REGION (one range of a
// memfd), or PLANE_GUEST_MEMORY (guest RAM, the buffer scattered over its EXTENTS).
class MappedBuffer {
public:
    // Maps the page-aligned range around [offset, offset + size) read-only.
    static Result<MappedBuffer> map(const Buffer& info, const Fd& fd);
    // A GUEST_MEMORY buffer: `extents` (in order) hold its `size` bytes; the image starts
    // `offset` bytes into them. Maps the span of the fd that holds them all, read-only.
    static Result<MappedBuffer> map_extents(
        const Buffer& info, const Fd& fd, std::span<const Extent> extents);

    const Buffer& info() const { return m_info; }
    // Whether rows may straddle extents (GUEST_MEMORY); then only bytes() reads the pixels.
    bool scattered() const { return !m_extents.empty(); }
    // The image's first byte and row y (contiguous buffers only).
    const std::byte* data() const { return m_map.data() + m_skip; }
    const std::byte* row(uint32_t y) const { return data() + size_t(y) * m_info.stride; }
    // `length` bytes at `position` in the image (y * stride + x * 4): a pointer into the
    // mapping, or, where they straddle extents, a copy gathered into `scratch`. nullptr when
    // they run past the buffer.
    const std::byte* bytes(uint64_t position, size_t length, std::vector<std::byte>& scratch) const;

private:
    struct Piece {
        uint64_t start; // in the buffer's bytes
        uint64_t length;
        const std::byte* host;
    };
    Buffer m_info {};
    MemoryMap m_map;
    size_t m_skip = 0; // offset - the page-aligned start of the mapping (contiguous buffers)
    std::vector<Piece> m_extents; // scattered buffers
};

// Gathers a BUFFER and the EXTENTS that follow it (GUEST_MEMORY) into one mapped buffer.
class BufferAssembler {
public:
    // Takes a BUFFER or EXTENTS record; returns the buffer once it is whole (at once for a
    // BUFFER without extents), nullopt while extents are still to come.
    Result<std::optional<MappedBuffer>> add(Message& message);

private:
    std::optional<Buffer> m_buffer;
    Fd m_fd;
    std::vector<Extent> m_extents;
};

class Client {
public:
    // Connects and says HELLO; fails with the backend's ERROR text (a version it does not speak).
    static Result<Client> connect(const std::string& path, std::string_view name,
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));

    const Welcome& welcome() const { return m_welcome; }
    int socket() const { return m_socket.get(); }

    Result<ProbeResult> probe();
    Result<LeaseHandle> lease(uint32_t output, LeaseKind kind, uint32_t plane_type = PLANE_REGION);
    Result<void> release(uint32_t lease);
    Result<void> ack(uint32_t lease, uint64_t generation);

    // The next record the backend sent (BUFFER, FLIP, CRC, CURSOR, MODE, REVOKED, ...), waiting
    // up to `timeout`; nullopt when none came. Records that arrived while a request waited for
    // its reply come first, in order.
    Result<std::optional<Message>> next(std::chrono::milliseconds timeout);

    // Sends raw bytes as one packet (tests of the backend's checks).
    Result<void> send_raw(std::span<const std::byte> packet, std::span<const int> fds = {});

private:
    explicit Client(Fd socket, std::chrono::milliseconds timeout)
        : m_socket(std::move(socket))
        , m_timeout(timeout)
    {
    }
    template <Body T>
    Result<uint32_t> send(const T& body);
    // Reads until a message of `type` (or an ERROR) answering `serial` arrives; others queue.
    Result<Message> reply(uint32_t serial, Type type);
    Result<std::optional<Message>> receive(std::chrono::milliseconds timeout);

    Fd m_socket;
    std::chrono::milliseconds m_timeout;
    uint32_t m_serial = 0;
    Welcome m_welcome {};
    std::deque<Message> m_queued;
};

} // namespace vgpu::exporting
