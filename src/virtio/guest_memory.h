// The guest's RAM as the frontend shared it: a table of regions, each an mmap of a memfd (or any
// shareable fd). Addresses from the guest (GPAs in descriptors) and from the frontend (its own
// virtual addresses in SET_VRING_ADDR) are translated here, with every range checked.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/memory_map.h"
#include "base/result.h"

namespace vgpu::virtio {

// virtio-user memory region description (vhost-user.rst "Memory region description").
struct RegionDescription {
    uint64_t guest_phys_addr = 0;
    uint64_t memory_size = 0;
    uint64_t userspace_addr = 0;
    uint64_t mmap_offset = 0;
};

class GuestMemory {
public:
    // Our limit for regions at once; answered to GET_MAX_MEM_SLOTS.
    static constexpr size_t max_regions = 32;

    // Maps and adds one region. Fails (changing nothing) for a zero size, arithmetic that wraps,
    // a range that overlaps an existing region in guest-physical or frontend-virtual space, a
    // full table, or an fd that cannot be mapped that far.
    Result<void> add_region(const RegionDescription& description, const Fd& fd);
    // Removes the region matching guest address, frontend address and size (the mmap offset is
    // ignored, as vhost-user.rst says for REM_MEM_REG).
    Result<void> remove_region(const RegionDescription& description);
    // Replaces the whole table at once: either all new regions are valid and mapped, or the old
    // table stays.
    Result<void> replace(std::span<const RegionDescription> descriptions, std::span<const Fd> fds);
    void clear() { m_regions.clear(); }

    size_t region_count() const { return m_regions.size(); }
    const RegionDescription& region(size_t i) const { return m_regions[i].description; }
    // Generation: changes whenever the table changes, so holders of translations can redo them.
    uint64_t generation() const { return m_generation; }

    // Host view of [gpa, gpa + length). The range must lie in one region. length 0 is allowed.
    Result<std::span<std::byte>> translate_gpa(uint64_t gpa, uint64_t length) const;
    // Host view of [frontend_va, + length) in the frontend's address space.
    Result<std::span<std::byte>> translate_frontend_va(uint64_t va, uint64_t length) const;

    // Where [gpa, gpa + length) lies, for building views of guest memory that outlive a table
    // change (virtio/guest_view.h): the region's mapping (shared with its holders), the host
    // address, the region's fd (valid while this table holds the region) and the offset of `gpa`
    // in that fd. The range must lie in one region.
    struct Placement {
        std::shared_ptr<const MemoryMap> map;
        std::byte* host = nullptr;
        int fd = -1;
        uint64_t fd_offset = 0;
        bool sealed = false; // the fd cannot shrink: a mapping of it never faults
        uint64_t region_end = 0; // the gpa just past the region
    };
    Result<Placement> place(uint64_t gpa, uint64_t length) const;

    // Copies between guest memory and host buffers; the range must lie in one region.
    Result<void> read(uint64_t gpa, std::span<std::byte> out) const;
    Result<void> write(uint64_t gpa, std::span<const std::byte> in) const;

private:
    struct Region {
        RegionDescription description;
        // Shared with views of guest memory that still read it after the table changed.
        std::shared_ptr<const MemoryMap> map;
        std::byte* base = nullptr; // host address of guest_phys_addr (inside map)
        Fd fd; // our own duplicate, for views that map parts of the region (guest_view.h)
        bool sealed = false;
    };
    Result<Region> map_region(const RegionDescription& description, const Fd& fd) const;
    static Result<void> validate_against(
        const RegionDescription& description, const std::vector<const RegionDescription*>& others);

    std::vector<Region> m_regions;
    uint64_t m_generation = 0;
};

} // namespace vgpu::virtio
