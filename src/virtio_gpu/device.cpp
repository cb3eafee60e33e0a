#include "virtio_gpu/device.h"

#include <chrono>
#include <cstring>

#include "base/checked.h"
#include "base/log.h"
#include "virtio/reader_writer.h"
#include "virtio/split_queue.h"

namespace vgpu::virtio_gpu {

Device::Device(DeviceOptions options)
    : m_options(std::move(options))
    , m_resources(m_options.max_hostmem)
{
    VGPU_VERIFY(!m_options.outputs.empty() && m_options.outputs.size() <= MAX_SCANOUTS);
    m_config.num_scanouts = uint32_t(m_options.outputs.size());
}

Device::~Device() = default;

// RESOURCE_BLOB is offered for frontends that pass the device's features through (crosvm's);
// QEMU's vhost-user-gpu-pci never gives it to the guest, so there --blob turns blobs on.
uint64_t Device::device_features() const
{
    return (uint64_t(1) << F_EDID) | (uint64_t(1) << F_RESOURCE_BLOB);
}

bool Device::blob_enabled() const
{
    return m_options.blob || (m_acked_features & (uint64_t(1) << F_RESOURCE_BLOB));
}

Result<void> Device::read_config(uint32_t offset, std::span<std::byte> out) const
{
    if (!range_within<uint64_t>(offset, out.size(), sizeof(Config)))
        return Error::format("config read {}+{} outside the {}-byte config space", offset,
            out.size(), sizeof(Config));
    std::memcpy(out.data(), reinterpret_cast<const std::byte*>(&m_config) + offset, out.size());
    return {};
}

Result<void> Device::write_config(uint32_t offset, std::span<const std::byte> in)
{
    // virtio 1.3 §5.7.4: only events_clear is writable; writing bits there clears them in
    // events_read.
    constexpr uint32_t clear_offset = offsetof(Config, events_clear);
    if (offset != clear_offset || in.size() != sizeof(uint32_t))
        return Error::format(
            "config write {}+{}: only events_clear (offset {}, 4 bytes) is writable", offset,
            in.size(), clear_offset);
    uint32_t clear = 0;
    std::memcpy(&clear, in.data(), sizeof(clear));
    m_config.events_read &= ~clear;
    return {};
}

// With QEMU's display socket the event reaches the guest only if QEMU acts on our
// CONFIG_CHANGE_MSG, and QEMU 10 does not (docs/outputs.md): the guest sees the change at its next
// GET_DISPLAY_INFO (a reboot, a module reload, or a config event QEMU's own UI raises).
void Device::raise_display_event()
{
    m_config.events_read |= EVENT_DISPLAY;
    config_changed();
}

namespace {
constexpr const char* OWNED_BY_QEMU
    = "QEMU's display owns the outputs (start the backend with --outputs-from backend)";

Result<void> check_mode(uint32_t width, uint32_t height)
{
    if (width < 16 || height < 16 || width > 4095 || height > 4095)
        return Error::format("{}x{} is outside 16x16..4095x4095", width, height);
    return {};
}
} // namespace

bool Device::qemu_owns_outputs() const
{
    return !m_options.outputs_from_backend && m_display && m_display->has_qemu_display();
}

Result<uint32_t> Device::add_output(uint32_t width, uint32_t height)
{
    if (qemu_owns_outputs())
        return Error::format(OWNED_BY_QEMU);
    TRY(check_mode(width, height));
    for (uint32_t i = 0; i < m_options.outputs.size(); ++i) {
        if (!m_options.outputs[i].enabled) {
            m_options.outputs[i] = OutputMode { width, height, true };
            raise_display_event();
            return i;
        }
    }
    return Error::format("all {} output slots are in use", m_options.outputs.size());
}

Result<void> Device::remove_output(uint32_t index)
{
    if (qemu_owns_outputs())
        return Error::format(OWNED_BY_QEMU);
    if (index >= m_options.outputs.size() || !m_options.outputs[index].enabled)
        return Error::format("output {} is not plugged in", index);
    m_options.outputs[index].enabled = false;
    raise_display_event();
    return {};
}

Result<void> Device::resize_output(uint32_t index, uint32_t width, uint32_t height)
{
    if (qemu_owns_outputs())
        return Error::format(OWNED_BY_QEMU);
    if (index >= m_options.outputs.size() || !m_options.outputs[index].enabled)
        return Error::format("output {} is not plugged in", index);
    TRY(check_mode(width, height));
    m_options.outputs[index].width = width;
    m_options.outputs[index].height = height;
    raise_display_event();
    return {};
}

void Device::reset()
{
    ++m_deferral;
    m_pending.reset();
    m_deferred_fallback = {};
    m_early_answer.reset();
    m_control = nullptr;
    m_memory = nullptr;
    for (uint32_t i = 0; i < MAX_SCANOUTS; ++i)
        if (m_scanouts[i].enabled)
            disable_scanout(i);
    // The guest's memory is its own again: nothing reads blob pages after the reset.
    m_resources.for_each([&](const Resource& r) {
        if (r.blob)
            release_blob_readers(r);
    });
    m_resources.clear();
    if (m_display)
        m_display->guest_memory_gone(std::exchange(m_frontend_gone, false));
    m_config = Config {};
    m_config.num_scanouts = uint32_t(m_options.outputs.size());
    m_acked_features = 0;
    if (m_display)
        m_display->detach_qemu_display();
}

Result<void> Device::set_display_socket(Fd socket)
{
    if (!m_display)
        return Error::format("no display to take QEMU's display socket");
    return m_display->attach_qemu_display(std::move(socket));
}

uint32_t Device::scanout_limit() const
{
    // With QEMU's display, QEMU owns num_scanouts (its max_outputs, up to 16) and overrides our
    // config space; without it, our outputs are the scanouts.
    if (m_display && m_display->has_qemu_display())
        return MAX_SCANOUTS;
    return uint32_t(m_options.outputs.size());
}

// ---- queues -----------------------------------------------------------------------------------

void Device::process_queue(virtio::SplitQueue& queue, const virtio::GuestMemory& memory)
{
    m_memory = &memory;
    if (queue.index() == CURSOR_QUEUE) {
        drain_cursor(queue);
        return;
    }
    m_control = &queue;
    drain_control();
}

void Device::drain_control()
{
    if (m_draining || !m_control)
        return;
    m_draining = true;
    do {
        while (!m_pending) {
            auto chain = m_control->pop(*m_memory);
            if (!chain)
                break;
            if (!handle_control(*chain))
                break;
        }
        m_control->notify();
    } while (!m_pending && m_control->arm_and_check());
    m_draining = false;
}

void Device::drain_cursor(virtio::SplitQueue& queue)
{
    do {
        while (auto chain = queue.pop(*m_memory)) {
            ++m_stats.cursor_commands;
            virtio::Reader reader(*m_memory, chain->readable);
            auto decoded = decode(reader, blob_enabled());
            HandlerResult result = GpuError::Unspec;
            if (decoded) {
                if (auto* update = std::get_if<cmd::UpdateCursor>(&decoded->command))
                    result = handle(*update);
                else if (auto* move = std::get_if<cmd::MoveCursor>(&decoded->command))
                    result = handle(*move);
                else
                    VGPU_LOG_GUEST(Debug, "cursor queue: {} is not a cursor command",
                        command_name(decoded->header.type));
            }
            // The cursor queue has no response: errors are counted and logged only.
            if (!result) {
                ++m_stats.cursor_errors;
                VGPU_LOG_GUEST(Warn, "cursor command failed: {}", error_name(result.error()));
            }
            queue.push(chain->head, 0);
        }
        queue.notify();
    } while (queue.arm_and_check());
}

void LatencyHistogram::record(uint64_t us)
{
    size_t bucket = 0;
    while (bucket + 1 < buckets && (uint64_t(1) << bucket) < us)
        ++bucket;
    ++count[bucket];
    ++total;
    sum_us += us;
}

bool Device::handle_control(virtio::DescriptorChain& chain)
{
    ++m_stats.control_commands;
    auto started = std::chrono::steady_clock::now();
    virtio::Reader reader(*m_memory, chain.readable);
    auto header = reader.read_obj<CtrlHdr>();
    if (!header) {
        VGPU_LOG_GUEST(
            Debug, "control command shorter than its header: {}", header.error().message);
        complete(chain, CtrlHdr {}, GpuError::Unspec);
        return true;
    }
    m_request = *header;
    auto command = decode_body(*header, reader, blob_enabled());
    if (!command) {
        complete(chain, *header, command.release_error());
        return true;
    }
    m_in_handler = true;
    auto result = std::visit([&](const auto& c) { return handle(c); }, *command);
    m_in_handler = false;
    if (result && std::holds_alternative<Deferred>(*result)) {
        if (m_early_answer) {
            result = std::move(*m_early_answer);
            m_early_answer.reset();
        } else {
            m_pending = Pending { std::move(chain), *header, std::move(m_deferred_fallback) };
            return false;
        }
    }
    complete(chain, *header, result);
    if (header->type == uint32_t(CtrlType::ResourceFlush)) {
        auto us = std::chrono::duration_cast<std::chrono::microseconds>(
            std::chrono::steady_clock::now() - started);
        m_stats.flush_latency.record(uint64_t(us.count()));
    }
    return true;
}

Device::Response Device::nodata()
{
    std::vector<std::byte> bytes(sizeof(CtrlHdr));
    return bytes;
}

// The one place a response header is encoded (virtio 1.3 §5.7.6.7): the type, and for a fenced
// request its fence id, context and ring index.
void Device::complete(
    const virtio::DescriptorChain& chain, const CtrlHdr& request, const HandlerResult& result)
{
    std::vector<std::byte> bytes;
    CtrlHdr header {};
    if (result) {
        bytes = std::get<std::vector<std::byte>>(*result);
        std::memcpy(&header, bytes.data(), sizeof(header));
        if (header.type == 0)
            header.type = uint32_t(CtrlType::OkNodata);
    } else {
        ++m_stats.error_responses;
        bytes.resize(sizeof(CtrlHdr));
        header.type = uint32_t(result.error());
        VGPU_LOG_GUEST(Debug, "{}: {}", command_name(request.type), error_name(result.error()));
    }
    header.flags = 0;
    header.fence_id = 0;
    header.ctx_id = 0;
    header.ring_idx = 0;
    if (request.flags & FLAG_FENCE) {
        header.flags = FLAG_FENCE | (request.flags & FLAG_INFO_RING_IDX);
        header.fence_id = request.fence_id;
        header.ctx_id = request.ctx_id;
        header.ring_idx = (request.flags & FLAG_INFO_RING_IDX) ? request.ring_idx : 0;
    }
    std::memcpy(bytes.data(), &header, sizeof(header));
    virtio::Writer writer(*m_memory, chain.writable);
    // A buffer too small for the response gets what fits (as QEMU does), so the driver at least
    // sees the header.
    size_t fits = std::min(bytes.size(), writer.remaining());
    if (fits < bytes.size())
        VGPU_LOG_GUEST(Debug, "{}: response of {} bytes truncated to {}",
            command_name(request.type), bytes.size(), fits);
    if (auto r = writer.write(std::span(bytes).first(fits)); !r)
        VGPU_LOG_GUEST(
            Debug, "{}: response not written: {}", command_name(request.type), r.error().message);
    m_control->push(chain.head, uint32_t(writer.written()));
}

uint64_t Device::defer(std::function<HandlerResult()> fallback)
{
    m_deferred_fallback = std::move(fallback);
    return ++m_deferral;
}

void Device::complete_deferred(uint64_t serial, HandlerResult result)
{
    if (!deferral_current(serial))
        return;
    if (m_in_handler) {
        m_early_answer = std::move(result);
        return;
    }
    if (!m_pending || !m_control)
        return;
    auto pending = std::move(*m_pending);
    m_pending.reset();
    complete(pending.chain, pending.header, result);
    m_control->notify();
    drain_control();
}

void Device::queue_stopping(virtio::SplitQueue& queue)
{
    // The driver gave us the parked command's buffers; a stopped ring cannot take them back
    // later (vhost-user.rst: GET_VRING_BASE returns the next avail index, so the frontend
    // assumes everything before it was handled). Answer it now, without QEMU.
    if (&queue != m_control || !m_pending)
        return;
    ++m_deferral; // QEMU's answer, if it comes, is for a command that no longer waits
    auto pending = std::move(*m_pending);
    m_pending.reset();
    VGPU_LOG_DEBUG("control queue stopping: {} answered without waiting for QEMU",
        command_name(pending.header.type));
    complete(pending.chain, pending.header, pending.fallback());
    m_control->notify();
}

// ---- shared helpers ---------------------------------------------------------------------------

Resource* Device::find_resource(uint32_t id, const char* command)
{
    auto* resource = m_resources.find(ResourceId(id));
    if (!resource)
        VGPU_LOG_GUEST(Debug, "{}: no resource {}", command, id);
    return resource;
}

void Device::memory_changed(const virtio::GuestMemory& memory)
{
    // Views hold their own mappings, so the old ones stay readable; but the guest's blob pages
    // are what the new table says now. Sinks still reading the old views copy what they need,
    // every view is built again, and the scanouts showing a blob get framebuffers on the new
    // view (or go dark when its entries are no longer guest memory).
    m_memory = &memory;
    std::vector<Resource*> blobs;
    m_resources.for_each_mutable([&](Resource& r) {
        if (r.blob && r.has_backing)
            blobs.push_back(&r);
    });
    for (auto* blob : blobs) {
        release_blob_readers(*blob);
        ++m_stats.view_rebuilds;
        bool built = bool(m_resources.rebuild_view(*blob, memory));
        if (built)
            export_dmabuf(*blob);
        for (uint32_t i = 0; i < MAX_SCANOUTS; ++i) {
            auto& s = m_scanouts[i];
            if (!s.enabled || s.resource != blob->id)
                continue;
            s.framebuffer.reset();
            s.stopped.clear();
            auto fb = built ? m_resources.blob_framebuffer(*blob, s.layout)
                            : GpuResult<std::shared_ptr<PixelStorage>>(GpuError::Unspec);
            if (!fb) {
                VGPU_LOG_GUEST(Warn,
                    "scanout {}: blob {} is not in guest memory after the memory table changed", i,
                    blob->id.value());
                disable_scanout(i);
                continue;
            }
            show_blob(i, *blob, s.layout, *fb, s.rect);
        }
    }
}

void Device::disable_scanout(uint32_t scanout)
{
    auto& s = m_scanouts[scanout];
    if (auto* resource = m_resources.find(s.resource))
        resource->scanout_mask &= ~(1u << scanout);
    s = Scanout {};
    if (m_display)
        m_display->scanout_set(scanout, std::nullopt);
}

} // namespace vgpu::virtio_gpu
