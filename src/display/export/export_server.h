// The export socket's server (docs/export.md): a display sink that hands outputs to consumers in
// other processes. Consumers are untrusted: every packet is checked (export/codec.h), nothing a
// consumer does blocks the device loop, and a consumer that misbehaves is cut off alone.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/event_loop.h"
#include "base/fd.h"
#include "base/lifetime.h"
#include "base/memory_map.h"
#include "base/result.h"
#include "display/sink.h"
#include "export/codec.h"
#include "export/wire.h"
#include "virtio/guest_plane.h"

namespace vgpu::display {

struct ExportOptions {
    mode_t mode = 0600;
    std::optional<gid_t> group;
    uint32_t max_consumers = 64;
    uint32_t max_leases_per_consumer = 16;
    // Packets waiting for one consumer besides its coalesced flips; beyond, it is cut off.
    size_t max_queued = 256;
    // Buffers a lease keeps sent (the most recently shown); older ones are retired.
    size_t buffers_per_lease = 4;
    // Frame buffers per output for framebuffers handed out as copies (blobs, small 2D ones).
    size_t ring_slots = 3;
    std::chrono::milliseconds release_timeout { 20 };
    // An exclusive lease that leaves a frame unacknowledged this long while frames arrive is
    // revoked (REVOKED {NO_ACK}).
    std::chrono::milliseconds no_ack_timeout { 1000 };
    uint32_t plane_types = exporting::PLANE_REGION;
    // How many outputs a probe lists and a lease may name (num_scanouts, or 16 with QEMU's
    // display); asked at each probe and lease.
    std::function<uint32_t()> output_count = [] { return 1u; };
    bool crc = true; // CRC capture can be on (PROBE_CRC)
};

struct ExportStats {
    uint64_t consumers_accepted = 0;
    uint64_t consumers_refused = 0; // over max_consumers
    uint64_t bad_messages = 0;
    uint64_t evicted = 0; // queue overflow or no acks
    uint64_t leases_granted = 0;
    uint64_t flips_sent = 0;
    uint64_t flips_coalesced = 0;
    uint64_t buffers_sent = 0;
    uint64_t bytes_copied = 0;
    uint64_t share_failures = 0; // a framebuffer that could not move to a memfd
    uint64_t cursor_moves_coalesced = 0; // unread moves replaced by a later one
    uint64_t holds = 0; // frames an exclusive lease held for its consumer
    uint64_t ack_timeouts = 0; // ... and let go of at the release timeout, unacknowledged
    uint64_t held_overwritten = 0; // ring slots written while an exclusive lease held them all
    uint64_t no_ack_revoked = 0; // exclusive leases revoked for not acknowledging
};

class ExportServer : public DisplaySink {
public:
    // Listens on `path` (SOCK_SEQPACKET, created with options.mode and group).
    static Result<std::unique_ptr<ExportServer>> create(
        EventLoop& loop, const std::string& path, ExportOptions options);
    ~ExportServer() override;
    ExportServer(const ExportServer&) = delete;
    ExportServer& operator=(const ExportServer&) = delete;

    // The outputs as the display has them (the display calls these as a sink; the server keeps
    // its own view so that a probe needs nothing else).
    void output_changed(const Output& output) override;
    void output_damaged(const Output& output, Rect damage) override;
    void cursor_changed(uint32_t scanout, const CursorState& cursor, bool moved_only) override;
    // A device reset or the frontend gone: leases on guest memory are revoked (BUFFER_GONE of
    // each guest-memory buffer, then REVOKED); the others stay.
    void guest_memory_gone(bool frontend_gone) override;
    // A CRC capture entry (CrcCapture's listener): a CRC record for every lease on the output.
    void crc_entry(uint32_t output, uint64_t generation, uint32_t crc);

