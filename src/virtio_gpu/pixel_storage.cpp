#include "virtio_gpu/pixel_storage.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace vgpu::virtio_gpu {

namespace {
enum class RowState : uint8_t {
    Valid, // row_crc holds the row's CRC
    Whole, // the row changed as a whole: checksum it in one pass (its tiles are all invalid)
    Tiles, // some tiles changed: recompute those and join
};
} // namespace

struct PixelStorage::CrcCache {
    CrcCache(uint32_t width, uint32_t height)
        : tiles_per_row((width + TILE_PIXELS - 1) / TILE_PIXELS)
        , last_tile_pixels(width - (tiles_per_row - 1) * TILE_PIXELS)
        , tile_crc(size_t(tiles_per_row) * height)
        , tile_valid(size_t(tiles_per_row) * height, 0)
        , row_crc(height)
        , row_state(height, RowState::Whole)
        , tile_join(uint64_t(TILE_PIXELS) * BYTES_PER_PIXEL)
        , row_join(uint64_t(width) * BYTES_PER_PIXEL)
    {
        if (last_tile_pixels != TILE_PIXELS)
            last_join.emplace(uint64_t(last_tile_pixels) * BYTES_PER_PIXEL);
    }
    const crc::Appender& join_for(uint32_t tile) const
    {
        return tile + 1 == tiles_per_row && last_join ? *last_join : tile_join;
    }

    uint32_t tiles_per_row;
    uint32_t last_tile_pixels;
    std::vector<uint32_t> tile_crc;
    std::vector<uint8_t> tile_valid;
    std::vector<uint32_t> row_crc;
    std::vector<RowState> row_state;
    crc::Appender tile_join;
    std::optional<crc::Appender> last_join; // the last tile of a row, when it is shorter
    crc::Appender row_join; // whole rows
    std::optional<crc::Appender> span_join; // rows of the last narrower rectangle asked for
};

void PixelStorage::Free::operator()(std::byte* p) const
{
    if (mapped)
        ::munmap(p, mapped);
    else
        std::free(p);
}

uint64_t PixelStorage::host_cost(uint32_t width, uint32_t height, uint32_t stride)
{
    uint64_t pixels = (uint64_t(stride) * height + 63) / 64 * 64;
    uint64_t tiles = (uint64_t(width) + TILE_PIXELS - 1) / TILE_PIXELS * height;
    // The cache: a CRC and a valid byte per tile, a CRC and a state per row, and its joiners
    // (one more for a narrower rectangle than the last asked for).
    uint64_t cache = sizeof(CrcCache) + tiles * (sizeof(uint32_t) + 1)
        + uint64_t(height) * (sizeof(uint32_t) + sizeof(RowState));
    // The object, its shared_ptr control block and the allocator's own headers.
    constexpr uint64_t bookkeeping = 256;
    return pixels + cache + bookkeeping;
}

std::shared_ptr<PixelStorage> PixelStorage::allocate(
    uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format)
{
    size_t size = size_t(stride) * height;
    // 64-byte alignment for vectorised copies and pixman; size rounded up as aligned_alloc needs.
    size_t rounded = (size + 63) / 64 * 64;
    auto storage = std::make_shared<PixelStorage>();
    std::byte* p = nullptr;
    if (rounded >= own_mapping_bytes) {
        // A mapping of its own, whole pages (zeroed by the kernel): it can move into a memfd at
        // the same address when it is exported (share()).
        size_t page = size_t(::sysconf(_SC_PAGESIZE));
        size_t length = (size + page - 1) / page * page;
        void* m = ::mmap(
            nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return nullptr;
        p = static_cast<std::byte*>(m);
        storage->m_data = std::unique_ptr<std::byte, Free>(p, Free(length));
    } else {
        p = static_cast<std::byte*>(std::aligned_alloc(64, rounded ? rounded : 64));
        if (!p)
            return nullptr;
        std::memset(p, 0, rounded);
        storage->m_data.reset(p);
    }
    storage->m_pixels = p;
    storage->m_size = size;
    storage->m_width = width;
    storage->m_height = height;
    storage->m_stride = stride;
    storage->m_format = format;
    return storage;
}

std::shared_ptr<PixelStorage> PixelStorage::wrap(std::shared_ptr<const void> owner,
    std::byte* pixels, uint32_t width, uint32_t height, uint32_t stride, const FormatInfo& format)
{
    auto storage = std::make_shared<PixelStorage>();
    storage->m_owner = std::move(owner);
    storage->m_pixels = pixels;
    storage->m_size = size_t(stride) * (height - 1) + size_t(width) * BYTES_PER_PIXEL;
    storage->m_width = width;
    storage->m_height = height;
    storage->m_stride = stride;
    storage->m_format = format;
    return storage;
}

Result<std::shared_ptr<const Fd>> PixelStorage::share() const
{
    if (m_shared)
        return m_shared;
    if (m_owner)
        return Error::format("a blob's framebuffer is guest memory, not ours to share");
    size_t length = mapped_size();
    if (!length)
        return Error::format("{} bytes of pixels are too few for a mapping of their own", m_size);
    Fd memfd = TRY(make_memfd("vgpu-pixels", length));
    void* fresh = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, memfd.get(), 0);
    if (fresh == MAP_FAILED)
        return Error::from_errno("mmap of the pixels' memfd");
    // Nobody else may write, shrink, grow or reseal it; this mapping stays writable. Sealed
    // before the move, so that a failure leaves the pixels where they were.
    if (auto sealed = seal_read_only(memfd.get()); !sealed) {
        ::munmap(fresh, length);
        return sealed.error();
    }
    std::memcpy(fresh, m_pixels, length);
    // The new mapping takes the old one's place in one step: a worker reading the pixels (a CRC)
    // sees the same bytes before and after. Only the loop thread writes them, and it is here.
    void* moved = ::mremap(fresh, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, m_pixels);
    if (moved == MAP_FAILED) {
        auto error = Error::from_errno("mremap of the pixels into their memfd");
        ::munmap(fresh, length);
        return error;
    }
    m_shared = std::make_shared<const Fd>(std::move(memfd));
    return m_shared;
}

