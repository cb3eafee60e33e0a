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

// Rows of a blob (guest memory) are read in place too; the message is then a reader of that
// framebuffer (virtio_gpu::StorageReader) until it has read its last row, and when asked to let
// go it copies the rows it has not sent yet.
class UpdateMessage final : public OutgoingMessage, public virtio_gpu::StorageReader {
public:
    static constexpr size_t chunk_bytes = size_t(64) * 1024;

    // `rect` is in scanout coordinates and inside the source's rectangle. Fails when the
    // message would not fit the header's 32-bit size (4 GiB of pixels): send bands of rows.
    static Result<std::unique_ptr<UpdateMessage>> create(
        uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect);
    ~UpdateMessage() override;
    std::span<const std::byte> next() override;
    void advance(size_t n) override;
    void let_go() override;
    bool reading() const { return m_reading; }

    size_t total_bytes() const { return m_head.size() + size_t(m_rect.width) * m_rect.height * 4; }
    bool direct() const { return m_direct; }

private:
    UpdateMessage(uint32_t scanout, virtio_gpu::ScanoutSource source, virtio_gpu::Rect rect);
    void fill_chunk();
    void stop_reading();

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
    bool m_reading = false; // registered as a reader of the source's guest memory
};

} // namespace vgpu::display::qemu
