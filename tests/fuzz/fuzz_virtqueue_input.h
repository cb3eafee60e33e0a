// The input format of fuzz_virtqueue, shared with make_seeds so that the seeds and the target
// agree on it. An input is a VirtqueueInput followed by a memory image that is copied to the
// start of the guest memfd: the image's first bytes are at GPA 0, and bytes past REGION_SIZE land
// in region 1 (they follow it in the memfd).
#pragma once

#include <cstdint>
#include <type_traits>

namespace vgpu::fuzz {

// One 64 KiB memfd, shared as two regions with a hole between them, so that buffers can fall
// outside guest memory or straddle a region's end. The frontend addresses are in the opposite
// order to the GPAs: mixing up the two address spaces gives wrong translations, not lucky ones.
constexpr uint64_t MEMFD_SIZE = 64 * 1024;
constexpr uint64_t REGION_SIZE = 32 * 1024;
constexpr uint64_t REGION0_GPA = 0;
constexpr uint64_t REGION1_GPA = 0x10000;
constexpr uint64_t REGION0_FD_OFFSET = 0;
constexpr uint64_t REGION1_FD_OFFSET = REGION_SIZE;
constexpr uint64_t REGION0_VA = 0x7f0000100000;
constexpr uint64_t REGION1_VA = 0x7f0000000000;

constexpr uint8_t INPUT_F_INDIRECT = 1 << 0; // VIRTIO_RING_F_INDIRECT_DESC negotiated
constexpr uint8_t INPUT_F_EVENT_IDX = 1 << 1; // VIRTIO_RING_F_EVENT_IDX negotiated
constexpr uint8_t INPUT_F_CALL = 1 << 2; // the queue has a call eventfd (notify() does its work)
constexpr uint8_t INPUT_F_CURSOR = 1 << 3; // the device pass runs the cursor queue, not control

struct VirtqueueInput {
    uint8_t size_log2; // queue size 1 << (size_log2 % 7): 1..64
    uint8_t flags; // INPUT_F_*
    uint8_t chunk; // the echo pass moves (chunk + 1) bytes per Reader/Writer call
    uint8_t reserved;
    uint16_t base; // SET_VRING_BASE: the first avail (and used) index
    // Ring GPAs in units of 2 bytes (so that region 1 is reachable); the target rounds them down
    // to the ring's alignment.
    uint16_t desc;
    uint16_t avail;
    uint16_t used;
};
static_assert(sizeof(VirtqueueInput) == 12 && std::is_trivially_copyable_v<VirtqueueInput>);

constexpr uint32_t queue_size_of(uint8_t size_log2) { return 1u << (size_log2 % 7); }

// The frontend address of a GPA; GPAs in the hole map to frontend addresses no region has.
constexpr uint64_t frontend_va(uint64_t gpa)
{
    if (gpa >= REGION1_GPA)
        return REGION1_VA + (gpa - REGION1_GPA);
    return REGION0_VA + gpa;
}

} // namespace vgpu::fuzz
