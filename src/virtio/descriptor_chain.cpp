#include "virtio/descriptor_chain.h"

#include <optional>

#include "base/checked.h"
#include "virtio/guest_memory.h"

namespace vgpu::virtio {

namespace {

// An indirect table copied out of guest memory descriptor by descriptor.
class IndirectTable final : public DescriptorSource {
public:
    IndirectTable(const GuestMemory& memory, uint64_t gpa, uint32_t count)
        : m_memory(memory)
        , m_gpa(gpa)
        , m_count(count)
    {
    }
    Result<VirtqDesc> descriptor(uint32_t index) const override
    {
        VirtqDesc d {};
        TRY(m_memory.read(
            m_gpa + uint64_t(index) * sizeof(VirtqDesc), std::as_writable_bytes(std::span(&d, 1))));
        return d;
    }
    uint32_t count() const override { return m_count; }

private:
    const GuestMemory& m_memory;
    uint64_t m_gpa;
    uint32_t m_count;
};

Result<void> add_segment(DescriptorChain& chain, const VirtqDesc& d, const GuestMemory& memory)
{
    bool writable = d.flags & VIRTQ_DESC_F_WRITE;
    if (!writable && !chain.writable.empty())
        return Error::format("readable descriptor after a writable one");
    if (d.len == 0)
        return {}; // allowed, carries nothing
    TRY(memory.translate_gpa(d.addr, d.len));
    if (writable) {
        chain.writable.push_back({ d.addr, d.len });
        chain.writable_bytes += d.len;
    } else {
        chain.readable.push_back({ d.addr, d.len });
        chain.readable_bytes += d.len;
    }
    return {};
}

} // namespace

Result<DescriptorChain> walk_chain(const DescriptorSource& ring, uint16_t head,
    const GuestMemory& memory, const WalkLimits& limits)
{
    DescriptorChain chain;
    chain.head = head;
    const DescriptorSource* table = &ring;
    std::optional<IndirectTable> indirect;
    uint32_t index = head;
    uint32_t visited = 0;
    // virtio 1.3 §2.7.5.3.1: a chain is at most the queue size long. Within an indirect table
    // each descriptor can be visited once; more visits mean a loop.
    uint32_t budget = limits.queue_size;
    for (;;) {
        if (index >= table->count())
            return Error::format(
                "descriptor index {} out of range ({} descriptors)", index, table->count());
        if (++visited > budget)
            return Error::format("descriptor chain longer than {} (a loop?)", budget);
        VirtqDesc d = TRY(table->descriptor(index));
        if (d.flags & VIRTQ_DESC_F_INDIRECT) {
            if (!limits.indirect_allowed)
                return Error::format("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
            if (table != &ring)
                return Error::format("nested indirect descriptor");
            if (d.flags & VIRTQ_DESC_F_NEXT)
                return Error::format("indirect descriptor with NEXT set");
            if (d.len == 0 || d.len % sizeof(VirtqDesc) != 0)
                return Error::format(
                    "indirect table length {} is not a non-zero multiple of 16", d.len);
            uint32_t count = d.len / uint32_t(sizeof(VirtqDesc));
            if (count > limits.queue_size)
                return Error::format("indirect table of {} descriptors exceeds the queue size {}",
                    count, limits.queue_size);
            TRY(memory.translate_gpa(d.addr, d.len));
            indirect.emplace(memory, d.addr, count);
            table = &*indirect;
            index = 0;
            visited = 0;
            budget = count;
            continue;
        }
        TRY(add_segment(chain, d, memory));
        if (!(d.flags & VIRTQ_DESC_F_NEXT))
            break;
        index = d.next;
    }
    return chain;
}

} // namespace vgpu::virtio
