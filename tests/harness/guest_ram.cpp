#include "harness/guest_ram.h"

#include <sys/mman.h>
#include <unistd.h>

#include <stdexcept>

namespace vgpu::harness {

GuestRam::GuestRam(uint64_t low, uint64_t high)
    : m_low(low)
    , m_high(high)
{
    int fd = ::memfd_create("harness-guest-ram", MFD_CLOEXEC);
    if (fd < 0 || ::ftruncate(fd, off_t(low + high)) < 0)
        throw std::runtime_error("memfd for guest RAM");
    m_fd = Fd(fd);
    auto map = MemoryMap::map(m_fd.get(), low + high, 0, MemoryMap::Access::ReadWrite);
    if (!map)
        throw std::runtime_error(map.error().message);
    m_map = map.release_value();
    auto base = uint64_t(reinterpret_cast<uintptr_t>(m_map.data()));
    m_regions.push_back({ 0, low, base, 0 });
    if (high)
        m_regions.push_back({ high_base, high, base + low, low });
}

uint64_t GuestRam::alloc(uint64_t size, uint64_t align)
{
    uint64_t at = (m_next + align - 1) / align * align;
    if (at + size > m_low)
        throw std::runtime_error("harness guest RAM exhausted");
    m_next = at + size;
    std::memset(host(at), 0, size);
    return at;
}

std::byte* GuestRam::host(uint64_t gpa) const
{
    if (gpa < m_low)
        return m_map.data() + gpa;
    if (gpa >= high_base && gpa - high_base < m_high)
        return m_map.data() + m_low + (gpa - high_base);
    throw std::runtime_error("harness: GPA outside guest RAM");
}

} // namespace vgpu::harness
