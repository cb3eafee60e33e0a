// The seam between a transport (vhost-user) and a device model (virtio-gpu). The transport owns
// guest memory and the queues and tells the device when to work; the device never sees the
// transport's protocol. Lower layers declare interfaces, higher layers implement them.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "base/fd.h"
#include "base/result.h"

namespace vgpu::virtio {

class GuestMemory;
class SplitQueue;

class Device {
public:
    virtual ~Device() = default;

    // Device-specific feature bits (transport bits such as VERSION_1 are the transport's).
    virtual uint64_t device_features() const = 0;
    virtual size_t queue_count() const = 0;
    // The device configuration space (virtio 1.3 §4: read and written by offset).
    virtual size_t config_size() const = 0;
    virtual Result<void> read_config(uint32_t offset, std::span<std::byte> out) const = 0;
    virtual Result<void> write_config(uint32_t offset, std::span<const std::byte> in) = 0;

    // The driver acked these device features (already masked to what we offered).
    virtual void set_acked_features(uint64_t features) = 0;
    // Buffers are available on `queue`: drain it, push used entries and notify.
    virtual void process_queue(SplitQueue& queue, const GuestMemory& memory) = 0;
    // Back to the power-on state: all resources and per-driver state are dropped.
    virtual void reset() = 0;
    // The frontend went away; reset() follows.
    virtual void frontend_gone() { }
    // The transport is about to stop `queue` (GET_VRING_BASE, SET_VRING_ENABLE 0, a new kick
    // fd). Buffers the device took from it and still holds must be answered now: once the ring
    // stops, the frontend takes everything before the next avail index as handled.
    virtual void queue_stopping(SplitQueue&) { }
    // The memory table changed (SET_MEM_TABLE, ADD/REM_MEM_REG): views of guest memory the
    // device built from the old table are rebuilt from `memory`.
    virtual void memory_changed(const GuestMemory&) { }

    // vhost-user-gpu: QEMU hands over its display socket (GPU_SET_SOCKET). Devices that have no
    // use for it refuse.
    virtual Result<void> set_display_socket(Fd)
    {
        return Error::format("device takes no display socket");
    }

    // Set by the transport: the device calls it when its configuration changed (a display
    // hotplug), so the transport can tell the frontend.
    void set_config_changed_callback(std::function<void()> callback)
    {
        m_config_changed = std::move(callback);
    }

protected:
    void config_changed()
    {
        if (m_config_changed)
            m_config_changed();
    }

private:
    std::function<void()> m_config_changed;
};

} // namespace vgpu::virtio
