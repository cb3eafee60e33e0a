#include "view/view_state.h"

#include <algorithm>

#include "export/describe.h"

namespace vgpu::view {

namespace {

// `r` clipped to width x height; nullopt when nothing is left.
std::optional<ex::Rect32> clipped(const ex::Rect32& r, uint32_t width, uint32_t height)
{
    if (r.x >= width || r.y >= height)
        return std::nullopt;
    uint32_t w = std::min(r.width, width - r.x);
    uint32_t h = std::min(r.height, height - r.y);
    if (!w || !h)
        return std::nullopt;
    return ex::Rect32 { r.x, r.y, w, h };
}

} // namespace

Result<ViewState::Change> ViewState::apply(ex::Message& message)
{
    if (auto m = message.as<ex::Mode>()) {
        m_enabled = m->enabled != 0;
        m_width = m_enabled ? m->width : 0;
        m_height = m_enabled ? m->height : 0;
        m_damage.clear();
        return Change::NewMode;
    }
    if (message.type() == ex::Type::Buffer || message.type() == ex::Type::Extents) {
        if (auto b = message.as<ex::Buffer>(); b && b->plane_type != ex::PLANE_REGION
            && b->plane_type != ex::PLANE_GUEST_MEMORY && b->plane_type != ex::PLANE_DMABUF)
            return Error::format("buffer {}: plane type {} is not one vgpu-view maps", b->buffer,
                ex::plane_type_names(b->plane_type));
        auto mapped = TRY(m_assembler.add(message));
        if (mapped) {
            uint32_t id = mapped->info().buffer;
            m_buffers.insert_or_assign(id, std::move(*mapped));
        }
        return Change::Nothing;
    }
    if (auto g = message.as<ex::BufferGone>()) {
        m_buffers.erase(g->buffer);
        if (g->buffer == m_cursor_buffer) {
            m_cursor_buffer = 0;
            m_cursor.image = nullptr;
        }
        return Change::Nothing;
    }
    if (auto f = message.as<ex::Flip>()) {
        auto it = m_buffers.find(f->buffer);
        if (it == m_buffers.end())
            return Error::format("FLIP of buffer {}, which was never sent", f->buffer);
        const auto& info = it->second.info();
        if (uint64_t(f->source.x) + f->source.width > info.width
            || uint64_t(f->source.y) + f->source.height > info.height)
            return Error::format("FLIP: source {}x{}+{}+{} outside buffer {} ({}x{})",
                f->source.width, f->source.height, f->source.x, f->source.y, f->buffer, info.width,
                info.height);
        uint32_t width = std::min(m_width, f->source.width);
        uint32_t height = std::min(m_height, f->source.height);
        if (m_shown == 0) {
            // Nothing shown yet: all of it is new to us.
            m_damage = { ex::Rect32 { 0, 0, width, height } };
        } else {
            // The damage is since the previous FLIP, whichever buffer this one names
            // (docs/export.md): what we hold is that FLIP's picture.
            for (uint32_t i = 0; i < std::min(f->rects, ex::FLIP_RECTS); ++i)
                if (auto r = clipped(f->damage[i], width, height))
                    m_damage.push_back(*r);
        }
        m_shown = f->buffer;
        m_source = f->source;
        m_generation = f->generation;
        ++m_flips;
        m_covered += f->covers;
        return Change::NewFrame;
    }
    if (auto c = message.as<ex::Cursor>()) {
        m_cursor.x = int32_t(c->x);
        m_cursor.y = int32_t(c->y);
        m_cursor.hot_x = c->hot_x;
        m_cursor.hot_y = c->hot_y;
        if (c->buffer == 0) {
            m_cursor.image = nullptr;
        } else {
            auto it = m_buffers.find(c->buffer);
            if (it == m_buffers.end())
                return Error::format("CURSOR of buffer {}, which was never sent", c->buffer);
            m_cursor.image = &it->second;
            m_cursor.image_id = c->buffer;
        }
        m_cursor_buffer = c->buffer;
        return Change::NewCursor;
    }
    if (message.as<ex::Revoked>()) {
        m_revoked = ex::record_line(message);
        return Change::LeaseRevoked;
    }
    return Change::Nothing; // CRC and anything newer: nothing to draw
}

std::optional<Upload> ViewState::take_upload()
{
    if (m_damage.empty() || !m_enabled)
        return std::nullopt;
    auto it = m_buffers.find(m_shown);
    if (it == m_buffers.end())
        return std::nullopt;
    Upload upload { &it->second, m_source, std::move(m_damage) };
    m_damage.clear();
    // Clip to the shown size (a MODE may have shrunk the output since the damage came).
    std::vector<ex::Rect32> kept;
    for (const auto& r : upload.damage)
        if (auto c = clipped(
                r, std::min(m_width, m_source.width), std::min(m_height, m_source.height)))
            kept.push_back(*c);
    upload.damage = std::move(kept);
    if (upload.damage.empty())
        return std::nullopt;
    return upload;
}

std::optional<ChannelMasks> channel_masks(uint32_t fourcc)
{
    // A DRM fourcc names a little-endian 32-bit word's channels from its most significant byte
    // ("XR24" = [31:0] x:R:G:B), so each is four masks of that word.
    static const std::map<std::string, ChannelMasks> masks {
        { "XR24", { 0x00ff0000, 0x0000ff00, 0x000000ff, 0 } },
        { "AR24", { 0x00ff0000, 0x0000ff00, 0x000000ff, 0xff000000 } },
        { "XB24", { 0x000000ff, 0x0000ff00, 0x00ff0000, 0 } },
        { "AB24", { 0x000000ff, 0x0000ff00, 0x00ff0000, 0xff000000 } },
        { "BX24", { 0x0000ff00, 0x00ff0000, 0xff000000, 0 } },
        { "BA24", { 0x0000ff00, 0x00ff0000, 0xff000000, 0x000000ff } },
        { "RX24", { 0xff000000, 0x00ff0000, 0x0000ff00, 0 } },
        { "RA24", { 0xff000000, 0x00ff0000, 0x0000ff00, 0x000000ff } },
    };
    auto it = masks.find(ex::fourcc_name(fourcc));
    if (it == masks.end())
        return std::nullopt;
    return it->second;
}

} // namespace vgpu::view
