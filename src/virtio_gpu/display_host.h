// What the device needs from the display layer (which sits above it and implements this):
// scanout contents and damage going out to the sinks, the cursor, and QEMU's display socket with
// its GET_DISPLAY_INFO/GET_EDID answers. Declared here so the dependency points downward.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "virtio/guest_plane.h"
#include "virtio_gpu/resource_table.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

// What a scanout shows: a rectangle of a resource's pixels. `pixels` keeps the memory alive for
// sinks that still read it after the guest moved on.
struct ScanoutSource {
    ResourceId resource;
    FormatInfo format;
    uint32_t resource_width = 0;
    uint32_t resource_height = 0;
    uint32_t stride = 0;
    Rect rect {}; // inside the resource; its size is the mode
    std::shared_ptr<const PixelStorage> pixels;
    // A blob's pages as a dmabuf (--dmabuf), and where this framebuffer starts in it.
    std::shared_ptr<const Fd> dmabuf;
    uint32_t dmabuf_offset = 0;
    // The same pages for trusted export consumers (--export-guest-memory); the framebuffer starts
    // at dmabuf_offset in them too.
    std::shared_ptr<const virtio::GuestPlane> guest_plane;

    const std::byte* pixel(uint32_t x, uint32_t y) const
    {
        return pixels->data() + size_t(rect.y + y) * stride + size_t(rect.x + x) * BYTES_PER_PIXEL;
    }
};

// A 64x64 ARGB cursor image (B8G8R8A8 in memory) with its hot spot.
struct CursorImage {
    uint32_t hot_x = 0;
    uint32_t hot_y = 0;
    std::vector<uint32_t> argb; // CURSOR_SIZE * CURSOR_SIZE
};

class DisplayHost {
public:
    virtual ~DisplayHost() = default;

    // QEMU hands over its display socket (GPU_SET_SOCKET); a device reset drops it.
    virtual Result<void> attach_qemu_display(Fd socket) = 0;
    virtual void detach_qemu_display() = 0;
    virtual bool has_qemu_display() const = 0;
    // Forwarded to QEMU when it has a display socket. The callback runs exactly once, later,
    // with nothing if QEMU did not answer in time or has no socket.
    virtual void query_display_info(std::function<void(std::optional<RespDisplayInfo>)> done) = 0;
    virtual void query_edid(uint32_t scanout, std::function<void(std::optional<RespEdid>)> done)
        = 0;

    // `scanout` now shows `source`, or nothing (disabled).
    virtual void scanout_set(uint32_t scanout, std::optional<ScanoutSource> source) = 0;
    // The pixels in `damage` (scanout coordinates, clipped to the scanout) changed.
    virtual void scanout_damaged(uint32_t scanout, Rect damage) = 0;
    // `pixels` are about to be overwritten (a transfer into them): a sink that still has to read
    // the frame they hold (a CRC of an earlier flush) reads it now. True when a sink wants the
    // new pixels checksummed as they are copied (CRC capture of the output showing them).
    virtual bool pixels_will_change(const PixelStorage& pixels) = 0;
    // A blob's framebuffer stopped being shown and the guest wants it back (a fenced flush of
    // the one that replaced it): `done` runs once no sink reads `pixels` any more, at once if
    // none does, or after `timeout` with true, once the sinks still reading copied what they
    // need and let go. It runs on the loop, never from inside this call.
    // `which`: ConsumerHolds waits only for readers that hold the pixels for a consumer.
    virtual void when_released(std::shared_ptr<const PixelStorage> pixels,
        std::chrono::milliseconds timeout, std::function<void(bool timed_out)> done,
        PixelStorage::Readers which = PixelStorage::Readers::All)
        = 0;
    // A device reset (or the frontend gone): what was handed out of guest memory is taken back.
    virtual void guest_memory_gone(bool /*frontend_gone*/) { }
    // A new cursor image (nullopt: hide) at x, y on `scanout`, or a move of the current one.
    virtual void cursor_set(
        uint32_t scanout, std::optional<CursorImage> image, uint32_t x, uint32_t y)
        = 0;
    virtual void cursor_move(uint32_t scanout, uint32_t x, uint32_t y) = 0;
};

} // namespace vgpu::virtio_gpu
