#include "virtio/split_queue.h"

#include <atomic>
#include <cstring>

#include "base/log.h"
#include "virtio/guest_memory.h"

namespace vgpu::virtio {

namespace {

// Ring layout, virtio 1.3 §2.7.2: desc 16*N (align 16), avail 2+2+2N+2 (align 2),
// used 2+2+8N+2 (align 4).
constexpr uint64_t avail_bytes(uint32_t n) { return 6 + 2 * uint64_t(n); }
constexpr uint64_t used_bytes(uint32_t n) { return 6 + 8 * uint64_t(n); }
constexpr uint16_t VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

uint16_t load_u16(const std::byte* p, int order)
{
    return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), order);
}
void store_u16(std::byte* p, uint16_t v, int order)
{
    __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, order);
}

// virtio 1.3 §2.7.10.1 vring_need_event.
bool need_event(uint16_t event, uint16_t new_idx, uint16_t old_idx)
{
    return uint16_t(new_idx - event - 1) < uint16_t(new_idx - old_idx);
}

class RingDescriptors final : public DescriptorSource {
public:
    RingDescriptors(const std::byte* table, uint32_t count)
        : m_table(table)
        , m_count(count)
    {
    }
    Result<VirtqDesc> descriptor(uint32_t index) const override
    {
        VirtqDesc d;
        std::memcpy(&d, m_table + size_t(index) * sizeof(VirtqDesc), sizeof(d));
        return d;
    }
    uint32_t count() const override { return m_count; }

private:
    const std::byte* m_table;
    uint32_t m_count;
};

} // namespace

Result<void> SplitQueue::set_size(uint32_t size)
{
    if (m_running)
        return Error::format("queue {}: size change while running", m_index);
    if (size == 0 || size > max_size || (size & (size - 1)) != 0)
        return Error::format(
            "queue {}: size {} is not a power of 2 in 1..{}", m_index, size, max_size);
    m_size = size;
    return {};
}

Result<void> SplitQueue::set_addresses(uint64_t desc_va, uint64_t avail_va, uint64_t used_va)
{
    if (desc_va % 16 || avail_va % 2 || used_va % 4)
        return Error::format("queue {}: misaligned ring addresses {:#x} {:#x} {:#x}", m_index,
            desc_va, avail_va, used_va);
    m_desc_va = desc_va;
    m_avail_va = avail_va;
    m_used_va = used_va;
    m_addresses_set = true;
    return {};
}

Result<void> SplitQueue::set_base(uint32_t next_avail)
{
    if (m_running)
        return Error::format("queue {}: base change while running", m_index);
    if (next_avail > 0xffff)
        return Error::format("queue {}: base {} exceeds 16 bits", m_index, next_avail);
    m_next_avail = uint16_t(next_avail);
    // The used index continues where the avail index is: every earlier buffer was completed.
    m_next_used = uint16_t(next_avail);
    m_signalled_valid = false;
    return {};
}

Result<void> SplitQueue::start(const GuestMemory& memory)
{
    if (m_size == 0)
        return Error::format("queue {}: started without a size", m_index);
    if (!m_addresses_set)
        return Error::format("queue {}: started without ring addresses", m_index);
    auto desc = memory.translate_frontend_va(m_desc_va, 16 * uint64_t(m_size));
    auto avail = memory.translate_frontend_va(m_avail_va, avail_bytes(m_size));
    auto used = memory.translate_frontend_va(m_used_va, used_bytes(m_size));
    if (!desc || !avail || !used) {
        m_running = false;
        return Error::format("queue {}: ring addresses desc {:#x} avail {:#x} used {:#x} (size {}) "
                             "are outside guest memory",
            m_index, m_desc_va, m_avail_va, m_used_va, m_size);
    }
    m_desc = desc->data();
    m_avail = avail->data();
    m_used = used->data();
    m_running = true;
    return {};
}

uint16_t SplitQueue::stop()
{
    m_running = false;
    m_desc = m_avail = m_used = nullptr;
    return m_next_avail;
}

void SplitQueue::reset()
{
    auto index = m_index;
    *this = SplitQueue(index);
}

uint16_t SplitQueue::load_avail_idx() const
{
    // Acquire: the ring entries and descriptors the driver wrote before bumping idx are visible.
    return load_u16(m_avail + 2, __ATOMIC_ACQUIRE);
}

std::optional<DescriptorChain> SplitQueue::pop(const GuestMemory& memory)
{
    while (m_running && !m_broken) {
        uint16_t avail_idx = load_avail_idx();
        uint16_t pending = uint16_t(avail_idx - m_next_avail);
        if (pending == 0)
            return std::nullopt;
        if (pending > m_size) {
            m_broken = true;
            VGPU_LOG_GUEST(Warn,
                "queue {}: avail index moved by {} (queue size {}): queue stopped until reset",
                m_index, pending, m_size);
            return std::nullopt;
        }
        uint16_t head = load_u16(m_avail + 4 + 2 * size_t(m_next_avail % m_size), __ATOMIC_RELAXED);
        ++m_next_avail;
        auto chain = walk_chain(
            RingDescriptors(m_desc, m_size), head, memory, { m_size, m_indirect });
        if (chain) {
            ++m_stats.chains;
            return chain.release_value();
        }
        ++m_stats.malformed_chains;
        VGPU_LOG_GUEST(Warn, "queue {}: malformed descriptor chain at head {}: {}", m_index, head,
            chain.error().message);
        push(head, 0);
    }
    return std::nullopt;
}

void SplitQueue::push(uint16_t head, uint32_t written)
{
    if (!m_running)
        return;
    std::byte* element = m_used + 4 + 8 * size_t(m_next_used % m_size);
    uint32_t id = head;
    std::memcpy(element, &id, 4);
    std::memcpy(element + 4, &written, 4);
    ++m_next_used;
    // Release: the element is visible before the index that publishes it.
    store_u16(m_used + 2, m_next_used, __ATOMIC_RELEASE);
}

void SplitQueue::notify()
{
    if (!m_running || !m_call.valid())
        return;
    // virtio 1.3 §2.7.7.2: the used index must be visible before we read the driver's
    // suppression state, or we could miss its update.
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    uint16_t old = m_signalled_used;
    bool valid = m_signalled_valid;
    m_signalled_used = m_next_used;
    m_signalled_valid = true;
    if (valid && old == m_next_used)
        return; // nothing completed since the last check
    bool signal = false;
    if (m_event_idx) {
        uint16_t used_event = load_u16(m_avail + 4 + 2 * size_t(m_size), __ATOMIC_RELAXED);
        signal = !valid || need_event(used_event, m_next_used, old);
    } else {
        signal = !(load_u16(m_avail, __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
    if (signal)
        signal_call();
}

void SplitQueue::signal_call()
{
    if (!m_call.valid())
        return;
    ++m_stats.notifications;
    if (auto r = eventfd_signal(m_call.get()); !r)
        VGPU_LOG_GUEST(Warn, "queue {}: call eventfd: {}", m_index, r.error().message);
}

bool SplitQueue::arm_and_check()
{
    if (!m_running || m_broken)
        return false;
    if (m_event_idx)
        store_u16(m_used + 4 + 8 * size_t(m_size), m_next_avail, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return load_avail_idx() != m_next_avail;
}

} // namespace vgpu::virtio
