// SET_SCANOUT (virtio 1.3 §5.7.6.8): bind a rectangle of a resource to a scanout, or disable it.
#include <utility>

#include "base/log.h"
#include "virtio_gpu/device.h"
#include "virtio_gpu/rect.h"

namespace vgpu::virtio_gpu {

GpuResult<Resource*> Device::scanout_target(
    uint32_t scanout_id, uint32_t resource_id, const char* command)
{
    if (scanout_id >= scanout_limit()) {
        VGPU_LOG_GUEST(
            Debug, "{}: scanout {} out of range ({})", command, scanout_id, scanout_limit());
        return GpuError::InvalidScanoutId;
    }
    if (resource_id == 0) {
        // The spec's way to disable a scanout.
        if (m_scanouts[scanout_id].enabled)
            ++m_stats.scanout_changes;
        disable_scanout(scanout_id);
        return nullptr;
    }
    auto* resource = find_resource(resource_id, command);
    if (!resource)
        return GpuError::InvalidResourceId;
    // The spec names no error; QEMU (virtio_gpu_find_check_resource with require_backing)
    // answers ERR_UNSPEC for a resource without backing, before it looks at the rectangle.
    if (!resource->has_backing) {
        VGPU_LOG_GUEST(
            Debug, "{} {}: resource {} has no backing", command, scanout_id, resource_id);
        return GpuError::Unspec;
    }
    return resource;
}

Device::HandlerResult Device::handle(const cmd::SetScanout& c)
{
    auto* resource = TRY(scanout_target(c.scanout_id, c.resource_id, "SET_SCANOUT"));
    if (!resource)
        return nodata(); // disabled
    // A blob has no size or format of its own: it is shown with SET_SCANOUT_BLOB (ours; QEMU's
    // SET_SCANOUT reads the missing 2D image).
    if (resource->blob) {
        VGPU_LOG_GUEST(Debug, "SET_SCANOUT {}: resource {} is a blob", c.scanout_id, c.resource_id);
        return GpuError::InvalidParameter;
    }
    // QEMU's check: inside the resource, and at least 16x16.
    if (!rect_within(c.r, resource->width, resource->height) || c.r.width < 16 || c.r.height < 16) {
        VGPU_LOG_GUEST(Debug, "SET_SCANOUT {}: rect {}x{}+{}+{} not inside {}x{} (or below 16x16)",
            c.scanout_id, c.r.width, c.r.height, c.r.x, c.r.y, resource->width, resource->height);
        return GpuError::InvalidParameter;
    }
    auto& s = m_scanouts[c.scanout_id];
    if (auto* previous = m_resources.find(s.resource))
        previous->scanout_mask &= ~(1u << c.scanout_id);
    // A blob framebuffer it replaces goes back to the guest with the next flush.
    if (s.framebuffer)
        s.stopped.push_back(std::exchange(s.framebuffer, nullptr));
    s.resource = resource->id;
    s.rect = c.r;
    s.enabled = true;
    resource->scanout_mask |= 1u << c.scanout_id;
    ++m_stats.scanout_changes;
    if (m_display) {
        ScanoutSource source { resource->id, resource->format, resource->width, resource->height,
            resource->stride, c.r, resource->pixels, nullptr, 0, nullptr };
        m_display->scanout_set(c.scanout_id, std::move(source));
    }
    return nodata();
}

} // namespace vgpu::virtio_gpu
