// One Output per scanout: what it shows now (a rectangle of a resource), and a generation counter
// of visible changes that sinks and tests can follow. A visible change is a flush that reaches
// the output: a page flip (TRANSFER, SET_SCANOUT, RESOURCE_FLUSH) and a DIRTYFB (TRANSFER,
// RESOURCE_FLUSH) count once each; SET_SCANOUT alone shows nothing new until its flush.
#pragma once

#include <cstdint>
#include <optional>

#include "virtio_gpu/display_host.h"

namespace vgpu::display {

using virtio_gpu::Rect;

struct Output {
    uint32_t index = 0;
    std::optional<virtio_gpu::ScanoutSource> source;
    uint64_t generation = 0; // visible changes: flushes that reached this output
    uint64_t flips = 0; // the source changed (SET_SCANOUT to another resource or rectangle)

    bool enabled() const { return source.has_value(); }
    uint32_t width() const { return source ? source->rect.width : 0; }
    uint32_t height() const { return source ? source->rect.height : 0; }
    Rect full() const { return Rect { 0, 0, width(), height() }; }
};

struct CursorState {
    std::optional<virtio_gpu::CursorImage> image; // nullopt: hidden
    uint32_t x = 0;
    uint32_t y = 0;
};

} // namespace vgpu::display
