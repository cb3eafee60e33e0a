// What an output shows now, as canonical 0x00RRGGBB pixels (the visible rectangle, without the
// cursor, as QEMU's screendump has it). A snapshot is the cheap part, taken on the device loop:
// a copy of the visible rows as they are stored. Converting it to an image (and encoding and
// writing that) can then run anywhere, while the guest goes on drawing.
#pragma once

#include <cstddef>
#include <vector>

#include "base/result.h"
#include "display/capture/image.h"
#include "display/output.h"

namespace vgpu::display::capture {

struct Snapshot {
    uint32_t width = 0;
    uint32_t height = 0;
    virtio_gpu::FormatInfo format {};
    std::vector<std::byte> rows; // width * 4 bytes per row, as the resource stores them
};

Result<Snapshot> take_snapshot(const Output& output);
Image to_image(const Snapshot& snapshot);
// take_snapshot and to_image in one.
Result<Image> grab(const Output& output);

} // namespace vgpu::display::capture
