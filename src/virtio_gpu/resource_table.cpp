#include "virtio_gpu/resource_table.h"

#include "base/checked.h"

namespace vgpu::virtio_gpu {

const char* error_name(GpuError error)
{
    switch (error) {
    case GpuError::Unspec:
        return "ERR_UNSPEC";
    case GpuError::OutOfMemory:
        return "ERR_OUT_OF_MEMORY";
    case GpuError::InvalidScanoutId:
        return "ERR_INVALID_SCANOUT_ID";
    case GpuError::InvalidResourceId:
        return "ERR_INVALID_RESOURCE_ID";
    case GpuError::InvalidContextId:
        return "ERR_INVALID_CONTEXT_ID";
    case GpuError::InvalidParameter:
        return "ERR_INVALID_PARAMETER";
    }
    return "ERR_?";
}

GpuResult<Resource*> ResourceTable::create_2d(
    ResourceId id, uint32_t format, uint32_t width, uint32_t height)
{
    if (id.value() == 0 || m_resources.contains(id))
        return GpuError::InvalidResourceId;
    auto info = format_info(format);
    if (!info)
        return GpuError::InvalidParameter;
    // The spec names no error for an empty resource; QEMU 10 answers ERR_OUT_OF_MEMORY (it
    // cannot map the empty memfd its 2D resources live in).
    if (width == 0 || height == 0)
        return GpuError::OutOfMemory;
    // Anything that overflows cannot fit in host memory either. The limit is exclusive, as in
    // QEMU (`res->hostmem + g->hostmem < max_hostmem`).
    auto stride = checked_mul<uint64_t>(width, BYTES_PER_PIXEL);
    auto bytes = stride ? checked_mul<uint64_t>(*stride, height) : std::nullopt;
    if (!bytes || *stride > uint64_t(INT32_MAX) || *bytes >= m_max_host_bytes - m_host_bytes)
        return GpuError::OutOfMemory;
    auto pixels = PixelStorage::allocate(width, height, uint32_t(*stride), *info);
    if (!pixels)
        return GpuError::OutOfMemory;
    auto resource = std::make_unique<Resource>();
    resource->id = id;
    resource->format = *info;
    resource->width = width;
    resource->height = height;
    resource->stride = uint32_t(*stride);
    resource->pixels = std::move(pixels);
    m_host_bytes += *bytes;
    auto* raw = resource.get();
    m_resources.emplace(id, std::move(resource));
    return raw;
}

Resource* ResourceTable::find(ResourceId id)
{
    auto it = m_resources.find(id);
    return it == m_resources.end() ? nullptr : it->second.get();
}

void ResourceTable::remove(ResourceId id)
{
    auto it = m_resources.find(id);
    if (it == m_resources.end())
        return;
    m_host_bytes -= it->second->pixels->size();
    m_resources.erase(it);
}

void ResourceTable::clear()
{
    m_resources.clear();
    m_host_bytes = 0;
}

} // namespace vgpu::virtio_gpu
