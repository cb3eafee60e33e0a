#include "display/qemu/update_message.h"

#include <cstring>

#include <pixman.h>

namespace vgpu::display::qemu {

using virtio_gpu::BYTES_PER_PIXEL;

Result<std::unique_ptr<UpdateMessage>> UpdateMessage::create(
    uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect)
{
    uint64_t payload = sizeof(GpuUpdate) + uint64_t(rect.width) * rect.height * BYTES_PER_PIXEL;
    if (payload > UINT32_MAX)
        return Error::format("an UPDATE of {}x{} pixels does not fit a 32-bit message size",
            rect.width, rect.height);
    return std::unique_ptr<UpdateMessage>(new UpdateMessage(scanout, std::move(source), rect));
}

UpdateMessage::UpdateMessage(
    uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect)
    : m_source(std::move(source))
    , m_rect(rect)
{
    size_t row_bytes = size_t(rect.width) * BYTES_PER_PIXEL;
    // Straight from the resource when the rows are QEMU's layout and back to back in memory.
    m_direct = virtio_gpu::is_x8r8g8b8_layout(m_source.format.format)
        && (row_bytes == m_source.stride || rect.height == 1);
    GpuUpdate update { scanout, rect.x, rect.y, rect.width, rect.height };
    GpuHeader header { uint32_t(GpuRequest::Update), 0,
        uint32_t(sizeof(update) + row_bytes * rect.height) };
    m_head.resize(sizeof(header) + sizeof(update));
    std::memcpy(m_head.data(), &header, sizeof(header));
    std::memcpy(m_head.data() + sizeof(header), &update, sizeof(update));
    if (m_source.pixels->guest_memory() && rect.height > 0) {
        m_source.pixels->add_reader(this);
        m_reading = true;
    }
}

UpdateMessage::~UpdateMessage() { stop_reading(); }

void UpdateMessage::stop_reading()
{
    if (!m_reading)
        return;
    m_reading = false;
    // The last line: removing the reader may run callbacks that complete the guest's fence.
    m_source.pixels->remove_reader(this);
}

void UpdateMessage::let_go()
{
    if (!m_reading)
        return;
    // What is left of the pixel bytes, in the order they would have gone out.
    std::vector<std::byte> rest;
    if (m_direct) {
        size_t total = size_t(m_rect.width) * BYTES_PER_PIXEL * m_rect.height;
        const std::byte* base = m_source.pixel(m_rect.x, m_rect.y);
        rest.assign(base + m_direct_sent, base + total);
    } else {
        rest.assign(m_chunk.begin() + std::ptrdiff_t(m_chunk_sent), m_chunk.end());
        while (m_next_row < m_rect.height) {
            fill_chunk();
            rest.insert(rest.end(), m_chunk.begin(), m_chunk.end());
        }
    }
    m_chunk = std::move(rest);
    m_chunk_sent = 0;
    m_next_row = m_rect.height;
    m_direct = false;
    stop_reading();
}

std::span<const std::byte> UpdateMessage::next()
{
    if (m_head_sent < m_head.size())
        return std::span(m_head).subspan(m_head_sent);
    size_t row_bytes = size_t(m_rect.width) * BYTES_PER_PIXEL;
    if (m_direct) {
        size_t total = row_bytes * m_rect.height;
        if (m_direct_sent == total)
            return {};
        return std::span(m_source.pixel(m_rect.x, m_rect.y), total).subspan(m_direct_sent);
    }
    if (m_chunk_sent == m_chunk.size()) {
        if (m_next_row == m_rect.height)
            return {};
        fill_chunk();
    }
    return std::span(m_chunk).subspan(m_chunk_sent);
}

void UpdateMessage::advance(size_t n)
{
    if (m_head_sent < m_head.size()) {
        m_head_sent += n;
        return;
    }
    if (m_direct) {
        m_direct_sent += n;
        if (m_direct_sent == size_t(m_rect.width) * BYTES_PER_PIXEL * m_rect.height)
            stop_reading();
    } else {
        m_chunk_sent += n;
    }
}

void UpdateMessage::fill_chunk()
{
    size_t row_bytes = size_t(m_rect.width) * BYTES_PER_PIXEL;
    uint32_t rows = uint32_t(std::max<size_t>(1, chunk_bytes / row_bytes));
    rows = std::min(rows, m_rect.height - m_next_row);
    m_chunk.resize(row_bytes * rows);
    m_chunk_sent = 0;
    if (virtio_gpu::is_x8r8g8b8_layout(m_source.format.format)) {
        for (uint32_t r = 0; r < rows; ++r)
            std::memcpy(m_chunk.data() + r * row_bytes,
                m_source.pixel(m_rect.x, m_rect.y + m_next_row + r), row_bytes);
    } else {
        // Convert these rows to x8r8g8b8 with pixman, reading the resource in place.
        auto* src = pixman_image_create_bits(m_source.format.pixman, int(m_source.resource_width),
            int(m_source.resource_height),
            reinterpret_cast<uint32_t*>(const_cast<std::byte*>(m_source.pixels->data())),
            int(m_source.stride));
        auto* dst = pixman_image_create_bits(PIXMAN_x8r8g8b8, int(m_rect.width), int(rows),
            reinterpret_cast<uint32_t*>(m_chunk.data()), int(row_bytes));
        if (src && dst)
            pixman_image_composite32(PIXMAN_OP_SRC, src, nullptr, dst,
                int(m_source.rect.x + m_rect.x), int(m_source.rect.y + m_rect.y + m_next_row), 0, 0,
                0, 0, int(m_rect.width), int(rows));
        if (src)
            pixman_image_unref(src);
        if (dst)
            pixman_image_unref(dst);
    }
    m_next_row += rows;
    if (m_next_row == m_rect.height)
        stop_reading(); // the rest is in the chunk
}

} // namespace vgpu::display::qemu