    struct LeaseInfo {
        uint32_t lease;
        uint32_t output;
        exporting::LeaseKind kind;
        uint32_t plane_type;
        std::string consumer;
        pid_t pid;
        uint64_t acked;
        size_t queued;
    };
    std::vector<LeaseInfo> leases() const;
    // Revokes a lease (the control socket's lease-revoke): REVOKED {CONTROL}.
    Result<void> revoke(uint32_t lease);
    const ExportStats& stats() const { return m_stats; }
    size_t consumers() const { return m_consumers.size(); }
    const ExportOptions& options() const { return m_options; }

private:
    struct Packet {
        std::vector<std::byte> bytes;
        std::vector<std::shared_ptr<const Fd>> fds;
        uint32_t lease = 0; // 0: not a lease's record
        bool flip = false; // a FLIP that may still take later damage
        bool cursor_move = false; // a CURSOR {moved_only} that a later move may replace
        bool extents = false; // an EXTENTS of a BUFFER (not counted against max_queued)
    };
    // A frame buffer of ours that a consumer may map: a ring slot (the output's picture copied
    // in) for framebuffers that cannot move into a memfd (blobs: guest memory; small 2D ones).
    struct RingSlot {
        Fd memfd; // sealed against writes by others
        MemoryMap map; // ours, writable
        Rect stale {}; // what changed on the output since this slot was last written
        // The output's exclusive lease has not acknowledged the generation it showed here yet:
        // the next frames go to other slots while there are any.
        std::optional<uint64_t> held;
    };
    struct Ring {
        uint32_t width = 0, height = 0, fourcc = 0;
        std::vector<std::shared_ptr<RingSlot>> slots;
        size_t next = 0;
    };
    // What the current frame of an output is handed out as: a shared framebuffer, or a slot.
    struct Frame {
        const void* key = nullptr; // identifies the buffer (PixelStorage or RingSlot)
        std::shared_ptr<const void> keep; // keeps it alive while it is the current frame
        std::shared_ptr<const virtio_gpu::PixelStorage> storage; // a 2D resource's or a blob's
        std::shared_ptr<const virtio::GuestPlane> plane; // a GUEST_MEMORY frame's extents
        RingSlot* slot = nullptr; // a ring slot, or null
        std::shared_ptr<const Fd> fd;
        exporting::Buffer info {}; // lease and buffer filled in per lease
        Rect source {}; // the output's picture in the buffer
    };
    // A buffer a lease was sent. It is not kept alive for the lease: once the resource (or ring
    // slot) is gone, the lease is told BUFFER_GONE (the consumer's mapping stays readable).
    struct SentBuffer {
        uint32_t id;
        const void* key;
        std::weak_ptr<const void> alive;
        bool guest = false; // guest memory (GUEST_MEMORY)
    };
    class Hold;
    struct LeaseState {
        uint32_t id = 0;
        uint32_t output = 0;
        exporting::LeaseKind kind = exporting::LeaseKind::Shared;
        uint32_t plane_type = 0;
        std::shared_ptr<const Fd> eventfd; // ours to signal; the consumer got its own copy
        uint64_t acked = 0;
        // What the consumer was last told: MODE.
        bool enabled = false;
        uint32_t width = 0, height = 0;
        // The output's picture_epoch at this lease's last FLIP (see OutputView).
        uint64_t picture_epoch = 0;
        uint32_t next_buffer = 1;
        std::vector<SentBuffer> buffers; // most recently shown last
        // The cursor image buffer this lease was sent (0: none) and which image it holds.
        uint32_t cursor_buffer = 0;
        uint64_t cursor_image = 0; // CursorView::serial of the image it holds
        // Exclusive leases: the 2D storages the consumer still reads (a transfer into one waits),
        // and since when a shown frame has gone unacknowledged.
        std::vector<std::unique_ptr<Hold>> holds;
        uint64_t shown = 0; // the generation of the last FLIP
        std::optional<std::chrono::steady_clock::time_point> unacked_since;
    };
    struct Consumer {
        uint64_t id = 0;
        Fd socket;
        EventLoop::WatchId watch = 0;
        bool hello = false;
        bool writable_watch = false;
        std::string name;
        pid_t pid = 0;
        std::deque<Packet> queue;
        size_t queued_extents = 0; // EXTENTS packets in `queue`
        std::map<uint32_t, LeaseState> leases;
    };
    // An output's cursor: its image goes out as a 64x64 ARGB8888 REGION buffer of its own.
    struct CursorView {
        std::optional<virtio_gpu::CursorImage> image; // nullopt: hidden
        uint32_t x = 0, y = 0;
        std::shared_ptr<const Fd> fd; // the image in a sealed memfd, made when a lease needs it
        // Counts images (not addresses: a new fd may take a freed one's place).
        uint64_t serial = 0;
    };
    // What an output shows, as the server last heard.
    struct OutputView {
        std::optional<virtio_gpu::ScanoutSource> source;
        uint64_t generation = 0;
        // Counts the output's changes of picture (another resource or rectangle): a FLIP after
        // one is whole; a FLIP within one carries the flush's damage, whichever buffer it names
        // (ring slots are whole copies of the current picture).
        uint64_t picture_epoch = 1;
        std::optional<Frame> frame; // the current frame, once a lease needed it
        // The same frame as guest memory, for GUEST_MEMORY leases, when it is a blob's.
        std::optional<Frame> guest_frame;
        // ... and as the blob's dmabuf, for DMABUF leases.
        std::optional<Frame> dmabuf_frame;
        Ring ring;
        CursorView cursor;
    };
    // Makes `view.frame` the output's current frame after `damage` (output coordinates): the
    // shared framebuffer, or a ring slot with the changes copied in.
    void prepare_frame(uint32_t output, OutputView& view, const Rect& damage);
    bool leased(uint32_t output) const;
    // The frame a lease is shown: the guest-memory one for GUEST_MEMORY leases of a blob.
    const std::optional<Frame>& frame_for(const LeaseState& lease) const;
    void send_crc(uint32_t output, uint64_t generation, uint32_t crc);
    // Frees the frames and rings of outputs nobody leases any more.
    void release_unleased();
    // BUFFER_GONE for every sent buffer whose resource or ring slot no longer exists.
    void retire_gone_buffers();
    // An exclusive lease's hold on the frame it was just shown; false when the lease was revoked
    // for not acknowledging (it is gone then).
    bool hold_frame(Consumer& consumer, LeaseState& lease);
    // An ACK of `generation`: the holds it releases.
    void acknowledged(LeaseState& lease, uint64_t generation);
    // Lets go of everything a lease holds (it ends).
    void release_holds(LeaseState& lease);

