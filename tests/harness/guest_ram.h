// Guest RAM for the fake frontend: one memfd, laid out like QEMU's pc machine in two regions
// (low memory from GPA 0 and high memory from 4 GiB), mapped in this process. The "frontend
// virtual addresses" we send are our own mapping addresses, as QEMU's are.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "base/fd.h"
#include "base/memory_map.h"
#include "virtio/guest_memory.h"

namespace vgpu::harness {

class GuestRam {
public:
    // `low` bytes at GPA 0 and `high` bytes at GPA 4 GiB (high may be 0: one region).
    GuestRam(uint64_t low = 32 << 20, uint64_t high = 16 << 20);

    const Fd& fd() const { return m_fd; }
    std::vector<virtio::RegionDescription> regions() const { return m_regions; }

    // A bump allocator over low memory, from 1 MiB up (GPA 0 stays unused, so that 0 means
    // "null" in tests).
    uint64_t alloc(uint64_t size, uint64_t align = 64);
    void reset_allocator() { m_next = 1 << 20; }

    std::byte* host(uint64_t gpa) const;
    uint64_t frontend_va(uint64_t gpa) const
    {
        return uint64_t(reinterpret_cast<uintptr_t>(host(gpa)));
    }
    void write(uint64_t gpa, std::span<const std::byte> bytes) const
    {
        std::memcpy(host(gpa), bytes.data(), bytes.size());
    }
    void read(uint64_t gpa, std::span<std::byte> out) const
    {
        std::memcpy(out.data(), host(gpa), out.size());
    }
    template <typename T>
    void put(uint64_t gpa, const T& value) const
    {
        write(gpa, std::as_bytes(std::span(&value, 1)));
    }
    template <typename T>
    T get(uint64_t gpa) const
    {
        T value;
        read(gpa, std::as_writable_bytes(std::span(&value, 1)));
        return value;
    }
    uint64_t low_size() const { return m_low; }
    static constexpr uint64_t high_base = uint64_t(4) << 30;

private:
    Fd m_fd;
    MemoryMap m_map;
    uint64_t m_low, m_high;
    uint64_t m_next = 1 << 20;
    std::vector<virtio::RegionDescription> m_regions;
};

} // namespace vgpu::harness
