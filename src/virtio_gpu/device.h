// The virtio-gpu 2D device (virtio 1.3 §5.7): resources, scanouts, cursor, display info and
// EDID, fences. The control queue is processed in order; a command whose answer comes from QEMU
// (GET_DISPLAY_INFO, GET_EDID forwarded over the display socket) parks the queue until the answer
// arrives or times out, so responses and fences keep their order. 2D work is synchronous: the
// copy into our resource is done and the frame handed to the display before the (fenced)
// response is written.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <variant>
#include <vector>

#include "base/fd.h"
#include "base/lifetime.h"
#include "virtio/descriptor_chain.h"
#include "virtio/device.h"
#include "virtio/dmabuf_export.h"
#include "virtio_gpu/command.h"
#include "virtio_gpu/display_host.h"
#include "virtio_gpu/resource_table.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

struct OutputMode {
    uint32_t width = 1280;
    uint32_t height = 800;
    bool enabled = true; // a disabled slot is an unplugged monitor
};

struct DeviceOptions {
    // Our own outputs (1..16): what GET_DISPLAY_INFO and GET_EDID answer when no QEMU display
    // socket does, or always with outputs_from_backend.
    std::vector<OutputMode> outputs { OutputMode {} };
    uint64_t max_hostmem = 256ull << 20;
    // Blob commands even when the driver did not negotiate RESOURCE_BLOB (--blob): for guests
    // whose frontend does not pass the feature through (QEMU's vhost-user-gpu-pci).
    bool blob = false;
    // How long a fenced flush of a blob waits for the sinks still reading the framebuffer it
    // stopped showing, before they copy what they need (--release-timeout).
    std::chrono::milliseconds release_timeout { 20 };
    // Exports shareable blobs as dmabufs for QEMU's DMABUF_SCANOUT2 (--dmabuf); not owned.
    virtio::DmabufExporter* dmabuf = nullptr;
    // --outputs-from backend: our outputs answer GET_DISPLAY_INFO and GET_EDID even with QEMU's
    // display socket (which still gets every scanout's frames), and they can be hotplugged.
    // Off (--outputs-from qemu): those questions go to QEMU, whose UI owns the monitors.
    bool outputs_from_backend = false;
    // --export-guest-memory: shown blobs also get a read-only plane of guest RAM for trusted
    // export consumers (virtio/guest_plane.h).
    bool export_guest_memory = false;
};

// Time from taking a RESOURCE_FLUSH off the queue to its (fenced) response: log2 buckets of
// microseconds, bucket i counting latencies up to 2^i us (the last one: everything above).
struct LatencyHistogram {
    static constexpr size_t buckets = 18;
    std::array<uint64_t, buckets> count {};
    uint64_t total = 0;
    uint64_t sum_us = 0;
    void record(uint64_t us);
};

struct DeviceStats {
    uint64_t control_commands = 0;
    uint64_t cursor_commands = 0;
    uint64_t error_responses = 0;
    uint64_t cursor_errors = 0; // the cursor queue has no response: counted and logged
    uint64_t scanout_changes = 0; // SET_SCANOUT that changed what a scanout shows
    uint64_t flushes = 0;
    uint64_t transfers = 0;
    uint64_t bytes_transferred = 0;
    uint64_t cursor_updates = 0;
    uint64_t cursor_moves = 0;
    uint64_t forwarded_queries = 0;
    uint64_t forwarded_timeouts = 0;
    uint64_t blobs_created = 0;
    uint64_t blob_flushes = 0;
    uint64_t bytes_gathered = 0; // blob bytes copied at flush (views that could not be mapped)
    uint64_t release_waits = 0; // fenced blob flushes that waited for a sink to let go
    uint64_t release_timeouts = 0; // ... and hit --release-timeout
    uint64_t transfer_waits = 0; // 2D transfers that waited for an exclusive export consumer
    uint64_t transfer_wait_timeouts = 0; // ... and hit --release-timeout
    uint64_t view_rebuilds = 0; // blob views built again after a memory-table change
    uint64_t dmabufs_exported = 0;
    uint64_t dmabuf_failures = 0; // shareable blobs sent as UPDATEs: the exporter refused
    uint64_t guest_plane_failures = 0; // blobs with no guest memory plane (--export-guest-memory)
    LatencyHistogram flush_latency;
};

class Device final : public virtio::Device {
public:
    static constexpr size_t CONTROL_QUEUE = 0;
    static constexpr size_t CURSOR_QUEUE = 1;

