// The guest's virtio-gpu driver on top of a QemuSession: typed helpers that build the command
// structs as the Linux driver does, submit them on the control (or cursor) queue and return the
// response header. Anything unusual (short buffers, hostile counts) goes through submit().
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "harness/frontend.h"
#include "virtio_gpu/wire.h"

namespace vgpu::harness {

// A guest buffer as the Linux driver's shmem pages make one: runs of one to three pages taken
// from shuffled places in a pool, never adjacent, one mem entry per run. write() and read() go
// through the pages as the guest sees the buffer (linear offsets).
struct ScatteredBuffer {
    std::vector<virtio_gpu::MemEntry> entries;
    uint64_t size = 0;
    void write(const GuestRam& ram, uint64_t offset, std::span<const std::byte> bytes) const;
    std::vector<std::byte> read(const GuestRam& ram, uint64_t offset, uint64_t length) const;
    // A buffer of `size` bytes (rounded up to pages, as the driver does) from `ram`.
    static ScatteredBuffer allocate(GuestRam& ram, uint64_t size, uint32_t seed);
};

class GpuDriver {
public:
    explicit GpuDriver(QemuSession& session)
        : m_session(session)
    {
    }

    // Sends any bytes as a control command with `response_size` writable bytes; returns what
    // the device wrote (nullopt when no used entry came).
    std::optional<std::vector<std::byte>> submit(
        std::span<const std::byte> command, uint32_t response_size = sizeof(virtio_gpu::CtrlHdr));
    // The response header of a command (type 0 when no response came or it was short).
    virtio_gpu::CtrlHdr command(std::span<const std::byte> command);
    template <typename T>
    virtio_gpu::CtrlHdr command_struct(const T& value)
    {
        return command(std::as_bytes(std::span(&value, 1)));
    }

    virtio_gpu::CtrlHdr create_2d(uint32_t id, uint32_t width, uint32_t height,
        uint32_t format = uint32_t(virtio_gpu::Format::B8G8R8X8Unorm));
    virtio_gpu::CtrlHdr unref(uint32_t id);
    // nr_entries defaults to entries.size(); a different count makes a hostile command.
    virtio_gpu::CtrlHdr attach_backing(uint32_t id, std::span<const virtio_gpu::MemEntry> entries,
        std::optional<uint32_t> nr_entries = std::nullopt);
    virtio_gpu::CtrlHdr detach_backing(uint32_t id);
    virtio_gpu::CtrlHdr transfer(uint32_t id, virtio_gpu::Rect r, uint64_t offset = 0);
    virtio_gpu::CtrlHdr set_scanout(uint32_t scanout, uint32_t id, virtio_gpu::Rect r);
    virtio_gpu::CtrlHdr flush(uint32_t id, virtio_gpu::Rect r);
    // RESOURCE_FLUSH with FLAG_FENCE and `fence` (the Linux driver fences every blob update).
    virtio_gpu::CtrlHdr flush_fenced(uint32_t id, virtio_gpu::Rect r, uint64_t fence);
    // The same, made available and kicked without waiting; returns the GPA of its response
    // (the test polls session().control()).
    uint64_t submit_flush_fenced(uint32_t id, virtio_gpu::Rect r, uint64_t fence);
    virtio_gpu::CtrlHdr create_blob(uint32_t id, uint64_t size,
        std::span<const virtio_gpu::MemEntry> entries,
        uint32_t blob_mem = virtio_gpu::BLOB_MEM_GUEST,
        uint32_t flags = virtio_gpu::BLOB_FLAG_USE_SHAREABLE,
        std::optional<uint32_t> nr_entries = std::nullopt);
    // SET_SCANOUT_BLOB with plane 0 only, as the Linux driver sends it.
    virtio_gpu::CtrlHdr set_scanout_blob(uint32_t scanout, uint32_t id, uint32_t width,
        uint32_t height, uint32_t format, uint32_t stride, uint32_t offset, virtio_gpu::Rect r);
    // Header-only commands (GET_DISPLAY_INFO, unknown types, ...) padded to `size` bytes.
    virtio_gpu::CtrlHdr simple(uint32_t type, size_t size = sizeof(virtio_gpu::CtrlHdr));
    std::optional<virtio_gpu::RespDisplayInfo> get_display_info();
    std::optional<virtio_gpu::RespEdid> get_edid(uint32_t scanout);

    // A resource with one backing entry of width * height * 4 bytes in guest RAM holding
    // `pixels` (zeros if empty); returns the backing's GPA. Throws if a step fails.
    uint64_t create_with_backing(uint32_t id, uint32_t width, uint32_t height, uint32_t format,
        std::span<const std::byte> pixels = {});

    // Cursor queue commands: no response, only a used entry (returns its length, nullopt if
    // none came).
    std::optional<uint32_t> update_cursor(
        uint32_t scanout, uint32_t id, uint32_t x, uint32_t y, uint32_t hot_x, uint32_t hot_y);
    std::optional<uint32_t> move_cursor(uint32_t scanout, uint32_t x, uint32_t y);

    QemuSession& session() { return m_session; }

private:
    QemuSession& m_session;
};

} // namespace vgpu::harness