uint64_t PixelStorage::wrap_cost(uint32_t width, uint32_t height)
{
    return host_cost(width, height, 0);
}

void PixelStorage::add_reader(StorageReader* reader) const { m_readers.push_back(reader); }

void PixelStorage::remove_reader(StorageReader* reader) const
{
    std::erase(m_readers, reader);
    if (consumer_holds() == 0 && !m_unheld_callbacks.empty()) {
        auto callbacks = std::move(m_unheld_callbacks);
        m_unheld_callbacks.clear();
        for (auto& callback : callbacks)
            callback();
    }
    if (!m_readers.empty())
        return;
    auto callbacks = std::move(m_unread_callbacks);
    m_unread_callbacks.clear();
    for (auto& callback : callbacks)
        callback();
}

size_t PixelStorage::consumer_holds() const
{
    return size_t(std::count_if(m_readers.begin(), m_readers.end(),
        [](const StorageReader* r) { return r->holds_for_consumer(); }));
}

void PixelStorage::make_readers_let_go(Readers which) const
{
    // Each reader removes itself; a copy, since that changes the list.
    auto readers = m_readers;
    for (auto* reader : readers)
        if (which == Readers::All || reader->holds_for_consumer())
            reader->let_go();
}

void PixelStorage::when_unread(std::function<void()> callback, Readers which) const
{
    if (which == Readers::ConsumerHolds) {
        if (consumer_holds() == 0)
            callback();
        else
            m_unheld_callbacks.push_back(std::move(callback));
        return;
    }
    if (m_readers.empty()) {
        callback();
        return;
    }
    m_unread_callbacks.push_back(std::move(callback));
}

PixelStorage::CrcCache& PixelStorage::cache() const
{
    if (!m_cache)
        m_cache = std::make_unique<CrcCache>(m_width, m_height);
    return *m_cache;
}

void PixelStorage::changed(const Rect& rect) const
{
    MutexLock lock(m_cache_mutex);
    if (!m_cache || rect_empty(rect) || !rect_within(rect, m_width, m_height))
        return;
    for (uint32_t y = rect.y; y < rect.y + rect.height; ++y)
        mark_row(y, rect.x * BYTES_PER_PIXEL, (rect.x + rect.width) * BYTES_PER_PIXEL);
}

void PixelStorage::mark_row(uint32_t y, uint32_t begin, uint32_t end) const
{
    // Bytes [begin, end) of row y changed. A row that was to be checksummed in one pass stays so
    // only if it changes whole again: a partial change makes it worth keeping its tiles.
    auto& c = *m_cache;
    const uint32_t tile_bytes = TILE_PIXELS * BYTES_PER_PIXEL;
    uint8_t* valid = c.tile_valid.data() + size_t(y) * c.tiles_per_row;
    std::fill(valid + begin / tile_bytes, valid + (end - 1) / tile_bytes + 1, uint8_t(0));
    c.row_state[y] = begin == 0 && end == m_stride ? RowState::Whole : RowState::Tiles;
}

