// The driver's side of a split virtqueue, as the guest's virtio driver keeps it: rings laid out in
// harness guest RAM, chains added through a free list, kicks and interrupts through eventfds.
// Tests can also write raw descriptors and avail entries to build hostile rings.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/fd.h"
#include "harness/guest_ram.h"
#include "virtio/descriptor_chain.h"

namespace vgpu::harness {

struct Buffer {
    uint64_t gpa;
    uint32_t length;
    bool writable;
};

struct UsedElement {
    uint32_t id;
    uint32_t length;
};

class DriverQueue {
public:
    DriverQueue(GuestRam& ram, uint16_t size);

    uint16_t size() const { return m_size; }
    uint64_t desc_gpa() const { return m_desc; }
    uint64_t avail_gpa() const { return m_avail; }
    uint64_t used_gpa() const { return m_used; }
    const Fd& kick() const { return m_kick; }
    const Fd& call() const { return m_call; }
    // QEMU swaps call eventfds under TCG; tests do the same.
    void replace_call();

    // Adds a chain (direct, or through one indirect table) and makes it available.
    uint16_t add(const std::vector<Buffer>& buffers, bool indirect = false);
    // Raw access for hostile rings.
    void write_desc(uint16_t index, const virtio::VirtqDesc& desc);
    void make_available(uint16_t head);
    void set_avail_idx(uint16_t idx);
    uint16_t avail_idx() const { return m_avail_idx; }
    void notify_kick();

    // Waits for the next used element (true interrupt through the call eventfd or, with
    // poll=true, by watching the used index).
    std::optional<UsedElement> wait_used(
        std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
    // Whether any used element is pending without waiting.
    bool used_pending() const;
    uint16_t used_idx() const;
    // The index we expect next: the avail_event the device wrote (EVENT_IDX).
    uint16_t avail_event() const;
    // Interrupts seen on the call eventfd(s) so far.
    uint64_t interrupts() const { return m_interrupts; }

private:
    uint16_t alloc_desc();
    void free_chain(uint16_t head);

    GuestRam& m_ram;
    uint16_t m_size;
    uint64_t m_desc, m_avail, m_used;
    Fd m_kick, m_call;
    uint16_t m_avail_idx = 0;
    uint16_t m_last_used = 0;
    uint64_t m_interrupts = 0;
    std::vector<uint16_t> m_free;
    std::vector<std::vector<uint16_t>> m_chains; // per head: the descriptors to free
};

} // namespace vgpu::harness
