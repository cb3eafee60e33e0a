// Per-flip CRC capture, VKMS-style: while capture is on for an output, every visible change
// (a flush that reaches it) adds one entry {frame counter, CRC-32C of the visible rectangle as
// 0x00RRGGBB}. Entries wait in a 128-entry ring per output until read; when the ring is full, new
// entries are dropped and counted as overflow, as DRM's CRC ring does. Capture never merges: every
// flush gets its entry, independent of how UPDATEs to QEMU are paced.
//
// The CRC is computed after the flush has been answered, so that the guest never waits for it: a
// flush only records which pixels to checksum, and the checksum runs on the loop's next turn
// (while the guest reacts to its fence), or earlier when it is needed: before a transfer
// overwrites those pixels (pixels_will_change), and before entries are read. So the value is
// always that of the frame the flush showed.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include "base/event_loop.h"
#include "display/sink.h"
#include "virtio_gpu/wire.h"

namespace vgpu::display::capture {

struct CrcEntry {
    uint64_t frame;
    uint32_t crc;
};

class CrcCapture final : public DisplaySink {
public:
    static constexpr size_t ring_size = 128;

    explicit CrcCapture(EventLoop& loop);
    // Every captured entry, as its CRC is computed (for CRC events); after the ring took it or not.
    void set_entry_listener(std::function<void(uint32_t output, const CrcEntry&)> listener) { m_listener = std::move(listener); }

    void start(uint32_t output);
    void stop(uint32_t output);
    bool active(uint32_t output) const { return m_rings[output].active; }
    struct Drained {
        std::vector<CrcEntry> entries;
        uint64_t overflow = 0; // entries lost since the last read
    };
    Drained read(uint32_t output);
    uint64_t entries_total() const { return m_entries_total; }
    // Computes every CRC still pending (they are otherwise computed on the loop's next turn).
    void resolve();
    size_t pending() const { return m_pending.size(); }

    void output_changed(const Output&) override { }
    void output_damaged(const Output& output, Rect damage) override;
    void pixels_will_change(const virtio_gpu::PixelStorage& pixels) override;
    void cursor_changed(uint32_t, const CursorState&, bool) override { }

private:
    struct Ring {
        bool active = false;
        std::deque<CrcEntry> entries;
        uint64_t overflow = 0;
    };
    // A flush whose CRC is still to be computed: the pixels are kept alive until then.
    struct Pending {
        uint32_t output;
        uint64_t frame;
        std::shared_ptr<const virtio_gpu::PixelStorage> pixels;
        Rect rect;
    };
    void add(uint32_t output, const CrcEntry& entry);

    EventLoop& m_loop;
    std::array<Ring, virtio_gpu::MAX_SCANOUTS> m_rings {};
    std::deque<Pending> m_pending;
    bool m_resolve_posted = false;
    // Posted tasks hold a weak reference: a capture destroyed before its task runs is not touched.
    std::shared_ptr<CrcCapture*> m_self;
    std::function<void(uint32_t, const CrcEntry&)> m_listener;
    uint64_t m_entries_total = 0;
};

} // namespace vgpu::display::capture
