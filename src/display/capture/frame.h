// What an output shows now, as canonical 0x00RRGGBB pixels (the visible rectangle, without the
// cursor, as QEMU's screendump has it).
#pragma once

#include "base/result.h"
#include "display/capture/image.h"
#include "display/output.h"

namespace vgpu::display::capture {

Result<Image> grab(const Output& output);

} // namespace vgpu::display::capture