    explicit Device(DeviceOptions options);
    ~Device() override;
    void set_display_host(DisplayHost* host) { m_display = host; }

    uint64_t device_features() const override;
    size_t queue_count() const override { return 2; }
    size_t config_size() const override { return sizeof(Config); }
    Result<void> read_config(uint32_t offset, std::span<std::byte> out) const override;
    Result<void> write_config(uint32_t offset, std::span<const std::byte> in) override;
    void set_acked_features(uint64_t features) override { m_acked_features = features; }
    void process_queue(virtio::SplitQueue& queue, const virtio::GuestMemory& memory) override;
    void reset() override;
    void frontend_gone() override { m_frontend_gone = true; }
    void queue_stopping(virtio::SplitQueue& queue) override;
    void memory_changed(const virtio::GuestMemory& memory) override;
    Result<void> set_display_socket(Fd socket) override;

    const DeviceStats& stats() const { return m_stats; }
    const ResourceTable& resources() const { return m_resources; }
    const std::vector<OutputMode>& outputs() const { return m_options.outputs; }
    // Blob commands are accepted: RESOURCE_BLOB was negotiated, or --blob.
    bool blob_enabled() const;
    const DeviceOptions& options() const { return m_options; }
    // Scanouts the guest may use: our outputs, or with QEMU's display socket all 16 (QEMU owns
    // num_scanouts then: its max_outputs, up to 16, overrides our config space).
    uint32_t scanout_limit() const;
    // Raises VIRTIO_GPU_EVENT_DISPLAY and tells the transport (display hotplug or resize).
    void raise_display_event();
    // Whether display info and EDID are QEMU's to answer now: it gave its display socket and
    // the outputs are not the backend's (--outputs-from qemu).
    bool qemu_owns_outputs() const;
    // Hotplug, unplug and resize of our own outputs (refused while QEMU owns them). The number
    // of slots is fixed: it is num_scanouts.
    Result<uint32_t> add_output(uint32_t width, uint32_t height);
    Result<void> remove_output(uint32_t index);
    Result<void> resize_output(uint32_t index, uint32_t width, uint32_t height);

private:
    // What a handler answers: a response (header and payload, header filled in by respond()),
    // or "later" when the answer comes asynchronously.
    struct Deferred { };
    using Response = std::variant<std::vector<std::byte>, Deferred>;
    using HandlerResult = GpuResult<Response>;
    static Response nodata();
    template <typename T>
    static Response with_payload(const T& full_response)
    {
        auto bytes = std::as_bytes(std::span(&full_response, 1));
        return std::vector<std::byte>(bytes.begin(), bytes.end());
    }

    struct Scanout {
        ResourceId resource {};
        Rect rect {};
        bool enabled = false;
        // A blob's framebuffer on this scanout, and its layout.
        std::shared_ptr<PixelStorage> framebuffer;
        BlobLayout layout {};
        // Blob framebuffers this scanout stopped showing that the guest has not been given
        // back yet: the next fenced flush on it waits until no sink reads them.
        std::vector<std::shared_ptr<const PixelStorage>> stopped;
    };
    // A command whose answer comes later (forwarded to QEMU), parked at the head of the control
    // queue. `fallback` answers it now, as if QEMU had not answered in time.
    struct Pending {
        virtio::DescriptorChain chain;
        CtrlHdr header;
        std::function<HandlerResult()> fallback;
    };

    void drain_control();
    void drain_cursor(virtio::SplitQueue& queue);
    // Handles one control command; returns false when the queue must wait (deferred).
    bool handle_control(virtio::DescriptorChain& chain);
    void complete(
        const virtio::DescriptorChain& chain, const CtrlHdr& request, const HandlerResult& result);
    // A handler that answers later calls defer() with its fallback answer and hands the serial
    // to its callback, which completes the command with complete_deferred(). A serial that is
    // no longer current (the device was reset, or the command was answered without waiting
    // when its queue stopped) is dropped.
    uint64_t defer(std::function<HandlerResult()> fallback);
    bool deferral_current(uint64_t serial) const { return serial == m_deferral; }
    void complete_deferred(uint64_t serial, HandlerResult result); // through complete()
    std::vector<std::byte> display_info_answer(std::optional<RespDisplayInfo> answer);
    std::vector<std::byte> edid_answer(uint32_t scanout, std::optional<RespEdid> answer);