    ExportServer(EventLoop& loop, Fd listener, ExportOptions options);
    void accept_consumers();
    // A consumer over the limit: its ERROR {BUSY}, then our side shut; the socket is kept until
    // the consumer closes (or for a second), since closing it with the consumer's HELLO unread
    // would reset the connection and lose the ERROR.
    void refuse(Fd socket);
    void readable(Consumer& consumer);
    void handle(Consumer& consumer, const exporting::Message& message);
    void handle_lease(Consumer& consumer, uint32_t serial, const exporting::Lease& request);
    void end_lease(Consumer& consumer, uint32_t lease, std::optional<exporting::RevokeReason> why);
    // Queues a packet and sends what the socket takes now.
    void queue(Consumer& consumer, Packet packet);
    void flush(Consumer& consumer);
    void error(
        Consumer& consumer, uint32_t serial, exporting::ErrorCode code, std::string_view text);
    // Cuts a consumer off (its leases end); safe from inside its own callbacks.
    void drop(uint64_t consumer, std::string_view why);
    // The MODE, BUFFER and FLIP that bring a lease up to date with its output.
    void send_state(Consumer& consumer, LeaseState& lease);
    void send_flip(Consumer& consumer, LeaseState& lease, const Rect& damage, bool whole);
    // The id of the output's current buffer for this lease, sending BUFFER first when new; 0
    // when it cannot be exported.
    uint32_t buffer_for(Consumer& consumer, LeaseState& lease);
    // The CURSOR record (after a BUFFER of a new image, before the BUFFER_GONE of the old).
    void send_cursor(Consumer& consumer, LeaseState& lease, bool moved_only);
    // The leases on an output, as (consumer, lease) ids: stable while records are queued.
    std::vector<std::pair<uint64_t, uint32_t>> leases_on(uint32_t output) const;
    Consumer* find(uint64_t id);

    EventLoop& m_loop;
    Fd m_listener;
    EventLoop::WatchId m_listen_watch = 0;
    ExportOptions m_options;
    std::map<uint64_t, std::unique_ptr<Consumer>> m_consumers;
    std::vector<std::unique_ptr<Consumer>> m_dropped; // freed after the current callback
    struct Refused {
        Fd socket;
        EventLoop::WatchId watch = 0;
        std::chrono::steady_clock::time_point since;
    };
    std::map<uint64_t, Refused> m_refused;
    uint64_t m_next_refused = 1;
    std::map<uint32_t, OutputView> m_outputs;
    uint64_t m_next_consumer = 1;
    uint32_t m_next_lease = 1;
    ExportStats m_stats;
    Lifetime m_lifetime;
};

} // namespace vgpu::display
