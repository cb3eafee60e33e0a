// RESOURCE_CREATE_2D, RESOURCE_UNREF, RESOURCE_ATTACH_BACKING, RESOURCE_DETACH_BACKING,
// TRANSFER_TO_HOST_2D and RESOURCE_FLUSH (virtio 1.3 §5.7.6.8). Where the spec names no error,
// we answer as QEMU's built-in virtio-gpu does (docs/hostile-guest.md lists every case).
#include <algorithm>
#include <cstring>

#include "base/checked.h"
#include "base/log.h"
#include "virtio/guest_memory.h"
#include "virtio_gpu/device.h"
#include "virtio_gpu/rect.h"

namespace vgpu::virtio_gpu {

Device::HandlerResult Device::handle(const cmd::ResourceCreate2d& c)
{
    auto resource = m_resources.create_2d(ResourceId(c.resource_id), c.format, c.width, c.height);
    if (!resource) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_2D {} format {} {}x{}: {}", c.resource_id, c.format,
            c.width, c.height, error_name(resource.error()));
        return resource.release_error();
    }
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::ResourceUnref& c)
{
    auto* resource = find_resource(c.resource_id, "RESOURCE_UNREF");
    if (!resource)
        return GpuError::InvalidResourceId;
    // QEMU disables the scanouts that show it and answers OK_NODATA.
    for (uint32_t i = 0; i < MAX_SCANOUTS; ++i)
        if (resource->scanout_mask & (1u << i))
            disable_scanout(i);
    // The guest frees a blob's pages when this is answered: nothing may read them after.
    if (resource->blob)
        release_blob_readers(*resource);
    m_resources.remove(resource->id);
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::ResourceAttachBacking& c)
{
    auto* resource = find_resource(c.resource_id, "RESOURCE_ATTACH_BACKING");
    if (!resource)
        return GpuError::InvalidResourceId;
    if (resource->has_backing) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_ATTACH_BACKING {}: already has backing", c.resource_id);
        return GpuError::Unspec;
    }
    if (!c.entries_valid)
        return GpuError::Unspec;
    // Every entry must lie in guest RAM now; a 2D resource's are translated again on each
    // transfer, since the memory table may change.
    TRY(check_entries(c.entries, "RESOURCE_ATTACH_BACKING", c.resource_id));
    if (resource->blob) {
        // A blob that was detached gets pages again: they must cover it.
        uint64_t covered = 0;
        for (const auto& e : c.entries)
            covered += e.length;
        if (covered < resource->blob_size)
            return GpuError::InvalidParameter;
    }
    if (auto r = m_resources.set_backing(*resource, c.entries); !r) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_ATTACH_BACKING {}: {} entries: {}", c.resource_id,
            c.entries.size(), error_name(r.error()));
        return r.release_error();
    }
    if (resource->blob) {
        if (auto r = m_resources.rebuild_view(*resource, *m_memory); !r) {
            m_resources.clear_backing(*resource);
            return r.release_error();
        }
        export_dmabuf(*resource);
    }
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::ResourceDetachBacking& c)
{
    auto* resource = find_resource(c.resource_id, "RESOURCE_DETACH_BACKING");
    if (!resource)
        return GpuError::InvalidResourceId;
    if (!resource->has_backing)
        return GpuError::Unspec;
    if (resource->blob) {
        // Its pages go back to the guest: the scanouts showing it go dark (QEMU would keep
        // showing freed memory) and nothing reads them after this answer.
        for (uint32_t i = 0; i < MAX_SCANOUTS; ++i)
            if (resource->scanout_mask & (1u << i))
                disable_scanout(i);
        release_blob_readers(*resource);
    }
    m_resources.clear_backing(*resource);
    return nodata();
}

GpuResult<void> Device::copy_from_backing(
    const Resource& resource, uint64_t offset, size_t destination, size_t length, bool checksum)
{
    // The entry holding `offset` (the last one starting at or before it; binary search, since a
    // backing is often thousands of pages and a transfer copies row by row), then entry by entry.
    auto it = std::upper_bound(
        resource.backing_starts.begin(), resource.backing_starts.end(), offset);
    if (it == resource.backing_starts.begin())
        return {}; // no backing: nothing to copy
    size_t index = size_t(it - resource.backing_starts.begin()) - 1;
    uint64_t entry_start = resource.backing_starts[index];
    // Skip zero-length entries that start at the same offset.
    while (
        index < resource.backing.size() && offset >= entry_start + resource.backing[index].length) {
        entry_start += resource.backing[index].length;
        ++index;
    }
    size_t done = 0;
    // What lies past the end of the backing is not copied and the rest of the range keeps its
    // old pixels: QEMU's iov_to_buf does the same, and the spec names no error.
    while (done < length && index < resource.backing.size()) {
        const auto& e = resource.backing[index];
        uint64_t within = offset + done - entry_start;
        size_t piece = size_t(std::min<uint64_t>(length - done, e.length - within));
        auto source = m_memory->translate_gpa(e.addr + within, piece);
        if (!source)
            return GpuError::Unspec;
        resource.pixels->copy_in(destination + done, source->data(), piece, checksum);
        done += piece;
        entry_start += e.length;
        ++index;
    }
    return {};
}

