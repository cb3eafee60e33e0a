#include "display/capture/crc_capture.h"

#include "base/log.h"

namespace vgpu::display::capture {

bool CrcCapture::any_active() const
{
    for (const auto& ring : m_rings)
        if (ring.active)
            return true;
    return false;
}

void CrcCapture::start(uint32_t output)
{
    bool before = any_active();
    auto& ring = m_rings[output];
    ring.active = true;
    ring.entries.clear();
    ring.overflow = 0;
    if (!before && m_active_changed)
        m_active_changed(true);
}

void CrcCapture::stop(uint32_t output)
{
    auto& ring = m_rings[output];
    if (!ring.active)
        return;
    ring.active = false;
    if (!any_active() && m_active_changed)
        m_active_changed(false);
}

CrcCapture::Drained CrcCapture::read(uint32_t output)
{
    auto& ring = m_rings[output];
    Drained drained { { ring.entries.begin(), ring.entries.end() }, ring.overflow };
    ring.entries.clear();
    ring.overflow = 0;
    return drained;
}

void CrcCapture::output_damaged(const Output& output, Rect)
{
    auto& ring = m_rings[output.index];
    if (!ring.active || !output.source)
        return;
    const auto& source = *output.source;
    CrcEntry entry { output.generation, source.pixels->rect_crc(source.rect) };
    ++m_entries_total;
    if (ring.entries.size() >= ring_size) {
        if (ring.overflow++ == 0)
            VGPU_LOG_WARN("CRC capture on output {}: ring of {} entries full, entries are being dropped", output.index, ring_size);
    } else {
        ring.entries.push_back(entry);
    }
    if (m_listener)
        m_listener(output.index, entry);
}

} // namespace vgpu::display::capture
