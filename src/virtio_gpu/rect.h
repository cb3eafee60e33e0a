// Rectangle checks in the non-wrapping form (x > W || w > W || x + w > W cannot overflow).
#pragma once

#include <algorithm>
#include <cstdint>

#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

constexpr bool rect_within(const Rect& r, uint32_t width, uint32_t height)
{
    return r.x <= width && r.width <= width - r.x && r.y <= height && r.height <= height - r.y;
}

constexpr bool rect_empty(const Rect& r) { return r.width == 0 || r.height == 0; }

// Both rectangles must be valid (no wrap-around).
constexpr Rect rect_intersect(const Rect& a, const Rect& b)
{
    uint64_t x0 = std::max(a.x, b.x), y0 = std::max(a.y, b.y);
    uint64_t x1 = std::min(uint64_t(a.x) + a.width, uint64_t(b.x) + b.width);
    uint64_t y1 = std::min(uint64_t(a.y) + a.height, uint64_t(b.y) + b.height);
    if (x1 <= x0 || y1 <= y0)
        return Rect {};
    return Rect { uint32_t(x0), uint32_t(y0), uint32_t(x1 - x0), uint32_t(y1 - y0) };
}

// The smallest rectangle holding both; an empty one is ignored.
constexpr Rect rect_union(const Rect& a, const Rect& b)
{
    if (rect_empty(a))
        return b;
    if (rect_empty(b))
        return a;
    uint64_t x0 = std::min(a.x, b.x), y0 = std::min(a.y, b.y);
    uint64_t x1 = std::max(uint64_t(a.x) + a.width, uint64_t(b.x) + b.width);
    uint64_t y1 = std::max(uint64_t(a.y) + a.height, uint64_t(b.y) + b.height);
    return Rect { uint32_t(x0), uint32_t(y0), uint32_t(x1 - x0), uint32_t(y1 - y0) };
}

} // namespace vgpu::virtio_gpu
