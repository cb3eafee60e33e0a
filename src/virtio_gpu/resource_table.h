// Host-side 2D resources: pixels we own (filled by TRANSFER_TO_HOST_2D from the guest's backing
// pages), the backing entries, and which scanouts show them. Host memory is accounted against
// a limit (--max-hostmem); past it the guest gets ERR_OUT_OF_MEMORY.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "base/strong_id.h"
#include "virtio/guest_plane.h"
#include "virtio/guest_view.h"
#include "virtio_gpu/formats.h"
#include "virtio_gpu/pixel_storage.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio {
class GuestMemory;
}

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

// How SET_SCANOUT_BLOB lays a framebuffer into a blob (plane 0).
struct BlobLayout {
    uint32_t format = 0;
    uint32_t width = 0;
    uint32_t height = 0;
    uint32_t stride = 0;
    uint32_t offset = 0;
    bool operator==(const BlobLayout&) const = default;
};

// A blob's framebuffer: a storage wrapping the blob's view at the layout's offset.
struct BlobFramebuffer {
    BlobLayout layout;
    std::shared_ptr<PixelStorage> pixels;
    uint64_t accounted = 0;
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
    uint64_t accounted = 0; // host bytes charged for it (pixels, cache, overhead; not backing)
    bool own_mapping = false; // its pixels have a mapping of their own

    // Blob resources (RESOURCE_CREATE_BLOB, BLOB_MEM_GUEST): no pixels of ours; the backing is
    // read in place through `view`, and each layout a scanout used is a framebuffer over it.
    bool blob = false;
    uint64_t blob_size = 0;
    uint32_t blob_flags = 0;
    std::shared_ptr<virtio::GuestView> view; // null without backing
    uint64_t view_accounted = 0; // host bytes of a gathered view
    std::shared_ptr<const Fd> dmabuf; // its pages as a dmabuf, when exported
    // Its pages for trusted export consumers (--export-guest-memory), when they can be had.
    std::shared_ptr<const virtio::GuestPlane> guest_plane;
    std::vector<BlobFramebuffer> framebuffers;

    std::byte* row(uint32_t y) const { return pixels->data() + size_t(y) * stride; }
};

// Everything a guest makes us allocate counts against the limit: pixels with their CRC cache
// and bookkeeping, backing entries, and a fixed cost per resource; past it, ERR_OUT_OF_MEMORY.
// The number of resources and of pixel allocations with a mapping of their own are capped too
// (derived from the limit and from vm.max_map_count).
class ResourceTable {
public:
    // Per resource, besides its pixels: the Resource, its table entry and the allocator's share.
    static constexpr uint64_t resource_overhead = 512;
    // Per backing entry: the entry and its offset.
    static constexpr uint64_t backing_entry_cost = sizeof(MemEntry) + sizeof(uint64_t);

    explicit ResourceTable(uint64_t max_host_bytes);
    GpuResult<Resource*> create_2d(ResourceId id, uint32_t format, uint32_t width, uint32_t height);
    // A guest blob of `size` bytes over `entries` (checked by the caller to lie in guest
    // memory and to cover `size`), with its view built.
    GpuResult<Resource*> create_blob(ResourceId id, uint64_t size, uint32_t flags,
        const std::vector<MemEntry>& entries, const virtio::GuestMemory& memory);
    // Builds the blob's view again from its entries and the current memory table, dropping its
    // framebuffers (the device puts the scanouts that showed them on the new ones). Without
    // the entries in guest memory, the blob is left without a view (ERR_UNSPEC).
    GpuResult<void> rebuild_view(Resource& blob, const virtio::GuestMemory& memory);
    // The framebuffer for `layout` (checked by the caller against the blob's size), made once
    // and reused; at most max_framebuffers per blob, evicting those nobody else holds.
    GpuResult<std::shared_ptr<PixelStorage>> blob_framebuffer(
        Resource& blob, const BlobLayout& layout);
    static constexpr size_t max_framebuffers = 4;
    // Views of each kind alive, for query-stats.
    struct ViewCounts {
        size_t span = 0, mapped = 0, gathered = 0;
    };
    ViewCounts view_counts() const;
    // Replaces the resource's backing with `entries` (each checked by the caller), accounting
    // their memory: ERR_OUT_OF_MEMORY (and the old backing stays) past the limit.
    GpuResult<void> set_backing(Resource& resource, const std::vector<MemEntry>& entries);
    void clear_backing(Resource& resource);
    Resource* find(ResourceId id);
    template <typename F>
    void for_each(F&& f) const
    {
        for (const auto& [id, resource] : m_resources)
            f(static_cast<const Resource&>(*resource));
    }
    template <typename F>
    void for_each_mutable(F&& f)
    {
        for (auto& [id, resource] : m_resources)
            f(*resource);
    }
    // Removes the resource; its pixels (a blob's view) live on while a sink holds them.
    void remove(ResourceId id);
    void clear();

    size_t count() const { return m_resources.size(); }
    uint64_t host_bytes() const { return m_host_bytes; }
    uint64_t max_host_bytes() const { return m_max_host_bytes; }
    size_t max_resources() const { return m_max_resources; }
    uint64_t backing_entries() const { return m_backing_entries; }
    size_t mappings() const { return m_mappings; }
    size_t max_mappings() const { return m_max_mappings; }

private:
    // Takes `bytes` from the limit (exclusive, as QEMU's `hostmem < max_hostmem`).
    bool charge(uint64_t bytes);
    void release(Resource& resource);
    void drop_view(Resource& blob);

    uint64_t m_max_host_bytes;
    size_t m_max_resources;
    size_t m_max_mappings;
    uint64_t m_host_bytes = 0;
    uint64_t m_backing_entries = 0;
    size_t m_mappings = 0;
    std::unordered_map<ResourceId, std::unique_ptr<Resource>> m_resources;
};

} // namespace vgpu::virtio_gpu
