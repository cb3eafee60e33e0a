#include "virtio_gpu/device.h"

#include <cstring>

#include "base/checked.h"
#include "base/log.h"
#include "virtio/reader_writer.h"
#include "virtio/split_queue.h"

namespace vgpu::virtio_gpu {

Device::Device(DeviceOptions options)
    : m_options(options)
{
    m_config.num_scanouts = options.num_scanouts;
}

Result<void> Device::read_config(uint32_t offset, std::span<std::byte> out) const
{
    if (!range_within<uint64_t>(offset, out.size(), sizeof(Config)))
        return Error::format("config read {}+{} outside the {}-byte config space", offset, out.size(), sizeof(Config));
    std::memcpy(out.data(), reinterpret_cast<const std::byte*>(&m_config) + offset, out.size());
    return {};
}

Result<void> Device::write_config(uint32_t offset, std::span<const std::byte> in)
{
    // virtio 1.3 §5.7.4: only events_clear is writable; writing bits there clears them in
    // events_read.
    constexpr uint32_t clear_offset = offsetof(Config, events_clear);
    if (offset != clear_offset || in.size() != sizeof(uint32_t))
        return Error::format("config write {}+{}: only events_clear (offset {}, 4 bytes) is writable", offset, in.size(), clear_offset);
    uint32_t clear;
    std::memcpy(&clear, in.data(), sizeof(clear));
    m_config.events_read &= ~clear;
    return {};
}

void Device::raise_display_event()
{
    m_config.events_read |= EVENT_DISPLAY;
    config_changed();
}

void Device::reset()
{
    m_config = Config {};
    m_config.num_scanouts = m_options.num_scanouts;
    m_acked_features = 0;
    if (m_display_host)
        m_display_host->detach_qemu_display();
}

Result<void> Device::set_display_socket(Fd socket)
{
    if (!m_display_host)
        return Error::format("no display host to take QEMU's display socket");
    return m_display_host->attach_qemu_display(std::move(socket));
}

uint32_t Device::handle_control(const virtio::DescriptorChain& chain, const virtio::GuestMemory& memory)
{
    virtio::Reader reader(memory, chain.readable);
    virtio::Writer writer(memory, chain.writable);
    CtrlHdr response {};
    response.type = uint32_t(CtrlType::ErrUnspec);
    auto request = reader.read_obj<CtrlHdr>();
    if (!request) {
        ++m_stats.short_commands;
        VGPU_LOG_GUEST(Debug, "control command shorter than its header: {}", request.error().message);
    } else {
        // virtio 1.3 §5.7.6.7: a fenced response carries the request's fence id and context.
        if (request->flags & FLAG_FENCE) {
            response.flags = FLAG_FENCE | (request->flags & FLAG_INFO_RING_IDX);
            response.fence_id = request->fence_id;
            response.ctx_id = request->ctx_id;
            response.ring_idx = (request->flags & FLAG_INFO_RING_IDX) ? request->ring_idx : 0;
        }
        VGPU_LOG_GUEST(Debug, "control command {:#x}: not implemented yet", request->type);
    }
    ++m_stats.error_responses;
    if (auto r = writer.write_obj(response); !r) {
        ++m_stats.short_commands;
        VGPU_LOG_GUEST(Debug, "no room for the response: {}", r.error().message);
    }
    return uint32_t(writer.written());
}

void Device::process_queue(virtio::SplitQueue& queue, const virtio::GuestMemory& memory)
{
    do {
        while (auto chain = queue.pop(memory)) {
            uint32_t written = 0;
            if (queue.index() == CONTROL_QUEUE) {
                ++m_stats.control_commands;
                written = handle_control(*chain, memory);
            } else {
                // The cursor queue has no response: the used entry is the completion.
                ++m_stats.cursor_commands;
            }
            queue.push(chain->head, written);
        }
        queue.notify();
    } while (queue.arm_and_check());
}

} // namespace vgpu::virtio_gpu
