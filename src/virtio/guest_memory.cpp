#include "virtio/guest_memory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>

#include "base/checked.h"
#include "base/log.h"

namespace vgpu::virtio {

namespace {

Result<void> check_description(const RegionDescription& d)
{
    if (d.memory_size == 0)
        return Error::format("memory region at gpa {:#x} has zero size", d.guest_phys_addr);
    if (!checked_add(d.guest_phys_addr, d.memory_size)
        || !checked_add(d.userspace_addr, d.memory_size)
        || !checked_add(d.mmap_offset, d.memory_size))
        return Error::format("memory region gpa {:#x} size {:#x} wraps the address space",
            d.guest_phys_addr, d.memory_size);
    return {};
}

} // namespace

Result<void> GuestMemory::validate_against(
    const RegionDescription& d, const std::vector<const RegionDescription*>& others)
{
    TRY(check_description(d));
    for (const auto* other : others) {
        if (ranges_overlap(
                d.guest_phys_addr, d.memory_size, other->guest_phys_addr, other->memory_size))
            return Error::format("memory region gpa {:#x}+{:#x} overlaps gpa {:#x}+{:#x}",
                d.guest_phys_addr, d.memory_size, other->guest_phys_addr, other->memory_size);
        if (ranges_overlap(
                d.userspace_addr, d.memory_size, other->userspace_addr, other->memory_size))
            return Error::format("memory region frontend address {:#x}+{:#x} overlaps {:#x}+{:#x}",
                d.userspace_addr, d.memory_size, other->userspace_addr, other->memory_size);
    }
    return {};
}

Result<GuestMemory::Region> GuestMemory::map_region(const RegionDescription& d, const Fd& fd) const
{
    if (!fd.valid())
        return Error::format("memory region gpa {:#x}: no file descriptor", d.guest_phys_addr);
    struct stat st { };
    if (::fstat(fd.get(), &st) < 0)
        return Error::from_errno("fstat(memory region)");
    // A regular file or memfd must be long enough: mapping past its end would SIGBUS on access.
    if (S_ISREG(st.st_mode)
        && (st.st_size < 0 || d.mmap_offset + d.memory_size > uint64_t(st.st_size)))
        return Error::format(
            "memory region gpa {:#x}: offset {:#x} + size {:#x} exceeds the file ({:#x} bytes)",
            d.guest_phys_addr, d.mmap_offset, d.memory_size, st.st_size);
    // mmap needs a page-aligned offset; QEMU's regions may start mid-page in the fd.
    uint64_t page = uint64_t(::sysconf(_SC_PAGESIZE));
    uint64_t aligned = d.mmap_offset & ~(page - 1);
    uint64_t delta = d.mmap_offset - aligned;
    auto map = TRY(
        MemoryMap::map(fd.get(), d.memory_size + delta, aligned, MemoryMap::Access::ReadWrite));
    std::byte* base = map.data() + delta;
    // A file the frontend can shrink: losing pages must cost it its connection, not kill us.
    // QEMU's memory-backend-memfd seals against shrinking by default; other files
    // (memory-backend-file, an unsealed memfd) are covered by the SIGBUS recovery.
    int seals = ::fcntl(fd.get(), F_GET_SEALS);
    bool sealed = seals >= 0 && (seals & F_SEAL_SHRINK);
    bool recoverable = !sealed && map.protect_against_truncation();
    VGPU_LOG_DEBUG("memory region gpa {:#x}+{:#x}: {}", d.guest_phys_addr, d.memory_size,
        sealed            ? "sealed against shrinking"
            : recoverable ? "not sealed against shrinking: a truncation drops the frontend"
                          : "not sealed against shrinking, and not protected");
    auto own_fd = TRY(fd.dup());
    return Region { d, std::make_shared<const MemoryMap>(std::move(map)), base, std::move(own_fd),
        sealed };
}

Result<void> GuestMemory::add_region(const RegionDescription& d, const Fd& fd)
{
    if (m_regions.size() >= max_regions)
        return Error::format("memory table full ({} regions)", max_regions);
    std::vector<const RegionDescription*> others;
    others.reserve(m_regions.size());
    for (const auto& r : m_regions)
        others.push_back(&r.description);
    TRY(validate_against(d, others));
    m_regions.push_back(TRY(map_region(d, fd)));
    ++m_generation;
    return {};
}

Result<void> GuestMemory::remove_region(const RegionDescription& d)
{
    for (auto it = m_regions.begin(); it != m_regions.end(); ++it) {
        const auto& r = it->description;
        if (r.guest_phys_addr == d.guest_phys_addr && r.userspace_addr == d.userspace_addr
            && r.memory_size == d.memory_size) {
            m_regions.erase(it);
            ++m_generation;
            return {};
        }
    }
    return Error::format(
        "no memory region at gpa {:#x} size {:#x} to remove", d.guest_phys_addr, d.memory_size);
}

Result<void> GuestMemory::replace(
    std::span<const RegionDescription> descriptions, std::span<const Fd> fds)
{
    if (descriptions.size() != fds.size())
        return Error::format(
            "memory table has {} regions but {} file descriptors", descriptions.size(), fds.size());
    if (descriptions.size() > max_regions)
        return Error::format(
            "memory table has {} regions, more than {}", descriptions.size(), max_regions);
    std::vector<const RegionDescription*> seen;
    for (const auto& d : descriptions) {
        TRY(validate_against(d, seen));
        seen.push_back(&d);
    }
    std::vector<Region> regions;
    for (size_t i = 0; i < descriptions.size(); ++i)
        regions.push_back(TRY(map_region(descriptions[i], fds[i])));
    m_regions = std::move(regions);
    ++m_generation;
    return {};
}

Result<std::span<std::byte>> GuestMemory::translate_gpa(uint64_t gpa, uint64_t length) const
{
    for (const auto& r : m_regions) {
        const auto& d = r.description;
        if (gpa >= d.guest_phys_addr
            && range_within(gpa - d.guest_phys_addr, length, d.memory_size))
            return std::span<std::byte>(r.base + (gpa - d.guest_phys_addr), size_t(length));
    }
    return Error::format("guest range {:#x}+{:#x} is not in guest memory", gpa, length);
}

Result<std::span<std::byte>> GuestMemory::translate_frontend_va(uint64_t va, uint64_t length) const
{
    for (const auto& r : m_regions) {
        const auto& d = r.description;
        if (va >= d.userspace_addr && range_within(va - d.userspace_addr, length, d.memory_size))
            return std::span<std::byte>(r.base + (va - d.userspace_addr), size_t(length));
    }
    return Error::format("frontend address range {:#x}+{:#x} is not in guest memory", va, length);
}

Result<GuestMemory::Placement> GuestMemory::place(uint64_t gpa, uint64_t length) const
{
    for (const auto& r : m_regions) {
        const auto& d = r.description;
        if (gpa >= d.guest_phys_addr
            && range_within(gpa - d.guest_phys_addr, length, d.memory_size))
            return Placement { r.map, r.base + (gpa - d.guest_phys_addr), r.fd.get(),
                d.mmap_offset + (gpa - d.guest_phys_addr), r.sealed,
                d.guest_phys_addr + d.memory_size };
    }
    return Error::format("guest range {:#x}+{:#x} is not in guest memory", gpa, length);
}

Result<void> GuestMemory::read(uint64_t gpa, std::span<std::byte> out) const
{
    auto src = TRY(translate_gpa(gpa, out.size()));
    if (!out.empty())
        std::memcpy(out.data(), src.data(), out.size());
    return {};
}

Result<void> GuestMemory::write(uint64_t gpa, std::span<const std::byte> in) const
{
    auto dst = TRY(translate_gpa(gpa, in.size()));
    if (!in.empty())
        std::memcpy(dst.data(), in.data(), in.size());
    return {};
}

} // namespace vgpu::virtio
