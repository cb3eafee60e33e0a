#include "harness/driver_queue.h"

#include <poll.h>

#include <stdexcept>

namespace vgpu::harness {

namespace {
Fd eventfd_or_throw()
{
    auto fd = make_eventfd();
    if (!fd)
        throw std::runtime_error(fd.error().message);
    return fd.release_value();
}
} // namespace

DriverQueue::DriverQueue(GuestRam& ram, uint16_t size)
    : m_ram(ram)
    , m_size(size)
    , m_chains(size)
{
    m_desc = ram.alloc(16 * uint64_t(size), 16);
    m_avail = ram.alloc(6 + 2 * uint64_t(size), 2);
    m_used = ram.alloc(6 + 8 * uint64_t(size), 4);
    m_kick = eventfd_or_throw();
    m_call = eventfd_or_throw();
    for (uint16_t i = size; i > 0; --i)
        m_free.push_back(uint16_t(i - 1));
}

void DriverQueue::replace_call() { m_call = eventfd_or_throw(); }

uint16_t DriverQueue::alloc_desc()
{
    if (m_free.empty())
        throw std::runtime_error("harness: descriptor table full");
    uint16_t d = m_free.back();
    m_free.pop_back();
    return d;
}

void DriverQueue::write_desc(uint16_t index, const virtio::VirtqDesc& desc)
{
    m_ram.put(m_desc + 16 * uint64_t(index), desc);
}

uint16_t DriverQueue::add(const std::vector<Buffer>& buffers, bool indirect)
{
    auto flags_of = [](const Buffer& b) {
        return uint16_t(b.writable ? virtio::VIRTQ_DESC_F_WRITE : 0);
    };
    if (indirect) {
        uint64_t table = m_ram.alloc(16 * buffers.size(), 16);
        for (size_t i = 0; i < buffers.size(); ++i) {
            uint16_t f = flags_of(buffers[i]);
            if (i + 1 < buffers.size())
                f |= virtio::VIRTQ_DESC_F_NEXT;
            m_ram.put(table + 16 * i,
                virtio::VirtqDesc { buffers[i].gpa, buffers[i].length, f, uint16_t(i + 1) });
        }
        uint16_t head = alloc_desc();
        write_desc(
            head, { table, uint32_t(16 * buffers.size()), virtio::VIRTQ_DESC_F_INDIRECT, 0 });
        m_chains[head] = { head };
        make_available(head);
        return head;
    }
    std::vector<uint16_t> ids;
    for (size_t i = 0; i < buffers.size(); ++i)
        ids.push_back(alloc_desc());
    for (size_t i = 0; i < buffers.size(); ++i) {
        uint16_t f = flags_of(buffers[i]);
        uint16_t next = 0;
        if (i + 1 < buffers.size()) {
            f |= virtio::VIRTQ_DESC_F_NEXT;
            next = ids[i + 1];
        }
        write_desc(ids[i], { buffers[i].gpa, buffers[i].length, f, next });
    }
    m_chains[ids[0]] = ids;
    make_available(ids[0]);
    return ids[0];
}

void DriverQueue::make_available(uint16_t head)
{
    m_ram.put<uint16_t>(m_avail + 4 + 2 * uint64_t(m_avail_idx % m_size), head);
    set_avail_idx(uint16_t(m_avail_idx + 1));
}

void DriverQueue::set_avail_idx(uint16_t idx)
{
    m_avail_idx = idx;
    __atomic_store_n(reinterpret_cast<uint16_t*>(m_ram.host(m_avail + 2)), idx, __ATOMIC_RELEASE);
}

void DriverQueue::notify_kick() { (void)eventfd_signal(m_kick.get()); }

uint16_t DriverQueue::used_idx() const
{
    return __atomic_load_n(
        reinterpret_cast<const uint16_t*>(m_ram.host(m_used + 2)), __ATOMIC_ACQUIRE);
}

uint16_t DriverQueue::avail_event() const
{
    return m_ram.get<uint16_t>(m_used + 4 + 8 * uint64_t(m_size));
}

bool DriverQueue::used_pending() const { return used_idx() != m_last_used; }

void DriverQueue::free_chain(uint16_t head)
{
    if (head >= m_size)
        return;
    for (auto d : m_chains[head])
        m_free.push_back(d);
    m_chains[head].clear();
}

std::optional<UsedElement> DriverQueue::wait_used(std::chrono::milliseconds timeout)
{
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!used_pending()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0)
            return std::nullopt;
        pollfd p { m_call.get(), POLLIN, 0 };
        // Short slices: the device signals through the call fd, but after a call fd swap the
        // signal may have gone to the old one, as with a real driver's missed interrupt.
        ::poll(&p, 1, int(std::min<long>(left.count(), 50)));
        m_interrupts += eventfd_drain(m_call.get());
    }
    m_interrupts += eventfd_drain(m_call.get());
    uint64_t slot = m_used + 4 + 8 * uint64_t(m_last_used % m_size);
    UsedElement e { m_ram.get<uint32_t>(slot), m_ram.get<uint32_t>(slot + 4) };
    ++m_last_used;
    // EVENT_IDX: ask for an interrupt at the next completion.
    m_ram.put<uint16_t>(m_avail + 4 + 2 * uint64_t(m_size), m_last_used);
    free_chain(uint16_t(e.id));
    return e;
}

} // namespace vgpu::harness
