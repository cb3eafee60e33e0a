// UPDATE_CURSOR and MOVE_CURSOR (virtio 1.3 §5.7.6.10). The cursor queue has no response: the
// handlers' errors are counted and logged by the caller.
#include <cstring>

#include <pixman.h>

#include "base/log.h"
#include "virtio/guest_memory.h"
#include "virtio_gpu/device.h"

namespace vgpu::virtio_gpu {

std::optional<CursorImage> Device::cursor_image(const cmd::UpdateCursor& c)
{
    auto* resource = find_resource(c.resource_id, "UPDATE_CURSOR");
    if (!resource)
        return std::nullopt;
    // A blob cursor (the Linux driver's dumb buffer with blobs on) is 64x64 ARGB8888 (virtio
    // B8G8R8A8) with rows of 256 bytes from the blob's start: that is what it allocates.
    const bool blob = resource->blob;
    const uint32_t stride = blob ? CURSOR_SIZE * BYTES_PER_PIXEL : resource->stride;
    if (blob) {
        if (!resource->view || resource->view->size() < size_t(stride) * CURSOR_SIZE)
            return std::nullopt;
        if (resource->view->kind() == virtio::GuestView::Kind::Gathered) {
            if (auto copied = resource->view->gather(*m_memory, 0, uint64_t(stride) * CURSOR_SIZE))
                m_stats.bytes_gathered += *copied;
        }
    } else if (resource->width != CURSOR_SIZE || resource->height != CURSOR_SIZE) {
        return std::nullopt;
    }
    auto* pixels = blob ? const_cast<std::byte*>(resource->view->data()) : resource->pixels->data();
    auto pixman_format = blob ? format_info(uint32_t(Format::B8G8R8A8Unorm))->pixman
                              : resource->format.pixman;
    CursorImage image;
    image.hot_x = c.hot_x;
    image.hot_y = c.hot_y;
    image.argb.resize(size_t(CURSOR_SIZE) * CURSOR_SIZE);
    // The image is copied now: the guest may reuse the resource for the next cursor at once.
    auto* dst = pixman_image_create_bits(PIXMAN_a8r8g8b8, int(CURSOR_SIZE), int(CURSOR_SIZE),
        image.argb.data(), int(CURSOR_SIZE * BYTES_PER_PIXEL));
    auto* src = pixman_image_create_bits(pixman_format, int(CURSOR_SIZE), int(CURSOR_SIZE),
        reinterpret_cast<uint32_t*>(pixels), int(stride));
    if (!dst || !src) {
        if (dst)
            pixman_image_unref(dst);
        if (src)
            pixman_image_unref(src);
        return std::nullopt;
    }
    pixman_image_composite32(
        PIXMAN_OP_SRC, src, nullptr, dst, 0, 0, 0, 0, 0, 0, int(CURSOR_SIZE), int(CURSOR_SIZE));
    pixman_image_unref(src);
    pixman_image_unref(dst);
    return image;
}

Device::HandlerResult Device::handle(const cmd::UpdateCursor& c)
{
    if (c.pos.scanout_id >= scanout_limit())
        return GpuError::InvalidScanoutId;
    ++m_stats.cursor_updates;
    if (c.resource_id == 0) {
        if (m_display)
            m_display->cursor_set(c.pos.scanout_id, std::nullopt, c.pos.x, c.pos.y);
        return nodata();
    }
    if (!m_resources.find(ResourceId(c.resource_id)))
        return GpuError::InvalidResourceId;
    auto image = cursor_image(c);
    if (!image) {
        VGPU_LOG_GUEST(Warn, "UPDATE_CURSOR: resource {} is not {}x{} (or a blob that small)",
            c.resource_id, CURSOR_SIZE, CURSOR_SIZE);
        return GpuError::InvalidParameter;
    }
    VGPU_LOG_GUEST(Debug, "cursor update: scanout {} at {},{} hot {},{}", c.pos.scanout_id, c.pos.x,
        c.pos.y, c.hot_x, c.hot_y);
    if (m_display)
        m_display->cursor_set(c.pos.scanout_id, std::move(image), c.pos.x, c.pos.y);
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::MoveCursor& c)
{
    if (c.pos.scanout_id >= scanout_limit())
        return GpuError::InvalidScanoutId;
    ++m_stats.cursor_moves;
    if (m_display)
        m_display->cursor_move(c.pos.scanout_id, c.pos.x, c.pos.y);
    return nodata();
}

} // namespace vgpu::virtio_gpu
