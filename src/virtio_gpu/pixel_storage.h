// The pixel memory of a 2D resource, and the CRC cache that makes per-flip CRC capture cheap.
//
// The cache keeps a CRC per tile (TILE_PIXELS pixels of one row) and per row. A change marks the
// tiles and rows it touches; a CRC request recomputes only what was marked and joins the rest
// (a join is four table lookups: crc::Appender). So a flush that changed a 256x256 rectangle of a
// 1920x1080 frame checksums about 256 x 384 pixels, not 1080 whole rows. Rows that changed
// whole (a full-width transfer) are checksummed in one pass, without tiles.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "base/crc32c.h"
#include "base/fd.h"
#include "base/result.h"
#include "base/thread_annotations.h"
#include "virtio_gpu/formats.h"
#include "virtio_gpu/rect.h"

namespace vgpu::virtio_gpu {

// A sink that reads a storage later, on the device loop (an UPDATE being written to QEMU, an
// export consumer holding a frame). For a blob's storage, which is guest memory, the device
// waits for these readers before it lets the guest reuse the buffer, and when it cannot wait any
// longer asks them to let go: each copies what it still needs and stops reading.
//
// A 2D resource's storage is ours, and readers of it normally read at once when its pixels are
// about to change (DisplaySink::pixels_will_change). A reader that holds the pixels for another
// process (an exclusive export lease until its consumer acknowledges) says so with
// holds_for_consumer(): a transfer into the storage then waits for it, up to the release timeout.
class StorageReader {
public:
    virtual ~StorageReader() = default;
    virtual void let_go() = 0;
    virtual bool holds_for_consumer() const { return false; }
};

// Shared between the resource and any sink still reading it (an UPDATE in flight to QEMU, a CRC
// not yet computed), so that it outlives an unref. The CRC cache is shared by the device loop
// (transfers fill it) and CRC capture's worker (which joins it): it is guarded by a mutex. The
// pixels are written only by the loop, and only after it waited for the worker to finish with
// them (pixels_will_change); copy_in takes the same mutex, which orders the two.
class PixelStorage {
public:
    static constexpr uint32_t TILE_PIXELS = 128;

    // What a storage of this size can cost in host memory: its pixels (rounded up as they are
    // allocated), the CRC cache that capture may add, and the bookkeeping. The resource table
    // accounts this much, so that the limit bounds what the guest makes us allocate.
    static uint64_t host_cost(uint32_t width, uint32_t height, uint32_t stride);
    // Pixel allocations this large get a mapping of their own (vm.max_map_count counts them).
    static constexpr uint64_t own_mapping_bytes = uint64_t(128) * 1024;
    static std::shared_ptr<PixelStorage> allocate(
        uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format);
    // A framebuffer in memory someone else owns (a blob's view of guest memory): `owner` keeps
    // `pixels` alive; the caller checked that stride * (height - 1) + width * 4 bytes lie there.
    // The guest writes it directly: changes are known from its flushes (changed()).
    static std::shared_ptr<PixelStorage> wrap(std::shared_ptr<const void> owner, std::byte* pixels,
        uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format);
    std::byte* data() const { return m_pixels; }
    bool guest_memory() const { return m_owner != nullptr; }
    // The pixels as a memfd that another process may map read-only (the export socket's REGION
    // planes, docs/export.md). The first call moves them into a memfd mapped at the same address,
    // so every pointer into them stays valid and nothing else changes, and seals it against
    // writes, resizing and further seals (our own mapping stays writable); later calls return the
    // same descriptor. Only our own allocations of own_mapping_bytes or more can move: smaller
    // ones and wrapped guest memory fail. Loop thread only.
    Result<std::shared_ptr<const Fd>> share() const;
    // The size of the shared memfd's mapping (the pixels rounded up to whole pages).
    size_t mapped_size() const { return m_data.get_deleter().mapped; }
    // What host memory a wrapped storage can cost: its CRC cache and bookkeeping.
    static uint64_t wrap_cost(uint32_t width, uint32_t height);

