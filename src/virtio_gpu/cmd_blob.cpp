// RESOURCE_CREATE_BLOB and SET_SCANOUT_BLOB (virtio 1.3 §5.7.6.8, VIRTIO_GPU_F_RESOURCE_BLOB), and
// the blob side of RESOURCE_FLUSH. A guest blob is the guest's own pages: we build one linear
// view of them (virtio/guest_view.h) and every framebuffer SET_SCANOUT_BLOB lays into it is a
// PixelStorage wrapping that view, which the sinks read in place. There is no copy on a flip.
//
// The flush fence is where guest and host synchronise. After flush(B) returns, the guest reuses
// the framebuffer A that B replaced; so a fenced flush completes once no sink still reads A (an
// UPDATE being written from it), or after --release-timeout, when the sinks still reading copy
// what they need. CRC capture computes the frame's CRC before the flush is answered.
#include <algorithm>
#include <cstring>

#include "base/checked.h"
#include "base/log.h"
#include "virtio/guest_memory.h"
#include "virtio_gpu/device.h"
#include "virtio_gpu/rect.h"

namespace vgpu::virtio_gpu {

namespace {
// Our limit on one blob: four 4095x4095 framebuffers' worth. Guest memory is not host memory,
// but a view reserves this much address space and the entries cost bookkeeping.
constexpr uint64_t MAX_BLOB_BYTES = uint64_t(256) << 20;
// Framebuffers a scanout stopped showing and still owes the guest, at most.
constexpr size_t MAX_STOPPED = 8;

bool same_rect(const Rect& a, const Rect& b)
{
    return a.x == b.x && a.y == b.y && a.width == b.width && a.height == b.height;
}
} // namespace

GpuResult<void> Device::check_entries(
    const std::vector<MemEntry>& entries, const char* command, uint32_t resource_id) const
{
    for (const auto& e : entries) {
        // QEMU cannot map an empty entry or one outside guest RAM: ERR_UNSPEC.
        if (e.length == 0) {
            VGPU_LOG_GUEST(Debug, "{} {}: empty entry at {:#x}", command, resource_id, e.addr);
            return GpuError::Unspec;
        }
        if (auto r = m_memory->translate_gpa(e.addr, e.length); !r) {
            VGPU_LOG_GUEST(Debug, "{} {}: {}", command, resource_id, r.error().message);
            return GpuError::Unspec;
        }
    }
    return {};
}

Device::HandlerResult Device::handle(const cmd::ResourceCreateBlob& c)
{
    // QEMU's order: the id, then the memory type, then the entries.
    if (c.resource_id == 0 || m_resources.find(ResourceId(c.resource_id))) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_BLOB: resource id {} is 0 or in use", c.resource_id);
        return GpuError::InvalidResourceId;
    }
    if (c.blob_mem != BLOB_MEM_GUEST) {
        // HOST3D and HOST3D_GUEST need a 3D renderer, which this device does not have.
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_BLOB {}: blob_mem {} is not BLOB_MEM_GUEST",
            c.resource_id, c.blob_mem);
        return GpuError::InvalidParameter;
    }
    if (!c.entries_valid)
        return GpuError::Unspec;
    if (c.size == 0 || c.size > MAX_BLOB_BYTES) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_BLOB {}: size {} outside 1..{}", c.resource_id,
            c.size, MAX_BLOB_BYTES);
        return c.size == 0 ? GpuError::InvalidParameter : GpuError::OutOfMemory;
    }
    TRY(check_entries(c.entries, "RESOURCE_CREATE_BLOB", c.resource_id));
    uint64_t covered = 0;
    for (const auto& e : c.entries)
        covered += e.length; // at most 16384 x 4 GiB: no overflow
    if (covered < c.size) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_BLOB {}: {} entries cover {} of {} bytes",
            c.resource_id, c.entries.size(), covered, c.size);
        return GpuError::InvalidParameter;
    }
    auto blob = m_resources.create_blob(
        ResourceId(c.resource_id), c.size, c.blob_flags, c.entries, *m_memory);
    if (!blob) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_CREATE_BLOB {}: {} bytes in {} entries: {}", c.resource_id,
            c.size, c.entries.size(), error_name(blob.error()));
        return blob.release_error();
    }
    ++m_stats.blobs_created;
    export_dmabuf(**blob);
    VGPU_LOG_GUEST(Debug, "blob {}: {} bytes, {} entries, flags {:#x}: {} view of {} runs",
        c.resource_id, c.size, c.entries.size(), c.blob_flags,
        virtio::GuestView::kind_name((*blob)->view->kind()), (*blob)->view->runs());
    return nodata();
}

