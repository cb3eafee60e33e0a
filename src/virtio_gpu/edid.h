// Our own EDID for VIRTIO_GPU_CMD_GET_EDID (virtio 1.3 §5.7.6.8) when the backend owns its outputs
// (no QEMU display socket to ask, or --outputs-from backend). One VESA E-EDID 1.4 base block, no
// extensions, built from the structure in the standard: the preferred mode as a CVT
// reduced-blanking detailed timing, the monitor name, display range limits around the preferred
// mode, and a serial or dummy descriptor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace vgpu::virtio_gpu {

constexpr size_t EDID_BLOCK_SIZE = 128;
// Detailed timing descriptors hold active sizes in 12 bits.
constexpr uint32_t EDID_MAX_ACTIVE_SIZE = 4095;
// The display range limits descriptor holds vertical rates in one byte; a little room is left for
// the rounding of the pixel clock to 10 kHz.
constexpr uint32_t EDID_MAX_REFRESH_HZ = 250;
// The screen size is stored in whole centimetres, one byte each (rounded to nearest).
constexpr uint32_t EDID_MAX_SIZE_MM = 2554;
// A display descriptor holds 13 characters of text.
constexpr size_t EDID_MAX_NAME_LENGTH = 13;

struct EdidInfo {
    uint32_t width;
    uint32_t height;
    uint32_t refresh_hz = 60;
    // Physical size. Both 0: derived from 96 dpi. One 0: derived from the other and the pixel
    // aspect ratio (square pixels).
    uint32_t width_mm = 0;
    uint32_t height_mm = 0;
    // Printable ASCII, not empty; longer names are cut to EDID_MAX_NAME_LENGTH characters and
    // trailing spaces are dropped.
    std::string_view name = "vgpu-display";
    // 0: no serial number (a dummy descriptor takes the place of the serial string).
    uint32_t serial = 0;
};

// Builds the 128-byte EDID 1.4 base block. Fails, rather than produce an EDID that contradicts
// itself or that decoders reject, for zero or oversized modes, refresh rates outside
// [1, EDID_MAX_REFRESH_HZ], pixel clocks outside 10..655.35 MHz (so tiny modes such as 320x240 at
// 60 Hz fail too), line rates outside the range descriptor's 1..255 kHz, sizes over
// EDID_MAX_SIZE_MM, and empty or non-printable names.
Result<std::vector<uint8_t>> build_edid(const EdidInfo& info);

} // namespace vgpu::virtio_gpu
