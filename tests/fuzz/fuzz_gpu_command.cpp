// libFuzzer target for the virtio-gpu command decoder, virtio_gpu::decode: the input is one
// control- or cursor-queue command, placed in guest memory as a single readable descriptor (at
// the very end of the region, so that reading past it leaves guest memory) and decoded through
// virtio::Reader. Besides "never crash", the decoder's contract is checked against the input
// bytes: a known command decodes exactly when the buffer holds its whole struct, and then its
// fields are the input's; ATTACH_BACKING's entries are read only when all nr_entries of them
// (at most 16384) are in the buffer.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <type_traits>
#include <variant>

#include "base/fd.h"
#include "base/log.h"
#include "base/memory_map.h"
#include "virtio/guest_memory.h"
#include "virtio/reader_writer.h"
#include "virtio_gpu/command.h"

namespace {

using namespace vgpu;
using namespace vgpu::virtio_gpu;

#define FUZZ_CHECK(expression)                                                                     \
    do {                                                                                           \
        if (!(expression)) {                                                                       \
            std::fprintf(stderr, "fuzz_gpu_command: check failed: %s (%s:%d)\n", #expression,      \
                __FILE__, __LINE__);                                                               \
            std::abort();                                                                          \
        }                                                                                          \
    } while (0)

// Room for the largest valid command: ATTACH_BACKING with 16384 entries (262176 bytes).
constexpr uint64_t REGION_SIZE = 512 * 1024;
constexpr uint64_t REGION_GPA = 0x100000;
constexpr uint64_t REGION_VA = 0x7f0000000000;

[[noreturn]] void setup_failed(const char* what)
{
    std::fprintf(stderr, "fuzz_gpu_command: setup failed: %s\n", what);
    std::abort();
}

struct Guest {
    Fd memfd;
    MemoryMap image;
    virtio::GuestMemory memory;
};

Guest& guest()
{
    static Guest g;
    static const bool ready = [] {
        // Guest-caused messages are rate-limited by wall-clock time: keep runs deterministic.
        log::set_level(log::Level::Error);
        int fd = ::memfd_create("fuzz-gpu-command", MFD_CLOEXEC);
        if (fd < 0 || ::ftruncate(fd, off_t(REGION_SIZE)) < 0)
            setup_failed("memfd");
        g.memfd = Fd(fd);
        auto map = MemoryMap::map(fd, REGION_SIZE, 0, MemoryMap::Access::ReadWrite);
        if (!map)
            setup_failed("mmap");
        g.image = map.release_value();
        if (!g.memory.add_region({ REGION_GPA, REGION_SIZE, REGION_VA, 0 }, g.memfd))
            setup_failed("GuestMemory::add_region");
        return true;
    }();
    (void)ready;
    return g;
}

// The input's bytes as the wire struct T (the caller made sure they are there).
template <typename T>
T wire(const uint8_t* data)
{
    T value;
    std::memcpy(&value, data, sizeof(T));
    return value;
}

bool same_rect(const Rect& a, const Rect& b) { return std::memcmp(&a, &b, sizeof(Rect)) == 0; }

// With `blob` (blob resources on), the blob commands are decoded whole.
std::optional<size_t> struct_size(uint32_t type, bool blob)
{
    if (blob && type == uint32_t(CtrlType::ResourceCreateBlob))
        return sizeof(ResourceCreateBlob);
    if (blob && type == uint32_t(CtrlType::SetScanoutBlob))
        return sizeof(SetScanoutBlob);
    switch (static_cast<CtrlType>(type)) {
    case CtrlType::GetDisplayInfo:
        return sizeof(CtrlHdr);
    case CtrlType::ResourceCreate2d:
        return sizeof(ResourceCreate2d);
    case CtrlType::ResourceUnref:
        return sizeof(ResourceUnref);
    case CtrlType::SetScanout:
        return sizeof(SetScanout);
    case CtrlType::ResourceFlush:
        return sizeof(ResourceFlush);
    case CtrlType::TransferToHost2d:
        return sizeof(TransferToHost2d);
    case CtrlType::ResourceAttachBacking:
        return sizeof(ResourceAttachBacking);
    case CtrlType::ResourceDetachBacking:
        return sizeof(ResourceDetachBacking);
    case CtrlType::GetCapsetInfo:
        return sizeof(GetCapsetInfo);
    case CtrlType::GetCapset:
        return sizeof(GetCapset);
    case CtrlType::GetEdid:
        return sizeof(GetEdid);
    case CtrlType::UpdateCursor:
    case CtrlType::MoveCursor:
        return sizeof(UpdateCursor);
    case CtrlType::ResourceAssignUuid:
    case CtrlType::ResourceCreateBlob:
    case CtrlType::SetScanoutBlob:
    case CtrlType::CtxCreate:
    case CtrlType::CtxDestroy:
    case CtrlType::CtxAttachResource:
    case CtrlType::CtxDetachResource:
    case CtrlType::ResourceCreate3d:
    case CtrlType::TransferToHost3d:
    case CtrlType::TransferFromHost3d:
    case CtrlType::Submit3d:
    case CtrlType::ResourceMapBlob:
    case CtrlType::ResourceUnmapBlob:
        return sizeof(CtrlHdr); // known but not implemented: only the header is read
    default:
        return std::nullopt;
    }
}

void check_create_blob(const cmd::ResourceCreateBlob& c, const uint8_t* data, size_t size)
{
    auto w = wire<ResourceCreateBlob>(data);
    FUZZ_CHECK(c.resource_id == w.resource_id && c.blob_mem == w.blob_mem
        && c.blob_flags == w.blob_flags && c.blob_id == w.blob_id && c.size == w.size);
    bool fits = w.nr_entries <= MAX_BACKING_ENTRIES
        && sizeof(w) + uint64_t(w.nr_entries) * sizeof(MemEntry) <= size;
    FUZZ_CHECK(c.entries_valid == fits);
    FUZZ_CHECK(fits ? c.entries.size() == w.nr_entries : c.entries.empty());
    if (fits && !c.entries.empty())
        FUZZ_CHECK(
            std::memcmp(c.entries.data(), data + sizeof(w), c.entries.size() * sizeof(MemEntry))
            == 0);
}

void check_attach_backing(const cmd::ResourceAttachBacking& c, const uint8_t* data, size_t size)
{
    auto w = wire<ResourceAttachBacking>(data);
    FUZZ_CHECK(c.resource_id == w.resource_id);
    bool fits = w.nr_entries <= MAX_BACKING_ENTRIES
        && sizeof(w) + uint64_t(w.nr_entries) * sizeof(MemEntry) <= size;
    FUZZ_CHECK(c.entries_valid == fits);
    if (!fits) {
        FUZZ_CHECK(c.entries.empty());
        return;
    }
    FUZZ_CHECK(c.entries.size() == w.nr_entries);
    if (!c.entries.empty())
        FUZZ_CHECK(
            std::memcmp(c.entries.data(), data + sizeof(w), c.entries.size() * sizeof(MemEntry))
            == 0);
}

// The decoded fields are the input's.
void check_fields(const GpuCommand& command, const uint8_t* data, size_t size)
{
    std::visit(
        [&](const auto& c) {
            using T = std::decay_t<decltype(c)>;
            if constexpr (std::is_same_v<T, cmd::ResourceCreate2d>) {
                auto w = wire<ResourceCreate2d>(data);
                FUZZ_CHECK(c.resource_id == w.resource_id && c.format == w.format
                    && c.width == w.width && c.height == w.height);
            } else if constexpr (std::is_same_v<T, cmd::ResourceUnref>) {
                FUZZ_CHECK(c.resource_id == wire<ResourceUnref>(data).resource_id);
            } else if constexpr (std::is_same_v<T, cmd::SetScanout>) {
                auto w = wire<SetScanout>(data);
                FUZZ_CHECK(same_rect(c.r, w.r) && c.scanout_id == w.scanout_id
                    && c.resource_id == w.resource_id);
            } else if constexpr (std::is_same_v<T, cmd::ResourceFlush>) {
                auto w = wire<ResourceFlush>(data);
                FUZZ_CHECK(same_rect(c.r, w.r) && c.resource_id == w.resource_id);
            } else if constexpr (std::is_same_v<T, cmd::TransferToHost2d>) {
                auto w = wire<TransferToHost2d>(data);
                FUZZ_CHECK(
                    same_rect(c.r, w.r) && c.offset == w.offset && c.resource_id == w.resource_id);
            } else if constexpr (std::is_same_v<T, cmd::ResourceAttachBacking>) {
                check_attach_backing(c, data, size);
            } else if constexpr (std::is_same_v<T, cmd::ResourceCreateBlob>) {
                check_create_blob(c, data, size);
            } else if constexpr (std::is_same_v<T, cmd::SetScanoutBlob>) {
                auto w = wire<SetScanoutBlob>(data);
                FUZZ_CHECK(same_rect(c.r, w.r) && c.scanout_id == w.scanout_id
                    && c.resource_id == w.resource_id && c.width == w.width && c.height == w.height
                    && c.format == w.format);
                FUZZ_CHECK(std::memcmp(c.strides, w.strides, sizeof(w.strides)) == 0
                    && std::memcmp(c.offsets, w.offsets, sizeof(w.offsets)) == 0);
            } else if constexpr (std::is_same_v<T, cmd::ResourceDetachBacking>) {
                FUZZ_CHECK(c.resource_id == wire<ResourceDetachBacking>(data).resource_id);
            } else if constexpr (std::is_same_v<T, cmd::GetCapsetInfo>) {
                FUZZ_CHECK(c.capset_index == wire<GetCapsetInfo>(data).capset_index);
            } else if constexpr (std::is_same_v<T, cmd::GetCapset>) {
                auto w = wire<GetCapset>(data);
                FUZZ_CHECK(c.capset_id == w.capset_id && c.capset_version == w.capset_version);
            } else if constexpr (std::is_same_v<T, cmd::GetEdid>) {
                FUZZ_CHECK(c.scanout == wire<GetEdid>(data).scanout);
            } else if constexpr (std::is_same_v<T, cmd::UpdateCursor>) {
                auto w = wire<UpdateCursor>(data);
                FUZZ_CHECK(std::memcmp(&c.pos, &w.pos, sizeof(CursorPos)) == 0);
                FUZZ_CHECK(
                    c.resource_id == w.resource_id && c.hot_x == w.hot_x && c.hot_y == w.hot_y);
            } else if constexpr (std::is_same_v<T, cmd::MoveCursor>) {
                auto w = wire<UpdateCursor>(data);
                FUZZ_CHECK(std::memcmp(&c.pos, &w.pos, sizeof(CursorPos)) == 0);
            } else if constexpr (std::is_same_v<T, cmd::Unsupported>) {
                FUZZ_CHECK(c.type == wire<CtrlHdr>(data).type);
            }
        },
        command);
}

// Which alternative a type decodes to.
bool holds_expected(const GpuCommand& command, uint32_t type, bool blob)
{
    if (blob && type == uint32_t(CtrlType::ResourceCreateBlob))
        return std::holds_alternative<cmd::ResourceCreateBlob>(command);
    if (blob && type == uint32_t(CtrlType::SetScanoutBlob))
        return std::holds_alternative<cmd::SetScanoutBlob>(command);
    switch (static_cast<CtrlType>(type)) {
    case CtrlType::GetDisplayInfo:
        return std::holds_alternative<cmd::GetDisplayInfo>(command);
    case CtrlType::ResourceCreate2d:
        return std::holds_alternative<cmd::ResourceCreate2d>(command);
    case CtrlType::ResourceUnref:
        return std::holds_alternative<cmd::ResourceUnref>(command);
    case CtrlType::SetScanout:
        return std::holds_alternative<cmd::SetScanout>(command);
    case CtrlType::ResourceFlush:
        return std::holds_alternative<cmd::ResourceFlush>(command);
    case CtrlType::TransferToHost2d:
        return std::holds_alternative<cmd::TransferToHost2d>(command);
    case CtrlType::ResourceAttachBacking:
        return std::holds_alternative<cmd::ResourceAttachBacking>(command);
    case CtrlType::ResourceDetachBacking:
        return std::holds_alternative<cmd::ResourceDetachBacking>(command);
    case CtrlType::GetCapsetInfo:
        return std::holds_alternative<cmd::GetCapsetInfo>(command);
    case CtrlType::GetCapset:
        return std::holds_alternative<cmd::GetCapset>(command);
    case CtrlType::GetEdid:
        return std::holds_alternative<cmd::GetEdid>(command);
    case CtrlType::UpdateCursor:
        return std::holds_alternative<cmd::UpdateCursor>(command);
    case CtrlType::MoveCursor:
        return std::holds_alternative<cmd::MoveCursor>(command);
    default:
        return std::holds_alternative<cmd::Unsupported>(command);
    }
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size)
{
    if (size > REGION_SIZE)
        return 0;
    Guest& g = guest();
    // The buffer ends where guest memory ends (what lies before it is never read).
    uint64_t offset = REGION_SIZE - size;
    if (size)
        std::memcpy(g.image.data() + offset, data, size);
    const virtio::Segment segment { REGION_GPA + offset, uint32_t(size) };
    // Both ways: blob resources off (the blob commands are Unsupported, their body unread) and on.
    for (bool blob : { false, true }) {
        virtio::Reader reader(g.memory, std::span(&segment, 1));
        auto decoded = decode(reader, blob);

        FUZZ_CHECK(reader.consumed() + reader.remaining() == size);
        if (size < sizeof(CtrlHdr)) {
            FUZZ_CHECK(!decoded.has_value() && decoded.error() == GpuError::Unspec);
            continue;
        }
        uint32_t type = wire<CtrlHdr>(data).type;
        auto needed = struct_size(type, blob);
        if (!needed || size < *needed) {
            // Unknown types and short buffers: ERR_UNSPEC, the one error decode gives.
            FUZZ_CHECK(!decoded.has_value() && decoded.error() == GpuError::Unspec);
            continue;
        }
        FUZZ_CHECK(decoded.has_value());
        FUZZ_CHECK(std::memcmp(&decoded->header, data, sizeof(CtrlHdr)) == 0);
        FUZZ_CHECK(holds_expected(decoded->command, type, blob));
        check_fields(decoded->command, data, size);
    }
    return 0;
}
