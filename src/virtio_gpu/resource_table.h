// Host-side 2D resources: pixels we own (filled by TRANSFER_TO_HOST_2D from the guest's backing
// pages), the backing entries, and which scanouts show them. Host memory is accounted against
// a limit (--max-hostmem); past it the guest gets ERR_OUT_OF_MEMORY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/crc32c.h"
#include "base/result.h"
#include "base/strong_id.h"
#include "virtio_gpu/formats.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

struct ResourceIdTag;
using ResourceId = StrongId<ResourceIdTag>;

enum class GpuError : uint32_t {
    Unspec = uint32_t(CtrlType::ErrUnspec),
    OutOfMemory = uint32_t(CtrlType::ErrOutOfMemory),
    InvalidScanoutId = uint32_t(CtrlType::ErrInvalidScanoutId),
    InvalidResourceId = uint32_t(CtrlType::ErrInvalidResourceId),
    InvalidContextId = uint32_t(CtrlType::ErrInvalidContextId),
    InvalidParameter = uint32_t(CtrlType::ErrInvalidParameter),
};
const char* error_name(GpuError error);

template <typename T>
using GpuResult = Result<T, GpuError>;

// Pixel memory. Shared between the resource and any sink still sending from it (an UPDATE in
// flight to QEMU keeps it alive after an unref). It also keeps a CRC per row for CRC capture:
// rows are checksummed once when they change (right after the copy, while still in cache, when
// capture is on) and a frame's CRC is then the rows' CRCs joined.
class PixelStorage {
public:
    static std::shared_ptr<PixelStorage> allocate(uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format);
    std::byte* data() const { return m_data.get(); }
    size_t size() const { return m_size; }
    uint32_t width() const { return m_width; }
    uint32_t height() const { return m_height; }
    uint32_t stride() const { return m_stride; }
    const FormatInfo& format() const { return m_format; }

    // Rows [y0, y1) changed: forget their CRCs, or compute them now (eager: the rows were just
    // written and are still in cache).
    void rows_changed(uint32_t y0, uint32_t y1, bool eager) const;
    // CRC-32C of the rectangle's pixels as 0x00RRGGBB little-endian, row after row.
    uint32_t rect_crc(const Rect& rect) const;

private:
    struct Free {
        void operator()(std::byte* p) const;
    };
    uint32_t row_crc(uint32_t y) const;

    std::unique_ptr<std::byte, Free> m_data;
    size_t m_size = 0;
    uint32_t m_width = 0, m_height = 0, m_stride = 0;
    FormatInfo m_format {};
    mutable std::unique_ptr<crc::Appender> m_row_appender; // joins whole rows
    mutable std::vector<uint32_t> m_row_crcs;
    mutable std::vector<uint8_t> m_row_crc_valid;
};

struct Resource {
    ResourceId id;
    FormatInfo format;
    uint32_t width = 0;
    uint32_t height = 0;
    uint32_t stride = 0; // bytes per row, width * 4
    std::shared_ptr<PixelStorage> pixels;
    std::vector<MemEntry> backing; // guest ranges, validated at attach time
    std::vector<uint64_t> backing_starts; // linear offset of each entry, for binary search
    uint64_t backing_bytes = 0;
    bool has_backing = false;
    uint32_t scanout_mask = 0; // bit n: scanout n shows this resource

    std::byte* row(uint32_t y) const { return pixels->data() + size_t(y) * stride; }
};

class ResourceTable {
public:
    explicit ResourceTable(uint64_t max_host_bytes)
        : m_max_host_bytes(max_host_bytes)
    {
    }
    GpuResult<Resource*> create_2d(ResourceId id, uint32_t format, uint32_t width, uint32_t height);
    Resource* find(ResourceId id);
    // Removes the resource; its pixels live on while a sink holds them.
    void remove(ResourceId id);
    void clear();

    size_t count() const { return m_resources.size(); }
    uint64_t host_bytes() const { return m_host_bytes; }
    uint64_t max_host_bytes() const { return m_max_host_bytes; }

private:
    uint64_t m_max_host_bytes;
    uint64_t m_host_bytes = 0;
    std::unordered_map<ResourceId, std::unique_ptr<Resource>> m_resources;
};

} // namespace vgpu::virtio_gpu
