// Bounds-checked access to a descriptor chain's buffers. Reader copies out of guest memory (never
// hands out a reference into it, so a guest changing a struct while we parse it cannot bite us);
// Writer copies into the writable part. Both fail on short buffers instead of truncating.
#pragma once

#include <cstddef>
#include <span>
#include <type_traits>

#include "base/result.h"
#include "virtio/descriptor_chain.h"

namespace vgpu::virtio {

class GuestMemory;

class Reader {
public:
    Reader(const GuestMemory& memory, std::span<const Segment> segments);
    Result<void> read(std::span<std::byte> out);
    template <typename T>
        requires std::is_trivially_copyable_v<T>
    Result<T> read_obj()
    {
        T value;
        TRY(read(std::as_writable_bytes(std::span(&value, 1))));
        return value;
    }
    Result<void> skip(size_t bytes);
    size_t remaining() const { return m_remaining; }
    size_t consumed() const { return m_consumed; }

private:
    const GuestMemory& m_memory;
    std::span<const Segment> m_segments;
    size_t m_segment = 0;
    size_t m_offset = 0; // within the current segment
    size_t m_remaining = 0;
    size_t m_consumed = 0;
};

class Writer {
public:
    Writer(const GuestMemory& memory, std::span<const Segment> segments);
    Result<void> write(std::span<const std::byte> in);
    template <typename T>
        requires std::is_trivially_copyable_v<T>
    Result<void> write_obj(const T& value)
    {
        return write(std::as_bytes(std::span(&value, 1)));
    }
    size_t remaining() const { return m_remaining; }
    size_t written() const { return m_written; }

private:
    const GuestMemory& m_memory;
    std::span<const Segment> m_segments;
    size_t m_segment = 0;
    size_t m_offset = 0;
    size_t m_remaining = 0;
    size_t m_written = 0;
};

} // namespace vgpu::virtio
