#include "display/capture/crc_capture.h"

#include "base/log.h"

namespace vgpu::display::capture {

CrcCapture::CrcCapture(EventLoop& loop)
    : m_loop(loop)
    , m_self(std::make_shared<CrcCapture*>(this))
{
}

void CrcCapture::start(uint32_t output)
{
    resolve();
    auto& ring = m_rings[output];
    ring.active = true;
    ring.entries.clear();
    ring.overflow = 0;
}

void CrcCapture::stop(uint32_t output)
{
    resolve();
    m_rings[output].active = false;
}

CrcCapture::Drained CrcCapture::read(uint32_t output)
{
    resolve();
    auto& ring = m_rings[output];
    Drained drained { { ring.entries.begin(), ring.entries.end() }, ring.overflow };
    ring.entries.clear();
    ring.overflow = 0;
    return drained;
}

void CrcCapture::output_damaged(const Output& output, Rect)
{
    if (!m_rings[output.index].active || !output.source)
        return;
    const auto& source = *output.source;
    m_pending.push_back({ output.index, output.generation, source.pixels, source.rect });
    ++m_entries_total;
    if (!m_resolve_posted) {
        m_resolve_posted = true;
        m_loop.post([self = std::weak_ptr<CrcCapture*>(m_self)] {
            if (auto alive = self.lock()) {
                (*alive)->m_resolve_posted = false;
                (*alive)->resolve();
            }
        });
    }
}

void CrcCapture::pixels_will_change(const virtio_gpu::PixelStorage& pixels)
{
    // Entries stay in flush order: everything pending is resolved, not only these pixels.
    for (const auto& p : m_pending) {
        if (p.pixels.get() == &pixels) {
            resolve();
            return;
        }
    }
}

void CrcCapture::resolve()
{
    while (!m_pending.empty()) {
        auto p = std::move(m_pending.front());
        m_pending.pop_front();
        add(p.output, CrcEntry { p.frame, p.pixels->rect_crc(p.rect) });
    }
}

void CrcCapture::add(uint32_t output, const CrcEntry& entry)
{
    auto& ring = m_rings[output];
    if (!ring.active)
        return; // stopped after the flush: nobody asked for it any more
    if (ring.entries.size() >= ring_size) {
        if (ring.overflow++ == 0)
            VGPU_LOG_WARN("CRC capture on output {}: ring of {} entries full, entries are being dropped", output, ring_size);
    } else {
        ring.entries.push_back(entry);
    }
    if (m_listener)
        m_listener(output, entry);
}

} // namespace vgpu::display::capture
