// A consumer of the display: QEMU's display socket now; CRC capture, screenshots, VNC and plane
// export later. Sinks run on the device loop and must never block it on a peer; the longest
// they may hold it is pixels_will_change waiting for their own computation on those pixels.
#pragma once

#include "display/output.h"

namespace vgpu::display {

class DisplaySink {
public:
    virtual ~DisplaySink() = default;
    // The output's source changed: enabled, disabled, flipped to another resource, resized.
    virtual void output_changed(const Output& output) = 0;
    // Pixels in `damage` (output coordinates) changed.
    virtual void output_damaged(const Output& output, Rect damage) = 0;
    // A resource's pixels are about to be overwritten: what a sink still has to read of them
    // (for an earlier frame) it reads now. Returns true to have the new pixels checksummed as
    // they are copied. Most sinks read at once and ignore this.
    virtual bool pixels_will_change(const virtio_gpu::PixelStorage&) { return false; }
    // A new cursor image or visibility (`moved_only`: just a new position).
    virtual void cursor_changed(uint32_t scanout, const CursorState& cursor, bool moved_only) = 0;
    // The guest's memory is no longer what it was: a device reset, or the frontend went away
    // (`frontend_gone`). Sinks that handed guest memory to others take it back.
    virtual void guest_memory_gone(bool /*frontend_gone*/) { }
};

} // namespace vgpu::display