Device::HandlerResult Device::handle(const cmd::TransferToHost2d& c)
{
    auto* resource = find_resource(c.resource_id, "TRANSFER_TO_HOST_2D");
    if (!resource)
        return GpuError::InvalidResourceId;
    if (!resource->has_backing)
        return GpuError::Unspec;
    // A blob is the guest's memory already: nothing to copy (as QEMU's built-in device). Its
    // flush says what changed.
    if (resource->blob)
        return nodata();
    if (!rect_within(c.r, resource->width, resource->height)) {
        VGPU_LOG_GUEST(Debug, "TRANSFER_TO_HOST_2D {}: rect {}x{}+{}+{} outside {}x{}",
            c.resource_id, c.r.width, c.r.height, c.r.x, c.r.y, resource->width, resource->height);
        return GpuError::InvalidParameter;
    }
    if (rect_empty(c.r))
        return nodata();
    if (!m_display || resource->pixels->consumer_holds() == 0)
        return transfer_2d(*resource, c);
    // An exclusive export consumer still reads these pixels: the copy waits for its ACK, up to
    // the release timeout (then it lets go). Later commands wait behind this one, in order.
    ++m_stats.transfer_waits;
    // The resource may be gone by then: an error like any other command's.
    auto copy = [this, c]() -> HandlerResult {
        auto* r = m_resources.find(ResourceId(c.resource_id));
        return r ? transfer_2d(*r, c) : HandlerResult(GpuError::InvalidResourceId);
    };
    uint64_t serial = defer(copy);
    m_display->when_released(resource->pixels, m_options.release_timeout,
        m_lifetime.guard([this, serial, copy](bool timed_out) {
            if (!deferral_current(serial))
                return;
            if (timed_out)
                ++m_stats.transfer_wait_timeouts;
            complete_deferred(serial, copy());
        }),
        PixelStorage::Readers::ConsumerHolds);
    return Response(Deferred {});
}

Device::HandlerResult Device::transfer_2d(Resource& resource, const cmd::TransferToHost2d& c)
{
    // The backing is the resource laid out linearly with its stride; row h of the rectangle
    // starts at offset + h * stride (as the Linux driver and QEMU compute it). Rows that lie
    // (partly) beyond the backing are copied as far as the backing goes, as QEMU does.
    uint64_t row_bytes = uint64_t(c.r.width) * BYTES_PER_PIXEL;
    auto last = checked_add<uint64_t>(c.offset, uint64_t(c.r.height - 1) * resource.stride);
    if (!last || !range_within<uint64_t>(*last, row_bytes, resource.backing_bytes))
        VGPU_LOG_GUEST(Debug, "TRANSFER_TO_HOST_2D {}: offset {} runs past the {}-byte backing",
            c.resource_id, c.offset, resource.backing_bytes);
    const size_t dst = size_t(c.r.y) * resource.stride + size_t(c.r.x) * BYTES_PER_PIXEL;
    // Sinks still reading these pixels (a CRC not computed yet) take them before they change.
    const bool checksum = m_display && m_display->pixels_will_change(*resource.pixels);
    if (c.r.x == 0 && c.r.width == resource.width) {
        // Whole rows are contiguous on both sides (at most the resource's size, checked at
        // creation): one copy per backing entry.
        if (auto r = copy_from_backing(
                resource, c.offset, dst, size_t(row_bytes) * c.r.height, checksum);
            !r)
            return r.release_error();
    } else {
        for (uint32_t h = 0; h < c.r.height; ++h) {
            auto offset = checked_add<uint64_t>(c.offset, uint64_t(h) * resource.stride);
            if (!offset)
                break; // past any backing
            if (auto r = copy_from_backing(resource, *offset, dst + size_t(h) * resource.stride,
                    size_t(row_bytes), checksum);
                !r)
                return r.release_error();
        }
    }
    ++m_stats.transfers;
    m_stats.bytes_transferred += row_bytes * c.r.height;
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::ResourceFlush& c)
{
    auto* resource = find_resource(c.resource_id, "RESOURCE_FLUSH");
    if (!resource)
        return GpuError::InvalidResourceId;
    if (resource->blob) {
        TRY(flush_blob(*resource, c.r));
        ++m_stats.flushes;
        return give_back_stopped(resource->scanout_mask);
    }
    if (!rect_within(c.r, resource->width, resource->height))
        return GpuError::InvalidParameter;
    ++m_stats.flushes;
    // Every scanout showing the resource gets the part of the flush it shows; a resource no
    // scanout shows is flushed to nobody, which is fine.
    for (uint32_t i = 0; i < MAX_SCANOUTS; ++i) {
        if (!(resource->scanout_mask & (1u << i)))
            continue;
        const auto& s = m_scanouts[i];
        Rect visible = rect_intersect(c.r, s.rect);
        if (rect_empty(visible) || !m_display)
            continue;
        m_display->scanout_damaged(
            i, Rect { visible.x - s.rect.x, visible.y - s.rect.y, visible.width, visible.height });
    }
    return give_back_stopped(resource->scanout_mask);
}

} // namespace vgpu::virtio_gpu
