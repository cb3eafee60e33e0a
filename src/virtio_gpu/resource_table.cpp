#include "virtio_gpu/resource_table.h"

#include <algorithm>
#include <cstdlib>

#include "base/crc32c.h"
#include <cstring>
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

void PixelStorage::Free::operator()(std::byte* p) const { std::free(p); }

std::shared_ptr<PixelStorage> PixelStorage::allocate(uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format)
{
    size_t size = size_t(stride) * height;
    // 64-byte alignment for vectorised copies and pixman; size rounded up as aligned_alloc needs.
    size_t rounded = (size + 63) / 64 * 64;
    auto* p = static_cast<std::byte*>(std::aligned_alloc(64, rounded ? rounded : 64));
    if (!p)
        return nullptr;
    std::memset(p, 0, rounded);
    auto storage = std::make_shared<PixelStorage>();
    storage->m_data.reset(p);
    storage->m_size = size;
    storage->m_width = width;
    storage->m_height = height;
    storage->m_stride = stride;
    storage->m_format = format;
    // A new resource is all zeros: every row's CRC is the CRC of a black row.
    storage->m_row_crcs.assign(height, 0);
    storage->m_row_crc_valid.assign(height, 0);
    return storage;
}

void PixelStorage::rows_changed(uint32_t y0, uint32_t y1, bool eager) const
{
    y1 = std::min(y1, m_height);
    for (uint32_t y = y0; y < y1; ++y) {
        if (eager) {
            m_row_crcs[y] = canonical_row_crc(0, data() + size_t(y) * m_stride, m_width, m_format);
            m_row_crc_valid[y] = 1;
        } else {
            m_row_crc_valid[y] = 0;
        }
    }
}

uint32_t PixelStorage::row_crc(uint32_t y) const
{
    if (!m_row_crc_valid[y]) {
        m_row_crcs[y] = canonical_row_crc(0, data() + size_t(y) * m_stride, m_width, m_format);
        m_row_crc_valid[y] = 1;
    }
    return m_row_crcs[y];
}

uint32_t PixelStorage::rect_crc(const Rect& rect) const
{
    uint64_t row_bytes = uint64_t(rect.width) * BYTES_PER_PIXEL;
    std::unique_ptr<crc::Appender> narrow;
    if (!m_row_appender)
        m_row_appender = std::make_unique<crc::Appender>(uint64_t(m_width) * BYTES_PER_PIXEL);
    if (row_bytes != m_row_appender->block_length())
        narrow = std::make_unique<crc::Appender>(row_bytes);
    const crc::Appender& appender = narrow ? *narrow : *m_row_appender;
    uint32_t crc = 0;
    for (uint32_t y = rect.y; y < rect.y + rect.height; ++y) {
        // Whole rows come from the cache; a narrower rectangle is checksummed where it lies.
        uint32_t row = rect.x == 0 && rect.width == m_width
            ? row_crc(y)
            : canonical_row_crc(0, data() + size_t(y) * m_stride + size_t(rect.x) * BYTES_PER_PIXEL, rect.width, m_format);
        crc = y == rect.y ? row : appender.append(crc, row);
    }
    return crc;
}

GpuResult<Resource*> ResourceTable::create_2d(ResourceId id, uint32_t format, uint32_t width, uint32_t height)
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
