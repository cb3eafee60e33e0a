// The export socket's messages (docs/export.md, protocol version 1): fixed-size little-endian
// structs, one per SOCK_SEQPACKET packet. This header is all a consumer needs besides the client
// (client.h); nothing here knows the device.
#pragma once

#include <array>
#include <cstdint>
#include <type_traits>

namespace vgpu::exporting {

constexpr uint32_t MAGIC = 0x58475056; // "VPGX" in memory
constexpr uint32_t VERSION_MAJOR = 1;
constexpr uint32_t VERSION_MINOR = 0;
constexpr uint32_t MAX_FDS = 4;
constexpr uint32_t FLIP_RECTS = 8;
constexpr uint32_t EXTENTS_PER_MESSAGE = 16;
constexpr uint32_t NAME_BYTES = 32;
constexpr uint32_t ERROR_TEXT_BYTES = 56;

enum class Type : uint16_t {
    Hello = 1,
    Welcome = 2,
    Probe = 3,
    ProbeReply = 4,
    OutputInfo = 5,
    Lease = 6,
    Leased = 7,
    Release = 8,
    Buffer = 9,
    Extents = 10,
    BufferGone = 11,
    Flip = 12,
    Crc = 13,
    Cursor = 14,
    Mode = 15,
    Revoked = 16,
    Ack = 17,
    Error = 18,
};

// Plane types (bits in ProbeReply.plane_types; one of them in Lease and Buffer).
enum PlaneType : uint32_t {
    PLANE_REGION = 1u << 0, // a memfd of ours: offset, stride, size
    PLANE_DMABUF = 1u << 1, // a udmabuf of the buffer's guest pages
    PLANE_GUEST_MEMORY = 1u << 2, // a read-only fd of guest RAM and the buffer's extents
};
constexpr uint32_t ALL_PLANE_TYPES = PLANE_REGION | PLANE_DMABUF | PLANE_GUEST_MEMORY;
// Their names wherever they are text (docs, JSON, command lines), in bit order.
struct PlaneTypeName {
    PlaneType bit;
    const char* name;
};
constexpr std::array<PlaneTypeName, 3> PLANE_TYPE_NAMES { { { PLANE_REGION, "region" },
    { PLANE_DMABUF, "dmabuf" }, { PLANE_GUEST_MEMORY, "guest-memory" } } };

enum class LeaseKind : uint32_t {
    Exclusive = 1,
    Shared = 2,
};

enum class RevokeReason : uint32_t {
    Control = 1,
    OutputGone = 2,
    DeviceReset = 3,
    FrontendGone = 4,
    NoAck = 5,
};

enum class ErrorCode : uint32_t {
    BadMessage = 1,
    UnknownType = 2,
    Version = 3,
    NoSuchOutput = 4,
    Busy = 5,
    PlaneType = 6,
    NoSuchLease = 7,
    Order = 8,
};

// ProbeReply.flags
constexpr uint32_t PROBE_CRC = 1u << 0;
constexpr uint32_t PROBE_CURSOR = 1u << 1;

struct Header {
    uint32_t magic;
    uint16_t type;
    uint16_t flags; // 0
    uint32_t size; // header + body
    uint32_t serial;
};
static_assert(sizeof(Header) == 16);

struct Rect32 {
    uint32_t x, y, width, height;
};
static_assert(sizeof(Rect32) == 16);

struct Extent {
    uint64_t offset; // in the fd
    uint64_t length;
};
static_assert(sizeof(Extent) == 16);

// ---- bodies (each follows a Header) ----------------------------------------------------------

struct Hello {
    static constexpr Type type = Type::Hello;
    static constexpr uint32_t fds = 0;
    uint32_t major;
    uint32_t minor;
    std::array<char, NAME_BYTES> name; // NUL-padded
};

struct Welcome {
    static constexpr Type type = Type::Welcome;
    static constexpr uint32_t fds = 0;
    uint32_t major;
    uint32_t minor;
    uint32_t max_leases;
    uint32_t reserved;
};

struct Probe {
    static constexpr Type type = Type::Probe;
    static constexpr uint32_t fds = 0;
    uint32_t reserved;
};

struct ProbeReply {
    static constexpr Type type = Type::ProbeReply;
    static constexpr uint32_t fds = 0;
    uint32_t plane_types;
    uint32_t outputs; // OutputInfo messages that follow
    uint32_t flags;
    uint32_t release_timeout_ms;
};

struct OutputInfo {
    static constexpr Type type = Type::OutputInfo;
    static constexpr uint32_t fds = 0;
    uint32_t output;
    uint32_t enabled;
    uint32_t width;
    uint32_t height;
    uint32_t fourcc;
    uint32_t reserved;
    uint64_t generation;
};

struct Lease {
    static constexpr Type type = Type::Lease;
    static constexpr uint32_t fds = 0;
    uint32_t output;
    uint32_t kind; // LeaseKind
    uint32_t plane_type; // one PlaneType bit
    uint32_t reserved;
};

struct Leased {
    static constexpr Type type = Type::Leased;
    static constexpr uint32_t fds = 1; // the flip eventfd
    uint32_t lease;
    uint32_t output;
    uint32_t kind;
    uint32_t plane_type;
};

struct Release {
    static constexpr Type type = Type::Release;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t reserved;
};

struct Buffer {
    static constexpr Type type = Type::Buffer;
    static constexpr uint32_t fds = 1; // read-only
    uint32_t lease;
    uint32_t buffer;
    uint32_t plane_type;
    uint32_t fourcc;
    uint64_t modifier;
    uint32_t width;
    uint32_t height;
    uint32_t stride;
    uint32_t extents; // Extents entries that follow (PLANE_GUEST_MEMORY), else 0
    uint64_t offset;
    uint64_t size;
};

struct Extents {
    static constexpr Type type = Type::Extents;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t buffer;
    uint32_t first; // index of entry[0] in the buffer's list
    uint32_t count; // entries used, 1..EXTENTS_PER_MESSAGE
    std::array<Extent, EXTENTS_PER_MESSAGE> entry;
};

struct BufferGone {
    static constexpr Type type = Type::BufferGone;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t buffer;
};

struct Flip {
    static constexpr Type type = Type::Flip;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t buffer;
    uint64_t generation;
    uint32_t covers; // generations this record stands for (1 unless coalesced)
    uint32_t rects; // damage rectangles used, 1..FLIP_RECTS
    Rect32 source; // the output's picture in the buffer
    std::array<Rect32, FLIP_RECTS> damage; // output coordinates
    uint64_t
        time_ns; // CLOCK_MONOTONIC when the backend signalled this flip (the latest if coalesced)
};

struct Crc {
    static constexpr Type type = Type::Crc;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t crc;
    uint64_t generation;
};

struct Cursor {
    static constexpr Type type = Type::Cursor;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t buffer; // 0: hidden
    uint32_t x;
    uint32_t y;
    uint32_t hot_x;
    uint32_t hot_y;
    uint32_t moved_only;
    uint32_t reserved;
};

struct Mode {
    static constexpr Type type = Type::Mode;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t output;
    uint32_t enabled;
    uint32_t width;
    uint32_t height;
    uint32_t reserved;
};

struct Revoked {
    static constexpr Type type = Type::Revoked;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t reason; // RevokeReason
};

struct Ack {
    static constexpr Type type = Type::Ack;
    static constexpr uint32_t fds = 0;
    uint32_t lease;
    uint32_t reserved;
    uint64_t generation;
};

struct ErrorReply {
    static constexpr Type type = Type::Error;
    static constexpr uint32_t fds = 0;
    uint32_t code; // ErrorCode
    uint32_t serial; // of the request it answers (0: none)
    std::array<char, ERROR_TEXT_BYTES> text; // NUL-padded
};

// The sizes docs/export.md gives, so that a change to a struct is a change to the protocol.
static_assert(sizeof(Hello) == 40);
static_assert(sizeof(Welcome) == 16);
static_assert(sizeof(Probe) == 4);
static_assert(sizeof(ProbeReply) == 16);
static_assert(sizeof(OutputInfo) == 32);
static_assert(sizeof(Lease) == 16);
static_assert(sizeof(Leased) == 16);
static_assert(sizeof(Release) == 8);
static_assert(sizeof(Buffer) == 56);
static_assert(sizeof(Extents) == 16 + 16 * EXTENTS_PER_MESSAGE);
static_assert(sizeof(BufferGone) == 8);
static_assert(sizeof(Flip) == 48 + 16 * FLIP_RECTS);
static_assert(sizeof(Crc) == 16);
static_assert(sizeof(Cursor) == 32);
static_assert(sizeof(Mode) == 24);
static_assert(sizeof(Revoked) == 8);
static_assert(sizeof(Ack) == 16);
static_assert(sizeof(ErrorReply) == 64);

template <typename T>
concept Body = std::is_trivially_copyable_v<T> && requires {
    {
        T::type
    } -> std::convertible_to<Type>;
    {
        T::fds
    } -> std::convertible_to<uint32_t>;
};

} // namespace vgpu::exporting
