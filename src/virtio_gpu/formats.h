// The eight virtio-gpu 2D formats. Names give the byte order in memory: B8G8R8X8 is bytes
// B, G, R, X, which on our little-endian hosts is the 32-bit value 0xXXRRGGBB, pixman's
// x8r8g8b8 (DRM's XRGB8888, what the Linux driver uses for its primary plane).
#pragma once

#include <cstdint>
#include <optional>

#include <pixman.h>

#include "virtio_gpu/wire.h"

namespace vgpu::virtio_gpu {

struct FormatInfo {
    Format format;
    pixman_format_code_t pixman;
    bool has_alpha;
    const char* name;
    // Byte offsets of red, green and blue within a pixel in memory.
    uint8_t r, g, b;
};

constexpr uint32_t BYTES_PER_PIXEL = 4; // every 2D format

std::optional<FormatInfo> format_info(uint32_t format);
// The DRM fourcc (drm_fourcc.h) of the same memory layout, for dmabufs.
uint32_t drm_fourcc(Format format);
// True when rows of this format are already QEMU's x8r8g8b8 (alpha, if any, is ignored there).
bool is_x8r8g8b8_layout(Format format);

// CRC-32C of `width` pixels of one row in the canonical layout 0x00RRGGBB little-endian,
// continuing from `crc`: what CRC capture and `vgpu-ctl crc-file` both compute.
uint32_t canonical_row_crc(
    uint32_t crc, const std::byte* row, uint32_t width, const FormatInfo& format);
// The row converted to canonical 0x00RRGGBB pixels.
void canonical_row(const std::byte* row, uint32_t width, const FormatInfo& format, uint32_t* out);

} // namespace vgpu::virtio_gpu
