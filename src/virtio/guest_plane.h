// A blob's guest pages as a trusted consumer may read them (--export-guest-memory,
// docs/export.md): a read-only descriptor of the guest RAM region's memfd and where the blob lies
// in it, in order. The consumer can read all of that region; revoking its lease cannot unmap it.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/result.h"
#include "virtio/guest_memory.h"
#include "virtio/guest_view.h"

namespace vgpu::virtio {

struct GuestPlane {
    struct Extent {
        uint64_t offset; // in `fd`
        uint64_t length;
    };
    std::shared_ptr<const Fd> fd; // the region's memfd, reopened O_RDONLY
    std::vector<Extent> extents; // in the blob's order; adjacent ones merged
    uint64_t size = 0; // what the extents cover: the blob's size
};

// The plane of the first `size` bytes of `ranges`. Fails when a range is not in one region, or
// the ranges lie in regions of different files (one descriptor per plane).
Result<GuestPlane> make_guest_plane(
    const GuestMemory& memory, std::span<const GuestRange> ranges, uint64_t size);

} // namespace vgpu::virtio
