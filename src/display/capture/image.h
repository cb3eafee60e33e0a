// Images in the canonical layout (0x00RRGGBB per pixel), read from and written to PNG and PPM:
// screendumps, and the CRC of a reference image (`vgpu-ctl crc-file`) computed exactly as CRC
// capture computes a frame's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"

namespace vgpu::display::capture {

struct Image {
    uint32_t width = 0;
    uint32_t height = 0;
    std::vector<uint32_t> pixels; // row-major, each 0x00RRGGBB
};

// By content: PNG (any bit depth or colour type; alpha is dropped, i.e. ignored) or binary PPM
// (P6, maxval 255, comments allowed in the header). Up to 16384 pixels a side and 2^26 pixels.
// Errors are one line that starts with the path.
Result<Image> read_image(const std::string& path);
Result<std::vector<std::byte>> encode_png(const Image& image); // 8-bit RGB
Result<std::vector<std::byte>> encode_ppm(const Image& image); // P6 255
// Writes to a new temporary file next to PATH (created exclusively, never through a link),
// then renames it over PATH: readers never see half a file. Refuses a PATH that exists and is
// not a regular file (a link, a directory, a FIFO).
Result<void> write_file(const std::string& path, std::span<const std::byte> bytes);
// CRC-32C of the image as 0x00RRGGBB little-endian pixels, row after row: a frame's capture CRC.
uint32_t image_crc(const Image& image);
// "0x%08x 0x%08x": the DRM debugfs CRC line (frame counter truncated to 32 bits), no newline.
std::string drm_crc_line(uint64_t frame, uint32_t crc);

} // namespace vgpu::display::capture
