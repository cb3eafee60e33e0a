#include "display/qemu/qemu_display.h"

#include <cstring>

#include "base/log.h"

namespace vgpu::display::qemu {

Result<void> QemuDisplay::attach_qemu_display(Fd socket)
{
    // QEMU sends a new socket at every DRIVER_OK; the old one is finished.
    detach_qemu_display();
    m_channel = TRY(DisplayChannel::create(m_loop, std::move(socket)));
    m_channel->send(GpuRequest::GetProtocolFeatures, {}, [this](std::span<const std::byte> payload) {
        uint64_t theirs = 0;
        if (payload.size() != sizeof(theirs)) {
            VGPU_LOG_WARN("display: GET_PROTOCOL_FEATURES reply of {} bytes", payload.size());
            return;
        }
        std::memcpy(&theirs, payload.data(), sizeof(theirs));
        uint64_t agreed = theirs & supported_protocol_features;
        m_protocol_features = agreed;
        m_channel->send(GpuRequest::SetProtocolFeatures, std::as_bytes(std::span(&agreed, 1)));
        VGPU_LOG_INFO("display: QEMU offers protocol features {:#x}, using {:#x}", theirs, agreed);
    });
    return {};
}

void QemuDisplay::detach_qemu_display()
{
    m_channel.reset();
    m_protocol_features.reset();
}

} // namespace vgpu::display::qemu
