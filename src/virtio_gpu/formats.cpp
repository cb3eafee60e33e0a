#include "virtio_gpu/formats.h"

#include <algorithm>
#include <array>

#include "base/crc32c.h"

namespace vgpu::virtio_gpu {

namespace {
constexpr std::array<FormatInfo, 8> formats { {
    { Format::B8G8R8A8Unorm, PIXMAN_a8r8g8b8, true, "B8G8R8A8", 2, 1, 0 },
    { Format::B8G8R8X8Unorm, PIXMAN_x8r8g8b8, false, "B8G8R8X8", 2, 1, 0 },
    { Format::A8R8G8B8Unorm, PIXMAN_b8g8r8a8, true, "A8R8G8B8", 1, 2, 3 },
    { Format::X8R8G8B8Unorm, PIXMAN_b8g8r8x8, false, "X8R8G8B8", 1, 2, 3 },
    { Format::R8G8B8A8Unorm, PIXMAN_a8b8g8r8, true, "R8G8B8A8", 0, 1, 2 },
    { Format::X8B8G8R8Unorm, PIXMAN_r8g8b8x8, false, "X8B8G8R8", 3, 2, 1 },
    { Format::A8B8G8R8Unorm, PIXMAN_r8g8b8a8, true, "A8B8G8R8", 3, 2, 1 },
    { Format::R8G8B8X8Unorm, PIXMAN_x8b8g8r8, false, "R8G8B8X8", 0, 1, 2 },
} };
} // namespace

std::optional<FormatInfo> format_info(uint32_t format)
{
    for (const auto& f : formats)
        if (uint32_t(f.format) == format)
            return f;
    return std::nullopt;
}

namespace {
constexpr uint32_t fourcc(char a, char b, char c, char d)
{
    return uint32_t(uint8_t(a)) | uint32_t(uint8_t(b)) << 8 | uint32_t(uint8_t(c)) << 16
        | uint32_t(uint8_t(d)) << 24;
}
} // namespace

uint32_t drm_fourcc(Format format)
{
    // virtio names bytes in memory order, DRM names a little-endian 32-bit word from its top.
    switch (format) {
    case Format::B8G8R8A8Unorm:
        return fourcc('A', 'R', '2', '4'); // ARGB8888
    case Format::B8G8R8X8Unorm:
        return fourcc('X', 'R', '2', '4'); // XRGB8888
    case Format::A8R8G8B8Unorm:
        return fourcc('B', 'A', '2', '4'); // BGRA8888
    case Format::X8R8G8B8Unorm:
        return fourcc('B', 'X', '2', '4'); // BGRX8888
    case Format::R8G8B8A8Unorm:
        return fourcc('A', 'B', '2', '4'); // ABGR8888
    case Format::X8B8G8R8Unorm:
        return fourcc('R', 'X', '2', '4'); // RGBX8888
    case Format::A8B8G8R8Unorm:
        return fourcc('R', 'A', '2', '4'); // RGBA8888
    case Format::R8G8B8X8Unorm:
        return fourcc('X', 'B', '2', '4'); // XBGR8888
    }
    return 0;
}

bool is_x8r8g8b8_layout(Format format)
{
    return format == Format::B8G8R8X8Unorm || format == Format::B8G8R8A8Unorm;
}

void canonical_row(const std::byte* row, uint32_t width, const FormatInfo& format, uint32_t* out)
{
    const auto* p = reinterpret_cast<const uint8_t*>(row);
    for (uint32_t x = 0; x < width; ++x, p += BYTES_PER_PIXEL)
        out[x] = (uint32_t(p[format.r]) << 16) | (uint32_t(p[format.g]) << 8) | p[format.b];
}

uint32_t canonical_row_crc(
    uint32_t crc, const std::byte* row, uint32_t width, const FormatInfo& format)
{
    if (is_x8r8g8b8_layout(format.format)) {
        // Already 0xXXRRGGBB in memory: the CRC masks the top byte as it goes.
        if (reinterpret_cast<uintptr_t>(row) % alignof(uint32_t) == 0)
            return crc::crc32c_xrgb(crc, reinterpret_cast<const uint32_t*>(row), width);
    }
    // Other layouts (and unaligned rows) go through a small canonical buffer.
    constexpr uint32_t chunk = 256;
    uint32_t buffer[chunk];
    for (uint32_t x = 0; x < width; x += chunk) {
        uint32_t n = std::min(chunk, width - x);
        canonical_row(row + size_t(x) * BYTES_PER_PIXEL, n, format, buffer);
        crc = crc::crc32c_xrgb(crc, buffer, n);
    }
    return crc;
}

} // namespace vgpu::virtio_gpu