    HandlerResult handle(const cmd::GetDisplayInfo&);
    HandlerResult handle(const cmd::ResourceCreate2d&);
    HandlerResult handle(const cmd::ResourceUnref&);
    // TRANSFER_TO_HOST_2D's copy, once the command is checked (and waited for, if it had to).
    HandlerResult transfer_2d(Resource& resource, const cmd::TransferToHost2d& c);
    HandlerResult handle(const cmd::SetScanout&);
    HandlerResult handle(const cmd::ResourceFlush&);
    HandlerResult handle(const cmd::TransferToHost2d&);
    HandlerResult handle(const cmd::ResourceAttachBacking&);
    HandlerResult handle(const cmd::ResourceDetachBacking&);
    HandlerResult handle(const cmd::ResourceCreateBlob&);
    HandlerResult handle(const cmd::SetScanoutBlob&);
    HandlerResult handle(const cmd::GetCapsetInfo&);
    HandlerResult handle(const cmd::GetCapset&);
    HandlerResult handle(const cmd::GetEdid&);
    HandlerResult handle(const cmd::UpdateCursor&);
    HandlerResult handle(const cmd::MoveCursor&);
    HandlerResult handle(const cmd::Unsupported&);

    RespDisplayInfo own_display_info() const;
    GpuResult<RespEdid> own_edid(uint32_t scanout) const;
    Resource* find_resource(uint32_t id, const char* command);
    void disable_scanout(uint32_t scanout);
    // Copies `length` bytes of the backing from `offset` to byte `destination` of the pixels,
    // checksumming them on the way when asked to.
    GpuResult<void> copy_from_backing(const Resource& resource, uint64_t offset, size_t destination,
        size_t length, bool checksum);
    std::optional<CursorImage> cursor_image(const cmd::UpdateCursor& c);
    // SET_SCANOUT's and SET_SCANOUT_BLOB's first checks, in QEMU's order: the scanout, resource
    // 0 (the scanout is disabled: nullptr), the resource, its backing.
    GpuResult<Resource*> scanout_target(
        uint32_t scanout_id, uint32_t resource_id, const char* command);
    // Exports the blob's pages as a dmabuf when an exporter is set and the blob is shareable.
    void export_dmabuf(Resource& blob);
    // Blob paths of the shared handlers.
    HandlerResult flush_blob(Resource& blob, const Rect& r);
    // After a flush on these scanouts: the blob framebuffers they stopped showing go back to
    // the guest with this (fenced) answer, deferred until no sink reads them.
    HandlerResult give_back_stopped(uint32_t scanout_mask);
    // Sinks still reading the blob's framebuffers copy what they need and let go (CRC jobs on
    // them finish first): before the guest may free or reuse its pages.
    void release_blob_readers(const Resource& blob);
    // Puts `framebuffer` on scanout `index` (a blob's), remembering what it replaced.
    void show_blob(uint32_t index, Resource& blob, const BlobLayout& layout,
        const std::shared_ptr<PixelStorage>& framebuffer, const Rect& rect);
    // Validated entries of ATTACH_BACKING / CREATE_BLOB (ERR_UNSPEC as QEMU answers).
    GpuResult<void> check_entries(
        const std::vector<MemEntry>& entries, const char* command, uint32_t resource_id) const;

    DeviceOptions m_options;
    Config m_config {};
    uint64_t m_acked_features = 0;
    DisplayHost* m_display = nullptr;
    ResourceTable m_resources;
    std::array<Scanout, MAX_SCANOUTS> m_scanouts {};
    DeviceStats m_stats;

    // The control queue and memory, remembered for deferred completions.
    virtio::SplitQueue* m_control = nullptr;
    const virtio::GuestMemory* m_memory = nullptr;
    std::optional<Pending> m_pending;
    // The serial of the latest deferral; bumped on reset and on a forced answer, so that late
    // answers for a command that is no longer waiting are dropped.
    uint64_t m_deferral = 0;
    bool m_frontend_gone = false; // the next reset is because the frontend left
    std::function<HandlerResult()> m_deferred_fallback;
    // The request being handled (handlers that need its fence flag read it).
    CtrlHdr m_request {};
    // Guards against re-entering drain_control from a completion callback inside a handler.
    bool m_draining = false;
    // An answer that arrived before its handler returned (a display that answers at once).
    bool m_in_handler = false;
    std::optional<HandlerResult> m_early_answer;
    Lifetime m_lifetime; // for the display's callbacks
};

} // namespace vgpu::virtio_gpu
