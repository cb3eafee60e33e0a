// A descriptor chain as the device sees it after walking and validating it: the head index (for
// the used ring) and the guest ranges, readable ones first. It holds guest addresses, never host
// pointers: Reader and Writer translate and copy on every access.
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"

namespace vgpu::virtio {

class GuestMemory;

// virtio 1.3 §2.7.5 struct virtq_desc.
struct VirtqDesc {
    uint64_t addr; // le64
    uint32_t len; // le32
    uint16_t flags; // le16
    uint16_t next; // le16
};
static_assert(sizeof(VirtqDesc) == 16);

constexpr uint16_t VIRTQ_DESC_F_NEXT = 1;
constexpr uint16_t VIRTQ_DESC_F_WRITE = 2;
constexpr uint16_t VIRTQ_DESC_F_INDIRECT = 4;

struct Segment {
    uint64_t gpa;
    uint32_t length;
};

struct DescriptorChain {
    uint16_t head = 0;
    std::vector<Segment> readable;
    std::vector<Segment> writable;
    uint64_t readable_bytes = 0;
    uint64_t writable_bytes = 0;
};

// Reads descriptor `index` of a table; the table is where the descriptors live (ring or indirect).
class DescriptorSource {
public:
    virtual ~DescriptorSource() = default;
    virtual Result<VirtqDesc> descriptor(uint32_t index) const = 0;
    virtual uint32_t count() const = 0;
};

struct WalkLimits {
    uint32_t queue_size;
    bool indirect_allowed;
};

// Walks the chain starting at `head` in `ring`. Fails on: an index out of the table, more
// descriptors than the queue size (a loop or an over-long chain), an indirect descriptor without
// INDIRECT_DESC, nested or chained indirect tables, an indirect table of a bad size or outside
// guest memory, a readable descriptor after a writable one, or a buffer outside guest memory.
Result<DescriptorChain> walk_chain(const DescriptorSource& ring, uint16_t head,
    const GuestMemory& memory, const WalkLimits& limits);

} // namespace vgpu::virtio
