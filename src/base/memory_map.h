// MemoryMap: an owned mmap() of a file descriptor, unmapped on destruction.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "base/result.h"

namespace vgpu {

class MemoryMap {
public:
    MemoryMap() = default;
    ~MemoryMap() { reset(); }
    MemoryMap(MemoryMap&& other) noexcept
        : m_data(std::exchange(other.m_data, nullptr))
        , m_size(std::exchange(other.m_size, 0))
        , m_protected(std::exchange(other.m_protected, false))
    {
    }
    MemoryMap& operator=(MemoryMap&& other) noexcept
    {
        if (this != &other) {
            reset();
            m_data = std::exchange(other.m_data, nullptr);
            m_size = std::exchange(other.m_size, 0);
            m_protected = std::exchange(other.m_protected, false);
        }
        return *this;
    }
    MemoryMap(const MemoryMap&) = delete;
    MemoryMap& operator=(const MemoryMap&) = delete;

    enum class Access {
        ReadOnly,
        ReadWrite
    };
    // Maps `size` bytes of `fd` from `offset` shared; offset must be page aligned.
    static Result<MemoryMap> map(int fd, uint64_t size, uint64_t offset, Access access);

    std::byte* data() const { return m_data; }
    size_t size() const { return m_size; }
    std::span<std::byte> bytes() const { return { m_data, m_size }; }
    void reset();
    // For a mapping of a file a peer owns (and may truncate): a fault on its lost pages reads
    // zeros and is reported instead of killing us (base/sigbus.h). False if not protected.
    bool protect_against_truncation();

private:
    std::byte* m_data = nullptr;
    size_t m_size = 0;
    bool m_protected = false;
};

} // namespace vgpu
