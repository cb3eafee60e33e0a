#include "virtio/reader_writer.h"

#include "virtio/guest_memory.h"

namespace vgpu::virtio {

namespace {
size_t total_length(std::span<const Segment> segments)
{
    size_t total = 0;
    for (const auto& s : segments)
        total += s.length;
    return total;
}

// Moves across `segments` from (segment, offset) for `bytes` bytes, calling
// per_piece(gpa, length, done_so_far) for each piece in one segment.
template <typename F>
Result<void> advance(
    std::span<const Segment> segments, size_t& segment, size_t& offset, size_t bytes, F&& per_piece)
{
    size_t done = 0;
    while (done < bytes) {
        VGPU_VERIFY(segment < segments.size());
        const auto& s = segments[segment];
        size_t piece = std::min<size_t>(bytes - done, s.length - offset);
        TRY(per_piece(s.gpa + offset, piece, done));
        done += piece;
        offset += piece;
        if (offset == s.length) {
            ++segment;
            offset = 0;
        }
    }
    return {};
}
} // namespace

Reader::Reader(const GuestMemory& memory, std::span<const Segment> segments)
    : m_memory(memory)
    , m_segments(segments)
    , m_remaining(total_length(segments))
{
}

Result<void> Reader::read(std::span<std::byte> out)
{
    if (out.size() > m_remaining)
        return Error::format(
            "short read: {} bytes wanted, {} left in the buffer", out.size(), m_remaining);
    // Advance a copy of the position: a failed copy must leave the reader where it was, or
    // m_remaining would no longer match the position and a later skip could run off the segments.
    size_t segment = m_segment, offset = m_offset;
    TRY(advance(
        m_segments, segment, offset, out.size(), [&](uint64_t gpa, size_t length, size_t done) {
            return m_memory.read(gpa, out.subspan(done, length));
        }));
    m_segment = segment;
    m_offset = offset;
    m_remaining -= out.size();
    m_consumed += out.size();
    return {};
}

Result<void> Reader::skip(size_t bytes)
{
    if (bytes > m_remaining)
        return Error::format(
            "short skip: {} bytes wanted, {} left in the buffer", bytes, m_remaining);
    TRY(advance(m_segments, m_segment, m_offset, bytes,
        [](uint64_t, size_t, size_t) -> Result<void> { return {}; }));
    m_remaining -= bytes;
    m_consumed += bytes;
    return {};
}

Writer::Writer(const GuestMemory& memory, std::span<const Segment> segments)
    : m_memory(memory)
    , m_segments(segments)
    , m_remaining(total_length(segments))
{
}

Result<void> Writer::write(std::span<const std::byte> in)
{
    if (in.size() > m_remaining)
        return Error::format(
            "short write: {} bytes to write, {} left in the buffer", in.size(), m_remaining);
    size_t segment = m_segment, offset = m_offset; // as in Reader::read
    TRY(advance(
        m_segments, segment, offset, in.size(), [&](uint64_t gpa, size_t length, size_t done) {
            return m_memory.write(gpa, in.subspan(done, length));
        }));
    m_segment = segment;
    m_offset = offset;
    m_remaining -= in.size();
    m_written += in.size();
    return {};
}

} // namespace vgpu::virtio