    // Readers on the device loop (see StorageReader); loop thread only.
    void add_reader(StorageReader* reader) const;
    void remove_reader(StorageReader* reader) const;
    size_t readers() const { return m_readers.size(); }
    // Readers whose holds_for_consumer() is true.
    size_t consumer_holds() const;
    // Which readers a wait is for: all of them (a blob's release), or only those that hold the
    // pixels for a consumer (a 2D transfer; the others read at once in pixels_will_change).
    enum class Readers {
        All,
        ConsumerHolds
    };
    // Asks those readers to let go (each removes itself).
    void make_readers_let_go(Readers which = Readers::All) const;
    // Runs once, on the loop, when the last of those readers leaves (at once if there is none).
    void when_unread(std::function<void()> callback, Readers which = Readers::All) const;
    size_t size() const { return m_size; }
    uint32_t width() const { return m_width; }
    uint32_t height() const { return m_height; }
    uint32_t stride() const { return m_stride; }
    const FormatInfo& format() const { return m_format; }

    // The pixels of `rect` (inside the storage) changed.
    void changed(const Rect& rect) const EXCLUDES(m_cache_mutex);
    // Copies `length` bytes to byte `offset` of the pixels (the caller checked the range) and
    // marks what changed. With `checksum` (CRC capture is on), every whole tile that arrives is
    // checksummed on the way, a few tiles at a time while still in L1: that costs about a tenth
    // of the copy, where checksumming the frame later costs as much as the copy again.
    void copy_in(size_t offset, const std::byte* source, size_t length, bool checksum)
        EXCLUDES(m_cache_mutex);
    // CRC-32C of the rectangle's pixels as 0x00RRGGBB little-endian, row after row.
    uint32_t rect_crc(const Rect& rect) const EXCLUDES(m_cache_mutex);
    // What rect_crc would cost now, in pixels to checksum (a join counts as 16 pixels): lets a
    // caller run cheap CRCs at once and hand expensive ones to a worker.
    uint64_t crc_cost(const Rect& rect) const EXCLUDES(m_cache_mutex);
    // CRCs computed from pixels so far (tiles and whole rows): for tests and benchmarks.
    uint64_t pixels_checksummed() const EXCLUDES(m_cache_mutex)
    {
        MutexLock lock(m_cache_mutex);
        return m_pixels_checksummed;
    }

private:
    struct Free {
        Free() noexcept
            : mapped(0)
        {
        }
        explicit Free(size_t bytes) noexcept
            : mapped(bytes)
        {
        }
        size_t mapped; // bytes of an mmap()ed allocation; 0: aligned_alloc
        void operator()(std::byte* p) const;
    };
    struct CrcCache;
    const std::byte* pixel(uint32_t x, uint32_t y) const
    {
        return data() + size_t(y) * m_stride + size_t(x) * BYTES_PER_PIXEL;
    }
    CrcCache& cache() const REQUIRES(m_cache_mutex);
    uint32_t row_crc(uint32_t y) const REQUIRES(m_cache_mutex);
    void compute_tiles(uint32_t y, uint32_t first, uint32_t count) const REQUIRES(m_cache_mutex);
    void ensure_tiles(uint32_t y, uint32_t begin, uint32_t end) const REQUIRES(m_cache_mutex);
    void copy_row_checksummed(uint32_t y, uint32_t begin, uint32_t end, const std::byte* source)
        REQUIRES(m_cache_mutex);
    void mark_row(uint32_t y, uint32_t begin, uint32_t end) const REQUIRES(m_cache_mutex);
    uint32_t span_crc(uint32_t x, uint32_t y, uint32_t width) const REQUIRES(m_cache_mutex);

    std::unique_ptr<std::byte, Free> m_data;
    std::shared_ptr<const void> m_owner; // wrapped memory's owner
    mutable std::shared_ptr<const Fd> m_shared; // the memfd the pixels moved to (share())
    std::byte* m_pixels = nullptr;
    size_t m_size = 0;
    mutable std::vector<StorageReader*> m_readers;
    mutable std::vector<std::function<void()>> m_unread_callbacks;
    mutable std::vector<std::function<void()>> m_unheld_callbacks;
    uint32_t m_width = 0, m_height = 0, m_stride = 0;
    FormatInfo m_format {};
    mutable Mutex m_cache_mutex;
    // Made on the first CRC request: resources that no capture looks at pay nothing.
    mutable std::unique_ptr<CrcCache> m_cache GUARDED_BY(m_cache_mutex);
    mutable uint64_t m_pixels_checksummed GUARDED_BY(m_cache_mutex) = 0;
};

} // namespace vgpu::virtio_gpu