void PixelStorage::copy_row_checksummed(
    uint32_t y, uint32_t begin, uint32_t end, const std::byte* source)
{
    // Bytes [begin, end) of row y arrive from `source`: the tiles wholly inside are copied and
    // checksummed together, the partial ones at the edges copied and marked.
    auto& c = *m_cache;
    const uint32_t tile_bytes = TILE_PIXELS * BYTES_PER_PIXEL;
    std::byte* row = m_pixels + size_t(y) * m_stride;
    const uint32_t first = (begin + tile_bytes - 1) / tile_bytes;
    const uint32_t last_tile_start = (c.tiles_per_row - 1) * tile_bytes;
    // Whole tiles of full length end at or before `end` (a short last tile never does: the row
    // ends before a full one would); the short last tile counts when the range reaches the end
    // of the row.
    const uint32_t full_end = end / tile_bytes;
    const bool short_last = c.last_tile_pixels != TILE_PIXELS && end == m_stride
        && begin <= last_tile_start;
    if (first >= full_end && !short_last) {
        std::memcpy(row + begin, source, end - begin);
        mark_row(y, begin, end);
        return;
    }
    uint8_t* valid = c.tile_valid.data() + size_t(y) * c.tiles_per_row;
    uint32_t* crcs = c.tile_crc.data() + size_t(y) * c.tiles_per_row;
    const uint32_t head_end = std::min(first * tile_bytes, end);
    if (head_end > begin) {
        std::memcpy(row + begin, source, head_end - begin);
        valid[begin / tile_bytes] = 0;
    }
    if (full_end > first) {
        crc::copy_crc32c_xrgb_blocks(reinterpret_cast<uint32_t*>(row + size_t(first) * tile_bytes),
            reinterpret_cast<const uint32_t*>(source + (size_t(first) * tile_bytes - begin)),
            TILE_PIXELS, full_end - first, crcs + first);
        std::fill(valid + first, valid + full_end, uint8_t(1));
        m_pixels_checksummed += uint64_t(full_end - first) * TILE_PIXELS;
    }
    uint32_t tail_begin = std::max(full_end * tile_bytes, head_end);
    if (short_last) {
        const uint32_t t = c.tiles_per_row - 1;
        std::memcpy(
            row + last_tile_start, source + (last_tile_start - begin), m_stride - last_tile_start);
        crcs[t] = crc::crc32c_xrgb(
            0, reinterpret_cast<const uint32_t*>(row + last_tile_start), c.last_tile_pixels);
        valid[t] = 1;
        m_pixels_checksummed += c.last_tile_pixels;
        tail_begin = end;
    }
    if (end > tail_begin) {
        std::memcpy(row + tail_begin, source + (tail_begin - begin), end - tail_begin);
        valid[tail_begin / tile_bytes] = 0;
    }
    c.row_state[y] = RowState::Tiles;
}

void PixelStorage::copy_in(size_t offset, const std::byte* source, size_t length, bool checksum)
{
    if (length == 0)
        return;
    MutexLock lock(m_cache_mutex);
    // Checksumming needs the canonical layout as it is stored (XRGB/ARGB); other formats are
    // copied and checksummed later, when a CRC is asked for.
    if (checksum && is_x8r8g8b8_layout(m_format.format))
        cache();
    else
        checksum = false;
    if (!m_cache) {
        std::memcpy(m_pixels + offset, source, length);
        return;
    }
    const size_t end = offset + length;
    while (offset < end) {
        const auto y = uint32_t(offset / m_stride);
        const auto begin = uint32_t(offset % m_stride);
        const auto row_end = uint32_t(std::min<size_t>(end - size_t(y) * m_stride, m_stride));
        if (checksum) {
            copy_row_checksummed(y, begin, row_end, source);
        } else {
            std::memcpy(m_pixels + offset, source, row_end - begin);
            mark_row(y, begin, row_end);
        }
        source += row_end - begin;
        offset += row_end - begin;
    }
}

uint32_t PixelStorage::span_crc(uint32_t x, uint32_t y, uint32_t width) const
{
    m_pixels_checksummed += width;
    return canonical_row_crc(0, pixel(x, y), width, m_format);
}

void PixelStorage::compute_tiles(uint32_t y, uint32_t first, uint32_t count) const
{
    auto& c = *m_cache;
    uint32_t* out = c.tile_crc.data() + size_t(y) * c.tiles_per_row + first;
    uint32_t full = count;
    if (first + count == c.tiles_per_row && c.last_tile_pixels != TILE_PIXELS)
        --full; // the short last tile goes on its own
    if (is_x8r8g8b8_layout(m_format.format)) {
        crc::crc32c_xrgb_blocks(reinterpret_cast<const uint32_t*>(pixel(first * TILE_PIXELS, y)),
            TILE_PIXELS, full, out);
        m_pixels_checksummed += uint64_t(full) * TILE_PIXELS;
    } else {
        for (uint32_t i = 0; i < full; ++i)
            out[i] = span_crc((first + i) * TILE_PIXELS, y, TILE_PIXELS);
    }
    if (full < count)
        out[full] = span_crc((first + full) * TILE_PIXELS, y, c.last_tile_pixels);
    std::fill_n(c.tile_valid.data() + size_t(y) * c.tiles_per_row + first, count, uint8_t(1));
}

