#include "export/describe.h"

#include <fmt/format.h>

namespace vgpu::exporting {

std::string fourcc_name(uint32_t fourcc)
{
    std::string out;
    for (int i = 0; i < 4; ++i) {
        char c = char((fourcc >> (8 * i)) & 0xff);
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    return out;
}

std::vector<std::string> plane_type_list(uint32_t plane_types)
{
    std::vector<std::string> out;
    for (auto [bit, name] : PLANE_TYPE_NAMES)
        if (plane_types & bit)
            out.emplace_back(name);
    return out;
}

std::string plane_type_names(uint32_t plane_types)
{
    std::string out;
    for (const auto& name : plane_type_list(plane_types))
        out += (out.empty() ? "" : ",") + name;
    return out.empty() ? "none" : out;
}

std::optional<PlaneType> plane_type_named(std::string_view name)
{
    for (auto [bit, known] : PLANE_TYPE_NAMES)
        if (name == known)
            return bit;
    return std::nullopt;
}

namespace {

const char* reason_name(uint32_t reason)
{
    switch (RevokeReason(reason)) {
    case RevokeReason::Control:
        return "control";
    case RevokeReason::OutputGone:
        return "output-gone";
    case RevokeReason::DeviceReset:
        return "device-reset";
    case RevokeReason::FrontendGone:
        return "frontend-gone";
    case RevokeReason::NoAck:
        return "no-ack";
    }
    return "unknown";
}

std::string rect_text(const Rect32& r)
{
    return fmt::format("{},{},{}x{}", r.x, r.y, r.width, r.height);
}

} // namespace

std::string record_line(const Message& message)
{
    if (auto f = message.as<Flip>()) {
        std::string damage;
        for (uint32_t i = 0; i < std::min(f->rects, FLIP_RECTS); ++i)
            damage += (i ? ";" : "") + rect_text(f->damage[i]);
        return fmt::format("flip generation={} covers={} buffer={} damage={}", f->generation,
            f->covers, f->buffer, damage);
    }
    if (auto c = message.as<Crc>())
        return fmt::format("crc generation={} 0x{:08x}", c->generation, c->crc);
    if (auto b = message.as<Buffer>())
        return fmt::format("buffer {} {}x{} {} stride={} size={} plane={}", b->buffer, b->width,
            b->height, fourcc_name(b->fourcc), b->stride, b->size, plane_type_names(b->plane_type));
    if (auto g = message.as<BufferGone>())
        return fmt::format("buffer-gone {}", g->buffer);
    if (auto m = message.as<Mode>())
        return m->enabled ? fmt::format("mode {}x{}", m->width, m->height)
                          : std::string("mode disabled");
    if (auto c = message.as<Cursor>())
        return fmt::format("cursor buffer={} at {},{} hot {},{}{}", c->buffer, c->x, c->y, c->hot_x,
            c->hot_y, c->moved_only ? " moved" : "");
    if (auto r = message.as<Revoked>())
        return fmt::format("revoked reason={}", reason_name(r->reason));
    if (auto e = message.as<ErrorReply>())
        return fmt::format("error {} {}", e->code, get_text(e->text));
    return type_name(message.header.type);
}

} // namespace vgpu::exporting
