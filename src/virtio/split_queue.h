// The device side of a split virtqueue (virtio 1.3 §2.7): configured by the transport (vhost),
// drained by the device. Ring memory is shared with a guest that may change it at any time, so
// ring fields are read with atomic loads and copied before use; descriptors are copied out and
// validated by walk_chain.
#pragma once

#include <cstdint>
#include <optional>

#include "base/fd.h"
#include "base/result.h"
#include "virtio/descriptor_chain.h"

namespace vgpu::virtio {

class GuestMemory;

struct QueueStats {
    uint64_t chains = 0; // chains handed to the device
    uint64_t malformed_chains = 0; // returned as used entries of length 0
    uint64_t notifications = 0; // call eventfd signals
};

class SplitQueue {
public:
    // Our limit: QEMU's VIRTQUEUE_MAX_SIZE. virtio 1.3 §2.7: split queue sizes are powers of 2.
    static constexpr uint32_t max_size = 1024;

    explicit SplitQueue(uint16_t index)
        : m_index(index)
    {
    }

    // Configuration, from the transport. Sizes and the base may change only while stopped.
    Result<void> set_size(uint32_t size);
    Result<void> set_addresses(uint64_t desc_va, uint64_t avail_va, uint64_t used_va);
    Result<void> set_base(uint32_t next_avail);
    void set_event_idx(bool on) { m_event_idx = on; }
    void set_indirect(bool on) { m_indirect = on; }
    void set_kick(Fd fd) { m_kick = std::move(fd); }
    void set_call(Fd fd) { m_call = std::move(fd); }
    void set_err(Fd fd) { m_err = std::move(fd); }
    void set_enabled(bool on) { m_enabled = on; }

    uint16_t index() const { return m_index; }
    uint32_t size() const { return m_size; }
    bool enabled() const { return m_enabled; }
    bool has_addresses() const { return m_addresses_set; }
    const Fd& kick() const { return m_kick; }
    const Fd& call() const { return m_call; }

    // Resolves the ring addresses in guest memory and starts processing. Also used after the
    // memory table changed, to resolve them again.
    Result<void> start(const GuestMemory& memory);
    // Stops processing and returns the next avail index (the GET_VRING_BASE answer).
    uint16_t stop();
    bool running() const { return m_running; }
    // True after the guest moved avail->idx by more than the queue size: nothing is processed
    // until the transport resets the queue.
    bool broken() const { return m_broken; }
    // Back to the state after construction, keeping nothing.
    void reset();

    // The next valid chain, or nothing when the ring is empty, stopped or broken. Malformed chains
    // are completed here with a used entry of length 0, counted and logged.
    std::optional<DescriptorChain> pop(const GuestMemory& memory);
    // Completes a chain with `written` bytes.
    void push(uint16_t head, uint32_t written);
    // Signals the call eventfd if the driver wants an interrupt for what was pushed since the
    // last signal (EVENT_IDX or the NO_INTERRUPT flag).
    void notify();
    // Signals the call eventfd unconditionally (after the frontend swapped it: an interrupt that
    // went to the old fd must not be lost; a spurious one is harmless).
    void signal_call();
    // After draining: tells the driver which avail index we expect next (EVENT_IDX) and returns
    // true when more buffers arrived meanwhile.
    bool arm_and_check();

    const QueueStats& stats() const { return m_stats; }
    uint16_t next_avail() const { return m_next_avail; }
    uint16_t next_used() const { return m_next_used; }

private:
    uint16_t load_avail_idx() const;

    uint16_t m_index;
    uint32_t m_size = 0;
    uint64_t m_desc_va = 0, m_avail_va = 0, m_used_va = 0;
    bool m_addresses_set = false;
    bool m_event_idx = false;
    bool m_indirect = false;
    bool m_enabled = false;
    bool m_running = false;
    bool m_broken = false;
    Fd m_kick, m_call, m_err;

    // Host views, valid while running.
    std::byte* m_desc = nullptr;
    std::byte* m_avail = nullptr;
    std::byte* m_used = nullptr;

    uint16_t m_next_avail = 0;
    uint16_t m_next_used = 0;
    uint16_t m_signalled_used = 0;
    bool m_signalled_valid = false;
    QueueStats m_stats;
};

} // namespace vgpu::virtio
