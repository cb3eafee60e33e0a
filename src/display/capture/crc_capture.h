// Per-flip CRC capture, VKMS-style: while capture is on for an output, every visible change
// (a flush that reaches it) adds one entry {frame counter, CRC-32C of the visible rectangle as
// 0x00RRGGBB}. Entries wait in a 128-entry ring per output until read; when the ring is full, new
// entries are dropped and counted as overflow, as DRM's CRC ring does. Capture never merges: every
// flush gets its entry, independent of how UPDATEs to QEMU are paced.
//
// While capture is on, transfers checksum their tiles as they copy them (PixelStorage), so what a
// flush leaves is mostly joining those CRCs. A cheap flush is done at once; an expensive one
// becomes a job (which pixels, which rectangle) for a worker thread, while the device loop goes
// on. The job keeps the pixels alive, and the device announces every overwrite
// (pixels_will_change) before it copies: the loop then waits for the jobs on those pixels, so a
// CRC is always of the frame its flush showed. With the guest's double buffering the overwrite
// comes two flips later, and the wait is rare. Results come back to the loop (posted), where they
// enter the rings and go to the listener in flush order; reading entries first waits for all jobs.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <thread>
#include <vector>

#include "base/event_loop.h"
#include "base/lifetime.h"
#include "base/thread_annotations.h"
#include "display/sink.h"
#include "virtio_gpu/wire.h"

namespace vgpu::display::capture {

struct CrcEntry {
    uint64_t frame;
    uint32_t crc;
};

struct CrcCaptureStats {
    uint64_t jobs = 0; // flushes handed to the worker
    uint64_t inline_jobs = 0; // flushes checksummed at once
    uint64_t overwrite_waits = 0; // a transfer had to wait for a CRC of its pixels
};

class CrcCapture final : public DisplaySink {
public:
    static constexpr size_t ring_size = 128;
    // A job that costs less than this (PixelStorage::crc_cost: about 20 µs here) runs at once
    // on the loop when no other job is waiting: handing it to the worker would cost more in
    // wake-ups, and a guest redrawing the frame on screen would wait for the worker anyway.
    static constexpr uint64_t inline_cost = uint64_t(256) * 1024;

    explicit CrcCapture(EventLoop& loop);
    ~CrcCapture() override;
    // Every captured entry, as it reaches the loop (CRC events, export CRC records); after the
    // ring took it or not. Listeners are called in the order they were added; the id removes one.
    size_t add_entry_listener(std::function<void(uint32_t output, const CrcEntry&)> listener)
    {
        m_listeners.emplace(m_next_listener, std::move(listener));
        return m_next_listener++;
    }
    void remove_entry_listener(size_t id) { m_listeners.erase(id); }

    void start(uint32_t output);
    void stop(uint32_t output);
    bool active(uint32_t output) const { return m_rings[output].active; }
    struct Drained {
        std::vector<CrcEntry> entries;
        uint64_t overflow = 0; // entries lost since the last read
    };
    Drained read(uint32_t output);
    uint64_t entries_total() const { return m_entries_total; }
    // Waits for every job and takes its result into the rings (otherwise done when posted).
    void resolve();
    // Flushes whose entry has not reached the rings yet.
    size_t pending() const;
    CrcCaptureStats stats() const;

    void output_changed(const Output&) override { }
    void output_damaged(const Output& output, Rect damage) override;
    // Waits for the jobs on these pixels. While capture is on anywhere, asks for the new pixels
    // to be checksummed during the copy: from L1, that costs a fraction of the copy, where the
    // worker reading them again from memory costs more than the copy (measured in the guest
    // benchmark: 0.99x against 0.74x of the built-in device's flip rate), whether or not the
    // resource is on screen yet (a page flip's back buffer).
    bool pixels_will_change(const virtio_gpu::PixelStorage& pixels) override;
    void cursor_changed(uint32_t, const CursorState&, bool) override { }

private:
    struct Ring {
        bool active = false;
        std::deque<CrcEntry> entries;
        uint64_t overflow = 0;
    };
    struct Job {
        uint32_t output;
        uint64_t frame;
        std::shared_ptr<const virtio_gpu::PixelStorage> pixels; // alive until checksummed
        Rect rect;
    };
    struct Done {
        uint32_t output;
        CrcEntry entry;
    };
    void run_worker();
    void collect();
    void add(uint32_t output, const CrcEntry& entry);
    bool uses(const virtio_gpu::PixelStorage* pixels) const REQUIRES(m_mutex);

    EventLoop& m_loop;
    std::array<Ring, virtio_gpu::MAX_SCANOUTS> m_rings {};
    std::map<size_t, std::function<void(uint32_t, const CrcEntry&)>> m_listeners;
    size_t m_next_listener = 1;
    uint64_t m_entries_total = 0;
    uint64_t m_inline_jobs = 0;
    // Posted tasks are guarded: a capture destroyed before its task runs is not touched.
    Lifetime m_lifetime;

    mutable Mutex m_mutex;
    CondVar m_changed; // a job was queued or finished, or quit
    std::deque<Job> m_jobs GUARDED_BY(m_mutex);
    const virtio_gpu::PixelStorage* m_running GUARDED_BY(m_mutex) = nullptr;
    std::deque<Done> m_done GUARDED_BY(m_mutex);
    bool m_collect_posted GUARDED_BY(m_mutex) = false;
    bool m_quit GUARDED_BY(m_mutex) = false;
    uint64_t m_jobs_total GUARDED_BY(m_mutex) = 0;
    uint64_t m_overwrite_waits GUARDED_BY(m_mutex) = 0;
    std::thread m_worker; // started with the first job
};

} // namespace vgpu::display::capture
