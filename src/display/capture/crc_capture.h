// Per-flip CRC capture, VKMS-style: while capture is on for an output, every visible change
// (a flush that reaches it) adds one entry {frame counter, CRC-32C of the visible rectangle as
// 0x00RRGGBB}. Entries wait in a 128-entry ring per output until read; when the ring is full, new
// entries are dropped and counted as overflow, as DRM's CRC ring does. Capture never merges: the
// CRC is computed at the flush itself, independent of how UPDATEs to QEMU are paced.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <vector>

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

    // `active_changed(any)` runs when capture starts on the first output or stops on the last
    // (the device then checksums rows eagerly, right after copying them).
    explicit CrcCapture(std::function<void(bool any_active)> active_changed = {})
        : m_active_changed(std::move(active_changed))
    {
    }
    // Every captured entry, as it happens (for CRC events); after the ring took it or not.
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

    void output_changed(const Output&) override { }
    void output_damaged(const Output& output, Rect damage) override;
    void cursor_changed(uint32_t, const CursorState&, bool) override { }

private:
    struct Ring {
        bool active = false;
        std::deque<CrcEntry> entries;
        uint64_t overflow = 0;
    };
    bool any_active() const;

    std::array<Ring, virtio_gpu::MAX_SCANOUTS> m_rings {};
    std::function<void(bool)> m_active_changed;
    std::function<void(uint32_t, const CrcEntry&)> m_listener;
    uint64_t m_entries_total = 0;
};

} // namespace vgpu::display::capture
