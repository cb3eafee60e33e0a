#include "virtio_gpu/resource_table.h"

#include <algorithm>
#include <fstream>
#include <new>

#include "base/checked.h"
#include "base/log.h"
#include "virtio/guest_memory.h"

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

GpuResult<Resource*> ResourceTable::create_blob(ResourceId id, uint64_t size, uint32_t flags,
    const std::vector<MemEntry>& entries, const virtio::GuestMemory& memory)
{
    if (id.value() == 0 || m_resources.contains(id))
        return GpuError::InvalidResourceId;
    if (m_resources.size() >= m_max_resources || !charge(resource_overhead))
        return GpuError::OutOfMemory;
    auto resource = std::make_unique<Resource>();
    resource->id = id;
    resource->blob = true;
    resource->blob_size = size;
    resource->blob_flags = flags;
    resource->accounted = resource_overhead;
    if (auto r = set_backing(*resource, entries); !r) {
        m_host_bytes -= resource_overhead;
        return r.release_error();
    }
    if (auto r = rebuild_view(*resource, memory); !r) {
        release(*resource);
        return r.release_error();
    }
    auto* raw = resource.get();
    m_resources.emplace(id, std::move(resource));
    return raw;
}

void ResourceTable::drop_view(Resource& blob)
{
    for (auto& fb : blob.framebuffers)
        m_host_bytes -= fb.accounted;
    blob.framebuffers.clear();
    if (blob.view)
        m_mappings -= blob.view->mappings();
    m_host_bytes -= blob.view_accounted;
    blob.view_accounted = 0;
    blob.view.reset();
    blob.dmabuf.reset();
}

GpuResult<void> ResourceTable::rebuild_view(Resource& blob, const virtio::GuestMemory& memory)
{
    drop_view(blob);
    if (!blob.has_backing)
        return {};
    std::vector<virtio::GuestRange> ranges;
    ranges.reserve(blob.backing.size());
    for (const auto& e : blob.backing)
        ranges.push_back(virtio::GuestRange { e.addr, e.length });
    size_t budget = m_max_mappings > m_mappings ? m_max_mappings - m_mappings : 0;
    auto view = virtio::GuestView::create(memory, ranges, blob.blob_size, budget);
    if (!view) {
        VGPU_LOG_GUEST(Debug, "blob {}: no view: {}", blob.id.value(), view.error().message);
        return GpuError::Unspec;
    }
    if (!charge((*view)->host_bytes()))
        return GpuError::OutOfMemory;
    blob.view_accounted = (*view)->host_bytes();
    m_mappings += (*view)->mappings();
    blob.view = std::shared_ptr<virtio::GuestView>(view.release_value());
    return {};
}

GpuResult<std::shared_ptr<PixelStorage>> ResourceTable::blob_framebuffer(
    Resource& blob, const BlobLayout& layout)
{
    if (!blob.view)
        return GpuError::Unspec;
    auto format = format_info(layout.format);
    if (!format)
        return GpuError::InvalidParameter;
    for (auto& fb : blob.framebuffers)
        if (fb.layout == layout)
            return fb.pixels;
    if (blob.framebuffers.size() >= max_framebuffers) {
        // Those only this table holds are shown nowhere and read by nobody.
        std::erase_if(blob.framebuffers, [&](const BlobFramebuffer& fb) {
            if (fb.pixels.use_count() > 1)
                return false;
            m_host_bytes -= fb.accounted;
            return true;
        });
        if (blob.framebuffers.size() >= max_framebuffers)
            return GpuError::OutOfMemory;
    }
    uint64_t cost = PixelStorage::wrap_cost(layout.width, layout.height);
    if (!charge(cost))
        return GpuError::OutOfMemory;
    // The view's bytes are only ever read through the storage (sinks never write pixels).
    auto* pixels = const_cast<std::byte*>(blob.view->data()) + layout.offset;
    auto storage = PixelStorage::wrap(
        blob.view, pixels, layout.width, layout.height, layout.stride, *format);
    blob.framebuffers.push_back(BlobFramebuffer { layout, storage, cost });
    return storage;
}

ResourceTable::ViewCounts ResourceTable::view_counts() const
{
    ViewCounts counts;
    for (const auto& [id, resource] : m_resources) {
        if (!resource->view)
            continue;
        switch (resource->view->kind()) {
        case virtio::GuestView::Kind::Span:
            ++counts.span;
            break;
        case virtio::GuestView::Kind::Mapped:
            ++counts.mapped;
            break;
        case virtio::GuestView::Kind::Gathered:
            ++counts.gathered;
            break;
        }
    }
    return counts;
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
    if (resource.blob)
        drop_view(resource);
    m_host_bytes -= resource.backing.size() * backing_entry_cost;
    m_backing_entries -= resource.backing.size();
    resource.backing = {};
    resource.backing_starts = {};
    resource.backing_bytes = 0;
    resource.has_backing = false;
}

void ResourceTable::release(Resource& resource)
{
    drop_view(resource);
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
