// The virtio-gpu device model. Until the 2D device exists (the next issue) it is a stub that
// completes the protocol correctly: every control command is answered with ERR_UNSPEC (fence id
// and context echoed as the spec asks), cursor commands are consumed (the cursor queue has no
// response), and the configuration space reports the configured number of scanouts.
#pragma once

#include <cstdint>
#include <functional>

#include "base/fd.h"
#include "virtio/descriptor_chain.h"
#include "virtio/device.h"
#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

struct DeviceOptions {
    uint32_t num_scanouts = 1;
};

// Implemented by the display layer: receives QEMU's display socket (GPU_SET_SOCKET).
class DisplayHost {
public:
    virtual ~DisplayHost() = default;
    virtual Result<void> attach_qemu_display(Fd socket) = 0;
    virtual void detach_qemu_display() = 0;
};

struct DeviceStats {
    uint64_t control_commands = 0;
    uint64_t cursor_commands = 0;
    uint64_t error_responses = 0;
    uint64_t short_commands = 0; // chains too short for a header or a response
};

class Device final : public virtio::Device {
public:
    static constexpr size_t CONTROL_QUEUE = 0;
    static constexpr size_t CURSOR_QUEUE = 1;

    explicit Device(DeviceOptions options);
    void set_display_host(DisplayHost* host) { m_display_host = host; }

    uint64_t device_features() const override { return 0; }
    size_t queue_count() const override { return 2; }
    size_t config_size() const override { return sizeof(Config); }
    Result<void> read_config(uint32_t offset, std::span<std::byte> out) const override;
    Result<void> write_config(uint32_t offset, std::span<const std::byte> in) override;
    void set_acked_features(uint64_t features) override { m_acked_features = features; }
    void process_queue(virtio::SplitQueue& queue, const virtio::GuestMemory& memory) override;
    void reset() override;
    Result<void> set_display_socket(Fd socket) override;

    const DeviceStats& stats() const { return m_stats; }
    // Raises VIRTIO_GPU_EVENT_DISPLAY and tells the transport (display hotplug).
    void raise_display_event();

private:
    uint32_t handle_control(const virtio::DescriptorChain& chain, const virtio::GuestMemory& memory);

    DeviceOptions m_options;
    Config m_config {};
    uint64_t m_acked_features = 0;
    DisplayHost* m_display_host = nullptr;
    DeviceStats m_stats;
};

} // namespace vgpu::virtio_gpu
