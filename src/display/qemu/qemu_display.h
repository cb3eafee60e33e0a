// QEMU's display as a sink, over the socket from GPU_SET_SOCKET (vhost-user-gpu.rst): protocol
// features, SCANOUT when an output's mode changes, UPDATE with only the damaged rectangle, the
// cursor, and GET_DISPLAY_INFO / GET_EDID forwarded for the guest.
//
// Pacing: QEMU's console shows no more frames than its UI refreshes, and QEMU's own backend
// spends its time sending a full frame for every flip. We coalesce damage per output and send at
// most one batch of UPDATEs at a time, no sooner than `min_interval` after the previous batch.
// The newest frame always goes out: damage that arrives while a batch is in flight is sent when
// it drains. The guest never waits for QEMU: its fences complete when our copy is done.
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <optional>

#include "base/event_loop.h"
#include "base/lifetime.h"
#include "display/output.h"
#include "display/qemu/display_channel.h"
#include "display/sink.h"
#include "virtio_gpu/wire.h"

namespace vgpu::display::qemu {

struct PacingOptions {
    std::chrono::milliseconds min_interval { 16 };
    std::chrono::milliseconds reply_timeout { 1000 };
    // Damage larger than this goes out as several UPDATEs of whole rows: QEMU reads a message
    // whole into memory, and the message size is 32 bits.
    size_t max_update_bytes = 64 << 20;
    // Offer DMABUF2 and show sources that have a dmabuf (blobs, with --dmabuf) through
    // DMABUF_SCANOUT2 and DMABUF_UPDATE instead of UPDATEs.
    bool dmabuf = false;
};

class DmabufHold;

struct QemuDisplayStats {
    uint64_t scanouts = 0;
    uint64_t updates = 0;
    uint64_t update_bytes = 0;
    uint64_t direct_updates = 0; // sent straight from the resource
    uint64_t cursor_updates = 0;
    uint64_t cursor_moves = 0;
    uint64_t queries = 0;
    uint64_t query_timeouts = 0;
    uint64_t coalesced = 0; // mode and cursor changes replaced before QEMU got them
    uint64_t dmabuf_scanouts = 0; // DMABUF_SCANOUT2 with a descriptor
    uint64_t dmabuf_updates = 0;
    uint64_t dmabuf_replies = 0; // QEMU drew the frame: its framebuffer is released
    uint64_t dmabuf_let_go = 0; // a fence could not wait for QEMU's reply any longer
};

class QemuDisplay final : public DisplaySink {
public:
    static Result<std::unique_ptr<QemuDisplay>> create(
        EventLoop& loop, Fd socket, PacingOptions pacing);
    ~QemuDisplay() override;

    bool open() const { return m_channel && m_channel->open(); }
    std::optional<uint64_t> protocol_features() const { return m_protocol_features; }
    const QemuDisplayStats& stats() const { return m_stats; }
    // The features we can use: EDID (GET_EDID), and DMABUF2 with PacingOptions::dmabuf.
    uint64_t supported_protocol_features() const
    {
        return (uint64_t(1) << GPU_PF_EDID) | (m_pacing.dmabuf ? uint64_t(1) << GPU_PF_DMABUF2 : 0);
    }
    // How an output reaches QEMU now: "dmabuf" (DMABUF_SCANOUT2) or "update" (UPDATE messages).
    const char* path(uint32_t scanout) const
    {
        return m_links[scanout].dmabuf ? "dmabuf" : "update";
    }

    void query_display_info(std::function<void(std::optional<virtio_gpu::RespDisplayInfo>)> done);
    void query_edid(
        uint32_t scanout, std::function<void(std::optional<virtio_gpu::RespEdid>)> done);

    // A new source is announced (SCANOUT when the size changes) but shown with the output's next
    // flush, as QEMU's own backend does: the guest flushes after every flip, and each UPDATE
    // batch then answers at least one flush.
    void output_changed(const Output& output) override;
    // Sends what the output shows now (a new display socket for a running guest).
    void resend(const Output& output);
    void output_damaged(const Output& output, Rect damage) override;
    void cursor_changed(uint32_t scanout, const CursorState& cursor, bool moved_only) override;

private:
    QemuDisplay(EventLoop& loop, PacingOptions pacing)
        : m_loop(loop)
        , m_pacing(pacing)
    {
    }
    struct Link {
        std::optional<virtio_gpu::ScanoutSource> source;
        uint32_t wanted_width = 0; // the mode the output has
        uint32_t wanted_height = 0;
        uint32_t announced_width = 0; // the mode QEMU was last sent (SCANOUT)
        uint32_t announced_height = 0;
        Rect damage {};
        bool flipped = false; // the next flush shows the whole new source
        // The dmabuf path: QEMU shows the output from the source's dmabuf (DMABUF_SCANOUT2 was
        // sent for `announced`), and a DMABUF_UPDATE waiting for QEMU's reply holds the
        // framebuffer QEMU reads.
        bool dmabuf = false;
        std::optional<GpuDmabufScanout2> announced;
        std::shared_ptr<const Fd> announced_fd;
        bool update_waiting = false;
        std::shared_ptr<DmabufHold> hold;
    };
    struct Query {
        std::function<void(std::span<const std::byte>)> on_reply; // nullopt-style: empty span
        std::optional<EventLoop::WatchId> timer;
        bool done = false;
    };
    using QueryList = std::list<std::shared_ptr<Query>>;

    void handshake();
    void after_handshake(std::function<void()> action);
    void send_query(GpuRequest request, std::vector<std::byte> payload,
        std::function<void(std::span<const std::byte>)> on_reply);
    void finish_query(const std::shared_ptr<Query>& query, std::span<const std::byte> payload);
    void schedule();
    void send_updates();
    void on_closed();
    // Sends what QEMU has not been told yet (modes, cursors) when nothing is queued.
    void send_state();
    void send_cursor(uint32_t scanout);
    // The DMABUF_SCANOUT2 the link's source wants, when the dmabuf path applies to it.
    std::optional<GpuDmabufScanout2> wanted_dmabuf(uint32_t scanout) const;
    // Sends the owed DMABUF_SCANOUT2 or the disable that leaves the dmabuf path.
    void send_dmabuf_state(uint32_t scanout);
    void send_dmabuf_update(uint32_t scanout);

    EventLoop& m_loop;
    PacingOptions m_pacing;
    std::unique_ptr<DisplayChannel> m_channel;
    std::optional<uint64_t> m_protocol_features;
    std::vector<std::function<void()>> m_waiting_for_handshake;
    std::array<Link, virtio_gpu::MAX_SCANOUTS> m_links {};
    // The latest cursor state per scanout and what of it QEMU has not got yet.
    struct CursorSlot {
        std::optional<virtio_gpu::CursorImage> image;
        uint32_t x = 0, y = 0;
        bool image_dirty = false;
        bool position_dirty = false;
    };
    std::array<CursorSlot, virtio_gpu::MAX_SCANOUTS> m_cursors {};
    QueryList m_queries;
    std::optional<EventLoop::WatchId> m_pace_timer;
    std::chrono::steady_clock::time_point m_last_batch {};
    QemuDisplayStats m_stats;
    Lifetime m_lifetime; // for tasks posted to the loop
};

} // namespace vgpu::display::qemu