Device::HandlerResult Device::handle(const cmd::SetScanoutBlob& c)
{
    auto* blob = TRY(scanout_target(c.scanout_id, c.resource_id, "SET_SCANOUT_BLOB"));
    if (!blob)
        return nodata(); // disabled
    // A 2D resource has no blob to lay a framebuffer into (QEMU: its blob_size is 0).
    if (!blob->blob) {
        VGPU_LOG_GUEST(
            Debug, "SET_SCANOUT_BLOB {}: resource {} is not a blob", c.scanout_id, c.resource_id);
        return GpuError::InvalidParameter;
    }
    auto info = format_info(c.format);
    // The rectangle inside the framebuffer and at least 16x16 (QEMU's check); the framebuffer's
    // rows no narrower than its width, 4-byte aligned (pixman reads 32-bit pixels), and all of it
    // inside the blob, in 64-bit arithmetic. Planes 1..3 do not exist for these formats.
    const uint32_t stride = c.strides[0], offset = c.offsets[0];
    const uint64_t row_bytes = uint64_t(c.width) * BYTES_PER_PIXEL;
    auto end = checked_add<uint64_t>(
        offset, uint64_t(stride) * (c.height ? c.height - 1 : 0) + row_bytes);
    const char* problem = !info                          ? "format unknown"
        : c.width == 0 || c.height == 0                  ? "empty framebuffer"
        : !rect_within(c.r, c.width, c.height)           ? "rect outside the framebuffer"
        : c.r.width < 16 || c.r.height < 16              ? "rect below 16x16"
        : stride < row_bytes || stride % 4 || offset % 4 ? "stride or offset"
        : !end || *end > blob->blob_size                 ? "framebuffer beyond the blob"
                                                         : nullptr;
    if (problem) {
        VGPU_LOG_GUEST(Debug,
            "SET_SCANOUT_BLOB {}: resource {} format {} {}x{} stride {} offset {} rect "
            "{}x{}+{}+{} in {} bytes: {}",
            c.scanout_id, c.resource_id, c.format, c.width, c.height, stride, offset, c.r.width,
            c.r.height, c.r.x, c.r.y, blob->blob_size, problem);
        return GpuError::InvalidParameter;
    }
    BlobLayout layout { c.format, c.width, c.height, stride, offset };
    auto framebuffer = m_resources.blob_framebuffer(*blob, layout);
    if (!framebuffer) {
        VGPU_LOG_GUEST(Debug, "SET_SCANOUT_BLOB {}: resource {}: {}", c.scanout_id, c.resource_id,
            error_name(framebuffer.error()));
        return framebuffer.release_error();
    }
    show_blob(c.scanout_id, *blob, layout, framebuffer.release_value(), c.r);
    return nodata();
}

void Device::show_blob(uint32_t index, Resource& blob, const BlobLayout& layout,
    const std::shared_ptr<PixelStorage>& framebuffer, const Rect& rect)
{
    auto& s = m_scanouts[index];
    if (s.enabled && s.framebuffer == framebuffer && same_rect(s.rect, rect))
        return; // already shown: the flush that follows shows what changed
    if (auto* previous = m_resources.find(s.resource); previous && previous != &blob)
        previous->scanout_mask &= ~(1u << index);
    if (s.framebuffer && s.framebuffer != framebuffer) {
        s.stopped.push_back(s.framebuffer);
        if (s.stopped.size() > MAX_STOPPED)
            s.stopped.erase(s.stopped.begin());
    }
    std::erase(s.stopped, framebuffer); // shown again: not the guest's to reuse
    s.resource = blob.id;
    s.rect = rect;
    s.enabled = true;
    s.framebuffer = framebuffer;
    s.layout = layout;
    blob.scanout_mask |= 1u << index;
    ++m_stats.scanout_changes;
    // The guest drew it while it was not shown (or not shown here): nothing cached holds.
    framebuffer->changed(Rect { 0, 0, layout.width, layout.height });
    if (m_display) {
        ScanoutSource source { blob.id, framebuffer->format(), layout.width, layout.height,
            layout.stride, rect, framebuffer, blob.dmabuf, layout.offset, blob.guest_plane };
        m_display->scanout_set(index, std::move(source));
    }
}

