#include "virtio_gpu/resource_table.h"

#include <algorithm>
#include <fstream>
#include <new>

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

namespace {
size_t max_map_count()
{
    std::ifstream in("/proc/sys/vm/max_map_count");
    size_t count = 0;
    return in >> count && count > 0 ? count : 65530;
}
} // namespace

ResourceTable::ResourceTable(uint64_t max_host_bytes)
    : m_max_host_bytes(max_host_bytes)
    // A resource costs at least a page of pixels' worth with everything around it; the cap
    // keeps a limit of gigabytes from allowing millions of tiny ones.
    , m_max_resources(size_t(std::clamp<uint64_t>(max_host_bytes / 16384, 256, 65536)))
    // Half of the process's mappings at most: guest memory, threads and libraries need theirs.
    , m_max_mappings(max_map_count() / 2)
{
}

bool ResourceTable::charge(uint64_t bytes)
{
    if (bytes >= m_max_host_bytes - m_host_bytes)
        return false;
    m_host_bytes += bytes;
    return true;
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
    if (!bytes || *stride > uint64_t(INT32_MAX) || *bytes >= m_max_host_bytes)
        return GpuError::OutOfMemory;
    if (m_resources.size() >= m_max_resources)
        return GpuError::OutOfMemory;
    bool own_mapping = *bytes >= PixelStorage::own_mapping_bytes;
    if (own_mapping && m_mappings >= m_max_mappings)
        return GpuError::OutOfMemory;
    uint64_t cost = PixelStorage::host_cost(width, height, uint32_t(*stride)) + resource_overhead;
    if (!charge(cost))
        return GpuError::OutOfMemory;
    auto pixels = PixelStorage::allocate(width, height, uint32_t(*stride), *info);
    if (!pixels) {
        m_host_bytes -= cost;
        return GpuError::OutOfMemory;
    }
    auto resource = std::make_unique<Resource>();
    resource->id = id;
    resource->format = *info;
    resource->width = width;
    resource->height = height;
    resource->stride = uint32_t(*stride);
    resource->pixels = std::move(pixels);
    resource->accounted = cost;
    resource->own_mapping = own_mapping;
    m_mappings += own_mapping ? 1 : 0;
    auto* raw = resource.get();
    m_resources.emplace(id, std::move(resource));
    return raw;
}

Resource* ResourceTable::find(ResourceId id)
{
    auto it = m_resources.find(id);
    return it == m_resources.end() ? nullptr : it->second.get();
}

GpuResult<void> ResourceTable::set_backing(Resource& resource, const std::vector<MemEntry>& entries)
{
    uint64_t old_cost = resource.backing.size() * backing_entry_cost;
    uint64_t cost = entries.size() * backing_entry_cost;
    m_host_bytes -= old_cost;
    if (!charge(cost)) {
        m_host_bytes += old_cost;
        return GpuError::OutOfMemory;
    }
    // Sized by the guest: fallible, and accounted above.
    std::vector<MemEntry> copy;
    std::vector<uint64_t> starts;
    try {
        copy.assign(entries.begin(), entries.end());
        starts.reserve(entries.size());
    } catch (const std::bad_alloc&) {
        m_host_bytes -= cost;
        m_host_bytes += old_cost;
        return GpuError::OutOfMemory;
    }
    uint64_t total = 0;
    for (const auto& e : entries) {
        starts.push_back(total);
        total += e.length;
    }
    m_backing_entries = m_backing_entries - resource.backing.size() + entries.size();
    resource.backing = std::move(copy);
    resource.backing_starts = std::move(starts);
    resource.backing_bytes = total;
    // Zero entries succeed but leave the resource without backing, as in QEMU.
    resource.has_backing = !entries.empty();
    return {};
}

void ResourceTable::clear_backing(Resource& resource)
{
    m_host_bytes -= resource.backing.size() * backing_entry_cost;
    m_backing_entries -= resource.backing.size();
    resource.backing = {};
    resource.backing_starts = {};
    resource.backing_bytes = 0;
    resource.has_backing = false;
}

void ResourceTable::release(Resource& resource)
{
    clear_backing(resource);
    m_host_bytes -= resource.accounted;
    m_mappings -= resource.own_mapping ? 1 : 0;
}

void ResourceTable::remove(ResourceId id)
{
    auto it = m_resources.find(id);
    if (it == m_resources.end())
        return;
    release(*it->second);
    m_resources.erase(it);
}

void ResourceTable::clear()
{
    m_resources.clear();
    m_host_bytes = 0;
    m_backing_entries = 0;
    m_mappings = 0;
}

} // namespace vgpu::virtio_gpu
