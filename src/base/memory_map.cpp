#include "base/memory_map.h"

#include <sys/mman.h>

#include <limits>

#include "base/sigbus.h"

namespace vgpu {

Result<MemoryMap> MemoryMap::map(int fd, uint64_t size, uint64_t offset, Access access)
{
    if (size == 0)
        return Error::format("mmap: zero size");
    if (size > std::numeric_limits<size_t>::max()
        || offset > uint64_t(std::numeric_limits<off_t>::max()))
        return Error::format("mmap: size {} or offset {} out of range", size, offset);
    int prot = access == Access::ReadWrite ? PROT_READ | PROT_WRITE : PROT_READ;
    void* p = ::mmap(nullptr, size_t(size), prot, MAP_SHARED, fd, off_t(offset));
    if (p == MAP_FAILED)
        return Error::from_errno("mmap");
    MemoryMap m;
    m.m_data = static_cast<std::byte*>(p);
    m.m_size = size_t(size);
    return m;
}

bool MemoryMap::protect_against_truncation()
{
    if (m_data && !m_protected)
        m_protected = sigbus::protect(m_data, m_size);
    return m_protected;
}

void MemoryMap::reset()
{
    if (m_protected)
        sigbus::unprotect(m_data);
    m_protected = false;
    if (m_data)
        ::munmap(m_data, m_size);
    m_data = nullptr;
    m_size = 0;
}

} // namespace vgpu