Device::HandlerResult Device::flush_blob(Resource& blob, const Rect& r)
{
    ++m_stats.blob_flushes;
    bool shown = false, inside = false;
    std::vector<const PixelStorage*> damaged;
    for (uint32_t i = 0; i < MAX_SCANOUTS; ++i) {
        auto& s = m_scanouts[i];
        if (!s.enabled || s.resource != blob.id || !s.framebuffer)
            continue;
        shown = true;
        // The rectangle is in framebuffer coordinates (the Linux driver's plane damage).
        if (!rect_within(r, s.layout.width, s.layout.height))
            continue;
        inside = true;
        Rect visible = rect_intersect(r, s.rect);
        if (rect_empty(visible))
            continue;
        if (blob.view && blob.view->kind() == virtio::GuestView::Kind::Gathered) {
            // A CRC still computing on the copy finishes before it is refilled.
            if (m_display)
                m_display->pixels_will_change(*s.framebuffer);
            uint64_t first = s.layout.offset + uint64_t(visible.y) * s.layout.stride;
            auto copied = blob.view->gather(
                *m_memory, first, uint64_t(visible.height) * s.layout.stride);
            if (copied)
                m_stats.bytes_gathered += *copied;
        }
        s.framebuffer->changed(visible);
        if (std::find(damaged.begin(), damaged.end(), s.framebuffer.get()) == damaged.end())
            damaged.push_back(s.framebuffer.get());
        if (m_display)
            m_display->scanout_damaged(i,
                Rect { visible.x - s.rect.x, visible.y - s.rect.y, visible.width, visible.height });
    }
    if (shown && !inside) {
        VGPU_LOG_GUEST(Debug, "RESOURCE_FLUSH {}: rect {}x{}+{}+{} outside its framebuffers",
            blob.id.value(), r.width, r.height, r.x, r.y);
        return GpuError::InvalidParameter;
    }
    // The frame's CRC is taken before the guest hears back: it may draw into this very
    // framebuffer next (DIRTYFB on the buffer on screen).
    if (m_display)
        for (const auto* framebuffer : damaged)
            m_display->pixels_will_change(*framebuffer);
    return nodata();
}

Device::HandlerResult Device::give_back_stopped(uint32_t scanout_mask)
{
    std::vector<std::shared_ptr<const PixelStorage>> waiting;
    for (uint32_t i = 0; i < MAX_SCANOUTS; ++i) {
        if (!(scanout_mask & (1u << i)))
            continue;
        for (auto& stopped : m_scanouts[i].stopped)
            if (stopped->readers() > 0)
                waiting.push_back(std::move(stopped));
        m_scanouts[i].stopped.clear();
    }
    // Without a fence the guest waits for nothing; without readers there is nothing to wait for.
    if (!(m_request.flags & FLAG_FENCE) || waiting.empty() || !m_display)
        return nodata();
    ++m_stats.release_waits;
    auto answer = []() -> HandlerResult { return nodata(); };
    uint64_t serial = defer(answer);
    auto remaining = std::make_shared<size_t>(waiting.size());
    auto timed_out = std::make_shared<bool>(false);
    for (auto& framebuffer : waiting)
        m_display->when_released(std::move(framebuffer), m_options.release_timeout,
            m_lifetime.guard([this, serial, remaining, timed_out, answer](bool timeout) {
                *timed_out |= timeout;
                if (--*remaining)
                    return;
                if (*timed_out)
                    ++m_stats.release_timeouts;
                if (deferral_current(serial))
                    complete_deferred(serial, answer());
            }));
    return Response(Deferred {});
}

void Device::export_dmabuf(Resource& blob)
{
    blob.dmabuf.reset();
    blob.guest_plane.reset();
    bool want_dmabuf = m_options.dmabuf && (blob.blob_flags & BLOB_FLAG_USE_SHAREABLE);
    if (!blob.view || (!want_dmabuf && !m_options.export_guest_memory))
        return;
    std::vector<virtio::GuestRange> ranges;
    ranges.reserve(blob.backing.size());
    for (const auto& e : blob.backing)
        ranges.push_back(virtio::GuestRange { e.addr, e.length });
    if (m_options.export_guest_memory) {
        if (auto plane = virtio::make_guest_plane(*m_memory, ranges, blob.blob_size)) {
            blob.guest_plane = std::make_shared<const virtio::GuestPlane>(std::move(plane.value()));
        } else {
            ++m_stats.guest_plane_failures;
            VGPU_LOG_GUEST(Debug, "blob {}: no guest memory plane: {}", blob.id.value(),
                plane.error().message);
        }
    }
    if (!want_dmabuf)
        return;
    auto fd = m_options.dmabuf->export_ranges(*m_memory, ranges, blob.blob_size);
    if (!fd) {
        ++m_stats.dmabuf_failures;
        VGPU_LOG_GUEST(Debug, "blob {}: no {} dmabuf, UPDATEs instead: {}", blob.id.value(),
            m_options.dmabuf->name(), fd.error().message);
        return;
    }
    ++m_stats.dmabufs_exported;
    blob.dmabuf = std::make_shared<const Fd>(fd.release_value());
}

void Device::release_blob_readers(const Resource& blob)
{
    for (const auto& fb : blob.framebuffers) {
        if (m_display)
            m_display->pixels_will_change(*fb.pixels);
        fb.pixels->make_readers_let_go();
    }
}

} // namespace vgpu::virtio_gpu