void PixelStorage::ensure_tiles(uint32_t y, uint32_t begin, uint32_t end) const
{
    // Runs of invalid tiles, so that three go through the CRC streams at once.
    const uint8_t* valid = m_cache->tile_valid.data() + size_t(y) * m_cache->tiles_per_row;
    for (uint32_t t = begin; t < end;) {
        if (valid[t]) {
            ++t;
            continue;
        }
        uint32_t run_end = t;
        while (run_end < end && !valid[run_end])
            ++run_end;
        compute_tiles(y, t, run_end - t);
        t = run_end;
    }
}

uint32_t PixelStorage::row_crc(uint32_t y) const
{
    auto& c = *m_cache;
    switch (c.row_state[y]) {
    case RowState::Valid:
        break;
    case RowState::Whole:
        c.row_crc[y] = span_crc(0, y, m_width);
        c.row_state[y] = RowState::Valid;
        break;
    case RowState::Tiles: {
        ensure_tiles(y, 0, c.tiles_per_row);
        const uint32_t* tiles = c.tile_crc.data() + size_t(y) * c.tiles_per_row;
        uint32_t crc = 0;
        for (uint32_t t = 0; t < c.tiles_per_row; ++t)
            crc = c.join_for(t).append(crc, tiles[t]);
        c.row_crc[y] = crc;
        c.row_state[y] = RowState::Valid;
        break;
    }
    }
    return c.row_crc[y];
}

uint64_t PixelStorage::crc_cost(const Rect& rect) const
{
    constexpr uint64_t join = 16;
    MutexLock lock(m_cache_mutex);
    if (rect_empty(rect) || !rect_within(rect, m_width, m_height))
        return 0;
    if (!m_cache)
        return uint64_t(rect.width) * rect.height;
    const auto& c = *m_cache;
    if (rect.x != 0 || rect.width != m_width)
        return uint64_t(rect.width) * rect.height; // narrower rectangles are not cached whole
    uint64_t cost = uint64_t(rect.height) * join;
    for (uint32_t y = rect.y; y < rect.y + rect.height; ++y) {
        if (c.row_state[y] == RowState::Whole) {
            cost += m_width;
        } else if (c.row_state[y] == RowState::Tiles) {
            const uint8_t* valid = c.tile_valid.data() + size_t(y) * c.tiles_per_row;
            cost += uint64_t(c.tiles_per_row) * join;
            for (uint32_t t = 0; t < c.tiles_per_row; ++t)
                cost += valid[t] ? 0 : TILE_PIXELS;
        }
    }
    return cost;
}

uint32_t PixelStorage::rect_crc(const Rect& rect) const
{
    if (rect_empty(rect) || !rect_within(rect, m_width, m_height))
        return 0;
    MutexLock lock(m_cache_mutex);
    auto& c = cache();
    uint32_t crc = 0;
    if (rect.x == 0 && rect.width == m_width) {
        for (uint32_t y = rect.y; y < rect.y + rect.height; ++y)
            crc = c.row_join.append(crc, row_crc(y));
        return crc;
    }
    // A narrower rectangle (a scanout showing part of a resource): per row, the whole tiles
    // inside it come from the cache and the partial tiles at its edges are checksummed directly.
    const uint64_t span_bytes = uint64_t(rect.width) * BYTES_PER_PIXEL;
    if (!c.span_join || c.span_join->block_length() != span_bytes)
        c.span_join.emplace(span_bytes);
    const uint32_t x0 = rect.x, x1 = rect.x + rect.width;
    const uint32_t t_begin = (x0 + TILE_PIXELS - 1) / TILE_PIXELS;
    const uint32_t t_end = x1 == m_width ? c.tiles_per_row : x1 / TILE_PIXELS;
    for (uint32_t y = rect.y; y < rect.y + rect.height; ++y) {
        uint32_t row = 0;
        if (t_begin >= t_end) {
            row = span_crc(x0, y, rect.width);
        } else {
            const uint32_t head_end = t_begin * TILE_PIXELS;
            const uint32_t tail_begin = std::min(t_end * TILE_PIXELS, m_width);
            ensure_tiles(y, t_begin, t_end);
            const uint32_t* tiles = c.tile_crc.data() + size_t(y) * c.tiles_per_row;
            row = head_end > x0 ? span_crc(x0, y, head_end - x0) : 0;
            for (uint32_t t = t_begin; t < t_end; ++t)
                row = c.join_for(t).append(row, tiles[t]);
            if (x1 > tail_begin) {
                m_pixels_checksummed += x1 - tail_begin;
                row = canonical_row_crc(row, pixel(tail_begin, y), x1 - tail_begin, m_format);
            }
        }
        crc = c.span_join->append(crc, row);
    }
    return crc;
}

} // namespace vgpu::virtio_gpu
