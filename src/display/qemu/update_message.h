// An UPDATE message produced as it is sent: the header, then the damaged rows read from the
// resource at send time. Rows already in QEMU's x8r8g8b8 layout that are contiguous go out
// straight from the resource; anything else is converted (pixman) a small chunk at a time. There
// is no full-frame staging copy. Because rows are read when sent, an UPDATE may carry rows of a
// newer frame than the one that caused it (it can tear); the newer frame's own damage follows it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "base/result.h"
#include "display/qemu/display_channel.h"
#include "virtio_gpu/display_host.h"

namespace vgpu::display::qemu {

class UpdateMessage final : public OutgoingMessage {
public:
    static constexpr size_t chunk_bytes = size_t(64) * 1024;

    // `rect` is in scanout coordinates and inside the source's rectangle. Fails when the
    // message would not fit the header's 32-bit size (4 GiB of pixels): send bands of rows.
    static Result<std::unique_ptr<UpdateMessage>> create(
        uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect);
    std::span<const std::byte> next() override;
    void advance(size_t n) override;

    size_t total_bytes() const { return m_head.size() + size_t(m_rect.width) * m_rect.height * 4; }
    bool direct() const { return m_direct; }

private:
    UpdateMessage(uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect);
    void fill_chunk();

    virtio_gpu::ScanoutSource m_source;
    virtio_gpu::Rect m_rect;
    bool m_direct;
    std::vector<std::byte> m_head; // GpuHeader + GpuUpdate
    size_t m_head_sent = 0;
    // Pixel rows: m_next_row is the first row not yet in a chunk (or sent, when direct).
    uint32_t m_next_row = 0;
    size_t m_direct_sent = 0;
    std::vector<std::byte> m_chunk;
    size_t m_chunk_sent = 0;
};

} // namespace vgpu::display::qemu
