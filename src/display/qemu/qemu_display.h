// QEMU's display as a sink: takes the socket from GPU_SET_SOCKET and negotiates the
// vhost-user-gpu protocol features. Scanouts, updates and the cursor come with the 2D device.
#pragma once

#include <memory>
#include <optional>

#include "base/event_loop.h"
#include "display/qemu/display_channel.h"
#include "virtio_gpu/device.h"

namespace vgpu::display::qemu {

class QemuDisplay final : public virtio_gpu::DisplayHost {
public:
    explicit QemuDisplay(EventLoop& loop)
        : m_loop(loop)
    {
    }
    Result<void> attach_qemu_display(Fd socket) override;
    void detach_qemu_display() override;

    bool attached() const { return m_channel && m_channel->open(); }
    // The protocol features both sides support, once QEMU answered.
    std::optional<uint64_t> protocol_features() const { return m_protocol_features; }
    static constexpr uint64_t supported_protocol_features = 0;

private:
    EventLoop& m_loop;
    std::unique_ptr<DisplayChannel> m_channel;
    std::optional<uint64_t> m_protocol_features;
};

} // namespace vgpu::display::qemu
